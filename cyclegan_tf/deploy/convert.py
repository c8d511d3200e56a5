"""`--mode=convert`: the reference's PyTorch weights (.pth state dicts) -> our Keras networks.

  python main.py --mode=convert --pth=horse2zebra.pth --output=converted/

reads one state dict of a generator (resnet_9blocks, resnet_6blocks, unet_128, unet_256) or a
discriminator (basic, n_layers, pixel), infers its architecture from the tensors' names and
shapes (torch_layout.py), builds our network, copies every tensor in, and writes to the output
folder:

* ``<role>.weights.h5``: Keras weights (role G_A, G_B, D_A, D_B, or G: pix2pix's generator);
* ``<role>.json``: the architecture it was converted as (netG / netD, ngf / ndf, n_layers_D,
  norm, dropout, input_nc, output_nc, role), the model (cycle_gan or pix2pix) and the test
  mode of the export, which init_from.load_init_weights checks;
* generators only: a SavedModel in the export layout, ``<model_name>/<version>/`` (cyclegan_a2b
  for G_A or a published CycleGAN generator, cyclegan_b2a for G_B, pix2pix_a2b for G), for
  translate and the server.

The role comes from the file name: the reference's training writes ``{epoch}_net_G_A.pth``,
``_net_G_B``, ``_net_D_A``, ``_net_D_B`` (also read from copies such as ``latest_net_G_B (1).pth``
and upper-case extensions); its pix2pix (and ``--model test``) writes ``latest_net_G.pth``, role
G (the reference's pix2pix defaults: a U-Net with batch norm and dropout, exported a2b as
pix2pix_a2b); a published generator's name (``horse2zebra.pth``) is G_A, the direction it is
named after, and a published pix2pix one's (``pix2pix_edges2shoes.pth``) is G. Any other name
is an error asking for ``role=`` (``--role``): a guessed role would export B->A as A->B.

Test mode (models/test_time.py): the export runs a generator with batch norm or dropout in
'train' mode, as the reference's test.py does without --eval (its published pix2pix results),
unless config.model.test_mode is given explicitly; others in config.model.test_mode ('eval'). Files that are not state dicts (a web page, a
truncated download, a whole pickled model, a checkpoint of several networks) are errors that
say what the file holds and what to do. Files are read with torch.load(weights_only=True): no
code from the file runs.

torch is optional (``pip install -e ".[convert]"``); only reading .pth files needs it.
"""

import json
import os
import re
import zipfile

from absl import logging
import numpy as np

from cyclegan_tf.deploy import export as export_lib
from cyclegan_tf.data import image_files
from cyclegan_tf.models import networks
from cyclegan_tf.models import family
from cyclegan_tf.models import test_time
from cyclegan_tf.models import torch_layout

ConversionError = torch_layout.ConversionError
ROLES = torch_layout.ROLES + ('G',)  # G: pix2pix's (and --model test's) one generator
TORCH_VERSION = '2.13.0'
INSTALL_HINT = (f'Converting PyTorch weights needs PyTorch: install it with '
                f'`pip install -e ".[convert]"` (from the repository) or '
                f'`pip install torch=={TORCH_VERSION}`.')
FORMAT = 'cyclegan_tf.convert/1'
# The reference's published generators (its scripts/download_cyclegan_model.sh), each mapping
# the direction it is named after: converted as G_A.
PUBLISHED_MODELS = (
    'apple2orange', 'orange2apple', 'summer2winter_yosemite', 'winter2summer_yosemite',
    'horse2zebra', 'zebra2horse', 'monet2photo', 'style_monet', 'style_cezanne', 'style_ukiyoe',
    'style_vangogh', 'sat2map', 'map2sat', 'cityscapes_photo2label', 'cityscapes_label2photo',
    'facades_photo2label', 'facades_label2photo', 'iphone2dslr_flower')
# The reference's published pix2pix generators (its scripts/download_pix2pix_model.sh: unet_256,
# batch norm, dropout), converted as G. Three share a CycleGAN name, so ours carry a prefix:
# pix2pix_sat2map is the pix2pix generator, sat2map the CycleGAN one.
PIX2PIX_PREFIX = 'pix2pix_'
PIX2PIX_MODELS = ('edges2shoes', 'sat2map', 'map2sat', 'facades_label2photo', 'day2night')
PIX2PIX_PUBLISHED = tuple(PIX2PIX_PREFIX + name for name in PIX2PIX_MODELS)
# net_G_A ... anywhere in the name, then an optional copy suffix " (1)" / "-1", then .pth / .pt.
_ROLE_IN_NAME = re.compile(r'net_(G_A|G_B|D_A|D_B|G|D)(?:\s*\(\d+\)|[-_ ]\d+)?\.pth?$',
                           re.IGNORECASE)
_DATA_PARALLEL_PREFIX = 'module.'


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


def _unreadable(pth_path, error):
  """The ConversionError for a file torch cannot load: what the file holds and what to do."""
  what = image_files.describe_file(pth_path)
  needs_code = 'Weights only load failed' in str(error)  # a pickle that would run code
  if what.startswith('an HTML page') or 'text' in what or 'JSON' in what:
    fix = ('the download went wrong: the server sent this page instead of the model. Download '
           'it again (check the URL) or use --mode=pretrained')
  elif what.startswith('an empty file'):
    fix = 'the download or copy did not finish: fetch the file again'
  elif needs_code and what.startswith(('a ZIP archive', 'a Python pickle')):
    what = what.replace('a ZIP archive', 'a PyTorch file')
    fix = ('a pickled object, not a state dict: loading it needs its code (e.g. torch.save(model) '
           'of a whole network). Load it where its class exists and save model.state_dict() '
           'instead')
    error = type(error)()
  elif what.startswith('a ZIP archive'):
    fix = ('a PyTorch file (a zip archive) that is ' +
           ('truncated (its end is missing)' if not zipfile.is_zipfile(pth_path) else 'damaged') +
           ', e.g. an interrupted download: download it again and compare its size with the '
           'source')
  else:
    fix = 'not a PyTorch file'
  detail = (str(error).splitlines() or [''])[0][:200]
  return ConversionError(f'{pth_path} cannot be read as a PyTorch state dict: it is {what}; '
                         f'{fix}. ({type(error).__name__}{": " + detail if detail else ""})')


def load_state_dict(pth_path):
  """{key: float32 / int numpy array} of a .pth state dict, 'module.' prefixes stripped.

  Loads with weights_only=True: no code from the file runs. Raises ConversionError saying what
  the file holds when it is not a state dict.
  """
  torch = import_torch()
  if not os.path.isfile(pth_path):
    raise ConversionError(f'No such file: {pth_path}')
  try:
    obj = torch.load(pth_path, map_location='cpu', weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    raise _unreadable(pth_path, e) from None
  if isinstance(obj, dict) and 'state_dict' in obj and isinstance(obj['state_dict'], dict):
    obj = obj['state_dict']  # a checkpoint dict wrapping the state dict
  if not isinstance(obj, dict):
    raise ConversionError(f'{pth_path} holds a {type(obj).__name__}, not a state dict (a dict '
                          'of tensor names to tensors, as the reference saves them).')
  nested = sorted(str(k) for k, v in obj.items()
                  if isinstance(v, dict) and v and all(torch.is_tensor(t) for t in v.values()))
  if nested:
    raise ConversionError(
        f'{pth_path} holds several networks ({", ".join(nested)}), not one state dict: another '
        'repository\'s checkpoint layout. Save each network on its own, e.g. '
        f'torch.save(checkpoint[{nested[0]!r}], "latest_net_<ROLE>.pth") with ROLE one of G_A, '
        'G_B, D_A, D_B, and convert each file.')
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
# Roles and the config.


def role_from_filename(path):
  """G_A / G_B / D_A / D_B from the reference's CycleGAN checkpoint names, G from pix2pix's
  net_G (net_D reads as D_A), 'G_A' for a published CycleGAN generator's name and 'G' for a
  published pix2pix one's (pix2pix_edges2shoes); None when the name does not say."""
  name = os.path.basename(path)
  match = _ROLE_IN_NAME.search(name)
  if match:
    role = match.group(1).upper()
    return {'D': 'D_A'}.get(role, role)
  stem = re.sub(r'\.pth?$', '', name, flags=re.IGNORECASE)
  if stem in PUBLISHED_MODELS:
    return 'G_A'
  if stem in PIX2PIX_PUBLISHED:
    return 'G'
  return None


def _apply_config(arch, role, config, explicit_fields=None):
  """The architecture to build: the inferred one with the user's explicit config on top.

  Returns (arch, forced) where forced lists 'config.model.X=... (the file looks like ...)' for
  each explicit setting that differs from what the file shows.
  """
  arch = dict(arch)
  explicit = ({k: config.model[k] for k in explicit_fields or () if k in config.model}
              if config is not None else {})
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
    if arch['dropout'] is None and role == 'G' and 'no_dropout' not in explicit:
      arch['dropout'] = True  # a U-Net of pix2pix: the reference's default (no_dropout False)
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
  for field, config_name in torch_layout.config_nc_fields(role).items():
    if config_name in explicit:
      force(field, explicit[config_name], config_name, arch[field])
  return arch, forced


# ---------------------------------------------------------------------------------------------
# convert_file.


def _model_names(config):
  export = config.export if config is not None else {'model_name_a2b': '', 'model_name_b2a': ''}
  return {'G_A': family.export_name('cycle_gan', export, 'a2b'),
          'G_B': family.export_name('cycle_gan', export, 'b2a'),
          'G': family.export_name('pix2pix', export, 'a2b')}


def test_mode_for(model, config=None, explicit_fields=None):
  """(test mode, seed) of a converted generator's export: config.model.test_mode when set
  explicitly (or the network has neither batch norm nor dropout), else 'train', the reference's
  test.py without --eval."""
  mode = config.model.get('test_mode', 'eval') if config is not None else 'eval'
  seed = int(config.model.get('test_seed', 0)) if config is not None else 0
  if 'test_mode' in (explicit_fields or ()) or not test_time.has_train_mode_layers(model):
    return mode, seed
  return 'train', seed


def convert_state_dict(state, config=None, role=None, source='the state dict',
                       explicit_fields=None):
  """(Keras network, architecture dict, dropped keys) for a state dict and a role."""
  shapes = {k: tuple(v.shape) for k, v in state.items()}
  inferred = torch_layout.infer_architecture(shapes, source)
  kind = inferred['kind']
  if role is None:
    raise ConversionError(
        f'{source} holds a {torch_layout.describe(inferred)}, and its name does not say which '
        'network it is: pass --role=G_A (A->B), G_B (B->A), D_A or D_B (a CycleGAN\'s), or G '
        '(pix2pix\'s generator). (The reference names its checkpoints {epoch}_net_G_A.pth, '
        'latest_net_G.pth ...)')
  if role not in ROLES:
    raise ConversionError(f'Unknown role {role!r}; allowed: {", ".join(ROLES)}.')
  if (kind == 'generator') != role.startswith('G'):
    raise ConversionError(f'{source} holds a {kind} ({torch_layout.describe(inferred)}) but its '
                          f'role is {role}.')
  arch, forced = _apply_config(inferred, role, config, explicit_fields)
  model = torch_layout.build_network(arch, name=role)
  if forced:
    header = (f'{source} does not fit the config: ' + '; '.join(forced) +
              f'. The network built from it, a {torch_layout.describe(arch)}, does not match the file:')
  else:
    header = f'{source} does not fit a {torch_layout.describe(arch)}:'
  dropped = torch_layout.assign_state_dict(model, state, source, header=header)
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
    role: G_A, G_B, D_A, D_B or G; default from the file name (role_from_filename), else a
      ConversionError asks for it.
    export: for generators, also write the SavedModel export.
    explicit_fields: config.model fields the file must agree with (main.py passes those set
      on the command line or differing from configs/default.py); the rest is inferred from
      the file.

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
  if dropped:
    logging.info('Dropped %d stale key(s) of %s that the network does not use (instance norm '
                 'has no running statistics; BatchNorm counters are not weights): %s',
                 len(dropped), pth_path, ', '.join(dropped))

  os.makedirs(output_dir, exist_ok=True)
  weights_path = os.path.join(output_dir, f'{role}.weights.h5')
  model.save_weights(weights_path, overwrite=True)
  fields = torch_layout.GENERATOR_FIELDS if arch['kind'] == 'generator' else torch_layout.DISCRIMINATOR_FIELDS
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
  record['model'] = 'pix2pix' if role == 'G' else 'cycle_gan'
  export_path = None
  if export and arch['kind'] == 'generator':
    model_name = _model_names(config)[role]
    record['test_mode'], record['test_seed'] = test_mode_for(model, config, explicit_fields)
    export_path = export_lib.export_generator(model, output_dir, model_name, arch['netG'],
                                              test_mode=record['test_mode'],
                                              test_seed=record['test_seed'])
    record['model_name'] = model_name
    record['export_path'] = os.path.abspath(export_path)
  architecture_path = os.path.join(output_dir, f'{role}.json')
  with open(architecture_path, 'w') as f:
    json.dump(record, f, indent=2)
  logging.info('Converted %s (%s, %s, %d tensors) to %s%s', pth_path, role, torch_layout.describe(arch),
               record['num_tensors'], weights_path,
               f' and exported it to {export_path}' if export_path else '')
  print(f'Converted {pth_path} as {role}: {torch_layout.describe(arch)}, {record["num_tensors"]} tensors '
        f'-> {weights_path}' + (f'; SavedModel {export_path} (test mode {record["test_mode"]})'
                               if export_path else '') +
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
