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
    .lock              who writes the run now (process, host, mode): one writer at a time

Whoever consumes a run (evaluate, export, translate, benchmark) restores from these artifacts
(config.json + a checkpoint) through restore_generators, never from the trainer's module.
Which config wins where is configuration.mode_config's rule. Paths go through tf.io.gfile, so a
run directory on GCS works too; writes are atomic (a temporary file renamed into place).
"""

import contextlib
import datetime
import errno
import fcntl
import json
import os
import re
import socket

from absl import logging
import ml_collections
import tensorflow as tf

from cyclegan_tf import configuration
from cyclegan_tf.data import images
from cyclegan_tf.models import family
from cyclegan_tf.models import networks

CONFIG_FILE = 'config.json'
CHECKPOINTS = 'checkpoints'
CHECKPOINT_PREFIX = 'ckpt'
TRAIN_LOGS = os.path.join('logs', 'train')
EVAL_LOGS = os.path.join('logs', 'eval')
SAMPLES = 'samples'
EVAL = 'eval'
EXPORT = 'export'
METRICS_FILE = 'metrics.json'
LOCK_FILE = '.lock'
# Characters TensorFlow's checkpoint code reads as a glob pattern (tf.io.gfile.glob).
GLOB_CHARACTERS = '*?[]'
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
# The path itself.


class RunDirError(OSError):
  """The run directory cannot be used as given: its name, a lock held by another writer."""


def _is_local(path):
  return '://' not in path


def check_workdir(workdir):
  """Refuses a run directory whose path TensorFlow cannot use for checkpoints; returns it.

  TensorFlow looks checkpoints up by glob (latest_checkpoint, CheckpointManager's pruning), so
  in a path holding [ ] * or ? the newest checkpoint is never found again: every rerun would
  start at step 1 over the old checkpoints. Raises RunDirError naming the characters and a
  name that works, before anything is read or written.
  """
  path = os.path.abspath(workdir) if _is_local(workdir) else workdir
  found = sorted({ch for ch in path if ch in GLOB_CHARACTERS})
  if found:
    table = str.maketrans({'[': '(', ']': ')', '*': '_', '?': '_'})
    raise RunDirError(
        f'The run directory {path!r} holds {" ".join(found)}: TensorFlow reads checkpoint paths '
        'as glob patterns, so its checkpoints could not be found again (every rerun would '
        'start at step 1). Use a path without [ ] * ?, e.g. '
        f'--workdir={workdir.translate(table)!r}; nothing was written.')
  return workdir


def describe_error(error, cause_only=True):
  """A failed read or write in one line, without TensorFlow's op decorations: the cause alone
  ('No space left on device', 'Read-only file system', ...), or with the path TF names."""
  if isinstance(error, OSError) and error.strerror:
    return error.strerror if cause_only else f'{error.filename}: {error.strerror}'
  text = images.decode_error_reason(error)
  # TF names the file first, then the cause after the last ';'.
  return (text.rsplit('; ', 1)[-1] if cause_only else text) or type(error).__name__


def save_checkpoint(manager, step):
  """manager.save(step) that leaves no partial checkpoint behind when the write fails.

  TF writes a checkpoint into ckpt-N_temp/ and renames it into place; a failed write (disk
  full, read-only) leaves that folder, removed here. Returns the checkpoint's path prefix.
  Raises RunDirError naming the checkpoint, the cause and the newest complete checkpoint.
  """
  try:
    return manager.save(checkpoint_number=step)
  except (tf.errors.OpError, OSError) as e:
    target = os.path.join(manager.directory, f'{CHECKPOINT_PREFIX}-{int(step)}')
    for partial in tf.io.gfile.glob(glob_escape(target) + '_temp*'):
      tf.io.gfile.rmtree(partial)
    kept = manager.latest_checkpoint
    raise RunDirError(
        f'Could not save checkpoint {target}: {describe_error(e)}. '
        f'{f"The newest complete checkpoint, {kept}, is kept" if kept else "No checkpoint was kept"}'
        '; free space (or make the folder writable) and rerun the same command to resume.'
    ) from None


def glob_escape(path):
  """`path` with TensorFlow's glob characters escaped for tf.io.gfile.glob."""
  return re.sub(r'([*?\[\]])', r'[\1]', path)


# ---------------------------------------------------------------------------------------------
# One writer at a time.


def lock_path(workdir):
  return os.path.join(workdir, LOCK_FILE)


def _process_alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's process
    return True
  return True


def _describe_holder(holder):
  return (f'process {holder.get("pid", "?")} on host {holder.get("host", "?")} '
          f'({holder.get("mode", "?")}, since {holder.get("since", "?")})')


@contextlib.contextmanager
def writer_lock(workdir, mode):
  """Holds WORKDIR/.lock while `mode` ('train', 'evaluate', 'export') writes the run.

  An advisory lock (flock) on the file, which the kernel releases when its process ends, even
  by kill -9; the file names the holder (pid, host, mode, start time) for the message a second
  writer gets. Creates `workdir` when missing, so a read-only or full disk fails here, at
  start-up; a directory this call created and left empty (a start that failed its checks) is
  removed on exit. Remote paths (gs://...) are not locked.

  Raises RunDirError when another process holds the lock (naming it), OSError when the
  directory cannot be written (read-only, permission denied, disk full).
  """
  if not _is_local(workdir):
    logging.info('%s is not a local path: it is not locked against a second writer.', workdir)
    yield
    return
  created = not os.path.isdir(workdir)
  os.makedirs(workdir, exist_ok=True)
  path = lock_path(workdir)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise
      raise RunDirError(
          f'{workdir} is in use by {_describe_holder(_read_holder(fd))}: two writers would '
          'overwrite each other\'s checkpoints. Wait for it to finish or stop it, or use '
          'another --workdir.') from None
    previous = _read_holder(fd)
    host = socket.gethostname()
    if previous.get('pid') and previous.get('pid') != os.getpid():
      alive = previous.get('host') == host and _process_alive(int(previous['pid']))
      logging.warning('Taking over the stale lock of %s in %s: %s.', _describe_holder(previous),
                      workdir, 'that process no longer holds it' if alive else
                      'that process is no longer running')
    holder = {'pid': os.getpid(), 'host': host, 'mode': mode,
              'since': datetime.datetime.now().isoformat(timespec='seconds')}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + '\n').encode(), 0)
    os.fsync(fd)
    try:
      yield
    finally:
      os.ftruncate(fd, 0)  # released: no holder to report
  finally:
    os.close(fd)  # closing releases the flock
    if created and os.listdir(workdir) == [LOCK_FILE]:
      os.remove(path)
      os.rmdir(workdir)


def _read_holder(fd):
  try:
    data = os.pread(fd, 4096, 0)
    return json.loads(data.decode()) if data.strip() else {}
  except (OSError, ValueError):
    return {}


# ---------------------------------------------------------------------------------------------
# Atomic writes.


def write_bytes(path, data):
  """Writes `data` to `path` through a temporary file renamed into place (never half a file)."""
  tf.io.gfile.makedirs(os.path.dirname(path) or '.')
  tmp = path + '.tmp'
  try:
    with tf.io.gfile.GFile(tmp, 'wb') as f:
      f.write(data)
    tf.io.gfile.rename(tmp, path, overwrite=True)
  except BaseException:
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.remove(tmp)
    raise


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
    saved = json.load(f)
  for field, value in configuration.ADDED_FIELDS.items():  # saved before the field existed
    group, name = field.split('.')
    saved.setdefault(group, {}).setdefault(name, value)
  return ml_collections.ConfigDict(saved)


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
  """The generators a run exports (its model's EXPORTS: G_A and G_B for cycle_gan), float32
  and ready for inference, from its newest (or step's) checkpoint.

  The networks are built from the run's own config.json (`config` is used only for a run
  without one). Returns ({role: Keras model}, restored step, the run's config).
  Raises FileNotFoundError for a missing run or checkpoint.
  """
  check_workdir(workdir)
  if has_config(workdir) or config is None:
    config = read_config(workdir)
  path = checkpoint_path(workdir, step)
  with networks.dtype_policy('float32'):
    nets = family.build_generators(config.model)
  step_var = tf.Variable(0, dtype=tf.int64)
  tf.train.Checkpoint(step=step_var, **nets).restore(path).expect_partial()
  return nets, int(step_var.numpy()), config
