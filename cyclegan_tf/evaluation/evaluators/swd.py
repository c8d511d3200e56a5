"""Sliced Wasserstein distance (x1e3, sliced_wasserstein.sliced_wasserstein_distance) of the translations
to the real images of the target domain, and of the untranslated images as the baseline:
swd_a2b, swd_baseline_a2b, swd_b2a, swd_baseline_b2a. Lower is closer."""

from cyclegan_tf.data import images as images_lib
from cyclegan_tf.evaluation import sliced_wasserstein

NAME = 'swd'


def distance(images, target, seed):
  """SWD of images [N, H, W, C] to target [M, h, w, C'] (both in [-1, 1]), at target's size."""
  target = images_lib.rgb_array(target)
  images = images_lib.resize_array(images_lib.rgb_array(images), target.shape[1:3])
  return sliced_wasserstein.sliced_wasserstein_distance(images, target, seed=seed)['mean']


class Evaluator:

  def __init__(self, context):
    self.seed = int(context.config.eval.seed)

  def run(self, data, tr):
    for direction, fake, source, target in (('a2b', tr.fake_b, data.a, data.b),
                                            ('b2a', tr.fake_a, data.b, data.a)):
      if fake is not None:  # None: the model has no such generator
        yield f'swd_{direction}', distance(fake, target, self.seed)
        yield f'swd_baseline_{direction}', distance(source, target, self.seed)
