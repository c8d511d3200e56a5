"""serving/grpc_server.py: TF Serving's gRPC API, called with the official stubs."""

import base64

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

import serving_testlib as lib

MAX_PIXELS = 64 * 64


@pytest.fixture(scope='module')
def live(exported_run, tmp_path_factory):
  server = lib.start_live(exported_run, tmp_path_factory.mktemp('grpc_config'), grpc=True,
                          max_image_pixels=MAX_PIXELS)
  channel = grpc.insecure_channel(f'127.0.0.1:{server.grpc_port}')
  server.predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
  server.models_stub = model_service_pb2_grpc.ModelServiceStub(channel)
  yield server
  channel.close()
  server.stop()


def _request(model='cyclegan_a2b', signature='', version=None, label=None, **inputs):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model
  request.model_spec.signature_name = signature
  if version is not None:
    request.model_spec.version.value = version
  if label is not None:
    request.model_spec.version_label = label
  for name, value in inputs.items():
    proto = value if isinstance(value, tensor_pb2.TensorProto) else (
        tf.make_tensor_proto(value))
    request.inputs[name].CopyFrom(proto)
  return request


def _error(call, request):
  with pytest.raises(grpc.RpcError) as error:
    call(request, timeout=60)
  return error.value.code(), error.value.details()


def test_float_tensor_in_float_tensor_out_equals_rest(live):
  x = np.random.RandomState(0).uniform(-1, 1, (2, 12, 16, 3)).astype(np.float32)
  response = live.predict.Predict(_request(images=x), timeout=60)
  assert response.model_spec.name == 'cyclegan_a2b'
  assert response.model_spec.signature_name == 'serving_default'
  assert response.model_spec.version.value == 1
  out = tf.make_ndarray(response.outputs['translated'])
  assert out.dtype == np.float32 and out.shape == (2, 12, 16, 3)
  status, rest, _ = lib.call(f'{live.url}/v1/models/cyclegan_a2b:predict', 'POST',
                             {'inputs': x.tolist()})
  assert status == 200
  np.testing.assert_allclose(out, np.array(rest['outputs'], np.float32), atol=1e-6, rtol=0)
  for spec in ({'version': 1}, {'label': 'stable'}):
    again = live.predict.Predict(_request(images=x, **spec), timeout=60)
    np.testing.assert_array_equal(tf.make_ndarray(again.outputs['translated']), out)


def test_encoded_images_in_png_bytes_out(live):
  images = [lib.encoded_image((9, 13, 3), 1), lib.encoded_image((20, 7, 3), 2, fmt='JPEG'),
            lib.mpo_jpeg(24, 18)]
  response = live.predict.Predict(_request(
      signature='translate_image',
      image_bytes=tf.make_tensor_proto(images, dtype=tf.string, shape=[3])), timeout=60)
  pngs = tf.make_ndarray(response.outputs['png_bytes'])
  assert pngs.shape == (3,)
  assert [lib.png_size(p) for p in pngs] == [(13, 9), (7, 20), (24, 18)]
  status, rest, _ = lib.call(f'{live.url}/v1/models/cyclegan_a2b:predict', 'POST', {
      'signature_name': 'translate_image', 'instances': [lib.b64(images[0])]})
  assert status == 200 and base64.b64decode(rest['predictions'][0]['b64']) == pngs[0]


def test_unknown_models_versions_and_labels(live):
  x = np.zeros((1, 8, 8, 3), np.float32)
  assert _error(live.predict.Predict, _request('horse2zebra', images=x)) == (
      grpc.StatusCode.NOT_FOUND, 'Servable not found for request: Latest(horse2zebra)')
  assert _error(live.predict.Predict, _request(version=99, images=x)) == (
      grpc.StatusCode.NOT_FOUND, 'Servable not found for request: Specific(cyclegan_a2b, 99)')
  assert _error(live.predict.Predict, _request(label='canary', images=x)) == (
      grpc.StatusCode.INVALID_ARGUMENT, 'Unrecognized servable version label: canary')
  status = get_model_status_pb2.GetModelStatusRequest()
  status.model_spec.name = 'cyclegan_a2b'
  status.model_spec.version.value = 99
  assert _error(live.models_stub.GetModelStatus, status) == (
      grpc.StatusCode.NOT_FOUND, 'Could not find version 99 of model cyclegan_a2b')


BAD_INPUTS = [
    # (name, request kwargs, words in the details)
    ('wrong dtype', {'images': np.zeros((1, 8, 8, 3), np.int32)},
     'the tensor is DT_INT32, but the signature takes DT_FLOAT'),
    ('wrong rank', {'images': np.zeros((8, 8, 3), np.float32)}, 'does not match'),
    ('wrong channels', {'images': np.zeros((1, 8, 8, 2), np.float32)}, 'does not match'),
    ('unknown input', {'pixels': np.zeros((1, 8, 8, 3), np.float32)},
     'input tensor alias not found in signature: pixels'),
    ('over the pixel limit', {'images': np.zeros((1, 65, 64, 3), np.float32)},
     'over the limit of 4096 (--max_image_pixels)'),
    ('out of range', {'images': np.full((1, 8, 8, 3), 255, np.float32)}, '[-1, 1]'),
    ('not an image', {'signature': 'translate_image',
                      'image_bytes': np.array([b'hello, world'], dtype=object)}, 'not an image'),
    ('unknown signature', {'signature': 'nope', 'images': np.zeros((1, 8, 8, 3), np.float32)},
     'Serving signature name: "nope" not found'),
]


@pytest.mark.parametrize('name,kwargs,words', BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_inputs_are_invalid_argument(live, name, kwargs, words):
  del name
  code, details = _error(live.predict.Predict, _request(**kwargs))
  assert code == grpc.StatusCode.INVALID_ARGUMENT and words in details, details


def test_declared_shapes_without_their_values_are_refused_before_allocating(live):
  huge = tf.make_tensor_proto(np.zeros((1, 4, 4, 3), np.float32))
  huge.tensor_shape.dim[1].size = 100000  # 1 x 100000 x 4 x 3 declared, 48 values sent
  code, details = _error(live.predict.Predict, _request(images=huge))
  assert code == grpc.StatusCode.INVALID_ARGUMENT
  assert 'holds 1200000 values, but the tensor has 48' in details
  empty = predict_pb2.PredictRequest()
  empty.model_spec.name = 'cyclegan_a2b'
  empty.inputs['images'].dtype = tf.float32.as_datatype_enum
  for size in (1, 2**20, 2**20, 3):
    empty.inputs['images'].tensor_shape.dim.add(size=size)  # 12 TB of zeros if allocated
  code, details = _error(live.predict.Predict, empty)
  assert code == grpc.StatusCode.INVALID_ARGUMENT and 'but the tensor has 0' in details
  bad_filter = _request(images=np.zeros((1, 8, 8, 3), np.float32))
  bad_filter.output_filter.append('nope')
  code, details = _error(live.predict.Predict, bad_filter)
  assert code == grpc.StatusCode.INVALID_ARGUMENT and 'output tensor alias not found' in details


def test_metadata_and_status(live):
  request = get_model_metadata_pb2.GetModelMetadataRequest()
  request.model_spec.name = 'cyclegan_b2a'
  request.metadata_field.append('signature_def')
  response = live.predict.GetModelMetadata(request, timeout=60)
  assert response.model_spec.name == 'cyclegan_b2a' and response.model_spec.version.value == 1
  defs = get_model_metadata_pb2.SignatureDefMap()
  assert response.metadata['signature_def'].Unpack(defs)
  assert {'serving_default', 'translate_image'} <= set(defs.signature_def)
  assert defs.signature_def['translate_image'].inputs['image_bytes'].dtype == tf.string
  del request.metadata_field[:]
  assert _error(live.predict.GetModelMetadata, request)[0] == grpc.StatusCode.INVALID_ARGUMENT
  request.metadata_field.append('everything')
  assert _error(live.predict.GetModelMetadata, request) == (
      grpc.StatusCode.INVALID_ARGUMENT, 'Metadata field everything is not supported')
  status_request = get_model_status_pb2.GetModelStatusRequest()
  status_request.model_spec.name = 'cyclegan_b2a'
  status = live.models_stub.GetModelStatus(status_request, timeout=60)
  assert [(s.version, s.state, s.status.error_code) for s in status.model_version_status] == [
      (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE, 0)]
  classify = classification_pb2.ClassificationRequest()
  classify.model_spec.name = 'cyclegan_b2a'
  assert _error(live.predict.Classify, classify)[0] == grpc.StatusCode.UNIMPLEMENTED
