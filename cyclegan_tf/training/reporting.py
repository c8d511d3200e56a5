"""What the train loop reports: log lines with images/s and ETA, the loss scalars, the warning
of a diverging loss, image summaries and sample grids."""

import time

from absl import logging
import numpy as np
import tensorflow as tf

from cyclegan_tf.data import images
from cyclegan_tf.evaluation import plots
from cyclegan_tf import progress as progress_lib
from cyclegan_tf import run_dir

SAMPLE_IMAGES = 4  # test images per domain in image summaries and sample grids
EXPLOSION_FACTOR = 1e6  # a finite loss this many times its first logged value is diverging


class Progress:
  """images/s and ETA between log lines. The clock starts once the first step of this process
  (which traces the graph) has finished, so tracing never counts as training time."""

  def __init__(self, batch_size, clock=time.time):
    self.batch_size = batch_size
    self.clock = clock
    self.start = None
    self.steps = 0

  def step_done(self, state):
    if self.start is None:
      state.step.numpy()  # waits for the first (tracing) step, once
      self.pause()
    else:
      self.steps += 1

  def pause(self):
    """Restarts the interval: keeps what follows (evaluation, saving) out of images/s."""
    self.start, self.steps = self.clock(), 0

  def interval(self):
    """(images/s, seconds per step) of the interval, or (None, None) if it has no step."""
    seconds_per_step = (self.clock() - self.start) / self.steps if self.steps else None
    return (self.batch_size / seconds_per_step if seconds_per_step else None), seconds_per_step


class ExplosionWatch:
  """Warns once per loss term whose mean grows past EXPLOSION_FACTOR x its first logged value
  while still finite: the run is diverging before any NaN stops it."""

  def __init__(self):
    self.first = {}
    self.warned = set()

  def check(self, means, step):
    for name, value in means.items():
      first = self.first.setdefault(name, abs(value))
      if (name not in self.warned and first > 0 and np.isfinite(value) and
          abs(value) > EXPLOSION_FACTOR * first):
        self.warned.add(name)
        logging.warning(
            'Loss %s is %.3g at step %d, %.0e times its first logged value %.3g: training is '
            'diverging. Stop it (Ctrl-C saves a checkpoint) and continue from an earlier '
            'checkpoint with a lower --config.train.lr (see the docs: training and resume).',
            name, value, step, abs(value) / first, first)


def log_losses(state, writer, step, total, epoch, lr, progress, watch):
  """Fetches the mean losses since the last log (raising on NaN / Inf) and logs them."""
  means = state.fetch_losses()
  watch.check(means, step)
  speed, seconds_per_step = progress.interval()
  progress.pause()
  eta = progress_lib.format_duration((total - step) * seconds_per_step) if seconds_per_step else '?'
  c = state.config.train
  # Epochs are numbered as the reference numbers them: from epoch_count to the schedule's end.
  logging.info('step %d/%d epoch %d/%d  %s  lr %.2e  %s images/s  ETA %s', step, total,
               c.epoch_count + epoch, c.n_epochs + c.n_epochs_decay,
               ' '.join(f'{k} {v:.3f}' for k, v in means.items()), lr,
               f'{speed:.2f}' if speed else '?', eta)
  with writer.as_default(step=step):
    for k, v in means.items():
      tf.summary.scalar(f'loss/{k}', v)
    tf.summary.scalar('learning_rate/G', lr)
    tf.summary.scalar('learning_rate/D', lr)
    if speed:
      tf.summary.scalar('images_per_sec', speed)


def _first_test_images(pipeline, domain, count):
  """Up to `count` test images of a domain that share the first one's size (preprocess none /
  scale_width keep each image's own size; a batch needs one)."""
  found = []
  for image in pipeline.test_dataset(domain).as_numpy_iterator():
    if not found or image.shape == found[0].shape:
      found.append(image)
    if len(found) == count:
      break
  return found


def fixed_samples(pipeline, count=SAMPLE_IMAGES):
  """A few test images per domain for image summaries and sample grids."""
  a = _first_test_images(pipeline, 'A', count)
  b = _first_test_images(pipeline, 'B', count)
  n = min(len(a), len(b))
  return tf.constant(np.stack(a[:n])), tf.constant(np.stack(b[:n]))


def write_samples(state, samples, writer, workdir, step, chief):
  """Image summaries and samples/step_N.png (the model's VISUAL_NAMES side by side; for
  cycle_gan real | translated | reconstructed, both ways)."""
  out = {k: v.numpy() for k, v in state.visuals(*samples).items()}
  with writer.as_default(step=step):
    for name, value in out.items():
      tf.summary.image(name, images.rgb_array((value + 1.0) / 2.0), max_outputs=len(value))
  if chief:
    grid = plots.mosaic([out[k] for k in state.model.VISUAL_NAMES])
    run_dir.write_bytes(run_dir.samples_path(workdir, step), tf.io.encode_png(grid).numpy())
