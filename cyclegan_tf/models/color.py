"""Lab colour for the colorization model, through scikit-image's rgb2lab / lab2rgb (CIE Lab,
D65, 2 degree observer), scaled as the reference's colorization_dataset.py and
colorization_model.py: A = L / 50 - 1, B = ab / 110 (both about [-1, 1]).

scikit-image is the optional extra `colorization` (pip install -e ".[colorization]"); a missing
one raises ColorDependencyError with that command.
"""

import numpy as np
import tensorflow as tf

L_SCALE, L_OFFSET, AB_SCALE = 50.0, 1.0, 110.0


class ColorDependencyError(ImportError):
  """scikit-image, which the Lab conversion needs, is not installed (main prints the message,
  which says what to install, in one line)."""


def _skimage_color():
  try:
    from skimage import color  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ColorDependencyError(
        'The colorization model converts to Lab with scikit-image, which is not installed: '
        'pip install -e ".[colorization]" (or pip install scikit-image).') from None
  return color


def check_available():
  """Raises ColorDependencyError now rather than inside a tf.data map later."""
  _skimage_color()


def rgb_to_model_lab(rgb):
  """float RGB [..., H, W, 3] in [-1, 1] (uint8 levels) -> (L [..., 1] = L / 50 - 1,
  ab [..., 2] = ab / 110), float32, as the reference computes them from the uint8 image."""
  color = _skimage_color()
  rgb = np.asarray(rgb, np.float64)
  uint8 = np.clip(np.round((rgb + 1.0) * 127.5), 0, 255).astype(np.uint8)
  lab = color.rgb2lab(uint8).astype(np.float32)
  return lab[..., :1] / L_SCALE - L_OFFSET, lab[..., 1:] / AB_SCALE


def model_lab_to_rgb(l_channel, ab):
  """(L [..., 1], ab [..., 2]) in the model's scaling -> float64 RGB [..., 3] in [0, 1]
  (skimage's lab2rgb, which clips colours outside sRGB)."""
  color = _skimage_color()
  lab = np.concatenate([(np.asarray(l_channel, np.float64) + L_OFFSET) * L_SCALE,
                        np.asarray(ab, np.float64) * AB_SCALE], axis=-1)
  return color.lab2rgb(lab)


def model_lab_to_uint8(l_channel, ab):
  """As model_lab_to_rgb, as uint8 RGB (rounded): the pixels the reference saves."""
  return np.clip(np.round(model_lab_to_rgb(l_channel, ab) * 255.0), 0, 255).astype(np.uint8)


def tf_rgb_to_model_lab(rgb):
  """rgb_to_model_lab on a float32 tensor [H, W, 3] in [-1, 1], inside tf.data or tf.function;
  returns (L [H, W, 1], ab [H, W, 2])."""
  l_channel, ab = tf.numpy_function(rgb_to_model_lab, [rgb], [tf.float32, tf.float32],
                                    stateful=False)
  shape = rgb.shape[:-1]
  return tf.ensure_shape(l_channel, shape + [1]), tf.ensure_shape(ab, shape + [2])


def tf_model_lab_to_rgb(l_channel, ab):
  """model_lab_to_rgb on tensors [..., 1] and [..., 2]: float32 RGB in [-1, 1]."""
  rgb = tf.numpy_function(lambda l, a: (model_lab_to_rgb(l, a) * 2.0 - 1.0).astype(np.float32),
                          [l_channel, ab], tf.float32, stateful=False)
  return tf.ensure_shape(rgb, l_channel.shape[:-1] + [3])


class LabPictures:
  """A function of lightness (float [N, H, W, 1], L / 50 - 1; a colorization generator's
  input, plus any further arguments) to ab, as a function of pictures: float RGB (or gray)
  [N, H, W, C] in [-1, 1] -> float32 RGB [N, H, W, 3] in [-1, 1], the picture's L with the
  predicted ab (lab2rgb). Gray pictures have their own L exactly."""

  def __init__(self, function):
    self.function = function

  def __call__(self, images, *args):
    l_channel = lightness(images)
    ab = np.asarray(self.function(l_channel, *args))
    return (model_lab_to_rgb(l_channel, ab) * 2.0 - 1.0).astype(np.float32)


def lightness(images):
  """Pictures float [..., C] in [-1, 1] (C 1 or 3) -> their L / 50 - 1 [..., 1], float32."""
  images = np.asarray(images, np.float32)
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  return rgb_to_model_lab(images)[0]
