"""The pictures and pages of one evaluation: result grids (real | translated | cycle |
truth), one PNG per image, the step's index.html, and the run-wide pages and plots (layout in
evaluate.py's docstring)."""

import os
import re

import tensorflow as tf

from cyclegan_tf.evaluation import plots
from cyclegan_tf.evaluation import reports
from cyclegan_tf import run_dir


def _stems(names, count):
  """File-name-safe unique stems of the test images' names."""
  stems, seen = [], set()
  for i in range(count):
    name = names[i] if i < len(names) else f'{i:05d}'
    stem = os.path.splitext(os.path.basename(str(name).rstrip('/')))[0]
    stem = re.sub(r'[^A-Za-z0-9._-]+', '_', stem).strip('._') or f'{i:05d}'
    if stem in seen:
      stem = f'{stem}_{i}'
    seen.add(stem)
    stems.append(stem)
  return stems


def write_pictures(workdir, step, metrics, data, tr, grid_rows=6):
  """Grids, per-image PNGs, the step's index.html and the eval-wide pages and plots."""
  eval_dir = run_dir.eval_dir(workdir)
  step_dir = run_dir.eval_dir(workdir, step)
  tf.io.gfile.makedirs(os.path.join(step_dir, 'images'))
  rows = int(grid_rows)

  # Ground truth aligned with the test images, when the paired set is the test set.
  true_b = (data.paired.b_true if data.paired is not None and tr.paired_fake_b is tr.fake_b
            else None)
  true_a = (data.paired.a if data.paired is not None and tr.paired_fake_a is tr.fake_a
            else None)

  sections, grids = [], []
  for direction, src, dst, real, fake, rec, truth, names in (
      ('a2b', 'A', 'B', data.a, tr.fake_b, tr.rec_a, true_b, data.names_a),
      ('b2a', 'B', 'A', data.b, tr.fake_a, tr.rec_b, true_a, data.names_b)):
    if fake is None:  # a model without this direction
      continue
    g, f = (('G_A', 'G_B') if src == 'A' else ('G_B', 'G_A'))
    if rec is None:  # a one-generator model (pix2pix)
      g = 'G'
    # (column, title, file suffix); the cycle only where both directions exist.
    parts = [(real, f'real {src}', f'real_{src}'), (fake, f'{g}({src})', f'fake_{dst}')]
    if rec is not None:
      parts.append((rec, f'{f}({g}({src}))', f'rec_{src}'))
    if truth is not None:
      parts.append((truth, f'true {dst}', f'true_{dst}'))
    columns, titles, suffixes = (list(x) for x in zip(*parts))
    stems = _stems(names, len(real))
    grids.append(f'grid_{direction}.png')
    plots.result_grid(columns, os.path.join(step_dir, grids[-1]), titles,
                      max_rows=rows, row_labels=stems, title=f'{src} -> {dst}, step {step}')
    table = []
    for i, stem in enumerate(stems):
      paths = []
      for suffix, column in zip(suffixes, columns):
        rel = f'images/{stem}_{suffix}.png'
        plots.save_png(column[i], os.path.join(step_dir, rel))
        paths.append(rel)
      table.append((stem, paths))
    sections.append((f'{src} -> {dst}', titles, table))

  width = int(min(256, max(96, data.a.shape[2])))
  reports.step_html(step_dir, step, metrics, sections,
                  pictures=tuple(grids), thumb_width=width)

  pictures = []
  if plots.loss_curves(run_dir.train_logs_dir(workdir),
                       os.path.join(eval_dir, 'loss_curves.png'), title='Training'):
    pictures.append('loss_curves.png')
  all_metrics = run_dir.read_eval_metrics(workdir)
  if plots.metrics_over_steps(all_metrics, os.path.join(eval_dir, 'metrics_over_steps.png'),
                              title='Test metrics'):
    pictures.append('metrics_over_steps.png')
  reports.index_html(eval_dir, all_metrics, pictures=pictures, title=f'Evaluations of {workdir}',
                     preferred_keys=list(metrics))
