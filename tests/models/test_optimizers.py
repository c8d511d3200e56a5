"""TorchAdam: the reference's torch.optim.Adam update, over 100 steps, to float precision."""

import numpy as np
import pytest
import tensorflow as tf

from cyclegan_tf.models import base
from cyclegan_tf.models import optimizers

STEPS = 100
LR, BETA1, BETA2 = 2e-4, 0.5, 0.999


def _gradients(shape, seed=0):
  """STEPS gradients of mixed scales: tiny ones (1e-6) show where epsilon enters."""
  rng = np.random.default_rng(seed)
  scale = np.where(rng.uniform(size=shape) < 0.5, 1e-6, 1.0)
  return [(rng.normal(size=shape) * scale).astype(np.float32) for _ in range(STEPS)]


def _formula(p0, grads, eps=1e-8):
  """Kingma & Ba's Algorithm 1 with epsilon after the bias correction, in float64."""
  p, m, v = p0.astype(np.float64), 0.0, 0.0
  for t, g in enumerate(grads, start=1):
    g = g.astype(np.float64)
    m = BETA1 * m + (1 - BETA1) * g
    v = BETA2 * v + (1 - BETA2) * g * g
    p = p - LR / (1 - BETA1**t) * m / (np.sqrt(v) / np.sqrt(1 - BETA2**t) + eps)
  return p


def _run(optimizer, p0, grads):
  var = tf.Variable(p0)
  for g in grads:
    optimizer.apply_gradients([(tf.constant(g), var)])
  return var.numpy()


def test_torch_adam_follows_the_formula_over_100_steps():
  p0 = np.random.default_rng(1).normal(size=(64,)).astype(np.float32)
  grads = _gradients(p0.shape)
  got = _run(optimizers.TorchAdam(LR, beta_1=BETA1, beta_2=BETA2), p0, grads)
  want = _formula(p0, grads)
  np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
  # Keras' own Adam (epsilon 1e-7 before the correction) lands measurably elsewhere on the
  # tiny-gradient entries: the test tells the two apart.
  keras_adam = _run(tf.keras.optimizers.Adam(LR, beta_1=BETA1, beta_2=BETA2), p0, grads)
  assert np.abs(keras_adam - want).max() > 20 * np.abs(got - want).max()


def test_torch_adam_equals_torch_optim_adam_over_100_steps():
  torch = pytest.importorskip('torch')
  p0 = np.random.default_rng(2).normal(size=(8, 8)).astype(np.float32)
  grads = _gradients(p0.shape, seed=3)
  param = torch.nn.Parameter(torch.tensor(p0))
  reference = torch.optim.Adam([param], lr=LR, betas=(BETA1, BETA2))
  for g in grads:
    param.grad = torch.tensor(g)
    reference.step()
  got = _run(optimizers.TorchAdam(LR, beta_1=BETA1, beta_2=BETA2), p0, grads)
  # float32 on both sides, different operation orders: a few ulps of the step size.
  np.testing.assert_allclose(got, param.detach().numpy(), rtol=0, atol=1e-6)


def test_checkpoints_of_keras_adam_restore_into_torch_adam(tmp_path):
  var = tf.Variable(np.ones(4, np.float32))
  keras_adam = tf.keras.optimizers.Adam(LR)
  keras_adam.apply_gradients([(tf.constant([0.1, 0.2, 0.3, 0.4]), var)])
  path = tf.train.Checkpoint(optimizer=keras_adam, var=var).save(str(tmp_path / 'ckpt'))
  var2 = tf.Variable(np.zeros(4, np.float32))
  torch_adam = optimizers.TorchAdam(LR)
  torch_adam.build([var2])
  tf.train.Checkpoint(optimizer=torch_adam, var=var2).restore(path).assert_consumed()
  assert int(torch_adam.iterations) == 1
  np.testing.assert_array_equal(torch_adam.variables[2].numpy(), keras_adam.variables[2].numpy())


def test_every_model_trains_with_torch_adam(default_config):
  assert isinstance(base.make_optimizer(default_config.train, 'float32'), optimizers.TorchAdam)
  scaled = base.make_optimizer(default_config.train, 'mixed_float16')
  assert isinstance(scaled.inner_optimizer, optimizers.TorchAdam)


def test_amsgrad_is_refused():
  with pytest.raises(ValueError, match='amsgrad'):
    optimizers.TorchAdam(amsgrad=True)
