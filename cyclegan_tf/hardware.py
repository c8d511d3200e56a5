"""The machine a benchmark runs on and how it measures (TF-free): the CPU model and the feature
flags that decide speed, the load average, peak memory, timed calls.

Every speed figure of this project is printed with these: the machines differ between runs
(AVX2 only, or AVX-512 with bfloat16, or AMX), and only ratios measured side by side count.
"""

import os
import platform
import resource
import sys
import time

# avx512_vnni speeds up int8 (LiteRT int8 exports), avx512_bf16 / amx_bf16 bfloat16.
REPORTED_CPU_FLAGS = ('avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_bf16',
                      'amx_tile')


def cpu_model():
  """The CPU's model name from /proc/cpuinfo (Linux), else platform's."""
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def cpu_flags():
  """The CPU's feature flags (a set of /proc/cpuinfo names, e.g. 'avx2'); empty when unknown."""
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('flags'):
          return set(line.split(':', 1)[1].split())
  except OSError:
    pass
  return set()


def cpu_description():
  """'AMD EPYC ... (2 cores; avx2 fma avx512f avx512_bf16)': the model and the flags that
  decide speed here, for every benchmark table."""
  flags = cpu_flags()
  shown = ' '.join(f for f in REPORTED_CPU_FLAGS if f in flags) or 'no AVX2'
  return f'{cpu_model()} ({os.cpu_count()} cores; {shown})'


def load_average():
  """The 1-minute load average, or None where the OS has none: timings are only as good as a
  quiet machine."""
  try:
    return round(os.getloadavg()[0], 2)
  except OSError:
    return None


def peak_rss_mb():
  """This process's peak resident memory in MiB: VmHWM on Linux (unlike ru_maxrss, not
  inherited from the parent across fork and exec), else ru_maxrss (KiB; bytes on macOS)."""
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('VmHWM:'):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return peak / 2**20 if sys.platform == 'darwin' else peak / 1024


def time_calls(fn, warmup, measured):
  """Calls fn() `warmup` times untimed, then `measured` times; returns each call's seconds.
  fn must wait for its results (an asynchronous runtime's call returns before it is done)."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(measured):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return times
