"""Speed and memory of the real train step and of generator inference.

  python main.py --mode=benchmark --config=configs/default.py --config.data.crop_size=128

times CycleGANTrainer.train_step (the compiled step training uses: forward, G step, D step,
image pools) after a warm-up, on random images of config.data.crop_size (or, with
--read_dataset, on batches of the configured dataset through input_pipeline, so the input
pipeline's cost shows if it is on the critical path), then a generator forward (G_A, inference
mode) on config.train.batch_size images. It prints ONE bare JSON line on stdout (logs go to
stderr), with:

  train_images_per_sec      global batch / median step time
  step_ms                   median train step, milliseconds (step_ms_min / _max: the spread)
  generator_images_per_sec  batch / median generator forward time
  generator_ms              median generator forward (whole batch), milliseconds
  peak_rss_mb               peak resident memory of the process (ru_maxrss), MiB
  rss_after_build_mb        resident memory once the networks and optimizers exist
  device, precision, strategy, replicas, batch_size, crop_size, netG, ngf, read_dataset,
  warmup_steps, measured_steps, intra_op_threads, inter_op_threads (0 = TF's default)
  losses_finite, loss_dtypes  the last measured step's losses (float32 under every policy)
  load_avg_before / load_avg_after  1-minute load average: on a shared machine timings are
                            only as good as it

The measured steps keep updating the weights (they are real steps); random images give
meaningful timings because every op's cost is data-independent. Step counts come from
config.benchmark (warmup_steps, steps, generator_steps) when the config has that section.

  python -m cyclegan_tf.benchmark --suite      float32 and mixed_bfloat16 at 128 px, float32 at
                                               256 px (memory), and the reference PyTorch
                                               iteration at 128 and 256 px (tests/
                                               reference_torch.py, if torch is installed),
                                               each in its own process; prints a table
  python -m cyclegan_tf.benchmark --reference --crop_size=128   the reference alone
"""

import json
import os
import platform
import resource
import statistics
import sys
import time

from absl import logging
import numpy as np
import tensorflow as tf

from cyclegan_tf import configuration
from cyclegan_tf import distribute

# Defaults when the config has no `benchmark` section.
WARMUP_STEPS = 2
MEASURED_STEPS = 5
GENERATOR_STEPS = 5

KEYS = ('train_images_per_sec', 'generator_images_per_sec', 'step_ms', 'peak_rss_mb', 'device',
        'precision', 'strategy', 'batch_size', 'crop_size')


def _setting(config, name, default):
  section = config.get('benchmark', None)
  if section is None:
    return default
  return section.get(name, default)


def peak_rss_mb():
  """Peak resident set size of this process so far, in MiB (Linux reports KiB, macOS bytes)."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak / (1024.0 * 1024.0) if sys.platform == 'darwin' else peak / 1024.0


def _current_rss_mb():
  try:
    import psutil  # pylint: disable=g-import-not-at-top
    return round(psutil.Process().memory_info().rss / 2**20, 1)
  except ImportError:
    return None


def device_description(strategy):
  """The accelerators the strategy runs on, or the CPU model."""
  gpus = tf.config.list_physical_devices('GPU')
  tpus = tf.config.list_logical_devices('TPU')
  if tpus:
    return f'{len(tpus)} x TPU'
  if gpus:
    names = []
    for gpu in gpus:
      try:
        names.append(tf.config.experimental.get_device_details(gpu).get('device_name', 'GPU'))
      except (ValueError, RuntimeError):
        names.append('GPU')
    return ', '.join(sorted(set(f'{names.count(n)} x {n}' for n in names)))
  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          cpu = line.split(':', 1)[1].strip()
          break
  except OSError:
    pass
  return f'CPU {cpu} ({os.cpu_count()} cores), {strategy.num_replicas_in_sync} replica(s)'


def _load_avg():
  try:
    return round(os.getloadavg()[0], 2)
  except OSError:
    return None


def random_batch(config, rng=None):
  """A global batch {'A', 'B'} of uniform [-1, 1] images of crop_size."""
  rng = rng or np.random.default_rng(0)
  size, n = config.data.crop_size, config.train.batch_size
  a = rng.uniform(-1, 1, (n, size, size, config.model.input_nc)).astype(np.float32)
  b = rng.uniform(-1, 1, (n, size, size, config.model.output_nc)).astype(np.float32)
  return {'A': tf.constant(a), 'B': tf.constant(b)}


def _sync(structure):
  """Waits for a step's results (returns them as numpy): the step is done when they are."""
  return tf.nest.map_structure(lambda t: t.numpy(), structure)


def _time_calls(fn, warmup, measured):
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(measured):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times


def make_trainer(config, strategy=None):
  """A CycleGANTrainer for crop_size images (the pools need a fixed size)."""
  from cyclegan_tf import train  # pylint: disable=g-import-not-at-top
  strategy = strategy or distribute.make_strategy(config.train)
  size = config.data.crop_size
  return train.CycleGANTrainer(config, strategy, (size, size, config.model.input_nc),
                               (size, size, config.model.output_nc))


def _batches(config, strategy, read_dataset):
  """A function returning the next distributed batch."""
  if read_dataset:
    from cyclegan_tf import input_pipeline  # pylint: disable=g-import-not-at-top
    state = {'epoch': 0, 'it': None}

    def next_batch():
      while True:
        if state['it'] is None:
          dataset = input_pipeline.train_dataset(config, epoch=state['epoch'])
          state['it'] = iter(strategy.experimental_distribute_dataset(dataset))
        try:
          return next(state['it'])
        except StopIteration:
          state['epoch'] += 1
          state['it'] = None
    return next_batch
  dataset = tf.data.Dataset.from_tensors(random_batch(config))
  batch = next(iter(strategy.experimental_distribute_dataset(dataset)))
  return lambda: batch


def benchmark_train_step(trainer, next_batch, warmup, measured):
  """Seconds per train step, one entry per measured step (after `warmup` steps), and the losses
  of the last step (numpy)."""
  last = {}

  def step():
    last.update(_sync(trainer.train_step(next_batch())))
  return _time_calls(step, warmup, measured), last


def benchmark_generator(generator, images, warmup, measured, jit_compile=False):
  """Seconds per inference forward of `generator` on `images`, one entry per measured call."""
  forward = tf.function(lambda x: generator(x, training=False), jit_compile=jit_compile)
  return _time_calls(lambda: forward(images).numpy(), warmup, measured)


def measure(config, read_dataset=False):
  """Runs the benchmark; returns the result dict (see the module docstring)."""
  configuration.validate(config)
  warmup = int(_setting(config, 'warmup_steps', WARMUP_STEPS))
  measured = int(_setting(config, 'steps', MEASURED_STEPS))
  generator_steps = int(_setting(config, 'generator_steps', GENERATOR_STEPS))
  load_before = _load_avg()
  strategy = distribute.make_strategy(config.train)
  trainer = make_trainer(config, strategy)
  rss_built = _current_rss_mb()
  c = config.train
  logging.info('Benchmarking %s ngf %d, %d px, batch %d, %s, %s strategy (%d replicas): '
               '%d warm-up + %d measured steps.', config.model.netG, config.model.ngf,
               config.data.crop_size, c.batch_size, c.precision, c.strategy,
               strategy.num_replicas_in_sync, warmup, measured)
  step_times, last_losses = benchmark_train_step(
      trainer, _batches(config, strategy, read_dataset), warmup, measured)
  finite = bool(all(np.all(np.isfinite(v)) for v in last_losses.values()))
  if not finite:
    logging.warning('Non-finite losses in the last measured step: %s', last_losses)
  step = statistics.median(step_times)
  logging.info('Train step: median %.1f ms (min %.1f, max %.1f).', 1e3 * step,
               1e3 * min(step_times), 1e3 * max(step_times))
  images = random_batch(config)['A']
  gen_times = benchmark_generator(trainer.G_A, images, 1, generator_steps)
  gen = statistics.median(gen_times)
  logging.info('Generator forward: median %.1f ms for %d image(s).', 1e3 * gen, len(images))
  return {
      'train_images_per_sec': round(c.batch_size / step, 4),
      'generator_images_per_sec': round(len(images) / gen, 4),
      'step_ms': round(1e3 * step, 2),
      'step_ms_min': round(1e3 * min(step_times), 2),
      'step_ms_max': round(1e3 * max(step_times), 2),
      'generator_ms': round(1e3 * gen, 2),
      'peak_rss_mb': round(peak_rss_mb(), 1),
      'rss_after_build_mb': rss_built,
      'device': device_description(strategy),
      'precision': c.precision,
      'strategy': c.strategy,
      'replicas': strategy.num_replicas_in_sync,
      'batch_size': c.batch_size,
      'crop_size': config.data.crop_size,
      'netG': config.model.netG,
      'ngf': config.model.ngf,
      'read_dataset': bool(read_dataset),
      'losses_finite': finite,
      'loss_dtypes': sorted({str(np.asarray(v).dtype) for v in last_losses.values()}),
      'warmup_steps': warmup,
      'measured_steps': measured,
      'intra_op_threads': tf.config.threading.get_intra_op_parallelism_threads(),
      'inter_op_threads': tf.config.threading.get_inter_op_parallelism_threads(),
      'load_avg_before': load_before,
      'load_avg_after': _load_avg(),
  }


def reference_pytorch(crop_size=128, batch_size=1, warmup=WARMUP_STEPS, measured=MEASURED_STEPS,
                      generator_steps=GENERATOR_STEPS, netG='resnet_9blocks', ngf=64, ndf=64,
                      threads=None):
  """The reference's training iteration, timed the same way, on THIS machine (needs torch).

  The networks are tests/reference_torch.py's faithful copies of the reference's classes;
  the iteration is the reference's optimize_parameters() (lsgan, identity 0.5, instance norm,
  two Adams, a filling image pool, i.e. the new images). FACTS.md's speed table was measured
  on another CPU; ratios are only meaningful against this, measured under the same load.
  """
  import importlib.util  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tests',
                      'reference_torch.py')
  spec = importlib.util.spec_from_file_location('reference_torch', path)
  ref = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(ref)
  if threads:
    torch.set_num_threads(threads)
  load_before = _load_avg()
  torch.manual_seed(0)
  g_a, g_b = (ref.define_G(3, 3, ngf, netG, 'instance') for _ in range(2))
  d_a, d_b = (ref.define_D(3, ndf, 'basic', norm='instance') for _ in range(2))
  for net in (g_a, g_b, d_a, d_b):
    for m in net.modules():
      if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
        torch.nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
          torch.nn.init.zeros_(m.bias)
  opt_g = torch.optim.Adam(list(g_a.parameters()) + list(g_b.parameters()), 2e-4,
                           betas=(0.5, 0.999))
  opt_d = torch.optim.Adam(list(d_a.parameters()) + list(d_b.parameters()), 2e-4,
                           betas=(0.5, 0.999))
  mse, l1 = torch.nn.MSELoss(), torch.nn.L1Loss()
  gan = lambda pred, real: mse(pred, torch.full_like(pred, 1.0 if real else 0.0))
  real_a = torch.rand(batch_size, 3, crop_size, crop_size) * 2 - 1
  real_b = torch.rand(batch_size, 3, crop_size, crop_size) * 2 - 1

  def iteration():
    fake_b = g_a(real_a)
    rec_a = g_b(fake_b)
    fake_a = g_b(real_b)
    rec_b = g_a(fake_a)
    for p in list(d_a.parameters()) + list(d_b.parameters()):
      p.requires_grad_(False)
    opt_g.zero_grad()
    idt_a, idt_b = g_a(real_b), g_b(real_a)
    loss_g = (l1(idt_a, real_b) * 5.0 + l1(idt_b, real_a) * 5.0 + gan(d_a(fake_b), True) +
              gan(d_b(fake_a), True) + l1(rec_a, real_a) * 10.0 + l1(rec_b, real_b) * 10.0)
    loss_g.backward()
    opt_g.step()
    for p in list(d_a.parameters()) + list(d_b.parameters()):
      p.requires_grad_(True)
    opt_d.zero_grad()
    loss_d_a = 0.5 * (gan(d_a(real_b), True) + gan(d_a(fake_b.detach()), False))
    loss_d_a.backward()
    loss_d_b = 0.5 * (gan(d_b(real_a), True) + gan(d_b(fake_a.detach()), False))
    loss_d_b.backward()
    opt_d.step()

  step_times = _time_calls(iteration, warmup, measured)
  g_a.eval()

  def forward():
    with torch.no_grad():
      g_a(real_a)
  gen_times = _time_calls(forward, 1, generator_steps)
  step, gen = statistics.median(step_times), statistics.median(gen_times)
  return {
      'implementation': 'reference_pytorch',
      'train_images_per_sec': round(batch_size / step, 4),
      'generator_images_per_sec': round(batch_size / gen, 4),
      'step_ms': round(1e3 * step, 2),
      'step_ms_min': round(1e3 * min(step_times), 2),
      'step_ms_max': round(1e3 * max(step_times), 2),
      'generator_ms': round(1e3 * gen, 2),
      'peak_rss_mb': round(peak_rss_mb(), 1),
      'device': f'CPU {device_description(tf.distribute.get_strategy()).split(",")[0][4:]}',
      'precision': 'float32',
      'strategy': 'default',
      'batch_size': batch_size,
      'crop_size': crop_size,
      'netG': netG,
      'ngf': ngf,
      'torch_threads': torch.get_num_threads(),
      'warmup_steps': warmup,
      'measured_steps': measured,
      'load_avg_before': load_before,
      'load_avg_after': _load_avg(),
  }


def run(config, read_dataset=False, stream=None):
  """measure(), printed as one bare JSON line on `stream` (stdout); returns the dict."""
  result = measure(config, read_dataset=read_dataset)
  stream = stream or sys.stdout
  stream.write(json.dumps(result) + '\n')
  stream.flush()
  return result


# The standard comparison (README "Benchmark"): each configuration in a process of its own.
SUITE = (
    ('tf float32 128', ['--config.data.crop_size=128', '--config.data.load_size=143']),
    ('tf mixed_bfloat16 128', ['--config.data.crop_size=128', '--config.data.load_size=143',
                               '--config.train.precision=mixed_bfloat16']),
    ('tf float32 256 (memory)', ['--config.data.crop_size=256', '--config.data.load_size=286']),
)
# Fewer timed steps at 256 px and in bfloat16 (35-80 s a step on the 2-core AVX2 machine) when
# the config has a benchmark section.
FEW_STEPS = ['--config.benchmark.warmup_steps=1', '--config.benchmark.steps=2',
             '--config.benchmark.generator_steps=2']


def _suite(args, extra):
  """Runs SUITE (and the reference, if torch is installed) as subprocesses; prints a table."""
  import subprocess  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  rows = []
  from configs import default  # pylint: disable=g-import-not-at-top
  few = FEW_STEPS if 'benchmark' in default.get_config() else []
  commands = [(name, [sys.executable, os.path.join(root, 'main.py'), '--mode=benchmark',
                      f'--config={args.config}'] + flags +
               (few if '256' in name or 'bfloat16' in name else []) + extra)
              for name, flags in SUITE]
  if not args.no_reference:
    for size in (128, 256):
      commands.append((f'reference pytorch {size}', [
          sys.executable, '-m', 'cyclegan_tf.benchmark', '--reference', f'--crop_size={size}'] +
                       (['--steps=2', '--warmup=1'] if size == 256 else [])))
  for name, command in commands:
    print(f'# {name}: load average {_load_avg()}', file=sys.stderr, flush=True)
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
    lines = [l for l in done.stdout.splitlines() if l.startswith('{')]
    if done.returncode or not lines:
      print(f'# {name} failed:\n{done.stderr[-3000:]}', file=sys.stderr)
      continue
    result = json.loads(lines[-1])
    rows.append((name, result))
    print(json.dumps({'name': name, **result}), flush=True)
  print('\n{:<26} {:>10} {:>10} {:>10} {:>10} {:>8}'.format(
      'configuration', 'train i/s', 'step ms', 'G i/s', 'peak MB', 'load'), file=sys.stderr)
  for name, r in rows:
    print('{:<26} {:>10.3f} {:>10.0f} {:>10.2f} {:>10.0f} {:>8}'.format(
        name, r['train_images_per_sec'], r['step_ms'], r['generator_images_per_sec'],
        r['peak_rss_mb'], f"{r['load_avg_before']}-{r['load_avg_after']}"), file=sys.stderr)


def main(argv=None):
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--suite', action='store_true',
                      help='run the standard comparison, each configuration in its own process')
  parser.add_argument('--reference', action='store_true',
                      help='time the reference PyTorch iteration here (needs torch)')
  parser.add_argument('--crop_size', type=int, default=128)
  parser.add_argument('--steps', type=int, default=MEASURED_STEPS)
  parser.add_argument('--warmup', type=int, default=WARMUP_STEPS)
  parser.add_argument('--config', default='configs/default.py')
  parser.add_argument('--no_reference', action='store_true', help='suite: skip PyTorch')
  args, extra = parser.parse_known_args(argv)  # suite: other flags go to main.py's TF runs
  if args.suite:
    _suite(args, extra)
  elif args.reference:
    result = reference_pytorch(args.crop_size, warmup=args.warmup, measured=args.steps,
                               generator_steps=args.steps)
    print(json.dumps(result), flush=True)
  else:
    parser.error('use --suite or --reference (or main.py --mode=benchmark)')


if __name__ == '__main__':
  main()
