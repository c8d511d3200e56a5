"""Translating the frames of a clip (a video, an animated image) in order, in batches, with
instance-norm statistics shared over time so that colours do not pump from frame to frame.

Why: an instance-norm layer normalises every image by its own mean and variance. Two
consecutive frames that differ by a little noise or a small camera move get slightly different
statistics, and every layer's output shifts with them: the translated clip flickers even where
the input is still. FrameTranslator keeps, per instance-norm layer, an exponential moving
average over frames of the (mean, variance) of the frame's statistics image (the whole frame,
or the downscaled copy whose statistics its tiles share: tiling.statistics_image), and
translates every frame (or every tile of it) with those smoothed values:

  s_0 = x_0;  s_t = smoothing * s_{t-1} + (1 - smoothing) * x_t

so smoothing 0 is frame by frame and a clip of one frame (a still image) is unchanged. The
statistics of each frame come from a first pass (translator.norm_statistics, the machinery
tiles use), so frames cost two generator passes instead of one.

Any translator works (translate.Translator from a run, a SavedModel or an edge file): one
without shared-statistics functions (LiteRT / ONNX) or whose generator has no instance norm
(batch norm uses its moving averages at inference, the same for every frame) is run frame by
frame, batched, with the same outputs as single images. Frames are float32 [N, H, W, C] in
[-1, 1]; outputs float32 [N, H, W, C_out] in [-1, 1].
"""

import logging

import numpy as np

from cyclegan_tf.deploy import tiling

BATCH_SIZE = 8  # frames through the generator at once


def smooth_statistics(statistics, previous, smoothing):
  """The exponential moving average over frames of per-layer instance-norm statistics.

  statistics: [(mean, variance)] per layer, each [N, 1, 1, C_l] for N consecutive frames;
  previous: the smoothed statistics of the frame before them ([(mean, variance)] each
  [1, 1, 1, C_l]) or None at the start of a clip; smoothing in [0, 1): the weight of the past.
  Returns the smoothed statistics of the N frames, same shapes (float32 numpy).
  """
  out = []
  for layer, (mean, variance) in enumerate(statistics):
    mean, variance = np.asarray(mean, np.float32), np.asarray(variance, np.float32)
    smoothed_m, smoothed_v = np.empty_like(mean), np.empty_like(variance)
    m, v = (None, None) if previous is None else (previous[layer][0][0], previous[layer][1][0])
    for i in range(len(mean)):
      if m is None:
        m, v = mean[i], variance[i]
      else:
        m = smoothing * m + (1.0 - smoothing) * mean[i]
        v = smoothing * v + (1.0 - smoothing) * variance[i]
      smoothed_m[i], smoothed_v[i] = m, v
    out.append((smoothed_m, smoothed_v))
  return out


def flicker(frames):
  """Mean absolute change between consecutive frames, in uint8 levels (0-255).

  frames: uint8 [N, H, W, C] (N >= 2); returns a float (0.0 for fewer than two frames).
  """
  frames = np.asarray(frames)
  if len(frames) < 2:
    return 0.0
  return float(np.mean(np.abs(np.diff(frames.astype(np.int16), axis=0))))


class FrameTranslator:
  """Translates one clip's frames in order; see the module docstring.

  translator: a translate.Translator (whole / norm_statistics / with_statistics);
  smoothing: config.translate.temporal_smoothing, in [0, 1), 0 = frame by frame;
  tile_size, tile_overlap, stats_size: as tiling.translate_image (frames larger than tile_size go
  in tiles sharing the frame's smoothed statistics). One object per clip: it carries the
  statistics from one call of translate() to the next. Raises ValueError for a smoothing outside
  [0, 1).
  """

  def __init__(self, translator, smoothing=0.0, tile_size=512, tile_overlap=64,
               stats_size=None, batch_size=BATCH_SIZE):
    smoothing = float(smoothing)
    if not 0.0 <= smoothing < 1.0:
      raise ValueError(f'temporal_smoothing must be in [0, 1) (0 = frame by frame), got '
                       f'{smoothing}.')
    self.translator = translator
    self.tile_size, self.tile_overlap = int(tile_size), int(tile_overlap)
    self.stats_size = stats_size
    self.batch_size = max(1, int(batch_size))
    self.smoothing = smoothing if translator.shares_statistics else 0.0
    if smoothing and not translator.shares_statistics:
      logging.info('%s has no shared-statistics functions: frames are translated one by one '
                   '(temporal_smoothing=%g not applied).', translator.description, smoothing)
    self._previous = None  # smoothed statistics of the last frame translated

  @property
  def smoothed(self):
    """True while frames are translated with statistics shared over time."""
    return self.smoothing > 0

  def translate(self, frames):
    """float32 [N, H, W, C] frames in [-1, 1] (the clip's next N, in order) -> float32 numpy
    [N, H, W, C_out] in [-1, 1]."""
    frames = np.asarray(frames, np.float32)
    outputs = [self._batch(frames[i:i + self.batch_size])
               for i in range(0, len(frames), self.batch_size)]
    return np.concatenate(outputs, axis=0)

  def _tiled(self, frames):
    return max(frames.shape[1:3]) > self.tile_size

  def _batch(self, frames):
    if not self.smoothed:
      if self._tiled(frames):
        return np.stack([self._translate_one(f) for f in frames])
      return np.asarray(self.translator.whole(frames), np.float32)
    small = np.stack([tiling.statistics_image(f, self.tile_size, self.stats_size)
                      for f in frames])
    statistics = self.translator.norm_statistics(small)
    if not len(statistics):  # no instance norm (batch norm, say): nothing varies per frame
      self.smoothing = 0.0
      return self._batch(frames)
    statistics = smooth_statistics(statistics, self._previous, self.smoothing)
    self._previous = [(m[-1:], v[-1:]) for m, v in statistics]
    if not self._tiled(frames):
      return np.asarray(self.translator.with_statistics(frames, statistics), np.float32)
    return np.stack([
        self._translate_one(f, [(m[i:i + 1], v[i:i + 1]) for m, v in statistics])
        for i, f in enumerate(frames)])

  def _translate_one(self, frame, statistics=None):
    return tiling.translate_image(self.translator, frame, self.tile_size, self.tile_overlap,
                                  stats_size=self.stats_size, statistics=statistics)
