"""cyclegan_tf.deploy.convert against the reference's own networks, rebuilt in PyTorch.

benchmarks/reference_torch.py holds faithful copies of the reference's classes; each test gives one
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

from cyclegan_tf.deploy import convert  # pylint: disable=g-import-not-at-top,wrong-import-position
from cyclegan_tf.models import networks  # pylint: disable=g-import-not-at-top,wrong-import-position
from cyclegan_tf.models import torch_layout  # pylint: disable=g-import-not-at-top,wrong-import-position

from benchmarks import reference_torch as ref  # pylint: disable=g-import-not-at-top,wrong-import-position

from conftest import REPO_ROOT  # pylint: disable=g-import-not-at-top,wrong-import-position
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
  model = torch_layout.build_network(arch, name='loaded')
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
  # Names people's files get: a browser's second download, an upper-case extension.
  assert convert.role_from_filename('latest_net_G_B (1).pth') == 'G_B'
  assert convert.role_from_filename('dl/latest_net_G_B.PTH') == 'G_B'
  assert convert.role_from_filename('latest_net_D_A-2.pth') == 'D_A'
  assert convert.role_from_filename('latest_net_G.pth') == 'G'  # pix2pix's one generator
  assert convert.role_from_filename('latest_net_D.pth') == 'D_A'
  assert convert.role_from_filename('horse2zebra.pth') == 'G_A'  # published: its direction
  assert convert.role_from_filename('pix2pix_sat2map.pth') == 'G'  # published pix2pix
  assert convert.role_from_filename('sat2map.pth') == 'G_A'  # the CycleGAN one
  assert convert.role_from_filename('my_model.pth') is None
  assert convert.role_from_filename('netG_B_copy.pth') is None


def test_a_role_the_name_does_not_give_is_asked_for(tmp_path):
  """Never guessed: a B->A generator exported as cyclegan_a2b would translate backwards."""
  pth = _save(ref.define_G(3, 3, 4, 'resnet_6blocks', 'instance'), tmp_path / 'model.pth')
  with pytest.raises(convert.ConversionError,
                     match=r'resnet_6blocks generator.*does not say.*--role=G_A'):
    convert.convert_file(pth, str(tmp_path / 'out'))
  assert not os.path.exists(tmp_path / 'out')
  result = convert.convert_file(pth, str(tmp_path / 'out'), role='G_B', export=False)
  assert result['role'] == 'G_B'


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


def test_unet_config_on_resnet_file_fails(tmp_path, default_config):
  pth = _save(ref.define_G(3, 3, 4, 'resnet_6blocks', 'instance'), tmp_path / '1_net_G_A.pth')
  default_config.model.netG = 'unet_256'
  with pytest.raises(convert.ConversionError, match=r"config.model.netG='unet_256'[\s\S]*"
                     r'missing keys[\s\S]*model.model.0.weight'):
    convert.convert_file(pth, str(tmp_path / 'out'), default_config, export=False,
                         explicit_fields=['netG'])


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
# The export, and torch as an optional dependency.


@pytest.mark.slow
def test_converted_export_runs_under_saved_model_cli(tmp_path):
  net = ref.randomize(ref.define_G(3, 3, 4, 'resnet_6blocks', 'instance'))
  pth = _save(net, tmp_path / '3_net_G_B.pth')
  result = convert.convert_file(pth, str(tmp_path / 'out'))
  assert result['export_path'] == str(tmp_path / 'out' / 'cyclegan_b2a' / '1')
  assert result['architecture']['model_name'] == 'cyclegan_b2a'
  model = torch_layout.build_network(result['architecture'])
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


@pytest.mark.slow
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


# ---------------------------------------------------------------------------------------------
# Files as people have them: what the file holds, and what to do.


def test_files_that_are_not_state_dicts_say_what_they_are(tmp_path):
  net = ref.define_G(3, 3, 4, 'resnet_6blocks', 'instance')
  good = _save(net, tmp_path / 'good.pth')
  data = open(good, 'rb').read()
  cases = {
      'page.pth': (b'<!DOCTYPE html><html><body>404 Not Found</body></html>',
                   r'an HTML page.*the server sent this page instead of the model'),
      'truncated.pth': (data[:len(data) * 2 // 5],
                        r'a ZIP archive.*truncated \(its end is missing\).*download it again'),
      'empty.pth': (b'', r'an empty file'),
  }
  for name, (contents, message) in cases.items():
    (tmp_path / name).write_bytes(contents)
    with pytest.raises(convert.ConversionError, match=message):
      convert.convert_file(str(tmp_path / name), str(tmp_path / 'out'), role='G_A')
  whole = tmp_path / 'whole_model.pth'
  torch.save(net, str(whole))  # a pickled nn.Module: loading it would run code
  with pytest.raises(convert.ConversionError, match=r'a PyTorch file.*pickled object.*needs its code.*state_dict\(\)'):
    convert.convert_file(str(whole), str(tmp_path / 'out'), role='G_A')
  several = tmp_path / 'other_repo.pth'
  torch.save({'Gab': net.state_dict(), 'Gba': net.state_dict(), 'epoch': 3}, str(several))
  with pytest.raises(convert.ConversionError,
                     match=r"several networks \(Gab, Gba\).*checkpoint\['Gab'\], "
                     r'"latest_net_<ROLE>.pth"'):
    convert.convert_file(str(several), str(tmp_path / 'out'), role='G_A')
  assert not os.path.exists(tmp_path / 'out')
