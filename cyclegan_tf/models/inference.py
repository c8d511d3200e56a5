"""Running a generator on images of any size: padding to a valid size and cropping back,
instance-norm statistics shared between tiles of one image, batched prediction.

Used by export (inside the SavedModel's graph), translate and evaluate; it knows nothing of
training. Images are float32 [N, H, W, C] in [-1, 1].

Valid sizes. The resnet generators keep sizes that are multiples of 4, the U-Nets multiples of
2^depth (networks.size_multiple); the resnets' 1-pixel reflection pads at 1/4 resolution also
need sides of at least 8 (minimum_size). Other sizes are reflect-padded (centred; numpy's
'reflect', which repeats a 1-pixel side) and the output cropped back, so the output is exactly
the crop of the generator's output on the padded input.

Shared statistics. Instance norm normalises each image (and each tile of one) by its own mean
and variance, so tiles translated on their own come out with different colours and seams.
run_generator re-applies the Keras functional graph's layers in order (the same layer objects
and weights) and can record every instance norm's statistics (collect=True) or replace them by
given ones (e.g. those of a downscaled copy of the whole image, applied to each of its tiles).
Batch norm at inference uses its moving averages, the same for every tile; in test_time's
'train' mode it is a per-image norm (PerImageBatchNorm, an instance norm with gamma and beta)
and shares statistics between tiles as instance norm does.
"""

import keras
import numpy as np
import tensorflow as tf

from cyclegan_tf.models import custom_layers
from cyclegan_tf.models import networks
from cyclegan_tf.models import test_time

PREDICT_BATCH = 8


# ---------------------------------------------------------------------------------------------
# Padding to the generator's size multiple.


def _padding(size, multiple, min_size=0):
  """(before, after) padding that brings `size` to a multiple (at least min_size), centred."""
  target = (size + multiple - 1) // multiple * multiple
  if isinstance(target, int):
    target = max(target, min_size)
  else:
    target = tf.maximum(target, min_size)
  total = target - size
  before = total // 2
  return before, total - before


def _reflect_indices(size, before, after):
  """Source indices of a reflect padding of `before` / `after` along an axis of `size`.

  Equals tf.pad(mode='REFLECT') (and numpy's 'reflect') when the padding is smaller than the
  size; larger paddings keep reflecting (numpy's behaviour), and a size of 1 repeats its
  only pixel, so every image, however small, can be padded. The positions are shifted to be
  non-negative before floormod: tf2onnx turns floormod of negative integers into a truncated
  remainder, which broke padded sizes in ONNX exports.
  """
  positions = tf.range(-before, size + after)
  period = tf.maximum(2 * (size - 1), 1)
  folded = tf.math.floormod(positions + period * (before // period + 1), period)
  reflected = tf.where(folded >= size, period - folded, folded)
  return tf.clip_by_value(reflected, 0, size - 1)


def pad_to_multiple(images, multiple, min_size=0):
  """Reflect-pads [N, H, W, C] images to sides that are multiples of `multiple` (>= min_size).

  Returns (padded, (top, left, height, width)) where the last tuple locates the original
  image inside the padded one, for `crop_padding`.
  """
  images = tf.convert_to_tensor(images)
  shape = tf.shape(images)
  height, width = shape[1], shape[2]
  top, bottom = _padding(height, multiple, min_size)
  left, right = _padding(width, multiple, min_size)
  padded = tf.gather(images, _reflect_indices(height, top, bottom), axis=1)
  padded = tf.gather(padded, _reflect_indices(width, left, right), axis=2)
  return padded, (top, left, height, width)


def crop_padding(images, box):
  top, left, height, width = box
  return images[:, top:top + height, left:left + width, :]


def reflect_pad_numpy(image, multiple, min_size=0):
  """NumPy twin of pad_to_multiple for one [H, W, C] image (tests, tools): (padded, box)."""
  height, width = image.shape[:2]
  top, bottom = _padding(height, multiple, min_size)
  left, right = _padding(width, multiple, min_size)
  padded = np.pad(image, ((top, bottom), (left, right), (0, 0)), mode='reflect')
  return padded, (top, left, height, width)


# ---------------------------------------------------------------------------------------------
# Generator properties.


def size_multiple_of(generator, netG=None):
  """The generator's size multiple: from its ImageSizeCheck layer, else from netG."""
  for layer in generator.layers:
    if isinstance(layer, networks.ImageSizeCheck):
      return layer.multiple
  if netG is None:
    raise ValueError(f'Cannot tell the size multiple of {generator.name}: it has no '
                     'ImageSizeCheck layer and no netG was given.')
  return networks.size_multiple(netG)


def minimum_size(generator, multiple):
  """The smallest side (a multiple of `multiple`) the generator can run on.

  Reflection padding needs more pixels than it pads: the resnets' 1-pixel pads at 1/4
  resolution need sides of at least 8. Read from the graph: each reflection-padded conv's input
  size for a probe input gives its downsampling factor.
  """
  pads = [layer for layer in generator.layers
          if isinstance(layer, custom_layers.PaddedConv2D) and layer.pad_mode == 'reflect'
          and layer.pad > 0]
  if not pads:
    return multiple
  probe_side = multiple * 16
  probe = keras.Model(generator.inputs, [layer.input for layer in pads])
  shapes = probe.compute_output_shape((1, probe_side, probe_side, generator.input_shape[-1]))
  if not isinstance(shapes, (list, tuple)) or (shapes and isinstance(shapes[0], int)):
    shapes = [shapes]
  needed = max(-(-probe_side // shape[1]) * (layer.pad + 1)
               for layer, shape in zip(pads, shapes))
  return max(multiple, -(-needed // multiple) * multiple)


def inference_copy(generator):
  """The generator computing in float32 with a plain last conv (networks.rebuilt): what
  exports, converters and inference run; the same weights."""
  return networks.rebuilt(generator, dtype='float32', gemm_last_conv=False)


def predict(generator, images, batch_size=PREDICT_BATCH):
  """generator(images) in inference mode, in batches -> float32 numpy [N, H, W, C_out].

  images: float32 [N, H, W, C] in [-1, 1] of a size the generator keeps (any compute dtype).
  """
  out = []
  for start in range(0, len(images), batch_size):
    y = generator(tf.constant(images[start:start + batch_size]), training=False)
    out.append(tf.cast(y, tf.float32).numpy())
  return np.concatenate(out, axis=0)


# ---------------------------------------------------------------------------------------------
# Shared instance-norm statistics.


def _is_instance_norm(layer):
  return isinstance(layer, custom_layers.InstanceNormalization)


def norm_layer_widths(generator):
  """Channel counts of the generator's instance-norm layers, in graph order."""
  return [layer.input.shape[-1] for layer in generator.layers if _is_instance_norm(layer)]


def _instance_norm(layer, x, mean, variance):
  y = (x - mean) * tf.math.rsqrt(variance + layer.epsilon)
  if layer.scale:
    y = y * layer.gamma
  if layer.center:
    y = y + layer.beta
  return y


def run_generator(generator, images, statistics=None, collect=False):
  """Applies a functional generator layer by layer with control over its instance norms.

  Instance norm normalises each image (and each tile of one) by its own mean and variance, so
  tiles of one image translated on their own come out with different colours and seams. This
  re-applies the Keras functional graph's layers in order (the same layer objects and weights)
  and replaces each instance-norm layer's statistics:

  * ``collect=True``: every instance norm uses the statistics of its own input (as the model
    does) and they are returned: ``(outputs, [(mean, variance), ...])``, each [N, 1, 1, C_l].
  * ``statistics`` given: every instance norm uses those fixed values instead of its input's,
    e.g. statistics of (a downscaled copy of) the whole image applied to each of its tiles.

  Other layers (batch norm included: at inference it uses its moving averages, the same for
  every tile) run unchanged.
  """
  values = {id(generator.inputs[0]): images}
  fixed = list(statistics) if statistics is not None else None
  collected = []
  for layer in generator.layers:
    if isinstance(layer, keras.layers.InputLayer):
      continue
    args = keras.tree.map_structure(lambda t: values[id(t)], layer.input)
    if _is_instance_norm(layer) and (collect or fixed is not None):
      if fixed is not None:
        mean, variance = fixed[len(collected)]
      else:
        mean, variance = tf.nn.moments(args, axes=[1, 2], keepdims=True)
      collected.append((mean, variance))
      outputs = _instance_norm(layer, args, mean, variance)
    else:
      outputs = layer(args, training=False) if _takes_training(layer) else layer(args)
    values[id(layer.output)] = outputs
  if fixed is not None and len(collected) != len(fixed):
    raise ValueError(f'Got statistics for {len(fixed)} norm layers; {generator.name} has '
                     f'{len(collected)}.')
  outputs = values[id(generator.outputs[0])]
  return (outputs, collected) if collect else outputs


def _takes_training(layer):
  return isinstance(layer, (keras.layers.BatchNormalization, keras.layers.Dropout))


def translate_padded(generator, images, multiple, statistics=None, min_size=None):
  """Generator output at the input's size for any size: reflect-pad, run, crop.

  Pads to a multiple of `multiple` of at least min_size (default: minimum_size). With
  `statistics`, the instance norms use those fixed values (run_generator).
  """
  if min_size is None:
    min_size = minimum_size(generator, multiple)
  padded, box = pad_to_multiple(images, multiple, min_size)
  if statistics is None:
    outputs = generator(padded, training=False)
  else:
    outputs = run_generator(generator, padded, statistics=statistics)
  return crop_padding(outputs, box)


def norm_statistics(generator, images, multiple, min_size=None):
  """Per-layer instance-norm statistics of the (padded) images: [(mean, variance), ...]."""
  if min_size is None:
    min_size = minimum_size(generator, multiple)
  padded, _ = pad_to_multiple(images, multiple, min_size)
  _, statistics = run_generator(generator, padded, collect=True)
  return statistics


class _Untracked:
  """Holds an object out of tf.Module's dependency tracking (SavedModels see only what we pick)."""

  def __init__(self, value):
    self.value = value


class PaddedGenerator(tf.Module):
  """A generator as three tf.functions on images of any size, float32, inference mode.

    translate(images) -> outputs          pad, run, crop back
    norm_statistics(images) -> [(mean, variance), ...] per instance norm, each [N, 1, 1, C_l]
    translate_with_norm_statistics(images, statistics) -> outputs with those statistics

  images: float32 [N, H, W, C_in] in [-1, 1], any H, W; outputs: [N, H, W, C_out] in [-1, 1].
  A tf.Module, so a SavedModel can hold it (export.py does): it tracks the generator's variables.
  test_mode 'eval' runs the generator as it is, 'train' its test_time.train_mode_copy (per-image
  batch norm, which shares statistics between tiles like instance norm; dropout seeded by
  test_seed). Raises ValueError for another test_mode.
  """

  def __init__(self, generator, netG=None, test_mode='eval', test_seed=test_time.DEFAULT_SEED):
    super().__init__(name='padded_generator')
    generator = test_time.for_mode(inference_copy(generator), test_mode, test_seed)
    self.test_mode, self.test_seed = test_mode, int(test_seed)
    self._keras = _Untracked(generator)
    self.multiple = size_multiple_of(generator, netG)
    self.min_size = minimum_size(generator, self.multiple)
    self.input_channels = int(generator.input_shape[-1])
    self.output_channels = int(generator.output_shape[-1])
    self.norm_widths = norm_layer_widths(generator)
    # The exported graphs capture the tf.Variables behind the Keras variables; tracking those
    # very objects is what lets TF Serving's session loader (saved_model_cli run) find them.
    self.generator_variables = [v.value for v in generator.weights]
    image_spec = tf.TensorSpec([None, None, None, self.input_channels], tf.float32)
    stats_spec = [(tf.TensorSpec([None, 1, 1, w], tf.float32),
                   tf.TensorSpec([None, 1, 1, w], tf.float32)) for w in self.norm_widths]
    # One traced generator graph, called by every function below.
    self._generate = tf.function(lambda x: self.generator(x, training=False),
                                 input_signature=[image_spec], autograph=False)
    self.translate = tf.function(self._translate, input_signature=[image_spec], autograph=False)
    self.norm_statistics = tf.function(
        lambda x: norm_statistics(self.generator, x, self.multiple, self.min_size),
        input_signature=[image_spec], autograph=False)
    self.translate_with_norm_statistics = tf.function(
        lambda x, s: translate_padded(self.generator, x, self.multiple, s, self.min_size),
        input_signature=[image_spec, stats_spec], autograph=False)

  def _translate(self, images):
    padded, box = pad_to_multiple(images, self.multiple, self.min_size)
    return crop_padding(self._generate(padded), box)

  @property
  def generator(self):
    """The float32 Keras generator (plain last conv) the functions run."""
    return self._keras.value
