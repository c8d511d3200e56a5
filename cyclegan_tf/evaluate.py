"""Evaluation of a CycleGAN run on its test split: metrics, TensorBoard, pictures, HTML.

  python main.py --mode=evaluate --config=configs/quickstart.py --workdir=W [--step=N]

`evaluate(config, workdir, step=None)` restores G_A and G_B from the latest (or the given)
checkpoint of the run in `workdir` and calls `evaluate_generators`, which is also what the train
loop calls every config.train.eval_every_steps steps. The networks and the data come from the
run's own config.json (train.load_run_config); only the `eval` section is taken from the
`config` passed in (so --config.eval.num_images=... etc. on the command line apply).

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

Metrics (A and B are the model's domains after config.data.direction; x = the test images,
up to config.eval.num_images per domain, 0 = all):

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

The domain classifier is trained on up to CLASSIFIER_TRAIN_IMAGES images per domain from the
training pipeline (train_dataset(config, epoch=0): the training preprocessing, random crops and
flips), resized to the test image size (at most CLASSIFIER_MAX_SIZE px, square), for
config.eval.classifier_epochs epochs with seed config.eval.seed. It is saved as
W/eval/domain_classifier.keras and reused as long as its input size matches.
"""

import dataclasses
import json
import math
import os
import re
import threading
import time

from absl import logging
import ml_collections
import numpy as np
import tensorflow as tf

from cyclegan_tf import input_pipeline
from cyclegan_tf import metrics as metrics_lib
from cyclegan_tf import plots
from cyclegan_tf import train

EVAL_DIR = 'eval'
EVAL_LOGS = os.path.join('logs', 'eval')
TRAIN_LOGS = os.path.join('logs', 'train')
CLASSIFIER_FILE = 'domain_classifier.keras'
CLASSIFIER_INFO_FILE = 'domain_classifier.json'
CLASSIFIER_TRAIN_IMAGES = 500  # per domain (config.eval.classifier_train_images if present)
CLASSIFIER_MAX_SIZE = 128  # px: larger test images are downscaled for the classifier
GRID_ROWS = 6
TRANSLATE_BATCH = 8

# metrics.json keys in display order (those present are written in this order).
KEY_ORDER = (
    'step', 'swd_a2b', 'swd_baseline_a2b', 'swd_b2a', 'swd_baseline_b2a', 'cycle_l1_a',
    'cycle_l1_b', 'classifier_a2b', 'classifier_baseline_a2b', 'classifier_b2a',
    'classifier_baseline_b2a', 'classifier_accuracy', 'classifier_accuracy_a',
    'classifier_accuracy_b', 'psnr_a2b', 'psnr_baseline_a2b', 'ssim_a2b', 'ssim_baseline_a2b',
    'l1_a2b', 'l1_baseline_a2b', 'psnr_b2a', 'psnr_baseline_b2a', 'ssim_b2a',
    'ssim_baseline_b2a', 'l1_b2a', 'l1_baseline_b2a', 'fid_a2b', 'fid_baseline_a2b', 'kid_a2b',
    'kid_a2b_std', 'fid_b2a', 'fid_baseline_b2a', 'kid_b2a', 'kid_b2a_std', 'num_images_a',
    'num_images_b', 'num_paired')


# ---------------------------------------------------------------------------------------------
# Config and test data.


def eval_run_config(config, workdir):
  """The run's own config.json with the `eval` section of `config` (command-line overrides).

  Falls back to `config` when `workdir` holds no config.json."""
  try:
    run_config = train.load_run_config(workdir)
  except FileNotFoundError:
    return config
  if config is not None and 'eval' in config:
    run_config.eval = ml_collections.ConfigDict(config.eval.to_dict())
  return run_config


def _eval_field(config, name, default):
  section = config.get('eval') if hasattr(config, 'get') else None
  if section is None:
    return default
  value = section.get(name, default)
  return default if value is None else value


@dataclasses.dataclass
class TestData:
  """Test images of both domains (float32 [N, H, W, C] in [-1, 1]) and the paired truth."""
  a: np.ndarray
  b: np.ndarray
  names_a: list
  names_b: list
  paired: object = None  # input_pipeline.PairedTestSet(a, b_true) or None


_TEST_DATA = {}
_TEST_DATA_LOCK = threading.Lock()


def _stack_test_images(config, domain, max_images):
  """The test split of one domain as one array; images of different sizes (preprocess none /
  scale_width) are resized to the most common size (logged)."""
  try:
    return input_pipeline.load_test_arrays(config, domain, max_images=max_images)
  except input_pipeline.DataError:
    pass
  images = []
  for image in input_pipeline.test_dataset(config, domain).as_numpy_iterator():
    images.append(image)
    if max_images and len(images) >= max_images:
      break
  sizes = [im.shape[:2] for im in images]
  target = max(set(sizes), key=sizes.count)
  logging.info('Test images of domain %s have %d different sizes; evaluating them resized to '
               '%dx%d.', domain, len(set(sizes)), target[0], target[1])
  return np.stack([_resize(im[None], target)[0] if im.shape[:2] != target else im
                   for im in images])


def load_test_data(config):
  """The test images the evaluation uses (memoised per data config and eval.num_images)."""
  num = int(_eval_field(config, 'num_images', 0) or 0)
  key = json.dumps({'data': config.data.to_dict(), 'model': config.model.to_dict(),
                    'num': num}, sort_keys=True, default=str)
  with _TEST_DATA_LOCK:
    if key in _TEST_DATA:
      return _TEST_DATA[key]
  a = _stack_test_images(config, 'A', num)
  b = _stack_test_images(config, 'B', num)
  names_a = list(input_pipeline.test_names(config, 'A'))[:len(a)]
  names_b = list(input_pipeline.test_names(config, 'B'))[:len(b)]
  try:
    paired = input_pipeline.paired_test_set(config, max_images=num)
  except input_pipeline.DataError as e:
    logging.warning('No paired metrics: %s', e)
    paired = None
  data = TestData(a=a, b=b, names_a=names_a, names_b=names_b, paired=paired)
  with _TEST_DATA_LOCK:
    _TEST_DATA.clear()  # one data set at a time: test splits can be large
    _TEST_DATA[key] = data
  return data


# ---------------------------------------------------------------------------------------------
# Array helpers.


def _rgb(images):
  images = np.asarray(images, np.float32)
  return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def _resize(images, size):
  """[N, H, W, C] -> [N, size[0], size[1], C] (antialiased bilinear), float32."""
  images = np.asarray(images, np.float32)
  if tuple(images.shape[1:3]) == tuple(size):
    return images
  out = tf.image.resize(images, size, method='bilinear', antialias=True)
  return np.clip(out.numpy(), -1.0, 1.0).astype(np.float32)


def translate(generator, images, batch_size=TRANSLATE_BATCH):
  """generator(images) in inference mode, in batches, as float32 numpy (any compute dtype)."""
  out = []
  for start in range(0, len(images), batch_size):
    y = generator(tf.constant(images[start:start + batch_size]), training=False)
    out.append(tf.cast(y, tf.float32).numpy())
  return np.concatenate(out, axis=0)


# ---------------------------------------------------------------------------------------------
# Domain classifier.


def classifier_size(image_shape):
  """Square input size of the domain classifier for test images of shape (H, W, ...)."""
  return int(max(16, min(image_shape[0], image_shape[1], CLASSIFIER_MAX_SIZE)))


def _classifier_input(images, size):
  return _resize(_rgb(images), (size, size))


def _train_images(config, count):
  """Up to `count` training images per domain from epoch 0 of the training pipeline."""
  got = {'A': [], 'B': []}
  total = 0
  for batch in input_pipeline.train_dataset(config, epoch=0).as_numpy_iterator():
    for d in got:
      got[d].extend(batch[d])
    total += len(batch['A'])
    if total >= count:
      break
  return {d: np.stack(v[:count]) for d, v in got.items()}


def domain_classifier(config, workdir, size, write=True):
  """The A-vs-B classifier for `size` px images: W/eval/domain_classifier.keras when it exists
  and takes that size, else trained on the run's training images (and saved when `write`)."""
  import keras  # pylint: disable=g-import-not-at-top
  eval_dir = os.path.join(workdir, EVAL_DIR)
  path = os.path.join(eval_dir, CLASSIFIER_FILE)
  if tf.io.gfile.exists(path):
    try:
      model = keras.models.load_model(path, compile=False)
      if tuple(model.input_shape[1:]) == (size, size, 3):
        logging.info('Reusing the domain classifier %s.', path)
        return model
      logging.info('The cached domain classifier %s takes %s images, not %dx%d: training a new '
                   'one.', path, model.input_shape[1:3], size, size)
    except Exception as e:  # pylint: disable=broad-except  # a corrupt or foreign file
      logging.warning('Cannot load %s (%s: %s): training a new domain classifier.', path,
                      type(e).__name__, e)
  count = int(_eval_field(config, 'classifier_train_images', CLASSIFIER_TRAIN_IMAGES))
  epochs = int(_eval_field(config, 'classifier_epochs', 5))
  seed = int(_eval_field(config, 'seed', 0))
  start = time.perf_counter()
  images = _train_images(config, count)
  a, b = (_classifier_input(images[d], size) for d in ('A', 'B'))
  model = metrics_lib.train_domain_classifier(a, b, epochs=epochs, seed=seed)
  train_acc = 0.5 * (metrics_lib.classifier_share(model, a, 'A') +
                     metrics_lib.classifier_share(model, b, 'B'))
  elapsed = time.perf_counter() - start
  logging.info('Trained the domain classifier on %d + %d training images at %d px, %d epochs, '
               'in %.1f s (training accuracy %.3f).', len(a), len(b), size, epochs, elapsed,
               train_acc)
  if write:
    tf.io.gfile.makedirs(eval_dir)
    tmp = os.path.join(eval_dir, 'domain_classifier.tmp.keras')
    model.save(tmp)
    tf.io.gfile.rename(tmp, path, overwrite=True)
    info = {'image_size': size, 'train_images': {'A': len(a), 'B': len(b)}, 'epochs': epochs,
            'seed': seed, 'train_accuracy': train_acc, 'seconds': round(elapsed, 2)}
    plots._write_text(os.path.join(eval_dir, CLASSIFIER_INFO_FILE),  # pylint: disable=protected-access
                      json.dumps(info, indent=2) + '\n')
  return model


# ---------------------------------------------------------------------------------------------
# FID / KID.

_EXTRACTORS = {}


def _keras_cache_candidates():
  homes = []
  if os.environ.get('KERAS_HOME'):
    homes.append(os.environ['KERAS_HOME'])
  homes += [os.path.join(os.path.expanduser('~'), '.keras'), os.path.join('/tmp', '.keras')]
  return [os.path.join(h, 'models', metrics_lib.INCEPTION_NOTOP_WEIGHTS_FILE) for h in homes]


def inception_extractor(config):
  """InceptionV3 features from config.eval.inception_weights or Keras' cache, else None (a
  warning says how to enable FID / KID). Never downloads. Memoised per weights file."""
  path = _eval_field(config, 'inception_weights', '')
  if not path:
    candidates = _keras_cache_candidates()
    path = next((p for p in candidates if os.path.isfile(p)), None)
    if path is None:
      logging.warning(
          'FID/KID skipped: no InceptionV3 weights (config.eval.inception_weights is empty and '
          'the Keras cache (%s) has no %s). Download %s and pass '
          '--config.eval.inception_weights=PATH (or put it in the cache) to get fid_* / kid_* '
          'metrics.', ', '.join(os.path.dirname(p) for p in candidates) or 'none',
          metrics_lib.INCEPTION_NOTOP_WEIGHTS_FILE, metrics_lib.INCEPTION_NOTOP_WEIGHTS_URL)
      return None
  if path not in _EXTRACTORS:
    _EXTRACTORS[path] = metrics_lib.inception_feature_extractor(path)  # None: warning logged
  return _EXTRACTORS[path]


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


def translate_test_data(data, G_A, G_B):
  fake_b = translate(G_A, data.a)
  fake_a = translate(G_B, data.b)
  out = Translations(fake_b=fake_b, rec_a=translate(G_B, fake_b), fake_a=fake_a,
                     rec_b=translate(G_A, fake_a))
  if data.paired is not None:
    p = data.paired
    same_a = p.a.shape == data.a.shape and np.array_equal(p.a, data.a)
    out.paired_fake_b = fake_b if same_a else translate(G_A, p.a)
    same_b = p.b_true.shape == data.b.shape and np.array_equal(p.b_true, data.b)
    out.paired_fake_a = fake_a if same_b else translate(G_B, p.b_true)
  return out


def _swd(images, target, seed):
  target = _rgb(target)
  images = _resize(_rgb(images), target.shape[1:3])
  return metrics_lib.sliced_wasserstein_distance(images, target, seed=seed)['mean']


def compute_metrics(data, tr, classifier=None, extractor=None, seed=0):
  """Every metric of one evaluation (without "step"); see the module docstring."""
  m = {}
  m['swd_a2b'] = _swd(tr.fake_b, data.b, seed)
  m['swd_baseline_a2b'] = _swd(data.a, data.b, seed)
  m['swd_b2a'] = _swd(tr.fake_a, data.a, seed)
  m['swd_baseline_b2a'] = _swd(data.b, data.a, seed)
  m['cycle_l1_a'] = metrics_lib.cycle_l1(data.a, tr.rec_a)
  m['cycle_l1_b'] = metrics_lib.cycle_l1(data.b, tr.rec_b)

  if classifier is not None:
    size = int(classifier.input_shape[1])
    share = lambda images, domain: metrics_lib.classifier_share(
        classifier, _classifier_input(images, size), domain)
    m['classifier_a2b'] = share(tr.fake_b, 'B')
    m['classifier_baseline_a2b'] = share(data.a, 'B')
    m['classifier_b2a'] = share(tr.fake_a, 'A')
    m['classifier_baseline_b2a'] = share(data.b, 'A')
    acc_a = 1.0 - m['classifier_baseline_a2b']
    acc_b = 1.0 - m['classifier_baseline_b2a']
    m['classifier_accuracy'] = (acc_a * len(data.a) + acc_b * len(data.b)) / (
        len(data.a) + len(data.b))
    m['classifier_accuracy_a'] = acc_a
    m['classifier_accuracy_b'] = acc_b

  if data.paired is not None and tr.paired_fake_b is not None:
    p = data.paired
    for direction, inputs, fake, truth in (('a2b', p.a, tr.paired_fake_b, p.b_true),
                                           ('b2a', p.b_true, tr.paired_fake_a, p.a)):
      if fake is None or inputs.shape[1:] != truth.shape[1:] or fake.shape != truth.shape:
        continue  # e.g. input_nc != output_nc: no pixel-wise baseline
      truth3, fake3, in3 = _rgb(truth), _rgb(fake), _rgb(inputs)
      m[f'psnr_{direction}'] = metrics_lib.psnr(fake3, truth3)
      m[f'psnr_baseline_{direction}'] = metrics_lib.psnr(in3, truth3)
      m[f'ssim_{direction}'] = metrics_lib.ssim(fake3, truth3)
      m[f'ssim_baseline_{direction}'] = metrics_lib.ssim(in3, truth3)
      m[f'l1_{direction}'] = metrics_lib.l1(fake3, truth3)
      m[f'l1_baseline_{direction}'] = metrics_lib.l1(in3, truth3)

  if extractor is not None:
    if min(len(data.a), len(data.b)) < 2:
      logging.warning('FID/KID skipped: they need at least 2 test images per domain.')
    else:
      for direction, fake, source, target in (('a2b', tr.fake_b, data.a, data.b),
                                              ('b2a', tr.fake_a, data.b, data.a)):
        res = metrics_lib.fid_kid(_rgb(target), _rgb(fake), extractor, seed=seed)
        base = metrics_lib.fid_kid(_rgb(target), _rgb(source), extractor, seed=seed)
        m[f'fid_{direction}'] = res['fid']
        m[f'fid_baseline_{direction}'] = base['fid']
        m[f'kid_{direction}'] = res['kid']
        m[f'kid_{direction}_std'] = res['kid_std']

  m['num_images_a'] = int(len(data.a))
  m['num_images_b'] = int(len(data.b))
  m['num_paired'] = int(len(data.paired.a)) if data.paired is not None else 0
  return m


def _ordered(metrics):
  keys = [k for k in KEY_ORDER if k in metrics] + sorted(k for k in metrics if k not in KEY_ORDER)
  return {k: metrics[k] for k in keys}


def _json_value(value):
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  if isinstance(value, (int, np.integer)):
    return int(value)
  if isinstance(value, (float, np.floating)):
    return float(value) if math.isfinite(value) else None
  return value


# ---------------------------------------------------------------------------------------------
# Outputs.

_WRITERS = {}


def _is_chief():
  """False on the non-chief workers of a multi-worker run (TF_CONFIG), which write nothing."""
  raw = os.environ.get('TF_CONFIG')
  if not raw:
    return True
  try:
    tf_config = json.loads(raw)
  except ValueError:
    return True
  task = tf_config.get('task', {})
  task_type, task_id = task.get('type'), int(task.get('index', 0) or 0)
  if 'chief' in tf_config.get('cluster', {}):
    return task_type == 'chief'
  return task_type in (None, 'worker') and task_id == 0


def tensorboard_tag(key):
  """TensorBoard tag of a metric: grouped by family, e.g. swd_a2b -> swd/swd_a2b."""
  return f'{key.split("_")[0]}/{key}'


def write_tensorboard(workdir, step, metrics):
  logdir = os.path.join(workdir, EVAL_LOGS)
  if logdir not in _WRITERS or not tf.io.gfile.isdir(logdir):  # one events file per run dir
    _WRITERS[logdir] = tf.summary.create_file_writer(logdir)
  writer = _WRITERS[logdir]
  with writer.as_default(step=int(step)):
    for key, value in metrics.items():
      if key == 'step' or key.startswith('num_'):
        continue
      if isinstance(value, (int, float)) and math.isfinite(value):
        tf.summary.scalar(tensorboard_tag(key), float(value))
  writer.flush()


def _stems(names, count):
  """File-name-safe unique stems of the test images' names."""
  stems, seen = [], set()
  for i in range(count):
    name = names[i] if i < len(names) else f'{i:05d}'
    stem = os.path.splitext(os.path.basename(str(name).rstrip('/')))[0]
    stem = re.sub(r'[^A-Za-z0-9._-]+', '_', stem).strip('._') or f'{i:05d}'
    if stem in seen:
      stem = f'{stem}_{i}'
    seen.add(stem)
    stems.append(stem)
  return stems


def write_pictures(workdir, step, metrics, data, tr, config=None):
  """Grids, per-image PNGs, the step's index.html and the eval-wide pages and plots."""
  eval_dir = os.path.join(workdir, EVAL_DIR)
  step_dir = os.path.join(eval_dir, str(int(step)))
  image_dir = os.path.join(step_dir, 'images')
  tf.io.gfile.makedirs(image_dir)
  rows = int(_eval_field(config, 'grid_rows', GRID_ROWS)) if config is not None else GRID_ROWS

  # Ground truth aligned with the test images, when the paired set is the test set.
  true_b = (data.paired.b_true if data.paired is not None and tr.paired_fake_b is tr.fake_b
            else None)
  true_a = (data.paired.a if data.paired is not None and tr.paired_fake_a is tr.fake_a
            else None)

  sections = []
  for direction, src, dst, real, fake, rec, truth, names in (
      ('a2b', 'A', 'B', data.a, tr.fake_b, tr.rec_a, true_b, data.names_a),
      ('b2a', 'B', 'A', data.b, tr.fake_a, tr.rec_b, true_a, data.names_b)):
    columns = [real, fake, rec] + ([truth] if truth is not None else [])
    g, f = (('G_A', 'G_B') if src == 'A' else ('G_B', 'G_A'))
    titles = [f'real {src}', f'{g}({src})', f'{f}({g}({src}))'] + (
        [f'true {dst}'] if truth is not None else [])
    stems = _stems(names, len(real))
    plots.result_grid(columns, os.path.join(step_dir, f'grid_{direction}.png'), titles,
                      max_rows=rows, row_labels=stems, title=f'{src} -> {dst}, step {step}')
    suffixes = [f'real_{src}', f'fake_{dst}', f'rec_{src}'] + (
        [f'true_{dst}'] if truth is not None else [])
    table = []
    for i, stem in enumerate(stems):
      paths = []
      for suffix, column in zip(suffixes, columns):
        rel = f'images/{stem}_{suffix}.png'
        plots.save_png(column[i], os.path.join(step_dir, rel))
        paths.append(rel)
      table.append((stem, paths))
    sections.append((f'{src} -> {dst}', titles, table))

  width = int(min(256, max(96, data.a.shape[2])))
  plots.step_html(step_dir, step, metrics, sections,
                  pictures=('grid_a2b.png', 'grid_b2a.png'), thumb_width=width)

  pictures = []
  if plots.loss_curves(os.path.join(workdir, TRAIN_LOGS),
                       os.path.join(eval_dir, 'loss_curves.png'), title='Training'):
    pictures.append('loss_curves.png')
  if plots.metrics_over_steps(eval_dir, os.path.join(eval_dir, 'metrics_over_steps.png'),
                              title='Test metrics'):
    pictures.append('metrics_over_steps.png')
  plots.index_html(eval_dir, pictures=pictures, title=f'Evaluations of {workdir}',
                   preferred_keys=KEY_ORDER)


# ---------------------------------------------------------------------------------------------
# Entry points.


def evaluate_generators(config, workdir, G_A, G_B, step, *, pictures=True):
  """Evaluates G_A (A -> B) and G_B (B -> A) on the test split; writes W/eval/<step>/...,
  the eval TensorBoard scalars and the pages; returns the metrics (with "step").

  Called by the train loop every config.train.eval_every_steps steps and by evaluate(). On the
  non-chief workers of a multi-worker run it does nothing and returns {}."""
  step = int(step)
  if not _is_chief():
    return {}
  start = time.perf_counter()
  seed = int(_eval_field(config, 'seed', 0))
  data = load_test_data(config)
  tr = translate_test_data(data, G_A, G_B)
  classifier = domain_classifier(config, workdir, classifier_size(data.a.shape[1:]))
  extractor = inception_extractor(config)
  metrics = compute_metrics(data, tr, classifier=classifier, extractor=extractor, seed=seed)
  metrics = _ordered({'step': step, **{k: _json_value(v) for k, v in metrics.items()}})

  step_dir = os.path.join(workdir, EVAL_DIR, str(step))
  tf.io.gfile.makedirs(step_dir)
  plots._write_text(os.path.join(step_dir, plots.METRICS_FILE),  # pylint: disable=protected-access
                    json.dumps(metrics, indent=2) + '\n')
  write_tensorboard(workdir, step, metrics)
  if pictures:
    write_pictures(workdir, step, metrics, data, tr, config)
  logging.info('Evaluation at step %d (%d A + %d B test images, %.1f s): %s', step,
               len(data.a), len(data.b), time.perf_counter() - start,
               '  '.join(f'{k} {plots.format_value(v)}' for k, v in metrics.items()
                         if k != 'step'))
  return metrics


def evaluate(config, workdir, step=None):
  """`--mode=evaluate`: the latest (or `step`'s) checkpoint of the run in `workdir`."""
  run_config = eval_run_config(config, workdir)
  nets, loaded_step = train.load_generators(run_config, workdir, step=step)
  logging.info('Evaluating %s at step %d.', workdir, loaded_step)
  return evaluate_generators(run_config, workdir, nets['G_A'], nets['G_B'], loaded_step)
