"""Pictures of a run: image grids, loss curves, metrics over steps.

Everything here is drawn with matplotlib's Agg backend (no display needed) and written through
run_dir.write_bytes (atomic, tf.io.gfile: run directories on GCS work too). Images are float
arrays in [-1, 1], [N, H, W, C] with C = 1 or 3.

* mosaic: columns of images side by side -> one uint8 RGB array (the one grid maker: sample
  grids of the train loop and the evaluation's result grids).
* save_png: one image -> PNG file.
* result_grid: a mosaic with column titles and row labels -> PNG.
* read_scalars: every scalar of a TensorBoard log directory (TF2 `tf.summary.scalar` writes
  tensors; TF1 simple_values are read too), `{tag: (steps, values)}`, the last value per step
  winning (a resumed run rewrites steps after its last checkpoint).
* loss_curves: the train run's loss / learning-rate / speed scalars -> PNG.
* metrics_over_steps: the metrics of every evaluation -> PNG.
* step_html / index_html: the reference-style results page of one evaluation (a table of
  thumbnails per test image, each linked to its PNG) and the page listing every evaluation.
"""

import io
import math
import os

from absl import logging
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
from PIL import Image  # pylint: disable=g-import-not-at-top,wrong-import-position
from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

from cyclegan_tf.data import images  # pylint: disable=g-import-not-at-top,wrong-import-position
from cyclegan_tf import run_dir  # pylint: disable=g-import-not-at-top,wrong-import-position

# Generator / discriminator loss terms of the train loop (tags loss/<name>).
_G_TERMS = ('G_A', 'G_B', 'cycle_A', 'cycle_B', 'idt_A', 'idt_B')
_D_TERMS = ('D_A', 'D_B', 'gp_A', 'gp_B')


# ---------------------------------------------------------------------------------------------
# Files.


def save_png(image, path):
  """Writes one [-1, 1] image as an 8-bit RGB PNG."""
  run_dir.write_bytes(path, images.png_bytes(image))


def _save_figure(fig, path, dpi=80, tight=True):
  buffer = io.BytesIO()
  if tight:
    fig.tight_layout()
  fig.savefig(buffer, format='png', dpi=dpi)
  plt.close(fig)
  run_dir.write_bytes(path, buffer.getvalue())


def _save_panels(fig, axes, used, title, path):
  """Hides the grid's unused axes, titles the figure and saves it; returns path."""
  for ax in list(axes.flat)[used:]:
    ax.axis('off')
  if title:
    fig.suptitle(title)
  _save_figure(fig, path)
  return path


# ---------------------------------------------------------------------------------------------
# Result grid.


def mosaic(columns, max_rows=None, min_cell=0, gap=0):
  """Columns of images side by side, one row per index -> uint8 RGB [rows * h, cols * w, 3].

  columns: arrays [N, H, W, C] in [-1, 1]; images of another size than the first column's are
  resized to it (bilinear). Cells are enlarged by a whole factor (nearest neighbour) to at
  least `min_cell` px; `gap` white pixels separate cells.
  """
  n = min(len(c) for c in columns)
  if max_rows:
    n = min(n, max_rows)
  if n < 1:
    raise ValueError('mosaic needs at least one image per column.')
  h, w = np.asarray(columns[0]).shape[1:3]
  k = max(1, int(math.ceil(min_cell / max(h, w)))) if min_cell else 1
  cell_h, cell_w = h * k, w * k
  out = np.full((n * cell_h + (n - 1) * gap, len(columns) * cell_w + (len(columns) - 1) * gap,
                 3), 255, np.uint8)
  for j, column in enumerate(columns):
    for i in range(n):
      image = images.uint8_rgb_array(column[i])
      if image.shape[:2] != (h, w):
        image = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
      image = np.repeat(np.repeat(image, k, axis=0), k, axis=1)
      top, left = i * (cell_h + gap), j * (cell_w + gap)
      out[top:top + cell_h, left:left + cell_w] = image
  return out


def result_grid(columns, path, titles, max_rows=6, row_labels=None, title=None):
  """A mosaic of `columns` (enlarged to at least 96 px) with column titles and row labels,
  saved as PNG at `path`; returns path."""
  grid = mosaic(columns, max_rows=max_rows, min_cell=96, gap=4)
  n = min(min(len(c) for c in columns), max_rows)
  cell_h = (grid.shape[0] - (n - 1) * 4) // n
  cell_w = (grid.shape[1] - (len(columns) - 1) * 4) // len(columns)
  dpi = 100
  pad_left = 0.9 if row_labels is not None else 0.1
  pad_top = 0.35 + (0.3 if title else 0.0)
  mh, mw = grid.shape[0] / dpi, grid.shape[1] / dpi
  fig_w, fig_h = mw + pad_left + 0.1, mh + pad_top + 0.1
  fig = plt.figure(figsize=(fig_w, fig_h), dpi=dpi)
  ax = fig.add_axes([pad_left / fig_w, 0.1 / fig_h, mw / fig_w, mh / fig_h])
  ax.imshow(grid, interpolation='nearest')
  ax.axis('off')
  for j, name in enumerate(titles[:len(columns)]):
    ax.text(j * (cell_w + 4) + cell_w / 2, -6, name, ha='center', va='bottom', fontsize=8)
  if row_labels is not None:
    for i, label in enumerate(row_labels[:n]):
      ax.text(-6, i * (cell_h + 4) + cell_h / 2, str(label)[:14], ha='right', va='center',
              fontsize=7)
  if title:
    fig.text(0.5, 1.0 - 0.08 / fig_h, title, ha='center', va='top', fontsize=10)
  _save_figure(fig, path, dpi=dpi, tight=False)
  return path


# ---------------------------------------------------------------------------------------------
# TensorBoard scalars.


def _scalar_value(value):
  """The float of a summary value if it is a scalar, else None."""
  if value.HasField('tensor'):
    try:
      array = tf.make_ndarray(value.tensor)
    except Exception:  # pylint: disable=broad-except  # unknown dtypes
      return None
    if array.ndim != 0 or not np.issubdtype(array.dtype, np.number):
      return None  # text, images, histograms
    return float(array)
  if value.HasField('simple_value'):
    return float(value.simple_value)
  return None


def read_scalars(logdir):
  """{tag: (steps int64 [n], values float64 [n])} of every scalar in a log directory's event
  files (sorted by step; for a step written twice, e.g. after a resume, the later write wins).

  Returns {} when the directory holds no event file."""
  if not tf.io.gfile.isdir(logdir):
    return {}
  files = sorted(tf.io.gfile.glob(os.path.join(logdir, 'events.out.tfevents.*')))
  data = {}
  for path in files:
    try:
      for record in tf.data.TFRecordDataset(path, buffer_size=1 << 20).as_numpy_iterator():
        event = event_pb2.Event.FromString(record)
        if not event.HasField('summary'):
          continue
        for value in event.summary.value:
          scalar = _scalar_value(value)
          if scalar is not None:
            data.setdefault(value.tag, {})[int(event.step)] = scalar
    except tf.errors.DataLossError:  # a file still being written ends in a partial record
      logging.info('Stopped reading %s at a truncated record.', path)
  out = {}
  for tag, by_step in data.items():
    steps = np.array(sorted(by_step), np.int64)
    out[tag] = (steps, np.array([by_step[s] for s in steps], np.float64))
  return out


def loss_curves(logdir, path, title=None):
  """Plots the train run's scalars (losses, learning rates, images/s) into `path`.

  Returns `path`, or None (logged) when the log directory has no loss scalars yet."""
  scalars = read_scalars(logdir)
  losses = {t[len('loss/'):]: v for t, v in scalars.items() if t.startswith('loss/')}
  if not losses:
    logging.info('No loss scalars in %s yet: no loss curves.', logdir)
    return None
  g_terms = [k for k in _G_TERMS if k in losses]
  d_terms = [k for k in _D_TERMS if k in losses]
  other = sorted(k for k in losses if k not in g_terms and k not in d_terms)
  lrs = {t: v for t, v in scalars.items() if t.startswith('learning_rate/')}
  speed = scalars.get('images_per_sec')
  panels = [('Generator losses', {k: losses[k] for k in g_terms + other}),
            ('Discriminator losses', {k: losses[k] for k in d_terms})]
  if lrs:
    panels.append(('Learning rate', lrs))
  if speed is not None:
    panels.append(('Images / s', {'images_per_sec': speed}))
  panels = [p for p in panels if p[1]]
  cols = 2
  rows = math.ceil(len(panels) / cols)
  fig, axes = plt.subplots(rows, cols, squeeze=False, figsize=(6 * cols, 3.4 * rows))
  for ax, (name, series) in zip(axes.flat, panels):
    for label, (steps, values) in series.items():
      ax.plot(steps, values, label=label, marker='.' if len(steps) < 20 else None, lw=1.2)
    ax.set_title(name)
    ax.set_xlabel('step')
    ax.grid(alpha=0.3)
    if len(series) > 1:
      ax.legend(fontsize=8, ncol=2)
  return _save_panels(fig, axes, len(panels), title, path)


# ---------------------------------------------------------------------------------------------
# Metrics over steps.


# (panel title, [(metric key, label, line style)]) in display order; a2b lines in blue, b2a in
# orange, untranslated baselines dashed.
_A2B, _B2A, _OTHER = 'C0', 'C1', 'C2'
_METRIC_PANELS = (
    ('SWD x1e3 to the target domain (lower is better)',
     [('swd_a2b', 'G_A(A) vs B', '-', _A2B), ('swd_baseline_a2b', 'A vs B (baseline)', '--', _A2B),
      ('swd_b2a', 'G_B(B) vs A', '-', _B2A), ('swd_baseline_b2a', 'B vs A (baseline)', '--', _B2A)]),
    ('Domain classifier: share in the target domain',
     [('classifier_a2b', 'G_A(A) -> B', '-', _A2B),
      ('classifier_baseline_a2b', 'A -> B (baseline)', '--', _A2B),
      ('classifier_b2a', 'G_B(B) -> A', '-', _B2A),
      ('classifier_baseline_b2a', 'B -> A (baseline)', '--', _B2A),
      ('classifier_accuracy', 'accuracy on real test images', ':', _OTHER)]),
    ('Cycle L1 (lower is better)',
     [('cycle_l1_a', 'A -> B -> A', '-', _A2B), ('cycle_l1_b', 'B -> A -> B', '-', _B2A)]),
    ('PSNR to the ground truth, dB (higher is better)',
     [('psnr_a2b', 'G_A(A) vs true B', '-', _A2B), ('psnr_baseline_a2b', 'A vs true B', '--', _A2B),
      ('psnr_b2a', 'G_B(B) vs true A', '-', _B2A), ('psnr_baseline_b2a', 'B vs true A', '--', _B2A)]),
    ('SSIM to the ground truth (higher is better)',
     [('ssim_a2b', 'G_A(A) vs true B', '-', _A2B), ('ssim_baseline_a2b', 'A vs true B', '--', _A2B),
      ('ssim_b2a', 'G_B(B) vs true A', '-', _B2A), ('ssim_baseline_b2a', 'B vs true A', '--', _B2A)]),
    ('FID (lower is better)',
     [('fid_a2b', 'G_A(A) vs B', '-', _A2B), ('fid_baseline_a2b', 'A vs B', '--', _A2B),
      ('fid_b2a', 'G_B(B) vs A', '-', _B2A), ('fid_baseline_b2a', 'B vs A', '--', _B2A)]),
)


def _finite(value):
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def metrics_over_steps(all_metrics, path, title=None):
  """Plots the metrics of every evaluation (dicts with "step", run_dir.read_eval_metrics)
  against the step into `path`. Returns `path`, or None when there is none yet."""
  if not all_metrics:
    return None
  panels = []
  for name, lines in _METRIC_PANELS:
    present = [line for line in lines if any(_finite(m.get(line[0])) for m in all_metrics)]
    if present:
      panels.append((name, present))
  if not panels:
    return None
  cols = 2
  rows = math.ceil(len(panels) / cols)
  fig, axes = plt.subplots(rows, cols, squeeze=False, figsize=(6 * cols, 3.4 * rows))
  for ax, (name, lines) in zip(axes.flat, panels):
    for key, label, style, color in lines:
      points = [(m['step'], m[key]) for m in all_metrics if _finite(m.get(key))]
      steps, values = zip(*points)
      ax.plot(steps, values, style, color=color, marker='x' if style == '--' else 'o', ms=4,
              label=label, lw=1.2)
    ax.set_title(name, fontsize=10)
    ax.set_xlabel('step')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  return _save_panels(fig, axes, len(panels), title, path)
