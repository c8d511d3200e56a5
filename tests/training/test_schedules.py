"""Learning-rate policies against the reference's formulas."""

import math

import pytest

from configs import default
from cyclegan_tf.training import schedules


def _train_config(**overrides):
  config = default.get_config().train
  config.update(overrides)
  return config


def test_linear_is_constant_then_decays_to_one_step_above_zero():
  c = _train_config(n_epochs=100, n_epochs_decay=100, epoch_count=1)
  factors = [schedules.lr_factor(c, e) for e in range(200)]
  assert factors[:100] == [1.0] * 100
  # The reference's lambda_rule: 1 - max(0, epoch + epoch_count - n_epochs) / (decay + 1).
  assert factors[100] == pytest.approx(1 - 1 / 101)
  assert factors[199] == pytest.approx(1 / 101)
  assert all(a > b for a, b in zip(factors[100:], factors[101:]))


def test_linear_respects_epoch_count():
  c = _train_config(n_epochs=5, n_epochs_decay=5, epoch_count=3)
  assert schedules.lr_factor(c, 2) == pytest.approx(1 - 0 / 6)
  assert schedules.lr_factor(c, 3) == pytest.approx(1 - 1 / 6)


def test_step_policy():
  c = _train_config(lr_policy='step', lr_decay_iters=50)
  assert schedules.lr_factor(c, 49) == 1.0
  assert schedules.lr_factor(c, 50) == pytest.approx(0.1)
  assert schedules.lr_factor(c, 120) == pytest.approx(0.01)


def test_cosine_policy():
  c = _train_config(lr_policy='cosine', n_epochs=10)
  assert schedules.lr_factor(c, 0) == 1.0
  assert schedules.lr_factor(c, 5) == pytest.approx(0.5)
  assert schedules.lr_factor(c, 3) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.3)))
  assert schedules.lr_factor(c, 10) == pytest.approx(0.0, abs=1e-12)


def test_plateau_reduces_after_patience_epochs_without_improvement():
  state = schedules.PlateauState()
  assert state.update(1.0) == 1.0  # first value is the best so far
  # A 0.5% improvement is below the 1% relative threshold: it counts as a bad epoch.
  factors = [state.update(0.995) for _ in range(6)]
  assert factors == [1.0] * 5 + [pytest.approx(0.2)]
  assert state.update(0.5) == pytest.approx(0.2)  # improvement: no further cut
  c = _train_config(lr_policy='plateau')
  assert schedules.lr_factor(c, 7, plateau_factor=0.2) == pytest.approx(0.2)


def test_total_steps_counts_from_where_the_run_stands(default_config):
  c = default_config.train
  c.n_epochs, c.n_epochs_decay, c.max_steps = 2, 2, 0
  assert schedules.total_steps(c, 10) == 40
  # Step 50 in epoch 2 (0-based 1) with 3 batches done, the epoch now 20 batches long.
  assert schedules.total_steps(c, 20, step=50, epoch=1, epoch_step=3) == 50 + 17 + 2 * 20
  assert schedules.total_steps(c, 20, step=90, epoch=4) == 90  # the epochs ran out
  c.max_steps = 60
  assert schedules.total_steps(c, 20, step=50, epoch=1, epoch_step=3) == 60
  assert 'max_steps=60 is reached, in epoch 2/4' in schedules.finished_message(60, c, 1)
  assert 'the schedule (epochs 1..4) is complete' in schedules.finished_message(90, c, 4)
