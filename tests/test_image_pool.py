"""The image pool's semantics on one replica: the reference's ImagePool.query, in TF variables.

Per-replica pools under MirroredStrategy: tests/test_distribute.py."""

import numpy as np
import pytest
import tensorflow as tf

from cyclegan_tf import image_pool


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


def test_pool_needs_fixed_image_size():
  with pytest.raises(ValueError, match='pool_size=0'):
    image_pool.ImagePool(5, (None, None, 3))


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
