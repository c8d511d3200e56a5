"""The tf.distribute strategy a run uses, chosen by config.train.strategy, and what goes with it.

The train loop always runs through a strategy (the default one on one device), so one code
path serves a laptop, every GPU of a host and several hosts:

  default       one device (the first GPU if any, else the CPU)
  mirrored      every local GPU, or config.train.devices ("/gpu:0,/gpu:1", "/cpu:0,/cpu:1")
  multi_worker  tf.distribute.MultiWorkerMirroredStrategy; the cluster comes from TF_CONFIG
  tpu           tf.distribute.TPUStrategy on the TPU the cluster resolver finds

Also here: the multi-worker rules for writing (every worker saves, only the chief's files are
kept). The image pools, one per replica, are image_pool.ImagePool.
"""

import json
import os

from absl import logging
import tensorflow as tf


# Strategies made so far in this process, by (strategy, devices). A second MirroredStrategy over
# the same devices would reuse the first one's collective keys (TF numbers them per strategy
# object) and abort with "Collective instance ... expected type ...", and a process can only
# join a multi-worker cluster once: train_and_evaluate called twice in one process (a test, a
# notebook, a resume under another strategy) reuses the strategy it made before.
_STRATEGIES = {}


def make_strategy(train_config):
  """default | mirrored (config.train.devices or all local GPUs) | multi_worker | tpu."""
  name = train_config.strategy
  if name == 'default':
    return tf.distribute.get_strategy()
  devices = tuple(d.strip() for d in train_config.devices.split(',') if d.strip())
  key = (name, devices if name == 'mirrored' else ())
  if key not in _STRATEGIES:
    _STRATEGIES[key] = _new_strategy(name, devices)
  return _STRATEGIES[key]


def _new_strategy(name, devices):
  if name == 'mirrored':
    return tf.distribute.MirroredStrategy(list(devices) or None)
  if name == 'multi_worker':
    if 'TF_CONFIG' not in os.environ:
      raise ValueError('config.train.strategy="multi_worker" needs the TF_CONFIG environment '
                       'variable describing the cluster (see README: multi-host training).')
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == 'tpu':
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise ValueError(f'Unknown strategy {name!r}; allowed: default, mirrored, multi_worker, tpu.')


def is_multi_worker(strategy):
  """True when the strategy spans several worker processes (collectives between them)."""
  return bool(getattr(strategy.extended, '_in_multi_worker_mode', lambda: False)())


def is_chief_task(tf_config=None):
  """True on the task that owns the run directory, from TF_CONFIG (always without one).

  The chief is the task of type 'chief' when the cluster has one, else worker 0 (TF's rule).
  """
  raw = os.environ.get('TF_CONFIG') if tf_config is None else tf_config
  if not raw:
    return True
  try:
    parsed = json.loads(raw) if isinstance(raw, str) else raw
  except ValueError:
    return True
  task = parsed.get('task', {})
  task_type, task_id = task.get('type'), int(task.get('index', 0) or 0)
  if 'chief' in parsed.get('cluster', {}):
    return task_type == 'chief'
  return task_type in (None, 'worker') and task_id == 0


def is_chief(strategy):
  """True on the worker that owns the run directory (always, outside multi-worker)."""
  if getattr(strategy, 'cluster_resolver', None) is None:
    return True
  return is_chief_task()


def _temporary_root(path, strategy):
  return os.path.join(os.path.dirname(path.rstrip('/')) or '.',
                      f'.worker{strategy.cluster_resolver.task_id}_tmp')


def worker_dir(path, strategy):
  """Where this worker writes: `path` on the chief, a temporary sibling on other workers.

  TF's multi-worker saving pattern: every worker must take part in saving (it may use
  collectives), but only the chief's files are kept; the others are removed afterwards
  (remove_worker_dir). Every worker READS from `path`, the chief's copy (a shared file system,
  e.g. GCS or NFS, when the workers are on several hosts).
  """
  if is_chief(strategy):
    return path
  return os.path.join(_temporary_root(path, strategy), os.path.basename(path.rstrip('/')))


def remove_worker_dir(path, strategy):
  """Deletes what a non-chief worker wrote under worker_dir(path); a no-op on the chief."""
  if is_chief(strategy):
    return
  root = _temporary_root(path, strategy)
  if tf.io.gfile.exists(root):
    tf.io.gfile.rmtree(root)


def any_worker(strategy, flag):
  """True on every worker when `flag` is True on at least one of them.

  For decisions that must be the same everywhere, such as "stop after this step" when only one
  worker got SIGTERM: a worker that stops (and saves) while the others carry on would leave
  them waiting in a collective. A collective itself, so every worker must call it at the same
  point; outside multi-worker it only returns bool(flag).
  """
  if not is_multi_worker(strategy):
    return bool(flag)
  value = tf.constant(1.0 if flag else 0.0)
  per_replica = strategy.experimental_distribute_values_from_function(lambda _: value)
  return float(strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)) > 0


def log_replicas(strategy):
  logging.info('Strategy %s with %d replica(s)%s.', type(strategy).__name__,
               strategy.num_replicas_in_sync,
               ' over several workers' if is_multi_worker(strategy) else '')
