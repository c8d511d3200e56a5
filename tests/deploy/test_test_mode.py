"""Test modes (models/test_time.py) through export, translate and serving: a SavedModel records
its mode, runs it, and tiles a train-mode batch-norm model with shared per-image statistics."""

import json
import os

import numpy as np
import pytest

from cyclegan_tf import configuration
from cyclegan_tf.deploy import edge_export
from cyclegan_tf.deploy import export
from cyclegan_tf.deploy import serving_model
from cyclegan_tf.deploy import translate
from cyclegan_tf.models import networks
from cyclegan_tf.models import test_time



def _images(n, h, w, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (n, h, w, 3)).astype(np.float32)


@pytest.fixture(scope='module')
def unet():
  """unet_128, ngf 4, batch norm with non-trivial moving statistics, dropout."""
  model = networks.define_G(3, 3, 4, 'unet_128', 'batch', use_dropout=True, name='G', seed=1)
  rng = np.random.default_rng(0)
  for layer in model.layers:
    if hasattr(layer, 'moving_mean'):
      layer.moving_mean.assign(rng.normal(0, 0.2, layer.moving_mean.shape))
      layer.moving_variance.assign(rng.uniform(0.5, 1.5, layer.moving_variance.shape))
  return model


@pytest.fixture(scope='module')
def exports(unet, tmp_path_factory):
  base = tmp_path_factory.mktemp('exports')
  return {mode: export.export_generator(unet, str(base), f'net_{mode}', 'unet_128',
                                        test_mode=mode, test_seed=5)
          for mode in test_time.TEST_MODES}


def test_savedmodels_record_and_run_their_mode(unet, exports):
  x = _images(2, 128, 128)
  want = {'eval': unet(x, training=False).numpy(),
          'train': test_time.train_mode_copy(unet, seed=5)(x).numpy()}
  for mode, path in exports.items():
    with open(os.path.join(path, export.METADATA_PATH)) as f:
      meta = json.load(f)
    assert (meta['test_mode'], meta['test_seed']) == (mode, 5 if mode == 'train' else None)
    model = serving_model.load_serving_model(path)
    assert model.test_mode == mode
    got = model(x).numpy()
    assert np.max(np.abs(got - want[mode])) < 1e-5, mode
    np.testing.assert_array_equal(got, model(x).numpy())  # deterministic
  # Any size: padded to 128 and cropped back, in train mode too.
  odd = serving_model.load_serving_model(exports['train'])(_images(1, 100, 140)).numpy()
  assert odd.shape == (1, 100, 140, 3) and np.all(np.isfinite(odd))


def test_tiles_of_a_train_mode_model_share_per_image_statistics(unet):
  """Batch norm in train mode normalises per image: tiles share the whole image's statistics
  (dropout off here: each tile has its own mask)."""
  plain = test_time.train_mode_copy(unet, dropout=False)
  ramp = np.linspace(-0.9, 0.9, 384, dtype=np.float32)[np.newaxis, :, np.newaxis]
  image = np.clip(0.3 * _images(1, 256, 384, seed=3)[0] + ramp, -1, 1)  # tiles' statistics differ
  translator = translate.Translator.from_generator(plain, 'unet_128')
  whole = translator.whole(image[np.newaxis]).numpy()[0]
  shared = translate.translate_image(translator, image, tile_size=256, tile_overlap=64,
                                     stats_size=384)
  alone = translate.translate_image(translator, image, tile_size=256, tile_overlap=64,
                                    shared_statistics=False)
  shared_gap = float(np.mean(np.abs(shared - whole)))
  alone_gap = float(np.mean(np.abs(alone - whole)))
  assert translator.shares_statistics and shared_gap < 0.5 * alone_gap, (shared_gap, alone_gap)


def test_translate_from_a_run_config_takes_the_mode(unet, tmp_path):
  translator = translate.Translator.from_generator(unet, 'unet_128', 'train', 2)
  assert 'test mode train' in translator.description
  x = _images(1, 128, 128, seed=4)
  want = test_time.train_mode_copy(unet, seed=2)(x).numpy()
  assert np.max(np.abs(np.asarray(translator.whole(x)) - want)) < 1e-5


def test_serving_lists_the_mode(exports):
  from serving import servables  # pylint: disable=g-import-not-at-top
  loaded = {mode: servables.Servable(f'net_{mode}', 1, path, warm_up=False)
            for mode, path in exports.items()}
  assert loaded['train'].test_mode == 'train' and loaded['train'].test_seed == 5
  assert servables.describe_test_mode([loaded['train']]) == ' (test mode train seed 5)'
  assert servables.describe_test_mode([loaded['eval']]) == ' (test mode eval)'
  loaded['eval'].version = 2
  assert servables.describe_test_mode(loaded.values()) == (
      ' (test mode: 1 train seed 5, 2 eval)')
  from serving import model_config  # pylint: disable=g-import-not-at-top
  from serving import model_server  # pylint: disable=g-import-not-at-top
  app = model_server.ModelServer(
      [model_config.ModelConfig(f'net_{mode}', os.path.dirname(path))
       for mode, path in exports.items()], warm_up=False)
  try:
    assert app.ui_config()['test_modes'] == {'net_eval': 'test mode eval',
                                             'net_train': 'test mode train seed 5'}
  finally:
    app.stop()


def test_export_and_translate_of_a_run_take_the_mode_from_the_command_line(default_config):
  run = default_config
  cli = configuration.validate(type(run)(run.to_dict()))
  cli.model.test_mode, cli.model.test_seed = 'train', 4
  for mode in ('export', 'translate'):
    merged = configuration.mode_config(run, cli, mode)
    assert export.test_mode_of(merged) == ('train', 4)
  assert export.test_mode_of(configuration.mode_config(run, cli, 'evaluate')) == ('eval', 0)


def test_bad_modes_and_edge_formats_are_refused(default_config):
  default_config.model.test_mode = 'test'
  with pytest.raises(configuration.ConfigError, match=r"config.model.test_mode='test' is not "
                     'valid; allowed values: eval, train'):
    configuration.validate(default_config)
  with pytest.raises(configuration.ConfigError, match='onnx, which run the generator in eval'):
    edge_export.check_test_mode(['saved_model', 'onnx'], 'train')
  edge_export.check_test_mode(['saved_model', 'onnx'], 'eval')
