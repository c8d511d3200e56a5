"""Evaluation of a run on its test split: metrics, TensorBoard, pictures, HTML.

  python main.py --mode=evaluate --config=configs/quickstart.py --workdir=W [--step=N]

`evaluate(config, workdir, step=None)` restores the generators the run's model exports (G_A
and G_B for cycle_gan) from the latest (or the given) checkpoint of the run in `workdir`
(run_dir.restore_generators) and runs an Evaluator, which is also what the train loop runs
every config.train.eval_every_steps steps: built once with the config, the input pipeline and
the run directory, then `run({'a2b': G_A, 'b2a': G_B}, step)`. It knows nothing of the trainer
or of the model beyond its generators' directions; with one direction only its metrics and
pictures are made. The networks and the data come from the run's own config.json; the `eval`
section from the command line (configuration.mode_config).

What one evaluation at step S writes (on the chief only):

  W/eval/S/metrics.json          the metrics below, "step" an integer (non-finite values: null)
  W/eval/S/grid_a2b.png          real A | G_A(A) | G_B(G_A(A)) [| true B], the first rows
  W/eval/S/grid_b2a.png          real B | G_B(B) | G_A(G_B(B)) [| true A]
  W/eval/S/images/*.png          every test image: <name>_real_A, _fake_B, _rec_A [, _true_B],
                                 <name>_real_B, _fake_A, _rec_B (the reference's names)
  W/eval/S/index.html            the reference-style results page: metrics, grids, and a table
                                 of thumbnails per test image, each linked to its PNG
  W/eval/index.html              every evaluation's step and metrics
  W/eval/loss_curves.png         losses, learning rates and images/s from W/logs/train
  W/eval/metrics_over_steps.png  the metrics of every W/eval/*/metrics.json against the step
  W/eval/domain_classifier.keras the domain classifier (+ .json), trained once and reused
  W/logs/eval/                   TensorBoard scalars "<family>/<key>", e.g. swd/swd_a2b

Metrics come from the evaluators config.eval.metrics names (evaluators/: swd, cycle,
classifier, paired, fid_kid; plug-ins, each yielding (name, value)), in that order; A and B are
the model's domains after config.data.direction, on up to config.eval.num_images test images
per domain (0 = all):

  swd_a2b / swd_baseline_a2b   sliced Wasserstein distance (x1e3, metrics.py) of G_A(A) to
                               real B / of untranslated A to real B; lower = closer to B.
  swd_b2a / swd_baseline_b2a   the same for G_B(B) and B against real A.
  cycle_l1_a / cycle_l1_b      mean |A - G_B(G_A(A))| / |B - G_A(G_B(B))| in [-1, 1] units.
  classifier_a2b / _b2a        share of G_A(A) classified as B / of G_B(B) classified as A by a
                               small CNN trained on trainA vs trainB (1 = fully translated).
  classifier_baseline_a2b/_b2a share of untranslated A classified as B / B as A.
  classifier_accuracy[_a, _b]  the classifier's accuracy on the real test images.
  psnr/ssim/l1_a2b (+ _baseline_a2b)
                               against ground truth when the data has pairs (synthetic_seasons:
                               the winter render of each test A scene; folder datasets whose
                               testA and testB hold the same file names): G_A(A) vs true B and,
                               as the baseline, untranslated A vs true B.
  psnr/ssim/l1_b2a (+ _baseline_b2a)
                               the same pairs the other way: G_B(true B) vs A.
  fid_a2b, fid_baseline_a2b, kid_a2b, kid_a2b_std (and _b2a)
                               with InceptionV3 weights only (config.eval.inception_weights, or
                               the no-top file in Keras' cache ~/.keras/models); without them a
                               warning is logged and these keys are left out. No download is
                               attempted.
  num_images_a, num_images_b, num_paired   how many images the metrics saw.

The domain classifier (domain_classifier.py) is trained on up to
config.eval.classifier_train_images images per domain from the training pipeline (epoch 0: the
training preprocessing, random crops and flips), resized to the test image size (at most 128
px, square), for config.eval.classifier_epochs epochs with seed config.eval.seed. It is saved
as W/eval/domain_classifier.keras and reused as long as its input size matches.
"""

import dataclasses
import json
import math
import time

from absl import logging
import numpy as np
import tensorflow as tf

from cyclegan_tf import distribute
from cyclegan_tf.data import images as images_lib
from cyclegan_tf.models import base
from cyclegan_tf.models import family
from cyclegan_tf.models import inference
from cyclegan_tf.data import input_pipeline
from cyclegan_tf.evaluation import evaluators as evaluators_lib
from cyclegan_tf.evaluation import pictures as pictures_lib
from cyclegan_tf import progress as progress_lib
from cyclegan_tf.evaluation import reports
from cyclegan_tf import run_dir

# ---------------------------------------------------------------------------------------------
# Test data.


@dataclasses.dataclass
class TestData:
  """Test images of both domains (float32 [N, H, W, C] in [-1, 1]) and the paired truth."""
  a: np.ndarray
  b: np.ndarray
  names_a: list
  names_b: list
  paired: object = None  # input_pipeline.PairedTestSet(a, b_true) or None


def _stack_test_images(pipeline, domain, max_images):
  """The test split of one domain as one array; images of different sizes (preprocess none /
  scale_width) are resized to the most common size (logged)."""
  try:
    return pipeline.load_test_arrays(domain, max_images=max_images)
  except input_pipeline.DataError:
    pass
  found = []
  for image in pipeline.test_dataset(domain).as_numpy_iterator():
    found.append(image)
    if max_images and len(found) >= max_images:
      break
  sizes = [im.shape[:2] for im in found]
  target = max(set(sizes), key=sizes.count)
  logging.info('Test images of domain %s have %d different sizes; evaluating them resized to '
               '%dx%d.', domain, len(set(sizes)), target[0], target[1])
  return np.stack([images_lib.resize_array(im[None], target)[0] for im in found])


def load_test_data(pipeline, num_images=0):
  """The test images an evaluation uses: up to num_images per domain (0: all)."""
  a = _stack_test_images(pipeline, 'A', num_images)
  b = _stack_test_images(pipeline, 'B', num_images)
  names_a = list(pipeline.test_names('A'))[:len(a)]
  names_b = list(pipeline.test_names('B'))[:len(b)]
  try:
    paired = pipeline.paired_test_set(max_images=num_images)
  except input_pipeline.DataError as e:
    logging.warning('No paired metrics: %s', e)
    paired = None
  return TestData(a=a, b=b, names_a=names_a, names_b=names_b, paired=paired)


# ---------------------------------------------------------------------------------------------
# Metrics.


@dataclasses.dataclass
class Translations:
  """The generators' outputs on the test data."""
  fake_b: np.ndarray  # G_A(A)
  rec_a: np.ndarray  # G_B(G_A(A))
  fake_a: np.ndarray  # G_B(B)
  rec_b: np.ndarray  # G_A(G_B(B))
  paired_fake_b: np.ndarray = None  # G_A(paired.a)
  paired_fake_a: np.ndarray = None  # G_B(paired.b_true)


def translate_test_data(data, generators):
  """The generators ({'a2b', 'b2a'}: Keras models, either may be absent) on the test data, the
  cycles where both exist, and on the paired inputs (Translations; None where a generator is
  absent)."""
  a2b, b2a = generators.get('a2b'), generators.get('b2a')
  p = data.paired
  extra_a = p is not None and not (p.a.shape == data.a.shape and np.array_equal(p.a, data.a))
  extra_b = p is not None and not (p.b_true.shape == data.b.shape and
                                   np.array_equal(p.b_true, data.b))
  both = a2b is not None and b2a is not None
  total = ((len(data.a) + (len(p.a) if extra_a else 0)) * (a2b is not None) +
           (len(data.b) + (len(p.b_true) if extra_b else 0)) * (b2a is not None) +
           (len(data.a) + len(data.b)) * both)
  progress = progress_lib.Progress('Evaluation: translated', total)

  def predict(generator, images):
    if generator is None or images is None:
      return None
    out = inference.predict(generator, images)
    progress.update(len(images))
    return out

  fake_b = predict(a2b, data.a)
  fake_a = predict(b2a, data.b)
  out = Translations(fake_b=fake_b, rec_a=predict(b2a, fake_b), fake_a=fake_a,
                     rec_b=predict(a2b, fake_a))
  if p is not None:
    out.paired_fake_b = predict(a2b, p.a) if extra_a else fake_b
    out.paired_fake_a = predict(b2a, p.b_true) if extra_b else fake_a
  return out


def _to_rgb(config, inputs, outputs):
  if outputs is None:
    return None
  return np.asarray(family.get(config.model).to_rgb(inputs, outputs))


def _converts(config):
  return family.get(config.model).to_rgb is not base.GANModel.to_rgb


def in_picture_space(config, data):
  """Test data whose B images are pictures: unchanged, or for a model in another colour space
  (colorization: B = ab of each A's lightness) converted by the model's to_rgb."""
  if not _converts(config):
    return data
  paired = data.paired
  if paired is not None:
    paired = input_pipeline.PairedTestSet(paired.a, _to_rgb(config, paired.a, paired.b_true))
  return dataclasses.replace(data, b=_to_rgb(config, data.a, data.b), paired=paired)


def outputs_in_picture_space(config, data, tr):
  """Translations whose a2b outputs are pictures (see in_picture_space)."""
  if not _converts(config):
    return tr
  fake_b = _to_rgb(config, data.a, tr.fake_b)
  paired_fake_b = (fake_b if tr.paired_fake_b is tr.fake_b else
                   _to_rgb(config, data.paired.a, tr.paired_fake_b))
  return dataclasses.replace(tr, fake_b=fake_b, paired_fake_b=paired_fake_b)


@dataclasses.dataclass
class Context:
  """What evaluators are built on: the config, the input pipeline, the run directory and the
  test data (some train or load models: the domain classifier, Inception)."""
  config: object
  pipeline: object
  workdir: str
  data: TestData


def compute_metrics(data, tr, evaluators):
  """Every metric of one evaluation (without "step"): each evaluator's (name, value) pairs in
  the evaluators' order, then the image counts."""
  m = {}
  for evaluator in evaluators:
    m.update(evaluator.run(data, tr))
  m['num_images_a'] = int(len(data.a))
  m['num_images_b'] = int(len(data.b))
  m['num_paired'] = int(len(data.paired.a)) if data.paired is not None else 0
  return m


def _json_value(value):
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  if isinstance(value, (int, np.integer)):
    return int(value)
  if isinstance(value, (float, np.floating)):
    return float(value) if math.isfinite(value) else None
  return value


# ---------------------------------------------------------------------------------------------
# Pictures.


def tensorboard_tag(key):
  """TensorBoard tag of a metric: grouped by family, e.g. swd_a2b -> swd/swd_a2b."""
  return f'{key.split("_")[0]}/{key}'


# ---------------------------------------------------------------------------------------------
# The evaluator and --mode=evaluate.


class Evaluator:
  """Evaluates a run's generators ({'a2b': A -> B, 'b2a': B -> A}) on its test split.

  Built once (test data, domain classifier, Inception features: loaded on the first run) and
  run at every evaluation step; it takes built generators and knows nothing of the trainer.
  """

  def __init__(self, config, pipeline, workdir):
    self.config = config
    self.pipeline = pipeline
    self.workdir = workdir
    self.metrics = evaluators_lib.names(config.eval.metrics)  # ConfigError now, not later
    self._data = self._evaluators = self._writer = None

  def _prepare(self):
    if self._data is None:
      self._data = in_picture_space(
          self.config, load_test_data(self.pipeline, int(self.config.eval.num_images or 0)))
    if self._evaluators is None:
      context = Context(self.config, self.pipeline, self.workdir, self._data)
      self._evaluators = evaluators_lib.build(self.config.eval.metrics, context)

  def _write_tensorboard(self, step, metrics):
    if self._writer is None:
      self._writer = tf.summary.create_file_writer(run_dir.eval_logs_dir(self.workdir))
    with self._writer.as_default(step=int(step)):
      for key, value in metrics.items():
        if key == 'step' or key.startswith('num_'):
          continue
        if isinstance(value, (int, float)) and math.isfinite(value):
          tf.summary.scalar(tensorboard_tag(key), float(value))
    self._writer.flush()

  def run(self, generators, step, pictures=True):
    """Metrics of one evaluation of `generators` ({'a2b', 'b2a'}: Keras models mapping float32
    [N, H, W, C] in [-1, 1]; a model with one direction gives one) (with "step"); writes eval/<step>/ (metrics.json, pictures,
    pages) and the eval TensorBoard scalars. On the non-chief workers of a multi-worker run it
    does nothing and returns {}."""
    step = int(step)
    if not distribute.is_chief_task():
      return {}
    start = time.perf_counter()
    self._prepare()
    data = self._data
    tr = outputs_in_picture_space(self.config, data, translate_test_data(data, generators))
    metrics = compute_metrics(data, tr, self._evaluators)
    metrics = {'step': step, **{k: _json_value(v) for k, v in metrics.items()}}
    run_dir.write_text(run_dir.metrics_path(self.workdir, step),
                       json.dumps(metrics, indent=2) + '\n')
    self._write_tensorboard(step, metrics)
    if pictures:
      pictures_lib.write_pictures(self.workdir, step, metrics, data, tr,
                                  self.config.eval.grid_rows)
    logging.info('Evaluation at step %d (%d A + %d B test images, %.1f s): %s', step,
                 len(data.a), len(data.b), time.perf_counter() - start,
                 '  '.join(f'{k} {reports.format_value(v)}' for k, v in metrics.items()
                           if k != 'step'))
    return metrics


def evaluate(config, workdir, step=None):
  """`--mode=evaluate`: the latest (or `step`'s) checkpoint of the run in `workdir`.

  The data come from the run's config.json unless `config` names another location
  (configuration.mode_config). Holds the run directory's lock while it writes (a training run
  in the same directory evaluates itself: config.train.eval_every_steps). Returns the metrics
  dict; raises FileNotFoundError (no run or checkpoint), RunDirError (another writer).
  """
  run_dir.check_workdir(workdir)
  run_config = run_dir.config_for_mode(workdir, config, 'evaluate')
  with run_dir.writer_lock(workdir, 'evaluate'):
    nets, loaded_step, _ = run_dir.restore_generators(workdir, step, run_config)
    logging.info('Evaluating %s at step %d.', workdir, loaded_step)
    pipeline = input_pipeline.InputPipeline(run_config)
    return Evaluator(run_config, pipeline, workdir).run(
        family.by_direction(run_config.model, nets), loaded_step)
