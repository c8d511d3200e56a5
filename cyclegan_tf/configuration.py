"""Checks a config once at start-up, so a bad value fails with the field's name, not mid-run,
and says which config wins where.

Which config wins. A run directory keeps the config it was trained with (config.json). Whoever
continues or consumes the run takes the architecture and the data from that file; the command
line (--config and its overrides) sets only what the mode may change:

  train (resume)  RESUMABLE_CHANGES (run length, intervals, strategy, paths); any other field
                  that differs from config.json is refused, naming the fields.
  evaluate        eval, plus where the data lives (data.root, data.tfds_data_dir) when given;
                  by default the data are where config.json records them (absolute paths)
  export          export, model.test_mode / test_seed
  translate       translate, export (model names), model.test_mode / test_seed

mode_config(run_config, cli_config, mode) applies this rule; modes without a run directory
(summary, convert, pretrained, benchmark) use the command line's config alone.
"""

import json
import os

from cyclegan_tf.models import family
from cyclegan_tf.models import losses
from cyclegan_tf.models import networks
from cyclegan_tf.models import test_time

DATASETS = ('synthetic_seasons', 'folder', 'tfds', 'pix2pix')
DATASET_MODES = ('unaligned', 'aligned', 'colorization')
PREPROCESS = ('resize_and_crop', 'crop', 'scale_width', 'scale_width_and_crop', 'none')
DIRECTIONS = ('AtoB', 'BtoA')
LR_POLICIES = ('linear', 'step', 'cosine', 'plateau')
STRATEGIES = ('default', 'mirrored', 'multi_worker', 'tpu')
PRECISIONS = ('float32', 'mixed_bfloat16', 'mixed_float16', 'auto')

# Fields a resumed run may change; every other field must equal the run's saved config.
RESUMABLE_CHANGES = (
    'train.max_steps', 'train.n_epochs', 'train.n_epochs_decay', 'train.checkpoint_every_steps',
    'train.max_to_keep', 'train.log_every_steps', 'train.image_every_steps',
    'train.eval_every_steps', 'train.strategy', 'train.devices', 'train.init_from',
    'data.root', 'data.tfds_data_dir', 'data.cache', 'data.num_parallel_calls', 'eval', 'export',
    'translate', 'benchmark', 'pretrained', 'train.jit_compile', 'train.precision',
    # The reference's --continue_train --lr: continue (e.g. after a NaN stop) at another rate.
    'train.lr',
    # How exports and translate run the generator: not part of training.
    'model.test_mode', 'model.test_seed',
)
# Config fields that hold local paths: '~' is expanded and they are recorded absolute.
PATH_FIELDS = ('data.root', 'data.tfds_data_dir', 'train.init_from', 'eval.inception_weights',
               'pretrained.cache_dir', 'data.download_dir')
# Fields added after runs were saved without them: {field: the value those runs had in effect}.
# run_dir.read_config fills them in, so old runs resume, evaluate and export unchanged.
ADDED_FIELDS = {
    'model.name': family.DEFAULT,
    'data.dataset_mode': 'unaligned',
    'data.pix2pix_name': 'facades',
    'data.pix2pix_base_url': 'http://efrosgans.eecs.berkeley.edu/pix2pix/datasets',
    'data.download_dir': '',
    'loss.lambda_L1': 100.0,
}
# Models that learn from pairs, and the dataset_mode their data must have.
PAIRED_MODELS = {'pix2pix': 'aligned', 'colorization': 'colorization'}
# Where the data lives: a consumer of a run takes them from the command line only when given.
_DATA_LOCATION = ('data.root', 'data.tfds_data_dir')
# Fields each mode that consumes a run takes from the command line (the rest: config.json).
MODE_FIELDS = {
    'evaluate': ('eval', 'data.root', 'data.tfds_data_dir', 'data.num_parallel_calls'),
    'export': ('export', 'model.test_mode', 'model.test_seed'),
    'translate': ('translate', 'export', 'model.test_mode', 'model.test_seed'),
}


class ConfigError(ValueError):
  """A config value that cannot work; the message names the field and what is allowed."""


class DataError(ValueError):
  """The data cannot be used as configured; the message names the path or field and the fix."""


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
  _choice(config, 'model.name', tuple(family.MODELS))
  _choice(config, 'model.netG', networks.GENERATORS)
  _choice(config, 'model.netD', networks.DISCRIMINATORS)
  _choice(config, 'model.norm', networks.NORMS)
  _choice(config, 'model.init_type', networks.INIT_TYPES)
  for field in ('model.ngf', 'model.ndf', 'model.n_layers_D', 'model.input_nc',
                'model.output_nc'):
    _positive(config, field)
  model = family.get(config.model)
  for field in ('model.input_nc', 'model.output_nc'):
    allowed = model.CHANNELS[field.split('.')[1]]
    if _get(config, field) not in allowed:
      raise ConfigError(f'config.{field}={_get(config, field)!r} is not valid for '
                        f'{model.NAME}; allowed: {", ".join(map(str, allowed))}.')
  _positive(config, 'model.init_gain')
  _choice(config, 'model.test_mode', test_time.TEST_MODES)

  _choice(config, 'data.dataset', DATASETS)
  _choice(config, 'data.dataset_mode', DATASET_MODES)
  _check_pairing(config)
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
  last_epoch = config.train.n_epochs + config.train.n_epochs_decay
  if config.train.epoch_count > last_epoch:
    raise ConfigError(
        f'config.train.epoch_count={config.train.epoch_count} starts after the schedule ends: '
        f'n_epochs={config.train.n_epochs} + n_epochs_decay={config.train.n_epochs_decay} = '
        f'{last_epoch} epochs, so nothing would be trained. Lower epoch_count, or raise n_epochs '
        'or n_epochs_decay to extend the schedule.')
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

  for field in ('loss.lambda_A', 'loss.lambda_B', 'loss.lambda_identity', 'loss.lambda_L1'):
    _positive(config, field, allow_zero=True)
  try:
    model.validate_config(config)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  return config


def _check_pairing(config):
  name, mode = config.model.name, config.data.dataset_mode
  if name in PAIRED_MODELS and mode != PAIRED_MODELS[name]:
    raise ConfigError(f'config.model.name={name!r} learns from pairs: it needs '
                      f'config.data.dataset_mode={PAIRED_MODELS[name]!r} (got {mode!r}); start from '
                      f'configs/{name}.py.')
  if mode == 'colorization' and name != 'colorization':
    raise ConfigError(f'config.data.dataset_mode="colorization" feeds L and ab channels to the '
                      f'colorization model only (config.model.name is {name!r}).')
  if mode != 'unaligned' and config.data.dataset == 'tfds':
    raise ConfigError(f'config.data.dataset="tfds" (cycle_gan) is unpaired; dataset_mode={mode!r} '
                      'needs folder, pix2pix or synthetic_seasons.')
  if mode == 'colorization' and config.data.direction != 'AtoB':
    raise ConfigError('config.data.direction must be AtoB for colorization (L -> ab).')


def expand_path(path, what):
  """`path` with '~' expanded and made absolute; URLs (gs://...) and '' as they are.

  Raises ConfigError naming `what` when a '~' cannot be expanded (no such user, no HOME).
  """
  if not path or '://' in path:
    return path
  expanded = os.path.expanduser(path)
  if expanded.startswith('~'):
    raise ConfigError(f'{what}={path!r}: {expanded.split(os.sep)[0]!r} cannot be expanded (no '
                      'such user, or HOME is not set); give the path without ~.')
  return os.path.abspath(expanded)


def normalize_paths(config):
  """Expands '~' in the config's path fields (PATH_FIELDS) and makes them absolute, in place,
  so a run's config.json works from any folder; returns the config. Raises ConfigError."""
  for field in PATH_FIELDS:
    try:
      value = _get_path(config, field)
    except KeyError:
      continue
    if isinstance(value, str) and value:
      _set_path(config, field, expand_path(value, f'config.{field}'))
  return config


def _get_path(tree, dotted):
  for part in dotted.split('.'):
    tree = tree[part]
  return tree


def _set_path(tree, dotted, value):
  *parents, leaf = dotted.split('.')
  for part in parents:
    tree = tree[part]
  tree[leaf] = value


def _deep_update(base, new):
  for key, value in new.items():
    if isinstance(value, dict) and isinstance(base.get(key), dict):
      _deep_update(base[key], value)
    else:
      base[key] = value
  return base


def mode_config(run_config, cli_config, mode):
  """The config `mode` runs with on an existing run (see the module docstring).

  run_config: the run's config.json (a ConfigDict); cli_config: the command line's. Returns a
  new ConfigDict: run_config with the fields MODE_FIELDS[mode] taken from cli_config (fields
  that the run's config.json predates also come from cli_config, which holds their defaults).
  """
  import ml_collections  # pylint: disable=g-import-not-at-top
  cli = cli_config.to_dict()
  merged = _deep_update(json.loads(json.dumps(cli)), run_config.to_dict())
  for field in MODE_FIELDS.get(mode, ()):
    try:
      value = _get_path(cli, field)
    except KeyError:
      continue
    if field in _DATA_LOCATION and not value:
      continue  # not given: the data are where the run recorded them
    _set_path(merged, field, json.loads(json.dumps(value)))
  return ml_collections.ConfigDict(merged)


def ignored_overrides(override_fields, mode):
  """Command-line overrides (dotted field names) that `mode` ignores on an existing run."""
  allowed = MODE_FIELDS.get(mode, ())
  return sorted(f for f in override_fields
                if not any(f == a or f.startswith(a + '.') for a in allowed))


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
