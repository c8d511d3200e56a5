"""A local stand-in for TensorFlow Serving's REST API, for machines without TF Serving.

  python -m serving.server --rest_api_port=8501 --model_name=cyclegan_a2b \\
      --model_base_path=runs/quickstart/export/cyclegan_a2b
  python -m serving.server --model_config_file=serving/models.config \\
      --base_path_map=/models=runs/quickstart/export

It loads each model's SavedModel versions (the newest by default, like TF Serving's version
policy) with tf.saved_model.load and runs their signatures, which is what TF Serving runs, and
speaks the part of TF Serving's REST API these models use:

  GET  /v1/models/<name>[/versions/<v>|/labels/<l>]             model status
  GET  /v1/models/<name>[/versions/<v>|/labels/<l>]/metadata    signature defs
  POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict     {"instances": ...} (row) or
                                                                {"inputs": ...} (columnar)

with TF Serving's JSON shapes: {"b64": ...} for binary strings (inputs and outputs whose name
ends in _bytes), {"predictions": [...]} / {"outputs": ...} responses, {"error": "..."} bodies on
failure with 400 for bad input, 404 for an unknown model, version, label or route, 413 for a
body over --max_body_bytes, 500 for a failure inside the model. Concurrent requests are served
by threads; at most --max_concurrent_predictions run the model at once (memory stays bounded).

Flags follow tensorflow_model_server's names (--rest_api_port, --model_name,
--model_base_path, --model_config_file, --file_system_poll_wait_seconds) plus --rest_api_host
(default 127.0.0.1: only this machine can connect), --base_path_map (rewrite a base_path prefix
of a config file written for the container, e.g. /models=runs/quickstart/export),
--max_image_pixels, --max_body_bytes and --max_concurrent_predictions. Relative base paths in a
config file are resolved against the file's folder. Only the standard library's http.server,
TensorFlow and Pillow (already dependencies) are used.
"""

import argparse
import base64
import binascii
import io
import json
import logging
import os
import re
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

DEFAULT_SIGNATURE = 'serving_default'
PREDICT_METHOD = 'tensorflow/serving/predict'
DEFAULT_MAX_IMAGE_PIXELS = 2048 * 2048
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
IMAGE_FORMATS = ('JPEG', 'PNG', 'BMP', 'GIF')  # what tf.io.decode_image reads

_MODEL_PATH = re.compile(
    r'^/v1/models/(?P<name>[^/:]+)'
    r'(?:/versions/(?P<version>\d+)|/labels/(?P<label>[A-Za-z0-9_]+))?'
    r'(?P<suffix>/metadata|:[A-Za-z_]+)?$')


class RequestError(Exception):
  """An error answered as {"error": message} with an HTTP status."""

  def __init__(self, status, message):
    super().__init__(message)
    self.status = int(status)
    self.message = message


def _bad(message):
  return RequestError(HTTPStatus.BAD_REQUEST, message)


# ---------------------------------------------------------------------------------------------
# Model config files (protobuf text format, the subset TF Serving's ModelServerConfig uses).

_TOKEN = re.compile(r'''\s*(?:(?P<comment>\#[^\n]*)'''
                    r'''|(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')'''
                    r'''|(?P<punct>[{}<>:;,\[\]])|(?P<word>[^\s{}<>:;,\[\]\#"']+))''')


def _tokenize(text):
  tokens, pos = [], 0
  while pos < len(text):
    match = _TOKEN.match(text, pos)
    if not match or match.end() == pos:
      if text[pos:].strip():
        raise ValueError(f'Unexpected text at offset {pos}: {text[pos:pos + 20]!r}')
      break
    pos = match.end()
    kind = match.lastgroup
    if kind != 'comment':
      tokens.append((kind, match.group(kind)))
  return tokens


def _scalar(kind, text):
  if kind == 'string':
    return text[1:-1].encode('latin-1', 'backslashreplace').decode('unicode_escape')
  for convert in (int, float):
    try:
      return convert(text)
    except ValueError:
      pass
  return text  # an enum name, true / false


def parse_text_proto(text):
  """Protobuf text format -> {field: [values]} (nested messages are dicts); no schema needed."""
  tokens = _tokenize(text)

  def message(i, closing):
    fields = {}
    while i < len(tokens):
      kind, tok = tokens[i]
      if kind == 'punct' and tok == closing:
        return fields, i + 1
      if kind == 'punct' and tok in ',;':
        i += 1
        continue
      if kind != 'word':
        raise ValueError(f'Expected a field name, got {tok!r}.')
      name, i = tok, i + 1
      if i < len(tokens) and tokens[i] == ('punct', ':'):
        i += 1
      if i >= len(tokens):
        raise ValueError(f'Field {name!r} has no value.')
      kind, tok = tokens[i]
      if kind == 'punct' and tok in '{<':
        value, i = message(i + 1, '}' if tok == '{' else '>')
        fields.setdefault(name, []).append(value)
      elif kind == 'punct' and tok == '[':
        i += 1
        while tokens[i] != ('punct', ']'):
          if tokens[i] != ('punct', ','):
            fields.setdefault(name, []).append(_scalar(*tokens[i]))
          i += 1
        i += 1
      elif kind in ('string', 'word'):
        fields.setdefault(name, []).append(_scalar(kind, tok))
        i += 1
      else:
        raise ValueError(f'Field {name!r}: unexpected {tok!r}.')
    if closing:
      raise ValueError(f'Missing {closing!r}.')
    return fields, i

  fields, _ = message(0, None)
  return fields


class ModelConfig:
  """One served model: name, base path, version policy and labels."""

  def __init__(self, name, base_path, policy=('latest', 1), labels=None):
    self.name = name
    self.base_path = os.path.abspath(base_path)
    self.policy = policy  # ('latest', n) | ('specific', [v, ...]) | ('all', None)
    self.labels = dict(labels or {})

  def __repr__(self):
    return f'ModelConfig({self.name!r}, {self.base_path!r}, {self.policy!r})'


def _one(fields, name, where, default=None):
  values = fields.get(name)
  if not values:
    if default is not None:
      return default
    raise ValueError(f'{where}: missing {name}.')
  return values[-1]


def _policy(fields, where):
  if not fields:
    return ('latest', 1)
  if isinstance(fields, str):  # old enum style, e.g. model_version_policy: LATEST_VERSION
    return ('all', None) if 'ALL' in fields.upper() else ('latest', 1)
  if 'specific' in fields:
    versions = [int(v) for v in fields['specific'][-1].get('versions', [])]
    if not versions:
      raise ValueError(f'{where}: model_version_policy.specific lists no versions.')
    return ('specific', versions)
  if 'all' in fields:
    return ('all', None)
  if 'latest' in fields:
    return ('latest', int(_one(fields['latest'][-1], 'num_versions', where, 1)))
  raise ValueError(f'{where}: unknown model_version_policy {sorted(fields)}.')


def _map_path(path, base_path_map):
  for old, new in base_path_map or ():
    old = old.rstrip('/')
    if path == old or path.startswith(old + '/'):
      return new + path[len(old):]
  return path


def read_model_config(path, base_path_map=None):
  """A model_config_list file -> [ModelConfig]; relative base paths resolve against its folder."""
  with open(path) as f:
    root = parse_text_proto(f.read())
  lists = root.get('model_config_list')
  if not lists:
    raise ValueError(f'{path}: no model_config_list.')
  folder = os.path.dirname(os.path.abspath(path))
  models = []
  for i, fields in enumerate(lists[-1].get('config', [])):
    where = f'{path}: config #{i + 1}'
    name = str(_one(fields, 'name', where))
    platform = _one(fields, 'model_platform', where, 'tensorflow')
    if platform != 'tensorflow':
      raise ValueError(f'{where}: model_platform {platform!r} is not supported (tensorflow).')
    base_path = _map_path(str(_one(fields, 'base_path', where)), base_path_map)
    if not os.path.isabs(base_path):
      base_path = os.path.join(folder, base_path)
    policy = _policy(_one(fields, 'model_version_policy', where, {}), where)
    labels = {str(item['key'][-1]): int(item['value'][-1])
              for item in fields.get('version_labels', [])}
    models.append(ModelConfig(name, base_path, policy, labels))
  if not models:
    raise ValueError(f'{path}: model_config_list has no config entries.')
  names = [m.name for m in models]
  if len(set(names)) != len(names):
    raise ValueError(f'{path}: model names repeat: {names}.')
  return models


# ---------------------------------------------------------------------------------------------
# Loaded SavedModels.


def _numbered_versions(base_path):
  if not os.path.isdir(base_path):
    return []
  return sorted(int(n) for n in os.listdir(base_path)
                if n.isdigit() and os.path.isfile(os.path.join(base_path, n, 'saved_model.pb')))


def _tensor_info_json(info, types_pb2):
  shape = info.tensor_shape
  return {
      'dtype': types_pb2.DataType.Name(info.dtype),
      'tensor_shape': {'dim': [{'size': str(d.size), 'name': d.name} for d in shape.dim],
                       'unknown_rank': bool(shape.unknown_rank)},
      'name': info.name,
  }


class Servable:
  """One loaded version of a model: its signatures and their SignatureDefs."""

  def __init__(self, name, version, path, warm_up=True):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from tensorflow.core.framework import types_pb2  # pylint: disable=g-import-not-at-top
    from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
    self.name, self.version, self.path = name, int(version), path
    self.loaded = tf.saved_model.load(path)
    self.functions = dict(self.loaded.signatures)
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(path, 'saved_model.pb'), 'rb') as f:
      saved_model.ParseFromString(f.read())
    meta_graph = next((m for m in saved_model.meta_graphs if 'serve' in m.meta_info_def.tags),
                      saved_model.meta_graphs[0])
    self.signature_json = {}
    self.specs = {}  # signature -> {'inputs': {name: (dtype, [dims])}, 'outputs': [names]}
    for key, sig in meta_graph.signature_def.items():
      self.signature_json[key] = {
          'inputs': {k: _tensor_info_json(v, types_pb2) for k, v in sig.inputs.items()},
          'outputs': {k: _tensor_info_json(v, types_pb2) for k, v in sig.outputs.items()},
          'method_name': sig.method_name,
      }
      if key in self.functions:
        self.specs[key] = {
            'inputs': {k: (types_pb2.DataType.Name(v.dtype),
                           None if v.tensor_shape.unknown_rank else
                           [d.size for d in v.tensor_shape.dim])
                       for k, v in sig.inputs.items()},
            'outputs': sorted(sig.outputs),
        }
    if warm_up:
      self.warm_up()

  def warm_up(self):
    """Runs each signature once on a tiny input, so the first request is not the slow one.

    (Restored functions are instantiated on their first call: about 0.5-1 s for these models.)
    """
    import numpy as np  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    for key, spec in self.specs.items():
      inputs = {}
      for input_name, (dtype, dims) in spec['inputs'].items():
        if dtype == 'DT_FLOAT' and dims and len(dims) == 4 and dims[3] > 0:
          inputs[input_name] = tf.zeros([1, 8, 8, dims[3]], tf.float32)
        elif dtype == 'DT_STRING' and dims and len(dims) == 1:
          inputs[input_name] = tf.reshape(tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)), [1])
      if len(inputs) != len(spec['inputs']):
        continue  # not an input layout this warm-up knows
      try:
        self.functions[key](**inputs)
      except Exception as e:  # pylint: disable=broad-except
        logging.warning('Warm-up of %s version %d signature %s failed: %s', self.name,
                        self.version, key, e)


class ServedModel:
  """A model name, its config and its loaded versions (swapped atomically on reload)."""

  def __init__(self, config):
    self.config = config
    self.servables = {}  # version -> Servable
    self.errors = {}  # version -> (saved_model.pb mtime, load error message)
    self.warned_empty = False

  def wanted_versions(self):
    available = _numbered_versions(self.config.base_path)
    kind, arg = self.config.policy
    if kind == 'latest':
      return available[-arg:] if available else []
    if kind == 'specific':
      return [v for v in arg if v in available]
    return available


# ---------------------------------------------------------------------------------------------
# Request bodies <-> tensors.


def _decode_b64(value, where):
  if not isinstance(value.get('b64'), str) or len(value) != 1:
    raise _bad(f'{where}: a binary value is {{"b64": "<base64 string>"}}, got keys '
               f'{sorted(value)}.')
  try:
    return base64.b64decode(value['b64'], validate=True)
  except (binascii.Error, ValueError) as e:
    raise _bad(f'{where}: invalid base64 ({e}).') from None


def _is_b64(value):
  return isinstance(value, dict) and set(value) == {'b64'}


def _to_strings(value, where):
  if isinstance(value, list):
    return [_to_strings(v, f'{where}[{i}]') for i, v in enumerate(value)]
  if isinstance(value, dict):
    return _decode_b64(value, where)
  if isinstance(value, str):
    return value.encode('utf-8')
  raise _bad(f'{where}: expected a string or {{"b64": ...}}, got {type(value).__name__}.')


class ModelServer:
  """The REST API as a function: handle(method, path, body) -> (HTTP status, JSON object)."""

  def __init__(self, models, max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS,
               max_body_bytes=DEFAULT_MAX_BODY_BYTES, max_concurrent_predictions=2,
               warm_up=True):
    self.models = {m.name: ServedModel(m) for m in models}
    self.warm_up = warm_up
    self.max_image_pixels = int(max_image_pixels)
    self.max_body_bytes = int(max_body_bytes)
    self._predict_slots = threading.BoundedSemaphore(max(1, int(max_concurrent_predictions)))
    self._lock = threading.Lock()
    self._stop = threading.Event()
    for model in models:
      if not os.path.isdir(model.base_path):
        raise FileNotFoundError(f'Model {model.name}: base path {model.base_path} does not '
                                'exist (export first: python main.py --mode=export ...).')
    self.poll()

  # -- versions ------------------------------------------------------------------------------

  def poll(self):
    """Loads versions the policy wants that are not loaded yet and unloads the others.

    A version that failed to load is tried again once its saved_model.pb changes.
    """
    for model in self.models.values():
      wanted = model.wanted_versions()
      current = dict(model.servables)
      for version in wanted:
        if version in current:
          continue
        path = os.path.join(model.config.base_path, str(version))
        stamp = os.path.getmtime(os.path.join(path, 'saved_model.pb'))
        if model.errors.get(version, (None,))[0] == stamp:
          continue
        try:
          current[version] = Servable(model.config.name, version, path, self.warm_up)
          model.errors.pop(version, None)
          logging.info('Loaded %s version %d from %s', model.config.name, version, path)
        except Exception as e:  # pylint: disable=broad-except
          model.errors[version] = (stamp, f'{type(e).__name__}: {e}')
          logging.error('Could not load %s version %d: %s', model.config.name, version, e)
      if not wanted and not model.warned_empty:
        logging.warning('No versions of %s under %s yet.', model.config.name,
                        model.config.base_path)
      model.warned_empty = not wanted
      with self._lock:
        model.servables = {v: s for v, s in current.items() if v in wanted}

  def poll_forever(self, seconds):
    while not self._stop.wait(seconds):
      try:
        self.poll()
      except Exception:  # pylint: disable=broad-except
        logging.exception('Polling for new versions failed.')

  def stop(self):
    self._stop.set()

  def _servable(self, name, version=None, label=None):
    model = self.models.get(name)
    if model is None:
      request = f'Latest({name})' if version is None else f'Specific({name}, {version})'
      raise RequestError(HTTPStatus.NOT_FOUND, f'Servable not found for request: {request}')
    with self._lock:
      servables = dict(model.servables)
    if label is not None:
      if label not in model.config.labels:
        raise RequestError(HTTPStatus.NOT_FOUND,
                           f'Unrecognized servable version label: {label}')
      version = model.config.labels[label]
    if version is None:
      if not servables:
        raise RequestError(HTTPStatus.NOT_FOUND,
                           f'Servable not found for request: Latest({name})')
      return servables[max(servables)]
    version = int(version)
    if version not in servables:
      raise RequestError(HTTPStatus.NOT_FOUND,
                         f'Servable not found for request: Specific({name}, {version})')
    return servables[version]

  # -- routes --------------------------------------------------------------------------------

  def handle(self, method, path, body=b''):
    """Returns (status, JSON-able dict); never raises for a bad request."""
    try:
      route = path.split('?', 1)[0]
      match = _MODEL_PATH.match(route)
      if not match:
        raise RequestError(HTTPStatus.NOT_FOUND, f'Malformed request: {method} {path}')
      name, version, label, suffix = match.group('name', 'version', 'label', 'suffix')
      if method == 'GET' and suffix is None:
        return HTTPStatus.OK, self._status(name, version, label)
      if method == 'GET' and suffix == '/metadata':
        return HTTPStatus.OK, self._metadata(name, version, label)
      if method == 'POST' and suffix == ':predict':
        return HTTPStatus.OK, self._predict(self._servable(name, version, label), body)
      if method == 'POST' and suffix in (':classify', ':regress'):
        self._servable(name, version, label)
        raise _bad(f'{suffix[1:]} is not supported: these models have predict signatures '
                   'only; use :predict.')
      raise RequestError(HTTPStatus.NOT_FOUND, f'Malformed request: {method} {path}')
    except RequestError as e:
      return e.status, {'error': e.message}
    except Exception as e:  # pylint: disable=broad-except
      logging.exception('Request %s %s failed', method, path)
      return HTTPStatus.INTERNAL_SERVER_ERROR, {'error': f'{type(e).__name__}: {e}'}

  def _status(self, name, version, label):
    if version is None and label is None:
      model = self.models.get(name)
      if model is None:
        raise RequestError(HTTPStatus.NOT_FOUND,
                           f'Servable not found for request: Latest({name})')
      with self._lock:
        versions = sorted(model.servables, reverse=True)
      if not versions:
        raise RequestError(HTTPStatus.NOT_FOUND,
                           f'Could not find any versions of model {name}')
    else:
      versions = [self._servable(name, version, label).version]
    return {'model_version_status': [
        {'version': str(v), 'state': 'AVAILABLE',
         'status': {'error_code': 'OK', 'error_message': ''}} for v in versions]}

  def _metadata(self, name, version, label):
    servable = self._servable(name, version, label)
    return {
        'model_spec': {'name': name, 'signature_name': '', 'version': str(servable.version)},
        'metadata': {'signature_def': {'signature_def': servable.signature_json}},
    }

  def _predict(self, servable, body):
    if len(body) > self.max_body_bytes:
      raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                         f'Request body of {len(body)} bytes is over the limit of '
                         f'{self.max_body_bytes} (--max_body_bytes).')
    try:
      request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
      raise _bad(f'JSON Parse error: {e}') from None
    if not isinstance(request, dict):
      raise _bad('The request body must be a JSON object with "instances" or "inputs".')
    unknown = sorted(set(request) - {'signature_name', 'instances', 'inputs'})
    if unknown:
      raise _bad(f'Unknown field(s) {", ".join(unknown)}: a predict request has "instances" '
                 'or "inputs" and an optional "signature_name".')
    if ('instances' in request) == ('inputs' in request):
      raise _bad('Missing \'inputs\' or \'instances\' key' if 'inputs' not in request else
                 'Only one of \'inputs\' or \'instances\' may be given.')
    signature = request.get('signature_name', DEFAULT_SIGNATURE)
    if not isinstance(signature, str):
      raise _bad('"signature_name" must be a string.')
    if signature not in servable.specs:
      raise _bad(f'Serving signature name: "{signature}" not found in signature def; this '
                 f'model has {", ".join(sorted(servable.specs))}.')
    spec = servable.specs[signature]
    row = 'instances' in request
    if row:
      tensors = self._row_inputs(request['instances'], spec)
    else:
      tensors = self._columnar_inputs(request['inputs'], spec)
    self._check_limits(tensors, spec)
    outputs = self._run(servable, signature, tensors)
    return self._format(outputs, row)

  def _row_inputs(self, instances, spec):
    if not isinstance(instances, list) or not instances:
      raise _bad('"instances" must be a non-empty list (one entry per instance).')
    names = list(spec['inputs'])
    columns = {n: [] for n in names}
    for i, instance in enumerate(instances):
      if isinstance(instance, dict) and not _is_b64(instance):
        if set(instance) != set(names):
          raise _bad(f'instances[{i}] has keys {sorted(instance)}; the signature\'s inputs '
                     f'are {names}.')
        for n in names:
          columns[n].append(instance[n])
      elif len(names) == 1:
        columns[names[0]].append(instance)
      else:
        raise _bad(f'instances[{i}] must be an object with the inputs {names}.')
    return {n: self._tensor(columns[n], spec['inputs'][n], n) for n in names}

  def _columnar_inputs(self, inputs, spec):
    names = list(spec['inputs'])
    if isinstance(inputs, dict) and not _is_b64(inputs):
      if set(inputs) != set(names):
        raise _bad(f'"inputs" has keys {sorted(inputs)}; the signature\'s inputs are '
                   f'{names}.')
      return {n: self._tensor(inputs[n], spec['inputs'][n], n) for n in names}
    if len(names) != 1:
      raise _bad(f'"inputs" must be an object with the inputs {names}.')
    return {names[0]: self._tensor(inputs, spec['inputs'][names[0]], names[0])}

  def _tensor(self, value, input_spec, name):
    """A JSON value (with the batch dimension) -> numpy array checked against the spec."""
    import numpy as np  # pylint: disable=g-import-not-at-top
    dtype, dims = input_spec
    if dtype == 'DT_STRING':
      try:
        array = np.array(_to_strings(value, name), dtype=object)
      except ValueError:
        array = None
      if array is None or any(isinstance(x, list) for x in array.ravel()):
        raise _bad(f'{name}: nested lists of different lengths.')
    elif dtype in ('DT_FLOAT', 'DT_DOUBLE', 'DT_HALF', 'DT_BFLOAT16', 'DT_INT32', 'DT_INT64',
                   'DT_UINT8'):
      np_dtype = {'DT_FLOAT': np.float32, 'DT_DOUBLE': np.float64, 'DT_HALF': np.float16,
                  'DT_BFLOAT16': np.float32, 'DT_INT32': np.int32, 'DT_INT64': np.int64,
                  'DT_UINT8': np.uint8}[dtype]
      if _contains(value, lambda v: isinstance(v, (str, dict, bool)) or v is None):
        raise _bad(f'{name}: expected numbers ({dtype}), got strings, objects or nulls.')
      try:
        array = np.asarray(value, dtype=np_dtype)
      except (ValueError, TypeError, OverflowError):
        raise _bad(f'{name}: expected a (nested) list of numbers with one shape for {dtype}; '
                   'the lists have different lengths.') from None
    else:
      raise _bad(f'{name}: inputs of type {dtype} are not supported by this server.')
    if dims is not None:
      if array.ndim != len(dims) or any(d not in (-1, s) for d, s in zip(dims, array.shape)):
        want = '[' + ', '.join('?' if d == -1 else str(d) for d in dims) + ']'
        raise _bad(f'{name}: shape {list(array.shape)} does not match the signature\'s '
                   f'{want} (the first dimension is the batch).')
    if array.ndim and array.shape[0] == 0:
      raise _bad(f'{name}: empty batch.')
    return array

  def _check_limits(self, tensors, spec):
    """Image size limits, checked before anything is decoded or run."""
    from PIL import Image  # pylint: disable=g-import-not-at-top
    for name, array in tensors.items():
      dtype, _ = spec['inputs'][name]
      if dtype == 'DT_STRING':
        for i, data in enumerate(array.ravel()):
          try:
            with Image.open(io.BytesIO(data)) as image:
              fmt, (width, height) = image.format, image.size
          except Exception:  # pylint: disable=broad-except
            raise _bad(f'{name}[{i}]: not an image (not a JPEG, PNG, BMP or GIF '
                       'file).') from None
          if fmt not in IMAGE_FORMATS:
            raise _bad(f'{name}[{i}]: {fmt} images are not supported; send '
                       f'{", ".join(IMAGE_FORMATS)}.')
          self._check_pixels(name, i, height, width)
      elif array.ndim == 4:  # [N, H, W, C] images
        if array.shape[1] < 1 or array.shape[2] < 1:
          raise _bad(f'{name}: images must be at least 1x1, got {list(array.shape)}.')
        self._check_pixels(name, None, array.shape[1], array.shape[2])

  def _check_pixels(self, name, index, height, width):
    if height * width > self.max_image_pixels:
      where = name if index is None else f'{name}[{index}]'
      raise _bad(f'{where}: a {width}x{height} image has {height * width} pixels, over the '
                 f'limit of {self.max_image_pixels} (--max_image_pixels).')

  def _run(self, servable, signature, tensors):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    function = servable.functions[signature]
    with self._predict_slots:
      try:
        outputs = function(**{k: tf.constant(v) for k, v in tensors.items()})
      except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError) as e:
        raise _bad(e.message.strip().splitlines()[0]) from None
    return {k: v.numpy() for k, v in outputs.items()}

  def _format(self, outputs, row):
    values = {name: _json_value(name, array) for name, array in outputs.items()}
    names = sorted(values)
    if row:
      count = len(next(iter(values.values())))
      if len(names) == 1:
        return {'predictions': values[names[0]]}
      return {'predictions': [{n: values[n][i] for n in names} for i in range(count)]}
    if len(names) == 1:
      return {'outputs': values[names[0]]}
    return {'outputs': values}


def _contains(value, predicate):
  if isinstance(value, list):
    return any(_contains(v, predicate) for v in value)
  return predicate(value)


def _json_value(name, array):
  if array.dtype == object or array.dtype.kind in 'SU':
    binary = name.endswith('_bytes')

    def convert(x):
      if isinstance(x, list):
        return [convert(v) for v in x]
      if binary:
        return {'b64': base64.b64encode(x).decode('ascii')}
      return x.decode('utf-8', 'replace') if isinstance(x, bytes) else x

    return convert(array.tolist())
  return array.tolist()


# ---------------------------------------------------------------------------------------------
# HTTP.


class _Handler(BaseHTTPRequestHandler):
  protocol_version = 'HTTP/1.1'
  server_version = 'cyclegan-model-server/1.0'
  timeout = 120  # seconds a client may take to send its request

  def do_GET(self):  # pylint: disable=invalid-name
    self._dispatch('GET')

  def do_POST(self):  # pylint: disable=invalid-name
    self._dispatch('POST')

  def do_PUT(self):  # pylint: disable=invalid-name
    self._dispatch('PUT')

  def do_DELETE(self):  # pylint: disable=invalid-name
    self._dispatch('DELETE')

  def _dispatch(self, method):
    app = self.server.app
    body = b''
    if method in ('POST', 'PUT'):
      if 'chunked' in self.headers.get('Transfer-Encoding', '').lower():
        self.close_connection = True
        return self._send(HTTPStatus.LENGTH_REQUIRED,
                          {'error': 'Chunked bodies are not supported; send Content-Length.'})
      try:
        length = int(self.headers.get('Content-Length', ''))
        if length < 0:
          raise ValueError
      except ValueError:
        self.close_connection = True
        return self._send(HTTPStatus.LENGTH_REQUIRED,
                          {'error': 'A POST needs a valid Content-Length header.'})
      if length > app.max_body_bytes:
        self.close_connection = True  # the body is not read
        return self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                          {'error': f'Request body of {length} bytes is over the limit of '
                                    f'{app.max_body_bytes} (--max_body_bytes).'})
      body = self.rfile.read(length)
    status, payload = app.handle(method, self.path, body)
    self._send(status, payload)

  def _send(self, status, payload):
    data = json.dumps(payload).encode('utf-8')
    self.send_response(int(status))
    self.send_header('Content-Type', 'application/json')
    self.send_header('Content-Length', str(len(data)))
    if self.close_connection:
      self.send_header('Connection', 'close')
    self.end_headers()
    self.wfile.write(data)

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    logging.info('%s %s', self.address_string(), format % args)


class HTTPServer(ThreadingHTTPServer):
  daemon_threads = True
  allow_reuse_address = True

  def __init__(self, address, app):
    super().__init__(address, _Handler)
    self.app = app


def make_http_server(app, host='127.0.0.1', port=8501):
  """A ThreadingHTTPServer serving `app`; call serve_forever() (port 0 picks a free one)."""
  return HTTPServer((host, port), app)


# ---------------------------------------------------------------------------------------------
# Command line.


def _parse_args(argv):
  parser = argparse.ArgumentParser(
      prog='python -m serving.server',
      description='Serve exported CycleGAN generators over TF Serving\'s REST API (a local '
                  'stand-in for tensorflow_model_server).')
  parser.add_argument('--rest_api_port', type=int, default=8501)
  parser.add_argument('--rest_api_host', default='127.0.0.1',
                      help='Address to bind (default 127.0.0.1; 0.0.0.0 exposes the server).')
  parser.add_argument('--model_name', default='default',
                      help='Name of the model given by --model_base_path.')
  parser.add_argument('--model_base_path', default='',
                      help='Folder holding the model\'s numbered version folders (E/<name>).')
  parser.add_argument('--model_config_file', default='',
                      help='A model_config_list file (protobuf text format) for several models.')
  parser.add_argument('--base_path_map', action='append', default=[], metavar='FROM=TO',
                      help='Rewrite base_path prefixes of --model_config_file, e.g. '
                           '/models=runs/quickstart/export (repeatable).')
  parser.add_argument('--max_image_pixels', type=int, default=DEFAULT_MAX_IMAGE_PIXELS,
                      help='Largest image (height x width) a request may carry.')
  parser.add_argument('--max_body_bytes', type=int, default=DEFAULT_MAX_BODY_BYTES,
                      help='Largest request body in bytes.')
  parser.add_argument('--max_concurrent_predictions', type=int, default=2,
                      help='Model calls that may run at once (others wait).')
  parser.add_argument('--file_system_poll_wait_seconds', type=float, default=1.0,
                      help='How often to look for new versions (0: never).')
  parser.add_argument('--warm_up', default=True, action=argparse.BooleanOptionalAction,
                      help='Run each signature once on a tiny input when a version loads.')
  args = parser.parse_args(argv)
  if bool(args.model_base_path) == bool(args.model_config_file):
    parser.error('give exactly one of --model_base_path (with --model_name) or '
                 '--model_config_file.')
  mapping = []
  for item in args.base_path_map:
    if '=' not in item:
      parser.error(f'--base_path_map={item!r}: expected FROM=TO.')
    old, new = item.split('=', 1)
    mapping.append((old, os.path.abspath(new)))
  args.base_path_map = mapping
  return args


def main(argv=None):
  args = _parse_args(sys.argv[1:] if argv is None else argv)
  logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s')
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  try:
    if args.model_config_file:
      models = read_model_config(args.model_config_file, args.base_path_map)
    else:
      models = [ModelConfig(args.model_name, args.model_base_path)]
    app = ModelServer(models, args.max_image_pixels, args.max_body_bytes,
                      args.max_concurrent_predictions, args.warm_up)
  except (OSError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  httpd = make_http_server(app, args.rest_api_host, args.rest_api_port)
  if args.file_system_poll_wait_seconds > 0:
    threading.Thread(target=app.poll_forever, args=(args.file_system_poll_wait_seconds,),
                     daemon=True).start()
  host, port = httpd.server_address[:2]
  for model in app.models.values():
    print(f'Serving {model.config.name} versions {sorted(model.servables)} from '
          f'{model.config.base_path}')
  print(f'REST API at http://{host}:{port}/v1/models/<name> (Ctrl-C stops)', flush=True)
  try:
    httpd.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    app.stop()
    httpd.server_close()
  return 0


if __name__ == '__main__':
  sys.exit(main())
