"""The README's side-by-side comparison: this project's train step against the reference's.

  python -m benchmarks.suite [--no_reference] [--only=NAME,...] [--repeat=N] [main.py flags]

runs every configuration below in a process of its own, one after the other (our
`main.py --mode=benchmark` and benchmarks/reference_pytorch.py, when torch is installed),
prints each result as one JSON line on stdout and a table with the CPU model and its flags on
stderr, and ratios to the reference at the same crop size. Timings are only as good as a quiet
machine: the load average is printed before and after every run, and `--repeat=N` runs the
whole list N times in turn and shows each configuration's median run with the spread.
"""

import argparse
import json
import os
import subprocess
import sys

from cyclegan_tf import hardware

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_FEW_STEPS = ['--config.benchmark.warmup_steps=1', '--config.benchmark.steps=2',
              '--config.benchmark.generator_steps=2']
_AT_128 = ['--config.data.crop_size=128', '--config.data.load_size=143']
_AT_256 = ['--config.data.crop_size=256', '--config.data.load_size=286']
# (name, crop size, main.py flags); 256 px takes fewer steps (a step can take 30 s+ on a 2-core
# CPU).
SUITE = (
    ('tf float32 128', 128, _AT_128),
    ('tf mixed_bfloat16 128', 128, _AT_128 + ['--config.train.precision=mixed_bfloat16']),
    ('tf float32 256 (memory)', 256, _AT_256 + _FEW_STEPS),
    ('tf mixed_bfloat16 256 (memory)', 256,
     _AT_256 + ['--config.train.precision=mixed_bfloat16'] + _FEW_STEPS),
)
REFERENCE = (('reference pytorch 128', 128, []),
             ('reference pytorch 256', 256, ['--steps=2', '--warmup=1']))


def _commands(args, extra):
  out = [(name, size, [sys.executable, os.path.join(ROOT, 'main.py'), '--mode=benchmark',
                       f'--config={args.config}'] + flags + extra)
         for name, size, flags in SUITE]
  if not args.no_reference:
    out += [(name, size, [sys.executable, '-m', 'benchmarks.reference_pytorch',
                          f'--crop_size={size}'] + flags)
            for name, size, flags in REFERENCE]
  if args.only:
    wanted = set(args.only.split(','))
    out = [c for c in out if c[0] in wanted]
  return out


def run_suite(args, extra):
  """Runs the configurations, all of them `args.repeat` times in turn (so that a slower spell of
  a shared machine hits every configuration alike); returns [(name, crop size, result dict)],
  one row per configuration: the run of median train images/s, with `repeats` and the spread
  `train_images_per_sec_min` / `_max` added."""
  runs = {}
  commands = _commands(args, extra)
  for _ in range(args.repeat):
    for name, size, command in commands:
      print(f'# {name}: load average {hardware.load_average()}', file=sys.stderr, flush=True)
      done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
      lines = [l for l in done.stdout.splitlines() if l.startswith('{')]
      if done.returncode or not lines:
        print(f'# {name} failed:\n{done.stderr[-3000:]}', file=sys.stderr)
        continue
      result = json.loads(lines[-1])
      runs.setdefault((name, size), []).append(result)
      print(json.dumps({'name': name, **result}), flush=True)
  rows = []
  for (name, size), results in runs.items():
    ordered = sorted(results, key=lambda r: r['train_images_per_sec'])
    rows.append((name, size, {**ordered[(len(ordered) - 1) // 2], 'repeats': len(ordered),
                              'train_images_per_sec_min': ordered[0]['train_images_per_sec'],
                              'train_images_per_sec_max': ordered[-1]['train_images_per_sec']}))
  return rows


def print_table(rows, stream=sys.stderr):
  """The table: each configuration's figures and their ratio to the reference's at its size."""
  reference = {size: r for name, size, r in rows if name.startswith('reference')}
  print(f'\nCPU: {hardware.cpu_description()}', file=stream)
  row = '{:<31} {:>9} {:>6} {:>8} {:>6} {:>8} {:>6} {:>9} {:>13}'
  print(row.format('configuration', 'train i/s', 'x ref', 'G i/s', 'x ref', 'peak MB', 'x ref',
                   'load', 'train spread'), file=stream)
  for name, size, r in rows:
    ref = reference.get(size)
    ratio = lambda key: (f'{r[key] / ref[key]:.2f}' if ref and ref.get(key) else '-')
    print(row.format(
        name, f"{r['train_images_per_sec']:.3f}", ratio('train_images_per_sec'),
        f"{r['generator_images_per_sec']:.2f}", ratio('generator_images_per_sec'),
        f"{r['peak_rss_mb']:.0f}", ratio('peak_rss_mb'),
        f"{r['load_avg_before']}-{r['load_avg_after']}",
        (f"{r['train_images_per_sec_min']:.3f}-{r['train_images_per_sec_max']:.3f}"
         if r.get('repeats', 1) > 1 else '-')), file=stream)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--config', default='configs/default.py')
  parser.add_argument('--no_reference', action='store_true', help='skip the PyTorch runs')
  parser.add_argument('--only', default='', help='comma-separated configuration names')
  parser.add_argument('--repeat', type=int, default=1,
                      help='runs of every configuration, in turn; the table shows the median')
  args, extra = parser.parse_known_args(argv)  # other flags go to main.py's runs
  print_table(run_suite(args, extra))


if __name__ == '__main__':
  sys.exit(main())
