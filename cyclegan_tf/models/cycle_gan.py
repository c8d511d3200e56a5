"""CycleGAN as a model of the family: its networks, image pools, losses and train step (the
reference's cycle_gan_model.py, optimize_parameters).

One step, as the paper's objective and the reference's iteration (both per replica):

  1. generator update: fake_B = G_A(A), rec_A = G_B(fake_B), fake_A = G_B(B), rec_B = G_A(fake_A)
     (+ identities G_A(B), G_B(A)); loss = GAN(D_A(fake_B)) + GAN(D_B(fake_A)) + lambda cycle L1
     + lambda_idt identity L1, with the discriminators frozen (only G variables get gradients);
     its gradient computed one independent group of terms at a time (less memory);
  2. discriminator update on real images and on fakes drawn through the image pools:
     0.5 * (GAN(D(real), 1) + GAN(D(pooled fake), 0)) per discriminator (+ a gradient penalty
     for wgangp).

Every random draw (pools, gradient penalty) is stateless, seeded by (seed, step, replica), so
a resumed run draws what an uninterrupted one would.
"""

import tensorflow as tf

from cyclegan_tf.models import base
from cyclegan_tf.models import image_pool
from cyclegan_tf.models import losses
from cyclegan_tf.models import networks
from cyclegan_tf.models import precision as precision_lib

# Loss terms in the reference's order of reporting; wgangp adds gp_A, gp_B.
LOSS_NAMES = ('D_A', 'G_A', 'cycle_A', 'idt_A', 'D_B', 'G_B', 'cycle_B', 'idt_B')
PENALTY_TERMS = ('gp_A', 'gp_B')


def _pool_shapes(config, train_shapes, max_train_shapes):
  """({'A', 'B'}: pool image shape, {'A', 'B'}: largest pool image shape or None).

  pool_A holds fake A = G_B(real B): B's sizes, A's channels; pool_B the other way round.
  Raises ValueError for images of varying sizes without their largest shapes.
  """
  m = config.model
  shape_a = tuple(train_shapes['A'] or (None, None, m.input_nc))
  shape_b = tuple(train_shapes['B'] or (None, None, m.output_nc))
  shapes = {'A': shape_b[:2] + shape_a[2:], 'B': shape_a[:2] + shape_b[2:]}
  largest = {'A': None, 'B': None}
  if config.train.pool_size > 0 and None in shape_a + shape_b:
    if not max_train_shapes:
      raise ValueError('Image pools over images of varying sizes need the largest training '
                       'images\' shapes (max_train_shapes) to size their storage.')
    largest = {'A': tuple(max_train_shapes['B'][:2]) + shape_a[2:],
               'B': tuple(max_train_shapes['A'][:2]) + shape_b[2:]}
  return shapes, largest


class CycleGAN(base.GANModel):
  """G_A: A -> B, G_B: B -> A, D_A judges B images, D_B judges A images (the reference's roles),
  two Adam optimizers (G and D) and two image pools.

  Args (beyond GANModel's):
    train_shapes: {'A', 'B'}: (H, W, C) of the training images, None (or None sides) when their
      sizes vary (preprocess none / scale_width at batch 1).
    max_train_shapes: {'A', 'B'}: the largest training images after preprocessing; sizes the
      image pools when sizes vary (unused otherwise).
    gemm_last_conv: the generators' last conv as GEMMs, or a plain Conv2D (the same weights
      and checkpoints); None: where it is faster (precision.gemm_last_conv).
  Raises ValueError for image pools over images of varying sizes without max_train_shapes.
  """

  NAME = 'cycle_gan'
  LOSS_NAMES = LOSS_NAMES
  GENERATOR_TERMS = ('G_A', 'G_B', 'cycle_A', 'cycle_B', 'idt_A', 'idt_B')
  EXPORTS = {'G_A': 'a2b', 'G_B': 'b2a'}
  EXPORT_PREFIX = 'cyclegan'
  VISUAL_NAMES = ('real_A', 'fake_B', 'rec_A', 'real_B', 'fake_A', 'rec_B')

  @classmethod
  def validate_config(cls, config):
    if config.loss.lambda_identity > 0 and config.model.input_nc != config.model.output_nc:
      raise ValueError(
          f'config.loss.lambda_identity={config.loss.lambda_identity} needs model.input_nc == '
          f'model.output_nc (got {config.model.input_nc} and {config.model.output_nc}); set '
          'lambda_identity=0 for data with different channel counts.')

  @classmethod
  def build_generators(cls, model_config):
    return networks.build_cyclegan(model_config, with_discriminators=False,
                                   gemm_last_conv=False)

  def __init__(self, config, strategy, precision='float32', train_shapes=None,
               max_train_shapes=None, gemm_last_conv=None):
    super().__init__(config, strategy, precision)
    c = config.train
    replicas = strategy.num_replicas_in_sync
    pool_shapes, largest = _pool_shapes(config, train_shapes or {'A': None, 'B': None},
                                        max_train_shapes)
    with strategy.scope(), networks.dtype_policy(precision):
      if gemm_last_conv is None:
        gemm_last_conv = precision_lib.gemm_last_conv(strategy, config.data.crop_size)
      self.networks = networks.build_cyclegan(config.model, seed=c.seed,
                                              gemm_last_conv=gemm_last_conv)
      self.G_A, self.G_B, self.D_A, self.D_B = (self.networks[k] for k in
                                                ('G_A', 'G_B', 'D_A', 'D_B'))
      self.opt_G = base.make_optimizer(c, precision)
      self.opt_D = base.make_optimizer(c, precision)
      self.optimizers = {'optimizer_G': self.opt_G, 'optimizer_D': self.opt_D}
      self.g_vars = self.G_A.trainable_variables + self.G_B.trainable_variables
      self.d_vars = self.D_A.trainable_variables + self.D_B.trainable_variables
      # Built here: a lazy build inside strategy.run fails under MirroredStrategy.
      self.opt_G.build(self.g_vars)
      self.opt_D.build(self.d_vars)
      # pool_A holds generated A images (fed to D_B), pool_B generated B images (D_A).
      # One history per replica; a checkpoint of another replica count restores them empty.
      self.pool_A = image_pool.ImagePool(c.pool_size, pool_shapes['A'], replicas, name='pool_A',
                                         max_shape=largest['A'])
      self.pool_B = image_pool.ImagePool(c.pool_size, pool_shapes['B'], replicas, name='pool_B',
                                         max_shape=largest['B'])
    self._generator_grads = self.compile(self._generator_grads_fn)
    self._discriminator_grads = self.compile(self._discriminator_grads_fn)

  @property
  def loss_names(self):
    return LOSS_NAMES + (PENALTY_TERMS if self._uses_penalty() else ())

  def _uses_penalty(self):
    return self.config.train.gan_mode == 'wgangp' and self.config.train.gp_weight > 0

  def checkpoint_items(self):
    return {**super().checkpoint_items(), 'pool_A': self.pool_A, 'pool_B': self.pool_B}

  def reset_replica_state(self):
    self.pool_A.reset()
    self.pool_B.reset()

  # ---- the step ----

  def _generator_grads_fn(self, real_a, real_b):
    """Forward both cycles and the G losses; returns (G gradients, fakes, loss terms).

    The G loss is a sum of three groups of terms that share no activations: the A cycle
    (G_A(A), G_B(G_A(A)), D_A), the B cycle, the identities. Its gradient is the sum of the
    groups' gradients, and each group's backward runs before the next group's forward starts:
    one group's activations are held at a time instead of all six generator calls', for the
    same FLOPs. The calls keep the reference's order per network (batch norm's moving
    statistics depend on it), one call per input: joining independent inputs on the batch axis
    measured no faster on CPU and held more memory (concat and split copies).
    """
    lam = self.config.loss
    gan = lambda pred: losses.gan_loss(pred, True, self.config.train.gan_mode)
    fakes = {}

    def cycle_a(real_a, real_b):  # A -> G_A -> fake B -> G_B -> A, and D_A judging fake B
      fakes['B'] = fake_b = self.G_A(real_a, training=True)
      rec_a = self.G_B(fake_b, training=True)
      return {'G_A': gan(self.D_A(fake_b, training=True)),
              'cycle_A': losses.cycle_loss(real_a, rec_a, lam.lambda_A)}

    def cycle_b(real_a, real_b):  # B -> G_B -> fake A -> G_A -> B, and D_B judging fake A
      fakes['A'] = fake_a = self.G_B(real_b, training=True)
      rec_b = self.G_A(fake_a, training=True)
      return {'G_B': gan(self.D_B(fake_a, training=True)),
              'cycle_B': losses.cycle_loss(real_b, rec_b, lam.lambda_B)}

    def identities(real_a, real_b):  # G_A(B) ~ B and G_B(A) ~ A (needs input_nc == output_nc)
      return {'idt_A': losses.identity_loss(real_b, self.G_A(real_b, training=True),
                                            lam.lambda_B, lam.lambda_identity),
              'idt_B': losses.identity_loss(real_a, self.G_B(real_a, training=True),
                                            lam.lambda_A, lam.lambda_identity)}

    groups = (cycle_a, cycle_b) + ((identities,) if lam.lambda_identity > 0 else ())
    terms, grads = {}, None
    for group in groups:
      # The images pass through an identity that waits for the previous group's gradients.
      with tf.control_dependencies(grads or []):
        inputs = tf.identity(real_a), tf.identity(real_b)
      with tf.GradientTape() as tape:
        group_terms = group(*inputs)
        loss = self.average(sum(group_terms.values()))
      group_grads = self.gradients(self.opt_G, tape, loss, self.g_vars)
      grads = group_grads if grads is None else [g + h for g, h in zip(grads, group_grads)]
      terms.update(group_terms)
    if lam.lambda_identity <= 0:
      terms['idt_A'] = terms['idt_B'] = tf.zeros_like(terms['G_A'])
    return grads, (tf.stop_gradient(fakes['A']), tf.stop_gradient(fakes['B'])), terms

  def _discriminator_grads_fn(self, real_a, real_b, pooled_a, pooled_b, seed):
    """D losses on real and pooled fake images; returns (D gradients, loss terms)."""
    gan_mode = self.config.train.gan_mode
    with tf.GradientTape() as tape:
      pred_real_b, pred_fake_b = (self.D_A(x, training=True) for x in (real_b, pooled_b))
      pred_real_a, pred_fake_a = (self.D_B(x, training=True) for x in (real_a, pooled_a))
      terms = {'D_A': losses.discriminator_loss(pred_real_b, pred_fake_b, gan_mode),
               'D_B': losses.discriminator_loss(pred_real_a, pred_fake_a, gan_mode)}
      loss = terms['D_A'] + terms['D_B']
      if self._uses_penalty():
        fold = tf.random.experimental.stateless_fold_in
        terms['gp_A'] = losses.gradient_penalty(self.D_A, real_b, pooled_b, fold(seed, 2))
        terms['gp_B'] = losses.gradient_penalty(self.D_B, real_a, pooled_a, fold(seed, 3))
        loss += self.config.train.gp_weight * (terms['gp_A'] + terms['gp_B'])
      loss = self.average(loss)
    return self.gradients(self.opt_D, tape, loss, self.d_vars), terms

  def _generator_update(self, real_a, real_b):
    grads, fakes, terms = self._generator_grads(real_a, real_b)
    self.opt_G.apply_gradients(zip(grads, self.g_vars))
    return fakes, terms

  def _discriminator_update(self, real_a, real_b, fake_a, fake_b, seed):
    fold = tf.random.experimental.stateless_fold_in
    pooled_b = self.pool_B.query(fake_b, fold(seed, 0))
    pooled_a = self.pool_A.query(fake_a, fold(seed, 1))
    grads, terms = self._discriminator_grads(real_a, real_b, pooled_a, pooled_b, seed)
    self.opt_D.apply_gradients(zip(grads, self.d_vars))
    return terms

  def replica_step(self, batch, step):
    """optimize_parameters: the generators' update, then the discriminators'."""
    real_a, real_b = batch['A'], batch['B']
    (fake_a, fake_b), terms = self._generator_update(real_a, real_b)
    # The discriminators change only after the generators' step has read them (stated, not
    # left to the executor's ordering of reads and writes).
    with tf.control_dependencies(base.after_update(self.opt_G, terms)):
      terms.update(self._discriminator_update(real_a, real_b, fake_a, fake_b,
                                              self.replica_seed(step)))
    return terms

  def visuals(self, real_a, real_b):
    """real_A, fake_B, rec_A, real_B, fake_A, rec_B, and the identities idt_B = G_B(A),
    idt_A = G_A(B) when the channel counts allow them (input_nc == output_nc)."""
    fake_b = self.G_A(real_a, training=False)
    fake_a = self.G_B(real_b, training=False)
    samples = {
        'real_A': real_a, 'fake_B': fake_b, 'rec_A': self.G_B(fake_b, training=False),
        'real_B': real_b, 'fake_A': fake_a, 'rec_B': self.G_A(fake_a, training=False),
    }
    if self.config.model.input_nc == self.config.model.output_nc:
      samples['idt_B'] = self.G_B(real_a, training=False)
      samples['idt_A'] = self.G_A(real_b, training=False)
    return samples


MODEL = CycleGAN
