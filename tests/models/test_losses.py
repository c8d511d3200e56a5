"""cyclegan_tf.models.losses against hand-computed numbers and numpy (per-example values, shape [B])."""

import math

import numpy as np
import pytest
import tensorflow as tf

from cyclegan_tf.models import losses

# Two examples of a 2x2 one-channel patch map: [B, H, W, 1].
PRED = np.array([[[0.5, -1.0], [2.0, 0.0]],
                 [[1.0, 1.0], [1.0, 1.0]]], np.float32)[..., None]


def _softplus(v):
  return math.log1p(math.exp(v))


def _np(t):
  t = np.asarray(t)
  assert t.dtype == np.float32
  return t


def test_lsgan_is_mse_to_one_and_zero():
  real = _np(losses.gan_loss(PRED, True, 'lsgan'))
  fake = _np(losses.gan_loss(PRED, False, 'lsgan'))
  assert real.shape == fake.shape == (2,)
  # (0.5-1)^2 + (-1-1)^2 + (2-1)^2 + (0-1)^2 = 0.25 + 4 + 1 + 1 = 6.25
  np.testing.assert_allclose(real, [6.25 / 4, 0.0], rtol=1e-6)
  # 0.25 + 1 + 4 + 0 = 5.25
  np.testing.assert_allclose(fake, [5.25 / 4, 1.0], rtol=1e-6)


def test_vanilla_is_bce_with_logits():
  real = _np(losses.gan_loss(PRED, True, 'vanilla'))
  fake = _np(losses.gan_loss(PRED, False, 'vanilla'))
  assert real.shape == fake.shape == (2,)
  # BCE(sigmoid(p), 1) = softplus(-p); BCE(sigmoid(p), 0) = softplus(p).
  values = [0.5, -1.0, 2.0, 0.0]
  np.testing.assert_allclose(
      real, [sum(_softplus(-v) for v in values) / 4, _softplus(-1.0)], rtol=1e-6)
  np.testing.assert_allclose(
      fake, [sum(_softplus(v) for v in values) / 4, _softplus(1.0)], rtol=1e-6)
  # Large logits stay finite (the stable formulation).
  big = np.full((1, 2, 2, 1), 100.0, np.float32)
  np.testing.assert_allclose(_np(losses.gan_loss(big, False, 'vanilla')), [100.0], rtol=1e-6)
  np.testing.assert_allclose(_np(losses.gan_loss(big, True, 'vanilla')), [0.0], atol=1e-6)


def test_wgangp_signs():
  real = _np(losses.gan_loss(PRED, True, 'wgangp'))
  fake = _np(losses.gan_loss(PRED, False, 'wgangp'))
  np.testing.assert_allclose(real, [-1.5 / 4, -1.0], rtol=1e-6)  # real -> -mean
  np.testing.assert_allclose(fake, [1.5 / 4, 1.0], rtol=1e-6)  # fake -> +mean


def test_batch_mean_equals_the_references_mean_over_all_elements():
  rng = np.random.default_rng(0)
  pred = rng.normal(size=(3, 5, 4, 1)).astype(np.float32)
  per_example = _np(losses.gan_loss(pred, True, 'lsgan'))
  assert per_example.shape == (3,)
  np.testing.assert_allclose(per_example.mean(), np.mean((pred.astype(np.float64) - 1)**2),
                             rtol=1e-5)


def test_bfloat16_predictions_give_float32_losses():
  pred = tf.constant(PRED, tf.bfloat16)
  real = _np(losses.gan_loss(pred, True, 'lsgan'))
  np.testing.assert_allclose(real, [6.25 / 4, 0.0], rtol=1e-6)  # these values are exact in bf16


def test_discriminator_loss_is_half_the_sum():
  rng = np.random.default_rng(1)
  pred_real = rng.normal(size=(2, 3, 3, 1)).astype(np.float32)
  pred_fake = rng.normal(size=(2, 3, 3, 1)).astype(np.float32)
  for mode in losses.GAN_MODES:
    got = _np(losses.discriminator_loss(pred_real, pred_fake, mode))
    expected = 0.5 * (np.asarray(losses.gan_loss(pred_real, True, mode)) +
                      np.asarray(losses.gan_loss(pred_fake, False, mode)))
    assert got.shape == (2,)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
  # lsgan by hand: 0.5 * (mean((r - 1)^2) + mean(f^2)) per example.
  got = _np(losses.discriminator_loss(pred_real, pred_fake, 'lsgan'))
  r, f = pred_real.astype(np.float64), pred_fake.astype(np.float64)
  expected = 0.5 * (((r - 1)**2).mean(axis=(1, 2, 3)) + (f**2).mean(axis=(1, 2, 3)))
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def _images(rng, n=2):
  return [rng.uniform(-1, 1, (n, 4, 6, 3)).astype(np.float32) for _ in range(4)]


def _np_l1(a, b):
  return np.abs(a.astype(np.float64) - b.astype(np.float64)).mean(axis=(1, 2, 3))


def test_cycle_loss_with_lambda():
  rng = np.random.default_rng(2)
  real_a, rec_a, real_b, rec_b = _images(rng)
  loss_a = losses.cycle_loss(real_a, rec_a, 10.0)
  loss_b = losses.cycle_loss(real_b, rec_b, 3.0)
  assert _np(loss_a).shape == _np(loss_b).shape == (2,)
  np.testing.assert_allclose(loss_a, 10.0 * _np_l1(rec_a, real_a), rtol=1e-5)
  np.testing.assert_allclose(loss_b, 3.0 * _np_l1(rec_b, real_b), rtol=1e-5)


def test_identity_loss_uses_the_other_domains_lambda():
  """idt_A = G_A(B) vs B weighted by lambda_B; idt_B = G_B(A) vs A weighted by lambda_A."""
  rng = np.random.default_rng(3)
  real_a, idt_b, real_b, idt_a = _images(rng)
  lambda_a, lambda_b, lambda_idt = 10.0, 3.0, 0.5
  loss_idt_a = losses.identity_loss(real_b, idt_a, lambda_b, lambda_idt)
  loss_idt_b = losses.identity_loss(real_a, idt_b, lambda_a, lambda_idt)
  assert _np(loss_idt_a).shape == _np(loss_idt_b).shape == (2,)
  np.testing.assert_allclose(loss_idt_a, _np_l1(idt_a, real_b) * lambda_b * lambda_idt,
                             rtol=1e-5)
  np.testing.assert_allclose(loss_idt_b, _np_l1(idt_b, real_a) * lambda_a * lambda_idt,
                             rtol=1e-5)


def test_l1_loss_by_hand():
  a = np.array([[[[1.0], [-1.0]]]], np.float32)  # [1, 1, 2, 1]
  b = np.array([[[[0.5], [1.0]]]], np.float32)
  np.testing.assert_allclose(_np(losses.l1_loss(a, b)), [(0.5 + 2.0) / 2], rtol=1e-6)


@pytest.mark.parametrize('seed', [None, (3, 4)])
def test_gradient_penalty_of_a_linear_discriminator(seed):
  """D(x) = sum(w * x): the gradient is w at every interpolate, so the penalty is (|w| - 1)^2."""
  rng = np.random.default_rng(4)
  w = tf.constant(rng.normal(0, 0.1, (1, 4, 5, 3)).astype(np.float32))

  def linear_d(x, training=False):
    del training
    return tf.reduce_sum(x * w, axis=[1, 2, 3])[:, None, None, None]  # a 1x1 patch map

  real = rng.uniform(-1, 1, (3, 4, 5, 3)).astype(np.float32)
  fake = rng.uniform(-1, 1, (3, 4, 5, 3)).astype(np.float32)
  penalty = _np(losses.gradient_penalty(linear_d, real, fake, seed=seed))
  norm_w = np.linalg.norm(np.asarray(w, np.float64))
  assert penalty.shape == (3,)
  np.testing.assert_allclose(penalty, [(norm_w - 1)**2] * 3, rtol=1e-5)
  # The constant is the target norm.
  penalty = _np(losses.gradient_penalty(linear_d, real, fake, seed=seed, constant=norm_w))
  np.testing.assert_allclose(penalty, 0.0, atol=1e-6)


def test_gradient_penalty_is_per_example():
  """Each example's penalty depends on its own interpolate only (D(x) = sum(x^2) / 2)."""
  quadratic_d = lambda x, training=False: 0.5 * tf.reduce_sum(x * x, axis=[1, 2, 3])
  real = np.stack([np.full((2, 2, 1), 1.0), np.full((2, 2, 1), 3.0)]).astype(np.float32)
  fake = real.copy()  # interpolate == real whatever alpha: gradient = x, |x| = 2|v|
  penalty = _np(losses.gradient_penalty(quadratic_d, real, fake, seed=(1, 2)))
  np.testing.assert_allclose(penalty, [(2.0 - 1)**2, (6.0 - 1)**2], rtol=1e-5)


def test_unknown_gan_mode_names_the_allowed_modes():
  with pytest.raises(ValueError, match='lsgan, vanilla, wgangp'):
    losses.gan_loss(PRED, True, 'hinge')
  with pytest.raises(ValueError, match='hinge'):
    losses.discriminator_loss(PRED, PRED, 'hinge')
