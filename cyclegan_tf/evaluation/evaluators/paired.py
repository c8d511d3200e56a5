"""Against ground truth, when the test data have pairs (synthetic_seasons; folders whose testA
and testB hold the same file names): PSNR (dB), SSIM and L1 of G_A(A) vs the true B and of
G_B(true B) vs A, each with the untranslated input as the baseline where it is comparable
(psnr_a2b, psnr_baseline_a2b, ssim_*, l1_*, and _b2a). pix2pix: G(A) vs the paired B;
colorization: the colour pictures (lab2rgb) vs the photos."""

from cyclegan_tf.data import images as images_lib
from cyclegan_tf.evaluation import metrics as metrics_lib

NAME = 'paired'


class Evaluator:

  def __init__(self, context):
    del context

  def run(self, data, tr):
    p = data.paired
    if p is None or tr.paired_fake_b is None:
      return
    for direction, inputs, fake, truth in (('a2b', p.a, tr.paired_fake_b, p.b_true),
                                           ('b2a', p.b_true, tr.paired_fake_a, p.a)):
      if fake is None or fake.shape != truth.shape:
        continue
      # The untranslated input is a baseline only where it is a picture like the truth
      # (not for input_nc != output_nc, e.g. colorization's lightness).
      baseline = inputs.shape == truth.shape
      truth, fake, inputs = (images_lib.rgb_array(x) if x.shape[-1] in (1, 3) else None
                             for x in (truth, fake, inputs))
      for metric, function in (('psnr', metrics_lib.psnr), ('ssim', metrics_lib.ssim),
                               ('l1', metrics_lib.l1)):
        yield f'{metric}_{direction}', function(fake, truth)
        if baseline:
          yield f'{metric}_baseline_{direction}', function(inputs, truth)
