"""TF Serving's REST API as a function: ModelServer.handle(method, path, body) -> (status, JSON).

  GET  /v1/models/<name>[/versions/<v>|/labels/<l>]             model status
  GET  /v1/models/<name>[/versions/<v>|/labels/<l>]/metadata    signature defs
  POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict     {"instances": ...} (row) or
                                                                {"inputs": ...} (columnar)

Routes are TF Serving's regular expressions (case-insensitive; model names and labels are
URL-decoded). Errors are {"error": "..."} with TF Serving's status mapping: 400 for bad input, a
malformed /v1/ path, GET /v1/models and unknown labels; 404 for unknown models and versions; 504
when a prediction passes --rest_api_timeout_in_ms; 500 for a failure inside the model. The local
server's own limits add 413 (body over --max_body_bytes) and 400 (image over
--max_image_pixels). Paths outside /v1/ get 404, as in TF Serving.
"""

import logging
import re
import urllib.parse

from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from serving import defaults
from serving import rest_json
from serving import servables
from serving.predict import Predictor
from serving.servables import SIGNATURE_DEF_FIELD
from serving.servables import ModelManager
from serving.errors import ServingError
from serving.errors import invalid

# TF Serving's http_server.cc: canonical error code -> HTTP status.
HTTP_STATUS = {
    'CANCELLED': 499, 'UNKNOWN': 500, 'INVALID_ARGUMENT': 400, 'DEADLINE_EXCEEDED': 504,
    'NOT_FOUND': 404, 'ALREADY_EXISTS': 409, 'PERMISSION_DENIED': 403,
    'RESOURCE_EXHAUSTED': 429, 'FAILED_PRECONDITION': 400, 'ABORTED': 409, 'OUT_OF_RANGE': 400,
    'UNIMPLEMENTED': 501, 'INTERNAL': 500, 'UNAVAILABLE': 503, 'DATA_LOSS': 500,
    'UNAUTHENTICATED': 401,
}
_SPEC = r'/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?'
_PREDICT = re.compile(_SPEC + r':(classify|regress|predict)', re.IGNORECASE)
_STATUS = re.compile(r'/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?'
                     r'(?:/(metadata))?', re.IGNORECASE)
_INT64_MAX = 2**63 - 1


def body_too_large(size, limit):
  return ServingError('INVALID_ARGUMENT', f'Request body of {size} bytes is over the limit of '
                                          f'{limit} (--max_body_bytes).', http_status=413)


def _json(message):
  return json_format.MessageToDict(message, always_print_fields_with_no_presence=True,
                                   preserving_proto_field_name=True)


def _decode(text, what):
  try:
    return urllib.parse.unquote(text, errors='strict')
  except UnicodeDecodeError:
    raise invalid(f'Failed to decode {what}: {text}') from None


class ModelServer:
  """The served models (a ModelManager), a Predictor and the REST routes.

  models: [model_config.ModelConfig]. max_image_pixels / max_body_bytes: the local server's
  limits (height x width; bytes). timeout_ms: the deadline of a prediction (<= 0: none).
  freeze_gc: see servables.ModelManager (True in the server process).
  Raises FileNotFoundError for a base path that does not exist.
  """

  def __init__(self, models, max_image_pixels=defaults.MAX_IMAGE_PIXELS,
               max_body_bytes=defaults.MAX_BODY_BYTES,
               max_concurrent_predictions=defaults.MAX_CONCURRENT_PREDICTIONS, warm_up=True,
               timeout_ms=defaults.REST_TIMEOUT_MS, freeze_gc=False):
    self.max_body_bytes = int(max_body_bytes)
    self.timeout_ms = int(timeout_ms)
    self.predictor = Predictor(max_image_pixels, max_concurrent_predictions)
    self.manager = ModelManager(models, warm_up, freeze_gc)

  @property
  def models(self):
    return self.manager.models

  @property
  def max_image_pixels(self):
    return self.predictor.max_image_pixels

  @property
  def timeout_s(self):
    return self.timeout_ms / 1000 if self.timeout_ms > 0 else None

  def poll(self):
    self.manager.poll()

  def poll_forever(self, seconds):
    self.manager.poll_forever(seconds)

  def stop(self):
    self.manager.stop()
    self.predictor.close()

  def ui_config(self):
    """What the try-it page needs besides the REST API: model names, limits and each model's
    test mode as servables.describe_test_mode words it ('' when its exports record none)."""
    return {'models': sorted(self.models), 'max_image_pixels': self.max_image_pixels,
            'max_body_bytes': self.max_body_bytes,
            'test_modes': {
                name: servables.describe_test_mode(list(model.servables.values())).strip(' ()')
                for name, model in sorted(self.models.items())}}

  def handle(self, method, path, body=b''):
    """Returns (HTTP status, JSON-able dict); never raises for a bad request."""
    try:
      return 200, self._route(method, path, body)
    except ServingError as e:
      return e.http_status or HTTP_STATUS.get(e.code, 500), {'error': e.message}
    except RecursionError:
      return 400, {'error': 'The request is nested too deeply.'}
    except Exception as e:  # pylint: disable=broad-except
      logging.exception('Request %s %s failed', method, path)
      return 500, {'error': f'{type(e).__name__}: {e}'}

  def _route(self, method, path, body):
    route = path.split('?', 1)[0]
    if not route.lower().startswith('/v1/'):
      raise ServingError('NOT_FOUND', f'Not found: {route} (the REST API is under '
                                      '/v1/models/<name>).')
    malformed = invalid(f'Malformed request: {method} {path}')
    pattern = {'POST': _PREDICT, 'GET': _STATUS}.get(method)
    match = pattern.fullmatch(route) if pattern else None
    if not match:
      raise malformed
    name, version, label = match.group(1, 2, 3)
    name = _decode(name, 'model name') if name else ''
    label = _decode(label, 'model version label') if label else None
    if version is not None:
      if int(version) > _INT64_MAX:
        raise invalid(f'Failed to convert version: {version} to numeric.')
      version = int(version)
    if method == 'GET':
      if not name:
        raise invalid('Missing model name in request.')
      if match.group(4):
        return self._metadata(name, version, label)
      return _json(self.manager.status(name, version, label))
    verb = match.group(4).lower()
    if verb != 'predict':
      self.manager.servable(name, version, label)
      raise invalid(f'{verb} is not supported: these models have predict signatures only; '
                    'use :predict.')
    return self._predict(name, version, label, body)

  def _metadata(self, name, version, label):
    response = self.manager.metadata(name, version, label)
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_defs)
    return {'model_spec': _json(response.model_spec),
            'metadata': {'signature_def': _json(signature_defs)}}

  def _predict(self, name, version, label, body):
    if len(body) > self.max_body_bytes:
      raise body_too_large(len(body), self.max_body_bytes)
    request = rest_json.parse_body(body)
    signature = rest_json.signature_name(request)
    servable = self.manager.servable(name, version, label)
    spec = self.predictor.signature(servable, signature)
    binary = sorted(k for k, s in servable.specs.items()
                    if any(i.dtype_name == 'DT_STRING' for i in s.inputs.values()))
    arrays, row = rest_json.request_arrays(request, spec, binary)
    outputs = self.predictor.run(servable, spec, arrays, self.timeout_s)
    return rest_json.response_json(outputs, row)
