"""Distribution-strategy runs for tests/training/test_distribute.py, one job per process.

A strategy test needs its own process: logical CPU devices must be configured before TF
initialises, and a MultiWorkerMirroredStrategy worker is a process of its own. Jobs:

  python tests/strategy_worker.py mirrored --out DIR
      On 2 logical CPU devices: per-replica image pools under MirroredStrategy; then
      train_and_evaluate, 3 steps at global batch 2, on 2 replicas (DIR/mirrored) and on one
      device (DIR/default), both from the same initial weights (DIR/init.npz); then each run
      resumes to step 5 under the other strategy (2 -> 1 and 1 -> 2 replicas).
  python tests/strategy_worker.py worker --index I --ports P0,P1 --out DIR
      One of two MultiWorkerMirroredStrategy workers on 127.0.0.1 (TF_CONFIG set here): the same
      3 steps through train_and_evaluate, in DIR/multi_worker (shared by both workers).

Each job writes DIR/<job>.json (results) and .npz files of network weights keyed
"<net>/<variable path>"; the test process compares them (it holds the tolerances).
"""

import argparse
import json
import logging as py_logging
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, os.path.join(REPO_ROOT, 'tests'))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

STEPS = 3
RESUMED_STEPS = 5


def tiny_config(strategy, devices='', max_steps=STEPS):
  """resnet_6blocks, ngf 8, 32 px, global batch 2, pools filling (so they return the new image:
  replicas then see exactly what one device sees, and the pools are non-empty at a resume)."""
  from conftest import tiny_config as base  # pylint: disable=g-import-not-at-top
  return base(**{
      'model.ngf': 8, 'model.ndf': 8, 'train.batch_size': 2, 'train.pool_size': 50,
      'train.max_steps': max_steps, 'train.strategy': strategy, 'train.devices': devices,
      'train.log_every_steps': 1, 'train.image_every_steps': 1000,
      'train.checkpoint_every_steps': 1000,
  })


class _Messages(py_logging.Handler):
  """Collects the absl log lines of the run (the 'pools start empty' note)."""

  def __init__(self):
    super().__init__(py_logging.INFO)
    self.lines = []

  def emit(self, record):
    self.lines.append(record.getMessage())


def _capture_logs():
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.INFO)
  handler = _Messages()
  py_logging.getLogger('absl').addHandler(handler)
  return handler


def _weights(nets):
  return {f'{name}/{w.path}': w.numpy() for name, net in nets.items() for w in net.weights}


def checkpoint_weights(config, path):
  """The four networks' weights stored in a train checkpoint."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from cyclegan_tf.models import networks  # pylint: disable=g-import-not-at-top
  nets = networks.build_cyclegan(config.model, gemm_last_conv=False)
  tf.train.Checkpoint(**nets).restore(path).expect_partial()
  return _weights(nets)


def _save(out, name, result, weights=None):
  import numpy as np  # pylint: disable=g-import-not-at-top
  if weights is not None:
    np.savez(os.path.join(out, f'{name}.npz'), **weights)
  with open(os.path.join(out, f'{name}.json'), 'w') as f:
    json.dump(result, f)


def _pool_check(strategy):
  """Per-replica pools under MirroredStrategy: replica r's outputs and history equal those of a
  separate one-replica image_pool.ImagePool fed only replica r's images with replica r's seeds."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from cyclegan_tf.models import image_pool  # pylint: disable=g-import-not-at-top
  shape, size, per_replica = (2, 2, 1), 3, 2
  with strategy.scope():
    pool = image_pool.ImagePool(size, shape, strategy.num_replicas_in_sync, name='pool')
  singles = [image_pool.ImagePool(size, shape) for _ in range(strategy.num_replicas_in_sync)]

  def replica_fn(images, step):
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    seed = tf.random.experimental.stateless_fold_in(tf.stack([tf.constant(7, tf.int64), step]),
                                                    replica)
    return pool.query(images, seed)

  step_fn = tf.function(lambda images, step: strategy.run(replica_fn, args=(images, step)))
  mismatches = 0
  for step in range(12):
    values = np.arange(per_replica * 2, dtype=np.float32) + 100 * step  # replica r: 2 images
    batch = np.broadcast_to(values[:, None, None, None], (per_replica * 2,) + shape).copy()
    dist = strategy.experimental_distribute_values_from_function(
        lambda ctx, b=batch: tf.constant(
            b[ctx.replica_id_in_sync_group * per_replica:][:per_replica]))
    got = strategy.experimental_local_results(step_fn(dist, tf.constant(step, tf.int64)))
    for r, single in enumerate(singles):
      seed = tf.random.experimental.stateless_fold_in(tf.constant([7, step], tf.int64), r)
      want = single.query(tf.constant(batch[r * per_replica:][:per_replica]), seed)
      mismatches += int(not np.array_equal(got[r].numpy(), want.numpy()))
  histories_equal = all(
      np.array_equal(pool.images(r), single.images()) and
      pool.num_images(r) == single.num_images(0) for r, single in enumerate(singles))
  # Each replica's history holds only its own images (values 0, 1 +100k: replica 0; 2, 3: 1).
  own = [sorted({int(v) % 100 for v in pool.images(r).ravel()}) for r in range(2)]
  return {'pool_mismatches': mismatches, 'pool_histories_equal': histories_equal,
          'pool_values_mod_100': own}


def _record_trainers(train):
  """Makes train_and_evaluate's trainers available: returns the list they are appended to."""
  trainers = []

  class Recorded(train.train_state_lib.TrainState):

    def __init__(self, *args, **kwargs):
      super().__init__(*args, **kwargs)
      self.initial_weights = _weights(self.model.networks)
      trainers.append(self)

  train.train_state_lib.TrainState = Recorded
  return trainers


def mirrored_job(out):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  cpu = tf.config.list_physical_devices('CPU')[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  from cyclegan_tf.training import train  # pylint: disable=g-import-not-at-top
  logs = _capture_logs()
  trainers = _record_trainers(train)
  devices = '/cpu:0,/cpu:1'
  from cyclegan_tf import distribute  # pylint: disable=g-import-not-at-top
  # The strategy train_and_evaluate will use too (distribute.make_strategy keeps one per
  # device list: two MirroredStrategy objects in a process clash in their collectives).
  result = _pool_check(distribute.make_strategy(tiny_config('mirrored', devices).train))
  runs = {'mirrored': ('mirrored', devices, 'default', ''),
          'default': ('default', '', 'mirrored', devices)}
  for name, (first, first_devices, second, second_devices) in runs.items():
    workdir = os.path.join(out, name)
    config = tiny_config(first, first_devices)
    result[f'{name}_steps'] = train.train_and_evaluate(config, workdir)
    _save(out, f'{name}_init', {}, trainers[-1].initial_weights)
    _save(out, f'{name}_step{STEPS}', {},
          checkpoint_weights(config, os.path.join(workdir, 'checkpoints', f'ckpt-{STEPS}')))
    del logs.lines[:]
    resumed = train.train_and_evaluate(tiny_config(second, second_devices, RESUMED_STEPS),
                                       workdir)
    result[f'{name}_resumed_steps'] = resumed
    _save(out, f'{name}_step{RESUMED_STEPS}', {}, checkpoint_weights(
        config, os.path.join(workdir, 'checkpoints', f'ckpt-{RESUMED_STEPS}')))
    result[f'{name}_resume_logs'] = [line for line in logs.lines
                                     if 'pool' in line or 'Resumed' in line]
  result.update(_pix2pix_runs(out, train, devices))
  _save(out, 'mirrored', result)


def pix2pix_config(strategy, devices=''):
  """pix2pix with instance norm and no dropout (so that 2 replicas compute what one device
  computes on the global batch), resnet_6blocks ngf 8 at 32 px, global batch 2."""
  from configs import pix2pix  # pylint: disable=g-import-not-at-top
  config = pix2pix.get_config()
  config.model.netG, config.model.ngf, config.model.ndf = 'resnet_6blocks', 8, 8
  config.model.norm, config.model.no_dropout = 'instance', True
  config.data.load_size, config.data.crop_size = 36, 32
  config.data.synthetic_train_size, config.data.synthetic_test_size = 8, 2
  config.train.batch_size, config.train.max_steps = 2, STEPS
  config.train.strategy, config.train.devices = strategy, devices
  config.train.log_every_steps, config.train.image_every_steps = 1, 1000
  return config


def _pix2pix_runs(out, train, devices):
  """pix2pix 3 steps on 2 replicas and on one device: {run: {loss: [per step]}}."""
  from cyclegan_tf.evaluation import plots  # pylint: disable=g-import-not-at-top
  losses = {}
  for name, strategy, strategy_devices in (('pix2pix_mirrored', 'mirrored', devices),
                                           ('pix2pix_default', 'default', '')):
    workdir = os.path.join(out, name)
    train.train_and_evaluate(pix2pix_config(strategy, strategy_devices), workdir)
    scalars = plots.read_scalars(os.path.join(workdir, 'logs', 'train'))
    losses[name] = {tag[len('loss/'):]: [float(v) for v in values]
                    for tag, (_, values) in scalars.items() if tag.startswith('loss/')}
  return {'pix2pix_losses': losses}


def worker_job(out, index, ports):
  os.environ['TF_CONFIG'] = json.dumps({
      'cluster': {'worker': [f'127.0.0.1:{p}' for p in ports]},
      'task': {'type': 'worker', 'index': index}})
  from cyclegan_tf.training import train  # pylint: disable=g-import-not-at-top
  trainers = _record_trainers(train)
  workdir = os.path.join(out, 'multi_worker')
  steps = train.train_and_evaluate(tiny_config('multi_worker'), workdir)
  trainer, = trainers
  nets = trainer.model.networks
  result = {'steps': steps, 'replicas': trainer.strategy.num_replicas_in_sync,
            'workdir_entries': sorted(os.listdir(workdir))}
  _save(out, f'worker{index}', result, _weights(nets))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('job', choices=('mirrored', 'worker'))
  parser.add_argument('--out', required=True)
  parser.add_argument('--index', type=int, default=0)
  parser.add_argument('--ports', default='')
  args = parser.parse_args()
  if args.job == 'mirrored':
    mirrored_job(args.out)
  else:
    worker_job(args.out, args.index, [int(p) for p in args.ports.split(',')])


if __name__ == '__main__':
  main()
