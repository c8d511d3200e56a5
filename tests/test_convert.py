"""cyclegan_tf.convert against the reference's own networks, rebuilt in PyTorch.

tests/reference_torch.py holds faithful copies of the reference's classes; each test gives one
random weights (biases, BN affine parameters and running statistics included), saves its
state_dict with torch.save, converts the file and compares our network's output with PyTorch's
(eval mode: our models called with training=False). Small ngf keeps it quick on 2 cores.
"""

import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip(
    'torch', reason='PyTorch is not installed: the converter tests need it (pip install '
    'torch==2.13.0, or pip install -e ".[convert]").')

import keras  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from cyclegan_tf import convert  # pylint: disable=g-import-not-at-top,wrong-import-position
from cyclegan_tf import networks  # pylint: disable=g-import-not-at-top,wrong-import-position

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_torch as ref  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_ABS_ERROR = 1e-4
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _fresh_keras():
  yield
  keras.backend.clear_session()


def _save(net, path):
  torch.save(net.state_dict(), path)
  return str(path)


def _images(shape, seed):
  return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def _convert_and_load(pth, out_dir, **kwargs):
  """convert_file, then a fresh network built from the JSON and loaded from the .weights.h5."""
  result = convert.convert_file(pth, str(out_dir), export=False, **kwargs)
  with open(result['architecture_path']) as f:
    arch = json.load(f)
  model = convert.build_network(arch, name='loaded')
  model.load_weights(result['weights_path'])
  return model, result


def _convert(pth, **kwargs):
  """The network converted from a saved file, in memory (convert_file minus the writing)."""
  model, arch, _ = convert.convert_state_dict(convert.load_state_dict(pth), source=pth,
                                              role=convert.role_from_filename(pth), **kwargs)
  return model, arch


def _max_error(model, net, sizes, channels=3, batch=1):
  errors = []
  for i, (h, w) in enumerate(sizes):
    x = _images((batch, h, w, channels), seed=i)
    ours = keras.ops.convert_to_numpy(model(x, training=False))
    theirs = ref.run(net, x)
    assert ours.shape == theirs.shape
    errors.append(float(np.max(np.abs(ours - theirs))))
  return max(errors)


# ---------------------------------------------------------------------------------------------
# Numerical equivalence with the reference.

# (kind, name, norm, width, sizes): resnets need multiples of 4, unet_256 256 px; D any size.
CASES = [
    ('G', 'resnet_9blocks', 'instance', 8, [(32, 32), (24, 40)]),
    ('G', 'resnet_9blocks', 'batch', 8, [(32, 32), (24, 40)]),
    ('G', 'resnet_6blocks', 'instance', 8, [(32, 32), (44, 28)]),
    ('G', 'resnet_6blocks', 'batch', 8, [(32, 32), (44, 28)]),
    ('G', 'resnet_6blocks', 'none', 4, [(16, 20)]),
    ('G', 'unet_256', 'instance', 4, [(256, 256)]),
    ('G', 'unet_256', 'batch', 4, [(256, 256)]),
    ('G', 'unet_128', 'batch', 4, [(128, 128)]),
    ('D', 'basic', 'instance', 8, [(32, 32), (37, 45), (70, 70)]),
    ('D', 'basic', 'batch', 8, [(32, 32), (37, 45), (70, 70)]),
    ('D', 'n_layers', 'batch', 4, [(64, 64)]),
    ('D', 'pixel', 'batch', 8, [(9, 13)]),
]


@pytest.mark.parametrize('kind,name,norm,width,sizes', CASES,
                         ids=[f'{c[1]}-{c[2]}' for c in CASES])
def test_converted_network_matches_reference(tmp_path, kind, name, norm, width, sizes):
  if kind == 'G':
    net = ref.define_G(3, 3, width, name, norm)
  else:
    net = ref.define_D(3, width, name, n_layers_D=4, norm=norm)
  ref.randomize(net, seed=1)
  pth = _save(net, tmp_path / ('1_net_G_A.pth' if kind == 'G' else '1_net_D_A.pth'))
  model, arch = _convert(pth)
  assert arch['norm'] == norm
  if kind == 'G':
    assert (arch['netG'], arch['ngf'], arch['role']) == (name, width, 'G_A')
  else:
    assert (arch['ndf'], arch['role']) == (width, 'D_A')
    assert arch['netD'] == name
    assert arch['n_layers_D'] == {'basic': 3, 'n_layers': 4, 'pixel': None}[name]
  # The reference's parameter count (BN running statistics are buffers, not parameters).
  assert networks.count_params(model) == ref.count_params(net)
  error = _max_error(model, net, sizes)
  print(f'{name} {norm}: max abs error {error:.2e}')
  assert error < MAX_ABS_ERROR


def test_resnet_with_dropout_keys(tmp_path):
  """use_dropout shifts the block's second conv to conv_block.6: inferred and converted."""
  net = ref.randomize(ref.define_G(3, 3, 4, 'resnet_6blocks', 'batch', use_dropout=True))
  model, result = _convert_and_load(_save(net, tmp_path / 'x_net_G_B.pth'), tmp_path / 'out')
  assert result['role'] == 'G_B'
  assert result['architecture']['dropout'] is True
  assert _max_error(model, net, [(16, 16)]) < MAX_ABS_ERROR


@pytest.mark.parametrize('netG,norm', [('resnet_9blocks', 'instance'), ('unet_256', 'batch')])
def test_full_size_keys_and_shapes(monkeypatch, netG, norm):
  """At ngf 64: our networks want exactly the reference's keys and shapes (not run)."""
  monkeypatch.setattr(networks, 'kernel_initializer', lambda *args, **kwargs: 'zeros')
  with torch.device('meta'):  # shapes only, no memory
    net = ref.define_G(3, 3, 64, netG, norm)
  theirs = {k: tuple(v.shape) for k, v in net.state_dict().items()
            if not k.endswith('num_batches_tracked')}
  model = networks.define_G(3, 3, 64, netG, norm)
  assert convert.torch_shapes(model) == theirs
  assert networks.count_params(model) == ref.count_params(net)
  arch = convert.infer_architecture(theirs)
  assert (arch['netG'], arch['ngf'], arch['norm']) == (netG, 64, norm)


def test_full_size_discriminator_keys():
  net = ref.define_D(3, 64, 'basic', norm='instance')
  theirs = {k: tuple(v.shape) for k, v in net.state_dict().items()}
  assert sorted(theirs) == sorted(f'model.{i}.{p}' for i in (0, 2, 5, 8, 11)
                                  for p in ('weight', 'bias'))
  model = networks.define_D(3, 64, 'basic', norm='instance')
  assert convert.torch_shapes(model) == theirs
  assert networks.count_params(model) == ref.count_params(net) == 2_764_737


# ---------------------------------------------------------------------------------------------
# Old files, DataParallel, roles.


def test_pre_04_instance_norm_keys_are_dropped_and_logged(tmp_path, caplog):
  net = ref.randomize(ref.define_G(3, 3, 4, 'resnet_6blocks', 'instance'))
  state = dict(net.state_dict())
  stale = []
  for name, module in net.named_modules():
    if isinstance(module, torch.nn.InstanceNorm2d):
      n = module.num_features
      state[f'{name}.running_mean'] = torch.zeros(n)
      state[f'{name}.running_var'] = torch.ones(n)
      state[f'{name}.num_batches_tracked'] = torch.tensor(0)
      stale += [f'{name}.running_mean', f'{name}.running_var', f'{name}.num_batches_tracked']
  assert len(stale) == 3 * (3 + 2 * 6 + 2)
  pth = str(tmp_path / 'horse2zebra.pth')
  torch.save(state, pth)
  # On absl's logger too: once absl flags are parsed (another test may do it), it sits at WARNING.
  caplog.set_level('INFO')
  caplog.set_level('INFO', logger='absl')
  model, result = _convert_and_load(pth, tmp_path / 'out')
  assert result['role'] == 'G_A'  # a published generator
  assert result['architecture']['norm'] == 'instance'
  assert sorted(result['dropped_keys']) == sorted(stale)
  assert 'Dropped 51 stale key(s)' in caplog.text and 'model.2.running_mean' in caplog.text
  assert _max_error(model, net, [(16, 16)]) < MAX_ABS_ERROR


def test_data_parallel_prefix_is_stripped(tmp_path):
  net = ref.randomize(ref.define_D(3, 4, 'basic', norm='batch'))
  pth = str(tmp_path / 'latest_net_D_B.pth')
  torch.save(torch.nn.DataParallel(net).state_dict(), pth)
  assert all(k.startswith('module.') for k in torch.load(pth, weights_only=True))
  model, result = _convert_and_load(pth, tmp_path / 'out')
  assert result['role'] == 'D_B'
  assert _max_error(model, net, [(32, 32)]) < MAX_ABS_ERROR


def test_role_from_filename():
  assert convert.role_from_filename('ckpt/200_net_G_A.pth') == 'G_A'
  assert convert.role_from_filename('latest_net_G_B.pth') == 'G_B'
  assert convert.role_from_filename('/x/5_net_D_A.pth') == 'D_A'
  assert convert.role_from_filename('5_net_D_B.pth') == 'D_B'
  assert convert.role_from_filename('horse2zebra.pth') is None


def test_role_override_and_kind_check(tmp_path):
  net = ref.randomize(ref.define_G(3, 3, 4, 'resnet_6blocks', 'none'))
  pth = _save(net, tmp_path / 'style_monet.pth')
  result = convert.convert_file(pth, str(tmp_path / 'out'), role='G_B', export=False)
  assert result['role'] == 'G_B' and os.path.isfile(tmp_path / 'out' / 'G_B.weights.h5')
  with pytest.raises(convert.ConversionError, match='holds a generator .* role is D_A'):
    convert.convert_file(pth, str(tmp_path / 'out'), role='D_A', export=False)


# ---------------------------------------------------------------------------------------------
# Mismatches: errors that list the offending keys.


def test_resnet6_forced_as_resnet9_lists_missing_and_unexpected_keys(tmp_path, default_config):
  net = ref.define_G(3, 3, 4, 'resnet_6blocks', 'instance')
  pth = _save(net, tmp_path / 'horse2zebra.pth')
  default_config.model.ngf = 4
  # resnet_9blocks is the default: forced only when named (main.py: on the command line).
  convert.convert_file(pth, str(tmp_path / 'ok'), default_config, export=False)
  with pytest.raises(convert.ConversionError) as error:
    convert.convert_file(pth, str(tmp_path / 'out'), default_config, export=False,
                         explicit_fields=['netG', 'ngf'])
  message = str(error.value)
  assert "config.model.netG='resnet_9blocks' (the file looks like netG='resnet_6blocks')" in (
      message)
  missing = message.split('missing keys')[1].split('unexpected keys')[0]
  unexpected = message.split('unexpected keys')[1]
  for key in ('model.16.conv_block.1.weight', 'model.18.conv_block.5.bias', 'model.26.weight'):
    assert key in missing
  for key in ('model.16.weight', 'model.23.weight', 'model.23.bias'):
    assert key in unexpected
  assert not os.path.exists(tmp_path / 'out')  # nothing written


def test_command_line_model_fields(monkeypatch):
  """main.py's --config.model.X=... settings count as explicit, even at default values."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(sys, 'argv', ['main.py', '--config.model.netG=resnet_9blocks',
                                    '--config.train.lr=0.1'])
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', os.path.join(REPO_ROOT, 'configs', 'default.py'),
                                  flag_values=flag_values)
  assert convert.command_line_model_fields(flag_values) == set()  # not parsed yet
  flag_values(sys.argv)
  assert convert.command_line_model_fields(flag_values) == {'netG'}


def test_unet_config_on_resnet_file_fails(tmp_path, default_config):
  pth = _save(ref.define_G(3, 3, 4, 'resnet_6blocks', 'instance'), tmp_path / 'a.pth')
  default_config.model.netG = 'unet_256'
  with pytest.raises(convert.ConversionError, match=r"config.model.netG='unet_256'[\s\S]*"
                     r'missing keys[\s\S]*model.model.0.weight'):
    convert.convert_file(pth, str(tmp_path / 'out'), default_config, export=False)


def test_extra_key_is_listed(tmp_path):
  net = ref.define_D(3, 4, 'basic', norm='instance')
  state = dict(net.state_dict(), **{'model.99.weight': torch.zeros(3)})
  pth = str(tmp_path / '1_net_D_A.pth')
  torch.save(state, pth)
  with pytest.raises(convert.ConversionError, match=r'unexpected keys[\s\S]*model\.99\.weight'):
    convert.convert_file(pth, str(tmp_path / 'out'), export=False)


def test_wrong_shape_lists_both_shapes(tmp_path):
  state = dict(ref.define_G(3, 3, 4, 'resnet_6blocks', 'instance').state_dict())
  state['model.4.weight'] = torch.zeros(8, 4, 5, 5)
  pth = str(tmp_path / '1_net_G_A.pth')
  torch.save(state, pth)
  with pytest.raises(convert.ConversionError,
                     match=r'shape mismatches \(1\):\s+model\.4\.weight: file has \(8, 4, 5, 5\)'
                     r', G_A needs \(8, 4, 3, 3\)'):
    convert.convert_file(pth, str(tmp_path / 'out'), export=False)


def test_not_a_state_dict(tmp_path):
  path = tmp_path / 'junk.pth'
  torch.save({'epoch': 3, 'weights': torch.zeros(2)}, str(path))
  with pytest.raises(convert.ConversionError, match='not tensors: epoch'):
    convert.convert_file(str(path), str(tmp_path / 'out'))
  torch.save({'foo.weight': torch.zeros(2, 2)}, str(path))
  with pytest.raises(convert.ConversionError, match='not a state dict of the reference'):
    convert.convert_file(str(path), str(tmp_path / 'out'))


# ---------------------------------------------------------------------------------------------
# init_from.


def _tiny_config(config):
  config.model.netG = 'resnet_6blocks'
  config.model.ngf = 4
  config.model.ndf = 4
  config.model.norm = 'batch'
  return config


def test_load_init_weights_round_trip(tmp_path, default_config):
  config = _tiny_config(default_config)
  states = {}
  for seed, role in enumerate(convert.ROLES):
    if role.startswith('G'):
      net = ref.define_G(3, 3, 4, 'resnet_6blocks', 'batch')
    else:
      net = ref.define_D(3, 4, 'basic', norm='batch')
    ref.randomize(net, seed=seed)
    states[role] = {k: v.numpy() for k, v in net.state_dict().items()}
    convert.convert_file(_save(net, tmp_path / f'7_net_{role}.pth'), str(tmp_path / 'init'),
                         config, export=False)
  nets = networks.build_cyclegan(config.model, seed=0)
  assert convert.load_init_weights(nets, str(tmp_path / 'init')) == list(convert.ROLES)
  for role, model in nets.items():
    targets, _ = convert._torch_targets(model)  # pylint: disable=protected-access
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
  with pytest.raises(convert.ConversionError) as error:
    convert.load_init_weights(nets, str(tmp_path / 'init'))
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
  assert convert.load_init_weights(nets, str(tmp_path / 'init')) == ['G_A']
  model, _ = _convert(str(tmp_path / 'horse2zebra.pth'))
  for a, b in zip(model.get_weights(), nets['G_A'].get_weights()):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(convert.ConversionError, match='holds no converted weights'):
    convert.load_init_weights(nets, str(tmp_path))
  with pytest.raises(convert.ConversionError, match='is not a folder'):
    convert.load_init_weights(nets, str(tmp_path / 'nowhere'))


# ---------------------------------------------------------------------------------------------
# The export, and torch as an optional dependency.


def test_converted_export_runs_under_saved_model_cli(tmp_path):
  net = ref.randomize(ref.define_G(3, 3, 4, 'resnet_6blocks', 'instance'))
  pth = _save(net, tmp_path / '3_net_G_B.pth')
  result = convert.convert_file(pth, str(tmp_path / 'out'))
  assert result['export_path'] == str(tmp_path / 'out' / 'cyclegan_b2a' / '1')
  assert result['architecture']['model_name'] == 'cyclegan_b2a'
  model = convert.build_network(result['architecture'])
  model.load_weights(result['weights_path'])
  x = _images((1, 24, 32, 3), seed=5)
  np.save(tmp_path / 'x.npy', x)
  cli = os.path.join(os.path.dirname(sys.executable), 'saved_model_cli')
  command = [cli] if os.path.exists(cli) else [
      sys.executable, '-m', 'tensorflow.python.tools.saved_model_cli']
  subprocess.run(command + [
      'run', '--dir', result['export_path'], '--tag_set', 'serve', '--signature_def',
      'serving_default', '--inputs', f'images={tmp_path / "x.npy"}', '--outdir',
      str(tmp_path / 'cli')], check=True, capture_output=True, timeout=120,
                 env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  served = np.load(tmp_path / 'cli' / 'translated.npy')
  ours = keras.ops.convert_to_numpy(model(x, training=False))
  np.testing.assert_allclose(served, ours, atol=1e-5)
  assert float(np.max(np.abs(served - ref.run(net, x)))) < MAX_ABS_ERROR


def test_import_torch_error_has_install_hint(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, 'torch', None)  # `import torch` now raises ImportError
  with pytest.raises(convert.TorchNotInstalledError) as error:
    convert.convert_file(str(tmp_path / 'x.pth'), str(tmp_path / 'out'))
  assert 'pip install -e ".[convert]"' in str(error.value)
  assert 'pip install torch==2.13.0' in str(error.value)
  assert isinstance(error.value, ImportError)


def test_main_convert_without_torch_prints_install_hint(tmp_path):
  script = ('import runpy, sys; sys.modules["torch"] = None; '
            f'sys.argv = ["main.py", "--mode=convert", "--pth={tmp_path / "h.pth"}", '
            f'"--output={tmp_path / "out"}"]; '
            'runpy.run_path("main.py", run_name="__main__")')
  proc = subprocess.run([sys.executable, '-c', script], cwd=REPO_ROOT, capture_output=True,
                        text=True, timeout=120, env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  assert proc.returncode == 1, proc.stderr
  assert 'pip install torch==2.13.0' in proc.stderr
  assert 'pip install -e ".[convert]"' in proc.stderr
  assert 'Traceback' not in proc.stderr
