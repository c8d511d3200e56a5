"""The device benchmark: train images/s on one accelerator at 256 px, float32 and
mixed_bfloat16, XLA off and on, global batch 1 and 8, and generator images/s; one table.

  python -m benchmarks.gpu                      # on the GPU machine (benchmarks/gpu.sh)
  python -m benchmarks.gpu --tiny               # the same matrix on a tiny config (CPU tests)

Each configuration runs `main.py --mode=benchmark` in its own process (a fresh device state and
a clean peak-memory figure); every JSON line is printed, then the table with the device name.
A configuration that fails is reported with the end of its stderr and the rest go on.
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRECISIONS = ('float32', 'mixed_bfloat16')
JIT = (False, True)
BATCHES = (1, 8)
# resnet_9blocks ngf 64 at 256 px: the reference's defaults. --tiny: seconds per config on a CPU.
FULL = ['--config.data.crop_size=256', '--config.data.load_size=286']
TINY = ['--config.model.netG=resnet_6blocks', '--config.model.ngf=4', '--config.model.ndf=4',
        '--config.data.crop_size=32', '--config.data.load_size=36',
        '--config.benchmark.warmup_steps=1', '--config.benchmark.steps=2',
        '--config.benchmark.generator_steps=2']


def configurations(tiny=False, only=None):
  """[(name, main.py flags)] of the matrix (optionally only the names in `only`)."""
  base = TINY if tiny else FULL + ['--config.benchmark.warmup_steps=3',
                                   '--config.benchmark.steps=10',
                                   '--config.benchmark.generator_steps=10']
  out = []
  for precision, jit, batch in itertools.product(PRECISIONS, JIT, BATCHES):
    name = f'{precision} xla={"on" if jit else "off"} batch={batch}'
    flags = base + [f'--config.train.precision={precision}',
                    f'--config.train.jit_compile={jit}', f'--config.train.batch_size={batch}']
    if only is None or name in only:
      out.append((name, flags))
  return out


def run(configs, timeout, stream=sys.stdout):
  """Runs each configuration; returns [(name, result dict or None, seconds)]."""
  rows = []
  for name, flags in configs:
    start = time.time()
    try:
      done = subprocess.run([sys.executable, os.path.join(ROOT, 'main.py'), '--mode=benchmark',
                             *flags], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                            check=False)
      lines = [l for l in done.stdout.splitlines() if l.startswith('{')]
      result = json.loads(lines[-1]) if done.returncode == 0 and lines else None
      error = None if result else done.stderr[-1500:]
    except subprocess.TimeoutExpired:
      result, error = None, f'timed out after {timeout} s'
    rows.append((name, result, time.time() - start))
    if result:
      print(json.dumps({'name': name, **result}), file=stream, flush=True)
    else:
      print(f'# {name} failed: {error}', file=sys.stderr, flush=True)
  return rows


def table(rows):
  """The Markdown table of the results, headed by the device."""
  device = next((r['device'] for _, r, _ in rows if r), 'unknown device')
  lines = [f'Device: {device}', '',
           '| configuration | train images/s | step ms | generator images/s | peak RSS MB |',
           '| --- | --- | --- | --- | --- |']
  for name, r, _ in rows:
    if r:
      lines.append(f'| {name} | {r["train_images_per_sec"]:.2f} | {r["step_ms"]:.1f} | '
                   f'{r["generator_images_per_sec"]:.2f} | {r["peak_rss_mb"]:.0f} |')
    else:
      lines.append(f'| {name} | failed | | | |')
  return '\n'.join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--tiny', action='store_true', help='a tiny config (CPU tests)')
  parser.add_argument('--only', default='', help='comma-separated configuration names')
  parser.add_argument('--timeout', type=int, default=150, help='seconds per configuration')
  args = parser.parse_args(argv)
  only = set(args.only.split(',')) if args.only else None
  rows = run(configurations(args.tiny, only), args.timeout)
  print(table(rows), flush=True)
  return 0 if all(r for _, r, _ in rows) else 1


if __name__ == '__main__':
  sys.exit(main())
