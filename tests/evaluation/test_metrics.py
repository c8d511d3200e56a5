"""Tests for cyclegan_tf.evaluation.metrics: SWD, paired metrics, FID / KID maths (small sizes)."""


import numpy as np
import pytest
import scipy.ndimage
import scipy.stats

from cyclegan_tf.evaluation import metrics as M
from cyclegan_tf.evaluation import sliced_wasserstein as SW


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _textures(n, size=64, seed=0):
  """Multi-scale smooth noise textures in [-1, 1] (structure at every pyramid level)."""
  rng = np.random.default_rng(seed)
  img = np.zeros((n, size, size, 3), np.float32)
  for s in (4, 8, 16, 32, 64):
    if s > size:
      break
    noise = rng.standard_normal((n, s, s, 3)).astype(np.float32)
    img += np.kron(noise, np.ones((1, size // s, size // s, 1), np.float32)) * (
        0.075 * (64 / s) ** 0.3
    )
  img = scipy.ndimage.gaussian_filter(img, (0, 1, 1, 0))
  return np.clip(img, -1, 1).astype(np.float32)


@pytest.fixture(scope='module')
def real():
  return _textures(16, seed=0)


@pytest.fixture(scope='module')
def other(real):
  """A second sample from the same distribution as ``real``."""
  return _textures(16, seed=1)


def _per_set_normalised_swd(images, target, seed=0):
  """ProGAN's original variant: each descriptor set normalised by its OWN stats."""
  num_levels = 3  # 64 -> 32 -> 16 px
  rng_dirs = np.random.default_rng(seed + 1)
  pyr_a = SW.laplacian_pyramid(images, num_levels)
  pyr_b = SW.laplacian_pyramid(target, num_levels)
  dists = []
  for lvl_a, lvl_b in zip(pyr_a, pyr_b):
    descs = []
    for lvl in (lvl_a, lvl_b):
      d = SW.sample_patch_descriptors(lvl, 128, 7, np.random.default_rng(seed))
      d = (d - d.mean(axis=(0, 1, 2))) / d.std(axis=(0, 1, 2))
      descs.append(d.reshape(d.shape[0], -1))
    dists.append(1e3 * SW.sliced_wasserstein(descs[0], descs[1], 4, 128, rng_dirs))
  return float(np.mean(dists))


# ---------------------------------------------------------------------------
# Laplacian pyramid / SWD
# ---------------------------------------------------------------------------


def test_laplacian_pyramid_shapes_and_reconstruction():
  x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
  pyr = SW.laplacian_pyramid(x, 3)
  assert [p.shape for p in pyr] == [(2, 64, 64, 3), (2, 32, 32, 3), (2, 16, 16, 3)]
  rec = pyr[-1]
  for level in pyr[-2::-1]:
    rec = SW._pyr_up(rec, level.shape[1:3]) + level
  np.testing.assert_allclose(rec, x, atol=1e-5)
  # Odd sizes: 33 -> 17, upsampled 34 is cropped to 33.
  y = x[:, :33, :33]
  pyr = SW.laplacian_pyramid(y, 2)
  assert [p.shape[1] for p in pyr] == [33, 17]
  np.testing.assert_allclose(SW._pyr_up(pyr[1], (33, 33)) + pyr[0], y, atol=1e-5)


def test_pyr_down_matches_progan_2d_filter():
  """Separable filtering equals ProGAN's 5x5 [1,4,6,4,1]/16 outer-product filter."""
  x = np.random.default_rng(1).standard_normal((2, 20, 20, 3)).astype(np.float32)
  k1 = np.array([1, 4, 6, 4, 1], np.float32) / 16
  k2 = np.outer(k1, k1)
  ref = scipy.ndimage.convolve(x, k2[None, :, :, None], mode='mirror')[:, ::2, ::2, :]
  np.testing.assert_allclose(SW._pyr_down(x), ref, atol=1e-6)


def test_sliced_wasserstein_1d_matches_scipy_for_unequal_sizes():
  rng = np.random.default_rng(2)
  a = rng.standard_normal(37)
  b = rng.standard_normal(53) * 1.5 + 0.4
  # A single direction in 1-D is +-1, and W1 is sign invariant.
  got = SW.sliced_wasserstein(a[:, None], b[:, None], 2, 3, rng)
  assert got == pytest.approx(scipy.stats.wasserstein_distance(a, b), rel=1e-5)
  c = rng.standard_normal(53)
  got = SW.sliced_wasserstein(c[:, None], b[:, None], 1, 1, rng)
  assert got == pytest.approx(scipy.stats.wasserstein_distance(c, b), rel=1e-5)
  # Many rows at once (the unequal-size path works in row chunks).
  u = np.sort(rng.standard_normal((40, 20)), axis=1)
  v = np.sort(rng.standard_normal((40, 31)) + 0.2, axis=1)
  expected = [scipy.stats.wasserstein_distance(u[j], v[j]) for j in range(40)]
  np.testing.assert_allclose(SW._wasserstein_1d_sorted(u, v), expected, rtol=1e-9)


def test_swd_identical_vs_colour_shift(real):
  ident = SW.sliced_wasserstein_distance(real, real)
  shifted = real.copy()
  shifted[..., 0] += 0.3
  shift = SW.sliced_wasserstein_distance(shifted, real)
  assert len(ident['levels']) == len(shift['levels']) == 3  # 64, 32, 16 px
  assert shift['mean'] == pytest.approx(np.mean(shift['levels']))
  assert ident['mean'] < 1e-3 * shift['mean']
  assert shift['mean'] > 100.0
  # A constant shift lives only in the Gaussian residual: detail levels unchanged.
  assert max(shift['levels'][:-1]) < 1.0
  assert shift['levels'][-1] > 300.0


def test_swd_blur_hits_fine_levels_more(real):
  blurred = scipy.ndimage.gaussian_filter(real, (0, 1.0, 1.0, 0))
  res = SW.sliced_wasserstein_distance(blurred, real)['levels']
  assert res[0] > 100.0
  assert res[0] > 3.0 * res[-1]
  assert res[0] > res[1] > res[2]


def test_swd_target_normalisation_exposes_global_shift(real, other):
  """Per-channel contrast + colour change: hidden by per-set normalisation, not by ours."""
  transformed = other * 0.5 + np.array([0.3, 0.0, -0.2], np.float32)

  ours_same = SW.sliced_wasserstein_distance(other, real)['mean']
  ours_shift = SW.sliced_wasserstein_distance(transformed, real)['mean']
  assert ours_shift > 3.0 * ours_same

  per_set_same = _per_set_normalised_swd(other, real)
  per_set_shift = _per_set_normalised_swd(transformed, real)
  # Per-set normalisation removes any per-channel affine change entirely.
  assert per_set_shift == pytest.approx(per_set_same, rel=1e-3)
  assert ours_shift > 3.0 * per_set_shift


def test_swd_deterministic_and_seed_dependent(real, other):
  a = SW.sliced_wasserstein_distance(other, real, seed=3)
  b = SW.sliced_wasserstein_distance(other, real, seed=3)
  c = SW.sliced_wasserstein_distance(other, real, seed=4)
  assert a == b
  assert a['levels'] != c['levels']


def test_swd_different_set_sizes(real, other):
  res = SW.sliced_wasserstein_distance(other[:5], real)
  assert len(res['levels']) == 3
  assert np.all(np.isfinite(res['levels']))
  shifted = other[:5].copy()
  shifted[..., 2] -= 0.4
  assert SW.sliced_wasserstein_distance(shifted, real)['mean'] > 2 * res['mean']


def test_swd_bad_sizes_raise(real):
  with pytest.raises(ValueError, match='resize'):
    SW.sliced_wasserstein_distance(real[:, :32, :32], real)
  small = real[:, :12, :12]
  with pytest.raises(ValueError, match='min_size'):
    SW.sliced_wasserstein_distance(small, small)
  with pytest.raises(ValueError, match=r'\[N, H, W, 3\]'):
    SW.sliced_wasserstein_distance(real[..., :1], real[..., :1])


def test_swd_level_count_for_non_power_of_two():
  x = _textures(2, size=64, seed=5)[:, :48, :48]
  assert len(SW.sliced_wasserstein_distance(x, x, patches_per_image=8)['levels']) == 2


# ---------------------------------------------------------------------------
# Paired metrics
# ---------------------------------------------------------------------------


def _signed_delta(shape, magnitude, seed):
  signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=shape)
  return magnitude * signs


def test_psnr_known_mse():
  ref = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 8, 8, 3))
  delta = np.concatenate(
      [_signed_delta((1, 8, 8, 3), 0.1, 1), _signed_delta((1, 8, 8, 3), 0.2, 2)]
  )
  expected = np.mean([10 * np.log10(4.0 / 0.01), 10 * np.log10(4.0 / 0.04)])
  assert M.psnr(ref + delta, ref) == pytest.approx(expected, abs=1e-6)
  assert M.psnr(ref[:1] + delta[:1], ref[:1], data_range=1.0) == pytest.approx(
      10 * np.log10(1.0 / 0.01), abs=1e-6
  )


def test_psnr_identical_images():
  ref = np.random.default_rng(0).uniform(-1, 1, (3, 8, 8, 3))
  assert M.psnr(ref, ref) == float('inf')
  # Identical pairs are excluded from the mean (documented convention).
  images = ref.copy()
  images[1] += _signed_delta((8, 8, 3), 0.1, 3)
  assert M.psnr(images, ref) == pytest.approx(10 * np.log10(4.0 / 0.01), abs=1e-6)


def test_ssim():
  x = _textures(4, size=32, seed=0)
  assert M.ssim(x, x) == pytest.approx(1.0, abs=1e-6)
  rng = np.random.default_rng(1)
  low = M.ssim(np.clip(x + 0.05 * rng.standard_normal(x.shape), -1, 1), x)
  high = M.ssim(np.clip(x + 0.3 * rng.standard_normal(x.shape), -1, 1), x)
  assert high < low < 0.99
  # Images smaller than the 11 px filter still work.
  tiny = x[:, :8, :8]
  assert M.ssim(tiny, tiny) == pytest.approx(1.0, abs=1e-6)
  assert M.ssim(np.clip(tiny + 0.3 * rng.standard_normal(tiny.shape), -1, 1), tiny) < 0.9


def test_l1_and_cycle_l1():
  ref = np.zeros((2, 4, 4, 3), np.float32)
  img = ref.copy()
  img[0] = 0.25  # half of all values off by 0.25
  assert M.l1(img, ref) == pytest.approx(0.125)
  assert M.cycle_l1(ref, img) == pytest.approx(0.125)
  with pytest.raises(ValueError):
    M.l1(img[:1], ref)


# ---------------------------------------------------------------------------
# FID / KID
# ---------------------------------------------------------------------------


def _reference_fid(a, b):
  """Independent route: Tr sqrt(Sa Sb) = Tr sqrt(sqrt(Sa) Sb sqrt(Sa)) (symmetric PSD)."""
  mu_a, mu_b = a.mean(0), b.mean(0)
  sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  w, v = np.linalg.eigh(sa)
  sqrt_sa = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  inner = np.linalg.eigvalsh(sqrt_sa @ sb @ sqrt_sa)
  tr_sqrt = np.sum(np.sqrt(np.clip(inner, 0, None)))
  return float(np.sum((mu_a - mu_b) ** 2) + np.trace(sa) + np.trace(sb) - 2 * tr_sqrt)


@pytest.fixture(scope='module')
def gauss():
  rng = np.random.default_rng(0)
  return rng.standard_normal((500, 64)), rng.standard_normal((500, 64))


def test_frechet_distance_matches_reference(gauss):
  a, b = gauss
  b = b * 1.3 + np.linspace(-0.5, 0.5, 64)
  assert M.frechet_distance(a, b) == pytest.approx(_reference_fid(a, b), rel=1e-6)


def test_frechet_distance_gaussian_cases(gauss):
  a, b = gauss
  assert abs(M.frechet_distance(a, a)) < 1e-6
  shift = np.full(64, 1.0)  # |m|^2 = 64
  # Same samples shifted: covariances equal, FID = |m|^2 exactly.
  assert M.frechet_distance(a, a + shift) == pytest.approx(64.0, rel=1e-6)
  # Independent samples: FID(a, b + m) - FID(a, b) ~ |m|^2 (estimation bias cancels).
  same = M.frechet_distance(a, b)
  shifted = M.frechet_distance(a, b + shift)
  assert same < 8.0  # ~ d^2 / (2 n) = 4.1 of covariance-estimation bias
  assert shifted - same == pytest.approx(64.0, rel=0.05)


def _reference_kid(x, y):
  """Straightforward loops: unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3."""
  m, d = x.shape
  k = lambda u, v: (float(np.dot(u, v)) / d + 1.0) ** 3  # noqa: E731
  s_xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
  s_yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
  s_xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
  return s_xx / (m * (m - 1)) + s_yy / (m * (m - 1)) - 2 * s_xy / (m * m)


def test_kid_matches_reference_estimator():
  rng = np.random.default_rng(3)
  x = rng.standard_normal((40, 16))
  y = rng.standard_normal((40, 16)) * 1.2 + 0.3
  # subset_size >= n: every subset is a permutation of the whole set.
  mean, std = M.kernel_inception_distance(x, y, num_subsets=3, subset_size=1000)
  assert mean == pytest.approx(_reference_kid(x, y), abs=1e-6)
  assert std < 1e-9


def test_kid_same_vs_shifted(gauss):
  a, b = gauss
  same, _ = M.kernel_inception_distance(a, b, num_subsets=5, subset_size=200)
  shifted, shifted_std = M.kernel_inception_distance(a, b + 0.5, num_subsets=5, subset_size=200)
  assert shifted > 0.3
  assert abs(same) < 0.05 * shifted
  assert shifted_std > 0  # subsets of 200 out of 500 differ
  # Clipping to the smaller set and seeding.
  r1 = M.kernel_inception_distance(a[:30], b, num_subsets=2, subset_size=1000, seed=1)
  r2 = M.kernel_inception_distance(a[:30], b, num_subsets=2, subset_size=1000, seed=1)
  assert r1 == r2 and np.isfinite(r1[0])
  with pytest.raises(ValueError):
    M.kernel_inception_distance(a[:1], b)


def test_fid_kid_with_custom_extractor():
  """fid_kid batches through any extractor; results do not depend on batch_size."""
  real = _textures(12, size=16, seed=0)
  fake = real[::-1] * 0.5

  def extractor(batch):
    return batch.reshape(batch.shape[0], 4, 4, 4, 4, 3).mean(axis=(2, 4)).reshape(
        batch.shape[0], -1
    )

  res = M.fid_kid(real, fake, extractor, batch_size=5)
  res_big = M.fid_kid(real, fake, extractor, batch_size=64)
  assert set(res) == {'fid', 'kid', 'kid_std'}
  assert res['fid'] == pytest.approx(
      M.frechet_distance(extractor(real), extractor(fake)), rel=1e-9
  )
  assert res == pytest.approx(res_big, rel=1e-9)
  assert res['fid'] > 0.01
