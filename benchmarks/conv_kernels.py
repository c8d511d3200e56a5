"""The convolution kernels alone: TensorFlow's (oneDNN) next to PyTorch's, layer by layer.

  python -m benchmarks.conv_kernels [--crop_size=128] [--runs=20] [--threads=N]

The train step spends most of its time in convolutions (README, Benchmark). This times
the three kernels of each distinct conv of resnet_9blocks (ngf 64) and the basic discriminator
(ndf 64) at `crop_size`, on already padded inputs: the forward conv, the gradient of its input
and the gradient of its filter, in TensorFlow and in PyTorch, each framework in a process of
its own, one after the other. It prints GFLOP/s (2 x multiply-adds / median seconds) per kernel
as JSON lines on stdout and a table with the CPU model and flags on stderr. Needs torch for the
PyTorch column (without it, TensorFlow's only).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

from cyclegan_tf import hardware

# (name, padded input side as a function of the crop size S, in channels, out channels,
#  kernel, stride): the generator's convs (reflect/zero padding included in the side) and the
# discriminator's first ones.
LAYERS = (
    ('G c7s1-64', lambda s: s + 6, 3, 64, 7, 1),
    ('G down 128', lambda s: s + 2, 64, 128, 3, 2),
    ('G down 256', lambda s: s // 2 + 2, 128, 256, 3, 2),
    ('G residual 256', lambda s: s // 4 + 2, 256, 256, 3, 1),
    ('G last c7s1-3', lambda s: s + 6, 64, 3, 7, 1),
    ('D 64', lambda s: s + 2, 3, 64, 4, 2),
    ('D 128', lambda s: s // 2 + 2, 64, 128, 4, 2),
    ('D 256', lambda s: s // 4 + 2, 128, 256, 4, 2),
)
KERNELS = ('forward', 'input_grad', 'filter_grad')


def _tf_kernels(side, cin, cout, k, stride, threads):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if threads:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
  x = tf.random.normal([1, side, side, cin])
  w = tf.random.normal([k, k, cin, cout])
  strides = [1, stride, stride, 1]
  dy = tf.random.normal(tf.nn.conv2d(x, w, strides, 'VALID').shape)
  fns = {
      'forward': tf.function(lambda: tf.nn.conv2d(x, w, strides, 'VALID')),
      'input_grad': tf.function(lambda: tf.raw_ops.Conv2DBackpropInput(
          input_sizes=tf.shape(x), filter=w, out_backprop=dy, strides=strides,
          padding='VALID')),
      'filter_grad': tf.function(lambda: tf.raw_ops.Conv2DBackpropFilter(
          input=x, filter_sizes=tf.shape(w), out_backprop=dy, strides=strides,
          padding='VALID')),
  }
  return {name: (lambda f=f: f().numpy()) for name, f in fns.items()}, dy.shape[1]


def _torch_kernels(side, cin, cout, k, stride, threads):
  import torch  # pylint: disable=g-import-not-at-top
  if threads:
    torch.set_num_threads(threads)
  x = torch.randn(1, cin, side, side)
  w = torch.randn(cout, cin, k, k)
  dy = torch.randn_like(torch.nn.functional.conv2d(x, w, stride=stride))
  backward = lambda mask: torch.ops.aten.convolution_backward(
      dy, x, w, None, [stride] * 2, [0, 0], [1, 1], False, [0, 0], 1, mask)
  fns = {
      'forward': lambda: torch.nn.functional.conv2d(x, w, stride=stride),
      'input_grad': lambda: backward([True, False, False]),
      'filter_grad': lambda: backward([False, True, False]),
  }
  return fns, dy.shape[-1]


def child(framework, crop_size, runs, threads):
  """Times every layer's kernels in this process; prints one JSON line per layer."""
  make = _tf_kernels if framework == 'tensorflow' else _torch_kernels
  for name, side_of, cin, cout, k, stride in LAYERS:
    fns, out_side = make(side_of(crop_size), cin, cout, k, stride, threads)
    flop = 2 * out_side * out_side * k * k * cin * cout
    row = {'framework': framework, 'layer': name, 'gflop': round(flop / 1e9, 3)}
    for kernel in KERNELS:
      seconds = statistics.median(hardware.time_calls(fns[kernel], 2, runs))
      row[kernel] = round(flop / seconds / 1e9, 1)
    print(json.dumps(row), flush=True)


def _run_child(framework, args):
  command = [sys.executable, '-m', 'benchmarks.conv_kernels', f'--child={framework}',
             f'--crop_size={args.crop_size}', f'--runs={args.runs}', f'--threads={args.threads}']
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
  if done.returncode:
    print(f'# {framework} failed:\n{done.stderr[-2000:]}', file=sys.stderr)
  return [json.loads(l) for l in done.stdout.splitlines() if l.startswith('{')]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--crop_size', type=int, default=128)
  parser.add_argument('--runs', type=int, default=20, help='timed calls per kernel')
  parser.add_argument('--threads', type=int, default=0, help="0: each framework's default")
  parser.add_argument('--child', choices=('tensorflow', 'torch'), help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    return child(args.child, args.crop_size, args.runs, args.threads)
  rows = {}
  for framework in ('tensorflow', 'torch'):
    for row in _run_child(framework, args):
      print(json.dumps(row), flush=True)
      rows[(framework, row['layer'])] = row
  print(f'\nCPU: {hardware.cpu_description()}; {args.crop_size} px; GFLOP/s, TF / PyTorch',
        file=sys.stderr)
  line = '{:<16} {:>6}  {:>15}  {:>15}  {:>15}'
  print(line.format('layer', 'GFLOP', *KERNELS), file=sys.stderr)
  for name, *_ in LAYERS:
    tf_row, pt_row = rows.get(('tensorflow', name)), rows.get(('torch', name))
    if not tf_row:
      continue
    cells = [f"{tf_row[k]:.0f} / {pt_row[k]:.0f}" if pt_row else f'{tf_row[k]:.0f} / -'
             for k in KERNELS]
    print(line.format(name, tf_row['gflop'], *cells), file=sys.stderr)
  return 0


if __name__ == '__main__':
  sys.exit(main())
