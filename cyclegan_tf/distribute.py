"""The tf.distribute strategy a run uses, chosen by config.train.strategy, and what goes with it.

The train loop always runs through a strategy (the default one on one device), so one code
path serves a laptop, every GPU of a host and several hosts:

  default       one device (the first GPU if any, else the CPU)
  mirrored      every local GPU, or config.train.devices ("/gpu:0,/gpu:1", "/cpu:0,/cpu:1")
  multi_worker  tf.distribute.MultiWorkerMirroredStrategy; the cluster comes from TF_CONFIG
  tpu           tf.distribute.TPUStrategy on the TPU the cluster resolver finds

Also here: the image pools of the train step, one per replica (ReplicaImagePool), and the
multi-worker rules for writing (every worker saves, only the chief's files are kept).
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
  devices = tuple(d.strip() for d in train_config.get('devices', '').split(',') if d.strip())
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


def is_chief(strategy):
  """True on the worker that owns the run directory (always, outside multi-worker)."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None or not os.environ.get('TF_CONFIG'):
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  cluster = json.loads(os.environ['TF_CONFIG']).get('cluster', {})
  if 'chief' in cluster:
    return task_type == 'chief'
  return task_type in (None, 'worker') and task_id == 0


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


class ReplicaImagePool(tf.__internal__.tracking.Trackable):
  """image_pool.ImagePool's semantics, with one pool per replica.

  The reference has one pool per process (one GPU). Here every replica of the train step keeps
  its own history, so the replicas neither share nor synchronise pool images: replica r reads
  only its own pool, exactly like image_pool.ImagePool with the same seeds (one replica gives
  bit-identical results to ImagePool).

  Storage: one (replicas * pool_size, H, W, C) float32 variable and a (replicas,) count,
  created in strategy.scope(), so they are mirrored: every replica (on every worker) holds the
  pools of ALL replicas. Each step the replicas all-gather their few updated slots (the per-
  replica batch: slot, image, count) and every replica applies all of them to its own copy
  (aggregation NONE: local writes, no cross-device copies), so the copies stay identical and a
  checkpoint -- written from any one copy, on the chief under multi-worker -- holds every
  replica's pool: resuming under the same strategy is exact. Cost: replicas x the memory of
  one pool per device (50 images of 256x256x3 = 39 MB per pool and replica).

  Checkpoints: the pool saves its two tensors under its own keys. Restoring a checkpoint
  written with a different number of replicas (or pool size, or image shape) leaves the pools
  empty and logs it, instead of failing: training continues under any other strategy with
  fresh pools, as the reference starts every run.
  """

  def __init__(self, pool_size, image_shape, replicas=1, name=None):
    self.pool_size = int(pool_size)
    self.image_shape = tuple(image_shape)
    self.replicas = int(replicas)
    self.name = name or 'image_pool'
    self._images = self._num_images = None
    if self.pool_size > 0:
      if any(d is None for d in self.image_shape):
        raise ValueError(
            f'The image pool stores images of one fixed size, but training images have shape '
            f'{self.image_shape}. Use a cropping preprocess (resize_and_crop, crop, '
            'scale_width_and_crop) or set config.train.pool_size=0.')
      # Created by hand (not tracked as children): _serialize_to_tensors saves them, so that
      # a checkpoint of another shape can be handled instead of failing the whole restore.
      self._images = tf.Variable(
          tf.zeros((self.replicas * self.pool_size,) + self.image_shape, tf.float32),
          trainable=False, name=f'{self.name}_images',
          aggregation=tf.VariableAggregation.NONE)
      self._num_images = tf.Variable(
          tf.zeros((self.replicas,), tf.int32), trainable=False, name=f'{self.name}_num_images',
          aggregation=tf.VariableAggregation.NONE)

  # ---- state, for callers and tests (cross-replica context) ----
  @property
  def variables(self):
    return () if self.pool_size == 0 else (self._images, self._num_images)

  def num_images(self, replica=None):
    """Images stored by one replica (or all, as a (replicas,) array)."""
    counts = self._num_images.numpy()
    return counts if replica is None else int(counts[replica])

  def images(self, replica):
    """The (pool_size, H, W, C) stored images of one replica (only num_images are valid)."""
    start = replica * self.pool_size
    return self._images.numpy()[start:start + self.pool_size]

  def reset(self):
    """Empties every replica's pool (its images are forgotten, as at the start of a run)."""
    if self.pool_size > 0:
      self._num_images.assign(tf.zeros((self.replicas,), tf.int32))

  # ---- the train step's call (replica context, or outside any strategy) ----
  def query(self, images, seed):
    """Returns images to show the discriminator; `seed` is a [2] int seed for this call.

    Called once per step by every replica, with this replica's images (the same seed
    derivation as image_pool.ImagePool.query, per image).
    """
    if self.pool_size == 0:
      return images
    images = tf.cast(images, tf.float32)
    context = tf.distribute.get_replica_context()
    if context is None:
      raise RuntimeError('ReplicaImagePool.query runs in a replica context (inside '
                         'strategy.run, or outside any strategy scope).')
    replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
    count = tf.gather(self._num_images, replica)
    base = replica * self.pool_size
    outputs, slots, written = [], [], []
    # The per-replica batch is static and small; images are processed one by one because each
    # may replace a stored one that a later image in the same batch can draw. This step's own
    # writes are tracked here (not read back from the variable), so the variable is written
    # once per image after the all-gather.
    for i in range(images.shape[0]):
      image_seed = tf.random.experimental.stateless_fold_in(seed, i)
      draw = tf.random.stateless_uniform([], image_seed)
      slot_seed = tf.random.experimental.stateless_fold_in(image_seed, 1)
      random_slot = tf.random.stateless_uniform([], slot_seed, 0, self.pool_size, tf.int32)
      filling = count < self.pool_size
      swap = tf.logical_and(tf.logical_not(filling), draw > 0.5)
      slot = tf.where(filling, count, random_slot)
      stored = tf.gather(self._images, base + slot)
      for earlier_slot, earlier_value in zip(slots, written):  # the latest write wins
        stored = tf.where(tf.equal(earlier_slot, slot), earlier_value, stored)
      outputs.append(tf.where(swap, stored, images[i]))
      slots.append(slot)
      written.append(tf.where(tf.logical_or(filling, swap), images[i], stored))
      count += tf.cast(filling, tf.int32)
    self._apply(context, tf.stack(slots), tf.stack(written), count)
    return tf.stack(outputs)

  def _apply(self, context, slots, written, count):
    """Every replica writes every replica's updates into its own copy of the pools."""
    batch = slots.shape[0]
    if self.replicas > 1:
      slots = context.all_gather(slots[tf.newaxis], axis=0)  # (replicas, batch)
      written = context.all_gather(written[tf.newaxis], axis=0)  # (replicas, batch, H, W, C)
      counts = context.all_gather(count[tf.newaxis], axis=0)  # (replicas,)
    else:
      slots, written, counts = slots[tf.newaxis], written[tf.newaxis], count[tf.newaxis]
    rows = tf.range(self.replicas, dtype=tf.int32) * self.pool_size
    # One scatter per image index: its rows belong to different replicas, so never collide;
    # successive scatters on one variable run in program order.
    for i in range(batch):
      self._images.scatter_update(tf.IndexedSlices(written[:, i], rows + slots[:, i]))
    self._num_images.assign(counts)

  # ---- checkpointing ----
  def _serialize_to_tensors(self):
    if self.pool_size == 0:
      return {}
    return {'images': self._images.read_value(), 'num_images': self._num_images.read_value()}

  def _restore_from_tensors(self, restored_tensors):
    if self.pool_size == 0 or not restored_tensors:
      return None
    images, counts = restored_tensors['images'], restored_tensors['num_images']
    want_images, want_counts = self._images.shape, self._num_images.shape
    if tf.executing_eagerly():
      if images.shape == want_images and counts.shape == want_counts:
        self._images.assign(images)
        return self._num_images.assign(counts)
      logging.info('Image pool %s: the checkpoint holds %s pooled images for %d replica(s); '
                   'this run has %d replica(s) of %d images of %s: the pools start empty.',
                   self.name, images.shape, counts.shape[0], self.replicas, self.pool_size,
                   self.image_shape)
      return self.reset()

    def matching():  # the restore runs in a graph when it spans several tasks
      with tf.control_dependencies([self._images.assign(tf.ensure_shape(images, want_images))]):
        return tf.identity(self._num_images.assign(tf.ensure_shape(counts, want_counts)))

    def other():
      return tf.identity(self._num_images.assign(tf.zeros(want_counts, tf.int32)))

    same = tf.logical_and(
        tf.reduce_all(tf.equal(tf.shape(images, tf.int64), want_images.as_list())),
        tf.reduce_all(tf.equal(tf.shape(counts, tf.int64), want_counts.as_list())))
    return tf.cond(same, matching, other)
