"""Against ground truth, when the test data have pairs (synthetic_seasons; folders whose testA
and testB hold the same file names): PSNR (dB), SSIM and L1 of G_A(A) vs the true B and of
G_B(true B) vs A, each with the untranslated input as the baseline (psnr_a2b,
psnr_baseline_a2b, ssim_*, l1_*, and _b2a)."""

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
      if fake is None or inputs.shape[1:] != truth.shape[1:] or fake.shape != truth.shape:
        continue  # e.g. input_nc != output_nc: no pixel-wise baseline
      truth, fake, inputs = (images_lib.rgb_array(x) for x in (truth, fake, inputs))
      yield f'psnr_{direction}', metrics_lib.psnr(fake, truth)
      yield f'psnr_baseline_{direction}', metrics_lib.psnr(inputs, truth)
      yield f'ssim_{direction}', metrics_lib.ssim(fake, truth)
      yield f'ssim_baseline_{direction}', metrics_lib.ssim(inputs, truth)
      yield f'l1_{direction}', metrics_lib.l1(fake, truth)
      yield f'l1_baseline_{direction}', metrics_lib.l1(inputs, truth)
