"""Evaluate mode end to end on the shared tiny trained run (tests/conftest.py: trained_run).

The metric functions themselves are tested in test_metrics.py. Here: what `--mode=evaluate`
and the train loop's evaluation write (metrics.json, pictures, HTML, TensorBoard scalars, the
classifier cache) and how they behave offline (no Inception weights). The trained run is copied
first, so the evaluations here never change the shared run other tests see.
"""

import html.parser
import json
import logging
import os
import shutil
import time

import numpy as np
from PIL import Image
import pytest

from conftest import tiny_config
from cyclegan_tf import configuration
from cyclegan_tf.evaluation import evaluate
from cyclegan_tf.evaluation import pictures
from cyclegan_tf.evaluation import evaluators
from cyclegan_tf.evaluation.evaluators import fid_kid
from cyclegan_tf.evaluation import inception
from cyclegan_tf.data import input_pipeline
from cyclegan_tf.models import networks
from cyclegan_tf.evaluation import plots
from cyclegan_tf import run_dir


REQUIRED_KEYS = (
    'step', 'swd_a2b', 'swd_baseline_a2b', 'swd_b2a', 'swd_baseline_b2a', 'cycle_l1_a',
    'cycle_l1_b', 'classifier_a2b', 'classifier_b2a', 'classifier_accuracy',
    'classifier_accuracy_a', 'classifier_accuracy_b', 'classifier_baseline_a2b',
    'classifier_baseline_b2a',
    # synthetic_seasons has ground truth; the pairs are used both ways.
    'psnr_a2b', 'psnr_baseline_a2b', 'ssim_a2b', 'ssim_baseline_a2b', 'l1_a2b', 'l1_baseline_a2b',
    'psnr_b2a', 'psnr_baseline_b2a', 'ssim_b2a', 'ssim_baseline_b2a', 'l1_b2a', 'l1_baseline_b2a',
    'num_images_a', 'num_images_b', 'num_paired')


class _Records(logging.Handler):
  """Collects log records of the absl logger (module-scoped fixtures cannot use caplog)."""

  def __init__(self):
    super().__init__(level=logging.DEBUG)
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


def _run_evaluate(config, workdir, step=None):
  records = _Records()
  logger = logging.getLogger('absl')
  logger.addHandler(records)
  level = logger.level
  logger.setLevel(logging.INFO)
  start = time.perf_counter()
  try:
    metrics = evaluate.evaluate(config, workdir, step=step)
  finally:
    logger.removeHandler(records)
    logger.setLevel(level)
  return metrics, records.messages, time.perf_counter() - start


@pytest.fixture(scope='module')
def evaluated(trained_run, tmp_path_factory):
  """The trained run copied, then evaluated once like `main.py --mode=evaluate` (offline)."""
  _, source = trained_run
  workdir = str(tmp_path_factory.mktemp('evaluated') / 'run')
  shutil.copytree(source, workdir, ignore=shutil.ignore_patterns('eval'))
  shutil.rmtree(os.path.join(workdir, 'logs', 'eval'), ignore_errors=True)
  empty_cache = str(tmp_path_factory.mktemp('keras_home') / 'models' / 'none.h5')
  with pytest.MonkeyPatch.context() as mp:
    # No Inception weights anywhere, whatever this machine's Keras cache holds.
    mp.setattr(inception, 'keras_cache_candidates', lambda: [empty_cache])
    config = tiny_config(**{'eval.classifier_epochs': 2})
    metrics, messages, seconds = _run_evaluate(config, workdir)
  step_dir = os.path.join(workdir, 'eval', str(metrics['step']))
  return {'workdir': workdir, 'metrics': metrics, 'messages': messages, 'seconds': seconds,
          'step_dir': step_dir, 'config': config}


def _check_png(path, min_side=64):
  assert os.path.isfile(path), path
  with Image.open(path) as image:
    assert image.format == 'PNG'
    image.load()
    assert min(image.size) >= min_side, (path, image.size)
    pixels = np.asarray(image.convert('RGB'))
  assert pixels.std() > 1.0, f'{path} is a blank picture'


class _Links(html.parser.HTMLParser):

  def __init__(self):
    super().__init__()
    self.hrefs, self.srcs = [], []

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == 'a' and 'href' in attrs:
      self.hrefs.append(attrs['href'])
    if tag == 'img' and 'src' in attrs:
      self.srcs.append(attrs['src'])


def _links(path):
  parser = _Links()
  with open(path, encoding='utf-8') as f:
    parser.feed(f.read())
  return parser


def test_metrics_json_has_every_key(evaluated):
  metrics = evaluated['metrics']
  path = os.path.join(evaluated['step_dir'], 'metrics.json')
  with open(path) as f:
    saved = json.load(f)
  assert saved == metrics
  assert isinstance(saved['step'], int) and saved['step'] == 24
  assert os.path.basename(evaluated['step_dir']) == '24'
  missing = [k for k in REQUIRED_KEYS if k not in saved]
  assert not missing, missing
  for key, value in saved.items():
    assert isinstance(value, (int, float)) and np.isfinite(value), (key, value)
  assert saved['num_images_a'] == saved['num_images_b'] == saved['num_paired'] == 4
  for key in ('swd_a2b', 'swd_baseline_a2b', 'swd_b2a', 'swd_baseline_b2a'):
    assert saved[key] > 0
  for key in ('classifier_a2b', 'classifier_b2a', 'classifier_accuracy'):
    assert 0.0 <= saved[key] <= 1.0
  # The baseline pairs are the same images both ways.
  assert saved['psnr_baseline_a2b'] == pytest.approx(saved['psnr_baseline_b2a'])


def test_fid_skipped_offline_with_a_message(evaluated):
  assert not [k for k in evaluated['metrics'] if k.startswith(('fid', 'kid'))]
  assert any('FID/KID skipped' in m and 'inception_weights' in m
             for m in evaluated['messages']), evaluated['messages']


def test_pictures_are_valid_pngs(evaluated):
  eval_dir = os.path.join(evaluated['workdir'], 'eval')
  for path in (os.path.join(evaluated['step_dir'], 'grid_a2b.png'),
               os.path.join(evaluated['step_dir'], 'grid_b2a.png'),
               os.path.join(eval_dir, 'loss_curves.png'),
               os.path.join(eval_dir, 'metrics_over_steps.png')):
    _check_png(path, min_side=200)


def test_index_html_links_every_translated_image(evaluated):
  step_dir = evaluated['step_dir']
  links = _links(os.path.join(step_dir, 'index.html'))
  targets = set(links.hrefs) | set(links.srcs)
  for rel in targets:
    if not rel.startswith('..'):
      assert os.path.isfile(os.path.join(step_dir, rel)), rel
  config = evaluated['config']
  for domain, fake in (('A', 'fake_B'), ('B', 'fake_A')):
    names = pictures._stems(  # pylint: disable=protected-access
        input_pipeline.InputPipeline(config).test_names(domain), 4)
    for name in names:
      rel = f'images/{name}_{fake}.png'
      assert rel in links.hrefs and rel in links.srcs, rel
      _check_png(os.path.join(step_dir, rel), min_side=32)
  translated = [f for f in os.listdir(os.path.join(step_dir, 'images')) if '_fake_' in f]
  assert len(translated) == 8
  # The page of all evaluations links this one.
  top = _links(os.path.join(evaluated['workdir'], 'eval', 'index.html'))
  assert '24/index.html' in top.hrefs
  assert {'loss_curves.png', 'metrics_over_steps.png'} <= set(top.srcs)


def test_tensorboard_eval_scalars(evaluated):
  scalars = plots.read_scalars(os.path.join(evaluated['workdir'], 'logs', 'eval'))
  metrics = evaluated['metrics']
  for key in ('swd_a2b', 'swd_baseline_a2b', 'classifier_a2b', 'cycle_l1_a', 'psnr_a2b'):
    steps, values = scalars[evaluate.tensorboard_tag(key)]
    assert list(steps) == [24]
    assert values[0] == pytest.approx(metrics[key], rel=1e-5)


def test_loss_curves_from_the_run_logs(evaluated, tmp_path):
  scalars = plots.read_scalars(os.path.join(evaluated['workdir'], 'logs', 'train'))
  steps, values = scalars['loss/cycle_A']
  assert list(steps) == [4, 8, 12, 16, 20, 24] and np.all(np.isfinite(values))
  path = plots.loss_curves(os.path.join(evaluated['workdir'], 'logs', 'train'),
                           str(tmp_path / 'curves.png'))
  _check_png(path, min_side=200)
  assert plots.loss_curves(str(tmp_path / 'no_logs'), str(tmp_path / 'none.png')) is None


def test_second_evaluate_reuses_the_classifier_and_the_run_config(evaluated):
  """Another step, from a command-line config of a different architecture: the run's own
  config.json builds the networks, eval.* overrides apply, the classifier is not retrained."""
  workdir = evaluated['workdir']
  classifier = run_dir.classifier_path(workdir)
  mtime = os.stat(classifier).st_mtime_ns
  from configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()  # resnet_9blocks, ngf 64: not the run's networks
  config.eval.num_images = 2
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(inception, 'keras_cache_candidates', lambda: [])
    metrics, messages, seconds = _run_evaluate(config, workdir, step=16)
  assert os.stat(classifier).st_mtime_ns == mtime
  assert any('Reusing the domain classifier' in m for m in messages)
  assert not any('Trained the domain classifier' in m for m in messages)
  assert metrics['step'] == 16 and metrics['num_images_a'] == metrics['num_images_b'] == 2
  assert os.path.isfile(os.path.join(workdir, 'eval', '16', 'metrics.json'))
  all_steps = [m['step'] for m in run_dir.read_eval_metrics(workdir)]
  assert all_steps == [16, 24]
  top = _links(os.path.join(workdir, 'eval', 'index.html'))
  assert {'16/index.html', '24/index.html'} <= set(top.hrefs)
  print(f'first evaluate {evaluated["seconds"]:.1f} s, second {seconds:.1f} s')


def test_missing_step_is_a_clear_error(evaluated):
  with pytest.raises(FileNotFoundError, match='step 5'):
    evaluate.evaluate(evaluated['config'], evaluated['workdir'], step=5)


def test_fid_kid_keys_with_an_extractor():
  """With Inception features available, fid_* / kid_* join the metrics (a stand-in extractor:
  the real weights are not available offline)."""
  rng = np.random.default_rng(0)
  images = lambda shift: np.clip(rng.normal(shift, 0.3, (6, 16, 16, 3)), -1, 1).astype(np.float32)
  data = evaluate.TestData(a=images(-0.3), b=images(0.3), names_a=[], names_b=[])
  tr = evaluate.Translations(fake_b=images(0.25), rec_a=images(-0.3), fake_a=images(-0.25),
                             rec_b=images(0.3))
  extractor = lambda x: np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1)
  context = evaluate.Context(tiny_config(), None, '', data)
  metrics = evaluate.compute_metrics(data, tr, [
      evaluators.EVALUATORS['swd'](context), fid_kid.Evaluator(context, extractor=extractor),
      evaluators.EVALUATORS['paired'](context)])
  for key in ('fid_a2b', 'fid_baseline_a2b', 'kid_a2b', 'kid_a2b_std', 'fid_b2a',
              'fid_baseline_b2a', 'kid_b2a', 'kid_b2a_std'):
    assert np.isfinite(metrics[key]), key
  assert metrics['fid_a2b'] < metrics['fid_baseline_a2b']
  assert metrics['swd_a2b'] < metrics['swd_baseline_a2b']
  assert metrics['num_paired'] == 0 and 'psnr_a2b' not in metrics


def test_inception_weights_path_missing_is_skipped(tmp_path):
  assert inception.inception_feature_extractor(str(tmp_path / 'missing.h5')) is None


def test_evaluator_takes_mixed_precision_generators(evaluated):
  """The train loop's call, Evaluator(config, pipeline, workdir).run(generators, step), with
  generators as a mixed_bfloat16 run trains them (bfloat16 outputs): same keys as evaluate
  mode. (Resuming the run with train.eval_every_steps would test the loop itself, at the cost
  of tracing a train step: ~30 s of CPU.)"""
  workdir = evaluated['workdir']
  nets, _, config = run_dir.restore_generators(workdir)
  with networks.dtype_policy('mixed_bfloat16'):
    mixed = networks.build_cyclegan(config.model, with_discriminators=False)
  for name in ('G_A', 'G_B'):
    mixed[name].set_weights(nets[name].get_weights())
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(inception, 'keras_cache_candidates', lambda: [])
    evaluator = evaluate.Evaluator(config, input_pipeline.InputPipeline(config), workdir)
    metrics = evaluator.run({'a2b': mixed['G_A'], 'b2a': mixed['G_B']}, 30, pictures=False)
  with open(os.path.join(workdir, 'eval', '30', 'metrics.json')) as f:
    assert json.load(f) == metrics
  assert metrics['step'] == 30 and set(metrics) == set(evaluated['metrics'])
  # bfloat16 activations: close to, not equal to, the float32 evaluation of the same weights.
  assert metrics['cycle_l1_a'] == pytest.approx(evaluated['metrics']['cycle_l1_a'], rel=0.05)


def test_evaluators_are_chosen_by_config_and_unknown_ones_refused(evaluated, tmp_path):
  """config.eval.metrics picks the plug-ins; the keys are theirs, in their order."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(evaluated['workdir'], workdir)  # the shared evaluation stays as it is
  config = tiny_config(**{'eval.metrics': 'cycle, swd'})
  metrics = evaluate.evaluate(config, workdir)
  assert list(metrics) == ['step', 'swd_a2b', 'swd_baseline_a2b', 'swd_b2a', 'swd_baseline_b2a',
                           'cycle_l1_a', 'cycle_l1_b', 'num_images_a', 'num_images_b',
                           'num_paired']
  assert metrics['swd_a2b'] == pytest.approx(evaluated['metrics']['swd_a2b'])
  bad = tiny_config(**{'eval.metrics': 'swd,fid'})
  with pytest.raises(configuration.ConfigError,
                     match=r"eval.metrics='swd,fid': fid is not an evaluator; allowed: swd, "
                           r'cycle, classifier, paired, fid_kid'):
    evaluate.Evaluator(bad, None, workdir)


def test_a_model_with_one_generator_gets_that_directions_metrics_and_pictures(evaluated,
                                                                             tmp_path):
  """The evaluator knows a model only by its generators' directions: with a2b alone there is
  no cycle and no b2a, and every a2b figure is the one the two-generator evaluation gave."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(evaluated['workdir'], workdir)
  nets, _, config = run_dir.restore_generators(workdir)
  config.eval.metrics = 'swd,cycle,classifier,paired'
  evaluator = evaluate.Evaluator(config, input_pipeline.InputPipeline(config), workdir)
  metrics = evaluator.run({'a2b': nets['G_A']}, 31)
  assert not [k for k in metrics if 'b2a' in k or k.startswith('cycle')], metrics
  for key in ('swd_a2b', 'classifier_a2b', 'psnr_a2b', 'ssim_a2b'):
    assert metrics[key] == pytest.approx(evaluated['metrics'][key], rel=1e-5), key
  pictures = sorted(os.listdir(os.path.join(workdir, 'eval', '31')))
  assert 'grid_a2b.png' in pictures and 'grid_b2a.png' not in pictures
  images = os.listdir(os.path.join(workdir, 'eval', '31', 'images'))
  assert images and all('rec_' not in name for name in images)
  assert any(name.endswith('_true_B.png') for name in images)
