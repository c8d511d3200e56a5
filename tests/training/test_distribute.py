"""Distribution strategies on CPU: 2-replica MirroredStrategy, two-worker MultiWorkerMirrored,
cross-strategy resume, per-replica image pools.

Every strategy run needs its own process (logical devices are fixed when TF starts; a worker is
a process), so tests/strategy_worker.py runs them: one process for everything MirroredStrategy
(2 logical CPU devices) and two worker processes on 127.0.0.1, started together, once per
module. The tests compare what they leave behind.

Equivalence. Two replicas at global batch 2 compute the same per-example math as one device at
batch 2 (instance norm keeps examples independent, losses are averaged over the global batch),
but sums run in another order, and on AVX-512 oneDNN picks other kernels per batch size, so
the results differ by float rounding; Adam's first steps then move every weight whose gradient
is within rounding of zero by a full +-lr either way. Comparing weights element by element
therefore depends on the CPU. What must hold on any CPU, and fails on a real mistake:
  * step 1 (same weights, same batch): the logged losses agree to 1e-5 relative. A loss
    scaled by the replica count, or a replica training on the wrong examples, breaks this;
  * after 3 steps, each network's OUTPUT on fixed inputs differs from one device's by less
    than conftest.EQUIVALENCE_BOUND of how far those 3 steps moved that output from the initial
    weights' output. A weight with a near-zero gradient barely changes outputs, however Adam
    moves it; a wrong gradient does. The measure is checked to fail on 2 extra steps (the
    resumed runs at step 5).
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import conftest
from cyclegan_tf import distribute

# Slow (worker processes); one xdist group, so that the module's fixture runs its strategy
# processes once, not once per pytest worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group('strategies')]

WORKER = os.path.join(conftest.TESTS_DIR, 'strategy_worker.py')
TIMEOUT_S = 900


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """Runs the three strategy processes at once; returns their output directory."""
  out = str(tmp_path_factory.mktemp('strategies'))
  env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'}
  ports = f'{_free_port()},{_free_port()}'
  commands = {
      'mirrored': [sys.executable, WORKER, 'mirrored', '--out', out],
      'worker0': [sys.executable, WORKER, 'worker', '--index', '0', '--ports', ports, '--out', out],
      'worker1': [sys.executable, WORKER, 'worker', '--index', '1', '--ports', ports, '--out', out],
  }
  procs = {}
  for name, command in commands.items():
    log = open(os.path.join(out, f'{name}.log'), 'w')  # pylint: disable=consider-using-with
    procs[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), log)
  failed = []
  try:
    for name, (proc, log) in procs.items():
      try:
        rc = proc.wait(timeout=TIMEOUT_S)
      except subprocess.TimeoutExpired:
        proc.kill()
        rc = 'timeout'
      log.close()
      if rc != 0:
        with open(os.path.join(out, f'{name}.log')) as f:
          failed.append(f'--- {name} (exit {rc}):\n' + f.read()[-4000:])
  finally:
    for proc, _ in procs.values():
      if proc.poll() is None:
        proc.kill()
  return out, failed


def _result(runs_, name):
  out, failed = runs_
  path = os.path.join(out, f'{name}.json')
  if not os.path.exists(path):
    pytest.fail(f'{name} left no results.\n' + '\n'.join(failed))
  with open(path) as f:
    return json.load(f)


def _weights(runs_, name):
  out, failed = runs_
  path = os.path.join(out, f'{name}.npz')
  if not os.path.exists(path):
    pytest.fail(f'{name}.npz was not written.\n' + '\n'.join(failed))
  with np.load(path) as data:
    return dict(data)


def _config():
  from conftest import tiny_config  # pylint: disable=g-import-not-at-top
  return tiny_config(**{'model.ngf': 8, 'model.ndf': 8})


def _networks(weights):
  """The four networks of the runs' config holding `weights` ({'G_A/model.1/kernel': ...})."""
  from cyclegan_tf.models import networks  # pylint: disable=g-import-not-at-top
  nets = networks.build_cyclegan(_config().model, gemm_last_conv=False)
  for name, net in nets.items():
    for w in net.weights:
      w.assign(weights[f'{name}/{w.path}'])
  return nets


def output_gaps(got, want, initial):
  """conftest.output_gaps of three weight dicts on 2 fixed images of 32x32."""
  images = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  return conftest.output_gaps(_networks(got), _networks(want), _networks(initial), images)


def _losses(runs_, run, step):
  """{loss name: value} the run logged at `step` (TensorBoard events of logs/train)."""
  from cyclegan_tf.evaluation import plots  # pylint: disable=g-import-not-at-top
  scalars = plots.read_scalars(os.path.join(runs_[0], run, 'logs', 'train'))
  return {tag[len('loss/'):]: values[list(steps).index(step)]
          for tag, (steps, values) in scalars.items() if tag.startswith('loss/')}


def test_pix2pix_on_two_replicas_trains_like_one_device(runs):
  """The family's distributed step for a second model: pix2pix (instance norm, no dropout)
  on 2 replicas logs the losses one device logs on the same global batches, step by step."""
  losses = _result(runs, 'mirrored')['pix2pix_losses']
  mirrored, default = losses['pix2pix_mirrored'], losses['pix2pix_default']
  assert set(mirrored) == set(default) == {'G_GAN', 'G_L1', 'D_real', 'D_fake'}
  for name, values in default.items():
    assert len(values) == len(mirrored[name]) == 3, name
    assert mirrored[name][0] == pytest.approx(values[0], rel=1e-5), name  # the same weights
    np.testing.assert_allclose(mirrored[name], values, rtol=1e-2, atol=1e-4, err_msg=name)


def test_per_replica_pools_keep_their_own_history(runs):
  result = _result(runs, 'mirrored')
  assert result['pool_mismatches'] == 0
  assert result['pool_histories_equal']
  assert result['pool_values_mod_100'] == [[0, 1], [2, 3]]


def test_two_replicas_train_like_one_device(runs):
  result = _result(runs, 'mirrored')
  assert result['mirrored_steps'] == result['default_steps'] == 3
  initial = _weights(runs, 'default_init')
  for path, value in _weights(runs, 'mirrored_init').items():
    np.testing.assert_array_equal(value, initial[path], err_msg=path)
  one, two = _losses(runs, 'default', 1), _losses(runs, 'mirrored', 1)
  assert len(one) == 8
  for name, value in one.items():
    assert two[name] == pytest.approx(value, rel=1e-5), name
  gaps = output_gaps(_weights(runs, 'mirrored_step3'), _weights(runs, 'default_step3'), initial)
  print('2 replicas vs 1 device after 3 steps, output gap / movement:', gaps)
  assert max(gaps.values()) < conftest.EQUIVALENCE_BOUND, gaps


def test_the_equivalence_measure_fails_on_real_differences(runs):
  """Two more steps (the default run resumed to step 5) are a real difference: far above the
  bound, so the bound can catch a wrong gradient."""
  initial = _weights(runs, 'default_init')
  gaps = output_gaps(_weights(runs, 'default_step5'), _weights(runs, 'default_step3'), initial)
  print('step 5 vs step 3 of one device, output gap / movement:', gaps)
  assert min(gaps.values()) > 3 * conftest.EQUIVALENCE_BOUND, gaps


def test_resume_across_strategies_restarts_the_pools(runs):
  result = _result(runs, 'mirrored')
  for name, saved, resumed in (('mirrored', 2, 1), ('default', 1, 2)):
    assert result[f'{name}_resumed_steps'] == 5, name
    logs = '\n'.join(result[f'{name}_resume_logs'])
    assert 'Resumed from' in logs and 'at step 3' in logs, logs
    assert (f'saved with {saved} replica(s) and resumes with {resumed}: the image pools start '
            'empty') in logs, logs


def test_two_workers_end_identical_and_match_one_device(runs):
  workers = [_result(runs, f'worker{i}') for i in range(2)]
  assert [w['steps'] for w in workers] == [3, 3]
  assert [w['replicas'] for w in workers] == [2, 2]
  w0, w1 = _weights(runs, 'worker0'), _weights(runs, 'worker1')
  for path in w0:
    np.testing.assert_array_equal(w0[path], w1[path], err_msg=path)
  gaps = output_gaps(w0, _weights(runs, 'default_step3'), _weights(runs, 'default_init'))
  print('2 workers vs 1 device after 3 steps, output gap / movement:', gaps)
  assert max(gaps.values()) < conftest.EQUIVALENCE_BOUND, gaps
  one, two = _losses(runs, 'default', 1), _losses(runs, 'multi_worker', 1)
  for name, value in one.items():
    assert two[name] == pytest.approx(value, rel=1e-5), name
  # Only the chief's files stay: the other worker's temporary checkpoint directory is gone once
  # both have ended (the chief's own listing may still show it: worker 1 removes it last).
  workdir = os.path.join(runs[0], 'multi_worker')
  chief_files = [e for e in workers[0]['workdir_entries'] if not e.startswith('.worker')]
  assert sorted(os.listdir(workdir)) == sorted(chief_files)
  assert {'checkpoints', 'config.json', 'logs'} <= set(chief_files)
  assert not [e for e in os.listdir(workdir) if e.startswith('.worker')]
  assert os.path.exists(os.path.join(workdir, 'checkpoints', 'ckpt-3.index'))


def test_worker_dir_and_any_worker_outside_multi_worker():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  strategy = tf.distribute.get_strategy()
  assert distribute.is_chief(strategy)
  assert distribute.worker_dir('/w/checkpoints', strategy) == '/w/checkpoints'
  distribute.remove_worker_dir('/w/checkpoints', strategy)  # no-op on the chief
  assert distribute.any_worker(strategy, 'SIGTERM') is True
  assert distribute.any_worker(strategy, None) is False
