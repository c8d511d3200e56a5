"""TF Serving's REST predict JSON <-> numpy arrays.

Requests: {"signature_name": ..., "instances": [...]} (row format: one entry per instance, a
bare value when the signature has one input, else an object per instance keyed by input name)
or {"inputs": ...} (columnar: a value with the batch dimension, or an object of them). Binary
strings are {"b64": "<base64>"}. Other top-level keys are ignored, as TF Serving ignores them.
Responses: {"predictions": [...]} for row requests, {"outputs": ...} for columnar ones; string
outputs whose name ends in _bytes come back as {"b64": ...}.

Errors raise ServingError INVALID_ARGUMENT with a message naming the problem and the fix; where
TF Serving has a well-known wording ("Missing 'inputs' or 'instances' key", "'signature_name'
key must be a string value.") it is kept.
"""

import base64
import binascii
import json

import numpy as np

from serving.errors import invalid

BINARY_SUFFIX = '_bytes'


def parse_body(body):
  """Request bytes -> the JSON object; INVALID_ARGUMENT 'JSON Parse error: ...' otherwise."""
  if not body or not body.strip():
    raise invalid('JSON Parse error: The document is empty')
  try:
    request = json.loads(body)
  except UnicodeDecodeError:
    raise invalid('JSON Parse error: the body is not UTF-8 text.') from None
  except json.JSONDecodeError as e:
    hint = ''
    if e.msg.startswith('Invalid control character'):
      hint = ('; a string holds a raw line break or control character: remove the line breaks '
              'from base64 text, or escape them as \\n')
    raise invalid(f'JSON Parse error: {e.msg} (line {e.lineno}, column {e.colno}, offset '
                  f'{e.pos}){hint}') from None
  except RecursionError:
    raise invalid('JSON Parse error: the document is nested too deeply.') from None
  if not isinstance(request, dict):
    raise invalid('The request body must be a JSON object with "instances" or "inputs", got '
                  f'{_json_type(request)}.')
  return request


def signature_name(request):
  """The request's signature_name ('' when absent)."""
  name = request.get('signature_name', '')
  if not isinstance(name, str):
    raise invalid("'signature_name' key must be a string value.")
  return name


def request_arrays(request, spec, binary_signatures=()):
  """A parsed predict request -> ({input name: numpy array, batch first}, row format?).

  Numbers become the input's dtype (float32 [N, H, W, C] for images), strings and {"b64": ...}
  an object array of bytes. spec: the SignatureSpec. binary_signatures: names of the
  servable's signatures that take strings, named in the hint when binary data is sent to a
  float input. Raises ServingError INVALID_ARGUMENT naming the problem.
  """
  has_instances, has_inputs = 'instances' in request, 'inputs' in request
  if has_instances and has_inputs:
    raise invalid("Only one of 'inputs' (columnar format) or 'instances' (row format) may be "
                  'given.')
  if not has_instances and not has_inputs:
    raise invalid("Missing 'inputs' or 'instances' key: send {\"instances\": [...]} (one entry "
                  'per instance) or {"inputs": ...}.')
  convert = _Converter(spec, binary_signatures)
  if has_instances:
    return convert.rows(request['instances']), True
  return convert.columns(request['inputs']), False


def _json_type(value):
  if isinstance(value, dict):
    return 'a {"b64": ...} object' if _is_b64(value) else 'an object'
  if isinstance(value, list):
    return 'a list'
  if isinstance(value, str):
    return 'a string'
  if isinstance(value, bool) or value is None:
    return json.dumps(value)
  return 'a number'


def _is_b64(value):
  return isinstance(value, dict) and len(value) == 1 and 'b64' in value


def decode_b64(value, where):
  """{"b64": text} -> bytes. Whitespace and missing '=' padding are accepted."""
  text = value.get('b64')
  if not isinstance(text, str):
    raise invalid(f'{where}: "b64" must hold a base64 string, got {_json_type(text)}.')
  if text[:5].lower() == 'data:':
    raise invalid(f'{where}: a data URI ({text[:30]}...); send only the base64 text after the '
                  'comma.')
  compact = ''.join(text.split())
  if ('-' in compact or '_' in compact) and not ('+' in compact or '/' in compact):
    raise invalid(f'{where}: web-safe base64 (with - and _); TF Serving takes the standard '
                  "alphabet: encode with base64.b64encode, or replace '-' by '+' and '_' by '/'.")
  core = compact.rstrip('=')
  try:
    return base64.b64decode(core + '=' * (-len(core) % 4), validate=True)
  except (binascii.Error, ValueError) as e:
    raise invalid(f'{where}: invalid base64 ({e}).') from None


def _strings(value, where):
  if isinstance(value, list):
    return [_strings(v, f'{where}[{i}]') for i, v in enumerate(value)]
  if isinstance(value, dict):
    if not _is_b64(value):
      raise invalid(f'{where}: a binary value is {{"b64": "<base64 string>"}}, got an object '
                    f'with keys {sorted(value)}.')
    return decode_b64(value, where)
  if isinstance(value, str):
    return value.encode('utf-8')
  raise invalid(f'{where}: expected a string or {{"b64": ...}}, got {_json_type(value)}.')


def _first_bad_leaf(value, where):
  if isinstance(value, list):
    for i, v in enumerate(value):
      found = _first_bad_leaf(v, f'{where}[{i}]')
      if found:
        return found
    return None
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return where, value
  return None


class _Converter:
  """Builds the arrays of one request for one signature."""

  def __init__(self, spec, binary_signatures):
    self.spec = spec
    self.binary_signatures = [s for s in binary_signatures if s != spec.key]

  def rows(self, instances):
    if not isinstance(instances, list):
      hint = (' (wrap a single {"b64": ...} in a list: "instances": [{"b64": ...}])'
              if _is_b64(instances) else '')
      raise invalid(f"'instances' must be a list, one entry per instance; got "
                    f'{_json_type(instances)}{hint}.')
    if not instances:
      raise invalid("No values in 'instances' array: send a non-empty list, one entry per "
                    'instance.')
    names = sorted(self.spec.inputs)
    named = isinstance(instances[0], dict) and not _is_b64(instances[0])
    columns = {n: [] for n in names}
    for i, instance in enumerate(instances):
      if named != (isinstance(instance, dict) and not _is_b64(instance)):
        raise invalid(f'instances[{i}]: mixes named objects and bare values; use one form for '
                      'every instance.')
      if named:
        if sorted(instance) != names:
          raise invalid(f'instances[{i}] has the keys {sorted(instance)}; the signature '
                        f'{self.spec.key} takes the inputs {names}.')
        for n in names:
          columns[n].append(self.array(instance[n], n, f'instances[{i}].{n}'))
      elif len(names) == 1:
        columns[names[0]].append(self.array(instance, names[0], f'instances[{i}]'))
      else:
        raise invalid(f'instances[{i}]: the signature {self.spec.key} has several inputs '
                      f'{names}; send an object with those keys per instance.')
    return {n: self._stack(columns[n], n) for n in names}

  def columns(self, inputs):
    names = sorted(self.spec.inputs)
    if isinstance(inputs, dict) and not _is_b64(inputs):
      missing = [n for n in names if n not in inputs]
      if missing:
        raise invalid(f"Missing named input(s) {missing} in 'inputs' object (it has "
                      f'{sorted(inputs)}); the signature {self.spec.key} takes {names}.')
      return {n: self._batch(inputs[n], n, f'inputs.{n}') for n in names}
    if len(names) != 1:
      raise invalid(f"'inputs' must be an object with the inputs {names}.")
    return {names[0]: self._batch(inputs, names[0], 'inputs')}

  def _batch(self, value, name, where):
    if isinstance(value, list) and value:
      return self._stack([self.array(v, name, f'{where}[{i}]') for i, v in enumerate(value)],
                         name, where)
    return self.array(value, name, where)

  @staticmethod
  def _stack(arrays, name, where='instances'):
    shapes = [a.shape for a in arrays]
    for i, shape in enumerate(shapes):
      if shape != shapes[0]:
        raise invalid(f'{name}: {where}[{i}] has the shape {list(shape)} but {where}[0] has '
                      f'{list(shapes[0])}; one request holds one shape (the lists have '
                      'different lengths): send images of different sizes in separate '
                      'requests, or as encoded images to translate_image.')
    if arrays and arrays[0].dtype == object:
      stacked = np.empty((len(arrays),) + shapes[0], dtype=object)
      for i, a in enumerate(arrays):
        stacked[i, ...] = a  # copies the elements, also of 0-d arrays
      return stacked
    return np.stack(arrays)

  def array(self, value, name, where):
    """One JSON value -> numpy array of the input's dtype."""
    info = self.spec.inputs[name]
    if info.dtype_name == 'DT_STRING':
      converted = _strings(value, where)
      array = np.empty(_shape_of(converted, where), dtype=object)
      _fill(array, converted)
      return array
    try:
      array = np.asarray(value)
    except (ValueError, TypeError):  # ragged nesting
      raise invalid(f'{where}: the nested lists have different lengths; a tensor needs one '
                    'shape.') from None
    if array.dtype.kind in 'iuf' or (array.size == 0 and array.dtype.kind != 'O'):
      if array.dtype.kind == 'f' and np.dtype(info.np_dtype).kind in 'iu':
        raise invalid(f'{where}: {info.dtype_name} takes integers, got decimals.')
      return array.astype(info.np_dtype, copy=False)
    bad = _first_bad_leaf(value, where)
    if bad and _is_b64(bad[1]):
      hint = (f'; binary data goes to a signature that takes strings: set "signature_name" to '
              f'{" or ".join(repr(s) for s in self.binary_signatures)}'
              if self.binary_signatures else '')
      raise invalid(f'{bad[0]}: expected numbers ({info.dtype_name}), got a {{"b64": ...}} '
                    f'object{hint}.')
    if bad:
      raise invalid(f'{bad[0]}: expected numbers ({info.dtype_name}), got '
                    f'{_json_type(bad[1])}.')
    raise invalid(f'{where}: the nested lists have different lengths; a tensor needs one shape.')


def _shape_of(value, where):
  if not isinstance(value, list):
    return ()
  shapes = {_shape_of(v, where) for v in value}
  if len(shapes) > 1:
    raise invalid(f'{where}: the nested lists have different lengths; a tensor needs one '
                  'shape.')
  return (len(value),) + (shapes.pop() if shapes else ())


def _fill(array, value):
  if array.ndim == 0:
    array[()] = value
    return
  for i, v in enumerate(value):
    if array.ndim == 1:
      array[i] = v
    else:
      _fill(array[i], v)


def response_json(outputs, row):
  """{output name: numpy array} -> the predict response object."""
  values = {name: _json_value(name, array) for name, array in outputs.items()}
  names = sorted(values)
  if row:
    if len(names) == 1:
      return {'predictions': values[names[0]]}
    count = len(values[names[0]])
    return {'predictions': [{n: values[n][i] for n in names} for i in range(count)]}
  if len(names) == 1:
    return {'outputs': values[names[0]]}
  return {'outputs': values}


def _json_value(name, array):
  if array.dtype == object or array.dtype.kind in 'SU':
    binary = name.endswith(BINARY_SUFFIX)

    def convert(x):
      if isinstance(x, list):
        return [convert(v) for v in x]
      if binary:
        return {'b64': base64.b64encode(x).decode('ascii')}
      return x.decode('utf-8', 'replace') if isinstance(x, bytes) else x

    return convert(array.tolist())
  return array.tolist()
