"""The reference's ImagePool: a history of generated images the discriminators also see.

The reference keeps a Python list; here the history lives in TF variables so it runs inside the
compiled train step and is saved with every checkpoint. Semantics per image, as the reference:
while the pool is not full, store the new image and return it; once full, with probability 0.5
return a random stored image and put the new one in its place, otherwise return the new image.
Randomness is stateless, seeded by the caller (the train step passes its step counter), so a
resumed run draws the same numbers as an uninterrupted one.
"""

import tensorflow as tf


class ImagePool(tf.Module):
  """A pool of `pool_size` images of `image_shape` (H, W, C); pool_size 0 returns its input."""

  def __init__(self, pool_size, image_shape, name=None):
    super().__init__(name=name)
    self.pool_size = int(pool_size)
    self.image_shape = tuple(image_shape)
    if self.pool_size > 0:
      if any(d is None for d in self.image_shape):
        raise ValueError(
            f'The image pool stores images of one fixed size, but training images have shape '
            f'{self.image_shape}. Use a cropping preprocess (resize_and_crop, crop, '
            'scale_width_and_crop) or set config.train.pool_size=0.')
      self.images = tf.Variable(
          tf.zeros((self.pool_size,) + self.image_shape, tf.float32), trainable=False,
          name='images')
      self.num_images = tf.Variable(0, dtype=tf.int32, trainable=False, name='num_images')

  def reset(self):
    """Empties the pool (its images are forgotten, as at the start of a run)."""
    if self.pool_size > 0:
      self.num_images.assign(0)

  def query(self, images, seed):
    """Returns images to show the discriminator; `seed` is a [2] int seed for this call."""
    if self.pool_size == 0:
      return images
    images = tf.cast(images, tf.float32)
    outputs = []
    # The per-replica batch is static and small; images are processed one by one because each
    # may replace a stored one that a later image in the same batch can draw.
    for i in range(images.shape[0]):
      image_seed = tf.random.experimental.stateless_fold_in(seed, i)
      draw = tf.random.stateless_uniform([], image_seed)
      slot_seed = tf.random.experimental.stateless_fold_in(image_seed, 1)
      random_slot = tf.random.stateless_uniform([], slot_seed, 0, self.pool_size, tf.int32)
      count = self.num_images.read_value()
      filling = count < self.pool_size
      swap = tf.logical_and(tf.logical_not(filling), draw > 0.5)
      slot = tf.where(filling, count, random_slot)
      stored = tf.gather(self.images.read_value(), slot)
      outputs.append(tf.where(swap, stored, images[i]))
      keep_new = tf.logical_or(filling, swap)
      self.images.scatter_nd_update([[slot]], [tf.where(keep_new, images[i], stored)])
      self.num_images.assign(count + tf.cast(filling, tf.int32))
    return tf.stack(outputs)
