"""The run directory: the only module that knows its layout.

  WORKDIR/
    config.json        the config the run trains with (written once training really starts)
    checkpoints/       ckpt-N: step, epoch, G_A, G_B, D_A, D_B, both optimizers, image pools,
                       LR state (tf.train.CheckpointManager)
    logs/train/        TensorBoard: losses, learning rates, images/s, images, the config
    logs/eval/         TensorBoard: evaluation metrics
    samples/           step_N.png grids of real | translated | reconstructed images
    eval/              eval/<step>/ metrics.json, grids, pages; the domain classifier
    export/            <model name>/<version>/ SavedModels (TF Serving's layout)

Whoever consumes a run (evaluate, export, translate, benchmark) restores from these artifacts
(config.json + a checkpoint) through restore_generators, never from the trainer's module.
Which config wins where is configuration.mode_config's rule. Paths go through tf.io.gfile, so a
run directory on GCS works too; writes are atomic (a temporary file renamed into place).
"""

import json
import os

from absl import logging
import ml_collections
import tensorflow as tf

from cyclegan_tf import configuration
from cyclegan_tf import networks

CONFIG_FILE = 'config.json'
CHECKPOINTS = 'checkpoints'
CHECKPOINT_PREFIX = 'ckpt'
TRAIN_LOGS = os.path.join('logs', 'train')
EVAL_LOGS = os.path.join('logs', 'eval')
SAMPLES = 'samples'
EVAL = 'eval'
EXPORT = 'export'
METRICS_FILE = 'metrics.json'
# Names of the objects in a checkpoint that consumers restore.
GENERATORS = ('G_A', 'G_B')


def config_path(workdir):
  return os.path.join(workdir, CONFIG_FILE)


def checkpoints_dir(workdir):
  return os.path.join(workdir, CHECKPOINTS)


def train_logs_dir(workdir):
  return os.path.join(workdir, TRAIN_LOGS)


def eval_logs_dir(workdir):
  return os.path.join(workdir, EVAL_LOGS)


def samples_path(workdir, step):
  """samples/step_NNNNNNN.png: the sample grid of a step."""
  return os.path.join(workdir, SAMPLES, f'step_{int(step):07d}.png')


def eval_dir(workdir, step=None):
  """eval/, or eval/<step>/ for one evaluation."""
  base = os.path.join(workdir, EVAL)
  return base if step is None else os.path.join(base, str(int(step)))


def export_dir(workdir):
  return os.path.join(workdir, EXPORT)


def metrics_path(workdir, step):
  """eval/<step>/metrics.json."""
  return os.path.join(eval_dir(workdir, step), METRICS_FILE)


def classifier_path(workdir):
  """eval/domain_classifier.keras (its description: the same name with .json)."""
  return os.path.join(eval_dir(workdir), 'domain_classifier.keras')


def read_eval_metrics(workdir):
  """The metrics of every evaluation of the run (eval/<step>/metrics.json), sorted by step;
  unreadable files are skipped with a warning."""
  out = []
  for path in tf.io.gfile.glob(os.path.join(eval_dir(workdir), '*', METRICS_FILE)):
    try:
      with tf.io.gfile.GFile(path) as f:
        metrics = json.load(f)
    except (ValueError, tf.errors.OpError) as e:
      logging.warning('Skipping unreadable %s: %s', path, e)
      continue
    if isinstance(metrics, dict) and isinstance(metrics.get('step'), int):
      out.append(metrics)
  return sorted(out, key=lambda m: m['step'])


# ---------------------------------------------------------------------------------------------
# Atomic writes.


def write_bytes(path, data):
  """Writes `data` to `path` through a temporary file renamed into place (never half a file)."""
  tf.io.gfile.makedirs(os.path.dirname(path) or '.')
  tmp = path + '.tmp'
  with tf.io.gfile.GFile(tmp, 'wb') as f:
    f.write(data)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def write_text(path, text):
  write_bytes(path, text.encode('utf-8'))


# ---------------------------------------------------------------------------------------------
# The run's config.


def has_config(workdir):
  return bool(workdir) and tf.io.gfile.exists(config_path(workdir))


def read_config(workdir):
  """The run's config.json as a ConfigDict.

  Raises FileNotFoundError naming the path when `workdir` is not a run directory.
  """
  path = config_path(workdir)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'{path} not found: {workdir} is not a training run directory '
                            '(train one with `python main.py --config=... --workdir=DIR`).')
  with tf.io.gfile.GFile(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def check_resume(workdir, config):
  """Refuses to continue a run in `workdir` with a config that changes its architecture or data.

  Returns True when the run exists (a resume), False for a new run. Raises ConfigError listing
  every differing field that may not change (configuration.RESUMABLE_CHANGES may).
  """
  if not has_config(workdir):
    return False
  conflicts = configuration.resume_conflicts(read_config(workdir).to_dict(), config)
  if conflicts:
    raise configuration.ConfigError(
        f'{workdir} holds a run with a different config; resuming it with this one would mix '
        'runs. Use a new --workdir, or the run\'s own config. Differing fields:\n  ' +
        '\n  '.join(conflicts))
  return True


def write_config(workdir, config):
  """Writes config.json (atomically); call once training really starts."""
  write_text(config_path(workdir), configuration.to_json(config))


def config_for_mode(workdir, cli_config, mode):
  """The config a mode runs with on `workdir`: configuration.mode_config of the run's own
  config.json and the command line's, or the command line's alone when there is no run."""
  if not has_config(workdir):
    return cli_config
  return configuration.mode_config(read_config(workdir), cli_config, mode)


# ---------------------------------------------------------------------------------------------
# Checkpoints.


def latest_checkpoint(workdir):
  """Path prefix of the newest checkpoint, or None."""
  return tf.train.latest_checkpoint(checkpoints_dir(workdir))


def checkpoint_path(workdir, step=None):
  """The newest checkpoint's path prefix, or step's. Raises FileNotFoundError when absent."""
  directory = checkpoints_dir(workdir)
  if step is None:
    path = latest_checkpoint(workdir)
  else:
    path = os.path.join(directory, f'{CHECKPOINT_PREFIX}-{int(step)}')
    if not tf.io.gfile.exists(path + '.index'):
      path = None
  if path is None:
    raise FileNotFoundError(
        f'No checkpoint{"" if step is None else f" for step {step}"} in {directory}; train '
        'first or pick an existing --step.')
  return path


def restore_generators(workdir, step=None, config=None):
  """G_A and G_B of a run, float32 and ready for inference, from its newest (or step's)
  checkpoint.

  The networks are built from the run's own config.json (`config` is used only for a run
  without one). Returns ({'G_A': model, 'G_B': model}, restored step, the run's config).
  Raises FileNotFoundError for a missing run or checkpoint.
  """
  if has_config(workdir) or config is None:
    config = read_config(workdir)
  path = checkpoint_path(workdir, step)
  with networks.dtype_policy('float32'):
    nets = networks.build_cyclegan(config.model, with_discriminators=False,
                                   gemm_last_conv=False)
  step_var = tf.Variable(0, dtype=tf.int64)
  tf.train.Checkpoint(step=step_var, **nets).restore(path).expect_partial()
  return nets, int(step_var.numpy()), config
