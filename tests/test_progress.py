"""Progress and speed lines: truthful from the first one, durations past a day printed as days."""

import types

import pytest

from cyclegan_tf import progress
from cyclegan_tf.training import reporting


def test_format_duration_prints_days():
  assert progress.format_duration(0) == '00:00:00'
  assert progress.format_duration(3661.7) == '01:01:01'
  assert progress.format_duration(13 * 86400 + 5) == '13d 00:00:05'  # not wrapped to a clock
  assert progress.format_duration(-4) == '00:00:00'


def test_progress_lines_have_counts_rate_and_eta():
  now = [0.0]
  p = progress.Progress('Translated', 10, every=5.0, clock=lambda: now[0])
  now[0] = 1.0
  assert p.update() is None  # not yet time for a line
  now[0] = 6.0
  assert p.update() == 'Translated: 2/10 images, 0.3 images/s, ETA 00:00:24'
  now[0] = 8.0
  assert p.update(8) == 'Translated: 10/10 images, 1.2 images/s'  # the end is always logged
  now[0] = 0.0
  unknown = progress.Progress('Downloaded', 0, unit='bytes', every=0.0, clock=lambda: now[0])
  now[0] = 2.0
  assert unknown.update(2048) == 'Downloaded: 2,048 bytes, 1,024.0 bytes/s'


def test_the_first_interval_of_images_per_sec_excludes_tracing():
  """The first step (tracing, seconds to minutes) ends before the clock starts."""
  now = [0.0]
  waited = []
  trainer = types.SimpleNamespace(step=types.SimpleNamespace(numpy=lambda: waited.append(1)))
  p = reporting.Progress(batch_size=2, clock=lambda: now[0])
  now[0] = 40.0  # the first step traced for 40 s
  p.step_done(trainer)
  assert waited == [1]
  for _ in range(4):  # then 4 steps of 0.5 s
    now[0] += 0.5
    p.step_done(trainer)
  assert waited == [1]  # no host sync after the first step
  speed, seconds_per_step = p.interval()
  assert seconds_per_step == pytest.approx(0.5) and speed == pytest.approx(4.0)
  p.pause()
  assert p.interval() == (None, None)
