"""The compiled train step against the reference's iteration written out by hand.

The trainer's step (a generator update, then a discriminator update, through a strategy, with
losses per example over the global batch and device-side bookkeeping) must do what the
reference's optimize_parameters() does: one step from the same weights gives the same losses
and the same updated weights.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import conftest
from conftest import REPO_ROOT
from configs import default
from cyclegan_tf.models import losses
from cyclegan_tf.models import networks
from cyclegan_tf.models import optimizers
from cyclegan_tf.models import cycle_gan
from cyclegan_tf.training import train_state


def _tiny_config(gan_mode='lsgan', norm='instance'):
  config = default.get_config()
  config.model.netG = 'resnet_6blocks'
  config.model.ngf = 4
  config.model.ndf = 4
  config.model.norm = norm
  config.train.pool_size = 0  # the pool's semantics are tested on their own
  config.train.batch_size = 2
  config.train.gan_mode = gan_mode
  config.train.gp_weight = 0.0
  return config


def _reference_generator_terms(config, nets, real_a, real_b):
  """backward_G's loss terms (batch means) from forward()'s four calls and the identities."""
  lam = config.loss
  gan = lambda pred: tf.reduce_mean(losses.gan_loss(pred, True, config.train.gan_mode))
  fake_b = nets['G_A'](real_a, training=True)
  rec_a = nets['G_B'](fake_b, training=True)
  fake_a = nets['G_B'](real_b, training=True)
  rec_b = nets['G_A'](fake_a, training=True)
  idt_a = nets['G_A'](real_b, training=True)
  idt_b = nets['G_B'](real_a, training=True)
  terms = {
      'idt_A': tf.reduce_mean(tf.abs(idt_a - real_b)) * lam.lambda_B * lam.lambda_identity,
      'idt_B': tf.reduce_mean(tf.abs(idt_b - real_a)) * lam.lambda_A * lam.lambda_identity,
      'G_A': gan(nets['D_A'](fake_b, training=True)),
      'G_B': gan(nets['D_B'](fake_a, training=True)),
      'cycle_A': tf.reduce_mean(tf.abs(rec_a - real_a)) * lam.lambda_A,
      'cycle_B': tf.reduce_mean(tf.abs(rec_b - real_b)) * lam.lambda_B,
  }
  return terms, fake_a, fake_b


def _reference_step(config, nets, real_a, real_b):
  """optimize_parameters() of the reference: forward, G step with D frozen, D step."""
  c = config.train
  opt_g = optimizers.TorchAdam(c.lr, beta_1=c.beta1, beta_2=c.beta2)
  opt_d = optimizers.TorchAdam(c.lr, beta_1=c.beta1, beta_2=c.beta2)
  g_vars = nets['G_A'].trainable_variables + nets['G_B'].trainable_variables
  d_vars = nets['D_A'].trainable_variables + nets['D_B'].trainable_variables
  mean = lambda x: float(tf.reduce_mean(x))
  gan = lambda pred, real: losses.gan_loss(pred, real, c.gan_mode)
  with tf.GradientTape() as tape:
    terms, fake_a, fake_b = _reference_generator_terms(config, nets, real_a, real_b)
    loss_g = sum(terms.values())
  opt_g.apply_gradients(zip(tape.gradient(loss_g, g_vars), g_vars))
  with tf.GradientTape() as tape:
    d_a = 0.5 * (tf.reduce_mean(gan(nets['D_A'](real_b, training=True), True)) +
                 tf.reduce_mean(gan(nets['D_A'](fake_b, training=True), False)))
    d_b = 0.5 * (tf.reduce_mean(gan(nets['D_B'](real_a, training=True), True)) +
                 tf.reduce_mean(gan(nets['D_B'](fake_a, training=True), False)))
    loss_d = d_a + d_b
  opt_d.apply_gradients(zip(tape.gradient(loss_d, d_vars), d_vars))
  terms.update(D_A=d_a, D_B=d_b)
  return {k: mean(v) for k, v in terms.items()}


def _model(config, size):
  """The CycleGAN of the family for size x size RGB images on the default strategy."""
  shapes = {'A': (size, size, 3), 'B': (size, size, 3)}
  return cycle_gan.CycleGAN(config, tf.distribute.get_strategy(), train_shapes=shapes)


@pytest.mark.parametrize('gan_mode,norm', [('lsgan', 'instance'), ('vanilla', 'batch')])
def test_train_step_equals_the_reference_iteration(gan_mode, norm):
  config = _tiny_config(gan_mode, norm)
  keras.utils.set_random_seed(1)
  model = _model(config, 32)
  reference = networks.build_cyclegan(config.model)
  initial = networks.build_cyclegan(config.model)
  for name in reference:
    reference[name].set_weights(getattr(model, name).get_weights())
    initial[name].set_weights(getattr(model, name).get_weights())
  rng = np.random.default_rng(0)
  real_a = tf.constant(rng.uniform(-1, 1, (2, 32, 32, 3)), tf.float32)
  real_b = tf.constant(rng.uniform(-1, 1, (2, 32, 32, 3)), tf.float32)

  trainer = train_state.TrainState(model)
  values = trainer.train_step({'A': real_a, 'B': real_b}).numpy()
  got = dict(zip(trainer.loss_names, values.tolist()))
  want = _reference_step(config, reference, real_a, real_b)

  assert set(got) == set(want) == set(cycle_gan.LOSS_NAMES)
  for name in want:
    assert got[name] == pytest.approx(want[name], rel=1e-5, abs=1e-6), name
  assert int(trainer.step.numpy()) == 1
  # The updated weights do what the reference's do (conftest.output_gaps says why outputs).
  gaps = conftest.output_gaps({n: getattr(model, n) for n in reference}, reference, initial,
                              real_a.numpy())
  assert max(gaps.values()) < conftest.EQUIVALENCE_BOUND, gaps


@pytest.mark.parametrize('norm', ['instance', 'batch'])
def test_generator_gradients_equal_one_backward_of_the_whole_loss(norm):
  """The step's gradient, summed over its groups of terms computed one after another, is the
  gradient of the reference's whole generator loss (Adam's first update is nearly sign(g),
  so the test above cannot see a wrong gradient magnitude; this one can)."""
  config = _tiny_config(norm=norm)
  keras.utils.set_random_seed(3)
  model = _model(config, 32)
  reference = networks.build_cyclegan(config.model)
  for name in reference:
    reference[name].set_weights(getattr(model, name).get_weights())
  rng = np.random.default_rng(4)
  real_a, real_b = (tf.constant(rng.uniform(-1, 1, (2, 32, 32, 3)), tf.float32) for _ in 'AB')

  grads, _, _ = tf.function(model._generator_grads_fn)(real_a, real_b)
  g_vars = reference['G_A'].trainable_variables + reference['G_B'].trainable_variables
  with tf.GradientTape() as tape:
    terms, _, _ = _reference_generator_terms(config, reference, real_a, real_b)
    loss = sum(terms.values())
  want = tape.gradient(loss, g_vars)

  assert len(grads) == len(want) == len(model.g_vars)
  got = np.concatenate([g.numpy().ravel() for g in grads])
  expected = np.concatenate([g.numpy().ravel() for g in want])
  # float32 sums in another order: 4e-6 of the gradient's norm measured. The biases before
  # instance norm have a true gradient of 0 (rounding noise of 1e-6 both ways), hence one
  # scale for all variables.
  assert np.linalg.norm(got - expected) < 2e-5 * np.linalg.norm(expected)
  for variable, g, e in zip(model.g_vars, grads, want):
    np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=0, atol=2e-5 * np.abs(expected).max(),
                               err_msg=variable.path)


def test_wgangp_adds_a_real_gradient_penalty():
  config = _tiny_config('wgangp')
  config.train.gp_weight = 10.0
  keras.utils.set_random_seed(2)
  model = _model(config, 32)
  rng = np.random.default_rng(1)
  batch = {k: tf.constant(rng.uniform(-1, 1, (2, 32, 32, 3)), tf.float32) for k in 'AB'}
  trainer = train_state.TrainState(model)
  out = dict(zip(trainer.loss_names, trainer.train_step(batch).numpy().tolist()))
  assert out['gp_A'] > 0 and out['gp_B'] > 0
  assert all(np.isfinite(v) for v in out.values())


def _peak_tensor_bytes(fn):
  """TF's CPU allocator: the most bytes in use at once during fn() beyond those before it."""
  fn()  # traced and warm
  before = tf.config.experimental.get_memory_info('CPU:0')['current']
  tf.config.experimental.reset_memory_stats('CPU:0')
  fn()
  return tf.config.experimental.get_memory_info('CPU:0')['peak'] - before


def _generator_gradient_peaks():
  """(peak bytes of the grouped generator gradient, of one backward of the whole loss)."""
  config = _tiny_config()
  config.model.ngf = 32  # tensors above the allocator's small-block size, which it counts
  config.train.batch_size = 1
  model = _model(config, 128)
  rng = np.random.default_rng(5)
  real_a, real_b = (tf.constant(rng.uniform(-1, 1, (1, 128, 128, 3)), tf.float32) for _ in 'AB')
  nets = {name: getattr(model, name) for name in ('G_A', 'G_B', 'D_A', 'D_B')}

  @tf.function
  def whole_loss_gradients():
    with tf.GradientTape() as tape:
      terms, _, _ = _reference_generator_terms(config, nets, real_a, real_b)
      loss = sum(terms.values())
    return tape.gradient(loss, model.g_vars)

  grouped = tf.function(model._generator_grads_fn)  # pylint: disable=protected-access
  whole = _peak_tensor_bytes(lambda: [g.numpy() for g in whole_loss_gradients()])
  ours = _peak_tensor_bytes(lambda: [g.numpy() for g in grouped(real_a, real_b)[0]])
  return ours, whole


@pytest.mark.slow  # a subprocess
def test_generator_gradients_hold_one_group_of_activations_at_a_time():
  """The grouped backward's point: less memory than one backward of the whole loss (a whole
  float32 train step at 256 px with ngf 64 peaked at 1.21 GB against 1.93 GB before the
  grouping). Measured in a process that runs one op at a time, without Grappler: otherwise
  independent ops run side by side in an order that follows the machine's load, and Grappler's
  passes, which have time limits, rewrite the whole-loss graph differently from run to run
  under load (its peak measured 92 to 132 MB). Measured this way: 0.80-0.83x, and 1.02x with
  the ordering between the groups removed."""
  code = ('import sys; import tensorflow as tf; '
          'tf.config.threading.set_inter_op_parallelism_threads(1); '
          'tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True}); '
          f'sys.path[:0] = [{os.path.dirname(os.path.abspath(__file__))!r}, {conftest.TESTS_DIR!r}, '
          f'{REPO_ROOT!r}]; '
          'import test_train_step; print(*test_train_step._generator_gradient_peaks())')
  done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                        timeout=600, env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  assert done.returncode == 0, done.stderr[-3000:]
  ours, whole = (int(v) for v in done.stdout.split()[-2:])
  if not whole:
    pytest.skip("this TensorFlow's CPU allocator keeps no statistics (oneDNN off)")
  assert ours < 0.9 * whole, (ours, whole)
