"""The schedule: how long a run trains, and the reference's learning-rate policies, stepped
once per epoch.

`epoch` below counts epochs from 0 (the first epoch this run trains). The linear policy is the
reference's lambda_rule: lr * (1 - max(0, epoch + epoch_count - n_epochs) / (n_epochs_decay + 1)),
constant for n_epochs epochs, then linearly down to lr / (n_epochs_decay + 1) in the last
epoch. The reference steps its scheduler at the end of every epoch, so its k-th trained epoch
(k from 0) trains at lambda_rule(k), as here.
"""

import math

import tensorflow as tf

# ReduceLROnPlateau settings of the reference (mode min, factor 0.2, threshold 0.01, patience 5).
PLATEAU_FACTOR = 0.2
PLATEAU_THRESHOLD = 0.01
PLATEAU_PATIENCE = 5


def schedule_epochs(train_config):
  """Epochs the schedule trains: epoch_count..n_epochs + n_epochs_decay (the reference's)."""
  c = train_config
  return c.n_epochs + c.n_epochs_decay + 1 - c.epoch_count


def total_steps(train_config, steps_per_epoch, step=0, epoch=0, epoch_step=0):
  """The step a run ends at, from where it stands: `step`, 0-based `epoch` and the batches done
  in it (`epoch_step`), with the current train set's steps_per_epoch; capped by max_steps.
  Epochs already trained are never recounted from the image count."""
  epochs_left = schedule_epochs(train_config) - epoch
  left = 0 if epochs_left <= 0 else (
      max(steps_per_epoch - epoch_step, 0) + (epochs_left - 1) * steps_per_epoch)
  total = step + left
  return min(total, train_config.max_steps) if train_config.max_steps else total


def finished_message(step, train_config, epoch):
  """Why training ends at `step` (0-based `epoch` now): the epochs ran out, or max_steps."""
  c = train_config
  if epoch >= schedule_epochs(c):
    return (f'Training finished at step {step}: the schedule (epochs {c.epoch_count}..'
            f'{c.n_epochs + c.n_epochs_decay}) is complete. To train longer, rerun with a larger '
            '--config.train.n_epochs or --config.train.n_epochs_decay.')
  return (f'Training stopped at step {step}: config.train.max_steps={c.max_steps} is reached, '
          f'in epoch {c.epoch_count + epoch}/{c.n_epochs + c.n_epochs_decay}. To train longer, '
          'rerun with a larger --config.train.max_steps (0 = the whole schedule).')


def lr_factor(train_config, epoch, plateau_factor=1.0):
  """Multiplier of config.train.lr for 0-based `epoch` under config.train.lr_policy."""
  c = train_config
  if c.lr_policy == 'linear':
    return 1.0 - max(0, epoch + c.epoch_count - c.n_epochs) / float(c.n_epochs_decay + 1)
  if c.lr_policy == 'step':  # StepLR(step_size=lr_decay_iters, gamma=0.1)
    return 0.1**(epoch // c.lr_decay_iters)
  if c.lr_policy == 'cosine':  # CosineAnnealingLR(T_max=n_epochs, eta_min=0)
    return 0.5 * (1.0 + math.cos(math.pi * epoch / c.n_epochs)) if c.n_epochs else 1.0
  if c.lr_policy == 'plateau':
    return plateau_factor
  raise ValueError(f'Unknown lr_policy {c.lr_policy!r}; allowed: linear, step, cosine, plateau.')


class PlateauState(tf.Module):
  """ReduceLROnPlateau's state in variables, so it survives a resume."""

  def __init__(self):
    super().__init__(name='plateau')
    self.best = tf.Variable(float('inf'), dtype=tf.float64, trainable=False)
    self.num_bad_epochs = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.factor = tf.Variable(1.0, dtype=tf.float64, trainable=False)

  def update(self, metric):
    """Records one epoch's metric (lower is better); returns the new LR factor."""
    metric = float(metric)
    if metric < float(self.best.numpy()) * (1.0 - PLATEAU_THRESHOLD):  # threshold_mode 'rel'
      self.best.assign(metric)
      self.num_bad_epochs.assign(0)
    else:
      self.num_bad_epochs.assign_add(1)
    if int(self.num_bad_epochs.numpy()) > PLATEAU_PATIENCE:
      self.factor.assign(self.factor * PLATEAU_FACTOR)
      self.num_bad_epochs.assign(0)
    return float(self.factor.numpy())
