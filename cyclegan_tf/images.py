"""Image decoding and value ranges, the one place every module turns files into tensors.

Networks see float32 in [-1, 1] (the reference's Normalize((0.5,), (0.5,))). Files may be
JPEG, PNG (8 or 16 bit), BMP or GIF (first frame), grayscale, RGB or RGBA; they are converted to
the configured channel count the way PIL's convert('RGB') / convert('L') does.
"""

import tensorflow as tf



def to_unit_range(images):
  """uint8 [0, 255] (or float [0, 1]) -> float32 [-1, 1]."""
  if images.dtype == tf.uint8:
    images = tf.cast(images, tf.float32) / 255.0
  return tf.cast(images, tf.float32) * 2.0 - 1.0


def to_uint8(images):
  """float [-1, 1] -> uint8 [0, 255], rounded."""
  images = (tf.clip_by_value(tf.cast(images, tf.float32), -1.0, 1.0) + 1.0) * 127.5
  return tf.cast(tf.round(images), tf.uint8)


def _normalise_decoded(image, channels):
  """Bring a float [0, 1] image with 1-4 channels to `channels`, whatever it had."""
  n = tf.shape(image)[-1]
  # RGB(A) keeps its colour channels; gray(+alpha) is repeated into RGB.
  image = tf.cond(n >= 3, lambda: image[..., :3], lambda: tf.tile(image[..., :1], [1, 1, 3]))
  image = tf.ensure_shape(image, [None, None, 3])
  if channels == 1:
    image = tf.image.rgb_to_grayscale(image)
  return image


def decode_image(contents, channels=3):
  """Encoded bytes (a scalar string tensor) -> float32 [H, W, channels] in [-1, 1].

  16-bit PNGs keep their precision (decoded to float directly). Raises
  tf.errors.InvalidArgumentError on data that is not an image.
  """
  image = tf.io.decode_image(contents, channels=0, dtype=tf.float32, expand_animations=False)
  return _normalise_decoded(image, channels) * 2.0 - 1.0


def encode_png(image):
  """float [-1, 1] [H, W, C] -> PNG bytes (scalar string tensor)."""
  return tf.io.encode_png(to_uint8(image))


def read_image_file(path, channels=3):
  """A file on disk -> float32 [H, W, channels] in [-1, 1] (eager helper for tools)."""
  return decode_image(tf.io.read_file(path), channels)
