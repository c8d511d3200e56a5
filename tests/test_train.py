"""The train loop: run directory, learning, exact resume, faults, TensorBoard over HTTP."""

import copy
import glob
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT, tiny_config
from cyclegan_tf import configuration
from cyclegan_tf import losses
from cyclegan_tf import run_dir
from cyclegan_tf import train


def _scalars(logdir, tag):
  """(step, value) pairs of a scalar tag, read from the TF2 summary event files."""
  values = []
  for path in sorted(glob.glob(os.path.join(logdir, 'events.out.tfevents.*'))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        if v.tag == tag:
          values.append((event.step, float(tf.make_ndarray(v.tensor))))
  return values


def _checkpoint_values(workdir):
  path = tf.train.latest_checkpoint(os.path.join(workdir, 'checkpoints'))
  reader = tf.train.load_checkpoint(path)
  names = [n for n in reader.get_variable_to_shape_map() if not n.startswith('_CHECKPOINT')]
  return path, {n: reader.get_tensor(n) for n in names}


def test_run_directory_holds_everything_a_user_needs(trained_run):
  config, workdir = trained_run
  assert json.load(open(os.path.join(workdir, 'config.json')))['model']['ngf'] == 4
  path, values = _checkpoint_values(workdir)
  assert path.endswith('ckpt-24')
  # The networks' variables are stored once, under the optimizers that hold them too.
  for part in ('optimizer_G', 'optimizer_D', 'pool_A', 'pool_B', 'step', 'epoch', 'plateau'):
    assert any(n.startswith(part) for n in values), part
  assert values['step/.ATTRIBUTES/VARIABLE_VALUE'] == 24
  pool_count = next(v for n, v in values.items() if n.startswith('pool_A') and 'num_images' in n)
  assert np.sum(pool_count) == 24  # a pool of 50 after 24 steps of one image
  nets, step, _ = run_dir.restore_generators(workdir)
  assert step == 24
  first_kernel = 'optimizer_G/_trainable_variables/0/.ATTRIBUTES/VARIABLE_VALUE'
  np.testing.assert_array_equal(nets['G_A'].trainable_variables[0].numpy(), values[first_kernel])
  samples = sorted(os.listdir(os.path.join(workdir, 'samples')))
  assert samples[-1] == 'step_0000024.png'
  grid = tf.io.decode_png(open(os.path.join(workdir, 'samples', samples[-1]), 'rb').read())
  assert grid.shape == (4 * 32, 6 * 32, 3)  # 4 test scenes x (real, fake, rec) x 2 directions
  logdir = os.path.join(workdir, 'logs', 'train')
  for tag in [f'loss/{name}' for name in train.LOSS_NAMES] + ['learning_rate/G',
                                                              'images_per_sec']:
    assert len(_scalars(logdir, tag)) == 24 // config.train.log_every_steps, tag


def test_cycle_loss_falls(trained_run):
  _, workdir = trained_run
  cycle = [v for _, v in _scalars(os.path.join(workdir, 'logs', 'train'), 'loss/cycle_A')]
  # 24 steps at 10x the reference's rate: the path depends on float rounding (two versions of
  # the step with gradients equal to 1e-7 ended at 0.57 and 0.74 of the first value).
  assert cycle[-1] < 0.8 * cycle[0], cycle


def test_linear_policy_decays_in_the_second_epoch(trained_run):
  _, workdir = trained_run
  lrs = dict(_scalars(os.path.join(workdir, 'logs', 'train'), 'learning_rate/G'))
  assert lrs[4] == pytest.approx(2e-3)
  assert lrs[16] == pytest.approx(2e-3 * (1 - 1 / 2))  # n_epochs 1, n_epochs_decay 1


@pytest.mark.slow
def test_resume_is_bit_identical_to_an_uninterrupted_run(trained_run, tmp_path):
  config, straight = trained_run
  resumed = str(tmp_path / 'resumed')
  first_half = copy.deepcopy(config)
  first_half.train.max_steps = 10  # stops mid-epoch, between checkpoints
  assert train.train_and_evaluate(first_half, resumed) == 10
  assert train.train_and_evaluate(config, resumed) == 24
  path_a, a = _checkpoint_values(straight)
  path_b, b = _checkpoint_values(resumed)
  assert path_a.endswith('ckpt-24') and path_b.endswith('ckpt-24')
  assert set(a) == set(b)
  del a['save_counter/.ATTRIBUTES/VARIABLE_VALUE']  # how many saves, not training state
  for name in a:
    np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_resume_refuses_a_different_architecture(trained_run):
  _, workdir = trained_run
  config = tiny_config(**{'model.ngf': 8})
  with pytest.raises(configuration.ConfigError, match=r'model\.ngf: run has 4, config has 8'):
    train.train_and_evaluate(config, workdir)


@pytest.mark.slow
def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(trained_run, tmp_path,
                                                                     monkeypatch):
  config, finished = trained_run
  workdir = str(tmp_path / 'run')
  shutil.copytree(finished, workdir)
  before = _checkpoint_values(workdir)

  calls = itertools.count()

  def nan_cycle_a(real, reconstructed, lambda_):  # each trace computes cycle_A, then cycle_B
    loss = losses.l1_loss(reconstructed, real) * lambda_
    return loss * float('nan') if next(calls) % 2 == 0 else loss
  monkeypatch.setattr(losses, 'cycle_loss', nan_cycle_a)
  longer = copy.deepcopy(config)
  longer.train.n_epochs = 2  # run length may change on resume: continue past step 24
  with pytest.raises(train.NonFiniteLossError, match=r'cycle_A=nan at step 25'):
    train.train_and_evaluate(longer, workdir)
  after = _checkpoint_values(workdir)
  assert after[0] == before[0] and after[0].endswith('ckpt-24')
  for name in before[1]:
    np.testing.assert_array_equal(before[1][name], after[1][name])


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_tensorboard_serves_the_loss_scalars(trained_run):
  _, workdir = trained_run
  port = _free_port()
  server = subprocess.Popen(
      [sys.executable, '-m', 'tensorboard.main', '--logdir', os.path.join(workdir, 'logs'),
       '--host', '127.0.0.1', '--port', str(port), '--load_fast', 'false'],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    url = (f'http://127.0.0.1:{port}/data/plugin/scalars/scalars?run=train&tag=loss/cycle_A')
    deadline, data = time.time() + 120, None
    while time.time() < deadline:
      try:
        data = json.load(urllib.request.urlopen(url, timeout=5))
        if data:
          break
      except OSError:
        pass
      time.sleep(1)
    assert data, 'TensorBoard did not serve the scalars in time'
    steps = [row[1] for row in data]
    assert steps == [4, 8, 12, 16, 20, 24]
    assert all(np.isfinite(row[2]) for row in data)
  finally:
    server.terminate()
    server.wait(timeout=30)


def _wait_for(predicate, proc, timeout, what):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return
    if proc.poll() is not None:
      raise AssertionError(f'process exited ({proc.returncode}) before {what}')
    time.sleep(0.5)
  raise AssertionError(f'timed out waiting for {what}')


def _latest_step(workdir):
  path = tf.train.latest_checkpoint(os.path.join(workdir, 'checkpoints'))
  return int(path.rsplit('-', 1)[1]) if path else 0


@pytest.mark.slow
def test_kill_9_then_resume_then_sigterm_saves_and_exits_cleanly(tmp_path):
  """A crash loses at most checkpoint_every_steps; SIGTERM checkpoints the current step."""
  workdir = str(tmp_path / 'run')
  overrides = ['--config.model.netG=resnet_6blocks', '--config.model.ngf=4',
               '--config.model.ndf=4', '--config.data.load_size=36',
               '--config.data.crop_size=32', '--config.data.synthetic_train_size=12',
               '--config.data.synthetic_test_size=4', '--config.train.n_epochs=1000',
               '--config.train.checkpoint_every_steps=3', '--config.train.log_every_steps=1',
               '--config.train.image_every_steps=1000']
  command = [sys.executable, 'main.py', '--config=configs/default.py', f'--workdir={workdir}']
  command += overrides
  log1 = open(tmp_path / 'first.log', 'w')
  first = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log1, stderr=subprocess.STDOUT)
  try:
    _wait_for(lambda: _latest_step(workdir) >= 3, first, 240, 'a checkpoint')
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
  finally:
    first.kill()
  killed_at = _latest_step(workdir)
  assert killed_at >= 3

  log2_path = tmp_path / 'second.log'
  second = subprocess.Popen(command, cwd=REPO_ROOT, stdout=open(log2_path, 'w'),
                            stderr=subprocess.STDOUT)
  try:
    _wait_for(lambda: 'Resumed from' in log2_path.read_text() and
              _latest_step(workdir) > killed_at, second, 240, 'a resumed checkpoint')
    time.sleep(1)  # let it take a few more steps past that checkpoint
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=120) == 0, log2_path.read_text()[-3000:]
  finally:
    second.kill()
  log = log2_path.read_text()
  assert f'Resumed from {workdir}/checkpoints/ckpt-{killed_at} at step {killed_at}' in log
  assert 'Received SIGTERM' in log
  stopped_at = _latest_step(workdir)
  assert f'checkpoint saved at step {stopped_at}' in log


# ---------------------------------------------------------------------------------------------
# Nothing a user gave is lost: valid configs run end to end, failed starts leave nothing behind,
# side tasks never cost the training.


@pytest.mark.slow
def test_gray_to_colour_run_trains_summarises_evaluates_and_exports(tmp_path):
  """input_nc 1 -> output_nc 3 (the reference's colourisation setup, lambda_identity 0)."""
  from cyclegan_tf import evaluate, export  # pylint: disable=g-import-not-at-top
  config = tiny_config(**{'model.input_nc': 1, 'loss.lambda_identity': 0.0,
                          'train.max_steps': 4, 'train.image_every_steps': 2,
                          'train.eval_every_steps': 4, 'eval.classifier_epochs': 1})
  workdir = str(tmp_path / 'run')
  assert train.train_and_evaluate(config, workdir) == 4
  assert _latest_step(workdir) == 4
  grid = tf.io.decode_png(open(run_dir.samples_path(workdir, 4), 'rb').read())
  assert grid.shape == (4 * 32, 6 * 32, 3)
  with open(run_dir.metrics_path(workdir, 4)) as f:
    metrics = json.load(f)
  assert metrics['step'] == 4 and 'swd_a2b' in metrics and 'classifier_b2a' in metrics
  assert 'psnr_a2b' not in metrics  # 1 vs 3 channels: no pixel-wise comparison
  assert evaluate.evaluate(config, workdir)['step'] == 4
  paths = export.export_run(config, workdir, export_dir=str(tmp_path / 'export'))
  with open(os.path.join(paths['cyclegan_a2b'], export.METADATA_PATH)) as f:
    meta = json.load(f)
  assert (meta['input_channels'], meta['output_channels']) == (1, 3)


@pytest.mark.slow
def test_a_failed_start_leaves_no_run_and_the_corrected_command_runs(tmp_path):
  workdir = str(tmp_path / 'run')
  bad_data = tiny_config(**{'data.dataset': 'folder', 'data.root': str(tmp_path / 'none')})
  with pytest.raises(configuration.DataError, match='is not a directory'):
    train.train_and_evaluate(bad_data, workdir)
  too_late = tiny_config(**{'train.epoch_count': 3})  # n_epochs 1 + n_epochs_decay 1
  with pytest.raises(configuration.ConfigError,
                     match=r'epoch_count=3 starts after the schedule ends.*nothing would be'):
    train.train_and_evaluate(too_late, workdir)
  assert not os.path.exists(os.path.join(workdir, 'config.json'))
  fixed = tiny_config(**{'model.ngf': 8, 'train.max_steps': 2})  # another architecture: fine
  assert train.train_and_evaluate(fixed, workdir) == 2
  assert json.load(open(os.path.join(workdir, 'config.json')))['model']['ngf'] == 8


def test_a_pool_over_images_of_different_sizes_is_refused_at_start_up(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  for split, size in [('trainA', (20, 24)), ('trainA', (24, 20)), ('trainB', (20, 24)),
                      ('testA', (20, 24)), ('testB', (20, 24))]:
    os.makedirs(tmp_path / 'data' / split, exist_ok=True)
    Image.new('RGB', size[::-1]).save(tmp_path / 'data' / split / f'{size[0]}.png')
  config = tiny_config(**{'data.dataset': 'folder', 'data.root': str(tmp_path / 'data'),
                          'data.preprocess': 'none'})
  with pytest.raises(configuration.ConfigError, match=r'pool_size=50.*different sizes.*'
                     r'pool_size=0'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run' / 'config.json')


def test_rerunning_a_finished_run_says_how_to_extend_it(trained_run, tmp_path, caplog):
  config, finished = trained_run
  workdir = str(tmp_path / 'run')
  shutil.copytree(finished, workdir)
  mtime = os.stat(os.path.join(workdir, 'config.json')).st_mtime_ns
  with caplog.at_level(logging.INFO, logger='absl'):
    assert train.train_and_evaluate(config, workdir) == 24
  assert 'is complete. To train longer, rerun with a larger --config.train.n_epochs' in (
      caplog.text)
  assert os.stat(os.path.join(workdir, 'config.json')).st_mtime_ns == mtime
  assert _latest_step(workdir) == 24


@pytest.mark.slow
def test_a_failing_side_task_is_logged_and_training_goes_on(tmp_path, monkeypatch, caplog):
  def broken(*args):
    raise RuntimeError('summary writer exploded')
  monkeypatch.setattr(train, '_write_samples', broken)
  config = tiny_config(**{'train.max_steps': 4, 'train.image_every_steps': 2})
  workdir = str(tmp_path / 'run')
  with caplog.at_level(logging.INFO, logger='absl'):
    assert train.train_and_evaluate(config, workdir) == 4
  assert _latest_step(workdir) == 4
  assert 'Sample images failed at step 2; training continues' in caplog.text


@pytest.mark.slow
def test_images_of_their_own_sizes_train_and_evaluate(tmp_path):
  """preprocess none (the reference's test-time mode, also used to train): every image keeps
  its size, rounded to multiples of 4; batch 1 and no pool. Summaries and evaluation run on
  the mixed sizes (exports take any size: tests/test_export.py)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  for split, sizes in [('trainA', [(32, 24), (24, 36), (30, 30)]), ('trainB', [(28, 32)]),
                       ('testA', [(32, 24), (24, 36)]), ('testB', [(28, 32), (32, 32)])]:
    os.makedirs(tmp_path / 'data' / split)
    for i, (h, w) in enumerate(sizes):
      Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
          tmp_path / 'data' / split / f'{i}.png')
  config = tiny_config(**{'data.dataset': 'folder', 'data.root': str(tmp_path / 'data'),
                          'data.preprocess': 'none', 'train.pool_size': 0,
                          'train.max_steps': 3, 'train.image_every_steps': 3,
                          'train.eval_every_steps': 3, 'eval.classifier_epochs': 1})
  workdir = str(tmp_path / 'run')
  assert train.train_and_evaluate(config, workdir) == 3
  assert os.path.isfile(run_dir.samples_path(workdir, 3))
  with open(run_dir.metrics_path(workdir, 3)) as f:
    assert json.load(f)['num_images_a'] == 2
