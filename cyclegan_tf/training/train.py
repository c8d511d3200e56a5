"""The train loop: resume, signals, summaries and checkpoint decisions around the train step.

train_and_evaluate(config, workdir) trains the config's model (config.model.name: any model of
the family, models/family.py), or resumes the run in `workdir`, and
leaves there what run_dir.py describes. The loop body is short named calls:

  for each epoch: set the learning rate, iterate the epoch's batches from the resume position;
  each step: train_step (no host sync), then whatever is due at this step: log the losses
  (which also checks them for NaN / Inf), write sample images, end the epoch, save a
  checkpoint, evaluate, stop on a signal.

Resume is exact without saving a tf.data iterator: the input pipeline is a pure function of
(config, epoch, position), the position is `step`, and every random draw of the step is
stateless, seeded by (seed, step). config.json is written only when training really starts, so
a start that fails its checks leaves nothing that blocks the corrected command. Side tasks
(summaries, sample grids, the evaluation hook) that fail are logged and never stop training.
"""

import contextlib
import dataclasses
import signal

from absl import logging
import keras
import tensorflow as tf

from cyclegan_tf import configuration
from cyclegan_tf import distribute
from cyclegan_tf.evaluation import evaluate
from cyclegan_tf.training import init_from
from cyclegan_tf.training import reporting
from cyclegan_tf.data import input_pipeline
from cyclegan_tf.models import precision as precision_lib
from cyclegan_tf import run_dir
from cyclegan_tf.training import schedules
from cyclegan_tf.training import train_state as train_state_lib

NonFiniteLossError = train_state_lib.NonFiniteLossError


class _StopSignal:
  """Turns SIGTERM / SIGINT into a request to checkpoint and stop after the current step."""

  def __init__(self):
    self.received = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: leave signals alone
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    self.received = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


@dataclasses.dataclass
class _Due:
  """What a step must do besides training."""
  log: bool
  images: bool
  end_of_epoch: bool
  save: bool
  evaluate: bool

  @property
  def fetches(self):
    return self.log or self.images or self.save or self.evaluate


def _due(step, epoch_step, config, steps_per_epoch, total_steps):
  c = config.train
  last = step == total_steps
  end_of_epoch = epoch_step == steps_per_epoch
  return _Due(log=step % c.log_every_steps == 0 or last,
              images=step % c.image_every_steps == 0 or last,
              end_of_epoch=end_of_epoch,
              save=step % c.checkpoint_every_steps == 0 or end_of_epoch or last,
              evaluate=bool(c.eval_every_steps) and step % c.eval_every_steps == 0)


def _side_task(what, step, function, *args):
  """Runs a side task (summaries, evaluation); a failure is logged, training goes on."""
  try:
    function(*args)
  except (OSError, tf.errors.OpError) as e:  # a full or read-only disk: one line, no traceback
    logging.warning('%s failed at step %d (%s); training continues without it.', what, step,
                    run_dir.describe_error(e, cause_only=False))
  except Exception:  # pylint: disable=broad-except
    logging.exception('%s failed at step %d; training continues without it.', what, step)


def _restore_or_initialise(state, workdir, strategy, config):
  """Restores the newest checkpoint, else init_from weights; returns the checkpoint or None."""
  latest = run_dir.latest_checkpoint(workdir)
  if latest:
    state.checkpoint.restore(latest).assert_existing_objects_matched()
    logging.info('Resumed from %s at step %d.', latest, int(state.step.numpy()))
    saved_replicas = int(state.replicas_at_save.numpy())
    if saved_replicas != strategy.num_replicas_in_sync:
      logging.info('The run was saved with %d replica(s) and resumes with %d: the image pools '
                   'start empty.', saved_replicas, strategy.num_replicas_in_sync)
      state.model.reset_replica_state()
      state.replicas_at_save.assign(strategy.num_replicas_in_sync)
  elif config.train.init_from:
    loaded = init_from.load_init_weights(state.model.networks, config.train.init_from)
    logging.info('Initialised %s from %s.', ', '.join(loaded), config.train.init_from)
  return latest


def _make_deterministic(strategy_name):
  """Bit-identical runs (config.train.deterministic): TF's deterministic ops, and one thread
  inside each op and one between ops, because a CPU kernel's summation order can follow how
  its thread pool splits the work, and concurrent ops share the pools (a resumed run's pools
  differed by 1e-7 from an uninterrupted one's under CPU load with op determinism alone, and
  with one thread inside each op alone). Strategies with collectives (mirrored, multi_worker,
  tpu) keep ops side by side: their collectives need it. The pools can be sized only before
  TensorFlow starts its runtime; in a process where it has started (a notebook, a test) this
  is said."""
  tf.config.experimental.enable_op_determinism()
  threading = tf.config.threading
  wanted = {threading.set_intra_op_parallelism_threads: threading.get_intra_op_parallelism_threads}
  if strategy_name == 'default':
    wanted[threading.set_inter_op_parallelism_threads] = (
        threading.get_inter_op_parallelism_threads)
  for set_threads, get_threads in wanted.items():
    try:
      set_threads(1)
    except RuntimeError:
      if get_threads() != 1:
        logging.warning(
            'config.train.deterministic: TensorFlow had started in this process before '
            'training, so its thread pools cannot be limited to one thread; results may differ '
            'in the last bits under load. Train through main.py (a fresh process) for '
            'bit-identical runs.')
        return


def _reconcile_schedule(state, pipeline, resumed):
  """Keeps the checkpointed schedule when the train set changed since the last checkpoint.

  The epoch and the position in it stay as saved (so the learning rate does not move); the
  change is logged in one line with the counts. A position past the end of a now shorter epoch
  ends that epoch. Records the current sizes for the next checkpoint.
  """
  sizes = [pipeline.info.train_size[d] for d in ('A', 'B')]
  saved = [int(v) for v in state.train_sizes.numpy()]
  epoch, position = int(state.epoch.numpy()), int(state.epoch_step.numpy())
  steps_per_epoch = pipeline.steps_per_epoch
  c = state.config.train
  if resumed and any(saved) and saved != sizes:
    saved_steps = max(saved) // c.batch_size
    where = (f'epoch {c.epoch_count + epoch} had {position} batches done, all the new epoch '
             f'holds: epoch {c.epoch_count + epoch + 1} starts'
             if position >= steps_per_epoch else
             f'epoch {c.epoch_count + epoch} continues at batch {position + 1} of '
             f'{steps_per_epoch}')
    logging.warning(
        'The training set changed since the last checkpoint: A %d -> %d, B %d -> %d images (%d '
        '-> %d steps per epoch). The schedule keeps its place: %s, learning rate unchanged.',
        saved[0], sizes[0], saved[1], sizes[1], saved_steps, steps_per_epoch, where)
  if position >= steps_per_epoch:
    state.end_epoch()
  state.train_sizes.assign(sizes)


def _learning_rate_note(workdir, config):
  """Logs a learning rate that differs from the run's config.json (continuing with another)."""
  if run_dir.has_config(workdir):
    before = run_dir.read_config(workdir).train.lr
    if before != config.train.lr:
      logging.info('config.train.lr changes from %g (the run\'s config.json) to %g: the '
                   'schedule continues with the new base rate.', before, config.train.lr)


def train_and_evaluate(config, workdir):
  """Trains (or resumes) the run in `workdir`; returns the final step.

  Holds the run directory's lock (run_dir.writer_lock; the chief only under multi-worker) from
  start-up to the end. Raises ConfigError / DataError at start-up for a config or data that
  cannot work (nothing is written then), RunDirError for a path TensorFlow cannot use or a run
  directory another process writes, OSError for one that cannot be written, NonFiniteLossError
  when a loss becomes NaN or Inf (naming the step; the newest checkpoint is the last good one).
  """
  config = configuration.normalize_paths(configuration.validate(config))
  run_dir.check_workdir(workdir)
  c = config.train
  if c.deterministic:
    _make_deterministic(c.strategy)
  keras.utils.set_random_seed(c.seed)
  strategy = distribute.make_strategy(c)
  distribute.log_replicas(strategy)
  chief = distribute.is_chief(strategy)
  lock = run_dir.writer_lock(workdir, 'train') if chief else contextlib.nullcontext()
  with lock:
    return _train(config, workdir, strategy, chief)


def _train(config, workdir, strategy, chief):
  c = config.train
  run_dir.check_resume(workdir, config)
  pipeline = input_pipeline.InputPipeline(config)
  steps_per_epoch = pipeline.steps_per_epoch
  precision, reason = precision_lib.resolve(c.precision, strategy)
  logging.info('Precision %s (%s).', precision, reason)
  state = train_state_lib.TrainState(train_state_lib.build_model(
      config, strategy, precision, train_shapes=pipeline.train_shapes,
      max_train_shapes=pipeline.max_train_shapes))
  # Every worker saves (saving may use collectives); non-chief workers into a temporary
  # directory removed after each save. Every worker resumes from the chief's checkpoints.
  ckpt_root = run_dir.checkpoints_dir(workdir)
  manager = tf.train.CheckpointManager(
      state.checkpoint, distribute.worker_dir(ckpt_root, strategy),
      max_to_keep=c.max_to_keep, step_counter=state.step,
      checkpoint_name=run_dir.CHECKPOINT_PREFIX)
  latest = _restore_or_initialise(state, workdir, strategy, config)
  _reconcile_schedule(state, pipeline, bool(latest))
  step = int(state.step.numpy())
  total = schedules.total_steps(c, steps_per_epoch, step, int(state.epoch.numpy()),
                                int(state.epoch_step.numpy()))
  if step >= total:
    logging.info('%s', schedules.finished_message(step, config.train, int(state.epoch.numpy())))
    return step

  if chief:  # training really starts: from now on this directory is this run
    _learning_rate_note(workdir, config)
    run_dir.write_config(workdir, config)
  writer = (tf.summary.create_file_writer(run_dir.train_logs_dir(workdir)) if chief else
            tf.summary.create_noop_writer())
  if step == 0:
    with writer.as_default(step=0):
      tf.summary.text('config', '```\n' + configuration.to_json(config) + '\n```')
  samples = reporting.fixed_samples(pipeline)
  # Built now, so a bad config.eval fails before training; it loads its models on first use.
  evaluator = evaluate.Evaluator(config, pipeline, workdir) if c.eval_every_steps else None
  progress = reporting.Progress(c.batch_size)
  watch = reporting.ExplosionWatch()
  last_saved = step if latest else None

  def save(reason):
    path = run_dir.save_checkpoint(manager, step)
    distribute.remove_worker_dir(ckpt_root, strategy)
    logging.info('Saved checkpoint %s (%s).', path, reason)
    return path

  try:
    with _StopSignal() as stop:
      while step < total:
        epoch, start = int(state.epoch.numpy()), int(state.epoch_step.numpy())
        lr = state.set_learning_rate(epoch)
        dataset = strategy.experimental_distribute_dataset(
            pipeline.train_dataset(epoch, start_step=start))
        if None in (pipeline.train_shapes['A'], pipeline.train_shapes['B']):
          # Images keep their own sizes: one trace for all of them, not one per size.
          state.train_step.get_concrete_function(dataset.element_spec)
        batches = 0
        for batch in dataset:
          state.train_step(batch)
          batches += 1
          step += 1
          progress.step_done(state)
          due = _due(step, start + batches, config, steps_per_epoch, total)
          # All workers must stop (and save) at the same step, even if one got the signal;
          # across workers that takes a collective, so it is asked only when the loop syncs.
          ask = due.fetches or due.end_of_epoch or not distribute.is_multi_worker(strategy)
          stopping = ask and distribute.any_worker(strategy, stop.received)
          if due.fetches or due.end_of_epoch or stopping:
            _check_finite(state)  # before anything is written from these weights
          if due.log:
            reporting.log_losses(state, writer, step, total, epoch, lr, progress, watch)
          if due.images:
            _side_task('Sample images', step, reporting.write_samples, state, samples, writer,
                       workdir, step, chief)
          if due.end_of_epoch:
            state.end_epoch()
          if due.save or stopping:
            latest = save(f'signal {stop.received or "on another worker"}' if stopping else
                          'periodic')
            last_saved = step
          if due.evaluate:
            _side_task('Evaluation', step, evaluator.run, state.model.generators(), step)
            progress.pause()  # keep evaluation out of images/s
          if stopping:
            logging.info('Received %s: checkpoint saved at step %d; rerun the same command to '
                         'resume.', stop.received or 'a stop signal on another worker', step)
            writer.flush()
            return step
          if step >= total or due.end_of_epoch:
            break
        if not batches:
          raise RuntimeError(f'Epoch {c.epoch_count + epoch} produced no batch at step {step}: '
                             'the dataset holds fewer images than config.train.batch_size.')
    if last_saved != step:
      _check_finite(state)
      save('final')
  except NonFiniteLossError as e:
    raise NonFiniteLossError(_non_finite_message(e, latest, c.lr)) from None
  writer.flush()
  logging.info('%s', schedules.finished_message(step, config.train, int(state.epoch.numpy())))
  return step


def _non_finite_message(error, latest, lr):
  """The NaN / Inf stop's message: which checkpoint is good and how to continue from it."""
  kept = (f'the newest checkpoint, {latest}, is the last good one (nothing was saved from '
          'the diverged weights)' if latest else 'no checkpoint was written')
  how = (f'To continue from it with a lower learning rate, rerun the same command with '
         f'--config.train.lr={lr / 10:g} (or lower)' if latest else
         f'Start again with a lower --config.train.lr (e.g. {lr / 10:g})')
  return (f'{error}: {kept}. {how}; flat or constant images, extreme pixel values and '
          'gan_mode=vanilla with a high lr are the usual causes.')


def _check_finite(state):
  """Raises NonFiniteLossError if any step since the start had a NaN / Inf loss."""
  bad_step = int(state.first_bad_step.numpy())
  if bad_step >= 0:
    state.fetch_losses()  # raises, naming the step and the losses
