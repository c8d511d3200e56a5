"""TF Serving's gRPC API over the same servables as REST (--port).

PredictionService: Predict and GetModelMetadata; ModelService: GetModelStatus. The servicers are
the generated classes of tensorflow-serving-api, tensors travel as TensorProtos (converted with
tf.make_ndarray / tf.make_tensor_proto), and errors are gRPC status codes with the same messages
as REST: NOT_FOUND for unknown models and versions, INVALID_ARGUMENT for bad inputs and unknown
labels, DEADLINE_EXCEEDED past the call's deadline. Classify, Regress, MultiInference and
HandleReloadConfigRequest answer UNIMPLEMENTED.
"""

import concurrent.futures
import logging
import math

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import defaults
from serving.errors import ServingError
from serving.errors import invalid

# TensorProto field holding the values of each dtype (when tensor_content is empty).
_VALUE_FIELDS = {
    'DT_FLOAT': 'float_val', 'DT_DOUBLE': 'double_val', 'DT_INT32': 'int_val',
    'DT_INT16': 'int_val', 'DT_INT8': 'int_val', 'DT_UINT8': 'int_val', 'DT_UINT16': 'int_val',
    'DT_INT64': 'int64_val', 'DT_STRING': 'string_val', 'DT_BOOL': 'bool_val',
    'DT_HALF': 'half_val', 'DT_BFLOAT16': 'half_val', 'DT_UINT32': 'uint32_val',
    'DT_UINT64': 'uint64_val',
}


def _model_spec(spec):
  """ModelSpec -> (name, version or None, label or None)."""
  which = spec.WhichOneof('version_choice')
  version = spec.version.value if which == 'version' else None
  label = spec.version_label if which == 'version_label' else None
  return spec.name, version, label


def tensor_to_array(name, proto, info, max_bytes):
  """A request TensorProto -> numpy array, after checking dtype, shape and value count.

  The count is checked before anything is allocated, so a proto that declares a huge shape
  without the values (or a one-value broadcast over more than max_bytes) is refused.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.core.framework import types_pb2  # pylint: disable=g-import-not-at-top
  dtype = types_pb2.DataType.Name(proto.dtype)
  if dtype != info.dtype_name:
    raise invalid(f'{name}: the tensor is {dtype}, but the signature takes {info.dtype_name}.')
  if proto.tensor_shape.unknown_rank:
    raise invalid(f'{name}: the tensor has an unknown rank; give its shape.')
  dims = [d.size for d in proto.tensor_shape.dim]
  if any(d < 0 for d in dims):
    raise invalid(f'{name}: negative dimension in the shape {dims}.')
  count = math.prod(dims)
  itemsize = tf.dtypes.as_dtype(proto.dtype).size if dtype != 'DT_STRING' else 1
  if proto.tensor_content:
    given = len(proto.tensor_content) // max(1, itemsize)
  else:
    given = len(getattr(proto, _VALUE_FIELDS.get(dtype, 'float_val')))
  broadcast = given == 1 and dtype != 'DT_STRING' and count * itemsize <= max_bytes
  if given != count and not broadcast:
    raise invalid(f'{name}: the shape {dims} holds {count} values, but the tensor has {given}.')
  try:
    return tf.make_ndarray(proto)
  except (TypeError, ValueError) as e:
    raise invalid(f'{name}: unreadable tensor ({e}).') from None


def _abort(context, error):
  context.abort(getattr(grpc.StatusCode, error.code, grpc.StatusCode.UNKNOWN), error.message)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
  """Predict and GetModelMetadata on a model_server.ModelServer's servables."""

  def __init__(self, app):
    self.app = app

  def Predict(self, request, context):  # pylint: disable=invalid-name
    try:
      return self._predict(request, context)
    except ServingError as e:
      error = e
    except Exception as e:  # pylint: disable=broad-except
      logging.exception('gRPC Predict failed')
      error = ServingError('INTERNAL', f'{type(e).__name__}: {e}')
    _abort(context, error)

  def _predict(self, request, context):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    name, version, label = _model_spec(request.model_spec)
    servable = self.app.manager.servable(name, version, label)
    spec = self.app.predictor.signature(servable, request.model_spec.signature_name)
    expected = ','.join(sorted(spec.inputs))
    for key in request.inputs:
      if key not in spec.inputs:
        raise invalid(f'input tensor alias not found in signature: {key}. Inputs expected to be '
                      f'in the set {{{expected}}}.')
    wanted = list(request.output_filter) or spec.outputs
    for key in wanted:
      if key not in spec.outputs:
        raise invalid(f'output tensor alias not found in signature: {key} Outputs expected to '
                      f'be in the set {{{",".join(spec.outputs)}}}.')
    arrays = {key: tensor_to_array(key, proto, spec.inputs[key], self.app.max_body_bytes)
              for key, proto in request.inputs.items()}
    outputs = self.app.predictor.run(servable, spec, arrays, context.time_remaining(),
                                     timeout_flag='the call\'s deadline')
    response = predict_pb2.PredictResponse()
    response.model_spec.name = name
    response.model_spec.version.value = servable.version
    response.model_spec.signature_name = spec.key
    for key in wanted:
      response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
    return response

  def GetModelMetadata(self, request, context):  # pylint: disable=invalid-name
    try:
      name, version, label = _model_spec(request.model_spec)
      return self.app.manager.metadata(name, version, label, request.metadata_field)
    except ServingError as e:
      error = e
    _abort(context, error)

  def _unimplemented(self, request, context):
    del request
    context.abort(grpc.StatusCode.UNIMPLEMENTED, 'Only Predict and GetModelMetadata are '
                  'served: these models have predict signatures only.')

  Classify = Regress = MultiInference = _unimplemented


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
  """GetModelStatus on a model_server.ModelServer's servables."""

  def __init__(self, app):
    self.app = app

  def GetModelStatus(self, request, context):  # pylint: disable=invalid-name
    try:
      name, version, label = _model_spec(request.model_spec)
      return self.app.manager.status(name, version, label)
    except ServingError as e:
      error = e
    _abort(context, error)

  def HandleReloadConfigRequest(self, request, context):  # pylint: disable=invalid-name
    del request
    context.abort(grpc.StatusCode.UNIMPLEMENTED, 'The local server does not reload its model '
                  'config; restart it with the new --model_config_file.')


def make_grpc_server(app, host='127.0.0.1', port=8500, max_threads=defaults.GRPC_MAX_THREADS):
  """A started grpc.Server serving `app`; returns (server, bound port). Port 0 picks a free one.

  Messages up to app.max_body_bytes are received. Raises OSError when the address cannot be
  bound.
  """
  server = grpc.server(
      concurrent.futures.ThreadPoolExecutor(max_workers=max_threads,
                                            thread_name_prefix='grpc'),
      options=[('grpc.max_receive_message_length', app.max_body_bytes),
               ('grpc.max_send_message_length', -1),
               ('grpc.so_reuseport', 0)])
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
      PredictionServicer(app), server)
  model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(app), server)
  try:
    bound = server.add_insecure_port(f'{host}:{port}')
  except RuntimeError as e:
    raise OSError(f'Cannot listen for gRPC on {host}:{port}: {e}') from None
  if not bound:
    raise OSError(f'Cannot listen for gRPC on {host}:{port} (in use?).')
  server.start()
  return server, bound
