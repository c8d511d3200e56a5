"""The reference's PyTorch weights (.pth state dicts) -> our Keras networks, weights and exports.

  python main.py --mode=convert --pth=horse2zebra.pth --output=converted/

reads one state dict of a generator (resnet_9blocks, resnet_6blocks, unet_128, unet_256) or a
discriminator (basic, n_layers, pixel), infers its architecture from the tensors' names and
shapes, builds our network (networks.py names every layer with weights after its state-dict
prefix, so the mapping is by name), copies every tensor in, and writes to the output folder:

* ``<role>.weights.h5``: Keras weights (role G_A, G_B, D_A or D_B);
* ``<role>.json``: the architecture it was converted as (netG / netD, ngf / ndf, n_layers_D,
  norm, dropout, input_nc, output_nc, role), which ``load_init_weights`` checks;
* generators only: a SavedModel in the export layout, ``<model_name>/<version>/`` (cyclegan_a2b
  for G_A or a published generator, cyclegan_b2a for G_B), for translate and the server.

The role comes from the file name (the reference's training writes ``{epoch}_net_G_A.pth``,
``_net_G_B``, ``_net_D_A``, ``_net_D_B``); any other generator file (a published one such as
``horse2zebra.pth``) is G_A. ``role=`` overrides it.

Layouts (FACTS.md): Conv2d [out, in, kh, kw] -> Keras [kh, kw, in, out] and ConvTranspose2d
[in, out, kh, kw] -> Keras [kh, kw, out, in], both transpose(2, 3, 1, 0) without a flip;
BatchNorm2d weight / bias / running_mean / running_var -> gamma / beta / moving_mean /
moving_variance. Anything that does not fit (missing or extra tensors, other shapes) is an
error listing every offending key: never a partial load. Stale instance-norm statistics of
pre-0.4 files are dropped (and logged), as the reference itself does when it loads them.

``config.train.init_from=DIR`` starts training from a folder of converted files:
``load_init_weights`` loads every role found there after checking its architecture.

torch is optional (``pip install -e ".[convert]"``); only reading .pth files needs it.
"""

import json
import os
import re

from absl import app
from absl import logging
import keras
import numpy as np

from cyclegan_tf import networks

ROLES = ('G_A', 'G_B', 'D_A', 'D_B')
TORCH_VERSION = '2.13.0'
INSTALL_HINT = (f'Converting PyTorch weights needs PyTorch: install it with '
                f'`pip install -e ".[convert]"` (from the repository) or '
                f'`pip install torch=={TORCH_VERSION}`.')
FORMAT = 'cyclegan_tf.convert/1'
# The JSON fields that describe a network's architecture (the rest is provenance).
GENERATOR_FIELDS = ('netG', 'ngf', 'norm', 'dropout', 'input_nc', 'output_nc')
DISCRIMINATOR_FIELDS = ('netD', 'ndf', 'n_layers_D', 'norm', 'input_nc', 'output_nc')
_ROLE_IN_NAME = re.compile(r'net_(G_A|G_B|D_A|D_B|G|D)\.pth?$')
_STALE_NORM_BUFFERS = ('running_mean', 'running_var', 'num_batches_tracked')
_DATA_PARALLEL_PREFIX = 'module.'


class ConversionError(app.UsageError, ValueError):
  """A file or folder that cannot be converted or loaded as asked; the message says why.

  A ValueError for library callers; an absl UsageError so that main.py reports it as a plain
  message (no traceback) with exit status 1.
  """


class TorchNotInstalledError(ConversionError, ImportError):
  """PyTorch, needed to read .pth files, is not installed."""


# ---------------------------------------------------------------------------------------------
# Reading .pth files.


def import_torch():
  """torch, or TorchNotInstalledError with the install command."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise TorchNotInstalledError(f'{INSTALL_HINT} (import torch failed: {e})') from None
  return torch


def load_state_dict(pth_path):
  """{key: float32 / int numpy array} of a .pth state dict, 'module.' prefixes stripped.

  Loads with weights_only=True: no code from the file runs.
  """
  torch = import_torch()
  if not os.path.isfile(pth_path):
    raise ConversionError(f'No such file: {pth_path}')
  try:
    obj = torch.load(pth_path, map_location='cpu', weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    raise ConversionError(
        f'{pth_path} cannot be read as a PyTorch state dict (loaded with weights_only=True, '
        f'so files that need code to unpickle are refused): {type(e).__name__}: {e}') from None
  if isinstance(obj, dict) and 'state_dict' in obj and isinstance(obj['state_dict'], dict):
    obj = obj['state_dict']  # a checkpoint dict wrapping the state dict
  if not isinstance(obj, dict):
    raise ConversionError(f'{pth_path} holds a {type(obj).__name__}, not a state dict (a dict '
                          'of tensor names to tensors, as the reference saves them).')
  not_tensors = sorted(str(k) for k, v in obj.items() if not torch.is_tensor(v))
  if not_tensors:
    raise ConversionError(f'{pth_path} is not a plain state dict: these entries are not '
                          f'tensors: {", ".join(not_tensors)}')
  state = {}
  prefixed = []
  for key, tensor in obj.items():
    if key.startswith(_DATA_PARALLEL_PREFIX):
      prefixed.append(key)
      key = key[len(_DATA_PARALLEL_PREFIX):]
    if key in state:
      raise ConversionError(f'{pth_path} holds {key!r} both with and without the "module." '
                            'prefix of DataParallel.')
    tensor = tensor.detach().cpu()
    state[key] = tensor.float().numpy() if tensor.is_floating_point() else tensor.numpy()
  if prefixed:
    logging.info('Stripped the DataParallel prefix "module." from %d keys of %s.',
                 len(prefixed), pth_path)
  if not state:
    raise ConversionError(f'{pth_path} holds an empty state dict.')
  return state


# ---------------------------------------------------------------------------------------------
# Architecture inference from tensor names and shapes.


def _shape_of(shapes, key, what, source):
  if key not in shapes:
    raise ConversionError(f'{source}: cannot tell {what}: it has no tensor {key!r}. '
                          f'It holds: {_key_summary(shapes)}')
  return tuple(shapes[key])


def _key_summary(shapes, limit=12):
  keys = sorted(shapes)
  more = f' ... ({len(keys)} keys)' if len(keys) > limit else ''
  return ', '.join(keys[:limit]) + more


def _norm_from(shapes, biased_conv):
  """batch: norm layers with affine weights; instance: convs with biases; none: neither."""
  if any(k.endswith('.weight') and len(s) == 1 for k, s in shapes.items()):
    return 'batch'
  return 'instance' if f'{biased_conv}.bias' in shapes else 'none'


def infer_architecture(shapes, source='the state dict'):
  """The reference architecture of a state dict, from {key: shape}.

  Returns a dict: kind ('generator' / 'discriminator'), netG / netD, ngf / ndf, n_layers_D,
  norm, dropout, input_nc, output_nc. A U-Net's dropout has no weights, so it is None (unknown).
  """
  keys = set(shapes)
  if any(k.startswith('model.model.') for k in keys):
    depth = max(k.split('.').count('model') for k in keys) - 1
    names = {7: 'unet_128', 8: 'unet_256'}
    if depth not in names:
      raise ConversionError(f'{source} holds a U-Net with {depth} levels; the reference has '
                            'unet_128 (7) and unet_256 (8).')
    down = _shape_of(shapes, 'model.model.0.weight', 'ngf and input_nc', source)
    up = _shape_of(shapes, 'model.model.3.weight', 'output_nc', source)
    return dict(kind='generator', netG=names[depth], ngf=down[0], input_nc=down[1],
                output_nc=up[1], norm=_norm_from(shapes, 'model.model.1.model.1'),
                dropout=None)
  blocks = sorted({int(k.split('.')[1]) for k in keys
                   if k.startswith('model.') and '.conv_block.' in k})
  if blocks:
    names = {9: 'resnet_9blocks', 6: 'resnet_6blocks'}
    if len(blocks) not in names:
      raise ConversionError(f'{source} holds a resnet generator with {len(blocks)} blocks; '
                            'the reference has resnet_6blocks and resnet_9blocks.')
    first = _shape_of(shapes, 'model.1.weight', 'ngf and input_nc', source)
    last_index = blocks[-1] + 8  # two (ConvTranspose, norm, ReLU), ReflectionPad, conv
    last = _shape_of(shapes, f'model.{last_index}.weight', 'output_nc', source)
    # Without dropout conv_block.6 is the second norm (1-D with batch norm), with it the conv.
    dropout = len(shapes.get(f'model.{blocks[0]}.conv_block.6.weight', ())) == 4
    return dict(kind='generator', netG=names[len(blocks)], ngf=first[0], input_nc=first[1],
                output_nc=last[0], norm=_norm_from(shapes, 'model.4'), dropout=dropout)
  if 'net.0.weight' in keys:
    first = tuple(shapes['net.0.weight'])
    return dict(kind='discriminator', netD='pixel', ndf=first[0], input_nc=first[1],
                output_nc=1, n_layers_D=None, norm=_norm_from(shapes, 'net.2'))
  if 'model.0.weight' in keys and len(shapes['model.0.weight']) == 4:
    first = tuple(shapes['model.0.weight'])
    convs = [k for k, s in shapes.items()
             if re.fullmatch(r'model\.\d+\.weight', k) and len(s) == 4]
    n_layers = len(convs) - 2
    if n_layers < 1:
      raise ConversionError(f'{source} looks like a PatchGAN discriminator with only '
                            f'{len(convs)} convs; it needs at least 3.')
    return dict(kind='discriminator', netD='basic' if n_layers == 3 else 'n_layers',
                ndf=first[0], input_nc=first[1], output_nc=1, n_layers_D=n_layers,
                norm=_norm_from(shapes, 'model.2'))
  raise ConversionError(
      f'{source} is not a state dict of the reference\'s generators (resnet_9blocks, '
      f'resnet_6blocks, unet_128, unet_256) or discriminators (basic, n_layers, pixel): '
      f'no model.1 / model.model.0 / model.0 / net.0 weights. It holds: {_key_summary(shapes)}')


# ---------------------------------------------------------------------------------------------
# Roles and the config.


def role_from_filename(path):
  """G_A / G_B / D_A / D_B from the reference's checkpoint names (net_G / net_D: pix2pix's), else
  None."""
  match = _ROLE_IN_NAME.search(os.path.basename(path))
  if not match:
    return None
  role = match.group(1)
  return {'G': 'G_A', 'D': 'D_A'}.get(role, role)


def _config_nc_fields(role):
  """{network field: config.model field} for the channels of a role's network."""
  return {
      'G_A': {'input_nc': 'input_nc', 'output_nc': 'output_nc'},
      'G_B': {'input_nc': 'output_nc', 'output_nc': 'input_nc'},
      'D_A': {'input_nc': 'output_nc'},  # D_A judges domain B images
      'D_B': {'input_nc': 'input_nc'},
  }[role]


def _config_field(field, role):
  """The config.model field that sets a network field of a role."""
  if field in ('input_nc', 'output_nc'):
    return _config_nc_fields(role).get(field)
  if field == 'dropout':
    return 'no_dropout'
  return field


def _explicit_model_fields(config, fields=None):
  """{field: value} of the config.model settings a file must agree with.

  ``fields`` names them; by default they are the fields whose values differ from
  configs/default.py plus those set on main.py's command line (--config.model.X=...), even to
  the default value.
  """
  if config is None:
    return {}
  if fields is None:
    try:
      from configs import default  # pylint: disable=g-import-not-at-top
      defaults = default.get_config().model
    except ImportError:
      defaults = {}
    fields = {k for k, v in config.model.items() if k not in defaults or defaults[k] != v}
    fields |= command_line_model_fields()
  return {k: config.model[k] for k in fields if k in config.model}


def command_line_model_fields(flag_values=None):
  """config.model fields set on the command line (--config.model.X=...) once flags are parsed."""
  try:
    from absl import flags  # pylint: disable=g-import-not-at-top
    from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
    flag_values = flags.FLAGS if flag_values is None else flag_values
    if not flag_values.is_parsed() or 'config' not in flag_values:
      return set()
    overrides = config_flags.get_override_values(flag_values['config'])
  except Exception:  # pylint: disable=broad-except
    return set()  # no config flag of ml_collections' kind: nothing was set on a command line
  return {k[len('model.'):] for k in overrides if k.startswith('model.')}


def _apply_config(arch, role, config, explicit_fields=None):
  """The architecture to build: the inferred one with the user's explicit config on top.

  Returns (arch, forced) where forced lists 'config.model.X=... (the file looks like ...)' for
  each explicit setting that differs from what the file shows.
  """
  arch = dict(arch)
  explicit = _explicit_model_fields(config, explicit_fields)
  forced = []

  def force(field, value, config_name, shown):
    if arch.get(field) is not None and arch[field] != value:
      forced.append(f'config.model.{config_name}={explicit[config_name]!r} (the file looks '
                    f'like {field}={shown!r})')
    arch[field] = value

  if arch['kind'] == 'generator':
    if 'netG' in explicit:
      force('netG', explicit['netG'], 'netG', arch['netG'])
    if 'ngf' in explicit:
      force('ngf', explicit['ngf'], 'ngf', arch['ngf'])
    if 'no_dropout' in explicit:
      force('dropout', not explicit['no_dropout'], 'no_dropout', arch['dropout'])
    if arch['dropout'] is None:  # a U-Net: dropout has no weights; take the config's
      arch['dropout'] = bool(config is not None and not config.model.no_dropout)
  else:
    if 'netD' in explicit:
      want = explicit['netD']
      # basic is NLayerDiscriminator with 3 layers; n_layers uses config.model.n_layers_D.
      want_layers = {'basic': 3, 'pixel': None}.get(want, config.model.n_layers_D)
      shown = arch['netD'] if arch['netD'] == 'pixel' or want == 'pixel' else (
          f'{arch["netD"]} with n_layers_D={arch["n_layers_D"]}')
      if (want == 'pixel') != (arch['netD'] == 'pixel') or want_layers != arch['n_layers_D']:
        setting = f'config.model.netD={want!r}'
        if want == 'n_layers':
          setting += f', config.model.n_layers_D={want_layers}'
        forced.append(f'{setting} (the file looks like netD={shown})')
      arch['netD'], arch['n_layers_D'] = want, want_layers
    if 'ndf' in explicit:
      force('ndf', explicit['ndf'], 'ndf', arch['ndf'])
  if 'norm' in explicit:
    force('norm', explicit['norm'], 'norm', arch['norm'])
  for field, config_name in _config_nc_fields(role).items():
    if config_name in explicit:
      force(field, explicit[config_name], config_name, arch[field])
  return arch, forced


def build_network(arch, name=None):
  """Our Keras network for an architecture dict (from infer_architecture or a JSON file)."""
  if arch['kind'] == 'generator':
    return networks.define_G(arch['input_nc'], arch['output_nc'], arch['ngf'], arch['netG'],
                             arch['norm'], bool(arch['dropout']), name=name)
  return networks.define_D(arch['input_nc'], arch['ndf'], arch['netD'],
                           arch['n_layers_D'] or 3, arch['norm'], name=name)


def describe(arch):
  if arch['kind'] == 'generator':
    return (f'{arch["netG"]} generator (ngf {arch["ngf"]}, norm {arch["norm"]}, '
            f'{arch["input_nc"]}->{arch["output_nc"]} channels'
            f'{", dropout" if arch["dropout"] else ""})')
  layers_text = f', n_layers_D {arch["n_layers_D"]}' if arch['netD'] == 'n_layers' else ''
  return (f'{arch["netD"]} discriminator (ndf {arch["ndf"]}{layers_text}, norm {arch["norm"]}, '
          f'{arch["input_nc"]} input channels)')


# ---------------------------------------------------------------------------------------------
# The mapping: state-dict keys <-> Keras variables.


def _to_keras_kernel(array):
  return np.ascontiguousarray(np.transpose(array, (2, 3, 1, 0)))


def _to_torch_kernel(array):
  return np.ascontiguousarray(np.transpose(array, (3, 2, 0, 1)))


def _torch_targets(model):
  """({torch key: (keras variable, is_kernel)}, {droppable stale keys}) of a network."""
  targets, droppable = {}, set()
  for layer in model.layers:
    name = layer.name
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
      targets[f'{name}.weight'] = (layer.kernel, True)
      if layer.use_bias:
        targets[f'{name}.bias'] = (layer.bias, False)
    elif isinstance(layer, keras.layers.BatchNormalization):
      targets[f'{name}.weight'] = (layer.gamma, False)
      targets[f'{name}.bias'] = (layer.beta, False)
      targets[f'{name}.running_mean'] = (layer.moving_mean, False)
      targets[f'{name}.running_var'] = (layer.moving_variance, False)
      droppable.add(f'{name}.num_batches_tracked')  # a counter Keras has no use for
    elif isinstance(layer, keras.layers.GroupNormalization):  # instance norm: no weights
      droppable.update(f'{name}.{buffer}' for buffer in _STALE_NORM_BUFFERS)
    elif layer.weights:
      raise AssertionError(f'{model.name}: layer {name} has weights the converter does not map.')
  return targets, droppable


def _torch_shape(variable, is_kernel):
  shape = tuple(variable.shape)
  return (shape[3], shape[2], shape[0], shape[1]) if is_kernel else shape


def torch_shapes(model):
  """{state-dict key: shape} that the reference's network matching ``model`` has."""
  targets, _ = _torch_targets(model)
  return {k: _torch_shape(v, is_kernel) for k, (v, is_kernel) in targets.items()}


def model_architecture(model):
  """The architecture dict of one of our Keras networks (inferred like a state dict's)."""
  arch = infer_architecture(torch_shapes(model), source=model.name)
  if arch['kind'] == 'generator':
    arch['dropout'] = any(isinstance(layer, keras.layers.Dropout) for layer in model.layers)
  return arch


def _format_keys(title, lines):
  return [f'  {title} ({len(lines)}):'] + [f'    {line}' for line in lines]


def assign_state_dict(model, state, source='the state dict', header=None):
  """Copies a state dict into ``model`` (all or nothing); returns the dropped keys.

  Raises ConversionError listing missing keys, unexpected keys and shape mismatches (file
  shape and expected shape) when they do not fit exactly.
  """
  targets, droppable = _torch_targets(model)
  missing = sorted(k for k in targets if k not in state)
  unexpected = sorted(k for k in state if k not in targets and k not in droppable)
  mismatched = []
  for key in sorted(k for k in targets if k in state):
    variable, is_kernel = targets[key]
    expected = _torch_shape(variable, is_kernel)
    if tuple(state[key].shape) != expected:
      mismatched.append(f'{key}: file has {tuple(state[key].shape)}, '
                        f'{model.name} needs {expected}')
  if missing or unexpected or mismatched:
    lines = [header or f'{source} does not fit {model.name}:']
    if missing:
      lines += _format_keys('missing keys (the network has them, the file does not)', missing)
    if unexpected:
      lines += _format_keys('unexpected keys (the file has them, the network does not)',
                            unexpected)
    if mismatched:
      lines += _format_keys('shape mismatches', mismatched)
    raise ConversionError('\n'.join(lines))
  for key, (variable, is_kernel) in targets.items():
    value = state[key]
    variable.assign(_to_keras_kernel(value) if is_kernel else value.astype(np.float32))
  return sorted(k for k in state if k in droppable)


# ---------------------------------------------------------------------------------------------
# convert_file.


def _model_names(config):
  if config is not None:
    return {'G_A': config.export.model_name_a2b, 'G_B': config.export.model_name_b2a}
  return {'G_A': 'cyclegan_a2b', 'G_B': 'cyclegan_b2a'}


def convert_state_dict(state, config=None, role=None, source='the state dict',
                       explicit_fields=None):
  """(Keras network, architecture dict, dropped keys) for a state dict and a role."""
  shapes = {k: tuple(v.shape) for k, v in state.items()}
  inferred = infer_architecture(shapes, source)
  kind = inferred['kind']
  if role is None:
    role = 'G_A' if kind == 'generator' else 'D_A'
  if role not in ROLES:
    raise ConversionError(f'Unknown role {role!r}; allowed: {", ".join(ROLES)}.')
  if (kind == 'generator') != role.startswith('G'):
    raise ConversionError(f'{source} holds a {kind} ({describe(inferred)}) but its '
                          f'role is {role}.')
  arch, forced = _apply_config(inferred, role, config, explicit_fields)
  model = build_network(arch, name=role)
  if forced:
    header = (f'{source} does not fit the config: ' + '; '.join(forced) +
              f'. The network built from it, a {describe(arch)}, does not match the file:')
  else:
    header = f'{source} does not fit a {describe(arch)}:'
  dropped = assign_state_dict(model, state, source, header=header)
  arch['role'] = role
  return model, arch, dropped


def convert_file(pth_path, output_dir, config=None, role=None, export=True,
                 explicit_fields=None):
  """Converts one reference .pth file into ``output_dir``; returns what was written.

  Args:
    pth_path: a state dict saved by the reference (a published generator or a training
      checkpoint {epoch}_net_{G_A,G_B,D_A,D_B}.pth).
    output_dir: created if needed; several roles can share it (e.g. for init_from).
    config: the run's config: its explicit config.model settings must match the file (see
      explicit_fields), and config.export names the export.
    role: G_A, G_B, D_A or D_B; default from the file name, else G_A / D_A.
    export: for generators, also write the SavedModel export.
    explicit_fields: config.model fields the file must agree with; by default those that
      differ from configs/default.py or were set on main.py's command line. The rest is
      inferred from the file.

  Returns:
    {'role', 'architecture' (the JSON's content), 'weights_path', 'architecture_path',
     'export_path' (None for discriminators), 'dropped_keys', 'num_tensors', 'num_params'}.
  """
  state = load_state_dict(pth_path)
  name_role = role_from_filename(pth_path)
  if role is None:
    role = name_role
  model, arch, dropped = convert_state_dict(state, config, role, source=pth_path,
                                            explicit_fields=explicit_fields)
  role = arch['role']
  if name_role is None and role == 'D_A' and arch['kind'] == 'discriminator':
    logging.info('%s names no role; converting it as D_A (pass role= to choose).', pth_path)
  if dropped:
    logging.info('Dropped %d stale key(s) of %s that the network does not use (instance norm '
                 'has no running statistics; BatchNorm counters are not weights): %s',
                 len(dropped), pth_path, ', '.join(dropped))

  os.makedirs(output_dir, exist_ok=True)
  weights_path = os.path.join(output_dir, f'{role}.weights.h5')
  model.save_weights(weights_path, overwrite=True)
  fields = GENERATOR_FIELDS if arch['kind'] == 'generator' else DISCRIMINATOR_FIELDS
  record = {'role': role, 'kind': arch['kind']}
  record.update({f: _plain(arch[f]) for f in fields})
  record.update({
      'format': FORMAT,
      'source': os.path.abspath(pth_path),
      'num_params': networks.count_params(model),
      'num_tensors': len(state) - len(dropped),
      'dropped_keys': dropped,
  })
  if arch['kind'] == 'generator' and arch['netG'].startswith('unet'):
    record['dropout_from'] = 'config'  # U-Net dropout has no weights: not in the file
  export_path = None
  if export and arch['kind'] == 'generator':
    from cyclegan_tf import export as export_lib  # pylint: disable=g-import-not-at-top
    model_name = _model_names(config)[role]
    export_path = export_lib.export_generator(model, output_dir, model_name, arch['netG'])
    record['model_name'] = model_name
    record['export_path'] = os.path.abspath(export_path)
  architecture_path = os.path.join(output_dir, f'{role}.json')
  with open(architecture_path, 'w') as f:
    json.dump(record, f, indent=2)
  logging.info('Converted %s (%s, %s, %d tensors) to %s%s', pth_path, role, describe(arch),
               record['num_tensors'], weights_path,
               f' and exported it to {export_path}' if export_path else '')
  print(f'Converted {pth_path} as {role}: {describe(arch)}, {record["num_tensors"]} tensors '
        f'-> {weights_path}' + (f'; SavedModel {export_path}' if export_path else '') +
        (f' ({len(dropped)} unused keys dropped)' if dropped else ''))
  return {
      'role': role,
      'architecture': record,
      'weights_path': weights_path,
      'architecture_path': architecture_path,
      'export_path': export_path,
      'dropped_keys': dropped,
      'num_tensors': record['num_tensors'],
      'num_params': record['num_params'],
  }


def _plain(value):
  return int(value) if isinstance(value, (np.integer,)) else value


# ---------------------------------------------------------------------------------------------
# Starting training from converted weights.


def _differences(saved, current, role):
  """Architecture fields that differ: ['field: converted X, model Y (config.model.F)', ...]."""
  fields = GENERATOR_FIELDS if saved.get('kind') == 'generator' else DISCRIMINATOR_FIELDS
  if saved.get('kind') != current['kind']:
    return [f'kind: converted {saved.get("kind")}, model {current["kind"]}']
  out = []
  for field in fields:
    old, new = saved.get(field), current.get(field)
    if field == 'dropout' and not str(current.get('netG')).startswith('resnet'):
      continue  # U-Net dropout has no weights
    if field == 'netD' and {old, new} == {'basic', 'n_layers'}:
      continue  # basic is n_layers with 3 layers; n_layers_D decides
    if field == 'n_layers_D' and 'pixel' in (saved.get('netD'), current.get('netD')):
      continue
    if old != new:
      config_field = _config_field(field, role)
      if field == 'dropout':
        where = f'config.model.no_dropout={not old}'
      elif field == 'n_layers_D' and saved.get('netD') == 'basic':
        where = "config.model.netD='basic'"
      elif config_field:
        where = f'config.model.{config_field}={old!r}'
      else:
        where = None
      out.append(f'{field}: converted {old!r}, model {new!r}' +
                 (f' (set {where} to match)' if where else ''))
  return out


def load_init_weights(nets, init_from_dir):
  """Loads every converted role found in ``init_from_dir`` into ``nets``; returns those roles.

  nets: {'G_A': model, 'G_B': ..., 'D_A': ..., 'D_B': ...} (any subset). Files of roles not in
  nets are skipped. Each <role>.json must describe the network it is loaded into; otherwise
  ConversionError names every differing field, and nothing is loaded.
  """
  if not init_from_dir or not os.path.isdir(init_from_dir):
    raise ConversionError(f'init_from {init_from_dir!r} is not a folder; make one with '
                          '`python main.py --mode=convert --pth=FILE --output=DIR`.')
  found = [r for r in ROLES if os.path.isfile(os.path.join(init_from_dir, f'{r}.weights.h5'))]
  if not found:
    expected = ', '.join(f'{r}.weights.h5' for r in ROLES)
    raise ConversionError(
        f'init_from {init_from_dir} holds no converted weights ({expected}); make them with '
        '`python main.py --mode=convert --pth=FILE --output=DIR`.')
  skipped = [r for r in found if r not in nets]
  if skipped:
    logging.info('init_from %s: skipping %s (no such network here).', init_from_dir,
                 ', '.join(skipped))
  roles = [r for r in found if r in nets]
  problems = []
  for role in roles:
    json_path = os.path.join(init_from_dir, f'{role}.json')
    if not os.path.isfile(json_path):
      problems.append(f'{role}: {json_path} is missing (re-run --mode=convert for {role})')
      continue
    with open(json_path) as f:
      saved = json.load(f)
    diffs = _differences(saved, model_architecture(nets[role]), role)
    if diffs:
      problems.append(f'{role} ({saved.get("source", json_path)}): ' + '; '.join(diffs))
  if problems:
    raise ConversionError(f'init_from {init_from_dir} does not match the model config:\n  ' +
                          '\n  '.join(problems))
  for role in roles:
    path = os.path.join(init_from_dir, f'{role}.weights.h5')
    try:
      nets[role].load_weights(path)
    except Exception as e:  # pylint: disable=broad-except
      raise ConversionError(f'init_from: cannot load {path} into {role}: {e}') from None
    logging.info('init_from: loaded %s from %s.', role, path)
  return roles
