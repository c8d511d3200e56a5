"""Tests for cyclegan_tf.evaluation.domain_classifier: the CNN, its training, and the run's cached copy."""

import os

import keras
import numpy as np
import pytest

from conftest import tiny_config
from cyclegan_tf.evaluation import domain_classifier
from cyclegan_tf.data import input_pipeline
from cyclegan_tf import run_dir


def _tinted_noise(n, tint, size, seed):
  rng = np.random.default_rng(seed)
  x = rng.uniform(-0.6, 0.6, (n, size, size, 3)).astype(np.float32)
  return np.clip(x + np.asarray(tint, np.float32), -1, 1)


_RED, _BLUE = [0.2, 0.0, -0.2], [-0.2, 0.0, 0.2]


@pytest.fixture(scope='module')
def classifier():
  return domain_classifier.train_domain_classifier(
      _tinted_noise(64, _RED, 32, 0), _tinted_noise(64, _BLUE, 32, 1), epochs=10
  )


def test_domain_classifier_size_and_dtype():
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy('mixed_float16')
  try:
    model = domain_classifier.build_domain_classifier(64)
  finally:
    keras.mixed_precision.set_global_policy(previous)
  assert model.count_params() < 100_000
  assert model.output_shape == (None, 1)
  assert all(layer.compute_dtype == 'float32' for layer in model.layers[1:])


def test_domain_classifier_separates_domains(classifier):
  held_a = _tinted_noise(32, _RED, 32, 2)
  held_b = _tinted_noise(32, _BLUE, 32, 3)
  assert domain_classifier.classifier_share(classifier, held_a, 'A') > 0.9
  assert domain_classifier.classifier_share(classifier, held_b, 'B') > 0.9
  scores = domain_classifier.domain_scores(classifier, np.concatenate([held_a, held_b]))
  assert scores.shape == (64,)
  assert np.all((scores >= 0) & (scores <= 1))
  assert domain_classifier.classifier_share(classifier, held_a, 'a') + domain_classifier.classifier_share(
      classifier, held_a, 'B'
  ) == pytest.approx(1.0)
  with pytest.raises(ValueError):
    domain_classifier.classifier_share(classifier, held_a, 'C')
  with pytest.raises(ValueError, match='resize'):
    domain_classifier.domain_scores(classifier, _tinted_noise(2, _RED, 16, 4))


def test_domain_classifier_save_load_round_trip(classifier, tmp_path):
  path = os.fspath(tmp_path / 'domain_clf.keras')
  classifier.save(path)
  loaded = keras.models.load_model(path)
  images = np.concatenate([_tinted_noise(8, _RED, 32, 5), _tinted_noise(8, _BLUE, 32, 6)])
  np.testing.assert_array_equal(
      domain_classifier.domain_scores(loaded, images), domain_classifier.domain_scores(classifier, images)
  )


def test_load_or_train_caches_in_the_run_and_reuses(tmp_path):
  config = tiny_config(**{'data.synthetic_train_size': 8})
  pipeline = input_pipeline.InputPipeline(config)
  workdir = str(tmp_path / 'run')
  first = domain_classifier.load_or_train(workdir, pipeline, 32, train_images=8, epochs=1)
  path = run_dir.classifier_path(workdir)
  assert os.path.isfile(path) and os.path.isfile(path.replace('.keras', '.json'))
  mtime = os.stat(path).st_mtime_ns
  again = domain_classifier.load_or_train(workdir, pipeline, 32, train_images=8, epochs=1)
  assert os.stat(path).st_mtime_ns == mtime
  images = domain_classifier.as_input(pipeline.load_test_arrays('A'), 32)
  np.testing.assert_array_equal(domain_classifier.domain_scores(first, images),
                                domain_classifier.domain_scores(again, images))
  other = domain_classifier.load_or_train(workdir, pipeline, 16, train_images=8, epochs=1)
  assert other.input_shape[1:] == (16, 16, 3)  # another size: trained anew


def test_input_size_and_gray_inputs():
  assert domain_classifier.input_size((256, 300, 3)) == 128
  assert domain_classifier.input_size((64, 48, 1)) == 48
  assert domain_classifier.input_size((8, 8, 3)) == 16
  gray = np.zeros((2, 20, 24, 1), np.float32)
  assert domain_classifier.as_input(gray, 16).shape == (2, 16, 16, 3)
