"""Which models to serve: TF Serving's `models.config` (ModelServerConfig) or one --model_base_path.

The file is parsed with TF Serving's own proto (`tensorflow_serving.config.model_server_config_pb2`)
and protobuf's text format, so whatever tensorflow_model_server accepts parses here and a typo is
reported with its line and column. Two additions for running a config written for the container
on the host: `--base_path_map=FROM=TO` rewrites base_path prefixes (e.g. /models=runs/x/export),
and relative base paths resolve against the config file's folder.

Imports no TensorFlow (the proto module does not need it).
"""

import os

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

DEFAULT_PLATFORM = 'tensorflow'


class ModelConfig:
  """One served model.

  Attributes:
    name: the model name clients use in /v1/models/<name>.
    base_path: absolute folder holding the numbered version folders.
    policy: ('latest', n) | ('specific', [versions]) | ('all', None); TF Serving's version
      policies (default: the newest version).
    labels: {label: version} (version_labels).
  """

  def __init__(self, name, base_path, policy=('latest', 1), labels=None):
    self.name = name
    self.base_path = os.path.abspath(base_path)
    self.policy = policy
    self.labels = dict(labels or {})

  def __repr__(self):
    return f'ModelConfig({self.name!r}, {self.base_path!r}, {self.policy!r})'


def parse_base_path_map(items):
  """['FROM=TO', ...] -> [(FROM, absolute TO)]; raises ValueError naming a malformed item."""
  mapping = []
  for item in items or ():
    if '=' not in item or not item.split('=', 1)[0]:
      raise ValueError(f'--base_path_map={item!r}: expected FROM=TO, e.g. '
                       '/models=runs/quickstart/export.')
    old, new = item.split('=', 1)
    mapping.append((old, os.path.abspath(new)))
  return mapping


def _map_path(path, base_path_map):
  for old, new in base_path_map or ():
    old = old.rstrip('/')  # '/' maps every absolute path
    if path == old or path.startswith(old + '/'):
      return new + path[len(old):]
  return path


def _policy(config, where):
  which = config.model_version_policy.WhichOneof('policy_choice')
  if which is None:
    return ('latest', 1)  # TF Serving's default
  if which == 'latest':
    count = config.model_version_policy.latest.num_versions or 1
    return ('latest', int(count))
  if which == 'specific':
    versions = [int(v) for v in config.model_version_policy.specific.versions]
    if not versions:
      raise ValueError(f'{where}: model_version_policy.specific lists no versions; add '
                       '"versions: N" lines.')
    return ('specific', versions)
  return ('all', None)


def read_model_config(path, base_path_map=None):
  """A ModelServerConfig text file -> [ModelConfig], in the file's order.

  Raises:
    OSError: the file cannot be read.
    ValueError: it is not a ModelServerConfig in text format (the message names the file and
      the parse error with its line:column), it uses custom_model_config, a model_platform other
      than tensorflow, an empty specific version policy, or repeats a model name.
  """
  with open(path, encoding='utf-8') as f:
    text = f.read()
  proto = model_server_config_pb2.ModelServerConfig()
  try:
    text_format.Parse(text, proto)
  except text_format.ParseError as e:
    raise ValueError(f'{path}: not a valid ModelServerConfig in protobuf text format: {e} '
                     '(see serving/models.config for an example).') from None
  which = proto.WhichOneof('config')
  if which != 'model_config_list':
    found = 'custom_model_config' if which else 'nothing'
    raise ValueError(f'{path}: no model_config_list (found {found}); write '
                     'model_config_list { config { name: ... base_path: ... } }.')
  folder = os.path.dirname(os.path.abspath(path))
  models = []
  for i, config in enumerate(proto.model_config_list.config):
    where = f'{path}: config #{i + 1}'
    if not config.name:
      raise ValueError(f'{where}: missing name.')
    if not config.base_path:
      raise ValueError(f'{where} ({config.name}): missing base_path.')
    platform = config.model_platform or DEFAULT_PLATFORM
    if platform != DEFAULT_PLATFORM:
      raise ValueError(f'{where} ({config.name}): model_platform {platform!r} is not supported; '
                       'only "tensorflow" SavedModels are served.')
    base_path = _map_path(config.base_path, base_path_map)
    if not os.path.isabs(base_path):
      base_path = os.path.join(folder, base_path)
    models.append(ModelConfig(config.name, base_path, _policy(config, where),
                              {k: int(v) for k, v in config.version_labels.items()}))
  if not models:
    raise ValueError(f'{path}: model_config_list has no config entries.')
  names = [m.name for m in models]
  if len(set(names)) != len(names):
    raise ValueError(f'{path}: model names repeat: {names}.')
  return models
