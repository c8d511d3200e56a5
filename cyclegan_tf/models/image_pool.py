"""The reference's ImagePool: a history of generated images the discriminators also see.

The reference keeps a Python list; here the history lives in TF variables so it runs inside the
compiled train step, is saved with every checkpoint, and is kept per replica under a
tf.distribute strategy. Semantics per image, as the reference: while the pool is not full,
store the new image and return it; once full, with probability 0.5 return a random stored image
and put the new one in its place, otherwise return the new image. Randomness is stateless,
seeded by the caller (the train step passes its step counter), so a resumed run draws the same
numbers as an uninterrupted one.

Images of any size, as the reference's list holds. With a fixed image shape (the cropping
preprocess modes) the pool stores exactly that shape. When the sizes vary (preprocess none or
scale_width, batch 1), every image is stored zero-padded at the top left of a slot of the
largest training size (max_shape), with its true (h, w) alongside, and a stored image comes
back cropped to that size: the returned batch is [1, h, w, C] of whichever image it is (the
discriminators are fully convolutional). The padding costs memory: pool_size x H_max x W_max x
C floats per replica, logged at start-up.
"""

from absl import logging
import numpy as np
import tensorflow as tf


class ImagePool(tf.__internal__.tracking.Trackable):
  """A pool of `pool_size` images of `image_shape` (H, W, C) per replica; size 0 returns its input.

  Args:
    pool_size: images kept per replica (the reference's --pool_size); 0: no pool.
    image_shape: (H, W, C) of the images queried; None sides when their sizes vary.
    replicas: the strategy's replicas in sync (one history each).
    name: prefix of the variables' names and of log lines.
    max_shape: (H_max, W_max, C), the largest images queried: the storage size, needed when
      image_shape has None sides and pool_size > 0; ignored for a fixed image_shape.

  The reference has one pool per process (one GPU). Here every replica of the train step keeps
  its own history, so the replicas neither share nor synchronise pool images: replica r reads
  only its own pool, with the same seeds as on one device. Outside any strategy (or with one
  replica) this is the reference's single pool.

  Storage: one (replicas * pool_size, H, W, C) float32 variable and a (replicas,) count, plus
  for images of varying sizes a (replicas * pool_size, 2) int32 variable of the stored images'
  (h, w) (their storage is (H_max, W_max, C), zero-padded). All are created in
  strategy.scope(), so they are mirrored: every replica (on every worker) holds the pools of
  ALL replicas. Each step the replicas all-gather their few updated slots (the per-replica
  batch: slot, image, size, count) and every replica applies all of them to its own copy
  (aggregation NONE: local writes, no cross-device copies), so the copies stay identical and a
  checkpoint -- written from any one copy, on the chief under multi-worker -- holds every
  replica's pool: resuming under the same strategy is exact. Cost: replicas x the memory of
  one pool per device (50 images of 256x256x3 = 39 MB per pool and replica).

  Checkpoints: the pool saves its tensors under its own keys ('images', 'num_images', and
  'sizes' when sizes vary). Restoring a checkpoint written with a different number of replicas
  (or pool size, or image or storage shape) leaves the pools empty and logs it, instead of
  failing: training continues under any other strategy with fresh pools, as the reference
  starts every run. A checkpoint of a fixed-size pool has no 'sizes', so it cannot restore a
  pool of varying sizes (TF reports the missing key); the trainer picks the kind from the
  training images, which a resumed run keeps unless its data change.
  """

  def __init__(self, pool_size, image_shape, replicas=1, name=None, max_shape=None):
    self.pool_size = int(pool_size)
    self.image_shape = tuple(image_shape)
    self.replicas = int(replicas)
    self.name = name or 'image_pool'
    self.varying = any(d is None for d in self.image_shape)
    self._images = self._num_images = self._sizes = None
    self.storage_shape = None if self.varying else tuple(int(d) for d in self.image_shape)
    if self.varying and self.pool_size > 0:
      if max_shape is None or len(max_shape) != 3 or any(d is None for d in max_shape):
        raise ValueError(
            f'Image pool {self.name}: images of varying sizes {self.image_shape} need max_shape='
            f'(H_max, W_max, C), the largest image, to size the storage; got {max_shape}.')
      self.storage_shape = tuple(int(d) for d in max_shape)
      for want, got in zip(self.image_shape, self.storage_shape):
        if want is not None and want != got:
          raise ValueError(f'Image pool {self.name}: max_shape {self.storage_shape} does not '
                           f'fit images of shape {self.image_shape}.')
    if self.pool_size > 0:
      slots = self.replicas * self.pool_size
      # Created by hand (not tracked as children): _serialize_to_tensors saves them, so that
      # a checkpoint of another shape can be handled instead of failing the whole restore.
      self._images = tf.Variable(
          tf.zeros((slots,) + self.storage_shape, tf.float32),
          trainable=False, name=f'{self.name}_images',
          aggregation=tf.VariableAggregation.NONE)
      self._num_images = tf.Variable(
          tf.zeros((self.replicas,), tf.int32), trainable=False, name=f'{self.name}_num_images',
          aggregation=tf.VariableAggregation.NONE)
      if self.varying:
        self._sizes = tf.Variable(
            tf.zeros((slots, 2), tf.int32), trainable=False, name=f'{self.name}_sizes',
            aggregation=tf.VariableAggregation.NONE)
        h, w, c = self.storage_shape
        logging.info('Image pool %s: images of varying sizes are stored padded to %dx%dx%d: '
                     '%d replica(s) x %d images = %.1f MB.', self.name, h, w, c, self.replicas,
                     self.pool_size, slots * h * w * c * 4 / 2**20)

  # ---- state, for callers and tests (cross-replica context) ----
  @property
  def variables(self):
    if self.pool_size == 0:
      return ()
    if self.varying:
      return (self._images, self._num_images, self._sizes)
    return (self._images, self._num_images)

  def num_images(self, replica=None):
    """Images stored by one replica (or all, as a (replicas,) array)."""
    counts = self._num_images.numpy()
    return counts if replica is None else int(counts[replica])

  def images(self, replica=0):
    """The (pool_size, H, W, C) stored images of one replica (only num_images are valid).

    For images of varying sizes: (pool_size, H_max, W_max, C), image i in [:sizes[i][0],
    :sizes[i][1]], zeros around it."""
    start = replica * self.pool_size
    return self._images.numpy()[start:start + self.pool_size]

  def sizes(self, replica=0):
    """The (pool_size, 2) int32 (h, w) of one replica's stored images (only num_images are
    valid); the image shape's (H, W) for every slot when it is fixed."""
    if self.varying:
      start = replica * self.pool_size
      return self._sizes.numpy()[start:start + self.pool_size]
    return np.tile(np.array(self.storage_shape[:2], np.int32), (self.pool_size, 1))

  def reset(self):
    """Empties every replica's pool (its images are forgotten, as at the start of a run)."""
    if self.pool_size > 0:
      self._num_images.assign(tf.zeros((self.replicas,), tf.int32))

  # ---- the train step's call (replica context, or outside any strategy) ----
  def query(self, images, seed):
    """Returns images to show the discriminator; `seed` is a [2] int seed for this call.

    images: [B, H, W, C] in [-1, 1], this replica's images. Returns float32 of the same shape
    for a fixed image shape; for images of varying sizes B must be 1 and the result is
    [1, h, w, C] (dynamic h, w): the new image, or a stored one at its own size.

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
    if self.varying:
      return self._query_varying(context, images, seed, count, base)
    outputs, slots, written = [], [], []
    # The per-replica batch is static and small; images are processed one by one because each
    # may replace a stored one that a later image in the same batch can draw. This step's own
    # writes are tracked here (not read back from the variable), so the variable is written
    # once per image after the all-gather.
    for i in range(images.shape[0]):
      swap, filling, slot = self._draw(seed, i, count)
      stored = tf.gather(self._images, base + slot)
      for earlier_slot, earlier_value in zip(slots, written):  # the latest write wins
        stored = tf.where(tf.equal(earlier_slot, slot), earlier_value, stored)
      outputs.append(tf.where(swap, stored, images[i]))
      slots.append(slot)
      written.append(tf.where(tf.logical_or(filling, swap), images[i], stored))
      count += tf.cast(filling, tf.int32)
    self._apply(context, tf.stack(slots), tf.stack(written), count)
    return tf.stack(outputs)

  def _draw(self, seed, i, count):
    """(swap, filling, slot) of image i of the batch: the reference's coin and random slot."""
    image_seed = tf.random.experimental.stateless_fold_in(seed, i)
    draw = tf.random.stateless_uniform([], image_seed)
    slot_seed = tf.random.experimental.stateless_fold_in(image_seed, 1)
    random_slot = tf.random.stateless_uniform([], slot_seed, 0, self.pool_size, tf.int32)
    filling = count < self.pool_size
    swap = tf.logical_and(tf.logical_not(filling), draw > 0.5)
    return swap, filling, tf.where(filling, count, random_slot)

  def _query_varying(self, context, images, seed, count, base):
    """query() for images of varying sizes: one image per replica, stored padded."""
    if images.shape[0] != 1:
      raise ValueError(
          f'Image pool {self.name}: images of varying sizes come one per replica (batch 1), '
          f'got a batch of shape {images.shape}.')
    image = images[0]
    size = tf.shape(image)[:2]
    max_hw = tf.constant(self.storage_shape[:2], tf.int32)
    fits = tf.debugging.assert_less_equal(
        size, max_hw, message=f'Image pool {self.name}: an image is larger than the pool\'s '
        f'max_shape {self.storage_shape}')
    with tf.control_dependencies([fits]):
      padded = tf.pad(image, tf.stack([[0, max_hw[0] - size[0]], [0, max_hw[1] - size[1]],
                                       [0, 0]]))
    padded = tf.ensure_shape(padded, self.storage_shape)
    swap, filling, slot = self._draw(seed, 0, count)
    stored = tf.gather(self._images, base + slot)
    stored_size = tf.gather(self._sizes, base + slot)
    # Padded, then cropped to its own size: the new image comes back unchanged.
    out_size = tf.where(swap, stored_size, size)
    output = tf.slice(tf.where(swap, stored, padded), [0, 0, 0],
                      tf.concat([out_size, [-1]], axis=0))
    keep_new = tf.logical_or(filling, swap)
    self._apply(context, slot[tf.newaxis], tf.where(keep_new, padded, stored)[tf.newaxis],
                count + tf.cast(filling, tf.int32),
                tf.where(keep_new, size, stored_size)[tf.newaxis])
    return output[tf.newaxis]

  def _apply(self, context, slots, written, count, sizes=None):
    """Every replica writes every replica's updates into its own copy of the pools.

    slots: int32 [batch]; written: float32 [batch] + storage shape; count: this replica's new
    count; sizes: int32 [batch, 2] (h, w) of the written images, for images of varying sizes.
    """
    batch = slots.shape[0]
    if self.replicas > 1:
      slots = context.all_gather(slots[tf.newaxis], axis=0)  # (replicas, batch)
      written = context.all_gather(written[tf.newaxis], axis=0)  # (replicas, batch, H, W, C)
      counts = context.all_gather(count[tf.newaxis], axis=0)  # (replicas,)
      if sizes is not None:
        sizes = context.all_gather(sizes[tf.newaxis], axis=0)  # (replicas, batch, 2)
    else:
      slots, written, counts = slots[tf.newaxis], written[tf.newaxis], count[tf.newaxis]
      if sizes is not None:
        sizes = sizes[tf.newaxis]
    rows = tf.range(self.replicas, dtype=tf.int32) * self.pool_size
    # One scatter per image index: its rows belong to different replicas, so never collide;
    # successive scatters on one variable run in program order.
    for i in range(batch):
      self._images.scatter_update(tf.IndexedSlices(written[:, i], rows + slots[:, i]))
      if sizes is not None:
        self._sizes.scatter_update(tf.IndexedSlices(sizes[:, i], rows + slots[:, i]))
    self._num_images.assign(counts)

  # ---- checkpointing ----
  def _serialize_to_tensors(self):
    if self.pool_size == 0:
      return {}
    tensors = {'images': self._images.read_value(), 'num_images': self._num_images.read_value()}
    if self.varying:
      tensors['sizes'] = self._sizes.read_value()
    return tensors

  def _restore_from_tensors(self, restored_tensors):
    if self.pool_size == 0 or not restored_tensors:
      return None
    pairs = [(self._images, restored_tensors['images'])]
    if self.varying:
      pairs.append((self._sizes, restored_tensors['sizes']))
    counts = restored_tensors['num_images']
    want_counts = self._num_images.shape
    if tf.executing_eagerly():
      if counts.shape == want_counts and all(t.shape == v.shape for v, t in pairs):
        for variable, tensor in pairs:
          variable.assign(tensor)
        return self._num_images.assign(counts)
      logging.info('Image pool %s: the checkpoint holds %s pooled images for %d replica(s); '
                   'this run has %d replica(s) of %d images of %s: the pools start empty.',
                   self.name, pairs[0][1].shape, counts.shape[0], self.replicas, self.pool_size,
                   self.storage_shape)
      return self.reset()

    # The restore runs in a graph when it spans several tasks. Reshape, not ensure_shape: an
    # ensure_shape in a branch lets grappler assume that shape for the input and fold `same`.
    def matching():
      assigns = [v.assign(tf.reshape(t, v.shape)) for v, t in pairs]
      with tf.control_dependencies(assigns):
        return tf.identity(self._num_images.assign(tf.reshape(counts, want_counts)))

    def other():
      return tf.identity(self._num_images.assign(tf.zeros(want_counts, tf.int32)))

    same = tf.reduce_all(tf.stack(
        [tf.reduce_all(tf.equal(tf.shape(t, tf.int64), v.shape.as_list())) for v, t in
         pairs + [(self._num_images, counts)]]))
    return tf.cond(same, matching, other)
