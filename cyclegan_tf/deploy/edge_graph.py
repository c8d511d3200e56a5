"""The generator as LiteRT's and ONNX's converters get it.

Not the SavedModel's serving graph, but the same float32 generator (inference.inference_copy:
plain last conv, so no While / TensorList ops) with each instance norm written as means over W,
then H, of the 4-D tensor (edge_copy; the same maths). Keras' GroupNormalization reshapes to
5-D first, which LiteRT's XNNPACK delegate and ONNX Runtime ran about twice slower, and one
mean over H x W values loses precision in LiteRT (_spatial_mean). Functions maps the copy to
the traced functions edge_export.py converts with TFLiteConverter.from_concrete_functions
(from_keras_model fails on Keras 3) and tf2onnx.convert.from_function.
"""

import keras
import tensorflow as tf

from cyclegan_tf.models import custom_layers
from cyclegan_tf.models import inference

INPUT_NAME = 'images'
OUTPUT_NAME = 'translated'



def _spatial_mean(x):
  """Mean over H and W of [N, H, W, C] as a mean over W, then over H. LiteRT's MEAN sums in
  float32 one value after another: with one mean over 256x256 values, a resnet_9blocks (ngf
  64, random weights) at 256 px came out 7e-4 off a float64 run (Keras float32: 1.8e-4); with
  two means of at most max(H, W) values, 1.7e-5 (tests/deploy/test_edge_export.py checks it at 256 px)."""
  return tf.reduce_mean(tf.reduce_mean(x, axis=2, keepdims=True), axis=1, keepdims=True)


class SpatialInstanceNorm(keras.layers.Layer):
  """Instance norm without affine parameters on [N, H, W, C]: (x - mean) / sqrt(var + eps) with
  mean and (biased) variance over H and W, as the reference's InstanceNorm2d (eps 1e-5), on the
  4-D tensor."""

  def __init__(self, epsilon=1e-5, **kwargs):
    super().__init__(**kwargs)
    self.epsilon = epsilon

  def call(self, x):
    centred = x - _spatial_mean(x)
    variance = _spatial_mean(tf.square(centred))
    return centred * tf.math.rsqrt(variance + self.epsilon)

  def get_config(self):
    return {**super().get_config(), 'epsilon': self.epsilon}


def _is_plain_instance_norm(layer):
  return isinstance(layer, custom_layers.InstanceNormalization)


def edge_copy(generator):
  """The generator as the converters get it: float32, plain last conv, instance norms as
  SpatialInstanceNorm; the same weights and layer names (max abs difference ~1e-5)."""
  generator = inference.inference_copy(generator)

  def clone(layer):
    if _is_plain_instance_norm(layer):
      return SpatialInstanceNorm(layer.epsilon, name=layer.name)
    return layer.__class__.from_config(layer.get_config())

  copy = keras.models.clone_model(generator, clone_function=clone)
  copy.set_weights(generator.get_weights())
  return copy


class Functions:
  """The traced functions to convert, over one tf.Module that tracks the variables."""

  def __init__(self, generator, netG=None):
    self.module = inference.PaddedGenerator(edge_copy(generator), netG)
    self.channels = self.module.input_channels
    self._generator, self._netG, self._reference = generator, netG, None

  def reference(self, images):
    """The generator itself (as the SavedModel runs it) on any size: what checks compare with."""
    if self._reference is None:
      self._reference = inference.PaddedGenerator(self._generator, self._netG)
    return self._reference.translate(images).numpy()

  def fixed(self, height, width):
    """Batch 1 at exactly height x width (a size the generator keeps: no padding)."""
    spec = tf.TensorSpec([1, height, width, self.channels], tf.float32, name=INPUT_NAME)
    fn = tf.function(lambda images: {OUTPUT_NAME: self.module.generator(images, training=False)},
                     input_signature=[spec], autograph=False)
    return fn, [spec]

  def dynamic(self):
    """Any batch and size: padded to the size multiple inside the graph and cropped back."""
    spec = tf.TensorSpec([None, None, None, self.channels], tf.float32, name=INPUT_NAME)
    module = self.module

    def translate(images):
      padded, box = inference.pad_to_multiple(images, module.multiple, module.min_size)
      return {OUTPUT_NAME: inference.crop_padding(module.generator(padded, training=False), box)}

    fn = tf.function(translate, input_signature=[spec], autograph=False)
    return fn, [spec]
