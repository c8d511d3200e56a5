"""Entry point: parses flags and hands the config to the library, one call per mode.

  python main.py --config=configs/quickstart.py --workdir=runs/quickstart          # train
  python main.py --mode=evaluate --config=configs/quickstart.py --workdir=runs/quickstart
  python main.py --mode=export --config=configs/quickstart.py --workdir=runs/quickstart
  python main.py --mode=translate --workdir=runs/quickstart --input=IMG --output=DIR
  python main.py --mode=summary --config=configs/default.py
  python main.py --mode=convert --pth=horse2zebra.pth --output=converted/
  python main.py --mode=benchmark --config=configs/default.py --config.data.crop_size=128
"""

import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs',
                               'default.py')
MODES = ('train', 'evaluate', 'export', 'translate', 'summary', 'convert', 'benchmark')
# Modes that read or write a run directory.
_NEEDS_WORKDIR = ('train', 'evaluate', 'export')
_READS_RUN = ('evaluate', 'export', 'translate')

config_flags.DEFINE_config_file('config', _DEFAULT_CONFIG, 'Config file (configs/*.py).',
                                lock_config=True)
flags.DEFINE_enum('mode', 'train', MODES, 'What to do.')
flags.DEFINE_string('workdir', None, 'Run directory: checkpoints, logs, samples, evaluations.')
flags.DEFINE_string('export_dir', None, 'export: where SavedModels go (default WORKDIR/export).')
flags.DEFINE_string('input', None, 'translate: an image file, a folder or a glob.')
flags.DEFINE_string('output', None, 'translate: output folder for PNG files named after the '
                    'inputs (NAME.png); convert: output folder.')
flags.DEFINE_enum('direction', 'AtoB', ('AtoB', 'BtoA'), 'translate: which generator to use.')
flags.DEFINE_string('saved_model', None,
                    'translate: an exported or converted SavedModel instead of --workdir.')
flags.DEFINE_string('pth', None, 'convert: a reference PyTorch state dict (.pth).')
flags.DEFINE_enum('role', None, ('G_A', 'G_B', 'D_A', 'D_B'),
                  'convert: the network the .pth holds (default: from the file name).')
flags.DEFINE_integer('step', None, 'evaluate / export / translate: checkpoint step '
                     '(default: the latest).')
flags.DEFINE_bool('read_dataset', False, 'benchmark: feed the configured dataset instead of '
                  'random images.')
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  from cyclegan_tf import configuration  # pylint: disable=g-import-not-at-top
  config = FLAGS.config
  mode = FLAGS.mode
  # Modes that read a run build its networks and data from the run's own config.json.
  reads_run = mode in _READS_RUN and FLAGS.workdir and os.path.exists(
      os.path.join(FLAGS.workdir, 'config.json'))
  try:
    if not reads_run:
      configuration.validate(config)
  except configuration.ConfigError as e:
    raise app.UsageError(str(e)) from None
  if mode in _NEEDS_WORKDIR and not FLAGS.workdir:
    raise app.UsageError(f'--mode={mode} needs --workdir (the run directory).')

  try:
    return _run_mode(mode, config)
  except (FileNotFoundError, FileExistsError, RuntimeError, ValueError) as e:
    if not _is_user_error(e):
      raise
    print(f'Error: {e}', file=sys.stderr)
    return 1


def _is_user_error(error):
  """Errors whose message tells the user what to fix: printed without a traceback."""
  from cyclegan_tf import configuration  # pylint: disable=g-import-not-at-top
  from cyclegan_tf import input_pipeline  # pylint: disable=g-import-not-at-top
  from cyclegan_tf import train  # pylint: disable=g-import-not-at-top
  return isinstance(error, (FileNotFoundError, FileExistsError, configuration.ConfigError,
                            input_pipeline.DataError, train.NonFiniteLossError))


def _run_mode(mode, config):
  if mode == 'train':
    from cyclegan_tf import train  # pylint: disable=g-import-not-at-top
    train.train_and_evaluate(config, FLAGS.workdir)
  elif mode == 'summary':
    from cyclegan_tf import networks  # pylint: disable=g-import-not-at-top
    print(networks.summarize(config.model))
  elif mode == 'evaluate':
    from cyclegan_tf import evaluate  # pylint: disable=g-import-not-at-top
    evaluate.evaluate(config, FLAGS.workdir, step=FLAGS.step)
  elif mode == 'export':
    from cyclegan_tf import export  # pylint: disable=g-import-not-at-top
    export.export_run(config, FLAGS.workdir, FLAGS.export_dir, step=FLAGS.step)
  elif mode == 'translate':
    if not FLAGS.input or not FLAGS.output:
      raise app.UsageError('--mode=translate needs --input and --output.')
    if bool(FLAGS.workdir) == bool(FLAGS.saved_model):
      raise app.UsageError('--mode=translate needs exactly one of --workdir (a run) or '
                           '--saved_model (an export).')
    from cyclegan_tf import translate  # pylint: disable=g-import-not-at-top
    translate.translate_paths(config, FLAGS.input, FLAGS.output, workdir=FLAGS.workdir,
                              saved_model=FLAGS.saved_model, direction=FLAGS.direction,
                              step=FLAGS.step)
  elif mode == 'convert':
    if not FLAGS.pth or not FLAGS.output:
      raise app.UsageError('--mode=convert needs --pth (a .pth file) and --output (a folder).')
    from cyclegan_tf import convert  # pylint: disable=g-import-not-at-top
    convert.convert_file(FLAGS.pth, FLAGS.output, config, role=FLAGS.role)
  elif mode == 'benchmark':
    from cyclegan_tf import benchmark  # pylint: disable=g-import-not-at-top
    benchmark.run(config, read_dataset=FLAGS.read_dataset)


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  sys.exit(app.run(main))
