"""The reference-style results pages of an evaluation (HTML): one page per evaluation with its
metrics, grids and a thumbnail table of every test image, and an index of all evaluations.

Pages are written through run_dir.write_text (atomic; GCS works too).
"""

import html
import math
import os


from cyclegan_tf import run_dir


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
  run_dir.write_text(path, ''.join(parts))
  return path


def index_html(eval_dir, all_metrics, pictures=(), title=None, preferred_keys=()):
  """Writes <eval_dir>/index.html: every evaluation's step (linked to its page) and metrics.

  all_metrics: the metrics dicts of every evaluation, with "step" (run_dir.read_eval_metrics).
  """
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
  run_dir.write_text(path, ''.join(parts))
  return path
