"""cyclegan_tf.configuration (validate, resume_conflicts) and main.py's command line."""

import json
import os
import subprocess
import sys

import pytest

from cyclegan_tf import configuration
from cyclegan_tf.configuration import ConfigError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_default_config_validates(default_config):
  assert configuration.validate(default_config) is default_config


# (overrides, strings the message must contain: the field and the allowed values or bound)
BAD_CONFIGS = {
    'netG': ({'model.netG': 'foo'},
             ['config.model.netG', "'foo'", 'resnet_9blocks', 'resnet_6blocks', 'unet_128',
              'unet_256']),
    'netD': ({'model.netD': 'foo'}, ['config.model.netD', 'basic', 'n_layers', 'pixel']),
    'norm': ({'model.norm': 'layer'}, ['config.model.norm', 'instance', 'batch', 'none']),
    'init_type': ({'model.init_type': 'uniform'},
                  ['config.model.init_type', 'normal', 'xavier', 'kaiming', 'orthogonal']),
    'ngf_0': ({'model.ngf': 0}, ['config.model.ngf', '> 0']),
    'lambda_A_negative': ({'loss.lambda_A': -1.0}, ['config.loss.lambda_A', '>= 0']),
    'lambda_identity_negative': ({'loss.lambda_identity': -1.0},
                                 ['config.loss.lambda_identity', '>= 0']),
    'direction': ({'data.direction': 'AtoC'}, ['config.data.direction', 'AtoB', 'BtoA']),
    'preprocess': ({'data.preprocess': 'zoom'},
                   ['config.data.preprocess', 'resize_and_crop', 'scale_width_and_crop',
                    'none']),
    'crop_larger_than_load': ({'data.load_size': 128, 'data.crop_size': 256},
                              ['config.data.crop_size', 'config.data.load_size', '256', '128']),
    'folder_without_root': ({'data.dataset': 'folder'}, ['config.data.root']),
    'dataset': ({'data.dataset': 'imagenet'},
                ['config.data.dataset', 'synthetic_seasons', 'folder', 'tfds']),
    'gan_mode': ({'train.gan_mode': 'hinge'},
                 ['config.train.gan_mode', 'lsgan', 'vanilla', 'wgangp']),
    'precision': ({'train.precision': 'float16'},
                  ['config.train.precision', 'float32', 'mixed_bfloat16', 'mixed_float16']),
    'strategy': ({'train.strategy': 'horovod'},
                 ['config.train.strategy', 'default', 'mirrored', 'multi_worker', 'tpu']),
    'input_nc_2': ({'model.input_nc': 2}, ['config.model.input_nc', '1, 3']),
    'crop_too_small_for_d': ({'data.load_size': 20, 'data.crop_size': 20},
                             ['config.data.crop_size=20', "netD='basic'", 'crop_size >= 24']),
    'identity_with_different_channels': (
        {'model.input_nc': 1, 'model.output_nc': 3},
        ['config.loss.lambda_identity', 'input_nc', 'output_nc', 'lambda_identity=0']),
}


def _set(config, dotted, value):
  node = config
  *parents, leaf = dotted.split('.')
  for part in parents:
    node = node[part]
  node[leaf] = value


@pytest.mark.parametrize('case', sorted(BAD_CONFIGS))
def test_bad_value_fails_naming_field_and_allowed(case, default_config):
  overrides, expected = BAD_CONFIGS[case]
  for field, value in overrides.items():
    _set(default_config, field, value)
  with pytest.raises(ConfigError) as info:
    configuration.validate(default_config)
  message = str(info.value)
  for part in expected:
    assert part in message, (case, part, message)


def test_config_error_is_a_value_error():
  assert issubclass(ConfigError, ValueError)


def test_valid_variants_pass(default_config):
  c = default_config
  c.model.input_nc = c.model.output_nc = 1  # identity loss fine with equal channels
  c.data.preprocess = 'crop'
  c.data.crop_size = 512  # larger than load_size is fine without resizing first
  c.data.dataset = 'folder'
  c.data.root = '/data/horse2zebra'
  c.train.gan_mode = 'wgangp'
  c.loss.lambda_identity = 0.0
  configuration.validate(c)


def _saved(config):
  return json.loads(configuration.to_json(config))


def test_resume_conflicts_lists_architecture_changes(default_config):
  saved = _saved(default_config)
  assert configuration.resume_conflicts(saved, default_config) == []
  default_config.model.ngf = 32
  conflicts = configuration.resume_conflicts(saved, default_config)
  assert len(conflicts) == 1
  assert 'model.ngf' in conflicts[0] and '64' in conflicts[0] and '32' in conflicts[0]


def test_resume_may_change_run_length(default_config):
  saved = _saved(default_config)
  default_config.train.max_steps = 1234
  default_config.train.n_epochs = 7
  default_config.train.log_every_steps = 5
  assert configuration.resume_conflicts(saved, default_config) == []
  default_config.loss.lambda_A = 5.0
  assert [c.split(':')[0] for c in configuration.resume_conflicts(saved, default_config)] == [
      'loss.lambda_A']


# ---------------------------------------------------------------------------------------------
# main.py (each run imports TensorFlow: keep these few)
# ---------------------------------------------------------------------------------------------


def _main(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
  return subprocess.run([sys.executable, 'main.py', *args], cwd=REPO_ROOT, env=env,
                        capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_main_summary_prints_the_four_networks():
  result = _main('--mode=summary', '--config=configs/default.py', '--config.model.ngf=8')
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 4, result.stdout
  for line, role in zip(lines, ('G_A', 'G_B', 'D_A', 'D_B')):
    assert line.startswith(f'{role}:') and 'parameters' in line, line
  g_params = _resnet_instance_params(ngf=8, n_blocks=9)
  assert _resnet_instance_params(64, 9) == 11_378_179  # FACTS.md: the formula is right
  assert f'{g_params:,} parameters' in lines[0] and f'{g_params:,} parameters' in lines[1]
  # ndf stays 64: the basic D of FACTS.md.
  assert '2,764,737 parameters' in lines[2] and '2,764,737 parameters' in lines[3]


def _resnet_instance_params(ngf, n_blocks, nc=3):
  conv = lambda k, cin, cout: k * k * cin * cout + cout  # every conv has a bias
  return (conv(7, nc, ngf) + conv(3, ngf, 2 * ngf) + conv(3, 2 * ngf, 4 * ngf) +
          2 * n_blocks * conv(3, 4 * ngf, 4 * ngf) + conv(3, 4 * ngf, 2 * ngf) +
          conv(3, 2 * ngf, ngf) + conv(7, ngf, nc))


@pytest.mark.slow
def test_main_rejects_bad_mode_and_bad_config():
  result = _main('--mode=bogus')
  assert result.returncode != 0
  for mode in ('train', 'evaluate', 'export', 'translate', 'summary', 'convert', 'benchmark'):
    assert mode in result.stderr, result.stderr
  result = _main('--mode=summary', '--config.model.netG=foo')
  assert result.returncode != 0
  assert 'config.model.netG' in result.stderr and 'resnet_9blocks' in result.stderr, (
      result.stderr)


def test_a_schedule_that_trains_nothing_is_refused(default_config):
  default_config.train.epoch_count = 201  # past 100 + 100 epochs
  with pytest.raises(configuration.ConfigError,
                     match=r'epoch_count=201 starts after the schedule ends: n_epochs=100 \+ '
                     r'n_epochs_decay=100 = 200 epochs.*raise n_epochs or n_epochs_decay'):
    configuration.validate(default_config)
  default_config.train.epoch_count = 200  # the last epoch: one epoch to train
  configuration.validate(default_config)


def test_which_config_wins_on_an_existing_run(default_config):
  """The run's config.json for architecture and data, the command line for the mode's fields."""
  run = default_config.copy_and_resolve_references()
  run.model.netG, run.model.ngf, run.eval.num_images = 'resnet_6blocks', 16, 8
  del run.eval['grid_rows']  # a field added to configs/default.py after the run was saved
  cli = default_config  # resnet_9blocks, ngf 64
  cli.eval.num_images = 2
  cli.data.root = '/moved/data'
  cli.export.model_name_a2b = 'zebras'
  merged = configuration.mode_config(run, cli, 'evaluate')
  assert (merged.model.netG, merged.model.ngf) == ('resnet_6blocks', 16)
  assert merged.eval.num_images == 2 and merged.eval.grid_rows == 6
  assert merged.data.root == '/moved/data'
  assert merged.export.model_name_a2b == ''  # the run's (default) value: not evaluate's to change
  assert configuration.mode_config(run, cli, 'export').export.model_name_a2b == 'zebras'
  assert configuration.mode_config(run, cli, 'export').data.root == ''
  assert configuration.ignored_overrides({'model.netG', 'eval.num_images', 'data.root'},
                                         'evaluate') == ['model.netG']
  assert configuration.ignored_overrides({'translate.tile_size'}, 'translate') == []


def test_runs_saved_before_new_sections_still_resume(default_config):
  """Sections added to configs/default.py later (pretrained, export formats) block no resume."""
  saved = default_config.to_dict()
  del saved['pretrained']
  del saved['export']['formats']
  assert configuration.resume_conflicts(saved, default_config) == []
