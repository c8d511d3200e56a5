"""Checks a config once at start-up, so a bad value fails with the field's name, not mid-run.

Also compares a run's saved config with a new one: a resumed run may change its length and
logging, never its architecture or data.
"""

import json

from cyclegan_tf import losses
from cyclegan_tf import networks

DATASETS = ('synthetic_seasons', 'folder', 'tfds')
PREPROCESS = ('resize_and_crop', 'crop', 'scale_width', 'scale_width_and_crop', 'none')
DIRECTIONS = ('AtoB', 'BtoA')
LR_POLICIES = ('linear', 'step', 'cosine', 'plateau')
STRATEGIES = ('default', 'mirrored', 'multi_worker', 'tpu')
PRECISIONS = ('float32', 'mixed_bfloat16', 'mixed_float16')

# Fields a resumed run may change; every other field must equal the run's saved config.
RESUMABLE_CHANGES = (
    'train.max_steps', 'train.n_epochs', 'train.n_epochs_decay', 'train.checkpoint_every_steps',
    'train.max_to_keep', 'train.log_every_steps', 'train.image_every_steps',
    'train.eval_every_steps', 'train.strategy', 'train.devices', 'train.init_from',
    'data.root', 'data.tfds_data_dir', 'data.cache', 'data.num_parallel_calls', 'eval', 'export',
    'translate', 'benchmark',
)


class ConfigError(ValueError):
  """A config value that cannot work; the message names the field and what is allowed."""


def _choice(config, field, allowed):
  value = _get(config, field)
  if value not in allowed:
    raise ConfigError(
        f'config.{field}={value!r} is not valid; allowed values: {", ".join(allowed)}.')


def _positive(config, field, allow_zero=False):
  value = _get(config, field)
  ok = value >= 0 if allow_zero else value > 0
  if not ok:
    bound = '>= 0' if allow_zero else '> 0'
    raise ConfigError(f'config.{field}={value!r} is not valid; it must be {bound}.')


def _get(config, field):
  node = config
  for part in field.split('.'):
    if part not in node:
      raise ConfigError(f'config.{field} is missing; start from configs/default.py.')
    node = node[part]
  return node


def validate(config):
  """Raises ConfigError for the first value that cannot work; returns the config."""
  _choice(config, 'model.netG', networks.GENERATORS)
  _choice(config, 'model.netD', networks.DISCRIMINATORS)
  _choice(config, 'model.norm', networks.NORMS)
  _choice(config, 'model.init_type', networks.INIT_TYPES)
  for field in ('model.ngf', 'model.ndf', 'model.n_layers_D', 'model.input_nc',
                'model.output_nc'):
    _positive(config, field)
  for field in ('model.input_nc', 'model.output_nc'):
    if _get(config, field) not in (1, 3):
      raise ConfigError(f'config.{field}={_get(config, field)!r} is not valid; allowed: 1, 3.')
  _positive(config, 'model.init_gain')

  _choice(config, 'data.dataset', DATASETS)
  _choice(config, 'data.preprocess', PREPROCESS)
  _choice(config, 'data.direction', DIRECTIONS)
  _positive(config, 'data.load_size')
  _positive(config, 'data.crop_size')
  _positive(config, 'data.max_dataset_size', allow_zero=True)
  if config.data.preprocess in ('resize_and_crop', 'scale_width_and_crop') and (
      config.data.crop_size > config.data.load_size):
    raise ConfigError(
        f'config.data.crop_size={config.data.crop_size} is larger than config.data.load_size='
        f'{config.data.load_size}; with preprocess={config.data.preprocess!r} the crop must fit.')
  n_layers_d = config.model.n_layers_D
  if networks.discriminator_output_size(config.data.crop_size, config.model.netD,
                                        n_layers_d) < 1:
    smallest = next(s for s in range(1, 4096) if networks.discriminator_output_size(
        s, config.model.netD, n_layers_d) >= 1)
    raise ConfigError(
        f'config.data.crop_size={config.data.crop_size} is too small for netD='
        f'{config.model.netD!r} (n_layers_D={n_layers_d}): its patch map would be empty. Use '
        f'crop_size >= {smallest}.')
  if config.data.dataset == 'folder' and not config.data.root:
    raise ConfigError('config.data.dataset="folder" needs config.data.root, the folder holding '
                      'trainA, trainB, testA, testB (--config.data.root=PATH).')
  if config.data.dataset == 'tfds' and not config.data.tfds_name.startswith('cycle_gan/'):
    raise ConfigError(f'config.data.tfds_name={config.data.tfds_name!r} is not valid; use '
                      'cycle_gan/<config>, e.g. cycle_gan/horse2zebra.')
  _positive(config, 'data.synthetic_train_size')
  _positive(config, 'data.synthetic_test_size')

  _positive(config, 'train.batch_size')
  _positive(config, 'train.lr')
  for field in ('train.beta1', 'train.beta2'):
    if not 0 <= _get(config, field) < 1:
      raise ConfigError(f'config.{field}={_get(config, field)!r} is not valid; it must be in '
                        '[0, 1).')
  _positive(config, 'train.n_epochs', allow_zero=True)
  _positive(config, 'train.n_epochs_decay', allow_zero=True)
  if config.train.n_epochs + config.train.n_epochs_decay < 1:
    raise ConfigError('config.train.n_epochs + config.train.n_epochs_decay must be >= 1.')
  _positive(config, 'train.epoch_count')
  _choice(config, 'train.lr_policy', LR_POLICIES)
  _positive(config, 'train.lr_decay_iters')
  _positive(config, 'train.pool_size', allow_zero=True)
  _choice(config, 'train.gan_mode', losses.GAN_MODES)
  _positive(config, 'train.gp_weight', allow_zero=True)
  for field in ('train.max_steps', 'train.eval_every_steps'):
    _positive(config, field, allow_zero=True)
  for field in ('train.checkpoint_every_steps', 'train.max_to_keep', 'train.log_every_steps',
                'train.image_every_steps'):
    _positive(config, field)
  _choice(config, 'train.strategy', STRATEGIES)
  _choice(config, 'train.precision', PRECISIONS)

  for field in ('loss.lambda_A', 'loss.lambda_B', 'loss.lambda_identity'):
    _positive(config, field, allow_zero=True)
  if config.loss.lambda_identity > 0 and config.model.input_nc != config.model.output_nc:
    raise ConfigError(
        f'config.loss.lambda_identity={config.loss.lambda_identity} needs model.input_nc == '
        f'model.output_nc (got {config.model.input_nc} and {config.model.output_nc}); set '
        'lambda_identity=0 for data with different channel counts.')
  return config


def _flatten(tree, prefix=''):
  flat = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      flat.update(_flatten(value, name + '.'))
    else:
      flat[name] = value
  return flat


def to_json(config):
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


def resume_conflicts(saved, current):
  """Fields (dotted names) whose values differ and may not change on resume."""
  old, new = _flatten(saved), _flatten(current.to_dict())
  conflicts = []
  for name in sorted(set(old) | set(new)):
    if any(name == f or name.startswith(f + '.') for f in RESUMABLE_CHANGES):
      continue
    if old.get(name) != new.get(name):
      conflicts.append(f'{name}: run has {old.get(name)!r}, config has {new.get(name)!r}')
  return conflicts
