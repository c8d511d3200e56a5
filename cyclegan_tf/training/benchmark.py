"""Speed and memory of the real train step and of generator inference.

  python main.py --mode=benchmark --config=configs/default.py --config.data.crop_size=128

times TrainState.train_step (the compiled step training uses: forward, G step, D step,
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
  peak_tensor_mb            TF's allocator: the most tensor memory in use at once during the
                            train steps (variables, optimizer slots, activations) on the first
                            device, MiB; null where the device does not count it
  device, precision, strategy, replicas, batch_size, crop_size, netG, ngf, read_dataset,
  warmup_steps, measured_steps, intra_op_threads, inter_op_threads (0 = TF's default)
  losses_finite, loss_dtypes  the last measured step's losses (float32 under every policy)
  load_avg_before / load_avg_after  1-minute load average: on a shared machine timings are
                            only as good as it

The measured steps keep updating the weights (they are real steps); random images give
meaningful timings because every op's cost is data-independent. Step counts come from
config.benchmark (warmup_steps, steps, generator_steps).

The side-by-side comparison with the reference's PyTorch iteration lives outside the package:
benchmarks/suite.py (each configuration in its own process, one table) and
benchmarks/reference_pytorch.py (the reference alone); see the README's Benchmark section.
"""

import json
import statistics
import sys

from absl import logging
import numpy as np
import tensorflow as tf

from cyclegan_tf import configuration
from cyclegan_tf import distribute
from cyclegan_tf import hardware
from cyclegan_tf.data import input_pipeline
from cyclegan_tf.models import precision as precision_lib
from cyclegan_tf.training import train_state as train_state_lib

KEYS = ('train_images_per_sec', 'generator_images_per_sec', 'step_ms', 'peak_rss_mb', 'device',
        'precision', 'strategy', 'batch_size', 'crop_size')


def _current_rss_mb():
  try:
    import psutil  # pylint: disable=g-import-not-at-top
    return round(psutil.Process().memory_info().rss / 2**20, 1)
  except ImportError:
    return None


def device_description(strategy):
  """The accelerators the strategy runs on, or the CPU model with its speed-deciding flags."""
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
  return (f'CPU {hardware.cpu_description()}, {strategy.num_replicas_in_sync} '
          'replica(s)')


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


def make_train_state(config, strategy=None):
  """The train state of the config's model for crop_size x crop_size images."""
  strategy = strategy or distribute.make_strategy(config.train)
  precision, _ = precision_lib.resolve(config.train.precision, strategy)
  size = config.data.crop_size
  shapes = {'A': (size, size, config.model.input_nc), 'B': (size, size, config.model.output_nc)}
  return train_state_lib.TrainState(train_state_lib.build_model(
      config, strategy, precision, train_shapes=shapes))


def _batches(config, strategy, read_dataset):
  """A function returning the next distributed batch."""
  if read_dataset:
    pipeline = input_pipeline.InputPipeline(config)
    state = {'epoch': 0, 'it': None}

    def next_batch():
      while True:
        if state['it'] is None:
          dataset = pipeline.train_dataset(state['epoch'])
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


def benchmark_train_step(train_state, next_batch, warmup, measured):
  """Seconds per train step, one entry per measured step (after `warmup` steps), and the losses
  of the last step (numpy)."""
  last = {}

  def step():
    values = _sync(train_state.train_step(next_batch()))
    last.update(zip(train_state.loss_names, values))
  return hardware.time_calls(step, warmup, measured), last


def benchmark_generator(generator, images, warmup, measured, jit_compile=False):
  """Seconds per inference forward of `generator` on `images`, one entry per measured call."""
  forward = tf.function(lambda x: generator(x, training=False), jit_compile=jit_compile)
  return hardware.time_calls(lambda: forward(images).numpy(), warmup, measured)


def _first_device():
  return 'GPU:0' if tf.config.list_logical_devices('GPU') else 'CPU:0'


def _reset_peak_tensor_memory():
  try:
    tf.config.experimental.reset_memory_stats(_first_device())
  except (ValueError, RuntimeError):  # a device whose allocator keeps no statistics
    pass


def _peak_tensor_mb():
  try:
    return round(tf.config.experimental.get_memory_info(_first_device())['peak'] / 2**20, 1)
  except (ValueError, RuntimeError):
    return None


def measure(config, read_dataset=False):
  """Runs the benchmark; returns the result dict (see the module docstring)."""
  configuration.validate(config)
  warmup = int(config.benchmark.warmup_steps)
  measured = int(config.benchmark.steps)
  generator_steps = int(config.benchmark.generator_steps)
  load_before = hardware.load_average()
  strategy = distribute.make_strategy(config.train)
  train_state = make_train_state(config, strategy)
  rss_built = _current_rss_mb()
  c = config.train
  logging.info('Benchmarking %s ngf %d, %d px, batch %d, %s, %s strategy (%d replicas): '
               '%d warm-up + %d measured steps.', config.model.netG, config.model.ngf,
               config.data.crop_size, c.batch_size, train_state.model.precision, c.strategy,
               strategy.num_replicas_in_sync, warmup, measured)
  _reset_peak_tensor_memory()
  step_times, last_losses = benchmark_train_step(
      train_state, _batches(config, strategy, read_dataset), warmup, measured)
  peak_tensor_mb = _peak_tensor_mb()
  finite = bool(all(np.all(np.isfinite(v)) for v in last_losses.values()))
  if not finite:
    logging.warning('Non-finite losses in the last measured step: %s', last_losses)
  step = statistics.median(step_times)
  logging.info('Train step: median %.1f ms (min %.1f, max %.1f).', 1e3 * step,
               1e3 * min(step_times), 1e3 * max(step_times))
  images = random_batch(config)['A']
  generator = train_state.model.generators()['a2b']
  gen_times = benchmark_generator(generator, images, 1, generator_steps)
  gen = statistics.median(gen_times)
  logging.info('Generator forward: median %.1f ms for %d image(s).', 1e3 * gen, len(images))
  return {
      'train_images_per_sec': round(c.batch_size / step, 4),
      'generator_images_per_sec': round(len(images) / gen, 4),
      'step_ms': round(1e3 * step, 2),
      'step_ms_min': round(1e3 * min(step_times), 2),
      'step_ms_max': round(1e3 * max(step_times), 2),
      'generator_ms': round(1e3 * gen, 2),
      'peak_rss_mb': round(hardware.peak_rss_mb(), 1),
      'rss_after_build_mb': rss_built,
      'peak_tensor_mb': peak_tensor_mb,
      'device': device_description(strategy),
      'precision': train_state.model.precision,
      'precision_config': c.precision,
      'jit_compile': bool(c.jit_compile),
      'cpu_model': hardware.cpu_model(),
      'cpu_flags': sorted(f for f in hardware.REPORTED_CPU_FLAGS
                          if f in hardware.cpu_flags()),
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
      'load_avg_after': hardware.load_average(),
  }


def run(config, read_dataset=False, stream=None):
  """measure(), printed as one bare JSON line on `stream` (stdout); returns the dict."""
  result = measure(config, read_dataset=read_dataset)
  stream = stream or sys.stdout
  stream.write(json.dumps(result) + '\n')
  stream.flush()
  return result


