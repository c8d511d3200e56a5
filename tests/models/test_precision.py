"""precision='auto', the GEMM last conv only where it helps, XLA, and the device benchmark
script, on CPU (the decisions for GPUs and TPUs are checked by stating what they see)."""

import json
import logging
import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT, tiny_config
from cyclegan_tf.models import custom_layers
from cyclegan_tf import hardware
from cyclegan_tf.models import networks
from cyclegan_tf.models import precision

DEFAULT = tf.distribute.get_strategy()


@pytest.mark.parametrize('flags,want', [
    ({'avx2', 'fma', 'avx512f'}, 'float32'),
    ({'avx2', 'avx512f', 'avx512_bf16'}, 'mixed_bfloat16'),
    ({'avx2', 'amx_bf16', 'amx_tile'}, 'mixed_bfloat16'),
])
def test_auto_on_cpus(monkeypatch, flags, want):
  monkeypatch.setattr(hardware, 'cpu_flags', lambda: flags)
  chosen, reason = precision.resolve('auto', DEFAULT)
  assert chosen == want
  assert reason.startswith('auto: ')
  assert ('emulated' in reason) == (want == 'float32')


@pytest.mark.parametrize('capabilities,want', [([(9, 0)], 'mixed_bfloat16'),
                                               ([(8, 0), (7, 5)], 'float32'),
                                               ([], 'float32')])
def test_auto_on_gpus(monkeypatch, capabilities, want):
  monkeypatch.setattr(precision, 'device_kind', lambda strategy: 'GPU')
  monkeypatch.setattr(precision, 'gpu_capabilities', lambda: capabilities)
  assert precision.resolve('auto', DEFAULT)[0] == want


def test_explicit_bfloat16_on_a_cpu_without_it_warns_with_the_measured_cost(monkeypatch,
                                                                           caplog):
  monkeypatch.setattr(hardware, 'cpu_flags', lambda: {'avx2', 'fma'})
  with caplog.at_level(logging.WARNING):
    assert precision.resolve('mixed_bfloat16', DEFAULT) == ('mixed_bfloat16',
                                                             'config.train.precision')
  assert 'emulated' in caplog.text and '9x slower' in caplog.text
  caplog.clear()
  monkeypatch.setattr(hardware, 'cpu_flags', lambda: {'avx512_bf16'})
  with caplog.at_level(logging.WARNING):
    precision.resolve('mixed_bfloat16', DEFAULT)
  assert caplog.text == ''


def test_the_cpu_is_described_with_its_flags():
  text = hardware.cpu_description()
  assert hardware.cpu_model() in text and f'{os.cpu_count()} cores' in text
  flags = hardware.cpu_flags()
  for flag in hardware.REPORTED_CPU_FLAGS:
    assert (flag in text.split('; ')[-1]) == (flag in flags)


def test_gemm_last_conv_only_where_it_is_faster(monkeypatch):
  """AVX2-only CPUs at 128 px and up; never with AVX-512, on GPUs, or for small images."""
  assert precision.device_kind(DEFAULT) in ('CPU', 'GPU')
  monkeypatch.setattr(precision, 'device_kind', lambda strategy: 'CPU')
  monkeypatch.setattr(hardware, 'cpu_flags', lambda: {'avx2', 'fma'})
  assert precision.gemm_last_conv(DEFAULT, 256) and not precision.gemm_last_conv(DEFAULT, 64)
  monkeypatch.setattr(hardware, 'cpu_flags', lambda: {'avx2', 'fma', 'avx512f'})
  assert not precision.gemm_last_conv(DEFAULT, 256)
  monkeypatch.setattr(hardware, 'cpu_flags', lambda: {'avx2', 'fma'})
  monkeypatch.setattr(precision, 'device_kind', lambda strategy: 'GPU')
  assert not precision.gemm_last_conv(DEFAULT, 256)


def test_gemm_and_plain_last_convs_share_checkpoints(tmp_path):
  """A run trained on a CPU (GEMM last conv) resumes on a GPU (plain Conv2D) and back."""
  config = tiny_config()
  gemm = networks.build_cyclegan(config.model, seed=1, gemm_last_conv=True)
  plain = networks.build_cyclegan(config.model, seed=2, gemm_last_conv=False)
  assert any(isinstance(l, custom_layers.FewOutputConv2D) for l in gemm['G_A'].layers)
  assert not any(isinstance(l, custom_layers.FewOutputConv2D) for l in plain['G_A'].layers)
  path = tf.train.Checkpoint(**gemm).save(str(tmp_path / 'ckpt'))
  tf.train.Checkpoint(**plain).restore(path).assert_existing_objects_matched()
  x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)), tf.float32)
  for name in ('G_A', 'G_B', 'D_A', 'D_B'):
    np.testing.assert_allclose(plain[name](x).numpy(), gemm[name](x).numpy(), atol=1e-5)


@pytest.mark.slow
def test_a_run_with_auto_precision_and_xla_resumes_evaluates_and_exports(tmp_path):
  from cyclegan_tf.evaluation import evaluate  # pylint: disable=g-import-not-at-top
  from cyclegan_tf.deploy import export  # pylint: disable=g-import-not-at-top
  from cyclegan_tf.training import train  # pylint: disable=g-import-not-at-top
  config = tiny_config(**{'train.precision': 'auto', 'train.jit_compile': True,
                          'train.max_steps': 2, 'eval.classifier_epochs': 1})
  workdir = str(tmp_path / 'run')
  assert train.train_and_evaluate(config, workdir) == 2
  config.train.max_steps = 4
  assert train.train_and_evaluate(config, workdir) == 4
  assert evaluate.evaluate(config, workdir)['step'] == 4
  paths = export.export_run(config, workdir, export_dir=str(tmp_path / 'export'))
  assert sorted(paths) == ['cyclegan_a2b', 'cyclegan_b2a']


@pytest.mark.slow
def test_the_device_benchmark_script_runs_on_a_cpu_with_a_tiny_config():
  # One of the 8, without XLA's compile time: the script, not TF, is under test here (XLA and
  # auto precision are: test_a_run_with_auto_precision_and_xla_resumes_evaluates_and_exports).
  names = 'float32 xla=off batch=8'
  done = subprocess.run(['bash', 'benchmarks/gpu.sh', '--tiny', f'--only={names}'],
                        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False,
                        env={**os.environ, 'BENCH_TIMEOUT': '240'})
  assert done.returncode == 0, done.stderr[-3000:]
  results = [json.loads(l) for l in done.stdout.splitlines() if l.startswith('{')]
  assert [r['name'] for r in results] == [names]
  assert results[0]['precision'] == 'float32' and results[0]['jit_compile'] is False
  assert results[0]['batch_size'] == 8 and results[0]['train_images_per_sec'] > 0
  assert 'Device: CPU' in done.stdout
  assert f'| {names} | ' in done.stdout
  from benchmarks import gpu  # pylint: disable=g-import-not-at-top
  assert len(gpu.configurations()) == 8
