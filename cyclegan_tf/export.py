"""Generators -> SavedModels in TF Serving's layout, plus the graph helpers translate shares.

Layout: ``<export_dir>/<model_name>/<version>/`` (``cyclegan_a2b`` = G_A, ``cyclegan_b2a`` = G_B by
default; versions are integers, a re-export adds the next one and TF Serving moves to it).

Signatures (what TF Serving and ``saved_model_cli run`` see):

* ``serving_default``: ``images`` float32 [N, H, W, C] in [-1, 1], any H and W ->
  ``translated`` float32 [N, H, W, C_out] in [-1, 1], the generator's tanh output unchanged.
  Sizes that are not multiples of the generator's size multiple (4 for the resnets, 2^depth for
  the U-Nets), or are below its minimum (8 for the resnets, whose reflection pads at 1/4
  resolution need 2 pixels), are reflect-padded inside the graph (centred; numpy's 'reflect',
  which repeats a 1-pixel side) and the output is cropped back, so the output is exactly the
  crop of the generator's output on the padded input.
* ``translate_image``: ``image_bytes`` string [N] of encoded JPEG / PNG / BMP / GIF images, sizes
  may differ within a batch -> ``png_bytes`` string [N], each translated image as PNG at its own
  size. The ``_bytes`` suffixes make TF Serving's REST API use {"b64": ...} for them.

Besides the signatures, each export holds two functions that TF Serving ignores and
``translate`` uses to cut large images into tiles that share instance-norm statistics:
``norm_statistics(images)`` and ``translate_with_norm_statistics(images, statistics)``; see
``run_generator``. ``assets.extra/cyclegan_export.json`` records the model name, netG, size
multiple and minimum, channels, training step and the norm layers' widths.

Exports always compute in float32: a generator built under a mixed-precision policy is rebuilt
in float32 and its weights copied.
"""

import json
import logging
import os
import re
import shutil

import keras
import numpy as np
import tensorflow as tf

from cyclegan_tf import images as images_lib
from cyclegan_tf import networks

SERVING_SIGNATURE = 'serving_default'
BYTES_SIGNATURE = 'translate_image'
IMAGES_INPUT = 'images'
IMAGES_OUTPUT = 'translated'
BYTES_INPUT = 'image_bytes'
BYTES_OUTPUT = 'png_bytes'
METADATA_PATH = os.path.join('assets.extra', 'cyclegan_export.json')
_VERSION_RE = re.compile(r'^\d+$')


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
  only pixel, so every image, however small, can be padded.
  """
  positions = tf.range(-before, size + after)
  period = tf.maximum(2 * (size - 1), 1)
  folded = tf.math.floormod(positions, period)
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
# Generator properties and the float32 copy.


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
  resolution need sides of at least 8. Read from the graph: each ReflectionPadding2D's input
  size for a probe input gives its downsampling factor.
  """
  pads = [layer for layer in generator.layers
          if isinstance(layer, networks.ReflectionPadding2D)]
  if not pads:
    return multiple
  probe_side = multiple * 16
  probe = keras.Model(generator.inputs, [layer.input for layer in pads])
  shapes = probe.compute_output_shape((1, probe_side, probe_side, generator.input_shape[-1]))
  if not isinstance(shapes, (list, tuple)) or (shapes and isinstance(shapes[0], int)):
    shapes = [shapes]
  needed = max(-(-probe_side // shape[1]) * (layer.padding + 1)
               for layer, shape in zip(pads, shapes))
  return max(multiple, -(-needed // multiple) * multiple)


def as_float32(generator):
  """The generator itself when it computes in float32, else a float32 rebuild with its weights.

  Mixed-precision runs keep float32 variables, so the weights copy over unchanged.
  """
  if all(layer.compute_dtype == 'float32' for layer in generator.layers):
    return generator

  def rebuild(layer):
    return layer.__class__.from_config({**layer.get_config(), 'dtype': 'float32'})

  clone = keras.models.clone_model(generator, clone_function=rebuild)
  clone.set_weights(generator.get_weights())
  return clone


# ---------------------------------------------------------------------------------------------
# Running a generator with shared instance-norm statistics.


def _is_instance_norm(layer):
  return isinstance(layer, keras.layers.GroupNormalization) and (
      layer.groups == -1 or layer.groups == layer.input.shape[-1])


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


# ---------------------------------------------------------------------------------------------
# Versions.


def list_versions(model_base):
  """Integer version directories under a model's base path, ascending."""
  if not os.path.isdir(model_base):
    return []
  return sorted(int(name) for name in os.listdir(model_base)
                if _VERSION_RE.match(name) and os.path.isdir(os.path.join(model_base, name)))


def next_version(model_base):
  """1 + the newest version under model_base (1 when there is none)."""
  versions = list_versions(model_base)
  return versions[-1] + 1 if versions else 1


def _is_saved_model(path):
  return os.path.isfile(os.path.join(path, 'saved_model.pb')) or os.path.isfile(
      os.path.join(path, 'saved_model.pbtxt'))


def resolve_version_dir(path, version=None):
  """A SavedModel directory from a model base (E/<name>: newest or given version) or itself.

  Returns (version_dir, version or None when the directory is not a numbered version).
  """
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f'No such directory: {path}')
  if _is_saved_model(path):
    if version is not None and os.path.basename(path) != str(version):
      raise FileNotFoundError(f'{path} is a single SavedModel, not version {version}.')
    name = os.path.basename(path)
    return path, int(name) if _VERSION_RE.match(name) else None
  versions = [v for v in list_versions(path) if _is_saved_model(os.path.join(path, str(v)))]
  if not versions:
    raise FileNotFoundError(
        f'{path} holds no SavedModel: expected saved_model.pb in it or in numbered version '
        'folders (<model_base>/<version>/saved_model.pb), as `--mode=export` writes them.')
  if version is None:
    version = versions[-1]
  elif int(version) not in versions:
    raise FileNotFoundError(f'{path} has no version {version}; it has {versions}.')
  return os.path.join(path, str(int(version))), int(version)


# ---------------------------------------------------------------------------------------------
# Export.


def serving_module(generator, multiple):
  """The SavedModel's root: a tf.Module with the generator's variables and functions.

  Its functions, also usable directly: serve(images) -> {'translated': ...},
  translate_image(image_bytes) -> {'png_bytes': ...}, norm_statistics(images) and
  translate_with_norm_statistics(images, statistics) (see run_generator).
  """
  in_channels = generator.input_shape[-1]
  widths = norm_layer_widths(generator)
  min_size = minimum_size(generator, multiple)
  module = tf.Module()
  # The exported graphs capture the tf.Variables behind the Keras variables; tracking those
  # very objects is what lets TF Serving's session loader (and saved_model_cli run) find them.
  module.generator_variables = [v.value for v in generator.weights]
  image_spec = tf.TensorSpec([None, None, None, in_channels], tf.float32)

  # One traced generator graph, called by both signatures.
  @tf.function(autograph=False, input_signature=[image_spec])
  def generate(images):
    return generator(images, training=False)

  def translate(images):
    padded, box = pad_to_multiple(images, multiple, min_size)
    return crop_padding(generate(padded), box)

  @tf.function(autograph=False, input_signature=[
      tf.TensorSpec([None, None, None, in_channels], tf.float32, name=IMAGES_INPUT)])
  def serve(images):
    return {IMAGES_OUTPUT: translate(images)}

  @tf.function(autograph=False,
               input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)])
  def translate_image(image_bytes):

    def one(contents):
      image = images_lib.decode_image(contents, in_channels)[tf.newaxis]
      return images_lib.encode_png(translate(image)[0])

    png = tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec([], tf.string))
    return {BYTES_OUTPUT: png}

  stats_spec = [(tf.TensorSpec([None, 1, 1, w], tf.float32),
                 tf.TensorSpec([None, 1, 1, w], tf.float32)) for w in widths]

  @tf.function(autograph=False, input_signature=[image_spec])
  def stats_fn(images):
    return norm_statistics(generator, images, multiple, min_size)

  @tf.function(autograph=False, input_signature=[image_spec, stats_spec])
  def with_stats_fn(images, statistics):
    return translate_padded(generator, images, multiple, statistics, min_size)

  module.serve = serve
  module.translate_image = translate_image
  module.norm_statistics = stats_fn
  module.translate_with_norm_statistics = with_stats_fn
  return module


def export_generator(generator, export_base, model_name, netG=None, version=None, step=None):
  """Writes one generator as <export_base>/<model_name>/<version>/; returns that directory.

  `netG` gives the size multiple when the generator has no ImageSizeCheck layer (ours all do).
  `version` defaults to the next free one; an existing version is never overwritten. The
  SavedModel is written to a temporary folder and renamed, so TF Serving (which polls the
  base path) never sees half a model.
  """
  generator = as_float32(generator)
  multiple = size_multiple_of(generator, netG)
  model_base = os.path.join(os.path.abspath(export_base), model_name)
  os.makedirs(model_base, exist_ok=True)
  if version is None:
    version = next_version(model_base)
  version_dir = os.path.join(model_base, str(int(version)))
  if os.path.exists(version_dir):
    raise FileExistsError(f'{version_dir} exists; export versions are never overwritten.')
  tmp_dir = os.path.join(model_base, f'.tmp-{int(version)}-{os.getpid()}')
  shutil.rmtree(tmp_dir, ignore_errors=True)

  module = serving_module(generator, multiple)
  # The functions (all with input signatures) are traced once, inside save: tracing them
  # before would trace them twice, as saving retraces in its own context.
  signatures = {SERVING_SIGNATURE: module.serve, BYTES_SIGNATURE: module.translate_image}
  try:
    tf.saved_model.save(module, tmp_dir, signatures=signatures)
    metadata = {
        'model_name': model_name,
        'generator': generator.name,
        'netG': netG,
        'size_multiple': int(multiple),
        'min_size': int(minimum_size(generator, multiple)),
        'input_channels': int(generator.input_shape[-1]),
        'output_channels': int(generator.output_shape[-1]),
        'norm_layer_widths': [int(w) for w in norm_layer_widths(generator)],
        'step': None if step is None else int(step),
        'version': int(version),
        'signatures': {
            SERVING_SIGNATURE: {'inputs': [IMAGES_INPUT], 'outputs': [IMAGES_OUTPUT]},
            BYTES_SIGNATURE: {'inputs': [BYTES_INPUT], 'outputs': [BYTES_OUTPUT]},
        },
    }
    os.makedirs(os.path.join(tmp_dir, os.path.dirname(METADATA_PATH)), exist_ok=True)
    with open(os.path.join(tmp_dir, METADATA_PATH), 'w') as f:
      json.dump(metadata, f, indent=2)
    os.rename(tmp_dir, version_dir)
  except BaseException:
    shutil.rmtree(tmp_dir, ignore_errors=True)
    raise
  logging.info('Exported %s (%s) to %s', model_name, generator.name, version_dir)
  return version_dir


def model_names(config):
  """{generator role: model name}: G_A maps domain A to B (after config.data.direction)."""
  return {'G_A': config.export.model_name_a2b, 'G_B': config.export.model_name_b2a}


def export_generators(generators, export_dir, config, step=None):
  """Exports G_A and G_B under the config's model names; returns {model_name: version dir}."""
  names = model_names(config)
  missing = [role for role in names if role not in generators]
  if missing:
    raise KeyError(f'export_generators needs generators {", ".join(names)}; missing '
                   f'{", ".join(missing)}.')
  return {
      name: export_generator(generators[role], export_dir, name, config.model.netG, step=step)
      for role, name in names.items()
  }


def export_run(config, workdir, export_dir=None, step=None):
  """Exports the latest (or `step`) checkpoint of a run; default export_dir = workdir/export."""
  from cyclegan_tf import train  # pylint: disable=g-import-not-at-top
  generators, restored_step = train.load_generators(config, workdir, step=step)
  export_dir = export_dir or os.path.join(workdir, 'export')
  paths = export_generators(generators, export_dir, config, step=restored_step)
  for name, path in paths.items():
    print(f'Exported {name} (step {restored_step}) to {path}')
  return paths


# ---------------------------------------------------------------------------------------------
# Loading.


class ServingModel:
  """An exported generator loaded the way TF Serving runs it: through its signatures.

  Calling it maps float32 [N, H, W, C] images in [-1, 1] of any size to the translated
  float32 images (the serving_default signature). `translate_bytes` runs translate_image.
  """

  def __init__(self, path):
    self.path, self.version = resolve_version_dir(path)
    self.loaded = tf.saved_model.load(self.path)
    self.signatures = dict(self.loaded.signatures)
    for name in (SERVING_SIGNATURE,):
      if name not in self.signatures:
        raise ValueError(f'{self.path} has no {name!r} signature; it has '
                         f'{sorted(self.signatures)}.')
    self.metadata = {}
    meta_path = os.path.join(self.path, METADATA_PATH)
    if os.path.isfile(meta_path):
      with open(meta_path) as f:
        self.metadata = json.load(f)
    spec = self.signatures[SERVING_SIGNATURE].structured_input_signature[1]
    self.input_key = next(iter(spec))
    self.input_channels = self.metadata.get('input_channels', spec[self.input_key].shape[-1])
    self.output_channels = self.metadata.get('output_channels')
    self.size_multiple = self.metadata.get('size_multiple')
    self.model_name = self.metadata.get('model_name') or os.path.basename(
        os.path.dirname(self.path))

  def __call__(self, images):
    images = tf.convert_to_tensor(images, tf.float32)
    outputs = self.signatures[SERVING_SIGNATURE](**{self.input_key: images})
    return outputs[IMAGES_OUTPUT] if IMAGES_OUTPUT in outputs else next(iter(outputs.values()))

  def translate_bytes(self, contents):
    """Encoded images (a list of bytes) -> list of PNG bytes."""
    outputs = self.signatures[BYTES_SIGNATURE](**{
        BYTES_INPUT: tf.constant(list(contents), tf.string)})
    return [bytes(b) for b in outputs[BYTES_OUTPUT].numpy()]

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
