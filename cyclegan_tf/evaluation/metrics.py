"""Evaluation metrics for CycleGAN.

Plain functions on numpy arrays (TensorFlow only where a network is
involved).  Unless stated otherwise, images are float arrays in [-1, 1]
shaped [N, H, W, 3].

Contents
--------
* Sliced Wasserstein distance on Laplacian-pyramid patches (the ProGAN
  recipe, Karras et al. 2018) -- :func:`sliced_wasserstein_distance`, with the
  building blocks :func:`laplacian_pyramid`, :func:`sample_patch_descriptors`
  and :func:`sliced_wasserstein`.
* Paired metrics: :func:`cycle_l1`, :func:`l1`, :func:`psnr`, :func:`ssim`.
* FID / KID from features: :func:`frechet_distance`,
  :func:`kernel_inception_distance`, :func:`fid_kid` (features from any extractor, e.g.
  inception.py's).

The networks that produce features or scores live in inception.py and domain_classifier.py.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.linalg
import scipy.ndimage
from absl import logging

# TensorFlow is imported lazily (ssim only), so the numpy metrics stay cheap to import.


__all__ = [
    'laplacian_pyramid',
    'sample_patch_descriptors',
    'sliced_wasserstein',
    'sliced_wasserstein_distance',
    'cycle_l1',
    'l1',
    'psnr',
    'ssim',
    'frechet_distance',
    'kernel_inception_distance',
    'fid_kid',
]


def as_image_batch(images, name: str) -> np.ndarray:
  arr = np.asarray(images)
  if arr.ndim != 4 or arr.shape[-1] != 3:
    raise ValueError(f'{name} must be shaped [N, H, W, 3], got shape {arr.shape}.')
  if arr.shape[0] == 0:
    raise ValueError(f'{name} is empty.')
  return arr


def _check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
  if a.shape != b.shape:
    raise ValueError(
        f'{name_a} and {name_b} must have the same shape, got {a.shape} and {b.shape}.'
    )


# ---------------------------------------------------------------------------
# Sliced Wasserstein distance (ProGAN recipe, target-set normalisation)
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# Paired metrics
# ---------------------------------------------------------------------------


def l1(images, reference) -> float:
  """Mean absolute error over all pixels and images."""
  a = np.asarray(images, dtype=np.float64)
  b = np.asarray(reference, dtype=np.float64)
  _check_same_shape(a, b, 'images', 'reference')
  return float(np.mean(np.abs(a - b)))


def cycle_l1(real, reconstructed) -> float:
  """Cycle-consistency error: mean |real - reconstructed|."""
  return l1(reconstructed, real)


def psnr(images, reference, data_range: float = 2.0) -> float:
  """Mean over images of the per-image PSNR in dB.

  Per image: ``10 * log10(data_range**2 / MSE)``, MSE over H, W, C
  (``data_range`` = 2.0 for [-1, 1] images).

  Identical image pairs (MSE == 0) have infinite PSNR. Convention: such pairs
  are *excluded* from the mean, i.e. the result is the mean over the pairs
  with finite PSNR; if all pairs are identical the result is ``inf``.
  """
  a = np.asarray(images, dtype=np.float64)
  b = np.asarray(reference, dtype=np.float64)
  _check_same_shape(a, b, 'images', 'reference')
  if a.ndim < 2:
    raise ValueError(f'Expected a batch of images [N, ...], got shape {a.shape}.')
  mse = np.mean(np.square(a - b), axis=tuple(range(1, a.ndim)))
  finite = mse > 0
  if not np.any(finite):
    return float('inf')
  return float(np.mean(10.0 * np.log10(data_range**2 / mse[finite])))


def ssim(images, reference) -> float:
  """Mean SSIM (``tf.image.ssim``, max_val=2.0 for [-1, 1] images).

  Filter size 11 (sigma 1.5); images smaller than 11 px use a filter the
  size of their smaller side.
  """
  import tensorflow as tf

  a = as_image_batch(images, 'images').astype(np.float32)
  b = as_image_batch(reference, 'reference').astype(np.float32)
  _check_same_shape(a, b, 'images', 'reference')
  filter_size = int(min(11, a.shape[1], a.shape[2]))
  values = tf.image.ssim(
      tf.constant(a), tf.constant(b), max_val=2.0, filter_size=filter_size
  )
  return float(np.mean(values.numpy()))


# ---------------------------------------------------------------------------
# FID / KID from features
# ---------------------------------------------------------------------------


def _as_features(feat, name: str) -> np.ndarray:
  arr = np.asarray(feat, dtype=np.float64)
  if arr.ndim != 2:
    raise ValueError(f'{name} must be shaped [N, D], got {arr.shape}.')
  return arr


def frechet_distance(feat_a, feat_b, eps: float = 1e-6) -> float:
  """Fréchet distance between Gaussians fitted to two feature sets [N, D].

  ``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 sqrt(S_a S_b))`` as in pytorch-fid:
  if ``sqrtm`` is not finite, ``eps * I`` is added to both covariances;
  imaginary parts of the matrix square root (numerical noise) are discarded
  (a warning is logged if they are not tiny). Not clipped at 0: identical
  sets can give tiny negative values.
  """
  a = _as_features(feat_a, 'feat_a')
  b = _as_features(feat_b, 'feat_b')
  if a.shape[1] != b.shape[1]:
    raise ValueError(f'Feature dimensions differ: {a.shape[1]} vs {b.shape[1]}.')
  if a.shape[0] < 2 or b.shape[0] < 2:
    raise ValueError('frechet_distance needs at least 2 samples per set.')
  mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
  sigma_a = np.atleast_2d(np.cov(a, rowvar=False))
  sigma_b = np.atleast_2d(np.cov(b, rowvar=False))
  diff = mu_a - mu_b

  covmean = scipy.linalg.sqrtm(sigma_a @ sigma_b)
  if not np.isfinite(covmean).all():
    logging.warning(
        'frechet_distance: sqrtm of the covariance product is not finite; '
        'adding %g to the covariance diagonals.', eps
    )
    offset = np.eye(sigma_a.shape[0]) * eps
    covmean = scipy.linalg.sqrtm((sigma_a + offset) @ (sigma_b + offset))
  if np.iscomplexobj(covmean):
    max_imag = float(np.max(np.abs(np.diagonal(covmean).imag)))
    if max_imag > 1e-3:
      logging.warning(
          'frechet_distance: discarding a large imaginary component (%g) of sqrtm.',
          max_imag,
      )
    covmean = covmean.real
  return float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * np.trace(covmean))


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  d = x.shape[1]
  return (x @ y.T / d + 1.0) ** 3


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
  """Unbiased MMD^2 with the cubic polynomial kernel (Binkowski et al. 2018)."""
  m = x.shape[0]
  k_xx = _polynomial_kernel(x, x)
  k_yy = _polynomial_kernel(y, y)
  k_xy = _polynomial_kernel(x, y)
  sum_xx = k_xx.sum() - np.trace(k_xx)
  sum_yy = k_yy.sum() - np.trace(k_yy)
  return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(
    feat_a, feat_b, num_subsets: int = 10, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
  """Kernel Inception distance: (mean, std) of the unbiased MMD^2 over subsets.

  Kernel ``k(x, y) = (x.y / d + 1)^3``; each of ``num_subsets`` subsets draws
  ``subset_size`` samples without replacement from each set
  (``subset_size`` is clipped to the smaller set size). Deterministic for a
  given ``seed``. The std is over subsets (0 when each subset is a whole set).
  """
  a = _as_features(feat_a, 'feat_a')
  b = _as_features(feat_b, 'feat_b')
  if a.shape[1] != b.shape[1]:
    raise ValueError(f'Feature dimensions differ: {a.shape[1]} vs {b.shape[1]}.')
  m = min(subset_size, a.shape[0], b.shape[0])
  if m < 2:
    raise ValueError('kernel_inception_distance needs subsets of at least 2 samples.')
  if num_subsets < 1:
    raise ValueError(f'num_subsets must be >= 1, got {num_subsets}.')
  rng = np.random.default_rng(seed)
  values = []
  for _ in range(num_subsets):
    x = a[rng.choice(a.shape[0], m, replace=False)]
    y = b[rng.choice(b.shape[0], m, replace=False)]
    values.append(_mmd2_unbiased(x, y))
  return float(np.mean(values)), float(np.std(values))


# ---------------------------------------------------------------------------
# FID / KID from a feature extractor
# ---------------------------------------------------------------------------


def fid_kid(
    real_images,
    fake_images,
    extractor: Callable[[np.ndarray], np.ndarray],
    batch_size: int = 32,
    *,
    kid_subsets: int = 10,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> dict:
  """FID and KID between two image sets using ``extractor`` features.

  ``extractor`` is any callable mapping an image batch to features [n, D]
  (e.g. from :func:`inception_feature_extractor`); it is called on chunks of
  ``batch_size`` images. Returns ``{"fid", "kid", "kid_std"}``.
  """
  real = as_image_batch(real_images, 'real_images')
  fake = as_image_batch(fake_images, 'fake_images')

  def features(images):
    return np.concatenate(
        [np.asarray(extractor(images[i : i + batch_size]))
         for i in range(0, images.shape[0], batch_size)],
        axis=0,
    )

  feat_real, feat_fake = features(real), features(fake)
  kid, kid_std = kernel_inception_distance(
      feat_real, feat_fake, num_subsets=kid_subsets, subset_size=kid_subset_size, seed=seed
  )
  return {'fid': frechet_distance(feat_real, feat_fake), 'kid': kid, 'kid_std': kid_std}
