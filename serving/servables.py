"""The served models' SavedModel versions: loading, version policy, lookup, status and metadata.

A ModelManager holds one ServedModel per configured model. poll() loads the versions the
model's policy wants (TF Serving's: the newest n, specific ones, or all numbered folders holding
a saved_model.pb) and unloads the others once one of the wanted versions is available (TF
Serving's availability-preserving policy: a broken new export does not take the old one down).
Each version goes through TF Serving's states: LOADING, AVAILABLE, then END when unloaded, or
END with the error when its load failed (retried once its saved_model.pb changes). Lookups and
errors use TF Serving's wording, so clients see the same messages from this server and from
tensorflow_model_server. Status and metadata are TF Serving's own response protos.
"""

import gc
import json
import logging
import os
import threading

from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2

from serving.errors import invalid
from serving.errors import not_found

SIGNATURE_DEF_FIELD = 'signature_def'
EXPORT_METADATA = os.path.join('assets.extra', 'cyclegan_export.json')
_STATE = get_model_status_pb2.ModelVersionStatus.State
_UNKNOWN_CODE = 2  # tensorflow.error.Code UNKNOWN


class InputSpec:
  """One signature input: name, TF dtype name ('DT_FLOAT'), numpy dtype, dims (-1 = any)."""

  def __init__(self, name, dtype_name, np_dtype, dims):
    self.name, self.dtype_name, self.np_dtype, self.dims = name, dtype_name, np_dtype, dims

  def shape_text(self):
    if self.dims is None:
      return '[any shape]'
    return '[' + ', '.join('?' if d == -1 else str(d) for d in self.dims) + ']'


class SignatureSpec:
  """A callable signature: inputs {name: InputSpec} and output names."""

  def __init__(self, key, inputs, outputs):
    self.key, self.inputs, self.outputs = key, inputs, outputs


def _numbered_versions(base_path):
  if not os.path.isdir(base_path):
    return []
  return sorted(int(n) for n in os.listdir(base_path)
                if n.isdigit() and os.path.isfile(os.path.join(base_path, n, 'saved_model.pb')))


class Servable:
  """One loaded version: its restored signatures, SignatureDef protos and input specs.

  Raises whatever tf.saved_model.load raises for a folder it cannot load.
  """

  def __init__(self, name, version, path, warm_up=True):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from tensorflow.core.framework import types_pb2  # pylint: disable=g-import-not-at-top
    from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
    self.name, self.version, self.path = name, int(version), path
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(path, 'saved_model.pb'), 'rb') as f:
      saved_model.ParseFromString(f.read())
    self.loaded = tf.saved_model.load(path)
    self.functions = dict(self.loaded.signatures)
    meta_graph = next((m for m in saved_model.meta_graphs if 'serve' in m.meta_info_def.tags),
                      saved_model.meta_graphs[0])
    self.signature_defs = get_model_metadata_pb2.SignatureDefMap()
    self.signature_defs.signature_def.MergeFrom(meta_graph.signature_def)
    self.specs = {}
    for key, sig in meta_graph.signature_def.items():
      if key not in self.functions:
        continue  # e.g. __saved_model_init_op: listed in metadata, not callable
      inputs = {}
      for input_name, info in sig.inputs.items():
        dtype = tf.dtypes.as_dtype(info.dtype)
        dims = None if info.tensor_shape.unknown_rank else [d.size for d in
                                                           info.tensor_shape.dim]
        inputs[input_name] = InputSpec(input_name, types_pb2.DataType.Name(info.dtype),
                                       dtype.as_numpy_dtype, dims)
      self.specs[key] = SignatureSpec(key, inputs, sorted(sig.outputs))
    self.export_info = None  # cyclegan_tf's export metadata, when the export has it
    info_path = os.path.join(path, EXPORT_METADATA)
    if os.path.isfile(info_path):
      try:
        with open(info_path, encoding='utf-8') as f:
          self.export_info = json.load(f)
      except (OSError, ValueError) as e:
        logging.warning('%s: unreadable %s: %s', path, EXPORT_METADATA, e)
    # How the export runs its generator (cyclegan_tf models/test_time.py): 'eval' or 'train'.
    self.test_mode = (self.export_info or {}).get('test_mode', 'eval' if self.export_info else None)
    self.test_seed = (self.export_info or {}).get('test_seed')
    if warm_up:
      self.warm_up()

  def warm_up(self):
    """Runs each signature once on a tiny input, so that the first request is not the slow one.

    (Restored functions are instantiated on their first call.)
    """
    import numpy as np  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    for key, spec in self.specs.items():
      inputs = {}
      for input_name, info in spec.inputs.items():
        if info.dtype_name == 'DT_FLOAT' and info.dims and len(info.dims) == 4 and info.dims[3] > 0:
          inputs[input_name] = tf.zeros([1, 8, 8, info.dims[3]], tf.float32)
        elif info.dtype_name == 'DT_STRING' and info.dims and len(info.dims) == 1:
          inputs[input_name] = tf.reshape(tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)), [1])
      if len(inputs) != len(spec.inputs):
        continue  # not an input layout this warm-up knows
      try:
        self.functions[key](**inputs)
      except Exception as e:  # pylint: disable=broad-except
        logging.warning('Warm-up of %s version %d signature %s failed: %s', self.name,
                        self.version, key, e)


class ServedModel:
  """A configured model: its loaded versions and every version's state."""

  def __init__(self, config):
    self.config = config
    self.servables = {}  # version -> Servable
    self.states = {}  # version -> (State, error code int, error message)
    self.failures = {}  # version -> saved_model.pb mtime of the failed load
    self.warned_empty = False

  def wanted_versions(self):
    available = _numbered_versions(self.config.base_path)
    kind, arg = self.config.policy
    if kind == 'latest':
      return available[-arg:] if available else []
    if kind == 'specific':
      return [v for v in arg if v in available]
    return available


def describe_test_mode(servables):
  """' (test mode train, seed 0)' for the listing of a model's loaded versions ('' when none
  records one; versions that differ are named: ' (test mode: 1 eval, 2 train seed 0)')."""
  modes = {s.version: s.test_mode + (f' seed {s.test_seed}' if s.test_mode == 'train' else '')
           for s in servables if s.test_mode}
  if not modes:
    return ''
  if len(set(modes.values())) == 1:
    return f' (test mode {next(iter(modes.values()))})'
  return ' (test mode: ' + ', '.join(f'{v} {m}' for v, m in sorted(modes.items())) + ')'


def _error_code(exception):
  code = getattr(exception, 'error_code', None)  # tf.errors.OpError
  return int(code) if isinstance(code, int) and code > 0 else _UNKNOWN_CODE


class ModelManager:
  """The configured models and their versions (`models`: {name: ServedModel}).

  freeze_gc: after loads and unloads, move every Python object of the process out of the
  cyclic garbage collector's reach (gc.freeze), for a server process; see poll().
  Raises FileNotFoundError (naming the model and the export command) for a base path that
  does not exist.
  """

  def __init__(self, configs, warm_up=True, freeze_gc=False):
    for config in configs:
      if not os.path.isdir(config.base_path):
        raise FileNotFoundError(f'Model {config.name}: base path {config.base_path} does not '
                                'exist (export first: python main.py --mode=export ...).')
    self.models = {c.name: ServedModel(c) for c in configs}
    self.warm_up = warm_up
    self.freeze_gc = freeze_gc
    self._lock = threading.Lock()
    self._stop = threading.Event()
    self.poll()

  def poll(self):
    """Loads the versions each policy wants that are not loaded yet and unloads the others."""
    before = {name: dict(model.servables) for name, model in self.models.items()}
    self._poll()
    changed = any(before[name] != model.servables for name, model in self.models.items())
    if self.freeze_gc and changed:
      # A loaded SavedModel is hundreds of thousands of Python objects that live as long as
      # the version: freezing them keeps the cyclic GC, which JSON requests trigger often,
      # from walking them all again and again (serving/README.md has the measurement).
      gc.unfreeze()
      gc.collect()
      gc.freeze()

  def _poll(self):
    for model in self.models.values():
      wanted = model.wanted_versions()
      with self._lock:
        current = dict(model.servables)
      for version in wanted:
        if version in current:
          continue
        path = os.path.join(model.config.base_path, str(version))
        stamp = os.path.getmtime(os.path.join(path, 'saved_model.pb'))
        if model.failures.get(version) == stamp:
          continue
        with self._lock:
          model.states[version] = (_STATE.LOADING, 0, '')
        try:
          current[version] = Servable(model.config.name, version, path, self.warm_up)
        except Exception as e:  # pylint: disable=broad-except
          model.failures[version] = stamp
          message = f'{type(e).__name__}: {e}'.strip()
          with self._lock:
            model.states[version] = (_STATE.END, _error_code(e), message)
          logging.error('Could not load %s version %d from %s: %s', model.config.name,
                        version, path, message)
          continue
        model.failures.pop(version, None)
        with self._lock:
          model.states[version] = (_STATE.AVAILABLE, 0, '')
        logging.info('Loaded %s version %d from %s', model.config.name, version, path)
      if not wanted and not model.warned_empty:
        logging.warning('No versions of %s under %s yet.', model.config.name,
                        model.config.base_path)
      model.warned_empty = not wanted
      keep = {v: s for v, s in current.items() if v in wanted}
      if not keep:
        keep = current  # preserve availability: old versions serve until a wanted one loads
      with self._lock:
        for version in current:
          if version not in keep:
            model.states[version] = (_STATE.END, 0, '')  # unloaded, as TF Serving reports it
            logging.info('Unloaded %s version %d', model.config.name, version)
        model.servables = keep

  def poll_forever(self, seconds):
    while not self._stop.wait(seconds):
      try:
        self.poll()
      except Exception:  # pylint: disable=broad-except
        logging.exception('Polling for new versions failed.')

  def stop(self):
    self._stop.set()

  def _version_of_label(self, name, label):
    model = self.models.get(name)
    if model is None or label not in model.config.labels:
      raise invalid(f'Unrecognized servable version label: {label}')
    return model.config.labels[label]

  def servable(self, name, version=None, label=None):
    """The Servable for a request: the newest version, a version or a label.

    Raises ServingError: NOT_FOUND 'Servable not found for request: Latest(name)' /
    'Specific(name, version)' (TF Serving's wording), INVALID_ARGUMENT for an unknown label.
    """
    if label is not None:
      version = self._version_of_label(name, label)
    model = self.models.get(name)
    with self._lock:
      servables = dict(model.servables) if model else {}
    if version is None:
      if not servables:
        raise not_found(f'Servable not found for request: Latest({name})')
      return servables[max(servables)]
    if int(version) not in servables:
      raise not_found(f'Servable not found for request: Specific({name}, {int(version)})')
    return servables[int(version)]

  def status(self, name, version=None, label=None):
    """GetModelStatusResponse: every version's state, newest first, or one version's.

    Raises ServingError NOT_FOUND 'Could not find any versions of model NAME' / 'Could not find
    version V of model NAME' (TF Serving's wording); INVALID_ARGUMENT for an unknown label.
    """
    if label is not None:
      version = self._version_of_label(name, label)
    model = self.models.get(name)
    with self._lock:
      states = dict(model.states) if model else {}
    if version is None:
      versions = sorted(states, reverse=True)
      if not versions:
        raise not_found(f'Could not find any versions of model {name}')
    else:
      if int(version) not in states:
        raise not_found(f'Could not find version {int(version)} of model {name}')
      versions = [int(version)]
    response = get_model_status_pb2.GetModelStatusResponse()
    for v in versions:
      state, code, message = states[v]
      entry = response.model_version_status.add(version=v, state=state)
      entry.status.SetInParent()  # TF Serving always sends the status, OK included
      entry.status.error_code = code
      entry.status.error_message = message
    return response

  def metadata(self, name, version=None, label=None, fields=(SIGNATURE_DEF_FIELD,)):
    """GetModelMetadataResponse with the version's SignatureDefMap under 'signature_def'.

    Raises ServingError as servable() does, and INVALID_ARGUMENT for metadata fields other
    than signature_def (the only one TF Serving knows).
    """
    fields = list(fields)
    if not fields:
      raise invalid('GetModelMetadataRequest must specify at least one metadata_field')
    for field in fields:
      if field != SIGNATURE_DEF_FIELD:
        raise invalid(f'Metadata field {field} is not supported')
    servable = self.servable(name, version, label)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = name
    response.model_spec.version.value = servable.version
    response.metadata[SIGNATURE_DEF_FIELD].Pack(servable.signature_defs)
    return response
