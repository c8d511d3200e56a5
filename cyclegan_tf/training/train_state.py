"""The train state around a model of the family: the counters and schedule that are state
(checkpointed), the device-side loss bookkeeping, and the compiled train step.

The model (models/base.py) says what one iteration is; this module counts iterations, keeps
the epoch and its position (never derived from the image count), sums the losses on the device
(the loop fetches them only when it logs or saves: no host sync per step) and records the first
step whose losses were not finite. Losses are per example and divided by the GLOBAL batch.
"""

import tensorflow as tf

from cyclegan_tf import configuration
from cyclegan_tf.models import family
from cyclegan_tf.training import schedules


class NonFiniteLossError(RuntimeError):
  """A loss became NaN or Inf; the last good checkpoint is left untouched."""


def build_model(config, strategy, precision='float32', **kwargs):
  """The config's model (config.model.name, models/family.py) built under `strategy`.

  kwargs go to the model (e.g. train_shapes, max_train_shapes). Raises ConfigError for a batch
  size the replicas cannot split.
  """
  replicas = strategy.num_replicas_in_sync
  if config.train.batch_size % replicas:
    raise configuration.ConfigError(
        f'config.train.batch_size={config.train.batch_size} (the global batch) must be a '
        f'multiple of the {replicas} replicas.')
  return family.get(config.model)(config, strategy, precision, **kwargs)


class TrainState:
  """A model and everything a resume needs beside it; `checkpoint` holds both.

  Checkpoint keys: the model's (checkpoint_items: networks, optimizers, pools) and step,
  epoch, epoch_step, train_sizes, plateau, epoch_loss, replicas.
  """

  def __init__(self, model):
    self.model = model
    self.config = model.config
    self.strategy = model.strategy
    self.loss_names = tuple(model.loss_names)
    with self.strategy.scope():
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
      # The schedule is state, never derived from the image count: the epoch (0-based, from
      # epoch_count) and the batches done in it; the train set's sizes they were counted on.
      self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name='epoch')
      self.epoch_step = tf.Variable(0, dtype=tf.int64, trainable=False, name='epoch_step')
      self.train_sizes = tf.Variable([0, 0], dtype=tf.int64, trainable=False,
                                     name='train_sizes')
      self.replicas_at_save = tf.Variable(self.strategy.num_replicas_in_sync, dtype=tf.int64,
                                          trainable=False)
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
    self._generator_terms = [self.loss_names.index(k) for k in model.GENERATOR_TERMS]
    self.checkpoint = tf.train.Checkpoint(
        step=self.step, epoch=self.epoch, epoch_step=self.epoch_step,
        train_sizes=self.train_sizes, plateau=self.plateau, epoch_loss=self.epoch_loss,
        replicas=self.replicas_at_save, **model.checkpoint_items())

  def set_learning_rate(self, epoch):
    """Sets the model's learning rate for 0-based `epoch` (schedules.lr_factor); returns it."""
    c = self.config.train
    lr = c.lr * schedules.lr_factor(c, epoch, float(self.plateau.factor.numpy()))
    self.model.set_learning_rate(lr)
    return lr

  # No AutoGraph: the step has no tensor-dependent Python control flow, and converting the
  # networks and optimizers costs seconds of tracing. One trace for images of any size.
  @tf.function(reduce_retracing=True, autograph=False)
  def train_step(self, batch):
    """One iteration of the model on a distributed batch ({'A', 'B'}).

    Adds the mean losses to the device-side sums (fetch_losses reads them); returns them as a
    float32 vector in loss_names order, without waiting for them.
    """
    step = self.step.read_value()
    values = self.model.distributed_step(batch, step)
    self.step.assign_add(1)
    self.epoch_step.assign_add(1)
    self._record(values, step + 1)
    return values

  def _record(self, values, step):
    self.loss_sums.assign_add(tf.cast(values, tf.float64))
    self.loss_count.assign_add(1)
    g_loss = tf.reduce_sum(tf.gather(tf.cast(values, tf.float64), self._generator_terms))
    self.epoch_loss.assign_add(tf.stack([g_loss, tf.constant(1.0, tf.float64)]))
    first_bad = tf.logical_and(self.first_bad_step < 0,
                               tf.logical_not(tf.reduce_all(tf.math.is_finite(values))))
    self.bad_losses.assign(tf.where(first_bad, values, self.bad_losses))
    self.first_bad_step.assign(tf.where(first_bad, step, self.first_bad_step))

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
  def visuals(self, real_a, real_b):
    """The model's image summaries (model.visuals), compiled."""
    return self.model.visuals(real_a, real_b)
