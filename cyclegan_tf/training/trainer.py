"""The CycleGAN train state and train step: the reference's optimize_parameters.

One step, as the paper's objective and the reference's iteration (both per replica):

  1. generator update: fake_B = G_A(A), rec_A = G_B(fake_B), fake_A = G_B(B), rec_B = G_A(fake_A)
     (+ identities G_A(B), G_B(A)); loss = GAN(D_A(fake_B)) + GAN(D_B(fake_A)) + lambda cycle L1
     + lambda_idt identity L1, with the discriminators frozen (only G variables get gradients);
     its gradient computed one independent group of terms at a time (less memory);
  2. discriminator update on real images and on fakes drawn through the image pools:
     0.5 * (GAN(D(real), 1) + GAN(D(pooled fake), 0)) per discriminator (+ a gradient penalty
     for wgangp).

Losses are per example and divided by the GLOBAL batch (the optimizer sums the replicas'
gradients). Every random draw (pools, gradient penalty) is stateless, seeded by (seed, step),
so a resumed run draws what an uninterrupted one would. The losses stay on the device: each
step adds them to running sums and records the first step whose losses were not finite; the
train loop fetches both only when it logs or saves (no host sync per step).
"""

import keras
import tensorflow as tf

from cyclegan_tf import configuration
from cyclegan_tf.training import image_pool
from cyclegan_tf.models import losses
from cyclegan_tf.models import networks
from cyclegan_tf.models import precision as precision_lib
from cyclegan_tf.training import schedules

# Loss terms in the reference's order of reporting; wgangp adds gp_A, gp_B.
LOSS_NAMES = ('D_A', 'G_A', 'cycle_A', 'idt_A', 'D_B', 'G_B', 'cycle_B', 'idt_B')
GENERATOR_TERMS = ('G_A', 'G_B', 'cycle_A', 'cycle_B', 'idt_A', 'idt_B')
PENALTY_TERMS = ('gp_A', 'gp_B')


class NonFiniteLossError(RuntimeError):
  """A loss became NaN or Inf; the last good checkpoint is left untouched."""


def make_optimizer(train_config, precision):
  """Adam with the reference's settings; wrapped in loss scaling for float16."""
  optimizer = keras.optimizers.Adam(train_config.lr, beta_1=train_config.beta1,
                                    beta_2=train_config.beta2)
  if precision == 'mixed_float16':  # float16 gradients need loss scaling
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
  return optimizer


class CycleGANTrainer:
  """The train state (networks, optimizers, pools, counters, loss sums) and the train step.

  Args:
    config: the run's config (validated).
    strategy: the tf.distribute strategy every variable is created under.
    image_shape_a, image_shape_b: (H, W, C) of the training images, None (or None sides) when
      their sizes vary.
    precision: 'float32', 'mixed_bfloat16' or 'mixed_float16' (config 'auto' resolved).
    gemm_last_conv: the generators' last conv as GEMMs, or a plain Conv2D (the same weights
      and checkpoints); None: where it is faster (precision.gemm_last_conv).
    max_image_shapes: {'A': (H_max, W_max, C), 'B': ...}, the largest training images of each
      domain after preprocessing; sizes the image pools when sizes vary (unused otherwise).
  Raises ConfigError for a batch size the replicas cannot split, or for an image pool over
  images of varying sizes without max_image_shapes.
  """

  def __init__(self, config, strategy, image_shape_a, image_shape_b, precision='float32',
               gemm_last_conv=None, max_image_shapes=None):
    self.config = config
    self.strategy = strategy
    self.precision = precision
    c = config.train
    replicas = strategy.num_replicas_in_sync
    if c.batch_size % replicas:
      raise configuration.ConfigError(
          f'config.train.batch_size={c.batch_size} (the global batch) must be a multiple of the '
          f'{replicas} replicas.')
    # None: images of varying sizes (preprocess none / scale_width, batch 1).
    image_shape_a = (None, None, config.model.input_nc) if image_shape_a is None else tuple(
        image_shape_a)
    image_shape_b = (None, None, config.model.output_nc) if image_shape_b is None else tuple(
        image_shape_b)
    # pool_A holds fake A = G_B(real B): B's sizes, A's channels; pool_B the other way round.
    pool_shapes = {'A': image_shape_b[:2] + image_shape_a[2:],
                   'B': image_shape_a[:2] + image_shape_b[2:]}
    max_pool_shapes = {'A': None, 'B': None}
    if c.pool_size > 0 and any(d is None for d in image_shape_a + image_shape_b):
      if max_image_shapes is None:
        raise configuration.ConfigError(
            f'config.train.pool_size={c.pool_size}: with config.data.preprocess='
            f'{config.data.preprocess!r} the training images have different sizes, and the '
            'image pool needs the largest (max_image_shapes) to size its storage.')
      max_pool_shapes = {'A': tuple(max_image_shapes['B'][:2]) + image_shape_a[2:],
                         'B': tuple(max_image_shapes['A'][:2]) + image_shape_b[2:]}
    self.global_batch_size = c.batch_size
    self.loss_names = LOSS_NAMES + (PENALTY_TERMS if self._uses_penalty() else ())
    with strategy.scope(), networks.dtype_policy(precision):
      if gemm_last_conv is None:
        gemm_last_conv = precision_lib.gemm_last_conv(strategy, config.data.crop_size)
      nets = networks.build_cyclegan(config.model, seed=c.seed, gemm_last_conv=gemm_last_conv)
      self.G_A, self.G_B, self.D_A, self.D_B = (nets[k] for k in ('G_A', 'G_B', 'D_A', 'D_B'))
      self.opt_G = make_optimizer(c, precision)
      self.opt_D = make_optimizer(c, precision)
      self.g_vars = self.G_A.trainable_variables + self.G_B.trainable_variables
      self.d_vars = self.D_A.trainable_variables + self.D_B.trainable_variables
      # Built here: a lazy build inside strategy.run fails under MirroredStrategy.
      self.opt_G.build(self.g_vars)
      self.opt_D.build(self.d_vars)
      # pool_A holds generated A images (fed to D_B), pool_B generated B images (D_A).
      # One history per replica; a checkpoint of another replica count restores them empty.
      self.pool_A = image_pool.ImagePool(c.pool_size, pool_shapes['A'], replicas, name='pool_A',
                                         max_shape=max_pool_shapes['A'])
      self.pool_B = image_pool.ImagePool(c.pool_size, pool_shapes['B'], replicas, name='pool_B',
                                         max_shape=max_pool_shapes['B'])
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
      # The schedule is state, never derived from the image count: the epoch (0-based, from
      # epoch_count) and the batches done in it; the train set's sizes they were counted on.
      self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name='epoch')
      self.epoch_step = tf.Variable(0, dtype=tf.int64, trainable=False, name='epoch_step')
      self.train_sizes = tf.Variable([0, 0], dtype=tf.int64, trainable=False,
                                     name='train_sizes')
      self.replicas_at_save = tf.Variable(replicas, dtype=tf.int64, trainable=False)
      # Device-side bookkeeping, fetched by the loop when it logs (not checkpointed):
      # per-term loss sums and their step count since the last fetch, and the first step
      # whose losses were not finite (-1: none) with those losses.
      n = len(self.loss_names)
      self.loss_sums = tf.Variable(tf.zeros([n], tf.float64), trainable=False)
      self.loss_count = tf.Variable(0, dtype=tf.int64, trainable=False)
      self.first_bad_step = tf.Variable(-1, dtype=tf.int64, trainable=False)
      self.bad_losses = tf.Variable(tf.zeros([n], tf.float32), trainable=False)
      # Sum and count of the generator loss over the current epoch, for the plateau policy.
      self.epoch_loss = tf.Variable([0.0, 0.0], dtype=tf.float64, trainable=False)
    self.plateau = schedules.PlateauState()
    self.checkpoint = tf.train.Checkpoint(
        step=self.step, epoch=self.epoch, epoch_step=self.epoch_step,
        train_sizes=self.train_sizes, G_A=self.G_A, G_B=self.G_B, D_A=self.D_A,
        D_B=self.D_B, optimizer_G=self.opt_G, optimizer_D=self.opt_D, pool_A=self.pool_A,
        pool_B=self.pool_B, plateau=self.plateau, epoch_loss=self.epoch_loss,
        replicas=self.replicas_at_save)
    # XLA compiles the forward/backward passes only: never strategy.run or apply_gradients.
    # Without it they are plain calls inside train_step (a nested function costs tracing time).
    compile_ = (lambda f: tf.function(f, jit_compile=True)) if c.jit_compile else (lambda f: f)
    self._generator_grads = compile_(self._generator_grads_fn)
    self._discriminator_grads = compile_(self._discriminator_grads_fn)

  def _uses_penalty(self):
    return self.config.train.gan_mode == 'wgangp' and self.config.train.gp_weight > 0

  # ---- learning rate ----

  def set_learning_rate(self, epoch):
    """Sets both optimizers' learning rate for 0-based `epoch` (schedules.lr_factor)."""
    c = self.config.train
    lr = c.lr * schedules.lr_factor(c, epoch, float(self.plateau.factor.numpy()))
    self.opt_G.learning_rate = lr
    self.opt_D.learning_rate = lr
    return lr

  # ---- the step ----

  def _average(self, per_example):
    # Divides by the GLOBAL batch: the optimizer sums the replicas' gradients.
    return tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch_size)

  def _gradients(self, optimizer, tape, loss, variables):
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
      with tape:  # recorded, or the scaled loss has no gradient (all None)
        loss = optimizer.scale_loss(loss)
    # LossScaleOptimizer unscales them in apply. Zeros, not None, for a variable the loss does
    # not reach, so that the generator's loss groups' gradients always add.
    return tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)

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
        loss = self._average(sum(group_terms.values()))
      group_grads = self._gradients(self.opt_G, tape, loss, self.g_vars)
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
      loss = self._average(loss)
    return self._gradients(self.opt_D, tape, loss, self.d_vars), terms

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

  def _replica_step(self, batch, step):
    real_a, real_b = batch['A'], batch['B']
    (fake_a, fake_b), terms = self._generator_update(real_a, real_b)
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    seed = tf.random.experimental.stateless_fold_in(
        tf.cast(tf.stack([self.config.train.seed, step]), tf.int64), replica)
    terms.update(self._discriminator_update(real_a, real_b, fake_a, fake_b, seed))
    return {name: self._average(value) for name, value in terms.items()}

  # No AutoGraph: the step has no tensor-dependent Python control flow, and converting the
  # networks and optimizers costs seconds of tracing. One trace for images of any size.
  @tf.function(reduce_retracing=True, autograph=False)
  def train_step(self, batch):
    """One iteration of the reference (forward, G update, D update) on a distributed batch.

    Adds the mean losses to the device-side sums (fetch_losses reads them); returns them as a
    float32 vector in self.loss_names order, without waiting for them.
    """
    step = self.step.read_value()
    per_replica = self.strategy.run(self._replica_step, args=(batch, step))
    values = tf.stack([self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica[k], axis=None)
                       for k in self.loss_names])
    self.step.assign_add(1)
    self.epoch_step.assign_add(1)
    self._record(values, step + 1)
    return values

  def _record(self, values, step):
    self.loss_sums.assign_add(tf.cast(values, tf.float64))
    self.loss_count.assign_add(1)
    g_loss = tf.reduce_sum(tf.gather(
        tf.cast(values, tf.float64), [self.loss_names.index(k) for k in GENERATOR_TERMS]))
    self.epoch_loss.assign_add(tf.stack([g_loss, tf.constant(1.0, tf.float64)]))
    first_bad = tf.logical_and(self.first_bad_step < 0,
                               tf.logical_not(tf.reduce_all(tf.math.is_finite(values))))
    self.bad_losses.assign(tf.where(first_bad, values, self.bad_losses))
    self.first_bad_step.assign(tf.where(first_bad, step, self.first_bad_step))

  # ---- what the loop fetches ----

  def fetch_losses(self):
    """Mean losses since the last fetch ({name: float}, possibly empty) and resets the sums.

    Raises NonFiniteLossError naming the first step whose losses were not finite and those
    losses.
    """
    bad_step = int(self.first_bad_step.numpy())
    if bad_step >= 0:
      values = dict(zip(self.loss_names, self.bad_losses.numpy().tolist()))
      bad = ', '.join(f'{k}={v}' for k, v in values.items() if not tf.math.is_finite(v))
      raise NonFiniteLossError(f'Loss {bad} at step {bad_step}')
    count = int(self.loss_count.numpy())
    sums = self.loss_sums.numpy()
    self.loss_sums.assign(tf.zeros_like(self.loss_sums))
    self.loss_count.assign(0)
    if not count:
      return {}
    return {name: float(total) / count for name, total in zip(self.loss_names, sums)}

  def end_epoch(self):
    """Ends the epoch: feeds its mean generator loss to the plateau policy, resets the sum and
    moves the schedule to the start of the next epoch."""
    if self.config.train.lr_policy == 'plateau':
      total, count = self.epoch_loss.numpy()
      self.plateau.update(total / max(count, 1.0))
    self.epoch_loss.assign([0.0, 0.0])
    self.epoch.assign_add(1)
    self.epoch_step.assign(0)

  @tf.function(reduce_retracing=True, autograph=False)
  def translate_samples(self, real_a, real_b):
    """Everything the image summaries show, in inference mode: real_A, fake_B, rec_A, real_B,
    fake_A, rec_B, and the identities idt_B = G_B(A), idt_A = G_A(B) when the channel counts
    allow them (input_nc == output_nc)."""
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
