"""Which precision a run computes in, and what the hardware under a strategy can do.

config.train.precision:
  float32         the reference's numerics (the default)
  mixed_bfloat16  networks in bfloat16, variables, losses and pools in float32
  mixed_float16   the same in float16, with loss scaling
  auto            mixed_bfloat16 where the hardware computes bfloat16 natively (a TPU; a GPU of
                  compute capability >= 8.0; a CPU with avx512_bf16 or amx_bf16), else float32

bfloat16 on a CPU without those instructions is emulated: the train step measured 9x slower
than float32 on an AVX2-only CPU (README, Benchmark), so choosing it there logs a warning.
"""

from absl import logging
import tensorflow as tf

from cyclegan_tf import hardware

NATIVE_BF16_CPU_FLAGS = ('avx512_bf16', 'amx_bf16')
MIN_BF16_GPU_CAPABILITY = (8, 0)


def device_kind(strategy):
  """'TPU', 'GPU' or 'CPU': what the strategy's replicas compute on."""
  if isinstance(strategy, tf.distribute.TPUStrategy):
    return 'TPU'
  try:
    devices = ' '.join(strategy.extended.worker_devices).upper()
  except (AttributeError, RuntimeError, ValueError):
    devices = ''
  if 'GPU' in devices:
    return 'GPU'
  # The default strategy names the CPU but places ops on the first GPU when there is one.
  if 'Default' in type(strategy).__name__ and tf.config.list_logical_devices('GPU'):
    return 'GPU'
  return 'CPU'


def gpu_capabilities():
  """Compute capabilities (major, minor) of the visible GPUs."""
  out = []
  for gpu in tf.config.list_physical_devices('GPU'):
    try:
      capability = tf.config.experimental.get_device_details(gpu).get('compute_capability')
    except (ValueError, RuntimeError):
      capability = None
    if capability:
      out.append(tuple(capability))
  return out


def resolve(name, strategy):
  """(precision, reason): config.train.precision with 'auto' decided for this hardware.

  Logs a warning when mixed_bfloat16 is chosen explicitly on a CPU that emulates bfloat16.
  """
  kind = device_kind(strategy)
  flags = hardware.cpu_flags() if kind == 'CPU' else set()
  native_cpu = [f for f in NATIVE_BF16_CPU_FLAGS if f in flags]
  if name != 'auto':
    if name == 'mixed_bfloat16' and kind == 'CPU' and not native_cpu:
      logging.warning(
          'config.train.precision=mixed_bfloat16 on a CPU without %s: bfloat16 is emulated '
          'here, and the train step measured 9x slower than float32 on such a CPU. Use '
          'float32 (or precision=auto) on this machine.', ' / '.join(NATIVE_BF16_CPU_FLAGS))
    return name, 'config.train.precision'
  if kind == 'TPU':
    return 'mixed_bfloat16', 'auto: TPUs compute bfloat16 natively'
  if kind == 'GPU':
    capabilities = gpu_capabilities()
    if capabilities and min(capabilities) >= MIN_BF16_GPU_CAPABILITY:
      return 'mixed_bfloat16', (f'auto: GPU compute capability {min(capabilities)} >= '
                                f'{MIN_BF16_GPU_CAPABILITY}')
    return 'float32', (f'auto: GPU compute capability {capabilities or "unknown"} below '
                       f'{MIN_BF16_GPU_CAPABILITY}: no native bfloat16')
  if native_cpu:
    return 'mixed_bfloat16', f'auto: the CPU has {" and ".join(native_cpu)}'
  return 'float32', (f'auto: the CPU has no {" / ".join(NATIVE_BF16_CPU_FLAGS)}; bfloat16 '
                     'would be emulated')


# The generators' last conv (7x7, 64 -> 3 channels) as GEMMs (custom_layers.few_output_conv2d) pays
# off only where oneDNN's own backprop-filter kernel for it is slow: on AVX2 CPUs it built a
# 760 MB im2col buffer per 256 px image and took 2 s; with AVX-512 the plain conv measured 3%
# faster and 2% leaner at 256 px. Small images need neither (the GEMM form adds tracing time).
GEMM_MIN_SIDE = 128


def gemm_last_conv(strategy, image_side):
  """True where the generators' last conv runs faster as GEMMs: a CPU without AVX-512, images
  of at least GEMM_MIN_SIDE px; a plain Conv2D elsewhere (same weights and checkpoints)."""
  return (device_kind(strategy) == 'CPU' and image_side >= GEMM_MIN_SIDE and
          'avx512f' not in hardware.cpu_flags())
