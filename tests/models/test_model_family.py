"""The model family's seam: a model is one module (a models/base.py GANModel) and a name in
family.MODELS. A second model written here, with one generator and an L1 loss, trains, resumes,
exports, evaluates and translates through the same train loop, run directory, export and
evaluation, none of them edited for it."""

import json
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from conftest import tiny_config
from cyclegan_tf import configuration
from cyclegan_tf import run_dir
from cyclegan_tf.deploy import export
from cyclegan_tf.deploy import serving_model
from cyclegan_tf.deploy import translate
from cyclegan_tf.evaluation import evaluate
from cyclegan_tf.models import base
from cyclegan_tf.models import cycle_gan
from cyclegan_tf.models import family
from cyclegan_tf.models import networks
from cyclegan_tf.training import train


class OneWayL1(base.GANModel):
  """One generator G: A -> B trained on mean |G(A) - B| (no discriminator)."""

  NAME = 'one_way_l1'
  LOSS_NAMES = ('G_L1',)
  GENERATOR_TERMS = ('G_L1',)
  EXPORTS = {'G': 'a2b'}
  VISUAL_NAMES = ('real_A', 'fake_B', 'real_B')

  @classmethod
  def build_generators(cls, model_config):
    c = model_config
    return {'G': networks.generator_from_config(c, c.input_nc, c.output_nc, 'G',
                                                gemm_last_conv=False)}

  def __init__(self, config, strategy, precision='float32', **unused):
    super().__init__(config, strategy, precision)
    c = config.model
    with strategy.scope(), networks.dtype_policy(precision):
      self.G = networks.generator_from_config(c, c.input_nc, c.output_nc, 'G',
                                              seed=config.train.seed, gemm_last_conv=False)
      self.networks = {'G': self.G}
      self.optimizer = base.make_optimizer(config.train, precision)
      self.optimizers = {'optimizer_G': self.optimizer}
      self.optimizer.build(self.G.trainable_variables)

  def replica_step(self, batch, step):
    variables = self.G.trainable_variables
    with tf.GradientTape() as tape:
      fake_b = tf.cast(self.G(batch['A'], training=True), tf.float32)
      per_example = tf.reduce_mean(tf.abs(fake_b - batch['B']), axis=[1, 2, 3])
      loss = self.average(per_example)
    self.optimizer.apply_gradients(
        zip(self.gradients(self.optimizer, tape, loss, variables), variables))
    return {'G_L1': per_example}

  def visuals(self, real_a, real_b):
    return {'real_A': real_a, 'fake_B': self.G(real_a, training=False), 'real_B': real_b}


MODEL = OneWayL1


@pytest.fixture
def one_way_l1(monkeypatch):
  """Registers this module's model as config.model.name='one_way_l1'."""
  monkeypatch.setitem(family.MODELS, 'one_way_l1', __name__)
  return 'one_way_l1'


def _config(**overrides):
  return tiny_config(**{'model.name': 'one_way_l1', 'train.max_steps': 6,
                        'train.checkpoint_every_steps': 3, 'train.image_every_steps': 3,
                        'eval.metrics': 'swd,cycle,paired', **overrides})


def test_the_family_finds_models_by_name_and_refuses_others():
  assert family.get('cycle_gan') is cycle_gan.CycleGAN
  config = tiny_config()
  assert config.model.name == 'cycle_gan' and family.get(config.model) is cycle_gan.CycleGAN
  bad = tiny_config(**{'model.name': 'pix2pixHD'})
  with pytest.raises(configuration.ConfigError, match=r"model.name='pix2pixHD'.*cycle_gan"):
    configuration.validate(bad)


@pytest.mark.slow  # training runs
def test_a_second_model_trains_resumes_exports_evaluates_and_translates(one_way_l1, tmp_path):
  workdir = str(tmp_path / 'run')
  assert train.train_and_evaluate(_config(**{'train.max_steps': 4}), workdir) == 4
  assert train.train_and_evaluate(_config(), workdir) == 6  # resumed at step 4

  # The run directory: its model's state, the loop's counters, no CycleGAN part.
  reader = tf.train.load_checkpoint(run_dir.latest_checkpoint(workdir))
  keys = {k.split('/')[0] for k in reader.get_variable_to_shape_map()}
  # (The networks' variables are stored once, under the optimizer that holds them too.)
  assert {'optimizer_G', 'step', 'epoch', 'epoch_step'} <= keys
  assert not keys & {'G_A', 'D_A', 'pool_A'}
  assert reader.get_tensor('step/.ATTRIBUTES/VARIABLE_VALUE') == 6
  assert json.load(open(os.path.join(workdir, 'config.json')))['model']['name'] == 'one_way_l1'
  grid = np.asarray(Image.open(os.path.join(workdir, 'samples', 'step_0000006.png')))
  assert grid.shape[1] == 3 * 32  # its VISUAL_NAMES: real A | fake B | real B

  # Consumers restore its generator from the run's artifacts.
  nets, step, _ = run_dir.restore_generators(workdir)
  assert set(nets) == {'G'} and step == 6
  np.testing.assert_array_equal(nets['G'].trainable_variables[0].numpy(),
                                reader.get_tensor('optimizer_G/_trainable_variables/0/'
                                                  '.ATTRIBUTES/VARIABLE_VALUE'))

  paths = export.export_run(_config(), workdir)
  assert set(paths) == {'one_way_l1_a2b'}
  served = serving_model.load_serving_model(paths['one_way_l1_a2b'])
  images = np.random.default_rng(0).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
  np.testing.assert_allclose(served(images).numpy(), nets['G'](images).numpy(), atol=1e-5)

  metrics = evaluate.evaluate(_config(), workdir)
  assert metrics['step'] == 6 and 'swd_a2b' in metrics and 'psnr_a2b' in metrics
  assert not [k for k in metrics if 'b2a' in k or k.startswith('cycle')], metrics

  with pytest.raises(configuration.ConfigError,
                     match=r"direction='BtoA'.*\(one_way_l1\) has no b2a generator"):
    translate.load_translator(_config(), workdir=workdir, direction='BtoA')
  assert translate.load_translator(_config(), workdir=workdir, direction='AtoB')
