"""The CPU this process runs on: model and the feature flags that decide speed (TF-free).

Every speed figure of this project is printed with these: the machines differ between runs
(AVX2 only, or AVX-512 with bfloat16, or AMX), and only ratios measured side by side count.
"""

import os
import platform

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
