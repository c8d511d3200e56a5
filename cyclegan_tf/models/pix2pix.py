"""pix2pix as a model of the family: paired translation A -> B with one generator and one
conditional discriminator (Isola et al. 2017, "Image-to-Image Translation with Conditional
Adversarial Networks"; the reference's pix2pix_model.py, optimize_parameters).

One step, as the reference's iteration (per replica):

  fake_B = G(A)                                      (one generator forward)
  1. discriminator update, D judging (A, B) pairs concatenated on channels:
     loss_D = 0.5 * (GAN(D([A, fake_B]) detached, 0) + GAN(D([A, B]), 1))
  2. generator update with the updated D frozen, through the same fake_B:
     loss_G = GAN(D([A, fake_B]), 1) + lambda_L1 * |fake_B - B|_1

No image pool (the reference sets pool_size 0). Losses are reported as G_GAN, G_L1, D_real,
D_fake (D_real and D_fake before the 0.5).
"""

import tensorflow as tf

from cyclegan_tf.models import base
from cyclegan_tf.models import losses
from cyclegan_tf.models import networks
from cyclegan_tf.models import precision as precision_lib

LOSS_NAMES = ('G_GAN', 'G_L1', 'D_real', 'D_fake')
PENALTY_TERMS = ('gp',)


def check_pix2pix_config(config, name='pix2pix'):
  """Raises ValueError for settings pix2pix cannot train with (an image pool)."""
  if config.train.pool_size != 0:
    raise ValueError(
        f'config.train.pool_size={config.train.pool_size}: {name} has no image pool (the '
        'reference sets pool_size 0 for it); use --config.train.pool_size=0 or configs/'
        f'{name}.py.')


class Pix2Pix(base.GANModel):
  """G: A -> B (input_nc -> output_nc channels), D judges concat(A, B) (input_nc + output_nc
  channels), two Adam optimizers.

  Args (beyond GANModel's):
    train_shapes, max_train_shapes: accepted for the family's interface; unused (no pool).
    gemm_last_conv: the generator's last conv as GEMMs where it is faster (resnet generators
      only; U-Nets end in a transposed conv).
  """

  NAME = 'pix2pix'
  LOSS_NAMES = LOSS_NAMES
  GENERATOR_TERMS = ('G_GAN', 'G_L1')
  EXPORTS = {'G': 'a2b'}
  EXPORT_PREFIX = 'pix2pix'
  VISUAL_NAMES = ('real_A', 'fake_B', 'real_B')

  @classmethod
  def validate_config(cls, config):
    check_pix2pix_config(config, cls.NAME)

  @classmethod
  def build_generators(cls, model_config):
    c = model_config
    return {'G': networks.generator_from_config(c, c.input_nc, c.output_nc, 'G',
                                                gemm_last_conv=False)}

  def __init__(self, config, strategy, precision='float32', train_shapes=None,
               max_train_shapes=None, gemm_last_conv=None):
    del train_shapes, max_train_shapes
    super().__init__(config, strategy, precision)
    self.validate_config(config)
    c, m = config.train, config.model
    with strategy.scope(), networks.dtype_policy(precision):
      if gemm_last_conv is None:
        gemm_last_conv = precision_lib.gemm_last_conv(strategy, config.data.crop_size)
      self.G = networks.generator_from_config(m, m.input_nc, m.output_nc, 'G', seed=c.seed,
                                              gemm_last_conv=gemm_last_conv)
      self.D = networks.discriminator_from_config(m, m.input_nc + m.output_nc, 'D',
                                                  seed=c.seed + 1)
      self.networks = {'G': self.G, 'D': self.D}
      self.opt_G = base.make_optimizer(c, precision)
      self.opt_D = base.make_optimizer(c, precision)
      self.optimizers = {'optimizer_G': self.opt_G, 'optimizer_D': self.opt_D}
      self.g_vars = self.G.trainable_variables
      self.d_vars = self.D.trainable_variables
      # Built here: a lazy build inside strategy.run fails under MirroredStrategy.
      self.opt_G.build(self.g_vars)
      self.opt_D.build(self.d_vars)
    # Under XLA (config.train.jit_compile): the losses and the discriminator's backward; the
    # generator's forward and backward share one tape across the D update and run as they are.
    self._discriminator_grads = self.compile(self._discriminator_grads_fn)
    self._generator_loss_grads = self.compile(self._generator_loss_grads_fn)

  @property
  def loss_names(self):
    return LOSS_NAMES + (PENALTY_TERMS if self._uses_penalty() else ())

  def checkpoint_items(self):
    items = super().checkpoint_items()
    random_states = self.random_states()
    if random_states is not None:  # dropout's masks continue where they were
      items['random_states'] = random_states
    return items

  def _uses_penalty(self):
    return self.config.train.gan_mode == 'wgangp' and self.config.train.gp_weight > 0

  def _gan(self, prediction, target_is_real):
    return losses.gan_loss(prediction, target_is_real, self.config.train.gan_mode)

  # ---- the step ----

  def _discriminator_grads_fn(self, real_a, real_b, fake_b, seed):
    """backward_D: the fake pair (detached) first, then the real pair, as the reference."""
    fake_ab = tf.concat([real_a, tf.cast(tf.stop_gradient(fake_b), real_a.dtype)], axis=-1)
    real_ab = tf.concat([real_a, real_b], axis=-1)
    with tf.GradientTape() as tape:
      terms = {'D_fake': self._gan(self.D(fake_ab, training=True), False),
               'D_real': self._gan(self.D(real_ab, training=True), True)}
      loss = 0.5 * (terms['D_fake'] + terms['D_real'])
      if self._uses_penalty():
        terms['gp'] = losses.gradient_penalty(self.D, real_ab, fake_ab, seed)
        loss += self.config.train.gp_weight * terms['gp']
      loss = self.average(loss)
    return self.gradients(self.opt_D, tape, loss, self.d_vars), terms

  def _generator_loss_grads_fn(self, real_a, real_b, fake_b):
    """backward_G up to fake_B: GAN(D([A, fake_B]), 1) + lambda_L1 * L1(fake_B, B) with D
    frozen; returns (d loss / d fake_B, loss terms)."""
    with tf.GradientTape() as tape:
      tape.watch(fake_b)
      fake_ab = tf.concat([real_a, tf.cast(fake_b, real_a.dtype)], axis=-1)
      terms = {'G_GAN': self._gan(self.D(fake_ab, training=True), True),
               'G_L1': losses.l1_loss(fake_b, real_b) * self.config.loss.lambda_L1}
      loss = self.average(terms['G_GAN'] + terms['G_L1'])
    return self.gradients(self.opt_G, tape, loss, [fake_b])[0], terms

  def replica_step(self, batch, step):
    """optimize_parameters: one forward of G, the discriminator's update, then the
    generator's through that same forward (one batch-norm update and dropout draw per step,
    as the reference)."""
    real_a, real_b = batch['A'], batch['B']
    with tf.GradientTape() as tape:
      fake_b = self.G(real_a, training=True)
    d_grads, terms = self._discriminator_grads(real_a, real_b, fake_b, self.replica_seed(step))
    self.opt_D.apply_gradients(zip(d_grads, self.d_vars))
    # G learns against the updated D, as the reference's does: its loss reads D after the
    # update (stated, not left to the executor's ordering of reads and writes).
    with tf.control_dependencies(base.after_update(self.opt_D, terms)):
      d_fake_b, g_terms = self._generator_loss_grads(real_a, real_b, fake_b)
    g_grads = tape.gradient(fake_b, self.g_vars, output_gradients=d_fake_b,
                            unconnected_gradients=tf.UnconnectedGradients.ZERO)
    self.opt_G.apply_gradients(zip(g_grads, self.g_vars))
    terms.update(g_terms)
    return terms

  def visuals(self, real_a, real_b):
    """real_A, fake_B = G(A) in inference mode, real_B."""
    return {'real_A': real_a, 'fake_B': self.G(real_a, training=False), 'real_B': real_b}


MODEL = Pix2Pix
