"""Progress lines for long work (folders of images, downloads): count, rate and ETA, at most
every few seconds, through absl logging."""

import time

from absl import logging


def format_duration(seconds):
  """'1d 02:03:04' / '02:03:04' (days are never wrapped into the clock)."""
  seconds = int(max(seconds, 0))
  days, rest = divmod(seconds, 86400)
  clock = time.strftime('%H:%M:%S', time.gmtime(rest))
  return f'{days}d {clock}' if days else clock


class Progress:
  """Logs '<what> k/n <unit>, r <unit>/s, ETA' at most every `every` seconds, and at the end.

  total: the count to reach (0: unknown, no ETA); unit: 'images', 'bytes', ...
  """

  def __init__(self, what, total, unit='images', every=10.0, clock=time.monotonic):
    self.what, self.total, self.unit, self.every = what, total, unit, every
    self.clock = clock
    self.done = 0
    self.start = self.last = clock()

  def update(self, count=1):
    """Adds `count`; returns the line it logged, or None."""
    self.done += count
    now = self.clock()
    finished = self.total and self.done >= self.total
    if now - self.last < self.every and not finished:
      return None
    self.last = now
    rate = self.done / max(now - self.start, 1e-9)
    line = f'{self.what}: {self.done:,}{f"/{self.total:,}" if self.total else ""} {self.unit}'
    line += f', {rate:,.1f} {self.unit}/s'
    if self.total and not finished:
      line += f', ETA {format_duration((self.total - self.done) / max(rate, 1e-9))}'
    logging.info('%s', line)
    return line
