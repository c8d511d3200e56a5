"""Tests for cyclegan_tf.evaluation.inception: Inception-v3 features from a local weights file only."""

import logging
import os

import numpy as np

from cyclegan_tf.evaluation import inception


def test_find_weights_prefers_the_given_path_then_the_keras_cache(tmp_path, monkeypatch, caplog):
  assert inception.find_weights('/some/file.h5') == '/some/file.h5'
  cached = tmp_path / 'models' / inception.INCEPTION_NOTOP_WEIGHTS_FILE
  monkeypatch.setattr(inception, 'keras_cache_candidates', lambda: [str(cached)])
  with caplog.at_level(logging.WARNING):
    assert inception.find_weights('') is None
  assert 'FID/KID skipped' in caplog.text and 'inception_weights' in caplog.text
  cached.parent.mkdir()
  cached.write_bytes(b'x')
  assert inception.find_weights('') == str(cached)


def test_inception_missing_weights_returns_none_and_logs(tmp_path, caplog):
  missing = os.fspath(tmp_path / 'nope.h5')
  with caplog.at_level(logging.WARNING):
    assert inception.inception_feature_extractor(missing) is None
  assert 'FID/KID will be skipped' in caplog.text
  assert inception.INCEPTION_NOTOP_WEIGHTS_FILE in caplog.text


def test_inception_supplied_weights_path(tmp_path):
  """Load weights from a legacy .h5 file (like the official notop file)."""
  import keras  # pylint: disable=g-import-not-at-top

  src = keras.applications.InceptionV3(
      include_top=False, weights=None, input_shape=(299, 299, 3), pooling='avg'
  )
  # Recognisable first-conv kernel, so a silently unloaded model cannot pass.
  conv = next(layer for layer in src.layers if isinstance(layer, keras.layers.Conv2D))
  marker = np.random.default_rng(0).standard_normal(conv.kernel.shape).astype(np.float32)
  conv.kernel.assign(marker)
  path = os.fspath(tmp_path / 'inception_notop.h5')
  src.save(path)  # legacy HDF5; load_weights() reads its model_weights group

  extract = inception.inception_feature_extractor(path)
  assert extract is not None
  for w_src, w_loaded in zip(src.get_weights(), extract.model.get_weights()):
    np.testing.assert_array_equal(w_src, w_loaded)
  images = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  feats = extract(images)
  assert feats.shape == (2, 2048) and feats.dtype == np.float32
  assert np.all(np.isfinite(feats))
