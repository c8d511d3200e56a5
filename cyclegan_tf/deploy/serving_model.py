"""An exported generator loaded the way TF Serving runs it: through its SavedModel signatures
(the layout and signatures are export.py's)."""

import json
import os

import tensorflow as tf

from cyclegan_tf.deploy import export


class ServingModel:
  """An exported generator loaded the way TF Serving runs it: through its signatures.

  Calling it maps float32 [N, H, W, C] images in [-1, 1] of any size to the translated
  float32 images (the serving_default signature). `translate_bytes` runs translate_image.
  """

  def __init__(self, path):
    self.path, self.version = export.resolve_version_dir(path)
    self.loaded = tf.saved_model.load(self.path)
    self.signatures = dict(self.loaded.signatures)
    for name in (export.SERVING_SIGNATURE,):
      if name not in self.signatures:
        raise ValueError(f'{self.path} has no {name!r} signature; it has '
                         f'{sorted(self.signatures)}.')
    self.metadata = {}
    meta_path = os.path.join(self.path, export.METADATA_PATH)
    if os.path.isfile(meta_path):
      with open(meta_path) as f:
        self.metadata = json.load(f)
    spec = self.signatures[export.SERVING_SIGNATURE].structured_input_signature[1]
    self.input_key = next(iter(spec))
    self.input_channels = self.metadata.get('input_channels', spec[self.input_key].shape[-1])
    self.output_channels = self.metadata.get('output_channels')
    self.size_multiple = self.metadata.get('size_multiple')
    # models/test_time.py: 'eval' or 'train' (our exports before the field ran in eval mode);
    # None for a SavedModel without our metadata.
    self.test_mode = self.metadata.get('test_mode', 'eval' if self.metadata else None)
    self.test_seed = self.metadata.get('test_seed')
    self.model_name = self.metadata.get('model_name') or os.path.basename(
        os.path.dirname(self.path))

  def __call__(self, images):
    images = tf.convert_to_tensor(images, tf.float32)
    outputs = self.signatures[export.SERVING_SIGNATURE](**{self.input_key: images})
    return outputs[export.IMAGES_OUTPUT] if export.IMAGES_OUTPUT in outputs else next(iter(outputs.values()))

  def translate_bytes(self, contents):
    """Encoded images (a list of bytes) -> list of PNG bytes."""
    outputs = self.signatures[export.BYTES_SIGNATURE](**{
        export.BYTES_INPUT: tf.constant(list(contents), tf.string)})
    return [bytes(b) for b in outputs[export.BYTES_OUTPUT].numpy()]

  @property
  def supports_shared_statistics(self):
    return hasattr(self.loaded, 'norm_statistics') and hasattr(
        self.loaded, 'translate_with_norm_statistics')

  def norm_statistics(self, images):
    return self.loaded.norm_statistics(tf.convert_to_tensor(images, tf.float32))

  def translate_with_norm_statistics(self, images, statistics):
    return self.loaded.translate_with_norm_statistics(
        tf.convert_to_tensor(images, tf.float32), statistics)


def load_serving_model(path):
  """Loads E/<model_name> (its newest version) or a version directory; returns a callable."""
  return ServingModel(path)
