"""Generators -> SavedModels in TF Serving's layout, and loading them back the way it runs them.

Layout: ``<export_dir>/<model_name>/<version>/`` (``cyclegan_a2b`` = G_A, ``cyclegan_b2a`` = G_B by
default; versions are integers, a re-export adds the next one and TF Serving moves to it). Both
generators of one export, and its edge formats, share one version number and appear together
(written under temporary names, then renamed back to back).

Signatures (what TF Serving and ``saved_model_cli run`` see):

* ``serving_default``: ``images`` float32 [N, H, W, C] in [-1, 1], any H and W ->
  ``translated`` float32 [N, H, W, C_out] in [-1, 1], the generator's tanh output unchanged.
  Sizes the generator cannot keep are reflect-padded inside the graph and the output cropped
  back (inference.py).
* ``translate_image``: ``image_bytes`` string [N] of encoded JPEG (camera MPO too) / PNG / BMP /
  GIF / WebP images, sizes may differ within a batch, each turned upright by its EXIF
  orientation -> ``png_bytes`` string [N], each translated image as PNG at its own (upright)
  size. The ``_bytes`` suffixes make TF Serving's REST API use {"b64": ...} for them.

Besides the signatures, each export holds two functions that TF Serving ignores and
``translate`` uses to cut large images into tiles that share instance-norm statistics:
``norm_statistics(images)`` and ``translate_with_norm_statistics(images, statistics)``.
``assets.extra/cyclegan_export.json`` records the model name, the run's netG, size multiple and
minimum, channels, training step, the norm layers' widths and the test mode the graph runs
(``test_mode`` 'eval' or 'train' and its dropout ``test_seed``: models/test_time.py;
config.model.test_mode).

Exports always compute in float32 with a plain last conv (inference.inference_copy).
``--config.export.formats=saved_model,litert,onnx`` adds LiteRT and ONNX files beside the
SavedModels (edge_export.py: ``<export_dir>/<format>/<model_name>/<version>/``).
"""

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import threading

import tensorflow as tf

from cyclegan_tf.deploy import edge_export
from cyclegan_tf.data import images as images_lib
from cyclegan_tf.models import family
from cyclegan_tf.models import inference
from cyclegan_tf import run_dir

SERVING_SIGNATURE = 'serving_default'
BYTES_SIGNATURE = 'translate_image'
IMAGES_INPUT = 'images'
IMAGES_OUTPUT = 'translated'
BYTES_INPUT = 'image_bytes'
BYTES_OUTPUT = 'png_bytes'
METADATA_PATH = os.path.join('assets.extra', 'cyclegan_export.json')
_VERSION_RE = re.compile(r'^\d+$')


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


def serving_module(generator, netG=None, test_mode='eval', test_seed=0):
  """The SavedModel's root: an inference.PaddedGenerator with the two signature functions.

  serve(images) -> {'translated': ...}; translate_image(image_bytes) -> {'png_bytes': ...};
  and norm_statistics / translate_with_norm_statistics (see inference.PaddedGenerator), in
  test_mode 'eval' or 'train' (models/test_time.py).
  """
  module = inference.PaddedGenerator(generator, netG, test_mode, test_seed)
  in_channels = module.input_channels

  @tf.function(autograph=False, input_signature=[
      tf.TensorSpec([None, None, None, in_channels], tf.float32, name=IMAGES_INPUT)])
  def serve(images):
    return {IMAGES_OUTPUT: module.translate(images)}

  @tf.function(autograph=False,
               input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)])
  def translate_image(image_bytes):

    def one(contents):
      image = images_lib.decode_image(contents, in_channels)[tf.newaxis]
      return images_lib.encode_png(module.translate(image)[0])

    png = tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec([], tf.string))
    return {BYTES_OUTPUT: png}

  module.serve = serve
  module.translate_image = translate_image
  return module


def paired_version(model_bases):
  """The one version number for an export written to several model bases (both generators,
  every format): the largest next_version among them, so that they all share it, also after
  an earlier export that stopped part-way through (1 when there is none)."""
  return max([next_version(base) for base in model_bases], default=1)


@contextlib.contextmanager
def _signals_deferred(signums=(signal.SIGINT, signal.SIGTERM)):
  """Holds SIGINT / SIGTERM back for the block and delivers them after it.

  Python runs signal handlers in the main thread whichever thread the kernel hands the signal
  to (TensorFlow's threads do not block them, so pthread_sigmask in the main thread alone
  would not hold them), hence the handlers themselves are swapped for ones that only record
  the signal. Elsewhere than in the main thread, or for a handler not set from Python, the
  block runs as is.
  """
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  caught = []
  previous = {}
  for signum in signums:
    handler = signal.getsignal(signum)
    if handler is not None:
      previous[signum] = signal.signal(signum, lambda number, frame: caught.append(number))
  try:
    yield
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, handler)
    for signum in caught:
      signal.raise_signal(signum)


class _Staging:
  """Version folders written under temporary names, then renamed into place together.

  pairs: [(temporary dir, final version dir)]. publish() renames them back to back with
  SIGINT / SIGTERM deferred (and undoes the renames done when one fails), so TF Serving and
  later exports see all the folders of one export or none. Leaving the `with` block removes
  every temporary dir still there: on an exception (Ctrl-C included) nothing new is left.
  """

  def __init__(self):
    self.pairs = []

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    for tmp_dir, _ in self.pairs:
      shutil.rmtree(tmp_dir, ignore_errors=True)
    return False

  def publish(self):
    """Renames every temporary dir to its version dir; raises FileExistsError (nothing
    renamed) when one of them exists, or the rename's OSError."""
    taken = [target for _, target in self.pairs if os.path.exists(target)]
    if taken:
      raise FileExistsError(f'{", ".join(taken)} exist(s); export versions are never '
                            'overwritten.')
    done = []
    with _signals_deferred():
      try:
        for tmp_dir, target in self.pairs:
          os.rename(tmp_dir, target)
          done.append((tmp_dir, target))
      except BaseException:
        for tmp_dir, target in reversed(done):
          with contextlib.suppress(OSError):
            os.rename(target, tmp_dir)
        raise


def _stage_generator(generator, model_base, model_name, netG, version, step, staging,
                     test_mode='eval', test_seed=0):
  """Writes one generator's SavedModel to a temporary dir of model_base registered in
  `staging` (renamed to <model_base>/<version> by staging.publish()); returns the version dir.
  Raises FileExistsError when that version exists."""
  version_dir = os.path.join(model_base, str(int(version)))
  if os.path.exists(version_dir):
    raise FileExistsError(f'{version_dir} exists; export versions are never overwritten.')
  tmp_dir = os.path.join(model_base, f'.tmp-{int(version)}-{os.getpid()}')
  shutil.rmtree(tmp_dir, ignore_errors=True)
  staging.pairs.append((tmp_dir, version_dir))  # before writing: a failure removes it

  module = serving_module(generator, netG, test_mode, test_seed)
  # The functions (all with input signatures) are traced once, inside save: tracing them
  # before would trace them twice, as saving retraces in its own context.
  signatures = {SERVING_SIGNATURE: module.serve, BYTES_SIGNATURE: module.translate_image}
  tf.saved_model.save(module, tmp_dir, signatures=signatures)
  metadata = {
      'model_name': model_name,
      'generator': generator.name,
      'netG': netG,
      'size_multiple': int(module.multiple),
      'min_size': int(module.min_size),
      'input_channels': module.input_channels,
      'output_channels': module.output_channels,
      'norm_layer_widths': [int(w) for w in module.norm_widths],
      'step': None if step is None else int(step),
      'version': int(version),
      'test_mode': test_mode,
      'test_seed': int(test_seed) if test_mode == 'train' else None,
      'signatures': {
          SERVING_SIGNATURE: {'inputs': [IMAGES_INPUT], 'outputs': [IMAGES_OUTPUT]},
          BYTES_SIGNATURE: {'inputs': [BYTES_INPUT], 'outputs': [BYTES_OUTPUT]},
      },
  }
  os.makedirs(os.path.join(tmp_dir, os.path.dirname(METADATA_PATH)), exist_ok=True)
  with open(os.path.join(tmp_dir, METADATA_PATH), 'w') as f:
    json.dump(metadata, f, indent=2)
  return version_dir


def export_generator(generator, export_base, model_name, netG=None, version=None, step=None,
                     test_mode='eval', test_seed=0):
  """Writes one generator as <export_base>/<model_name>/<version>/; returns that directory.

  test_mode: 'eval' or 'train' (models/test_time.py), with test_seed for train-mode dropout;
  recorded in the metadata.

  `netG` is recorded in the metadata (and gives the size multiple of a generator without an
  ImageSizeCheck layer; ours all have one). `version` defaults to the next free one; an
  existing version is never overwritten (FileExistsError). The SavedModel is written to a
  temporary folder and renamed, so TF Serving (which polls the base path) never sees half a
  model; on any error (Ctrl-C included) the temporary folder is removed.
  """
  model_base = os.path.join(os.path.abspath(export_base), model_name)
  os.makedirs(model_base, exist_ok=True)
  if version is None:
    version = next_version(model_base)
  with _Staging() as staging:
    version_dir = _stage_generator(generator, model_base, model_name, netG, version, step,
                                   staging, test_mode, test_seed)
    staging.publish()
  logging.info('Exported %s (%s) to %s', model_name, generator.name, version_dir)
  return version_dir


def model_names(config):
  """{generator role: model name} of the generators the config's model exports (its EXPORTS):
  config.export.model_name_a2b / _b2a by direction; for cycle_gan G_A maps domain A to B
  (after config.data.direction)."""
  return {role: family.export_name(config.model, config.export, direction)
          for role, direction in family.get(config.model).EXPORTS.items()}


def test_mode_of(config):
  """(config.model.test_mode, config.model.test_seed), ('eval', 0) for configs without them."""
  return config.model.get('test_mode', 'eval'), int(config.model.get('test_seed', 0))


def _model_bases(export_dir, names):
  return [os.path.join(os.path.abspath(export_dir), name) for name in names]


def _stage_generators(generators, export_dir, config, step, version, staging):
  """export_generators' SavedModels, left in `staging`; returns {model_name: version dir}."""
  names = model_names(config)
  missing = [role for role in names if role not in generators]
  if missing:
    raise KeyError(f'export_generators needs generators {", ".join(names)}; missing '
                   f'{", ".join(missing)}.')
  bases = _model_bases(export_dir, names.values())
  if version is None:
    version = paired_version(bases)
  paths = {}
  for (role, name), base in zip(names.items(), bases):
    os.makedirs(base, exist_ok=True)
    paths[name] = _stage_generator(generators[role], base, name, config.model.netG, version,
                                   step, staging, *test_mode_of(config))
  return paths


def export_generators(generators, export_dir, config, step=None, version=None):
  """Exports the generators of the config's model (model_names: G_A and G_B for cycle_gan)
  under their model names; returns {model_name: version dir}.

  All get the same version: `version`, by default paired_version of the two model bases (one
  past the newest of either, so an earlier export interrupted between them cannot pair a2b's
  version n with b2a's n - 1). Both SavedModels are written to temporary folders first and
  renamed into place together (SIGINT / SIGTERM deferred meanwhile), so an error or Ctrl-C
  leaves neither new version and no temporary folder. Raises KeyError for a missing generator
  and FileExistsError when the version exists for either model.
  """
  with _Staging() as staging:
    paths = _stage_generators(generators, export_dir, config, step, version, staging)
    staging.publish()
  for name, path in paths.items():
    logging.info('Exported %s to %s', name, path)
  return paths


def export_run(config, workdir, export_dir=None, step=None):
  """`--mode=export`: the newest (or `step`'s) checkpoint of a run; default export_dir =
  workdir/export. The architecture comes from the run's own config.json, the model names and
  config.export.formats from `config` (configuration.mode_config).

  Every folder of the export (both generators, each format) gets one version number
  (paired_version over all their bases) and appears at once: all are written under temporary
  names and renamed together at the end, so an interrupted export leaves none of them.

  Returns {model_name: SavedModel version dir} and, for the edge formats (edge_export.py),
  {'<format>/<model_name>': version dir}, which holds the same version number. Holds the run
  directory's lock when the export goes into it (RunDirError while another process writes it).
  """
  run_dir.check_workdir(workdir)
  run_config = run_dir.config_for_mode(workdir, config, 'export')
  # Which formats, validated before the checkpoint is read.
  formats = edge_export.parse_list(run_config.export.get('formats', 'saved_model'),
                                   edge_export.FORMATS, 'export.formats')
  edge_export.check_test_mode(formats, test_mode_of(run_config)[0])
  export_dir = export_dir or run_dir.export_dir(workdir)
  inside = os.path.commonpath([os.path.abspath(export_dir), os.path.abspath(workdir)]) == (
      os.path.abspath(workdir))
  # An export into the run directory is one of its writers (run_dir.writer_lock).
  with run_dir.writer_lock(workdir, 'export') if inside else contextlib.nullcontext():
    return _export_checkpoint(run_config, workdir, export_dir, step, formats)


def _export_checkpoint(run_config, workdir, export_dir, step, formats):
  generators, restored_step, _ = run_dir.restore_generators(workdir, step, run_config)
  names = model_names(run_config)
  bases = _model_bases(export_dir, names.values()) if 'saved_model' in formats else []
  bases += [edge_export.format_base(export_dir, fmt, name)
            for fmt in formats if fmt in edge_export.EDGE_FORMATS for name in names.values()]
  version = paired_version(bases)
  paths = {}
  with _Staging() as staging:
    if 'saved_model' in formats:
      paths = _stage_generators(generators, export_dir, run_config, restored_step, version,
                                staging)
    # LiteRT / ONNX folders beside the SavedModels.
    for role, name in names.items():
      edge = edge_export.export_edge(generators[role], export_dir, name, run_config.export,
                                     run_config.model.netG, step=restored_step,
                                     version=version, staged=staging.pairs)
      paths.update({f'{fmt}/{name}': folder for fmt, folder in edge.items()})
    staging.publish()
  for name, path in paths.items():
    print(f'Exported {name} (step {restored_step}) to {path}')
  return paths
