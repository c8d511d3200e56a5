"""Tests for cyclegan_tf.training.init_from: training starts from converted reference weights only when
their architecture matches, all or nothing."""

import numpy as np
import pytest

torch = pytest.importorskip(
    'torch', reason='PyTorch is not installed: these tests need it (pip install '
    'torch==2.13.0, or pip install -e ".[convert]").')

import keras  # pylint: disable=g-import-not-at-top,wrong-import-position

from benchmarks import reference_torch as ref  # pylint: disable=g-import-not-at-top,wrong-import-position
from cyclegan_tf.models import networks  # pylint: disable=g-import-not-at-top,wrong-import-position
from cyclegan_tf.deploy import convert  # pylint: disable=g-import-not-at-top,wrong-import-position
from cyclegan_tf.training import init_from  # pylint: disable=g-import-not-at-top,wrong-import-position
from cyclegan_tf.models import torch_layout  # pylint: disable=g-import-not-at-top,wrong-import-position


def _save(net, path):
  torch.save(net.state_dict(), path)
  return str(path)


def _tiny_config(config):
  config.model.netG = 'resnet_6blocks'
  config.model.ngf = 4
  config.model.ndf = 4
  config.model.norm = 'batch'
  return config


def test_load_init_weights_round_trip(tmp_path, default_config):
  config = _tiny_config(default_config)
  states = {}
  for seed, role in enumerate(init_from.ROLES):
    if role.startswith('G'):
      net = ref.define_G(3, 3, 4, 'resnet_6blocks', 'batch')
    else:
      net = ref.define_D(3, 4, 'basic', norm='batch')
    ref.randomize(net, seed=seed)
    states[role] = {k: v.numpy() for k, v in net.state_dict().items()}
    convert.convert_file(_save(net, tmp_path / f'7_net_{role}.pth'), str(tmp_path / 'init'),
                         config, export=False)
  # Built as a small run trains (plain last conv), not as convert built them (GEMM last conv).
  nets = networks.build_cyclegan(config.model, seed=0, gemm_last_conv=False)
  assert init_from.load_init_weights(nets, str(tmp_path / 'init')) == list(init_from.ROLES)
  for role, model in nets.items():
    targets, _ = torch_layout._torch_targets(model)  # pylint: disable=protected-access
    assert set(targets) == {k for k in states[role] if not k.endswith('num_batches_tracked')}
    for key, (variable, is_kernel) in targets.items():
      expected = states[role][key]
      if is_kernel:
        expected = expected.transpose(2, 3, 1, 0)
      np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), expected, err_msg=key)

  # A different architecture: an error naming every differing field; nothing loaded.
  other = _tiny_config(default_config.copy_and_resolve_references())
  other.model.ngf = 8
  other.model.norm = 'instance'
  nets = networks.build_cyclegan(other.model, seed=0)
  before = nets['D_A'].get_weights()
  with pytest.raises(init_from.ConversionError) as error:
    init_from.load_init_weights(nets, str(tmp_path / 'init'))
  message = str(error.value)
  assert 'G_A' in message and 'G_B' in message and 'D_A' in message
  assert "ngf: converted 4, model 8 (set config.model.ngf=4 to match)" in message
  assert "norm: converted 'batch', model 'instance'" in message
  for a, b in zip(before, nets['D_A'].get_weights()):
    np.testing.assert_array_equal(a, b)


def test_load_init_weights_published_generator_only(tmp_path, default_config):
  config = _tiny_config(default_config)
  net = ref.randomize(ref.define_G(3, 3, 4, 'resnet_6blocks', 'batch'))
  convert.convert_file(_save(net, tmp_path / 'horse2zebra.pth'), str(tmp_path / 'init'),
                       config, export=False)
  nets = networks.build_cyclegan(config.model, with_discriminators=False)
  assert init_from.load_init_weights(nets, str(tmp_path / 'init')) == ['G_A']
  model, _, _ = convert.convert_state_dict(
      convert.load_state_dict(str(tmp_path / 'horse2zebra.pth')), role='G_A')
  for a, b in zip(model.get_weights(), nets['G_A'].get_weights()):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(init_from.ConversionError, match='holds no converted weights'):
    init_from.load_init_weights(nets, str(tmp_path))
  with pytest.raises(init_from.ConversionError, match='is not a folder'):
    init_from.load_init_weights(nets, str(tmp_path / 'nowhere'))
