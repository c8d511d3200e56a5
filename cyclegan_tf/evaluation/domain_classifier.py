"""A small CNN that tells domain A from domain B: the evaluation's "is it translated?" score.

Trained on the run's own training images (the training preprocessing: random crops and flips)
and cached in the run's eval/ folder, it scores translated test images: classifier_a2b is the
share of G_A(A) it assigns to B. Knows nothing of the trainer: it takes images.
"""

import json
import os
import time

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from cyclegan_tf.data import images as images_lib
from cyclegan_tf.evaluation import metrics
from cyclegan_tf import run_dir

MAX_SIZE = 128  # px: larger test images are downscaled for the classifier

as_image_batch = metrics.as_image_batch


def build_domain_classifier(input_size: int, seed: int = 0):
  """Small CNN: 4 stride-2 3x3 convs (16, 32, 64, 64), GAP, 1 logit (~61k params).

  Input: [-1, 1] images of ``input_size`` x ``input_size`` x 3. Output: the
  logit of "domain B". Always float32 (ignores a global mixed-precision policy).
  No augmentation layers inside (flips are done by
  :func:`train_domain_classifier`), so ``model.save`` / ``load_model``
  round-trip without custom objects.
  """
  if input_size < 16:
    raise ValueError(f'input_size must be >= 16, got {input_size}.')
  inputs = keras.Input(shape=(input_size, input_size, 3), name='image')
  x = inputs
  for i, filters in enumerate((16, 32, 64, 64)):
    x = keras.layers.Conv2D(
        filters,
        3,
        strides=2,
        padding='same',
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed + i),
        dtype='float32',
        name=f'conv{i}',
    )(x)
    x = keras.layers.LeakyReLU(negative_slope=0.2, dtype='float32', name=f'lrelu{i}')(x)
  x = keras.layers.GlobalAveragePooling2D(dtype='float32', name='gap')(x)
  logits = keras.layers.Dense(
      1,
      kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 4),
      dtype='float32',
      name='logit',
  )(x)
  return keras.Model(inputs, logits, name='domain_classifier')


def train_domain_classifier(
    images_a,
    images_b,
    *,
    epochs: int = 15,
    batch_size: int = 32,
    seed: int = 0,
    learning_rate: float = 2e-3,
):
  """Train :func:`build_domain_classifier` to tell domain A (label 0) from B (1).

  Images of both sets must be square and of the same size. Augmentation:
  random horizontal flips. Adam, sigmoid cross-entropy; shuffling, flips and
  initialisation are seeded with ``seed`` (no global RNG state is touched).
  """
  a = as_image_batch(images_a, 'images_a').astype(np.float32)
  b = as_image_batch(images_b, 'images_b').astype(np.float32)
  if a.shape[1:] != b.shape[1:] or a.shape[1] != a.shape[2]:
    raise ValueError(
        'images_a and images_b must be square and of the same size, got '
        f'{a.shape[1:]} and {b.shape[1:]}.'
    )
  x = np.concatenate([a, b], axis=0)
  y = np.concatenate([np.zeros(len(a)), np.ones(len(b))]).astype(np.float32)[:, None]

  model = build_domain_classifier(a.shape[1], seed=seed)
  optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
  size = a.shape[1]

  @tf.function(
      input_signature=[
          tf.TensorSpec([None, size, size, 3], tf.float32),
          tf.TensorSpec([None, 1], tf.float32),
      ]
  )
  def train_step(xb, yb):
    with tf.GradientTape() as tape:
      logits = model(xb, training=True)
      loss = tf.reduce_mean(
          tf.nn.sigmoid_cross_entropy_with_logits(labels=yb, logits=logits)
      )
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss

  rng = np.random.default_rng(seed)
  for _ in range(epochs):
    order = rng.permutation(len(x))
    flip = rng.random(len(x)) < 0.5
    for start in range(0, len(x), batch_size):
      idx = order[start : start + batch_size]
      xb = x[idx]
      xb = np.where(flip[idx][:, None, None, None], xb[:, :, ::-1, :], xb)
      train_step(tf.constant(xb), tf.constant(y[idx]))
  return model


def domain_scores(model, images, batch_size: int = 64) -> np.ndarray:
  """Probability of being domain B for each image, shape [N]."""
  arr = as_image_batch(images, 'images').astype(np.float32)
  expected = tuple(model.input_shape[1:3])
  if arr.shape[1:3] != expected:
    raise ValueError(
        f'The classifier expects {expected[0]}x{expected[1]} images, got '
        f'{arr.shape[1]}x{arr.shape[2]}; resize them first.'
    )
  out = [
      tf.sigmoid(model(tf.constant(arr[i : i + batch_size]), training=False)).numpy()
      for i in range(0, arr.shape[0], batch_size)
  ]
  return np.concatenate(out, axis=0).reshape(-1).astype(np.float64)


def classifier_share(model, images, target_domain: str) -> float:
  """Share of ``images`` the classifier assigns to ``target_domain`` ("A" or "B").

  An image is assigned to B when its score is >= 0.5, else to A (so the A and
  B shares sum to 1).
  """
  domain = str(target_domain).upper()
  if domain not in ('A', 'B'):
    raise ValueError(f"target_domain must be 'A' or 'B', got {target_domain!r}.")
  is_b = domain_scores(model, images) >= 0.5
  return float(np.mean(is_b if domain == 'B' else ~is_b))


# ---------------------------------------------------------------------------------------------
# The run's classifier: cached in eval/, trained on the run's training images.


def input_size(image_shape, max_size=MAX_SIZE):
  """Square input side (px) of the classifier for test images of shape (H, W, ...)."""
  return int(max(16, min(image_shape[0], image_shape[1], max_size)))


def as_input(images, size):
  """Images [N, H, W, C] in [-1, 1] (C = 1 or 3) -> the classifier's [N, size, size, 3]."""
  return images_lib.resize_array(images_lib.rgb_array(images), (size, size))


def _training_inputs(pipeline, count, size):
  """Classifier inputs [n, size, size, 3] of up to `count` training images per domain, from
  epoch 0 of the training pipeline (images may differ in size: each is resized)."""
  got = {'A': [], 'B': []}
  for batch in pipeline.train_dataset(0).as_numpy_iterator():
    for domain in got:
      got[domain].extend(as_input(image[None], size)[0] for image in batch[domain])
    if len(got['A']) >= count:
      break
  return {d: np.stack(v[:count]) for d, v in got.items()}


def load_or_train(workdir, pipeline, size, train_images=500, epochs=5, seed=0, write=True):
  """The run's A-vs-B classifier for `size` px: eval/domain_classifier.keras when it exists and
  takes that size, else trained on up to `train_images` training images per domain (and saved
  when `write`, with a .json describing it)."""
  path = run_dir.classifier_path(workdir)
  if tf.io.gfile.exists(path):
    try:
      model = keras.models.load_model(path, compile=False)
      if tuple(model.input_shape[1:]) == (size, size, 3):
        logging.info('Reusing the domain classifier %s.', path)
        return model
      logging.info('The cached domain classifier %s takes %s images, not %dx%d: training a new '
                   'one.', path, model.input_shape[1:3], size, size)
    except Exception as e:  # pylint: disable=broad-except  # a corrupt or foreign file
      logging.warning('Cannot load %s (%s: %s): training a new domain classifier.', path,
                      type(e).__name__, e)
  start = time.perf_counter()
  inputs = _training_inputs(pipeline, train_images, size)
  a, b = inputs['A'], inputs['B']
  model = train_domain_classifier(a, b, epochs=epochs, seed=seed)
  train_acc = 0.5 * (classifier_share(model, a, 'A') + classifier_share(model, b, 'B'))
  elapsed = time.perf_counter() - start
  logging.info('Trained the domain classifier on %d + %d training images at %d px, %d epochs, '
               'in %.1f s (training accuracy %.3f).', len(a), len(b), size, epochs, elapsed,
               train_acc)
  if write:
    tf.io.gfile.makedirs(os.path.dirname(path))
    tmp = path.replace('.keras', '.tmp.keras')
    model.save(tmp)
    tf.io.gfile.rename(tmp, path, overwrite=True)
    info = {'image_size': size, 'train_images': {'A': len(a), 'B': len(b)}, 'epochs': epochs,
            'seed': seed, 'train_accuracy': train_acc, 'seconds': round(elapsed, 2)}
    run_dir.write_text(path.replace('.keras', '.json'), json.dumps(info, indent=2) + '\n')
  return model
