"""The colorization model: pix2pix from a photo's lightness to its colour in CIE Lab (the
reference's colorization_model.py): G maps L (1 channel, L / 50 - 1) to ab (2 channels,
ab / 110); D judges concat(L, ab). Trained on any folder of RGB photos (data.dataset_mode
colorization); its pictures and paired metrics are in RGB through color.py (lab2rgb).
"""

import tensorflow as tf

from cyclegan_tf.models import color
from cyclegan_tf.models import pix2pix


class Colorization(pix2pix.Pix2Pix):
  """pix2pix with input_nc 1 (L) and output_nc 2 (ab); the same step and losses."""

  NAME = 'colorization'
  EXPORT_PREFIX = 'colorization'
  CHANNELS = {'input_nc': (1,), 'output_nc': (2,)}
  VISUAL_NAMES = ('real_A', 'real_B_rgb', 'fake_B_rgb')

  @staticmethod
  def to_rgb(inputs, outputs):
    """(L [N, H, W, 1], ab [N, H, W, 2]) in the model's scaling -> float32 RGB [N, H, W, 3]
    in [-1, 1] (skimage's lab2rgb)."""
    return color.tf_model_lab_to_rgb(tf.cast(inputs, tf.float32), tf.cast(outputs, tf.float32))

  def visuals(self, real_a, real_b):
    """real_A (the lightness, gray), real_B_rgb (the photo), fake_B_rgb (G's colours on its
    lightness), as the reference's compute_visuals."""
    fake_b = self.G(real_a, training=False)
    return {'real_A': real_a, 'real_B_rgb': self.to_rgb(real_a, real_b),
            'fake_B_rgb': self.to_rgb(real_a, fake_b)}


MODEL = Colorization
