"""Generators -> LiteRT (.tflite) and ONNX files, each checked against the Keras generator.

Layout, beside the SavedModels (export.py):

  <export_dir>/litert/<model_name>/<version>/<model_name>_256x256_float32.tflite   fixed size
                                             <model_name>_dynamic_int8.tflite      any size
                                             model.json
  <export_dir>/onnx/<model_name>/<version>/<model_name>.onnx                       any size
                                           model.json

Every file maps ``images`` float32 [N, H, W, C_in] in [-1, 1] (NHWC, as the SavedModel) to
``translated`` float32 [N, H, W, C_out] in [-1, 1]. Fixed-size LiteRT models take batch 1 at
one of config.export.litert_sizes; dynamic-size models take any batch and size and pad inside
the graph like the SavedModel (inference.pad_to_multiple). ``model.json`` records the inputs,
outputs, sizes, precision, source step and, per file, the error measured at export time against
the Keras generator on synthetic scenes (max abs error and PSNR in dB, images in [-1, 1]).

LiteRT precisions (TFLiteConverter, builtin ops only, so the plain interpreter runs them):
``float32``; ``float16``: float16 weights (half the size; CPUs compute in float32);
``int8``: dynamic-range quantization (int8 weights, activations quantized per run; a quarter of
the size). ONNX: float32 through tf2onnx at ONNX_OPSET by default, the newest it writes.

What the converters get: edge_graph.py (the same float32 generator with instance norms the
converters run well). The SavedModel's ``translate_image`` (encoded images) signature is not
converted: it uses tf.map_fn.
"""

import json
import logging
import os
import shutil

import numpy as np
import tensorflow as tf

from cyclegan_tf import configuration
from cyclegan_tf.deploy import edge_graph
from cyclegan_tf.deploy import runtimes
from cyclegan_tf.data import synthetic

FORMATS = ('saved_model', 'litert', 'onnx')
EDGE_FORMATS = ('litert', 'onnx')
PRECISIONS = ('float32', 'float16', 'int8')
ONNX_OPSET = 18  # the newest opset tf2onnx 1.17 writes
INPUT_NAME = edge_graph.INPUT_NAME
OUTPUT_NAME = edge_graph.OUTPUT_NAME
SIGNATURE = 'serving_default'
INSTALL_HINT = 'pip install -e ".[edge]" (ai-edge-litert, tf2onnx, onnxruntime)'
# Bounds on the export-time check (max abs error vs the Keras generator, [-1, 1] images) above
# which export logs a warning: tests/deploy/test_edge_export.py asserts the same bounds.
MAX_ABS_ERROR = {'float32': 1e-4, 'float16': 1e-2}
CHECK_SEED = 12345


def check_test_mode(formats, test_mode):
  """Raises ConfigError when edge formats are asked for a train-mode export."""
  edge = [f for f in formats if f in EDGE_FORMATS]
  if edge and test_mode == 'train':
    raise configuration.ConfigError(
        f'config.export.formats asks for {", ".join(edge)}, which run the generator in eval '
        "mode only; this export's config.model.test_mode is 'train'. Export saved_model only "
        "(--config.export.formats=saved_model) or set --config.model.test_mode=eval.")


def parse_list(text, allowed, field):
  """'a,b' -> ('a', 'b'), each in `allowed`; ConfigError naming `field` otherwise."""
  items = tuple(s.strip() for s in str(text).split(',') if s.strip())
  bad = [s for s in items if s not in allowed]
  if bad or not items:
    raise configuration.ConfigError(
        f'config.{field}={text!r} is not valid: {", ".join(bad) or "empty"}; allowed values '
        f'(comma-separated): {", ".join(allowed)}.')
  return tuple(dict.fromkeys(items))


def parse_sizes(text, field='export.litert_sizes'):
  """'256,128x192' -> ((256, 256), (128, 192)); '' -> (). ConfigError for anything else."""
  sizes = []
  for item in (s.strip() for s in str(text).split(',') if s.strip()):
    parts = item.lower().split('x')
    if len(parts) not in (1, 2) or not all(p.isdigit() and int(p) > 0 for p in parts):
      raise configuration.ConfigError(
          f'config.{field}={text!r}: {item!r} is not a size; write SIDE or HEIGHTxWIDTH, '
          'comma-separated (e.g. 256,128x192).')
    sizes.append((int(parts[0]), int(parts[-1])))
  return tuple(dict.fromkeys(sizes))


def check_size(size, multiple, min_size, field='export.litert_sizes'):
  """ConfigError when a fixed size is not one the generator keeps (multiple, minimum)."""
  for side in size:
    if side % multiple or side < min_size:
      up = max(min_size, -(-side // multiple) * multiple)
      raise configuration.ConfigError(
          f'config.{field}: {size[0]}x{size[1]} does not fit the generator: sides must be '
          f'multiples of {multiple} of at least {min_size}; use {up} instead of {side}.')


# ---------------------------------------------------------------------------------------------
# Converters.


def litert_bytes(fn, module, precision='float32'):
  """A traced function -> .tflite bytes (builtin ops only) at `precision` (PRECISIONS)."""
  if precision not in PRECISIONS:
    raise ValueError(f'precision={precision!r}; allowed: {", ".join(PRECISIONS)}.')
  converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()],
                                                              module)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  if precision != 'float32':
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if precision == 'float16':
    converter.target_spec.supported_types = [tf.float16]
  return converter.convert()


def _import_tf2onnx():
  try:
    import tf2onnx  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise runtimes.MissingRuntimeError(f'ONNX export needs tf2onnx: {INSTALL_HINT}. ({e})') from None
  return tf2onnx


def onnx_bytes(fn, input_signature, opset=ONNX_OPSET):
  """A traced function -> serialized ONNX model; dynamic axes named batch, height, width."""
  tf2onnx = _import_tf2onnx()
  proto, _ = tf2onnx.convert.from_function(fn, input_signature=input_signature, opset=opset)
  for value in list(proto.graph.input) + list(proto.graph.output):
    for dim, name in zip(value.type.tensor_type.shape.dim, ('batch', 'height', 'width')):
      if not dim.HasField('dim_value'):
        dim.dim_param = name
  return proto.SerializeToString()


# ---------------------------------------------------------------------------------------------
# Checking a written file against the Keras generator.


def check_images(count, height, width, channels, seed=CHECK_SEED):
  """`count` synthetic scenes (synthetic.render_scene, summer) as float32 [count, h, w, C] in
  [-1, 1], cropped from square renders; gray inputs average the RGB channels."""
  side = max(height, width, synthetic.MIN_SIZE)
  scenes = np.stack([synthetic.render_scene(seed + i, side, 'summer') for i in range(count)])
  scenes = scenes[:, :height, :width].astype(np.float32) / 127.5 - 1.0
  if channels == 1:
    return scenes.mean(axis=-1, keepdims=True)
  return np.concatenate([scenes] * (-(-channels // 3)), axis=-1)[..., :channels]


def psnr_db(outputs, reference):
  """PSNR in dB of [-1, 1] images against reference over all pixels: 10 log10(2^2 / MSE)."""
  mse = float(np.mean(np.square(np.float64(outputs) - np.float64(reference))))
  return float('inf') if mse == 0 else float(10.0 * np.log10(4.0 / mse))


def _check(model_path, reference_fn, size, count, min_size, channels):
  """{'images', 'size', 'max_abs_error', 'psnr_db'} of a written file against the generator."""
  model = runtimes.load(model_path)
  if size is None:  # a dynamic model: a size that needs padding
    side = max(min_size, 64)
    size = (side - 2, side - 6)
  images = check_images(count, size[0], size[1], channels)
  outputs = model.translate(images)
  reference = np.asarray(reference_fn(images))
  return {'images': count, 'size': list(size),
          'max_abs_error': float(np.max(np.abs(outputs - reference))),
          'psnr_db': round(psnr_db(outputs, reference), 2)}


# ---------------------------------------------------------------------------------------------
# Writing a format folder.


def _next_version(base):
  versions = [int(n) for n in os.listdir(base) if n.isdigit()] if os.path.isdir(base) else []
  return max(versions) + 1 if versions else 1


def _write_folder(base, version, write, staged=None):
  """Runs write(tmp_dir) and renames tmp_dir to base/version (never overwritten); returns
  base/version.

  With `staged` (a list), the written tmp_dir is not renamed but appended as (tmp_dir,
  base/version) for the caller to rename together with the other folders of the same export
  (export.py). Raises FileExistsError when base/version exists; on any error tmp_dir is
  removed.
  """
  os.makedirs(base, exist_ok=True)
  target = os.path.join(base, str(int(version)))
  if os.path.exists(target):
    raise FileExistsError(f'{target} exists; export versions are never overwritten.')
  tmp = os.path.join(base, f'.tmp-{int(version)}-{os.getpid()}')
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  try:
    write(tmp)
    if staged is None:
      os.rename(tmp, target)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  if staged is not None:
    staged.append((tmp, target))
  return target


def _metadata(fmt, model_name, functions, generator, netG, step, version, files, converter):
  module = functions.module
  return {
      'format': fmt,
      'model_name': model_name,
      'generator': generator.name,
      'netG': netG,
      'source_step': None if step is None else int(step),
      'version': int(version),
      'input': {'name': INPUT_NAME, 'dtype': 'float32', 'layout': 'NHWC', 'range': [-1, 1],
                'channels': module.input_channels},
      'output': {'name': OUTPUT_NAME, 'dtype': 'float32', 'layout': 'NHWC', 'range': [-1, 1],
                 'channels': module.output_channels},
      'size_multiple': int(module.multiple),
      'min_size': int(module.min_size),
      'converter': converter,
      # Exact at any size: the dynamic float32 file when there is one.
      'default': next((f['file'] for f in files
                       if f['size'] is None and f['precision'] == 'float32'), files[0]['file']),
      'files': files,
  }


def _warn_if_off(entry):
  bound = MAX_ABS_ERROR.get(entry['precision'])
  check = entry.get('check')
  if bound and check and check['max_abs_error'] > bound:
    logging.warning('%s: max abs error %.3g against the Keras generator exceeds %.0e.',
                    entry['file'], check['max_abs_error'], bound)


def export_litert(generator, base, model_name, netG=None, sizes=((256, 256),),
                  precisions=PRECISIONS, dynamic=True, step=None, version=None, check_count=2,
                  staged=None):
  """Writes the LiteRT files of one generator to base/<version>/; returns that folder.

  sizes: fixed (height, width) sizes, each a size the generator keeps (ConfigError otherwise);
  dynamic: also a model for any size; one file per size and precision. check_count synthetic
  scenes per file are compared with the Keras generator (model.json 'check'; 0: none).
  staged: see _write_folder (the folder is left under its temporary name for the caller).
  """
  functions = edge_graph.Functions(generator, netG)
  module = functions.module
  for size in sizes:
    check_size(size, module.multiple, module.min_size)
  if not sizes and not dynamic:
    raise configuration.ConfigError('config.export.litert_sizes is empty and '
                                    'config.export.litert_dynamic is False: no LiteRT model.')
  runtimes.import_runtime('litert')
  variants = [(None, p) for p in precisions] if dynamic else []
  variants = [(s, p) for s in sizes for p in precisions] + variants

  def write(folder):
    files = []
    for size, precision in variants:
      fn, _ = functions.dynamic() if size is None else functions.fixed(*size)
      name = f'{model_name}_{"dynamic" if size is None else "%dx%d" % size}_{precision}.tflite'
      content = litert_bytes(fn, module, precision)
      with open(os.path.join(folder, name), 'wb') as f:
        f.write(content)
      entry = {'file': name, 'size': None if size is None else list(size),
               'batch': None if size is None else 1, 'precision': precision,
               'bytes': len(content)}
      if check_count:
        entry['check'] = _check(os.path.join(folder, name), functions.reference, size,
                                check_count, module.min_size, module.input_channels)
      _warn_if_off(entry)
      files.append(entry)
      logging.info('Wrote %s (%d bytes)%s', name, len(content),
                   f'; check: {entry["check"]}' if 'check' in entry else '')
    meta = _metadata('litert', model_name, functions, generator, netG, step, version, files,
                     f'TFLiteConverter (TensorFlow {tf.__version__}), builtin ops only')
    with open(os.path.join(folder, runtimes.METADATA_FILE), 'w') as f:
      json.dump(meta, f, indent=2)

  version = version or _next_version(base)
  return _write_folder(base, version, write, staged)


def export_onnx(generator, base, model_name, netG=None, opset=ONNX_OPSET, step=None,
                version=None, check_count=2, staged=None):
  """Writes <model_name>.onnx (any batch and size, float32) to base/<version>/; returns it.

  staged: see _write_folder (the folder is left under its temporary name for the caller).
  """
  functions = edge_graph.Functions(generator, netG)
  module = functions.module
  tf2onnx = _import_tf2onnx()
  runtimes.import_runtime('onnx')

  def write(folder):
    fn, signature = functions.dynamic()
    name = f'{model_name}.onnx'
    content = onnx_bytes(fn, signature, opset)
    with open(os.path.join(folder, name), 'wb') as f:
      f.write(content)
    entry = {'file': name, 'size': None, 'batch': None, 'precision': 'float32',
             'opset': int(opset), 'bytes': len(content)}
    if check_count:
      entry['check'] = _check(os.path.join(folder, name), functions.reference, None,
                              check_count, module.min_size, module.input_channels)
    _warn_if_off(entry)
    meta = _metadata('onnx', model_name, functions, generator, netG, step, version, [entry],
                     f'tf2onnx {tf2onnx.__version__} (TensorFlow {tf.__version__}), opset {opset}')
    with open(os.path.join(folder, runtimes.METADATA_FILE), 'w') as f:
      json.dump(meta, f, indent=2)
    logging.info('Wrote %s (%d bytes)%s', name, len(content),
                 f'; check: {entry["check"]}' if 'check' in entry else '')

  version = version or _next_version(base)
  return _write_folder(base, version, write, staged)


def format_base(export_dir, fmt, model_name):
  """<export_dir>/<fmt>/<model_name>: where a format's versions of a model go."""
  return os.path.join(os.path.abspath(export_dir), fmt, model_name)


def export_edge(generator, export_dir, model_name, export_config, netG=None, step=None,
                version=None, staged=None):
  """The edge formats config.export.formats names (litert, onnx) for one generator.

  export_config: config.export (formats, litert_sizes, litert_precisions, litert_dynamic,
  onnx_opset, check_images). version: the SavedModel's version exported with it, so the
  folders correspond (default: each base's next). staged: see _write_folder. Returns
  {format: folder}.
  """
  formats = parse_list(export_config.formats, FORMATS, 'export.formats')
  written = {}
  if 'litert' in formats:
    written['litert'] = export_litert(
        generator, format_base(export_dir, 'litert', model_name), model_name, netG,
        sizes=parse_sizes(export_config.litert_sizes),
        precisions=parse_list(export_config.litert_precisions, PRECISIONS,
                              'export.litert_precisions'),
        dynamic=bool(export_config.litert_dynamic), step=step, version=version,
        check_count=int(export_config.check_images), staged=staged)
  if 'onnx' in formats:
    written['onnx'] = export_onnx(
        generator, format_base(export_dir, 'onnx', model_name), model_name, netG,
        opset=int(export_config.onnx_opset), step=step, version=version,
        check_count=int(export_config.check_images), staged=staged)
  return written
