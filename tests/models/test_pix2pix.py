"""pix2pix's train step against the reference's iteration written out by hand, and the
colorization model beside it.

The reference's pix2pix_model.optimize_parameters: fake_B = G(A) once; the discriminator's
update on (A, fake_B) detached and (A, B); then the generator's, through the same fake_B,
against the updated D: GAN + lambda_L1 * L1. Two steps from the same weights must give the same
losses, weights and batch-norm statistics.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import conftest

from configs import colorization as colorization_config
from configs import pix2pix as pix2pix_config
from cyclegan_tf import configuration
from cyclegan_tf.models import family
from cyclegan_tf.models import losses
from cyclegan_tf.models import networks
from cyclegan_tf.models import optimizers
from cyclegan_tf.models import pix2pix
from cyclegan_tf.training import train_state


def _tiny_config(gan_mode='vanilla'):
  config = pix2pix_config.get_config()
  config.model.netG = 'unet_128'
  config.model.ngf = 4
  config.model.ndf = 4
  config.model.no_dropout = True  # a hand-written copy cannot redraw the layer's masks
  config.data.crop_size = 128
  config.train.batch_size = 2
  config.train.gan_mode = gan_mode
  return config


def _reference_steps(config, G, D, batches):
  """optimize_parameters() of the reference's pix2pix, step after step; returns the losses."""
  c = config.train
  opt_g = optimizers.TorchAdam(c.lr, beta_1=c.beta1, beta_2=c.beta2)
  opt_d = optimizers.TorchAdam(c.lr, beta_1=c.beta1, beta_2=c.beta2)
  bce = lambda pred, real: tf.reduce_mean(losses.gan_loss(pred, real, c.gan_mode))
  out = []
  for real_a, real_b in batches:
    with tf.GradientTape(persistent=True) as g_tape:  # forward()
      fake_b = G(real_a, training=True)
    with tf.GradientTape() as tape:  # backward_D
      loss_d_fake = bce(D(tf.concat([real_a, tf.stop_gradient(fake_b)], -1), training=True),
                        False)
      loss_d_real = bce(D(tf.concat([real_a, real_b], -1), training=True), True)
      loss_d = (loss_d_fake + loss_d_real) * 0.5
    opt_d.apply_gradients(zip(tape.gradient(loss_d, D.trainable_variables),
                              D.trainable_variables))
    with g_tape:  # backward_G, D already updated
      loss_g_gan = bce(D(tf.concat([real_a, fake_b], -1), training=True), True)
      loss_g_l1 = tf.reduce_mean(tf.abs(fake_b - real_b)) * config.loss.lambda_L1
      loss_g = loss_g_gan + loss_g_l1
    grads = g_tape.gradient(loss_g, G.trainable_variables)
    opt_g.apply_gradients(zip(grads, G.trainable_variables))
    out.append({'G_GAN': float(loss_g_gan), 'G_L1': float(loss_g_l1),
                'D_real': float(loss_d_real), 'D_fake': float(loss_d_fake)})
  return out


@pytest.mark.parametrize('gan_mode', ['vanilla', 'lsgan'])
def test_pix2pix_steps_equal_the_reference_iterations(gan_mode):
  config = _tiny_config(gan_mode)
  keras.utils.set_random_seed(5)
  model = pix2pix.Pix2Pix(config, tf.distribute.get_strategy())
  m = config.model
  G = networks.generator_from_config(m, 3, 3, 'G')
  D = networks.discriminator_from_config(m, 6, 'D')
  G.set_weights(model.G.get_weights())
  D.set_weights(model.D.get_weights())
  rng = np.random.default_rng(6)
  batches = [tuple(tf.constant(rng.uniform(-1, 1, (2, 128, 128, 3)), tf.float32)
                   for _ in 'AB') for _ in range(2)]

  trainer = train_state.TrainState(model)
  got = [dict(zip(trainer.loss_names, trainer.train_step({'A': a, 'B': b}).numpy().tolist()))
         for a, b in batches]
  want = _reference_steps(config, G, D, batches)

  assert trainer.loss_names == pix2pix.LOSS_NAMES == ('G_GAN', 'G_L1', 'D_real', 'D_fake')
  for step, (g, w) in enumerate(zip(got, want)):
    for name in w:
      assert g[name] == pytest.approx(w[name], rel=1e-5, abs=1e-6), (step, name)
  # Weights after two Adam steps (the second depends on the gradients' sizes), and batch
  # norm's moving statistics (one G forward and three D calls per step, in the reference's
  # order).
  # Adam divides by sqrt(v): for a gradient near zero, float rounding moves the update by up to
  # its whole size (lr), so a few such entries are allowed; a wrong iteration moves most.
  for mine, theirs in ((model.G, G), (model.D, D)):
    for a, b in zip(mine.weights, theirs.weights):
      gap = np.abs(a.numpy() - b.numpy())
      assert (gap < 1e-6).mean() > 0.999 and gap.max() < config.train.lr, (a.path, gap.max())
  assert int(trainer.step.numpy()) == 2


def test_the_generator_learns_against_the_updated_discriminator():
  """G's adversarial loss reads D after D's update: with D's learning rate zero it reads the
  same D as before, and the losses differ from a run where D moved."""
  config = _tiny_config()
  rng = np.random.default_rng(7)
  batch = {k: tf.constant(rng.uniform(-1, 1, (2, 128, 128, 3)), tf.float32) for k in 'AB'}
  keras.utils.set_random_seed(8)
  model = pix2pix.Pix2Pix(config, tf.distribute.get_strategy())
  weights = [w.numpy() for w in model.D.weights]
  trainer = train_state.TrainState(model)
  g_gan = float(trainer.train_step(batch)[0])
  keras.utils.set_random_seed(8)
  frozen = pix2pix.Pix2Pix(config, tf.distribute.get_strategy())
  frozen.opt_D.learning_rate = 0.0
  frozen_trainer = train_state.TrainState(frozen)
  g_gan_frozen = float(frozen_trainer.train_step(batch)[0])
  # With D frozen, G's adversarial loss is that of the initial D on G's fake.
  keras.utils.set_random_seed(8)
  initial = pix2pix.Pix2Pix(config, tf.distribute.get_strategy())
  fake = initial.G(batch['A'], training=True)
  want = tf.reduce_mean(losses.gan_loss(
      initial.D(tf.concat([batch['A'], fake], -1), training=True), True, 'vanilla'))
  assert g_gan_frozen == pytest.approx(float(want), rel=1e-5)
  assert g_gan != pytest.approx(g_gan_frozen, rel=1e-4)
  assert not any(np.array_equal(w, v.numpy()) for w, v in zip(weights, model.D.weights)
                 if w.ndim == 4)


def test_pix2pix_networks_roles_and_channels():
  config = _tiny_config()
  config.model.input_nc, config.model.output_nc = 1, 3
  model = pix2pix.Pix2Pix(config, tf.distribute.get_strategy())
  assert set(model.networks) == {'G', 'D'}
  assert model.G.input_shape[-1] == 1 and model.G.output_shape[-1] == 3
  assert model.D.input_shape[-1] == 4  # concat(A, B)
  assert model.generators() == {'a2b': model.G}
  generators = family.build_generators(config.model)
  assert set(generators) == {'G'} and generators['G'].output_shape[-1] == 3
  assert [l for l in model.G.layers if isinstance(l, keras.layers.BatchNormalization)]


def test_pix2pix_configs_validate_and_refuse_what_cannot_work():
  config = pix2pix_config.get_config()
  configuration.validate(config)
  assert (config.model.netG, config.model.norm, config.model.no_dropout) == (
      'unet_256', 'batch', False)
  assert (config.train.pool_size, config.train.gan_mode, config.loss.lambda_L1) == (
      0, 'vanilla', 100.0)
  config.train.pool_size = 50
  with pytest.raises(configuration.ConfigError, match='pool_size=50: pix2pix has no image pool'):
    configuration.validate(config)
  config = pix2pix_config.get_config()
  config.data.dataset_mode = 'unaligned'
  with pytest.raises(configuration.ConfigError, match="needs config.data.dataset_mode='aligned'"):
    configuration.validate(config)
  config = colorization_config.get_config()
  configuration.validate(config)
  config.model.output_nc = 3
  with pytest.raises(configuration.ConfigError, match='output_nc=3 is not valid for '
                     'colorization; allowed: 2'):
    configuration.validate(config)


def test_colorization_is_pix2pix_from_l_to_ab():
  config = colorization_config.get_config()
  config.model.netG, config.model.ngf, config.model.ndf = 'unet_128', 4, 4
  config.data.crop_size = 128
  model = family.get(config.model)(config, tf.distribute.get_strategy())
  assert model.G.input_shape[-1] == 1 and model.G.output_shape[-1] == 2
  assert model.D.input_shape[-1] == 3
  l_channel = tf.zeros([1, 128, 128, 1])  # L = 50: mid gray
  ab = tf.zeros([1, 128, 128, 2])
  visuals = model.visuals(l_channel, ab)
  assert list(visuals) == ['real_A', 'real_B_rgb', 'fake_B_rgb']
  gray = visuals['real_B_rgb'].numpy()
  assert gray.shape == (1, 128, 128, 3)
  # Lab (50, 0, 0) is sRGB 119/255 on every channel (skimage's lab2rgb).
  np.testing.assert_allclose((gray + 1) * 127.5, 119.0, atol=0.6)


def _scalars(logdir, tag):
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  acc = event_accumulator.EventAccumulator(logdir, size_guidance={'tensors': 0})
  acc.Reload()
  return {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)}


@pytest.mark.slow
def test_a_resumed_pix2pix_run_takes_the_uninterrupted_runs_next_steps(tmp_path):
  """Dropout on, batch norm: resumed from the uninterrupted run's checkpoint at step 4, the
  next steps log that run's losses (weights, batch-norm statistics, Adam's moments, the
  dropout layers' random state and the place in the epoch all come back)."""
  from cyclegan_tf.training import train  # pylint: disable=g-import-not-at-top
  config = pix2pix_config.get_config()
  config.model.netG, config.model.ngf, config.model.ndf = 'unet_128', 4, 4
  config.data.load_size, config.data.crop_size = 136, 128
  config.data.synthetic_train_size, config.data.synthetic_test_size = 6, 2
  assert not config.model.no_dropout  # dropout's random state must resume too
  config.train.n_epochs, config.train.n_epochs_decay = 1, 1
  config.train.log_every_steps, config.train.checkpoint_every_steps = 1, 4
  config.train.image_every_steps, config.train.max_to_keep = 100, 10
  straight, resumed = str(tmp_path / 'straight'), tmp_path / 'resumed'
  assert train.train_and_evaluate(config, straight) == 12
  conftest.run_resumed_at(straight, resumed, 4)
  config.train.max_steps = 7
  assert train.train_and_evaluate(config, str(resumed)) == 7
  for name in pix2pix.LOSS_NAMES:
    want = _scalars(os.path.join(straight, 'logs', 'train'), f'loss/{name}')
    got = _scalars(str(resumed / 'logs' / 'train'), f'loss/{name}')
    assert set(got) == {5, 6, 7}, got
    for step in got:
      # Float rounding under load, made whole Adam steps by torch's epsilon (see test_train).
      assert got[step] == pytest.approx(want[step], rel=1e-2, abs=1e-4), (name, step)
