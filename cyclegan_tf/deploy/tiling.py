"""Translating one image of any size, whole or in overlapping tiles that share instance-norm
statistics (translate.py's module docstring says why and how close tiles come to a whole pass).

Images are float32 [H, W, C] in [-1, 1]; a translator is translate.Translator or anything with
its whole / norm_statistics / with_statistics / shares_statistics interface.
"""

import numpy as np
import tensorflow as tf


def tile_starts(length, tile, overlap):
  """Start offsets of tiles of `tile` pixels covering [0, length), overlapping >= `overlap`."""
  if length <= tile:
    return [0]
  stride = tile - overlap
  starts = list(range(0, length - tile, stride))
  starts.append(length - tile)
  return starts


def _ramp(overlap):
  """Cosine ramp rising from ~0 to ~1 over `overlap` pixels; ramp + reversed ramp = 1."""
  i = np.arange(overlap, dtype=np.float64) + 0.5
  return (0.5 - 0.5 * np.cos(np.pi * i / overlap)).astype(np.float32)


def _tile_weights(start, size, length, overlap):
  """1-D blending weights of a tile: ramps on the sides that overlap a neighbour."""
  weights = np.ones(size, np.float32)
  ramp_len = min(overlap, size)
  if ramp_len > 0:
    if start > 0:
      weights[:ramp_len] = _ramp(ramp_len)
    if start + size < length:
      weights[size - ramp_len:] = np.minimum(weights[size - ramp_len:], _ramp(ramp_len)[::-1])
  return weights


def _downscale(image, max_side):
  height, width = image.shape[0], image.shape[1]
  scale = max_side / max(height, width)
  if scale >= 1:
    return image
  size = (max(1, round(height * scale)), max(1, round(width * scale)))
  return tf.image.resize(image, size, method='area').numpy()


def _tiles(height, width, tile_size, tile_overlap):
  """[(y, x, tile_h, tile_w, weights [tile_h, tile_w, 1])] covering the image."""
  tile_h, tile_w = min(tile_size, height), min(tile_size, width)
  tiles = []
  for y in tile_starts(height, tile_size, tile_overlap):
    wy = _tile_weights(y, tile_h, height, tile_overlap)
    for x in tile_starts(width, tile_size, tile_overlap):
      wx = _tile_weights(x, tile_w, width, tile_overlap)
      tiles.append((y, x, tile_h, tile_w, np.outer(wy, wx)[..., np.newaxis]))
  return tiles


def statistics_image(image, tile_size, stats_size=None):
  """The [H, W, C] image whose instance-norm statistics translate_image uses for `image`: the
  image itself when it goes through whole (longer side <= tile_size), else its copy downscaled
  to a longer side of stats_size (default tile_size) that all its tiles share."""
  image = np.asarray(image, np.float32)
  if max(image.shape[:2]) <= tile_size:
    return image
  return _downscale(image, stats_size or tile_size)


def translate_image(translator, image, tile_size=512, tile_overlap=64, shared_statistics=True,
                    stats_size=None, statistics=None):
  """One float32 [H, W, C] image in [-1, 1] -> its translation at the same size (numpy).

  Images whose longer side is at most tile_size go through in one piece. Larger ones go in
  tiles of tile_size overlapping by tile_overlap pixels, blended with cosine ramps. With
  shared_statistics (and a translator that supports it) all tiles use the instance-norm
  statistics of one pass over the whole image downscaled so that its longer side is at most
  stats_size (default tile_size; a stats_size >= the image's longer side uses full-resolution
  statistics, at the memory cost of a whole-image pass).

  statistics: given instance-norm statistics ([(mean, variance)] per layer, each [1, 1, 1, C_l];
  e.g. averaged over the frames of a video) used instead, for the whole image or every tile.
  Raises ValueError for a tile_size < 1 or a tile_overlap outside [0, tile_size).
  """
  if tile_size < 1:
    raise ValueError(f'tile_size must be >= 1, got {tile_size}.')
  if not 0 <= tile_overlap < tile_size:
    raise ValueError(f'tile_overlap must be in [0, tile_size={tile_size}), got {tile_overlap}.')
  image = np.asarray(image, np.float32)
  height, width = image.shape[:2]
  if max(height, width) <= tile_size:
    if statistics is not None:
      return np.asarray(translator.with_statistics(image[np.newaxis], statistics))[0]
    return np.asarray(translator.whole(image[np.newaxis]))[0]

  if statistics is None and shared_statistics and translator.shares_statistics:
    small = statistics_image(image, tile_size, stats_size)
    statistics = translator.norm_statistics(small[np.newaxis])

  total = None
  weight_sum = np.zeros((height, width, 1), np.float32)
  for y, x, h, w, weights in _tiles(height, width, tile_size, tile_overlap):
    tile = image[np.newaxis, y:y + h, x:x + w]
    if statistics is None:
      out = translator.whole(tile)
    else:
      out = translator.with_statistics(tile, statistics)
    out = np.asarray(out)[0]
    if total is None:
      total = np.zeros((height, width, out.shape[-1]), np.float32)
    total[y:y + h, x:x + w] += out * weights
    weight_sum[y:y + h, x:x + w] += weights
  return total / weight_sum
