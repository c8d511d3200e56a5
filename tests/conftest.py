"""Shared pytest setup for cyclegan_tf's tests.

Keep the tests small: the machine has 2 CPU cores shared by several people (tiny nets, 16-64 px).
"""

import os
import subprocess
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# The repository root, so `pytest` works without installing the package; tests/, so the
# tests of each package (tests/<package>/) import this module and the shared helpers.
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TESTS_DIR)
for _path in (TESTS_DIR, REPO_ROOT):
  if _path not in sys.path:
    sys.path.insert(0, _path)

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.fixture
def default_config():
  """A fresh configs/default.py config per test (ConfigDicts are mutable: never share one)."""
  from configs import default  # pylint: disable=g-import-not-at-top
  return default.get_config()


def tiny_config(**overrides):
  """A CycleGAN small enough to train a few steps in seconds: synthetic_seasons, 32 px.

  `overrides` are dotted field names: tiny_config(**{'train.max_steps': 4}).
  """
  from configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.model.netG = 'resnet_6blocks'
  config.model.ngf = 4
  config.model.ndf = 4
  config.data.dataset = 'synthetic_seasons'
  config.data.load_size = 36
  config.data.crop_size = 32
  config.data.synthetic_train_size = 12
  config.data.synthetic_test_size = 4
  config.train.n_epochs = 1
  config.train.n_epochs_decay = 1
  config.train.log_every_steps = 2
  config.train.image_every_steps = 4
  config.train.checkpoint_every_steps = 4
  for name, value in overrides.items():
    node = config
    *parents, leaf = name.split('.')
    for part in parents:
      node = node[part]
    node[leaf] = value
  return config


@pytest.fixture(scope='session')
def trained_run(tmp_path_factory):
  """(config, workdir) of a finished tiny run of 24 steps (2 epochs), shared by many tests."""
  from cyclegan_tf.training import train  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path_factory.mktemp('trained_run'))
  # A higher learning rate than the reference's so that 24 steps visibly learn.
  config = tiny_config(**{'train.log_every_steps': 4, 'train.checkpoint_every_steps': 8,
                          'train.lr': 0.002})
  train.train_and_evaluate(config, workdir)
  return config, workdir


@pytest.fixture(scope='session')
def exported_run(tmp_path_factory):
  """A tiny run exported once by export.export_run, shared by the export, translate and serving
  tests (an export costs seconds of tracing and saving).

  G_A is a float32 resnet_6blocks (ngf 4); G_B was built under mixed_bfloat16, so the export
  must rebuild it in float32. run_dir.restore_generators is replaced by a stand-in that returns
  them (step 7). Fields: config, workdir, export_dir (= workdir/export), paths ({model name:
  version dir}), generators ({'G_A', 'G_B'}: float32 Keras models with the exported weights),
  step.
  """
  import types  # pylint: disable=g-import-not-at-top
  import keras  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top
  from cyclegan_tf.deploy import export  # pylint: disable=g-import-not-at-top
  from cyclegan_tf.models import networks  # pylint: disable=g-import-not-at-top
  from cyclegan_tf import run_dir  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.model.netG = 'resnet_6blocks'
  config.model.ngf = 4
  workdir = tmp_path_factory.mktemp('exported_run')
  g_a = networks.define_G(3, 3, 4, 'resnet_6blocks', name='G_A', seed=1)
  previous_policy = keras.config.dtype_policy()
  keras.config.set_dtype_policy('mixed_bfloat16')
  try:
    g_b_mixed = networks.define_G(3, 3, 4, 'resnet_6blocks', name='G_B', seed=2)
  finally:
    keras.config.set_dtype_policy(previous_policy)
  g_b = networks.define_G(3, 3, 4, 'resnet_6blocks', name='G_B')
  g_b.set_weights(g_b_mixed.get_weights())
  calls = []

  def restore_generators(wd, step=None, cfg=None):
    calls.append((wd, step))
    return {'G_A': g_a, 'G_B': g_b_mixed}, 7, cfg

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(run_dir, 'restore_generators', restore_generators)
    paths = export.export_run(config, str(workdir))
  return types.SimpleNamespace(
      config=config, workdir=str(workdir), export_dir=str(workdir / 'export'), paths=paths,
      generators={'G_A': g_a, 'G_B': g_b}, calls=calls, step=7)


# Two trainings that should be the same up to float rounding (another op order, other kernels,
# separate or joined calls) are compared by what their weights DO, not weight by weight: Adam's
# first steps move every weight whose gradient is within rounding of zero by a full +-lr either
# way, on any CPU, and such a weight barely changes any output. A wrong gradient does. With
# torch's Adam (epsilon 1e-8 after the bias correction; Keras' larger effective epsilon damped
# them) those steps are whole: 2 replicas vs one device after 3 steps measured 0.023 (G_A),
# while 2 more steps of one run (a real difference) measured 0.47 to 0.65.
EQUIVALENCE_BOUND = 0.05  # output gap / output movement per network


def output_gaps(got, want, initial, images):
  """{network: mean |f_got(x) - f_want(x)| / mean |f_want(x) - f_initial(x)|}.

  got, want, initial: {name: Keras model} with the weights to compare (after training) and
  the weights training started from; images: float32 [N, H, W, C] in [-1, 1] they all take.
  """
  gaps = {}
  for name, model in want.items():
    f_want = model(images, training=False).numpy()
    f_got = got[name](images, training=False).numpy()
    f_init = initial[name](images, training=False).numpy()
    gaps[name] = float(np.abs(f_got - f_want).mean() / np.abs(f_want - f_init).mean())
  return gaps


def run_main(*args, cwd=REPO_ROOT, env=None, timeout=300):
  """main.py as a user runs it: (exit status, stdout, stderr)."""
  done = subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'main.py'), *args], cwd=cwd,
                        capture_output=True, text=True, timeout=timeout,
                        env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2', **(env or {})})
  return done.returncode, done.stdout, done.stderr


def one_error_line(stderr):
  """The one 'Error: ' line of a user error, asserting there is no traceback."""
  assert 'Traceback' not in stderr, stderr[-3000:]
  errors = [line for line in stderr.splitlines() if line.startswith('Error: ')]
  assert len(errors) == 1, stderr[-3000:]
  return errors[0]


def run_resumed_at(straight, resumed, step):
  """Makes `resumed` (a pathlib folder) a run directory holding `straight`'s config.json and
  its checkpoint of `step` as the latest, so training there resumes where `straight` was."""
  import glob  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  (resumed / 'checkpoints').mkdir(parents=True)
  shutil.copy(os.path.join(straight, 'config.json'), resumed / 'config.json')
  for path in glob.glob(os.path.join(straight, 'checkpoints', f'ckpt-{step}.*')):
    shutil.copy(path, resumed / 'checkpoints')
  tf.compat.v1.train.update_checkpoint_state(str(resumed / 'checkpoints'),
                                             str(resumed / 'checkpoints' / f'ckpt-{step}'))

