"""Distribution strategies on CPU: 2-replica MirroredStrategy, two-worker MultiWorkerMirrored,
cross-strategy resume, per-replica image pools.

Every strategy run needs its own process (logical devices are fixed when TF starts; a worker is
a process), so tests/strategy_worker.py runs them: one process for everything MirroredStrategy
(2 logical CPU devices) and two worker processes on 127.0.0.1, started together, once per
module. The tests compare what they leave behind.

Equivalence tolerance. Two replicas at global batch 2 compute the same per-example math as one
device at batch 2 (instance norm keeps examples independent, losses are averaged over the
global batch), but the gradient sums run in another order, so weights differ by float rounding.
Adam's first steps move every weight by about lr * sign(g), which amplifies rounding on weights
whose gradient is itself ~0: a conv bias right before an instance norm is cancelled by the norm,
so its gradient is pure rounding (in the reference too): those biases are skipped, as in
tests/test_train_step.py. After 3 steps every other weight must agree to 0.25 * lr (a quarter of
one Adam step) everywhere and to 2e-6 (1% of a step) on all but 0.5% of its elements.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from cyclegan_tf import distribute

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, 'strategy_worker.py')
LR = 2e-4
# Layers whose conv output is not normalised: their biases have real gradients.
_UNNORMALISED = {'model.0', 'model.11', 'model.23'}  # D: first, last conv; G: last (6 blocks)
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


def _skipped(path):
  """A conv bias right before an instance norm (its gradient is rounding noise)."""
  net, *_, layer, var = path.split('/')
  return var == 'bias' and layer not in _UNNORMALISED and net in ('G_A', 'G_B', 'D_A', 'D_B')


def assert_same_weights(got, want, what):
  assert sorted(got) == sorted(want), what
  compared = 0
  for path in want:
    assert got[path].shape == want[path].shape, f'{what}: {path}'
    if _skipped(path):
      continue
    diff = np.abs(got[path] - want[path])
    assert diff.max() < 0.25 * LR, f'{what}: {path} max diff {diff.max()}'
    assert np.mean(diff > 2e-6) <= 0.005, f'{what}: {path}: {np.mean(diff > 2e-6)} > 2e-6'
    compared += 1
  assert compared > 20, what


def test_skip_rule_matches_the_network_layout():
  from configs import default  # pylint: disable=g-import-not-at-top
  from cyclegan_tf import networks  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.model.netG, config.model.ngf, config.model.ndf = 'resnet_6blocks', 4, 4
  nets = networks.build_cyclegan(config.model)
  biases = [f'{n}/{w.path}' for n in nets for w in nets[n].weights if w.path.endswith('bias')]
  kept = [p for p in biases if not _skipped(p)]
  # The only biases not followed by a norm: G's last conv, D's first and last convs.
  assert sorted(p.split('/')[-2] for p in kept) == sorted(
      ['model.23', 'model.23', 'model.0', 'model.11', 'model.0', 'model.11'])


def test_per_replica_pools_keep_their_own_history(runs):
  result = _result(runs, 'mirrored')
  assert result['pool_mismatches'] == 0
  assert result['pool_histories_equal']
  assert result['pool_values_mod_100'] == [[0, 1], [2, 3]]


def test_two_replicas_train_like_one_device(runs):
  result = _result(runs, 'mirrored')
  assert result['mirrored_steps'] == result['default_steps'] == 3
  assert_same_weights(_weights(runs, 'mirrored_step3'), _weights(runs, 'default_step3'),
                      '2 replicas vs 1 device after 3 steps')


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
  assert_same_weights(w0, _weights(runs, 'default_step3'), '2 workers vs 1 device')
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
