"""serving/: the local server's REST API (TF Serving's), its config files and polling.

One server runs in threads of this process on a free 127.0.0.1 port (no second TF import),
serving the session's export (conftest.py `exported_run`) through a models.config file.
"""

import base64
import io
import json
import os
import shutil
import threading
import time

import numpy as np
import pytest
from PIL import Image
from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import text_format
from google.protobuf import wrappers_pb2

import serving_testlib as lib
from serving import model_config
from serving import model_server

MAX_PIXELS = 64 * 64
MAX_BODY = 200_000


@pytest.fixture(scope='module')
def live(exported_run, tmp_path_factory):
  server = lib.start_live(exported_run, tmp_path_factory.mktemp('serving_config'),
                          max_image_pixels=MAX_PIXELS, max_body_bytes=MAX_BODY)
  yield server
  server.stop()


def _predict_url(live, model='cyclegan_a2b', suffix=''):
  return f'{live.url}/v1/models/{model}{suffix}:predict'


# ---------------------------------------------------------------------------------------------
# Config files.


def test_config_file_paths_and_policies(live):
  a2b, b2a = live.models
  assert a2b.name == 'cyclegan_a2b' and a2b.policy == ('all', None)
  assert a2b.base_path == os.path.join(live.run.export_dir, 'cyclegan_a2b')
  assert a2b.labels == {'stable': 1}
  assert b2a.policy == ('latest', 1)


def test_repository_models_config_with_a_base_path_map(tmp_path):
  models = model_config.read_model_config(os.path.join(lib.REPO, 'serving', 'models.config'),
                                          [('/models', str(tmp_path / 'export'))])
  assert [(m.name, m.base_path, m.policy) for m in models] == [
      ('cyclegan_a2b', str(tmp_path / 'export' / 'cyclegan_a2b'), ('latest', 1)),
      ('cyclegan_b2a', str(tmp_path / 'export' / 'cyclegan_b2a'), ('latest', 1))]
  assert model_config.parse_base_path_map(['/models=exp']) == [('/models',
                                                                os.path.abspath('exp'))]
  with pytest.raises(ValueError, match='expected FROM=TO'):
    model_config.parse_base_path_map(['nothing'])


@pytest.mark.parametrize('text,words', [
    ('x: 1', ['bad.config', '1:1', 'x']),
    ('model_config_list { config { name: "a" base_path: "/m" } }\n  model_config_list {',
     ['bad.config', '2:']),
    ('model_config_list { config { name: "a" base_pth: "/m" } }', ['1:', 'base_pth']),
    ('model_config_list { config { name: "a" base_path: "/m" '
     'model_version_policy { latest { num_versions: "two" } } } }', ['num_versions']),
    ('', ['no model_config_list']),
    ('model_config_list { config { base_path: "/m" } }', ['config #1', 'missing name']),
    ('model_config_list { config { name: "a" base_path: "/m" model_platform: "onnx" } }',
     ['onnx', 'not supported']),
    ('model_config_list { config { name: "a" base_path: "/m" } config { name: "a" '
     'base_path: "/n" } }', ['repeat']),
    ('model_config_list { config { name: "a" base_path: "/m" '
     'model_version_policy { specific { } } } }', ['lists no versions']),
])
def test_bad_config_files_name_the_file_and_the_problem(tmp_path, text, words):
  path = tmp_path / 'bad.config'
  path.write_text(text)
  with pytest.raises(ValueError) as error:
    model_config.read_model_config(str(path))
  for word in words:
    assert word in str(error.value), str(error.value)


def test_config_policies_parse_with_the_real_proto(tmp_path):
  path = tmp_path / 'm.config'
  path.write_text('model_config_list { config { name: "a" base_path: "rel/a" '
                  'model_version_policy { specific { versions: 3 versions: 1 } } } '
                  'config { name: "b" base_path: "/abs/b" '
                  'model_version_policy { latest { num_versions: 2 } } } }')
  a, b = model_config.read_model_config(str(path))
  assert a.base_path == str(tmp_path / 'rel' / 'a') and a.policy == ('specific', [3, 1])
  assert b.base_path == '/abs/b' and b.policy == ('latest', 2)


def _batching_parameters_class():
  """TF Serving's BatchingParameters message (session_bundle_config.proto), which the
  tensorflow-serving-api package does not ship: the same field names, numbers and types."""
  file_proto = descriptor_pb2.FileDescriptorProto(
      name='test_batching.proto', package='tensorflow.serving.test', syntax='proto3',
      dependency=['google/protobuf/wrappers.proto'])
  message = file_proto.message_type.add(name='BatchingParameters')
  field = descriptor_pb2.FieldDescriptorProto
  for number, name, type_name in [(1, 'max_batch_size', 'Int64Value'),
                                  (2, 'batch_timeout_micros', 'Int64Value'),
                                  (3, 'max_enqueued_batches', 'Int64Value'),
                                  (4, 'num_batch_threads', 'Int64Value'),
                                  (5, 'thread_pool_name', 'StringValue')]:
    message.field.add(name=name, number=number, type=field.TYPE_MESSAGE,
                      label=field.LABEL_OPTIONAL, type_name=f'.google.protobuf.{type_name}')
  message.field.add(name='allowed_batch_sizes', number=6, type=field.TYPE_INT64,
                    label=field.LABEL_REPEATED)
  message.field.add(name='pad_variable_length_inputs', number=7, type=field.TYPE_BOOL,
                    label=field.LABEL_OPTIONAL)
  pool = descriptor_pool.DescriptorPool()
  pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
  pool.Add(file_proto)
  return message_factory.GetMessageClass(
      pool.FindMessageTypeByName('tensorflow.serving.test.BatchingParameters'))


def test_repository_batching_and_compose_files():
  with open(os.path.join(lib.REPO, 'serving', 'batching.config')) as f:
    batching = text_format.Parse(f.read(), _batching_parameters_class()())
  assert batching.max_batch_size.value == 8
  assert batching.batch_timeout_micros.value == 2000
  assert batching.num_batch_threads.value == 4
  assert not batching.pad_variable_length_inputs
  with open(os.path.join(lib.REPO, 'serving', 'docker-compose.yml')) as f:
    compose = f.read()
  for text in ('image: tensorflow/serving', '--rest_api_port=8501', '--port=8500',
               '--model_config_file=/config/models.config', '--enable_batching=true',
               '--batching_parameters_file=/config/batching.config',
               './models.config:/config/models.config', ':/models:ro'):
    assert text in compose, text


# ---------------------------------------------------------------------------------------------
# Status and metadata.


def test_model_status_routes(live):
  versions = sorted(int(v) for v in os.listdir(os.path.join(live.run.export_dir, 'cyclegan_a2b'))
                    if v.isdigit())
  status, body, headers = lib.call(f'{live.url}/v1/models/cyclegan_a2b')
  assert status == 200 and headers['Content-Type'] == 'application/json'
  assert 'Access-Control-Allow-Origin' not in headers  # CORS is off by default
  assert [s['version'] for s in body['model_version_status']] == [
      str(v) for v in reversed(versions)]
  assert body['model_version_status'][0] == {
      'version': str(versions[-1]), 'state': 'AVAILABLE',
      'status': {'error_code': 'OK', 'error_message': ''}}
  for path in ('/v1/models/cyclegan_a2b/versions/1', '/v1/models/cyclegan_a2b/labels/stable',
               '/V1/Models/cyclegan_a2b/Versions/1',  # TF Serving's routes ignore case
               '/v1/models/cyclegan%5Fa2b/labels/st%61ble'):  # names and labels URL-decoded
    status, body, _ = lib.call(live.url + path)
    assert status == 200 and body['model_version_status'][0]['version'] == '1', path
  status, body, _ = lib.call(f'{live.url}/v1/models/cyclegan_b2a')
  assert status == 200 and [s['version'] for s in body['model_version_status']] == ['1']


def test_metadata_lists_the_signatures_like_tf_serving(live):
  status, body, _ = lib.call(f'{live.url}/v1/models/cyclegan_b2a/versions/1/metadata')
  assert status == 200
  assert body['model_spec'] == {'name': 'cyclegan_b2a', 'signature_name': '', 'version': '1'}
  defs = body['metadata']['signature_def']['signature_def']
  assert {'serving_default', 'translate_image'} <= set(defs)
  images = defs['serving_default']['inputs']['images']
  assert images['dtype'] == 'DT_FLOAT'
  assert images['tensor_shape'] == {
      'dim': [{'size': '-1', 'name': ''}] * 3 + [{'size': '3', 'name': ''}],
      'unknown_rank': False}
  assert images['name'].startswith('serving_default_images')
  assert defs['serving_default']['outputs']['translated']['dtype'] == 'DT_FLOAT'
  assert defs['translate_image']['inputs']['image_bytes']['dtype'] == 'DT_STRING'
  assert defs['translate_image']['outputs']['png_bytes']['tensor_shape']['dim'] == [
      {'size': '-1', 'name': ''}]
  assert defs['translate_image']['method_name'] == 'tensorflow/serving/predict'
  status, latest, _ = lib.call(f'{live.url}/v1/models/cyclegan_b2a/metadata')
  assert status == 200 and latest == body


# ---------------------------------------------------------------------------------------------
# Predict.


def test_request_shapes_of_the_rest_api(live):
  """Row and columnar, bare and named, for both signatures, as TF Serving documents them."""
  png = lib.encoded_image((9, 13, 3), 1)
  bodies = [
      {'signature_name': 'translate_image', 'instances': [lib.b64(png), lib.b64(png)]},
      {'signature_name': 'translate_image', 'instances': [{'image_bytes': lib.b64(png)}] * 2},
      {'signature_name': 'translate_image', 'inputs': {'image_bytes': [lib.b64(png)] * 2}},
      {'signature_name': 'translate_image', 'inputs': [lib.b64(png)] * 2},
      # Unknown top-level keys are ignored, as TF Serving ignores them.
      {'signature_name': 'translate_image', 'instances': [lib.b64(png)] * 2, 'meta': {'a': 1}},
  ]
  for body in bodies:
    status, reply, _ = lib.call(_predict_url(live), 'POST', body)
    assert status == 200, reply
    values = reply['predictions'] if 'instances' in body else reply['outputs']
    assert len(values) == 2 and set(values[0]) == {'b64'}
    assert lib.png_size(base64.b64decode(values[0]['b64'])) == (13, 9)

  x = np.random.RandomState(2).uniform(-1, 1, (2, 12, 20, 3)).astype(np.float32)
  expected = live.run.generators['G_A'](x).numpy()
  # 1e-5: the SavedModel's graph sums the last conv's GEMM slices in its own order (test_export).
  status, row, _ = lib.call(_predict_url(live), 'POST', {'instances': x.tolist()})
  assert status == 200
  np.testing.assert_allclose(np.array(row['predictions'], np.float32), expected, atol=1e-5)
  status, named, _ = lib.call(_predict_url(live), 'POST',
                              {'signature_name': 'serving_default',
                               'instances': [{'images': image} for image in x.tolist()]})
  assert status == 200 and named == row
  status, columnar, _ = lib.call(_predict_url(live), 'POST', {'inputs': {'images': x.tolist()}})
  assert status == 200
  np.testing.assert_allclose(np.array(columnar['outputs'], np.float32), expected, atol=1e-5)
  odd = np.random.RandomState(3).uniform(-1, 1, (1, 7, 11, 3)).tolist()
  status, reply, _ = lib.call(_predict_url(live, suffix='/versions/1'), 'POST', {'inputs': odd})
  assert status == 200 and np.array(reply['outputs']).shape == (1, 7, 11, 3)
  status, reply, _ = lib.call(_predict_url(live, suffix='/labels/stable'), 'POST',
                              {'inputs': odd})
  assert status == 200 and np.array(reply['outputs']).shape == (1, 7, 11, 3)


BAD_REQUESTS = [
    # (name, method, path suffix, body, status, words in the error)
    ('empty body', 'POST', ':predict', b'', 400, 'document is empty'),
    ('malformed JSON', 'POST', ':predict', b'{"instances": [', 400, 'JSON Parse error'),
    ('not an object', 'POST', ':predict', [1, 2], 400, 'JSON object'),
    ('neither key', 'POST', ':predict', {'signature_name': 'serving_default'}, 400,
     "Missing 'inputs' or 'instances' key"),
    ('both keys', 'POST', ':predict', {'instances': [1], 'inputs': [1]}, 400, 'Only one'),
    ('signature name not a string', 'POST', ':predict', {'signature_name': 5}, 400,
     "'signature_name' key must be a string value."),
    ('empty instances', 'POST', ':predict', {'instances': []}, 400, 'non-empty'),
    ('bad base64', 'POST', ':predict',
     {'signature_name': 'translate_image', 'instances': [{'b64': '@@not base64@@'}]}, 400,
     'base64'),
    ('not an image', 'POST', ':predict',
     {'signature_name': 'translate_image', 'instances': [lib.b64(b'hello, world')]}, 400,
     'not an image'),
    ('wrong input name', 'POST', ':predict',
     {'signature_name': 'translate_image', 'instances': [{'images': lib.b64(b'x')}]}, 400,
     'image_bytes'),
    ('wrong rank', 'POST', ':predict', {'instances': [[1.0, 2.0, 3.0]]}, 400, 'shape'),
    ('wrong channels', 'POST', ':predict', {'inputs': np.zeros((1, 4, 4, 2)).tolist()}, 400,
     'shape'),
    ('ragged image', 'POST', ':predict', {'instances': [[[[0, 0, 0]], [[0, 0]]]]}, 400,
     'different lengths'),
    ('strings for floats', 'POST', ':predict', {'instances': [[[['a', 'b', 'c']]]]}, 400,
     'expected numbers (DT_FLOAT), got a string'),
    ('image over the pixel limit', 'POST', ':predict',
     {'signature_name': 'translate_image', 'instances': [lib.b64(lib.encoded_image((65, 64, 3)))]},
     400, 'over the limit of 4096 (--max_image_pixels)'),
    ('float image over the pixel limit', 'POST', ':predict',
     {'inputs': {'images': np.zeros((1, 65, 64, 3)).tolist()}}, 400,
     'over the limit of 4096 (--max_image_pixels)'),
    ('body over the size limit', 'POST', ':predict', b' ' * (MAX_BODY + 1), 413,
     f'over the limit of {MAX_BODY} (--max_body_bytes)'),
    ('unknown signature', 'POST', ':predict', {'signature_name': 'nope', 'instances': [1]}, 400,
     'Serving signature name: "nope" not found in signature def'),
    ('classify', 'POST', ':classify', {'examples': []}, 400, 'use :predict'),
    ('unknown model', 'POST', '@/v1/models/horse2zebra:predict', {'instances': [1]}, 404,
     'Servable not found for request: Latest(horse2zebra)'),
    ('unknown version', 'POST', '@/v1/models/cyclegan_a2b/versions/99:predict',
     {'instances': [1]}, 404, 'Servable not found for request: Specific(cyclegan_a2b, 99)'),
    ('version too large', 'POST', f'@/v1/models/cyclegan_a2b/versions/{2**64}:predict',
     {'instances': [1]}, 400, 'Failed to convert version'),
    ('unknown label', 'GET', '@/v1/models/cyclegan_a2b/labels/canary', None, 400,
     'Unrecognized servable version label: canary'),
    ('unknown label predict', 'POST', '@/v1/models/cyclegan_a2b/labels/canary:predict',
     {'instances': [1]}, 400, 'Unrecognized servable version label: canary'),
    ('unknown version status', 'GET', '@/v1/models/cyclegan_b2a/versions/7', None, 404,
     'Could not find version 7 of model cyclegan_b2a'),
    ('unknown model status', 'GET', '@/v1/models/nope', None, 404,
     'Could not find any versions of model nope'),
    ('unknown model metadata', 'GET', '@/v1/models/nope/metadata', None, 404,
     'Servable not found for request: Latest(nope)'),
    ('list models', 'GET', '@/v1/models', None, 400, 'Missing model name in request.'),
    ('malformed v1 path', 'GET', '@/v1/foo', None, 400, 'Malformed request: GET /v1/foo'),
    ('GET on predict', 'GET', ':predict', None, 400, 'Malformed request'),
    ('POST on status', 'POST', '@/v1/models/cyclegan_a2b', {}, 400, 'Malformed request'),
    ('PUT', 'PUT', '@/v1/models/cyclegan_a2b', {}, 400, 'Malformed request: PUT'),
    ('unknown verb', 'POST', ':explain', {}, 400, 'Malformed request'),
    ('outside v1', 'GET', '@/v2/models/cyclegan_a2b', None, 404, 'Not found: /v2/'),
]


@pytest.mark.parametrize('name,method,suffix,body,status,words', BAD_REQUESTS,
                         ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_json_errors_and_the_server_keeps_serving(live, name, method, suffix,
                                                                   body, status, words):
  del name
  url = live.url + suffix[1:] if suffix.startswith('@') else (
      f'{live.url}/v1/models/cyclegan_a2b{suffix}')
  got, reply, headers = lib.call(url, method, body)
  assert got == status, reply
  assert headers['Content-Type'] == 'application/json'
  assert set(reply) == {'error'} and words in reply['error'], reply
  assert lib.call(f'{live.url}/v1/models/cyclegan_a2b')[0] == 200


def test_concurrent_requests_all_succeed(live):
  sizes = [(9 + i, 11 + 2 * i) for i in range(8)]
  results = [None] * len(sizes)

  def work(i):
    body = {'signature_name': 'translate_image',
            'instances': [lib.b64(lib.encoded_image(sizes[i] + (3,), i))]}
    results[i] = lib.call(_predict_url(live, 'cyclegan_a2b' if i % 2 else 'cyclegan_b2a'),
                          'POST', body)

  threads = [threading.Thread(target=work, args=(i,)) for i in range(len(sizes))]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  for (status, reply, _), (h, w) in zip(results, sizes):
    assert status == 200, reply
    assert lib.png_size(base64.b64decode(reply['predictions'][0]['b64'])) == (w, h)


def test_a_prediction_past_the_timeout_gets_504(live):
  servable = live.app.manager.servable('cyclegan_b2a')
  function = servable.functions['serving_default']
  release = threading.Event()

  def slow(**inputs):
    release.wait(10)
    return function(**inputs)

  servable.functions['serving_default'] = slow
  live.app.timeout_ms = 300
  try:
    start = time.monotonic()
    status, reply, _ = lib.call(f'{live.url}/v1/models/cyclegan_b2a:predict', 'POST',
                                {'instances': np.zeros((1, 8, 8, 3)).tolist()})
    assert status == 504 and time.monotonic() - start < 5
    assert 'did not finish within 300 ms (--rest_api_timeout_in_ms)' in reply['error']
  finally:
    release.set()
    servable.functions['serving_default'] = function
    live.app.timeout_ms = 30000
  status, _, _ = lib.call(f'{live.url}/v1/models/cyclegan_b2a:predict', 'POST',
                          {'instances': np.zeros((1, 8, 8, 3)).tolist()})
  assert status == 200


# ---------------------------------------------------------------------------------------------
# Versions appearing, failing and going while serving; the command line.


def test_versions_load_fail_and_unload_with_tf_servings_states(live, tmp_path):
  base = tmp_path / 'cyclegan_b2a'
  base.mkdir()
  app = model_server.ModelServer([model_config.ModelConfig('m', str(base))], warm_up=False)
  status, body = app.handle('GET', '/v1/models/m')
  assert status == 404 and body['error'] == 'Could not find any versions of model m'
  shutil.copytree(live.run.paths['cyclegan_b2a'], base / '.tmp-3-1')  # export's temp folder
  app.poll()
  assert app.handle('GET', '/v1/models/m')[0] == 404
  os.rename(base / '.tmp-3-1', base / '3')  # ... renamed into place
  app.poll()
  status, body = app.handle('GET', '/v1/models/m')
  assert status == 200 and [s['version'] for s in body['model_version_status']] == ['3']
  status, body = app.handle('POST', '/v1/models/m:predict', json.dumps(
      {'signature_name': 'translate_image',
       'instances': [lib.b64(lib.encoded_image((8, 8, 3)))]}).encode())
  assert status == 200 and len(body['predictions']) == 1
  # A broken version 4: its load fails, the status says END with the error, 3 keeps serving.
  (base / '4').mkdir()
  (base / '4' / 'saved_model.pb').write_bytes(b'not a saved model')
  app.poll()
  status, body = app.handle('GET', '/v1/models/m')
  assert status == 200
  failed, serving = body['model_version_status']
  assert failed['version'] == '4' and failed['state'] == 'END'
  assert failed['status']['error_code'] != 'OK' and failed['status']['error_message']
  assert serving == {'version': '3', 'state': 'AVAILABLE',
                     'status': {'error_code': 'OK', 'error_message': ''}}
  assert app.handle('GET', '/v1/models/m/versions/4')[1]['model_version_status'][0][
      'state'] == 'END'
  status, body = app.handle('POST', '/v1/models/m/versions/4:predict', b'{"instances": [1]}')
  assert status == 404 and body['error'] == 'Servable not found for request: Specific(m, 4)'
  # Version 5 replaces both: 3 is unloaded (END, OK), as TF Serving reports it.
  shutil.copytree(live.run.paths['cyclegan_b2a'], base / '5')
  app.poll()
  status, body = app.handle('GET', '/v1/models/m')
  states = {s['version']: (s['state'], s['status']['error_code'])
            for s in body['model_version_status']}
  assert states['5'] == ('AVAILABLE', 'OK') and states['3'] == ('END', 'OK')
  assert states['4'][0] == 'END' and states['4'][1] != 'OK'
  app.stop()


def test_server_command_line_checks_its_flags(tmp_path, capsys):
  from serving import server  # pylint: disable=g-import-not-at-top
  # pylint: disable=protected-access
  with pytest.raises(SystemExit):
    server._parse_args([])
  with pytest.raises(SystemExit):
    server._parse_args(['--model_base_path=x', '--model_config_file=y'])
  with pytest.raises(SystemExit):
    server._parse_args(['--model_base_path=x', '--rest_api_port=0'])
  assert 'nothing to serve' in capsys.readouterr().err
  with pytest.raises(SystemExit):
    server._parse_args(['--model_config_file=c', '--base_path_map=nothing'])
  assert 'expected FROM=TO' in capsys.readouterr().err
  assert server.main(['--model_base_path', str(tmp_path / 'missing'), '--model_name=m']) == 2
  assert 'does not exist' in capsys.readouterr().err
  (tmp_path / 'bad.config').write_text('model_config_list { config { name: "a" }')
  assert server.main([f'--model_config_file={tmp_path / "bad.config"}']) == 2
  assert 'bad.config' in capsys.readouterr().err
  args = server._parse_args(['--model_config_file=c', '--base_path_map=/models=exp',
                             '--rest_api_enable_cors_support=true', '--port=8500'])
  assert args.rest_api_host == '127.0.0.1' and args.rest_api_port == 8501 and args.port == 8500
  assert args.base_path_map == [('/models', os.path.abspath('exp'))]
  assert args.rest_api_enable_cors_support and args.rest_api_timeout_in_ms == 30000
  assert not server._parse_args(['--model_base_path=x']).rest_api_enable_cors_support
  assert server._parse_args(['--model_base_path=x', '--rest_api_enable_cors_support'
                             ]).rest_api_enable_cors_support


def test_an_animated_image_comes_back_animated_with_every_frame(live):
  """translate_image translates every frame of an animated GIF and answers an animated PNG with
  the GIF's frame durations and loop count (frame 1 alone for viewers that do not animate)."""
  from cyclegan_tf.data import animation  # pylint: disable=g-import-not-at-top
  rs = np.random.RandomState(5)
  frames = [rs.randint(0, 256, (16, 24, 3), dtype=np.uint8) for _ in range(4)]
  gif = animation.encode_animation(frames, [50, 60, 70, 80], 3, 'GIF')
  still = lib.encoded_image((9, 13, 3), 1)
  status, reply, _ = lib.call(_predict_url(live), 'POST', {
      'signature_name': 'translate_image', 'instances': [lib.b64(gif), lib.b64(still)]})
  assert status == 200, reply
  answer = base64.b64decode(reply['predictions'][0]['b64'])
  got = animation.read_animation(answer)
  assert (len(got.frames), got.durations, got.loop, got.format) == (4, [50, 60, 70, 80], 3,
                                                                      'PNG')
  assert got.frames[0].shape == (16, 24, 3)
  # Frame 3 is the translation of the GIF's frame 3, as a still image would be.
  status, one, _ = lib.call(_predict_url(live), 'POST', {
      'signature_name': 'translate_image',
      'instances': [lib.b64(animation.frames_as_png(gif)[0][2])]})
  assert status == 200
  with Image.open(io.BytesIO(base64.b64decode(one['predictions'][0]['b64']))) as image:
    np.testing.assert_array_equal(got.frames[2], np.asarray(image.convert('RGB')))
  assert lib.png_size(base64.b64decode(reply['predictions'][1]['b64'])) == (13, 9)
