"""The reference's PyTorch state-dict layout <-> our Keras networks: keys, shapes, architecture.

networks.py names every layer with weights after its key prefix in the reference's state dict
(model.1, model.10.conv_block.5, model.model.1.model.1 ...), so the mapping is by name:

* Conv2d weight [out, in, kh, kw] -> Keras kernel [kh, kw, in, out]; ConvTranspose2d
  [in, out, kh, kw] -> Keras [kh, kw, out, in]: both transpose(2, 3, 1, 0), no flip.
* BatchNorm2d weight / bias / running_mean / running_var -> gamma / beta / moving_mean /
  moving_variance (num_batches_tracked has no Keras counterpart and is dropped).
* Instance norm has no weights; files from before PyTorch 0.4 hold stale running statistics
  for it, dropped as the reference itself does when it loads them.

infer_architecture reads a state dict's architecture from its keys and shapes alone;
assign_state_dict copies a state dict into a network all or nothing, and its error lists
every missing key, unexpected key and shape mismatch. Needs no torch (arrays are numpy).
"""

import re

import keras
import numpy as np

from cyclegan_tf.models import custom_layers
from cyclegan_tf.models import networks

ROLES = ('G_A', 'G_B', 'D_A', 'D_B')  # a CycleGAN's networks; convert.ROLES adds pix2pix's G
# The fields of an architecture dict that describe a network (the rest is provenance).
GENERATOR_FIELDS = ('netG', 'ngf', 'norm', 'dropout', 'input_nc', 'output_nc')
DISCRIMINATOR_FIELDS = ('netD', 'ndf', 'n_layers_D', 'norm', 'input_nc', 'output_nc')
_STALE_NORM_BUFFERS = ('running_mean', 'running_var', 'num_batches_tracked')


class ConversionError(ValueError):
  """A file or folder that cannot be converted or loaded as asked; the message says why."""


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
# Roles, config fields and architecture comparisons.


def config_nc_fields(role):
  """{network field: config.model field} for the channels of a role's network."""
  return {
      'G': {'input_nc': 'input_nc', 'output_nc': 'output_nc'},  # pix2pix's one generator
      'G_A': {'input_nc': 'input_nc', 'output_nc': 'output_nc'},
      'G_B': {'input_nc': 'output_nc', 'output_nc': 'input_nc'},
      'D_A': {'input_nc': 'output_nc'},  # D_A judges domain B images
      'D_B': {'input_nc': 'input_nc'},
  }[role]


def _config_field(field, role):
  """The config.model field that sets a network field of a role."""
  if field in ('input_nc', 'output_nc'):
    return config_nc_fields(role).get(field)
  if field == 'dropout':
    return 'no_dropout'
  return field


def architecture_differences(saved, current, role):
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
    elif isinstance(layer, custom_layers.InstanceNormalization):
      # instance norm: no weights
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
