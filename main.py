"""Entry point: parses flags and hands the config to the library, one call per mode.

  python main.py --config=configs/quickstart.py --workdir=runs/quickstart          # train
  python main.py --mode=evaluate --workdir=runs/quickstart [--step=N]
  python main.py --mode=export --workdir=runs/quickstart
  python main.py --mode=translate --workdir=runs/quickstart --input=IMG --output=DIR
  python main.py --mode=summary --config=configs/default.py
  python main.py --mode=convert --pth=horse2zebra.pth --output=converted/
  python main.py --mode=benchmark --config=configs/default.py --config.data.crop_size=128
  python main.py --mode=pretrained --name=horse2zebra --output=models/   (--list: all names)

Modes that consume a run (evaluate, export, translate) take its architecture and data from
the run's own config.json; the command line sets only what the mode may change (see
cyclegan_tf/configuration.py). User errors print one line, without a traceback, exit status 1.
"""

import errno
import logging as std_logging
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs')
_DEFAULT_CONFIG = os.path.join(_CONFIGS, 'default.py')
MODES = ('train', 'evaluate', 'export', 'translate', 'summary', 'convert', 'benchmark',
         'pretrained')
# Modes that read or write a run directory.
_NEEDS_WORKDIR = ('train', 'evaluate', 'export')
_CONSUMES_RUN = ('evaluate', 'export', 'translate')

config_flags.DEFINE_config_file('config', _DEFAULT_CONFIG, 'Config file (configs/*.py).',
                                lock_config=True)
flags.DEFINE_enum('mode', 'train', MODES, 'What to do.')
flags.DEFINE_string('workdir', None, 'Run directory: checkpoints, logs, samples, evaluations.')
flags.DEFINE_string('export_dir', None, 'export: where SavedModels go (default WORKDIR/export).')
flags.DEFINE_string('input', None, 'translate: an image file, a folder or a glob.')
flags.DEFINE_string('output', None, 'translate: output folder for PNG files named after the '
                    'inputs (NAME.png); convert, pretrained: output folder.')
flags.DEFINE_enum('direction', 'AtoB', ('AtoB', 'BtoA'), 'translate: which generator to use.')
flags.DEFINE_string('saved_model', None,
                    'translate: an exported or converted SavedModel instead of --workdir.')
flags.DEFINE_string('pth', None, 'convert: a reference PyTorch state dict (.pth).')
flags.DEFINE_enum('role', None, ('G_A', 'G_B', 'D_A', 'D_B', 'G'),
                  'convert: the network the .pth holds (default: from the file name; G: '
                  "pix2pix's generator).")
flags.DEFINE_integer('step', None, 'evaluate / export / translate: checkpoint step '
                     '(default: the latest).')
flags.DEFINE_bool('read_dataset', False, 'benchmark: feed the configured dataset instead of '
                  'random images.')
# Published models by name; edge models for translate.
flags.DEFINE_string('name', None, 'pretrained: a published model (--list shows them), e.g. '
                    'horse2zebra or pix2pix_edges2shoes.')
flags.DEFINE_bool('list', False, 'pretrained: print the published models, their model '
                  '(cycle_gan or pix2pix) and direction.')
flags.DEFINE_string('base_url', None, 'pretrained: download from this base URL instead of '
                    'config.pretrained.base_url (CycleGAN names) or '
                    'config.pretrained.pix2pix_base_url (pix2pix names): a mirror, or a local '
                    'server.')
flags.DEFINE_string('model', None, 'translate: a SavedModel, LiteRT (.tflite) or ONNX (.onnx) '
                    'file or folder, instead of --workdir.')
FLAGS = flags.FLAGS


class _OnlyOurInfo(std_logging.Filter):
  """Hides INFO lines of TensorFlow, Keras and tfds (signature serialisation, builder notes)
  at the default verbosity; their warnings and errors, and all of ours, still show."""

  _OURS = tuple(os.path.join(os.path.dirname(os.path.abspath(__file__)), d) + os.sep
                for d in ('cyclegan_tf', 'serving', 'benchmarks'))

  def filter(self, record):
    return (record.levelno >= std_logging.WARNING or record.pathname.startswith(self._OURS) or
            logging.get_verbosity() > logging.INFO)


def _override_fields():
  """Dotted config fields set on the command line (--config.model.ngf=8 -> 'model.ngf')."""
  return set(config_flags.get_override_values(FLAGS['config']))


def _explicit_model_fields(config):
  """config.model fields a converted file must agree with: set on the command line, or
  different from configs/default.py (a config file that chose them)."""
  from configs import default  # pylint: disable=g-import-not-at-top
  defaults = default.get_config().model
  fields = {k for k, v in config.model.items() if k not in defaults or defaults[k] != v}
  return fields | {f[len('model.'):] for f in _override_fields() if f.startswith('model.')}


# Flags that name files or folders: '~' is expanded in them (bash leaves it alone in --flag=~/x).
_PATH_FLAGS = ('workdir', 'export_dir', 'input', 'output', 'saved_model', 'pth', 'model')


def _expand_path_flags():
  """Expands '~' in every path flag and path config field; UsageError when one cannot be."""
  from cyclegan_tf import configuration  # pylint: disable=g-import-not-at-top
  for name in _PATH_FLAGS:
    value = FLAGS[name].value
    if value and '://' not in value:
      expanded = os.path.expanduser(value)
      if expanded.startswith('~'):
        raise app.UsageError(f'--{name}={value!r}: {expanded.split(os.sep)[0]!r} cannot be '
                             'expanded (no such user, or HOME is not set); give the path '
                             'without ~.')
      FLAGS[name].value = expanded
  try:
    configuration.normalize_paths(FLAGS.config)
  except configuration.ConfigError as e:
    raise app.UsageError(str(e)) from None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  logging.get_absl_handler().addFilter(_OnlyOurInfo())
  from cyclegan_tf import configuration  # pylint: disable=g-import-not-at-top
  _expand_path_flags()
  config = FLAGS.config
  mode = FLAGS.mode
  if mode in _NEEDS_WORKDIR and not FLAGS.workdir:
    raise app.UsageError(f'--mode={mode} needs --workdir (the run directory).')
  consumes_run = mode in _CONSUMES_RUN and FLAGS.workdir and os.path.exists(
      os.path.join(FLAGS.workdir, 'config.json'))
  if consumes_run:
    ignored = configuration.ignored_overrides(_override_fields(), mode)
    if ignored:
      raise app.UsageError(
          f'{", ".join("--config." + f for f in ignored)} cannot change --mode={mode} of the '
          f'run in {FLAGS.workdir}: its architecture and data come from its config.json. '
          f'This mode takes only {", ".join(configuration.MODE_FIELDS[mode])} from the command '
          'line.')
  try:
    configuration.validate(config)
  except configuration.ConfigError as e:
    if not consumes_run:  # a run's own config.json is validated where it is read
      raise app.UsageError(str(e)) from None
  try:
    if FLAGS.workdir and (mode in _NEEDS_WORKDIR or mode == 'translate'):
      from cyclegan_tf import run_dir  # pylint: disable=g-import-not-at-top
      run_dir.check_workdir(FLAGS.workdir)
    return _run_mode(mode, config)
  except Exception as e:  # pylint: disable=broad-except
    message = _user_error_message(e)
    if message is None:
      raise
    print(f'Error: {message}', file=sys.stderr)
    return 1


# errno values of a file system that cannot take what is written: said in one line.
_STORAGE_ERRNOS = frozenset(
    getattr(errno, name) for name in ('ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM', 'ENOTDIR',
                                      'EISDIR', 'ENAMETOOLONG', 'EFBIG') if hasattr(errno, name))
_STORAGE_HINTS = {'ENOSPC': 'free some space (or use another --workdir / --output)',
                  'EDQUOT': 'free some space (or use another --workdir / --output)',
                  'EROFS': 'use a writable folder',
                  'EACCES': 'use a folder you may write to', 'EPERM': 'use a folder you may write '
                  'to'}


def _user_error_message(error):
  """The one-line message of an error the user can fix (None: a bug, shown with a traceback).

  Errors whose message names the problem and the fix (config, data, files, conversions, NaN
  losses, locks), and storage failures (disk full, read-only, permission denied) from Python
  or from TensorFlow's file system, which name the path and the cause.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from cyclegan_tf import configuration  # pylint: disable=g-import-not-at-top
  from cyclegan_tf.models import color  # pylint: disable=g-import-not-at-top
  from cyclegan_tf.models import torch_layout  # pylint: disable=g-import-not-at-top
  from cyclegan_tf.training import train_state  # pylint: disable=g-import-not-at-top
  from cyclegan_tf import run_dir  # pylint: disable=g-import-not-at-top
  from cyclegan_tf.deploy import runtimes  # pylint: disable=g-import-not-at-top
  if isinstance(error, (FileNotFoundError, FileExistsError, configuration.ConfigError,
                        configuration.DataError, torch_layout.ConversionError,
                        train_state.NonFiniteLossError, runtimes.MissingRuntimeError,
                        run_dir.RunDirError, color.ColorDependencyError)):
    return str(error)
  if isinstance(error, OSError) and error.errno in _STORAGE_ERRNOS:
    where = error.filename or 'a file'
    hint = _STORAGE_HINTS.get(errno.errorcode.get(error.errno, ''), 'check the path')
    return f'cannot write {where}: {error.strerror or error}; {hint}.'
  storage_words = ('No space left', 'Read-only file system', 'Permission denied',
                   'Disk quota exceeded')
  if isinstance(error, tf.errors.OpError) and any(w in error.message for w in storage_words):
    return (f'{run_dir.describe_error(error, cause_only=False)}; free some space or use a '
            'writable folder.')
  return None


def _run_mode(mode, config):
  if mode == 'train':
    from cyclegan_tf.training import train  # pylint: disable=g-import-not-at-top
    train.train_and_evaluate(config, FLAGS.workdir)
  elif mode == 'summary':
    from cyclegan_tf.models import networks  # pylint: disable=g-import-not-at-top
    print(networks.summarize(config.model))
  elif mode == 'evaluate':
    from cyclegan_tf.evaluation import evaluate  # pylint: disable=g-import-not-at-top
    evaluate.evaluate(config, FLAGS.workdir, step=FLAGS.step)
  elif mode == 'export':
    from cyclegan_tf.deploy import export  # pylint: disable=g-import-not-at-top
    export.export_run(config, FLAGS.workdir, FLAGS.export_dir, step=FLAGS.step)
  elif mode == 'translate':
    if not FLAGS.input or not FLAGS.output:
      raise app.UsageError('--mode=translate needs --input and --output.')
    if sum(bool(f) for f in (FLAGS.workdir, FLAGS.saved_model, FLAGS.model)) != 1:
      raise app.UsageError('--mode=translate needs exactly one of --workdir (a run), '
                           '--saved_model or --model (an export: SavedModel, .tflite, .onnx).')
    from cyclegan_tf.deploy import translate  # pylint: disable=g-import-not-at-top
    translate.translate_paths(config, FLAGS.input, FLAGS.output, workdir=FLAGS.workdir,
                              saved_model=FLAGS.saved_model, direction=FLAGS.direction,
                              step=FLAGS.step, model=FLAGS.model)
  elif mode == 'convert':
    if not FLAGS.pth or not FLAGS.output:
      raise app.UsageError('--mode=convert needs --pth (a .pth file) and --output (a folder).')
    from cyclegan_tf.deploy import convert  # pylint: disable=g-import-not-at-top
    convert.convert_file(FLAGS.pth, FLAGS.output, config, role=FLAGS.role,
                         explicit_fields=_explicit_model_fields(config))
  elif mode == 'benchmark':
    from cyclegan_tf.training import benchmark  # pylint: disable=g-import-not-at-top
    benchmark.run(config, read_dataset=FLAGS.read_dataset)
  elif mode == 'pretrained':
    _run_pretrained(config)


def _run_pretrained(config):
  """--mode=pretrained: --list, or --name and --output."""
  if FLAGS.list:
    from cyclegan_tf.deploy import pretrained  # pylint: disable=g-import-not-at-top
    print('\n'.join(pretrained.list_models()))
    return
  if not FLAGS.name or not FLAGS.output:
    raise app.UsageError('--mode=pretrained needs --name (see --list) and --output (a folder), '
                         'or --list.')
  if FLAGS.base_url:  # the named model's family: CycleGAN or pix2pix
    config.pretrained.base_url = config.pretrained.pix2pix_base_url = FLAGS.base_url
  from cyclegan_tf.deploy import pretrained  # pylint: disable=g-import-not-at-top
  pretrained.fetch(FLAGS.name, FLAGS.output, config, _explicit_model_fields(config))


def _quiet_tensorflow_startup():
  """TF's C++ log level, before TF is imported: warnings off; and without an NVIDIA driver,
  errors too, because the CUDA build of TF logs "failed call to cuInit: CUDA error" as an
  ERROR at every start on such a machine, which is harmless there (failures still reach us as
  Python exceptions). TF_CPP_MIN_LOG_LEVEL set by the user wins."""
  has_nvidia_driver = os.path.exists('/proc/driver/nvidia/version')
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2' if has_nvidia_driver else '3')


if __name__ == '__main__':
  _quiet_tensorflow_startup()
  sys.exit(app.run(main))
