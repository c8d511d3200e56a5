"""Benchmark mode and mixed precision, at tiny sizes (timings themselves are not checked).

`python main.py --mode=benchmark` must print exactly one bare JSON line on stdout with every key
the README documents, logs going to stderr. Mixed precision: a mixed_bfloat16 train step runs
with finite float32 losses; mixed_float16 goes through Keras' LossScaleOptimizer, whose scaled
gradients must reach Adam unscaled.
"""

import argparse
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from cyclegan_tf.training import benchmark
from cyclegan_tf import hardware

from conftest import REPO_ROOT
TINY_FLAGS = ('--config.model.netG=resnet_6blocks', '--config.model.ngf=4',
              '--config.model.ndf=4', '--config.data.crop_size=32', '--config.data.load_size=36',
              '--config.data.synthetic_train_size=4', '--config.data.synthetic_test_size=2')


def _tiny(default_config, precision='float32'):
  config = default_config
  config.model.netG = 'resnet_6blocks'
  config.model.ngf = config.model.ndf = 4
  config.data.crop_size, config.data.load_size = 32, 36
  config.train.precision = precision
  return config


def _check_result(result, precision):
  for key in benchmark.KEYS:
    assert key in result, key
  for key in ('train_images_per_sec', 'generator_images_per_sec', 'step_ms', 'peak_rss_mb',
              'generator_ms'):
    assert isinstance(result[key], float) and result[key] > 0, (key, result[key])
  # TF's CPU allocator counts its tensors: their peak is part of the process's resident peak.
  assert 0 < result['peak_tensor_mb'] < result['peak_rss_mb'], result
  assert result['precision'] == precision
  assert result['strategy'] == 'default'
  assert result['batch_size'] == 1 and result['crop_size'] == 32
  assert result['measured_steps'] >= 1 and result['warmup_steps'] >= 1
  assert isinstance(result['device'], str) and result['device']
  assert result['losses_finite'] is True
  assert result['loss_dtypes'] == ['float32']  # losses stay float32 under mixed policies


def test_benchmark_prints_one_json_line_mixed_bfloat16(default_config, capsys):
  """In-process, under mixed_bfloat16: also the check that a bf16 step runs with finite losses."""
  result = benchmark.run(_tiny(default_config, 'mixed_bfloat16'))
  out = capsys.readouterr().out
  lines = out.splitlines()
  assert len(lines) == 1, out
  assert json.loads(lines[0]) == result
  _check_result(result, 'mixed_bfloat16')


def test_run_writes_to_a_given_stream(monkeypatch, default_config):
  fake = {'train_images_per_sec': 1.0}
  monkeypatch.setattr(benchmark, 'measure', lambda config, read_dataset=False: fake)
  stream = io.StringIO()
  assert benchmark.run(default_config, stream=stream) is fake
  assert stream.getvalue() == json.dumps(fake) + '\n'


@pytest.mark.slow
def test_main_benchmark_mode_reading_the_dataset():
  """The main.py route, once: stdout is exactly one JSON line, logs go to stderr."""
  done = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, 'main.py'), '--mode=benchmark', '--read_dataset',
       *TINY_FLAGS], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False,
      env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  assert done.returncode == 0, done.stderr[-3000:]
  lines = done.stdout.splitlines()
  assert len(lines) == 1, done.stdout
  result = json.loads(lines[0])
  _check_result(result, 'float32')
  assert result['read_dataset'] is True
  assert 'Benchmarking' in done.stderr


@pytest.mark.slow
def test_mixed_float16_unscales_gradients_before_adam(default_config):
  """Adam's first moment after one applied step is (1 - beta1) * gradient: with the loss scaled
  (2^15 at first) it must still match float32's from the same weights and batch, not be
  thousands of times larger. Steps whose scaled gradients overflow are skipped by the
  LossScaleOptimizer (halving the scale), so the comparison starts from the weights right
  before the first applied G step."""
  import keras  # pylint: disable=g-import-not-at-top
  nets = ('G_A', 'G_B', 'D_A', 'D_B')
  rng = np.random.default_rng(0)
  batch = {k: tf.constant(rng.uniform(-1, 1, (1, 32, 32, 3)), tf.float32) for k in 'AB'}
  config = _tiny(default_config, 'mixed_float16')
  config.train.pool_size = 0
  mixed = benchmark.make_train_state(config, tf.distribute.get_strategy())
  assert isinstance(mixed.model.opt_G, keras.optimizers.LossScaleOptimizer)
  assert mixed.model.G_A.layers[-2].compute_dtype == 'float16'
  adam = mixed.model.opt_G.inner_optimizer
  for _ in range(20):
    before = {n: getattr(mixed.model, n).get_weights() for n in nets}
    losses = mixed.train_step(batch)
    assert losses.dtype == tf.float32 and np.all(np.isfinite(losses.numpy()))
    if int(adam.iterations.numpy()):
      break
  assert int(adam.iterations.numpy()) == 1, 'no G step applied in 20 steps'
  assert float(mixed.model.opt_G.dynamic_scale.numpy()) >= 1.0

  config = _tiny(default_config, 'float32')
  config.train.pool_size = 0
  reference = benchmark.make_train_state(config, tf.distribute.get_strategy())
  for n in nets:
    getattr(reference.model, n).set_weights(before[n])
  reference.train_step(batch)
  got, want = (np.concatenate([m.numpy().ravel() for m in opt._momentums])  # pylint: disable=protected-access
               for opt in (adam, reference.model.opt_G))
  ratio = np.linalg.norm(got) / np.linalg.norm(want)
  assert 0.8 < ratio < 1.25, ratio
  cosine = np.dot(got, want) / (np.linalg.norm(got) * np.linalg.norm(want))
  assert cosine > 0.95, cosine


@pytest.mark.skipif(not os.path.exists('/proc/self/status'), reason='Linux RSS accounting')
def test_peak_rss_is_in_megabytes():
  assert 50 < hardware.peak_rss_mb() < 1e6


def test_suite_table_gives_ratios_to_the_reference_at_the_same_size():
  from benchmarks import suite  # pylint: disable=g-import-not-at-top
  result = lambda train, gen, peak: {
      'train_images_per_sec': train, 'generator_images_per_sec': gen, 'peak_rss_mb': peak,
      'load_avg_before': 0.1, 'load_avg_after': 0.2}
  rows = [('tf mixed_bfloat16 256 (memory)', 256, result(0.15, 3.0, 2400.0)),
          ('tf float32 128', 128, result(0.6, 12.0, 1500.0)),
          ('reference pytorch 256', 256, result(0.075, 1.5, 3200.0))]
  stream = io.StringIO()
  suite.print_table(rows, stream)
  lines = {line.split('  ')[0]: line.split() for line in stream.getvalue().splitlines()}
  ours = lines['tf mixed_bfloat16 256 (memory)']
  assert ours[-8:] == ['0.150', '2.00', '3.00', '2.00', '2400', '0.75', '0.1-0.2', '-']
  # No reference run at 128 px: no ratios, not ratios to another size.
  assert lines['tf float32 128'][-8:] == ['0.600', '-', '12.00', '-', '1500', '-', '0.1-0.2', '-']
  assert 'CPU:' in stream.getvalue()


def test_suite_repeats_in_turn_and_keeps_the_median_run(monkeypatch):
  from benchmarks import suite  # pylint: disable=g-import-not-at-top
  speeds = iter([0.30, 0.28, 0.33, 0.29, 0.31, 0.27])  # ours, reference, ours, ...
  order = []

  def fake_run(command, **kwargs):
    order.append('reference' if 'benchmarks.reference_pytorch' in command else 'ours')
    result = {'train_images_per_sec': next(speeds), 'step_ms': 1.0}
    return subprocess.CompletedProcess(command, 0, stdout=json.dumps(result) + '\n', stderr='')
  monkeypatch.setattr(suite.subprocess, 'run', fake_run)
  args = argparse.Namespace(config='configs/default.py', no_reference=False, repeat=3,
                            only='tf float32 128,reference pytorch 128')
  rows = {name: r for name, _, r in suite.run_suite(args, [])}
  assert order == ['ours', 'reference'] * 3
  assert rows['tf float32 128']['train_images_per_sec'] == 0.31  # median of .30 .33 .31
  assert rows['reference pytorch 128']['train_images_per_sec'] == 0.28
  ours = rows['tf float32 128']
  assert (ours['train_images_per_sec_min'], ours['train_images_per_sec_max'],
          ours['repeats']) == (0.30, 0.33, 3)


@pytest.mark.parametrize('framework', ['tensorflow', 'torch'])
def test_conv_kernel_benchmark_times_every_layer(framework, capsys):
  if framework == 'torch':
    pytest.importorskip('torch')
  from benchmarks import conv_kernels  # pylint: disable=g-import-not-at-top
  conv_kernels.child(framework, crop_size=16, runs=1, threads=0)
  rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
  assert [r['layer'] for r in rows] == [layer[0] for layer in conv_kernels.LAYERS]
  residual = rows[[layer[0] for layer in conv_kernels.LAYERS].index('G residual 256')]
  # 16 px: the residual convs see 4 x 4 (+ 1 px of padding a side), 3 x 3 x 256 x 256.
  assert residual['gflop'] == round(2 * 4 * 4 * 9 * 256 * 256 / 1e9, 3)
  for row in rows:
    assert row['framework'] == framework
    assert all(row[k] > 0 for k in conv_kernels.KERNELS), row
