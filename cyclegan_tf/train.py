"""The CycleGAN train loop: train state, the compiled train step, checkpoints, summaries, faults.

train_and_evaluate(config, workdir) trains a CycleGAN and leaves in `workdir`:
  config.json      the config of the run (a resume must keep its architecture and data)
  checkpoints/     tf.train.CheckpointManager checkpoints: step, epoch, the four networks, both
                   Adam optimizers, both image pools, plateau LR state and the epoch's loss sums
  logs/train/      TensorBoard: every loss term, learning rates, images/s, images, the config
  samples/         PNG grids of real | translated | reconstructed images

Resume is exact without saving a tf.data iterator: the input pipeline is a pure function of
(config, epoch, position), the position is `step`, and every random draw of the step (image
pool, gradient penalty) is stateless, seeded by (seed, step).
"""

import contextlib
import json
import os
import signal
import time

from absl import logging
import keras
import ml_collections
import numpy as np
import tensorflow as tf

from cyclegan_tf import configuration
from cyclegan_tf import distribute
from cyclegan_tf import image_pool
from cyclegan_tf import images as images_lib
from cyclegan_tf import input_pipeline
from cyclegan_tf import losses
from cyclegan_tf import networks
from cyclegan_tf import schedules

# Loss terms in the reference's order of reporting.
LOSS_NAMES = ('D_A', 'G_A', 'cycle_A', 'idt_A', 'D_B', 'G_B', 'cycle_B', 'idt_B')
CONFIG_FILE = 'config.json'
CHECKPOINT_DIR = 'checkpoints'


class NonFiniteLossError(RuntimeError):
  """A loss became NaN or Inf; the last good checkpoint is left untouched."""


@contextlib.contextmanager
def dtype_policy(name):
  """Builds models under the given Keras dtype policy, then restores the previous one."""
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(name)
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy(previous)


def _make_optimizer(train_config):
  optimizer = keras.optimizers.Adam(train_config.lr, beta_1=train_config.beta1,
                                    beta_2=train_config.beta2)
  if train_config.precision == 'mixed_float16':  # float16 gradients need loss scaling
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
  return optimizer


def _call_batched(model, inputs, batchable):
  """model on several inputs, in one call when the network treats examples independently.

  Instance norm (and no norm) keep examples independent, so concatenating on the batch axis
  gives the same numbers as separate calls, in one bigger, faster call. Batch norm mixes
  examples, so it gets the reference's separate calls, in the given order.
  """
  if not batchable or len(inputs) == 1:
    return [model(x, training=True) for x in inputs]
  sizes = [tf.shape(x)[0] for x in inputs]
  return tf.split(model(tf.concat(inputs, axis=0), training=True), sizes, axis=0)


class CycleGANTrainer:
  """The train state (networks, optimizers, pools, counters) and the train step."""

  def __init__(self, config, strategy, image_shape_a, image_shape_b):
    self.config = config
    self.strategy = strategy
    c = config.train
    replicas = strategy.num_replicas_in_sync
    if c.batch_size % replicas:
      raise configuration.ConfigError(
          f'config.train.batch_size={c.batch_size} (the global batch) must be a multiple of the '
          f'{replicas} replicas.')
    self.global_batch_size = c.batch_size
    # Examples are independent through the networks unless batch norm mixes them.
    self.batchable = config.model.norm != 'batch'
    with strategy.scope(), dtype_policy(c.precision):
      nets = networks.build_cyclegan(config.model, seed=c.seed)
      self.G_A, self.G_B, self.D_A, self.D_B = (nets[k] for k in ('G_A', 'G_B', 'D_A', 'D_B'))
      self.opt_G = _make_optimizer(c)
      self.opt_D = _make_optimizer(c)
      self.g_vars = self.G_A.trainable_variables + self.G_B.trainable_variables
      self.d_vars = self.D_A.trainable_variables + self.D_B.trainable_variables
      # Built here: a lazy build inside strategy.run fails under MirroredStrategy (FACTS.md).
      self.opt_G.build(self.g_vars)
      self.opt_D.build(self.d_vars)
      # pool_A holds generated A images (fed to D_B), pool_B generated B images (D_A).
      # One history per replica; a checkpoint of another replica count restores them empty.
      self.pool_A = image_pool.ImagePool(c.pool_size, image_shape_a, replicas, name='pool_A')
      self.pool_B = image_pool.ImagePool(c.pool_size, image_shape_b, replicas, name='pool_B')
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
      self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name='epoch')
      self.replicas_at_save = tf.Variable(replicas, dtype=tf.int64, trainable=False)
    self.plateau = schedules.PlateauState()
    # Sum and count of the generator loss over the current epoch, for the plateau policy.
    self.epoch_loss = tf.Variable([0.0, 0.0], dtype=tf.float64, trainable=False)
    self.checkpoint = tf.train.Checkpoint(
        step=self.step, epoch=self.epoch, G_A=self.G_A, G_B=self.G_B, D_A=self.D_A,
        D_B=self.D_B, optimizer_G=self.opt_G, optimizer_D=self.opt_D, pool_A=self.pool_A,
        pool_B=self.pool_B, plateau=self.plateau, epoch_loss=self.epoch_loss,
        replicas=self.replicas_at_save)

  def set_learning_rate(self, epoch):
    c = self.config.train
    lr = c.lr * schedules.lr_factor(c, epoch, float(self.plateau.factor.numpy()))
    self.opt_G.learning_rate = lr
    self.opt_D.learning_rate = lr
    return lr

  def _average(self, per_example):
    # Divides by the GLOBAL batch: the optimizer sums the replicas' gradients.
    return tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch_size)

  def _apply(self, optimizer, tape, loss, variables):
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
      with tape:  # recorded, or the scaled loss has no gradient (all None)
        loss = optimizer.scale_loss(loss)
    grads = tape.gradient(loss, variables)  # LossScaleOptimizer unscales them in apply
    optimizer.apply_gradients(zip(grads, variables))

  def _replica_step(self, batch, step):
    c, lam = self.config.train, self.config.loss
    real_a, real_b = batch['A'], batch['B']
    use_identity = lam.lambda_identity > 0
    gan = lambda pred, is_real: losses.gan_loss(pred, is_real, c.gan_mode)

    # Generators, with the discriminators frozen (only G variables get gradients).
    with tf.GradientTape() as tape:
      if self.batchable:  # three generator calls instead of six
        fake_b, *idt_a = _call_batched(self.G_A, [real_a] + [real_b] * use_identity, True)
        rec_a, fake_a, *idt_b = _call_batched(
            self.G_B, [fake_b, real_b] + [real_a] * use_identity, True)
        rec_b = self.G_A(fake_a, training=True)
      else:  # the reference's order, which batch norm's moving statistics depend on
        fake_b = self.G_A(real_a, training=True)
        rec_a = self.G_B(fake_b, training=True)
        fake_a = self.G_B(real_b, training=True)
        rec_b = self.G_A(fake_a, training=True)
        idt_a = [self.G_A(real_b, training=True)] * use_identity
        idt_b = [self.G_B(real_a, training=True)] * use_identity
      terms = {
          'G_A': gan(self.D_A(fake_b, training=True), True),
          'G_B': gan(self.D_B(fake_a, training=True), True),
      }
      terms['cycle_A'], terms['cycle_B'] = losses.cycle_losses(
          real_a, rec_a, real_b, rec_b, lam.lambda_A, lam.lambda_B)
      if use_identity:
        terms['idt_A'], terms['idt_B'] = losses.identity_losses(
            real_a, idt_b[0], real_b, idt_a[0], lam.lambda_A, lam.lambda_B, lam.lambda_identity)
      else:
        terms['idt_A'] = terms['idt_B'] = tf.zeros_like(terms['G_A'])
      loss_g = self._average(sum(terms.values()))
    self._apply(self.opt_G, tape, loss_g, self.g_vars)

    # Discriminators, on real images and on generated ones drawn through the pools.
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    seed = tf.random.experimental.stateless_fold_in(
        tf.cast(tf.stack([c.seed, step]), tf.int64), replica)
    pooled_b = self.pool_B.query(tf.stop_gradient(fake_b), tf.random.experimental.
                                 stateless_fold_in(seed, 0))
    pooled_a = self.pool_A.query(tf.stop_gradient(fake_a), tf.random.experimental.
                                 stateless_fold_in(seed, 1))
    with tf.GradientTape() as tape:
      pred_real_b, pred_fake_b = _call_batched(self.D_A, [real_b, pooled_b], self.batchable)
      pred_real_a, pred_fake_a = _call_batched(self.D_B, [real_a, pooled_a], self.batchable)
      terms['D_A'] = losses.discriminator_loss(pred_real_b, pred_fake_b, c.gan_mode)
      terms['D_B'] = losses.discriminator_loss(pred_real_a, pred_fake_a, c.gan_mode)
      loss_d = terms['D_A'] + terms['D_B']
      if c.gan_mode == 'wgangp' and c.gp_weight > 0:
        terms['gp_A'] = losses.gradient_penalty(
            self.D_A, real_b, pooled_b, tf.random.experimental.stateless_fold_in(seed, 2))
        terms['gp_B'] = losses.gradient_penalty(
            self.D_B, real_a, pooled_a, tf.random.experimental.stateless_fold_in(seed, 3))
        loss_d += c.gp_weight * (terms['gp_A'] + terms['gp_B'])
      loss_d = self._average(loss_d)
    self._apply(self.opt_D, tape, loss_d, self.d_vars)
    return {name: self._average(value) for name, value in terms.items()}

  @tf.function
  def train_step(self, batch):
    """One iteration of the reference: forward, G step, D step. Returns the mean losses."""
    step = self.step.read_value()
    per_replica = self.strategy.run(self._replica_step, args=(batch, step))
    self.step.assign_add(1)
    return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in per_replica.items()}

  @tf.function
  def translate_samples(self, real_a, real_b):
    """Everything the image summaries show, in inference mode."""
    fake_b = self.G_A(real_a, training=False)
    fake_a = self.G_B(real_b, training=False)
    return {
        'real_A': real_a, 'fake_B': fake_b, 'rec_A': self.G_B(fake_b, training=False),
        'idt_B': self.G_B(real_a, training=False), 'real_B': real_b, 'fake_A': fake_a,
        'rec_B': self.G_A(fake_a, training=False), 'idt_A': self.G_A(real_b, training=False),
    }


def _to_rgb(images):
  images = np.asarray(images, np.float32)
  return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def sample_grid(samples):
  """One row per sample: real_A | fake_B | rec_A | real_B | fake_A | rec_B, as uint8 RGB."""
  columns = ('real_A', 'fake_B', 'rec_A', 'real_B', 'fake_A', 'rec_B')
  rows = [np.concatenate([_to_rgb(samples[k][i]) for k in columns], axis=1)
          for i in range(len(samples['real_A']))]
  return images_lib.to_uint8(np.concatenate(rows, axis=0)).numpy()


def load_run_config(workdir):
  path = os.path.join(workdir, CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'{path} not found: {workdir} is not a training run directory '
                            '(train one with `python main.py --config=... --workdir=DIR`).')
  with tf.io.gfile.GFile(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def _prepare_workdir(config, workdir, chief):
  """Writes config.json on a new run; on an existing one, refuses incompatible changes."""
  path = os.path.join(workdir, CONFIG_FILE)
  if tf.io.gfile.exists(path):
    saved = load_run_config(workdir).to_dict()
    conflicts = configuration.resume_conflicts(saved, config)
    if conflicts:
      raise configuration.ConfigError(
          f'{workdir} holds a run with a different config; resuming it with this one would mix '
          'runs. Use a new --workdir, or the run\'s own config. Differing fields:\n  ' +
          '\n  '.join(conflicts))
  if chief:
    tf.io.gfile.makedirs(workdir)
    with tf.io.gfile.GFile(path + '.tmp', 'w') as f:
      f.write(configuration.to_json(config))
    tf.io.gfile.rename(path + '.tmp', path, overwrite=True)


class _StopSignal:
  """Turns SIGTERM / SIGINT into a request to checkpoint and stop after the current step."""

  def __init__(self):
    self.received = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: leave signals alone
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    self.received = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _fixed_samples(config, count=4):
  """A few test images per domain for image summaries and sample grids."""
  a = input_pipeline.load_test_arrays(config, 'A', max_images=count)
  b = input_pipeline.load_test_arrays(config, 'B', max_images=count)
  n = min(len(a), len(b))
  return tf.constant(a[:n]), tf.constant(b[:n])


def _write_images(trainer, samples_a, samples_b, writer, workdir, step, chief):
  out = {k: v.numpy() for k, v in trainer.translate_samples(samples_a, samples_b).items()}
  with writer.as_default(step=step):
    for name, value in out.items():
      tf.summary.image(name, (value + 1.0) / 2.0, max_outputs=len(value))
  if chief:
    samples_dir = os.path.join(workdir, 'samples')
    tf.io.gfile.makedirs(samples_dir)
    png = tf.io.encode_png(sample_grid(out)).numpy()
    with tf.io.gfile.GFile(os.path.join(samples_dir, f'step_{step:07d}.png'), 'wb') as f:
      f.write(png)


def train_and_evaluate(config, workdir):
  """Trains (or resumes) the run in `workdir`; returns the final step."""
  configuration.validate(config)
  if config.train.deterministic:
    tf.config.experimental.enable_op_determinism()
  keras.utils.set_random_seed(config.train.seed)
  strategy = distribute.make_strategy(config.train)
  distribute.log_replicas(strategy)
  chief = distribute.is_chief(strategy)
  _prepare_workdir(config, workdir, chief)

  steps_per_epoch = input_pipeline.steps_per_epoch(config)
  first = input_pipeline.train_dataset(config, epoch=0)
  trainer = CycleGANTrainer(config, strategy, first.element_spec['A'].shape[1:],
                            first.element_spec['B'].shape[1:])
  # Every worker saves (saving may use collectives); non-chief workers into a temporary
  # directory removed after each save. Every worker resumes from the chief's checkpoints.
  ckpt_root = os.path.join(workdir, CHECKPOINT_DIR)
  manager = tf.train.CheckpointManager(trainer.checkpoint,
                                       distribute.worker_dir(ckpt_root, strategy),
                                       max_to_keep=config.train.max_to_keep,
                                       step_counter=trainer.step, checkpoint_name='ckpt')
  latest = tf.train.latest_checkpoint(ckpt_root)
  if latest:
    trainer.checkpoint.restore(latest).assert_existing_objects_matched()
    logging.info('Resumed from %s at step %d.', latest, int(trainer.step.numpy()))
    if int(trainer.replicas_at_save.numpy()) != strategy.num_replicas_in_sync:
      logging.info('The run was saved with %d replica(s) and resumes with %d: the image pools '
                   'start empty.', int(trainer.replicas_at_save.numpy()),
                   strategy.num_replicas_in_sync)
      trainer.pool_A.reset()
      trainer.pool_B.reset()
      trainer.replicas_at_save.assign(strategy.num_replicas_in_sync)
  elif config.train.init_from:
    from cyclegan_tf import convert  # pylint: disable=g-import-not-at-top
    nets = {'G_A': trainer.G_A, 'G_B': trainer.G_B, 'D_A': trainer.D_A, 'D_B': trainer.D_B}
    loaded = convert.load_init_weights(nets, config.train.init_from)
    logging.info('Initialised %s from %s.', ', '.join(loaded), config.train.init_from)

  c = config.train
  total_epochs = c.n_epochs + c.n_epochs_decay + 1 - c.epoch_count
  total_steps = total_epochs * steps_per_epoch
  if c.max_steps:
    total_steps = min(total_steps, c.max_steps)
  step = int(trainer.step.numpy())

  logs_dir = os.path.join(workdir, 'logs', 'train')
  writer = (tf.summary.create_file_writer(logs_dir) if chief else
            tf.summary.create_noop_writer())
  if step == 0:
    with writer.as_default(step=0):
      tf.summary.text('config', '```\n' + configuration.to_json(config) + '\n```')
  samples_a, samples_b = _fixed_samples(config)

  def save(reason):
    path = manager.save(checkpoint_number=step)
    distribute.remove_worker_dir(ckpt_root, strategy)
    logging.info('Saved checkpoint %s (%s).', path, reason)

  # Loss sums since the last log line; timing excludes the first step, which traces the graph.
  interval_losses, interval_count = {}, 0
  timer_start, timed_steps, traced = time.time(), 0, False
  last_saved = step if latest else None
  with _StopSignal() as stop:
    while step < total_steps:
      epoch = step // steps_per_epoch
      trainer.epoch.assign(epoch)
      lr = trainer.set_learning_rate(epoch)
      dataset = input_pipeline.train_dataset(config, epoch=epoch,
                                             start_step=step % steps_per_epoch)
      batches = 0
      for batch in strategy.experimental_distribute_dataset(dataset):
        batches += 1
        values = {k: float(v) for k, v in trainer.train_step(batch).items()}
        step += 1
        bad = {k: v for k, v in values.items() if not np.isfinite(v)}
        if bad:
          raise NonFiniteLossError(
              f'Loss {", ".join(f"{k}={v}" for k, v in bad.items())} at step {step}: training '
              f'stopped. The last good checkpoint ({tf.train.latest_checkpoint(ckpt_root)}) is '
              'intact; '
              'lower config.train.lr or check the data, then rerun to resume from it.')
        g_loss = sum(values[k] for k in ('G_A', 'G_B', 'cycle_A', 'cycle_B', 'idt_A', 'idt_B'))
        trainer.epoch_loss.assign_add([g_loss, 1.0])
        for k, v in values.items():
          interval_losses[k] = interval_losses.get(k, 0.0) + v
        interval_count += 1
        timed_steps += 1
        if not traced:
          traced, timer_start, timed_steps = True, time.time(), 0
        end_of_epoch = step % steps_per_epoch == 0

        if step % c.log_every_steps == 0 or step == total_steps:
          seconds_per_step = (time.time() - timer_start) / max(timed_steps, 1)
          images_per_sec = c.batch_size / max(seconds_per_step, 1e-9)
          means = {k: v / interval_count for k, v in interval_losses.items()}
          eta = (total_steps - step) * seconds_per_step
          logging.info('step %d/%d epoch %d  %s  lr %.2e  %.2f images/s  ETA %s', step,
                       total_steps, epoch + 1,
                       ' '.join(f'{k} {means[k]:.3f}' for k in means), lr, images_per_sec,
                       time.strftime('%H:%M:%S', time.gmtime(eta)))
          with writer.as_default(step=step):
            for k, v in means.items():
              tf.summary.scalar(f'loss/{k}', v)
            tf.summary.scalar('learning_rate/G', lr)
            tf.summary.scalar('learning_rate/D', lr)
            tf.summary.scalar('images_per_sec', images_per_sec)
          interval_losses, interval_count = {}, 0
          timer_start, timed_steps = time.time(), 0
        if step % c.image_every_steps == 0 or step == total_steps:
          _write_images(trainer, samples_a, samples_b, writer, workdir, step, chief)
        if end_of_epoch and c.lr_policy == 'plateau':
          total, count = trainer.epoch_loss.numpy()
          trainer.plateau.update(total / max(count, 1.0))
        if end_of_epoch:
          trainer.epoch_loss.assign([0.0, 0.0])
        # All workers must stop (and save) at the same step, even if one got the signal.
        stopping = distribute.any_worker(strategy, stop.received)
        if (step % c.checkpoint_every_steps == 0 or end_of_epoch or step == total_steps or
            stopping):
          save(f'signal {stop.received or "on another worker"}' if stopping else 'periodic')
          last_saved = step
        if c.eval_every_steps and step % c.eval_every_steps == 0:
          from cyclegan_tf import evaluate  # pylint: disable=g-import-not-at-top
          evaluate.evaluate_generators(config, workdir, trainer.G_A, trainer.G_B, step)
          timer_start, timed_steps = time.time(), 0  # keep evaluation out of images/s
        if stopping:
          logging.info('Received %s: checkpoint saved at step %d; rerun the same command to '
                       'resume.', stop.received or 'a stop signal on another worker', step)
          writer.flush()
          return step
        if step >= total_steps:
          break
      if not batches:
        raise RuntimeError(f'Epoch {epoch + 1} produced no batch at step {step}: the dataset '
                           'holds fewer images than config.train.batch_size.')
  if last_saved != step:
    save('final')
  writer.flush()
  logging.info('Training finished at step %d.', step)
  return step


def load_generators(config, workdir, step=None):
  """G_A and G_B of a run, in float32, from its latest (or given) checkpoint.

  The networks are built from the run's own config.json, so `config` only matters when the run
  has none. Returns ({'G_A': model, 'G_B': model}, step).
  """
  try:
    config = load_run_config(workdir)
  except FileNotFoundError:
    if config is None:
      raise
  ckpt_dir = os.path.join(workdir, CHECKPOINT_DIR)
  if step is None:
    path = tf.train.latest_checkpoint(ckpt_dir)
  else:
    path = os.path.join(ckpt_dir, f'ckpt-{step}')
    if not tf.io.gfile.exists(path + '.index'):
      path = None
  if path is None:
    raise FileNotFoundError(
        f'No checkpoint{"" if step is None else f" for step {step}"} in {ckpt_dir}; train '
        'first or pick an existing --step.')
  with dtype_policy('float32'):
    nets = networks.build_cyclegan(config.model, with_discriminators=False)
  step_var = tf.Variable(0, dtype=tf.int64)
  tf.train.Checkpoint(step=step_var, **nets).restore(path).expect_partial()
  return nets, int(step_var.numpy())
