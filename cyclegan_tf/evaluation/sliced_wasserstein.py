"""Sliced Wasserstein distance on Laplacian-pyramid patches, the ProGAN recipe (Karras et al.
2018, section 5): sliced_wasserstein_distance, with the building blocks laplacian_pyramid,
sample_patch_descriptors and sliced_wasserstein. Images are float arrays in [-1, 1] shaped
[N, H, W, 3]; target-set normalisation.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage

from cyclegan_tf.evaluation.metrics import as_image_batch


# 1-D binomial filter; the 5x5 Gaussian of ProGAN / cv2.pyrDown is its outer
# product with itself, so we filter separably (identical result, faster).
_BINOMIAL_5 = np.array([1.0, 4.0, 6.0, 4.0, 1.0], dtype=np.float32) / 16.0


def _blur(x: np.ndarray, gain: float = 1.0) -> np.ndarray:
  """Separable 5x5 binomial filter over H and W of an NHWC array (mirror edges)."""
  k = _BINOMIAL_5 * np.float32(gain)
  x = scipy.ndimage.convolve1d(x, k, axis=1, mode='mirror')
  return scipy.ndimage.convolve1d(x, k, axis=2, mode='mirror')


def _pyr_down(x: np.ndarray) -> np.ndarray:
  """Blur then keep every 2nd pixel (matches ProGAN's pyr_down / cv2.pyrDown)."""
  return _blur(x)[:, ::2, ::2, :]


def _pyr_up(x: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
  """Zero-insert upsampling x2, blur with gain 4 (per 2-D), crop to ``out_hw``."""
  n, h, w, c = x.shape
  up = np.zeros((n, 2 * h, 2 * w, c), dtype=x.dtype)
  up[:, ::2, ::2, :] = x
  up = _blur(up, gain=2.0)  # 2 per axis -> 4 in 2-D, as in ProGAN's pyr_up.
  return up[:, : out_hw[0], : out_hw[1], :]


def _num_pyramid_levels(height: int, width: int, min_size: int) -> int:
  """Levels from full size down to the smallest size >= ``min_size`` (halving)."""
  levels = 0
  size = min(height, width)
  while size >= min_size:
    levels += 1
    size //= 2
  return levels


def laplacian_pyramid(images, num_levels: int) -> list[np.ndarray]:
  """Laplacian pyramid of an NHWC batch, finest level first.

  Level ``i < num_levels - 1`` is the detail ``g_i - up(g_{i+1})`` where
  ``g_{i+1} = down(g_i)`` (5x5 binomial filter, factor-2 resampling); the
  last level is the Gaussian residual ``g_{num_levels - 1}``. Odd sizes are
  handled by cropping the upsampled image to the finer level's size.
  """
  x = np.asarray(images, dtype=np.float32)
  if x.ndim != 4:
    raise ValueError(f'images must be NHWC, got shape {x.shape}.')
  if num_levels < 1:
    raise ValueError(f'num_levels must be >= 1, got {num_levels}.')
  pyramid = [x]
  for _ in range(1, num_levels):
    coarse = _pyr_down(pyramid[-1])
    pyramid[-1] = pyramid[-1] - _pyr_up(coarse, pyramid[-1].shape[1:3])
    pyramid.append(coarse)
  return pyramid


def sample_patch_descriptors(
    level: np.ndarray, patches_per_image: int, patch_size: int, rng: np.random.Generator
) -> np.ndarray:
  """Random ``patch_size`` x ``patch_size`` x C patches, ``patches_per_image`` per image.

  Patch centres are drawn uniformly so that the whole patch lies inside the
  image (as in ProGAN). Returns ``[N * patches_per_image, patch_size,
  patch_size, C]`` (not flattened, so per-channel statistics are easy).
  """
  n, h, w, _ = level.shape
  half = patch_size // 2
  if h < patch_size or w < patch_size:
    raise ValueError(f'Level of size {h}x{w} is smaller than patch_size={patch_size}.')
  num = n * patches_per_image
  img = np.repeat(np.arange(n), patches_per_image)
  cy = rng.integers(half, h - half, size=num)
  cx = rng.integers(half, w - half, size=num)
  offsets = np.arange(-half, half + 1)
  ys = cy[:, None, None] + offsets[None, :, None]
  xs = cx[:, None, None] + offsets[None, None, :]
  return level[img[:, None, None], ys, xs, :]


def _wasserstein_1d_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Exact W1 between empirical 1-D distributions, per row, of sorted ``a``, ``b``.

  ``a``: [D, n] and ``b``: [D, m], each row sorted ascending. For n == m
  this is exactly ``mean(|a - b|)`` along the row (ProGAN's formula). For
  n != m it integrates ``|F_a^-1(t) - F_b^-1(t)|`` over t in [0, 1] exactly,
  using the union of the two sets of quantile break points.
  """
  n, m = a.shape[1], b.shape[1]
  if n == m:
    return np.mean(np.abs(a - b), axis=1)
  t = np.union1d(np.arange(n + 1) / n, np.arange(m + 1) / m)
  mids = 0.5 * (t[1:] + t[:-1])
  weights = np.diff(t)
  ia = np.minimum((mids * n).astype(np.int64), n - 1)
  ib = np.minimum((mids * m).astype(np.int64), m - 1)
  chunk = 16  # rows at a time: the gathered arrays have n + m columns
  return np.concatenate([
      np.abs(a[j : j + chunk, ia] - b[j : j + chunk, ib]) @ weights
      for j in range(0, a.shape[0], chunk)
  ])


def sliced_wasserstein(
    desc_a: np.ndarray,
    desc_b: np.ndarray,
    num_repeats: int,
    dirs_per_repeat: int,
    rng: np.random.Generator,
) -> float:
  """Sliced Wasserstein distance between two descriptor sets [n, D] and [m, D].

  Average over ``num_repeats`` repeats of ``dirs_per_repeat`` random unit
  directions of the 1-D W1 distance between the projected sets (project,
  sort, mean |a - b| when n == m).
  """
  a = np.asarray(desc_a, dtype=np.float32).reshape(desc_a.shape[0], -1)
  b = np.asarray(desc_b, dtype=np.float32).reshape(desc_b.shape[0], -1)
  if a.shape[1] != b.shape[1]:
    raise ValueError(f'Descriptor sizes differ: {a.shape[1]} vs {b.shape[1]}.')
  results = []
  for _ in range(num_repeats):
    dirs = rng.standard_normal((a.shape[1], dirs_per_repeat))
    dirs /= np.sqrt(np.sum(np.square(dirs), axis=0, keepdims=True))
    dirs = dirs.astype(np.float32)
    # [direction, sample], so that sorting runs along contiguous memory.
    proj_a = np.sort(dirs.T @ a.T, axis=1)
    proj_b = np.sort(dirs.T @ b.T, axis=1)
    results.append(np.mean(_wasserstein_1d_sorted(proj_a, proj_b)))
  return float(np.mean(results))


def _pyramid_descriptors(
    images: np.ndarray,
    num_levels: int,
    patches_per_image: int,
    patch_size: int,
    rng: np.random.Generator,
    chunk: int = 64,
) -> list[np.ndarray]:
  """Patch descriptors per pyramid level, processing images in chunks (memory)."""
  per_level: list[list[np.ndarray]] = [[] for _ in range(num_levels)]
  for start in range(0, images.shape[0], chunk):
    pyr = laplacian_pyramid(images[start : start + chunk], num_levels)
    for lod, level in enumerate(pyr):
      per_level[lod].append(
          sample_patch_descriptors(level, patches_per_image, patch_size, rng)
      )
  return [np.concatenate(d, axis=0) for d in per_level]


def sliced_wasserstein_distance(
    images,
    target_images,
    *,
    patches_per_image: int = 128,
    patch_size: int = 7,
    min_size: int = 16,
    num_repeats: int = 4,
    dirs_per_repeat: int = 128,
    seed: int = 0,
) -> dict:
  """Multi-scale sliced Wasserstein distance (ProGAN), x1e3.

  Laplacian pyramid per image from full size down to the smallest level
  >= ``min_size`` px (halving the smaller side; the coarsest level is the
  Gaussian residual); ``patches_per_image`` random ``patch_size`` x
  ``patch_size`` x 3 patches per image and level; SWD per level as in
  :func:`sliced_wasserstein`.

  Difference from ProGAN: both descriptor sets are normalised with the
  per-channel mean and std of the *target* (real) descriptors of that level,
  not each with its own statistics -- per-set normalisation would hide
  global colour and contrast shifts of ``images``.

  ``images`` and ``target_images`` may have different N (the 1-D Wasserstein
  distances then compare quantile functions exactly), but must have the same
  H x W. Deterministic for a given ``seed``; the target descriptors and the
  projection directions depend only on the target set and the seed, and two
  sets of the same shape get the same patch positions (so identical sets give
  exactly 0).

  Returns ``{"levels": [finest, ..., coarsest], "mean": average}``, x1e3.
  """
  images = as_image_batch(images, 'images')
  target_images = as_image_batch(target_images, 'target_images')
  if images.shape[1:3] != target_images.shape[1:3]:
    raise ValueError(
        'images and target_images must have the same height and width for SWD, got '
        f'{images.shape[1:3]} and {target_images.shape[1:3]}; resize them to a common '
        'size before calling sliced_wasserstein_distance.'
    )
  if patch_size < 1 or patch_size % 2 == 0:
    raise ValueError(f'patch_size must be a positive odd number, got {patch_size}.')
  if min_size < patch_size:
    raise ValueError(f'min_size ({min_size}) must be >= patch_size ({patch_size}).')
  height, width = images.shape[1:3]
  if min(height, width) < min_size:
    raise ValueError(
        f'Images of size {height}x{width} are smaller than min_size={min_size} px; '
        'SWD needs at least one pyramid level of min_size px.'
    )
  num_levels = _num_pyramid_levels(height, width, min_size)

  patch_seq, dir_seq = np.random.SeedSequence(seed).spawn(2)
  desc_fake = _pyramid_descriptors(
      images, num_levels, patches_per_image, patch_size, np.random.default_rng(patch_seq)
  )
  desc_real = _pyramid_descriptors(
      target_images, num_levels, patches_per_image, patch_size, np.random.default_rng(patch_seq)
  )
  dir_rng = np.random.default_rng(dir_seq)
  dists = []
  for real, fake in zip(desc_real, desc_fake):
    mean = np.mean(real, axis=(0, 1, 2), keepdims=True)
    std = np.std(real, axis=(0, 1, 2), keepdims=True)
    std = np.maximum(std, 1e-8)  # constant target channel: avoid division by 0
    real_n = ((real - mean) / std).reshape(real.shape[0], -1)
    fake_n = ((fake - mean) / std).reshape(fake.shape[0], -1)
    dists.append(
        1e3 * sliced_wasserstein(real_n, fake_n, num_repeats, dirs_per_repeat, dir_rng)
    )
  return {'levels': [float(d) for d in dists], 'mean': float(np.mean(dists))}
