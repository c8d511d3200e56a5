"""The reference's single-direction generator (pix2pix, `--model test`): latest_net_G.pth made
with torch.save from benchmarks/reference_torch.py's U-Net converts as role G, translates,
exports and serves on its own; latest_net_G_A.pth stays a CycleGAN G_A."""

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip(
    'torch', reason='PyTorch is not installed: the converter tests need it (pip install '
    'torch==2.13.0, or pip install -e ".[convert]").')

from benchmarks import reference_torch as ref  # pylint: disable=g-import-not-at-top,wrong-import-position
from cyclegan_tf.deploy import convert  # pylint: disable=g-import-not-at-top,wrong-import-position
from cyclegan_tf.deploy import serving_model  # pylint: disable=g-import-not-at-top,wrong-import-position
from cyclegan_tf.deploy import translate  # pylint: disable=g-import-not-at-top,wrong-import-position
from cyclegan_tf.models import test_time  # pylint: disable=g-import-not-at-top,wrong-import-position
from cyclegan_tf.models import torch_layout  # pylint: disable=g-import-not-at-top,wrong-import-position
from PIL import Image  # pylint: disable=g-import-not-at-top,wrong-import-position

torch.set_num_threads(1)
MAX_ABS_ERROR = 1e-5


def _images(n, side, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (n, side, side, 3)).astype(np.float32)


@pytest.fixture(scope='module')
def pix2pix_file(tmp_path_factory):
  """latest_net_G.pth: unet_128, ngf 4, batch norm, dropout, random weights and statistics."""
  net = ref.randomize(ref.define_G(3, 3, 4, 'unet_128', 'batch', use_dropout=True), seed=6)
  path = tmp_path_factory.mktemp('pix2pix') / 'latest_net_G.pth'
  torch.save(net.state_dict(), str(path))
  return str(path), net


def _torch_eval(net, images):
  net.eval()
  with torch.no_grad():
    return net(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy().transpose(
        0, 2, 3, 1)


def test_latest_net_g_converts_as_pix2pix_and_runs_in_train_mode(pix2pix_file, tmp_path,
                                                                 default_config, capsys):
  pth, net = pix2pix_file
  result = convert.convert_file(pth, str(tmp_path / 'out'), default_config)
  arch = result['architecture']
  assert result['role'] == 'G' and arch['model'] == 'pix2pix'
  assert (arch['netG'], arch['norm'], arch['dropout']) == ('unet_128', 'batch', True)
  assert (arch['test_mode'], arch['test_seed']) == ('train', 0)
  assert result['export_path'] == str(tmp_path / 'out' / 'pix2pix_a2b' / '1')
  assert sorted(os.listdir(tmp_path / 'out')) == ['G.json', 'G.weights.h5', 'pix2pix_a2b']
  with open(tmp_path / 'out' / 'G.json') as f:
    assert json.load(f)['role'] == 'G'
  model = torch_layout.build_network(arch, name='G')
  model.load_weights(result['weights_path'])
  x = _images(1, 128, seed=1)
  served = serving_model.load_serving_model(result['export_path'])
  assert served.test_mode == 'train'
  want = test_time.train_mode_copy(model, seed=0)(x).numpy()
  assert np.max(np.abs(served(x).numpy() - want)) < MAX_ABS_ERROR
  # Eval mode of the same weights: torch's net.eval(), within the converter's tolerance.
  assert np.max(np.abs(model(x, training=False).numpy() - _torch_eval(net, x))) < MAX_ABS_ERROR

  # Translate: the output folder names its one model; the PNG is written at the input's size.
  os.makedirs(tmp_path / 'in')
  pixels = np.random.default_rng(2).uniform(0, 255, (100, 90, 3)).astype(np.uint8)
  Image.fromarray(pixels).save(tmp_path / 'in' / 'a.png')
  summary = translate.translate_paths(default_config, str(tmp_path / 'in'),
                                      str(tmp_path / 'translated'),
                                      saved_model=str(tmp_path / 'out'))
  assert summary['written'] == [str(tmp_path / 'translated' / 'a.png')]
  assert Image.open(summary['written'][0]).size == (90, 100)
  assert '(test mode train)' in capsys.readouterr().out

  # Serving lists the model's mode.
  from serving import servables  # pylint: disable=g-import-not-at-top
  servable = servables.Servable('pix2pix_a2b', 1, result['export_path'], warm_up=True)
  assert servables.describe_test_mode([servable]) == ' (test mode train seed 0)'


def test_explicit_eval_mode_matches_torch_eval(pix2pix_file, tmp_path, default_config):
  pth, net = pix2pix_file
  default_config.model.test_mode = 'eval'
  result = convert.convert_file(pth, str(tmp_path / 'out'), default_config,
                                explicit_fields={'test_mode'})
  assert result['architecture']['test_mode'] == 'eval'
  x = _images(2, 128, seed=3)
  served = serving_model.load_serving_model(result['export_path'])(x).numpy()
  assert np.max(np.abs(served - _torch_eval(net, x))) < MAX_ABS_ERROR


def test_latest_net_g_a_stays_a_cyclegan_generator(tmp_path, default_config):
  net = ref.randomize(ref.define_G(3, 3, 4, 'unet_128', 'batch'), seed=7)
  pth = str(tmp_path / 'latest_net_G_A.pth')
  torch.save(net.state_dict(), pth)
  result = convert.convert_file(pth, str(tmp_path / 'out'), default_config)
  arch = result['architecture']
  assert (result['role'], arch['model'], arch['dropout']) == ('G_A', 'cycle_gan', False)
  assert result['export_path'] == str(tmp_path / 'out' / 'cyclegan_a2b' / '1')
  assert arch['test_mode'] == 'train'  # batch norm: the reference's test.py without --eval


def test_with_the_pix2pix_config_and_its_export(pix2pix_file, tmp_path):
  """Under configs/pix2pix.py the file must agree with its model settings (U-Net, batch norm,
  dropout on); G exports as pix2pix_a2b, the pix2pix model's name, under any config; a pix2pix
  run's G exports in the config's test mode."""
  from configs import pix2pix  # pylint: disable=g-import-not-at-top
  from cyclegan_tf.deploy import export  # pylint: disable=g-import-not-at-top
  from cyclegan_tf.models import family  # pylint: disable=g-import-not-at-top
  config = pix2pix.get_config()
  assert family.export_name(config.model, config.export, 'a2b') == 'pix2pix_a2b'
  config.model.netG = 'unet_128'
  pth, _ = pix2pix_file
  result = convert.convert_file(pth, str(tmp_path / 'out'), config, export=False,
                                explicit_fields={'netG', 'norm', 'no_dropout'})
  assert result['architecture']['dropout'] is True and result['role'] == 'G'
  config.model.norm = 'instance'
  with pytest.raises(convert.ConversionError, match="config.model.norm='instance'"):
    convert.convert_file(pth, str(tmp_path / 'bad'), config, explicit_fields={'norm'})
  config.model.norm = 'batch'
  config.model.test_mode = 'train'
  generator = torch_layout.build_network(result['architecture'], name='G')
  generator.load_weights(result['weights_path'])
  paths = export.export_generators({'G': generator}, str(tmp_path / 'export'), config, step=3)
  assert list(paths) == ['pix2pix_a2b']
  assert serving_model.load_serving_model(paths['pix2pix_a2b']).test_mode == 'train'
