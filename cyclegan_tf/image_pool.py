"""The reference's ImagePool: a history of generated images the discriminators also see.

The reference keeps a Python list; here the history lives in TF variables so it runs inside the
compiled train step, is saved with every checkpoint, and is kept per replica under a
tf.distribute strategy. Semantics per image, as the reference: while the pool is not full,
store the new image and return it; once full, with probability 0.5 return a random stored image
and put the new one in its place, otherwise return the new image. Randomness is stateless,
seeded by the caller (the train step passes its step counter), so a resumed run draws the same
numbers as an uninterrupted one.
"""

from absl import logging
import tensorflow as tf


class ImagePool(tf.__internal__.tracking.Trackable):
  """A pool of `pool_size` images of `image_shape` (H, W, C) per replica; size 0 returns its input.

  The reference has one pool per process (one GPU). Here every replica of the train step keeps
  its own history, so the replicas neither share nor synchronise pool images: replica r reads
  only its own pool, with the same seeds as on one device. Outside any strategy (or with one
  replica) this is the reference's single pool.

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

  def images(self, replica=0):
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

    Called once per step by every replica, with this replica's images; each image draws from
    the seed folded with its index in the batch.
    """
    if self.pool_size == 0:
      return images
    images = tf.cast(images, tf.float32)
    context = tf.distribute.get_replica_context()
    if context is None:
      raise RuntimeError('ImagePool.query runs in a replica context (inside '
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
