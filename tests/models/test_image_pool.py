"""The image pool's semantics on one replica: the reference's ImagePool.query, in TF variables,
for images of one size and of varying sizes (stored padded, returned at their own size).

Per-replica pools under MirroredStrategy: tests/training/test_distribute.py."""

import numpy as np
import pytest
import tensorflow as tf

from cyclegan_tf.models import image_pool


def _images(values):
  return tf.constant(np.array(values, np.float32).reshape(-1, 1, 1, 1))


def test_pool_size_zero_returns_input():
  pool = image_pool.ImagePool(0, (1, 1, 1))
  x = _images([1.0, 2.0])
  np.testing.assert_array_equal(pool.query(x, tf.constant([0, 0], tf.int64)), x)


def test_filling_pool_stores_and_returns_new_images():
  pool = image_pool.ImagePool(3, (1, 1, 1))
  out = pool.query(_images([1.0, 2.0]), tf.constant([1, 2], tf.int64))
  np.testing.assert_array_equal(out.numpy().ravel(), [1.0, 2.0])
  out = pool.query(_images([3.0]), tf.constant([1, 3], tf.int64))
  np.testing.assert_array_equal(out.numpy().ravel(), [3.0])
  assert pool.num_images(0) == 3
  np.testing.assert_array_equal(np.sort(pool.images().ravel()), [1.0, 2.0, 3.0])


def test_full_pool_swaps_half_the_time_and_keeps_history():
  pool = image_pool.ImagePool(4, (1, 1, 1))
  pool.query(_images([1.0, 2.0, 3.0, 4.0]), tf.constant([0, 0], tf.int64))
  returned_old, n = 0, 400
  for step in range(n):
    new = 100.0 + step
    before = set(pool.images().ravel().tolist())
    out = float(pool.query(_images([new]), tf.constant([7, step], tf.int64)).numpy().ravel()[0])
    after = set(pool.images().ravel().tolist())
    if out == new:  # returned the new image: the pool is unchanged
      assert after == before
    else:  # returned a stored image, and the new one took its place
      returned_old += 1
      assert out in before and new in after and out not in after
      assert len(after) == 4
  # p = 0.5 per image: 400 draws fall within 0.5 +- 4 sigma (sigma = 0.025).
  assert 0.4 < returned_old / n < 0.6


def test_query_is_deterministic_for_a_seed():
  def run():
    pool = image_pool.ImagePool(2, (1, 1, 1))
    outs = [pool.query(_images([float(i), float(i) + 0.5]), tf.constant([3, i], tf.int64))
            for i in range(20)]
    return np.concatenate([o.numpy().ravel() for o in outs])
  np.testing.assert_array_equal(run(), run())


def test_pool_runs_inside_tf_function_and_checkpoints(tmp_path):
  pool = image_pool.ImagePool(2, (2, 2, 3))
  query = tf.function(pool.query)
  query(tf.ones((2, 2, 2, 3)), tf.constant([0, 0], tf.int64))
  path = tf.train.Checkpoint(pool=pool).save(str(tmp_path / 'ckpt'))
  restored = image_pool.ImagePool(2, (2, 2, 3))
  tf.train.Checkpoint(pool=restored).restore(path).assert_consumed()
  assert restored.num_images(0) == 2
  np.testing.assert_array_equal(restored.images(), np.ones((2, 2, 2, 3)))


def test_fixed_pool_checkpoint_keys_are_images_and_num_images(tmp_path):
  pool = image_pool.ImagePool(2, (2, 2, 3))
  path = tf.train.Checkpoint(pool=pool).save(str(tmp_path / 'ckpt'))
  keys = {name for name, _ in tf.train.list_variables(path) if name.startswith('pool/')}
  assert keys == {'pool/.ATTRIBUTES/images', 'pool/.ATTRIBUTES/num_images'}
  assert len(pool.variables) == 2


def test_pool_of_varying_sizes_needs_max_shape():
  with pytest.raises(ValueError, match='max_shape'):
    image_pool.ImagePool(5, (None, None, 3))
  with pytest.raises(ValueError, match='does not fit'):
    image_pool.ImagePool(5, (None, None, 3), max_shape=(8, 8, 1))
  image_pool.ImagePool(0, (None, None, 3))  # no pool, no storage


def _sized_image(value, h, w, c=2):
  """A [1, h, w, c] image whose pixels differ (a crop at the wrong offset would show)."""
  pixels = np.arange(h * w * c, dtype=np.float32).reshape(1, h, w, c) / 100.0
  return tf.constant(value + pixels)


def _stored(pool, replica=0):
  """The replica's valid stored images, each cropped to its stored size."""
  return [image[:h, :w] for image, (h, w) in
          zip(pool.images(replica), pool.sizes(replica))][:pool.num_images(replica)]


def test_varying_pool_returns_images_at_their_own_sizes():
  pool = image_pool.ImagePool(3, (None, None, 2), max_shape=(6, 8, 2))
  query = tf.function(pool.query, reduce_retracing=True, autograph=False)
  sizes = [(4, 8), (6, 4)]  # two aspect ratios, each smaller than max_shape on one side
  filled = [_sized_image(10.0 * i, *sizes[i % 2]) for i in range(3)]
  for i, image in enumerate(filled):
    out = query(image, tf.constant([1, i], tf.int64))
    np.testing.assert_array_equal(out.numpy(), image.numpy())  # filling: the new image back
  assert pool.num_images(0) == 3
  np.testing.assert_array_equal(pool.sizes(), [[4, 8], [6, 4], [4, 8]])
  for got, want in zip(_stored(pool), filled):
    np.testing.assert_array_equal(got, want.numpy()[0])
  padding = pool.images()[1].copy()
  padding[:6, :4] = 0.0
  assert not padding.any()  # stored zero-padded at the top left
  returned_old = 0
  for step in range(3, 43):
    new = _sized_image(10.0 * step, *sizes[step % 2])
    before = _stored(pool)
    out = query(new, tf.constant([1, step], tf.int64)).numpy()
    after = _stored(pool)
    if out.shape == new.shape and np.array_equal(out, new.numpy()):
      assert all(np.array_equal(a, b) for a, b in zip(after, before))
    else:  # a stored image exactly as stored (its own size), and the new one took its slot
      returned_old += 1
      slot, = [k for k, b in enumerate(before) if b.shape == out.shape[1:] and
               np.array_equal(b, out[0])]
      np.testing.assert_array_equal(after[slot], new.numpy()[0])
      assert all(np.array_equal(after[k], before[k]) for k in range(3) if k != slot)
  assert 0 < returned_old < 40
  assert query.experimental_get_tracing_count() <= 2  # one trace for any size


def test_varying_pool_draws_like_a_fixed_pool():
  """The same seeds pick the same slots and swaps whatever the storage: images of one size
  through a varying pool come back as through a fixed one."""
  fixed = image_pool.ImagePool(2, (3, 3, 2))
  varying = image_pool.ImagePool(2, (None, None, 2), max_shape=(5, 4, 2))
  for step in range(20):
    image = _sized_image(float(step), 3, 3)
    seed = tf.constant([4, step], tf.int64)
    np.testing.assert_array_equal(varying.query(image, seed), fixed.query(image, seed))


def test_varying_pool_refuses_batches_and_images_larger_than_max_shape():
  pool = image_pool.ImagePool(2, (None, None, 1), max_shape=(4, 4, 1))
  with pytest.raises(ValueError, match='batch 1'):
    pool.query(tf.zeros((2, 4, 4, 1)), tf.constant([0, 0], tf.int64))
  with pytest.raises(tf.errors.InvalidArgumentError, match='larger than'):
    pool.query(tf.zeros((1, 4, 6, 1)), tf.constant([0, 0], tf.int64))


def test_varying_pool_checkpoints_its_sizes(tmp_path):
  pool = image_pool.ImagePool(3, (None, None, 2), max_shape=(6, 8, 2))
  images = [_sized_image(1.0, 4, 8), _sized_image(2.0, 6, 4)]
  for i, image in enumerate(images):
    pool.query(image, tf.constant([0, i], tf.int64))
  path = tf.train.Checkpoint(pool=pool).save(str(tmp_path / 'ckpt'))
  restored = image_pool.ImagePool(3, (None, None, 2), max_shape=(6, 8, 2))
  tf.train.Checkpoint(pool=restored).restore(path).assert_consumed()
  assert restored.num_images(0) == 2
  np.testing.assert_array_equal(restored.sizes()[:2], [[4, 8], [6, 4]])
  for got, want in zip(_stored(restored), images):
    np.testing.assert_array_equal(got, want.numpy()[0])
  other = image_pool.ImagePool(3, (None, None, 2), max_shape=(8, 8, 2))  # another storage
  other.query(_sized_image(0.0, 4, 4), tf.constant([0, 0], tf.int64))
  tf.train.Checkpoint(pool=other).restore(path)
  assert other.num_images(0) == 0


def test_checkpoint_of_another_shape_restores_an_empty_pool(tmp_path):
  pool = image_pool.ImagePool(2, (2, 2, 3))
  pool.query(tf.ones((2, 2, 2, 3)), tf.constant([0, 0], tf.int64))
  path = tf.train.Checkpoint(pool=pool).save(str(tmp_path / 'ckpt'))
  bigger = image_pool.ImagePool(3, (2, 2, 3))
  bigger.query(tf.ones((1, 2, 2, 3)), tf.constant([0, 0], tf.int64))  # one image stored
  two_replicas = image_pool.ImagePool(2, (2, 2, 3), replicas=2)
  two_replicas.variables[1].assign([1, 2])  # counts as if each replica had stored images
  for other in (bigger, two_replicas):
    tf.train.Checkpoint(pool=other).restore(path)
    np.testing.assert_array_equal(other.num_images(), np.zeros(other.replicas))
