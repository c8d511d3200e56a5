"""How a generator runs at test time: 'eval' (inference mode) or 'train' (the reference's test.py).

The reference's test.py puts its networks in eval mode only with --eval; by default they stay in
TRAIN mode, batch 1, and its published pix2pix results were made that way: every BatchNorm2d
normalises each image by its own mean and (biased) variance, and every Dropout stays active.

* ``'eval'``: the generator as it is: batch norm with its moving statistics, no dropout. The
  default for trained runs (configs/default.py: config.model.test_mode).
* ``'train'``: ``train_mode_copy``: a copy on the same weights where every
  keras.layers.BatchNormalization is a PerImageBatchNorm (each image's own statistics, with the
  BN's gamma, beta and epsilon; at batch 1 the reference's train-mode BN exactly, and within a
  batch every image stays independent, as in the reference's serial batch-1 test) and every
  keras.layers.Dropout a SeededDropout (a stateless mask from (seed, layer), so that the same
  input and seed always give the same output and exports are deterministic). The default for
  converted reference weights with batch norm or dropout (deploy/convert.py).

PerImageBatchNorm is an instance norm with an affine part (a subclass of
custom_layers.InstanceNormalization), so inference.py's shared statistics apply to it: tiles of
one large image all use the statistics of one pass over the whole image, as for instance norm.
Dropout masks follow the tensor's shape: each tile gets its own (seeded) mask.
"""

import keras
import tensorflow as tf

from cyclegan_tf.models import custom_layers

TEST_MODES = ('eval', 'train')
DEFAULT_SEED = 0  # configs/default.py: config.model.test_seed


class PerImageBatchNorm(custom_layers.InstanceNormalization):
  """A BatchNormalization as the reference's train-mode BatchNorm2d runs it at batch 1.

  [N, H, W, C] -> [N, H, W, C]: each image's channels normalised by their own mean and biased
  variance over H and W (epsilon: the BN's), then scaled by gamma and shifted by beta.
  """

  center = scale = True

  def build(self, input_shape):
    channels = int(input_shape[-1])
    self.gamma = self.add_weight(shape=(channels,), initializer='ones', name='gamma')
    self.beta = self.add_weight(shape=(channels,), initializer='zeros', name='beta')

  def call(self, inputs, training=None, mask=None):  # pylint: disable=unused-argument
    return super().call(inputs) * tf.cast(self.gamma, inputs.dtype) + tf.cast(
        self.beta, inputs.dtype)


class SeededDropout(keras.layers.Layer):
  """Dropout that is always on, with a stateless mask: deterministic for a seed.

  [N, H, W, C] -> same shape: each value kept with probability 1 - rate and scaled by
  1 / (1 - rate) (rate 0.5: dropped to 0 or doubled), as torch.nn.Dropout in train mode. The
  mask is drawn from tf.random.stateless_uniform with seed (seed, index) at shape [1, H, W, C]
  and shared by the images of a batch, so an image's output does not depend on its batch.
  """

  def __init__(self, rate, seed=DEFAULT_SEED, index=0, **kwargs):
    super().__init__(**kwargs)
    if not 0 <= float(rate) < 1:
      raise ValueError(f'SeededDropout rate must be in [0, 1), got {rate}.')
    self.rate, self.seed, self.index = float(rate), int(seed), int(index)

  def call(self, inputs, training=None):  # pylint: disable=unused-argument
    if self.rate == 0:
      return inputs
    shape = tf.concat([[1], tf.shape(inputs)[1:]], axis=0)
    uniform = tf.random.stateless_uniform(shape, seed=[self.seed, self.index])
    keep = tf.cast(uniform >= self.rate, inputs.dtype)
    return inputs * keep / tf.cast(1 - self.rate, inputs.dtype)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), 'rate': self.rate, 'seed': self.seed, 'index': self.index}


def check_mode(mode, field='config.model.test_mode'):
  """Raises ValueError naming the field and the allowed values unless mode is in TEST_MODES."""
  if mode not in TEST_MODES:
    raise ValueError(f'{field}={mode!r} is not valid; allowed values: {", ".join(TEST_MODES)}.')


def has_train_mode_layers(generator):
  """True when 'train' differs from 'eval' for this generator (it has batch norm or dropout)."""
  return any(isinstance(layer, (keras.layers.BatchNormalization, keras.layers.Dropout))
             for layer in generator.layers)


def train_mode_copy(generator, seed=DEFAULT_SEED, dropout=True):
  """The generator as the reference's test.py runs it without --eval (see the module doc).

  Same inputs and outputs ([N, H, W, C_in] -> [N, H, W, C_out], both in [-1, 1]), same layer
  names and weights. dropout=False replaces the dropout layers by identities (comparisons with
  a reference whose dropout RNG cannot be shared). The generator itself when it has neither
  batch norm nor dropout (instance norm is per image in both modes).
  """
  if not has_train_mode_layers(generator):
    return generator
  dropout_index = iter(range(1 << 30))

  def replace(layer):
    config = layer.get_config()
    if isinstance(layer, keras.layers.BatchNormalization):
      return PerImageBatchNorm(epsilon=layer.epsilon, name=layer.name, dtype=config['dtype'])
    if isinstance(layer, keras.layers.Dropout):
      index = next(dropout_index)
      if not dropout:
        return keras.layers.Identity(name=layer.name, dtype=config['dtype'])
      return SeededDropout(layer.rate, seed, index, name=layer.name, dtype=config['dtype'])
    return layer.__class__.from_config(config)

  clone = keras.models.clone_model(generator, clone_function=replace)
  for layer in clone.layers:
    source = generator.get_layer(layer.name)
    if isinstance(layer, PerImageBatchNorm):
      if source.scale:
        layer.gamma.assign(source.gamma)
      if source.center:
        layer.beta.assign(source.beta)
    elif layer.weights:
      layer.set_weights(source.get_weights())
  return clone


def for_mode(generator, mode='eval', seed=DEFAULT_SEED):
  """The generator to run in test mode `mode`: itself for 'eval', train_mode_copy for 'train'.

  Raises ValueError for another mode.
  """
  check_mode(mode)
  return generator if mode == 'eval' else train_mode_copy(generator, seed)
