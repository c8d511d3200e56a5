"""The generator's inference speed per runtime, side by side with the reference's PyTorch one.

  python -m benchmarks.inference [--size=256 --ngf=64 --netG=resnet_9blocks --runs=5 --rounds=2]

exports one generator (random weights with the reference's init, normal(0, 0.02)) as the
SavedModel TF Serving runs, LiteRT files at size x size (float32, float16, int8) and an ONNX
file, then times each runtime in a process of its own (so the peak memory is its own), batch 1:
the SavedModel's serving_default (TensorFlow), the LiteRT interpreter (XNNPACK), ONNX Runtime
(CPU provider), the export graph in TensorFlow (edge_graph.edge_copy: to tell the graph's share
from the runtime's) and, when torch is installed, the reference's generator in PyTorch
(benchmarks/reference_torch.py) in eval mode under torch.no_grad. Every runtime uses all cores.

Each process runs `warmup` untimed calls, then `runs` timed ones and reports the median; the
whole set runs `rounds` times in alternating order and the table keeps each runtime's best
round (other work on the machine only slows runs down). Prints one JSON line per run on stdout,
then the table on stderr with the CPU model and flags, the load average around each run, the
error of each file against the Keras generator on synthetic scenes (model.json's check) and
speed ratios to the reference.
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from cyclegan_tf import hardware

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNTIMES = ('reference_pytorch', 'tf_saved_model', 'tf_edge_graph', 'litert_float32',
            'litert_float16', 'litert_int8', 'onnxruntime_float32')
REFERENCE = 'reference_pytorch'
# Instructions the int8 kernels use where present (besides hardware.REPORTED_CPU_FLAGS).
INT8_FLAGS = {'avx512_vnni', 'avx_vnni', 'amx_int8'}


def _images(size, channels=3):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from cyclegan_tf.data import synthetic  # pylint: disable=g-import-not-at-top
  scene = synthetic.render_scene(7, size, 'summer').astype(np.float32) / 127.5 - 1.0
  return scene[np.newaxis, :, :, :channels]


def _runner(runtime, models, size, threads):
  """A function running one batch-1 image through `runtime`."""
  images = _images(size)
  if runtime == REFERENCE:
    import torch  # pylint: disable=g-import-not-at-top
    from benchmarks import reference_torch as ref  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = ref.define_G(3, 3, models['ngf'], models['netG'], 'instance').eval()
    for m in net.modules():
      if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
        torch.nn.init.normal_(m.weight, 0.0, 0.02)
        torch.nn.init.zeros_(m.bias)
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())

    def run():
      with torch.no_grad():
        return net(x)
    return run
  if runtime.startswith('tf_'):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    x = tf.constant(images)
    if runtime == 'tf_saved_model':
      from cyclegan_tf.deploy import serving_model  # pylint: disable=g-import-not-at-top
      model = serving_model.load_serving_model(models['saved_model'])
      return lambda: model(x).numpy()
    from cyclegan_tf.deploy import edge_graph  # pylint: disable=g-import-not-at-top
    from cyclegan_tf.models import networks  # pylint: disable=g-import-not-at-top
    generator = networks.define_G(3, 3, models['ngf'], models['netG'], gemm_last_conv=False)
    generator.load_weights(models['weights'])
    copy = edge_graph.edge_copy(generator)
    fn = tf.function(lambda images: copy(images, training=False))
    return lambda: fn(x).numpy()
  from cyclegan_tf.deploy import runtimes  # pylint: disable=g-import-not-at-top
  model = runtimes.load(models[runtime], num_threads=threads)
  return lambda: model(images)


def child(runtime, models, size, warmup, runs, threads):
  """Times `runtime`; returns the result dict (ms per image, images/s, peak RSS, load)."""
  load_before = hardware.load_average()
  start = time.perf_counter()
  run = _runner(runtime, models, size, threads)
  for _ in range(warmup):
    run()
  setup_s = time.perf_counter() - start
  times = []
  for _ in range(runs):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  median = statistics.median(times)
  return {
      'runtime': runtime, 'size': size, 'batch': 1,
      'ms': round(1e3 * median, 1), 'ms_min': round(1e3 * min(times), 1),
      'ms_max': round(1e3 * max(times), 1), 'images_per_sec': round(1 / median, 3),
      'peak_rss_mb': round(hardware.peak_rss_mb(), 1),
      'setup_s': round(setup_s, 1), 'threads': threads, 'runs': runs,
      'load_avg_before': load_before, 'load_avg_after': hardware.load_average(),
  }


# ---------------------------------------------------------------------------------------------
# The parent: export once, run every runtime in its own process, print the table.


def prepare(folder, netG, ngf, size, check_images):
  """Writes the generator's SavedModel, Keras weights, LiteRT and ONNX files; returns their
  paths and model.json's checks."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from cyclegan_tf.deploy import edge_export  # pylint: disable=g-import-not-at-top
  from cyclegan_tf.deploy import export  # pylint: disable=g-import-not-at-top
  from cyclegan_tf.models import networks  # pylint: disable=g-import-not-at-top
  from cyclegan_tf.deploy import runtimes  # pylint: disable=g-import-not-at-top
  generator = networks.define_G(3, 3, ngf, netG, name='G_A', seed=0, gemm_last_conv=False)
  models = {'netG': netG, 'ngf': ngf, 'weights': os.path.join(folder, 'G_A.weights.h5')}
  generator.save_weights(models['weights'])
  models['saved_model'] = export.export_generator(generator, folder, 'cyclegan_a2b', netG)
  options = ml_collections.ConfigDict(dict(
      formats='litert,onnx', litert_sizes=str(size), litert_precisions='float32,float16,int8',
      litert_dynamic=False, onnx_opset=edge_export.ONNX_OPSET, check_images=check_images))
  folders = edge_export.export_edge(generator, folder, 'cyclegan_a2b', options, netG)
  checks = {}
  for fmt, path in folders.items():
    for entry in runtimes.read_metadata(path)['files']:
      runtime = f'{"onnxruntime" if fmt == "onnx" else fmt}_{entry["precision"]}'
      models[runtime] = os.path.join(path, entry['file'])
      check = entry.get('check', {})
      checks[runtime] = {'file_mb': round(entry['bytes'] / 1e6, 1),
                         **{f'check_{k}': v for k, v in check.items()}}
  return models, checks


def _torch_installed():
  return importlib.util.find_spec('torch') is not None


def run_all(args):
  """Runs every runtime `rounds` times, each in its own process; returns {runtime: best}."""
  wanted = [r for r in (args.only.split(',') if args.only else RUNTIMES)
            if r != REFERENCE or _torch_installed()]
  folder = args.keep or tempfile.mkdtemp(prefix='cyclegan_inference_')
  os.makedirs(folder, exist_ok=True)
  print(f'# exporting {args.netG} ngf {args.ngf} at {args.size} px to {folder} '
        f'(load average {hardware.load_average()})', file=sys.stderr, flush=True)
  models, checks = prepare(folder, args.netG, args.ngf, args.size, args.check_images)
  best = {}
  for round_index in range(args.rounds):
    order = wanted if round_index % 2 == 0 else wanted[::-1]
    for runtime in order:
      command = [sys.executable, '-m', 'benchmarks.inference', f'--child={runtime}',
                 f'--models={json.dumps(models)}', f'--size={args.size}',
                 f'--warmup={args.warmup}', f'--runs={args.runs}', f'--threads={args.threads}']
      done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
      lines = [l for l in done.stdout.splitlines() if l.startswith('{')]
      if done.returncode or not lines:
        print(f'# {runtime} failed:\n{done.stderr[-3000:]}', file=sys.stderr)
        continue
      result = {**json.loads(lines[-1]), 'round': round_index, **checks.get(runtime, {})}
      print(json.dumps(result), flush=True)
      if runtime not in best or result['ms'] < best[runtime]['ms']:
        best[runtime] = result
  return best


def print_table(best, stream=sys.stderr):
  reference = best.get(REFERENCE)
  int8_flags = sorted(hardware.cpu_flags() & INT8_FLAGS) or ['none']
  print(f'\nCPU: {hardware.cpu_description()}; int8 dot-product flags: {" ".join(int8_flags)}',
        file=stream)
  print('| runtime | ms / image | images/s | x reference | peak memory | file | error vs Keras '
        '| load |', file=stream)
  print('| --- | --- | --- | --- | --- | --- | --- | --- |', file=stream)
  for runtime in RUNTIMES:
    r = best.get(runtime)
    if not r:
      continue
    ratio = f'{r["images_per_sec"] / reference["images_per_sec"]:.2f}' if reference else '-'
    if 'check_max_abs_error' in r:
      error = f'max {r["check_max_abs_error"]:.1e}, PSNR {r["check_psnr_db"]:.1f} dB'
    else:
      error = '-'
    size = f'{r["file_mb"]} MB' if 'file_mb' in r else '-'
    print(f'| {runtime} | {r["ms"]:.0f} | {r["images_per_sec"]:.2f} | {ratio} | '
          f'{r["peak_rss_mb"]:.0f} MB | {size} | {error} | '
          f'{r["load_avg_before"]}-{r["load_avg_after"]} |', file=stream)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--size', type=int, default=256)
  parser.add_argument('--ngf', type=int, default=64)
  parser.add_argument('--netG', default='resnet_9blocks')
  parser.add_argument('--runs', type=int, default=5)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--rounds', type=int, default=2)
  parser.add_argument('--threads', type=int, default=os.cpu_count())
  parser.add_argument('--check_images', type=int, default=2,
                      help='synthetic scenes each file is checked on (model.json)')
  parser.add_argument('--only', default='', help=f'comma-separated of {",".join(RUNTIMES)}')
  parser.add_argument('--keep', default='', help='export into this folder and keep it')
  parser.add_argument('--child', default='', help=argparse.SUPPRESS)
  parser.add_argument('--models', default='', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    print(json.dumps(child(args.child, json.loads(args.models), args.size, args.warmup,
                           args.runs, args.threads)), flush=True)
    return 0
  print_table(run_all(args))
  return 0


if __name__ == '__main__':
  sys.exit(main())
