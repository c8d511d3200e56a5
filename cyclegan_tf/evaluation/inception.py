"""Inception-v3 pool features for FID / KID, from a local weights file (never downloaded).

The features are keras.applications.InceptionV3(include_top=False, pooling="avg") on 299x299
inputs, the standard FID network's Keras port; images in [-1, 1] are InceptionV3's own input
range. find_weights looks for the no-top file at config.eval.inception_weights or in Keras'
cache (~/.keras/models, $KERAS_HOME/models); without it FID / KID are skipped with a message
saying where to put it.
"""

import os
from typing import Callable, Optional

from absl import logging
import numpy as np

from cyclegan_tf.evaluation import metrics

INCEPTION_NOTOP_WEIGHTS_FILE = 'inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5'
INCEPTION_NOTOP_WEIGHTS_URL = (
    'https://storage.googleapis.com/tensorflow/keras-applications/'
    'inception_v3/' + INCEPTION_NOTOP_WEIGHTS_FILE
)


def keras_cache_candidates():
  """Where Keras keeps downloaded weights: $KERAS_HOME/models, ~/.keras/models, /tmp/.keras."""
  homes = []
  if os.environ.get('KERAS_HOME'):
    homes.append(os.environ['KERAS_HOME'])
  homes += [os.path.join(os.path.expanduser('~'), '.keras'), os.path.join('/tmp', '.keras')]
  return [os.path.join(h, 'models', INCEPTION_NOTOP_WEIGHTS_FILE) for h in homes]


def find_weights(path=''):
  """The weights file to use: `path` when given, else the first in Keras' cache, else None
  (logged, with how to enable FID / KID)."""
  if path:
    return path
  candidates = keras_cache_candidates()
  found = next((p for p in candidates if os.path.isfile(p)), None)
  if found is None:
    logging.warning(
        'FID/KID skipped: no InceptionV3 weights (config.eval.inception_weights is empty and '
        'the Keras cache (%s) has no %s). Download %s and pass '
        '--config.eval.inception_weights=PATH (or put it in the cache) to get fid_* / kid_* '
        'metrics.', ', '.join(os.path.dirname(p) for p in candidates),
        INCEPTION_NOTOP_WEIGHTS_FILE, INCEPTION_NOTOP_WEIGHTS_URL)
  return found


def _skip_warning(reason: str) -> None:
  logging.warning(
      '%s -- FID/KID will be skipped. To enable them, download %s (%s) and pass its '
      'local path as the Inception weights path (or place it in ~/.keras/models/ so '
      "that Keras' default 'imagenet' weights load offline).",
      reason,
      INCEPTION_NOTOP_WEIGHTS_FILE,
      INCEPTION_NOTOP_WEIGHTS_URL,
  )


def inception_feature_extractor(
    weights_path: Optional[str] = None,
) -> Optional[Callable[[np.ndarray], np.ndarray]]:
  """InceptionV3 pool features for [-1, 1] images, or None if no weights.

  Builds ``keras.applications.InceptionV3(include_top=False, pooling="avg")``
  on 299x299 inputs. With ``weights_path``, that file is loaded (the notop
  file ``inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5``); a
  nonexistent path logs a warning and returns None. With ``None``, Keras'
  default ``weights="imagenet"`` is tried (downloads, or uses the cache in
  ~/.keras/models); if that fails (e.g. no network) a warning is logged and
  None is returned.

  The returned callable maps images [N, H, W, 3] in [-1, 1] (any H, W; resized
  bilinearly to 299x299, which is also InceptionV3's own input range) to
  float32 features [N, 2048]; it takes an optional ``batch_size`` (default 32).
  """
  if weights_path is not None:
    weights_path = os.fspath(weights_path)
    if not os.path.isfile(weights_path):
      _skip_warning(f'Inception weights file {weights_path!r} does not exist')
      return None
    weights = weights_path
  else:
    weights = 'imagenet'
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  try:
    model = keras.applications.InceptionV3(
        include_top=False, weights=weights, input_shape=(299, 299, 3), pooling='avg'
    )
  except Exception as err:  # noqa: BLE001 -- network errors come in many types.
    _skip_warning(
        f'Could not load InceptionV3 weights {weights!r} ({type(err).__name__}: {err})'
    )
    return None

  @tf.function(
      input_signature=[tf.TensorSpec(shape=[None, None, None, 3], dtype=tf.float32)],
      reduce_retracing=True,
  )
  def _features(batch):
    resized = tf.image.resize(batch, (299, 299), method='bilinear')
    return tf.cast(model(resized, training=False), tf.float32)

  def extract(images, batch_size: int = 32) -> np.ndarray:
    arr = metrics.as_image_batch(images, 'images').astype(np.float32)
    out = [
        _features(tf.constant(arr[i : i + batch_size])).numpy()
        for i in range(0, arr.shape[0], batch_size)
    ]
    return np.concatenate(out, axis=0)

  extract.model = model  # for inspection
  return extract
