"""The reference's preprocessing: size arithmetic, PIL-exact resizing, crops and flips.

What the reference does (its data/base_dataset.py get_transform) and what we do:

* resize_and_crop: bicubic to load_size x load_size, then a random crop_size crop.
  crop: a random crop from the original. scale_width: width -> load_size, height ->
  int(max(load_size * h / w, crop_size)). scale_width_and_crop: then a random crop. none: sides
  rounded to the nearest multiple (the reference's __make_power_2, base 4). Then a random
  horizontal flip unless no_flip; then [-1, 1].
* Two deliberate differences: `none` rounds to networks.size_multiple(netG) (4 for ResNets,
  like the reference; 128 / 256 for U-Nets) and `scale_width` (which has no crop) also rounds
  its result that way, since the generator cannot keep other sizes (the reference then fails
  in the loss).
* Resizing matches PIL's BICUBIC: tf.image.resize(bicubic, antialias=True) (Keys a=-0.5, widened
  when downsampling, like PIL), horizontally then vertically with rounding to 8 bits after each
  pass, as PIL does: at most 1 level apart from PIL (tested). The deterministic part (decode +
  resize) therefore ends in a uint8 image, which is also what data.cache keeps in memory.
* Test split (the reference's test options): load_size = crop_size, no flip, and crops are
  centred instead of random (resize_and_crop -> straight to crop_size x crop_size).

Random crops and flips take three random integers per image (crop row, crop column, flip)
from the caller (the input pipeline's epoch plan), so they are a pure function of the plan.
"""

import tensorflow as tf

from cyclegan_tf.data import images

CROP_MODES = ('resize_and_crop', 'crop', 'scale_width_and_crop')
# Random integers per item and domain in the epoch plan: crop row, crop column, flip.
RANDOM_INTS = 3


# ---------------------------------------------------------------------------------------------
# Sizes (Python: decided at start-up from the scanned image sizes).


def round_to_multiple(side, multiple):
  # Python's round, like the reference's __make_power_2 (round half to even).
  return max(multiple, int(round(side / multiple) * multiple))


def resized_size(height, width, preprocess, load_size, crop_size, multiple):
  """(h, w) in pixels after the deterministic resize stage of an image of (height, width).

  multiple: the generator's size multiple (networks.size_multiple). Raises ValueError for an
  unknown preprocess.
  """
  if preprocess == 'resize_and_crop':
    return load_size, load_size
  if preprocess == 'crop':
    return height, width
  if preprocess in ('scale_width', 'scale_width_and_crop'):
    if not (width == load_size and height >= crop_size):
      height, width = int(max(load_size * height / width, crop_size)), load_size
    if preprocess == 'scale_width':
      height, width = (round_to_multiple(height, multiple), round_to_multiple(width, multiple))
    return height, width
  if preprocess == 'none':
    return round_to_multiple(height, multiple), round_to_multiple(width, multiple)
  raise ValueError(f'config.data.preprocess={preprocess!r} is not valid.')


def output_size(height, width, preprocess, load_size, crop_size, multiple):
  """(h, w) of the image the network sees."""
  if preprocess in CROP_MODES:
    return crop_size, crop_size
  return resized_size(height, width, preprocess, load_size, crop_size, multiple)


# ---------------------------------------------------------------------------------------------
# TF image ops.


def _round8(x):
  """Rounds a [0, 1] float image to 8-bit levels (what PIL stores between its passes)."""
  return tf.round(tf.clip_by_value(x, 0.0, 1.0) * 255.0) / 255.0


def resize_like_pil(image, size):
  """float [0, 1] [H, W, C] -> uint8 [h, w, C]: PIL's BICUBIC (horizontal pass, then vertical,
  8-bit rounding after each). `size` is (h, w), Python ints or an int32 tensor."""
  size = tf.cast(size, tf.int32)
  h, w = size[0], size[1]
  shape = tf.shape(image)
  image = tf.cond(
      tf.equal(shape[1], w), lambda: image,
      lambda: _round8(tf.image.resize(image, tf.stack([shape[0], w]), 'bicubic', antialias=True)))
  image = tf.cond(
      tf.equal(shape[0], h), lambda: image,
      lambda: _round8(tf.image.resize(image, tf.stack([h, w]), 'bicubic', antialias=True)))
  return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0), tf.uint8)


def crop(image, top, left, crop_size):
  return image[top:top + crop_size, left:left + crop_size]


def augment(image, rand, preprocess, crop_size, no_flip, shape=None):
  """uint8 resized [H, W, C] + its RANDOM_INTS ints -> float32 [-1, 1] (random crop, flip).

  `shape`, when known, is the static output shape (h, w, c).
  """
  if preprocess in CROP_MODES:
    h, w = tf.shape(image, out_type=tf.int64)[0], tf.shape(image, out_type=tf.int64)[1]
    top = rand[0] % (h - crop_size + 1)
    left = rand[1] % (w - crop_size + 1)
    image = crop(image, top, left, crop_size)
  if not no_flip:
    image = tf.cond(tf.equal(rand[2] % 2, 1), lambda: tf.reverse(image, [1]), lambda: image)
  image = images.to_unit_range(image)
  if shape is not None:
    image = tf.ensure_shape(image, shape)
  return image


def center_crop(image, preprocess, crop_size):
  """The test split's crop: centred, in the crop modes; the image itself otherwise."""
  if preprocess not in CROP_MODES:
    return image
  hw = tf.shape(image, out_type=tf.int64)[:2]
  return crop(image, (hw[0] - crop_size) // 2, (hw[1] - crop_size) // 2, crop_size)
