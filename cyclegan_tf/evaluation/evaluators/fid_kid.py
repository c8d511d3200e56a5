"""FID and KID (metrics.fid_kid) of the translations against the real target images, with the
untranslated images as the FID baseline: fid_a2b, fid_baseline_a2b, kid_a2b, kid_a2b_std (and
_b2a). Needs InceptionV3 no-top weights (config.eval.inception_weights, or Keras' cache); no
download is attempted: without them it logs how to get them and yields nothing."""

from absl import logging

from cyclegan_tf.data import images as images_lib
from cyclegan_tf.evaluation import inception
from cyclegan_tf.evaluation import metrics as metrics_lib

NAME = 'fid_kid'


class Evaluator:
  """extractor: images [N, H, W, 3] in [-1, 1] -> features [N, D]; default InceptionV3's."""

  def __init__(self, context, extractor=None):
    self.seed = int(context.config.eval.seed)
    if extractor is None:
      weights = inception.find_weights(context.config.eval.inception_weights)
      extractor = weights and inception.inception_feature_extractor(weights)
    self.extractor = extractor or None

  def run(self, data, tr):
    if self.extractor is None:
      return
    if min(len(data.a), len(data.b)) < 2:
      logging.warning('FID/KID skipped: they need at least 2 test images per domain.')
      return
    for direction, fake, source, target in (('a2b', tr.fake_b, data.a, data.b),
                                            ('b2a', tr.fake_a, data.b, data.a)):
      if fake is None:  # the model has no such generator
        continue
      target = images_lib.rgb_array(target)
      res = metrics_lib.fid_kid(target, images_lib.rgb_array(fake), self.extractor,
                                seed=self.seed)
      base = metrics_lib.fid_kid(target, images_lib.rgb_array(source), self.extractor,
                                 seed=self.seed)
      yield f'fid_{direction}', res['fid']
      yield f'fid_baseline_{direction}', base['fid']
      yield f'kid_{direction}', res['kid']
      yield f'kid_{direction}_std', res['kid_std']
