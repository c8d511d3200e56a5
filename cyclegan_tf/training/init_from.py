"""Starting training from converted reference weights: config.train.init_from=DIR.

DIR holds what `--mode=convert` wrote: <role>.weights.h5 and <role>.json (the architecture it was
converted as) for any of the roles G_A, G_B, D_A, D_B. Each role found is loaded into the network
of that role after its architecture is checked against the network's; a mismatch names every
differing field and the config.model setting that would fix it, and nothing is loaded.
"""

import json
import os

from absl import logging

from cyclegan_tf.models import torch_layout

ConversionError = torch_layout.ConversionError
ROLES = torch_layout.ROLES


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
    diffs = torch_layout.architecture_differences(
        saved, torch_layout.model_architecture(nets[role]), role)
    if diffs:
      problems.append(f'{role} ({saved.get("source", json_path)}): ' + '; '.join(diffs))
  if problems:
    raise ConversionError(f'init_from {init_from_dir} does not match the model config:\n  ' +
                          '\n  '.join(problems))
  for role in roles:
    path = os.path.join(init_from_dir, f'{role}.weights.h5')
    _copy_by_layer_name(_load_converted(init_from_dir, role), nets[role])
    logging.info('init_from: loaded %s from %s.', role, path)
  return roles


def _load_converted(folder, role):
  """The converted network exactly as --mode=convert built and saved it (<role>.json)."""
  with open(os.path.join(folder, f'{role}.json')) as f:
    arch = json.load(f)
  model = torch_layout.build_network(arch, name=role)
  path = os.path.join(folder, f'{role}.weights.h5')
  try:
    model.load_weights(path)
  except Exception as e:  # pylint: disable=broad-except
    raise ConversionError(f'init_from: cannot read {path} ({type(e).__name__}: {e}); convert '
                          'the .pth again.') from None
  return model


def _copy_by_layer_name(source, target):
  """Copies every weight layer by its name (the reference's state-dict key), so that classes
  chosen for speed (a GEMM or a plain last conv) do not matter."""
  for layer in target.layers:
    if layer.weights:
      layer.set_weights(source.get_layer(layer.name).get_weights())
