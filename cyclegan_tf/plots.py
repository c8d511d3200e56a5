"""Pictures and HTML pages of an evaluation: result grids, loss curves, metrics over steps.

Everything here is drawn with matplotlib's Agg backend (no display needed) and written through
tf.io.gfile, so run directories on GCS work too. Images are float arrays in [-1, 1].

* save_png / encode_png: one image -> PNG.
* result_grid: rows of (real | translated | reconstructed [| ground truth]) -> PNG.
* read_scalars: every scalar of a TensorBoard log directory (TF2 `tf.summary.scalar` writes
  tensors; TF1 simple_values are read too), `{tag: (steps, values)}`, the last value per step
  winning (a resumed run rewrites steps after its last checkpoint).
* loss_curves: the train run's loss / learning-rate / speed scalars -> PNG.
* metrics_over_steps: every W/eval/<step>/metrics.json -> PNG.
* step_html / index_html: the reference-style results page of one evaluation (a table of
  thumbnails per test image, each linked to its PNG) and the page listing every evaluation.
"""

import html
import io
import json
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

METRICS_FILE = 'metrics.json'

# Generator / discriminator loss terms of the train loop (tags loss/<name>).
_G_TERMS = ('G_A', 'G_B', 'cycle_A', 'cycle_B', 'idt_A', 'idt_B')
_D_TERMS = ('D_A', 'D_B', 'gp_A', 'gp_B')


# ---------------------------------------------------------------------------------------------
# Files.


def _write_bytes(path, data):
  tf.io.gfile.makedirs(os.path.dirname(path) or '.')
  tmp = path + '.tmp'
  with tf.io.gfile.GFile(tmp, 'wb') as f:
    f.write(data)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def _write_text(path, text):
  _write_bytes(path, text.encode('utf-8'))


def to_uint8(image):
  """float [-1, 1] [H, W, C] (C = 1 or 3) -> uint8 [H, W, 3]."""
  image = np.asarray(image, np.float32)
  if image.ndim == 2:
    image = image[..., None]
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  return np.round((np.clip(image, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def encode_png(image):
  buffer = io.BytesIO()
  Image.fromarray(to_uint8(image)).save(buffer, format='PNG')
  return buffer.getvalue()


def save_png(image, path):
  """Writes one [-1, 1] image as an 8-bit RGB PNG."""
  _write_bytes(path, encode_png(image))


def _save_figure(fig, path, dpi=80, tight=True):
  buffer = io.BytesIO()
  if tight:
    fig.tight_layout()
  fig.savefig(buffer, format='png', dpi=dpi)
  plt.close(fig)
  _write_bytes(path, buffer.getvalue())


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


def result_grid(columns, path, titles, max_rows=6, row_labels=None, title=None):
  """A grid of images: one column per array in `columns` (each [N, H, W, C] in [-1, 1]).

  Shows the first `max_rows` rows; `titles` names the columns, `row_labels` the rows. Small
  images are enlarged (nearest neighbour) to at least 96 px. Drawn as one mosaic (cheap even
  for many rows)."""
  n = min(min(len(c) for c in columns), max_rows)
  if n < 1:
    raise ValueError('result_grid needs at least one image per column.')
  h, w = np.asarray(columns[0]).shape[1:3]
  k = max(1, int(math.ceil(96 / max(h, w))))
  cell_h, cell_w, gap = h * k, w * k, 4
  mosaic = np.full((n * cell_h + (n - 1) * gap, len(columns) * cell_w + (len(columns) - 1) * gap,
                    3), 255, np.uint8)
  for j, col in enumerate(columns):
    for i in range(n):
      image = to_uint8(col[i])
      if image.shape[:2] != (h, w):  # e.g. a column of another size: fit into the cell
        image = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
      image = np.repeat(np.repeat(image, k, axis=0), k, axis=1)
      top, left = i * (cell_h + gap), j * (cell_w + gap)
      mosaic[top:top + cell_h, left:left + cell_w] = image
  dpi = 100
  pad_left = 0.9 if row_labels is not None else 0.1
  pad_top = 0.35 + (0.3 if title else 0.0)
  mh, mw = mosaic.shape[0] / dpi, mosaic.shape[1] / dpi
  fig_w, fig_h = mw + pad_left + 0.1, mh + pad_top + 0.1
  fig = plt.figure(figsize=(fig_w, fig_h), dpi=dpi)
  ax = fig.add_axes([pad_left / fig_w, 0.1 / fig_h, mw / fig_w, mh / fig_h])
  ax.imshow(mosaic, interpolation='nearest')
  ax.axis('off')
  for j, name in enumerate(titles[:len(columns)]):
    ax.text(j * (cell_w + gap) + cell_w / 2, -6, name, ha='center', va='bottom', fontsize=8)
  if row_labels is not None:
    for i, label in enumerate(row_labels[:n]):
      ax.text(-6, i * (cell_h + gap) + cell_h / 2, str(label)[:14], ha='right', va='center',
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


def load_all_metrics(eval_dir):
  """Every <eval_dir>/<step>/metrics.json, sorted by step."""
  out = []
  for path in tf.io.gfile.glob(os.path.join(eval_dir, '*', METRICS_FILE)):
    try:
      with tf.io.gfile.GFile(path) as f:
        metrics = json.load(f)
    except (ValueError, tf.errors.OpError) as e:
      logging.warning('Skipping unreadable %s: %s', path, e)
      continue
    if isinstance(metrics, dict) and isinstance(metrics.get('step'), int):
      out.append(metrics)
  return sorted(out, key=lambda m: m['step'])


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


def metrics_over_steps(eval_dir, path, title=None):
  """Plots the metrics of every evaluation in `eval_dir` against the step into `path`.

  Returns `path`, or None when there is no metrics.json yet."""
  all_metrics = load_all_metrics(eval_dir)
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


# ---------------------------------------------------------------------------------------------
# HTML.

_STYLE = """<style>
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: center; font-size: 13px; }
td.name { text-align: left; font-family: monospace; }
td.num { text-align: right; font-family: monospace; }
img.thumb { image-rendering: pixelated; }
</style>"""


def format_value(value):
  if isinstance(value, bool) or value is None:
    return '' if value is None else str(value)
  if isinstance(value, int):
    return str(value)
  if isinstance(value, float):
    if not math.isfinite(value):
      return str(value)
    return f'{value:.4g}'
  return html.escape(str(value))


def _metrics_table(metrics):
  rows = ''.join(f'<tr><td class="name">{html.escape(k)}</td>'
                 f'<td class="num">{format_value(v)}</td></tr>\n'
                 for k, v in metrics.items())
  return f'<table><tr><th>metric</th><th>value</th></tr>\n{rows}</table>\n'


def step_html(step_dir, step, metrics, sections, pictures=(), thumb_width=128, title=None):
  """Writes <step_dir>/index.html, the reference's results page for one evaluation.

  sections: [(heading, column titles, rows)], each row (name, [relative image path, ...]);
    every image is shown as a thumbnail linked to its file.
  pictures: relative paths of larger pictures (grids) shown under the metrics.
  """
  parts = [f'<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
           f'<title>{html.escape(title or f"Evaluation at step {step}")}</title>{_STYLE}'
           '</head><body>\n',
           f'<h1>{html.escape(title or f"Evaluation at step {step}")}</h1>\n',
           '<p><a href="../index.html">all evaluations</a></p>\n',
           '<h2>Metrics</h2>\n', _metrics_table(metrics)]
  for picture in pictures:
    parts.append(f'<p><a href="{html.escape(picture)}"><img src="{html.escape(picture)}" '
                 'style="max-width: 100%"></a></p>\n')
  for heading, column_titles, rows in sections:
    parts.append(f'<h2>{html.escape(heading)}</h2>\n<table>\n<tr><th>image</th>')
    parts.extend(f'<th>{html.escape(t)}</th>' for t in column_titles)
    parts.append('</tr>\n')
    for name, paths in rows:
      parts.append(f'<tr><td class="name">{html.escape(name)}</td>')
      for rel in paths:
        src = html.escape(rel)
        parts.append(f'<td><a href="{src}"><img class="thumb" src="{src}" '
                     f'width="{int(thumb_width)}"></a></td>')
      parts.append('</tr>\n')
    parts.append('</table>\n')
  parts.append('</body></html>\n')
  path = os.path.join(step_dir, 'index.html')
  _write_text(path, ''.join(parts))
  return path


def index_html(eval_dir, pictures=(), title=None, preferred_keys=()):
  """Writes <eval_dir>/index.html: every evaluation's step (linked to its page) and metrics."""
  all_metrics = load_all_metrics(eval_dir)
  keys = [k for k in preferred_keys if k != 'step' and any(k in m for m in all_metrics)]
  for m in all_metrics:
    keys.extend(k for k in m if k != 'step' and k not in keys)
  title = title or 'Evaluations'
  parts = [f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}'
           f'</title>{_STYLE}</head><body>\n<h1>{html.escape(title)}</h1>\n']
  for picture in pictures:
    parts.append(f'<p><a href="{html.escape(picture)}"><img src="{html.escape(picture)}" '
                 'style="max-width: 100%"></a></p>\n')
  parts.append('<table>\n<tr><th>step</th>')
  parts.extend(f'<th>{html.escape(k)}</th>' for k in keys)
  parts.append('</tr>\n')
  for m in all_metrics:
    step = m['step']
    parts.append(f'<tr><td><a href="{step}/index.html">{step}</a></td>')
    parts.extend(f'<td class="num">{format_value(m.get(k))}</td>' for k in keys)
    parts.append('</tr>\n')
  parts.append('</table>\n</body></html>\n')
  path = os.path.join(eval_dir, 'index.html')
  _write_text(path, ''.join(parts))
  return path
