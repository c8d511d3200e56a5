"""Evaluation metrics for CycleGAN.

Plain functions on numpy arrays (TensorFlow only where a network is
involved).  Unless stated otherwise, images are float arrays in [-1, 1]
shaped [N, H, W, 3].

Contents
--------
* Paired metrics: :func:`cycle_l1`, :func:`l1`, :func:`psnr`, :func:`ssim`.
* FID / KID from features: :func:`frechet_distance`,
  :func:`kernel_inception_distance`, :func:`fid_kid` (features from any extractor, e.g.
  inception.py's).

The sliced Wasserstein distance is in sliced_wasserstein.py; the networks that produce
features or scores live in inception.py and domain_classifier.py.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.linalg
import scipy.ndimage
from absl import logging

# TensorFlow is imported lazily (ssim only), so the numpy metrics stay cheap to import.


__all__ = [
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
