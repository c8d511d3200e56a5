"""serving/: the local REST server (TF Serving's API), the client and the container files.

One server runs in a thread of this process on a free 127.0.0.1 port (no second TF import),
serving the session's export (conftest.py `exported_run`) through a models.config file.
"""

import base64
import http.client
import io
import json
import os
import shutil
import socket
import threading
import types
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from serving import client
from serving import server

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_PIXELS = 64 * 64
MAX_BODY = 200_000


def _png(shape, seed=0, fmt='PNG'):
  array = np.random.RandomState(seed).randint(0, 256, shape, dtype=np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format=fmt)
  return buffer.getvalue()


def _b64(data):
  return {'b64': base64.b64encode(data).decode('ascii')}


@pytest.fixture(scope='module')
def live(exported_run, tmp_path_factory):
  """A ModelServer over both exported models behind a ThreadingHTTPServer on a free port."""
  folder = tmp_path_factory.mktemp('serving_config')
  relative = os.path.relpath(os.path.join(exported_run.export_dir, 'cyclegan_a2b'), folder)
  config_path = folder / 'models.config'
  config_path.write_text(f'''
# a2b by a path relative to this file, every version; b2a absolute, the newest only
model_config_list {{
  config {{
    name: "cyclegan_a2b"
    base_path: "{relative}"
    model_platform: "tensorflow"
    model_version_policy {{ all {{}} }}
    version_labels {{ key: "stable" value: 1 }}
  }}
  config: {{
    name: 'cyclegan_b2a',
    base_path: '{os.path.join(exported_run.export_dir, 'cyclegan_b2a')}',
  }}
}}
''')
  models = server.read_model_config(str(config_path))
  app = server.ModelServer(models, max_image_pixels=MAX_PIXELS, max_body_bytes=MAX_BODY,
                           warm_up=False)
  httpd = server.make_http_server(app, '127.0.0.1', 0)
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  url = f'http://127.0.0.1:{httpd.server_address[1]}'
  yield types.SimpleNamespace(url=url, app=app, models=models, run=exported_run)
  httpd.shutdown()
  httpd.server_close()


def _call(url, method='GET', body=None, headers=None):
  """(status, decoded JSON) of one request; bodies may be bytes or JSON-able objects."""
  if body is not None and not isinstance(body, bytes):
    body = json.dumps(body).encode()
  request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
  try:
    with urllib.request.urlopen(request, timeout=60) as reply:
      return reply.status, json.loads(reply.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


def _predict_url(live, model='cyclegan_a2b', suffix=''):
  return f'{live.url}/v1/models/{model}{suffix}:predict'


# ---------------------------------------------------------------------------------------------
# Status and metadata.


def test_config_file_paths_and_policies(live):
  a2b, b2a = live.models
  assert a2b.name == 'cyclegan_a2b' and a2b.policy == ('all', None)
  assert a2b.base_path == os.path.join(live.run.export_dir, 'cyclegan_a2b')
  assert a2b.labels == {'stable': 1}
  assert b2a.policy == ('latest', 1)


def test_model_status_routes(live):
  versions = sorted(int(v) for v in os.listdir(os.path.join(live.run.export_dir, 'cyclegan_a2b'))
                    if v.isdigit())
  status, body = _call(f'{live.url}/v1/models/cyclegan_a2b')
  assert status == 200
  assert [s['version'] for s in body['model_version_status']] == [
      str(v) for v in reversed(versions)]
  assert body['model_version_status'][0] == {
      'version': str(versions[-1]), 'state': 'AVAILABLE',
      'status': {'error_code': 'OK', 'error_message': ''}}
  for path in ('/v1/models/cyclegan_a2b/versions/1', '/v1/models/cyclegan_a2b/labels/stable'):
    status, body = _call(live.url + path)
    assert status == 200 and body['model_version_status'][0]['version'] == '1'
  status, body = _call(f'{live.url}/v1/models/cyclegan_b2a')
  assert status == 200 and [s['version'] for s in body['model_version_status']] == ['1']


def test_metadata_lists_both_signatures_like_tf_serving(live):
  status, body = _call(f'{live.url}/v1/models/cyclegan_b2a/versions/1/metadata')
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
  status, latest = _call(f'{live.url}/v1/models/cyclegan_b2a/metadata')
  assert status == 200 and latest == body


# ---------------------------------------------------------------------------------------------
# Predict.


def test_client_translates_files_in_row_and_columnar_format(live, tmp_path):
  folder = tmp_path / 'in'
  folder.mkdir()
  sizes = {'a.png': (21, 30), 'b.png': (8, 12), 'c.jpg': (17, 9)}
  for name, (h, w) in sizes.items():
    Image.fromarray(np.full((h, w, 3), 100, np.uint8)).save(folder / name)
  for fmt, batch_size, version in (('row', 2, None), ('columnar', 3, 1)):
    out = tmp_path / f'out_{fmt}'
    lines = []
    results = client.translate_files(live.url, 'cyclegan_a2b', client.collect_inputs(
        str(folder)), str(out), version=version, fmt=fmt, batch_size=batch_size,
                                      log=lines.append)
    assert sum(len(r['inputs']) for r in results) == 3
    assert all(r['latency_ms'] > 0 for r in results)
    assert len(lines) == len(results) and 'ms' in lines[0]
    print(fmt, client.summarize(results))
    for name, (h, w) in sizes.items():
      with Image.open(out / (os.path.splitext(name)[0] + '.png')) as image:
        assert image.format == 'PNG' and image.size == (w, h)


def test_client_command_line(live, tmp_path, capsys):
  path = tmp_path / 'x.png'
  path.write_bytes(_png((10, 14, 3)))
  code = client.main([f'--server={live.url}', '--model=cyclegan_b2a', f'--input={path}',
                      f'--output={tmp_path / "out"}'])
  assert code == 0
  captured = capsys.readouterr().out
  assert 'request 1/1: 1 image(s) in' in captured
  assert '1 request(s), 1 image(s) translated: latency mean' in captured
  assert (tmp_path / 'out' / 'x.png').exists()


def test_request_shapes_of_the_rest_api(live):
  """Row and columnar, bare and named, for both signatures, as TF Serving documents them."""
  png = _png((9, 13, 3), 1)
  bodies = [
      {'signature_name': 'translate_image', 'instances': [_b64(png), _b64(png)]},
      {'signature_name': 'translate_image', 'instances': [{'image_bytes': _b64(png)}] * 2},
      {'signature_name': 'translate_image', 'inputs': {'image_bytes': [_b64(png)] * 2}},
      {'signature_name': 'translate_image', 'inputs': [_b64(png)] * 2},
  ]
  for body in bodies:
    status, reply = _call(_predict_url(live), 'POST', body)
    assert status == 200, reply
    values = reply['predictions'] if 'instances' in body else reply['outputs']
    assert len(values) == 2 and set(values[0]) == {'b64'}
    with Image.open(io.BytesIO(base64.b64decode(values[0]['b64']))) as image:
      assert image.size == (13, 9)

  x = np.random.RandomState(2).uniform(-1, 1, (2, 12, 20, 3)).astype(np.float32)
  expected = live.run.generators['G_A'](x).numpy()
  # 1e-5: the SavedModel's graph sums the last conv's GEMM slices in its own order (test_export).
  status, row = _call(_predict_url(live), 'POST', {'instances': x.tolist()})
  assert status == 200
  np.testing.assert_allclose(np.array(row['predictions'], np.float32), expected, atol=1e-5)
  status, named = _call(_predict_url(live), 'POST',
                        {'signature_name': 'serving_default',
                         'instances': [{'images': image} for image in x.tolist()]})
  assert status == 200 and named == row
  status, columnar = _call(_predict_url(live), 'POST', {'inputs': {'images': x.tolist()}})
  assert status == 200
  np.testing.assert_allclose(np.array(columnar['outputs'], np.float32), expected, atol=1e-5)
  odd = np.random.RandomState(3).uniform(-1, 1, (1, 7, 11, 3)).tolist()
  status, reply = _call(_predict_url(live, suffix='/versions/1'), 'POST', {'inputs': odd})
  assert status == 200 and np.array(reply['outputs']).shape == (1, 7, 11, 3)


BAD_REQUESTS = [
    # (name, method, path suffix, body, status, words in the error)
    ('malformed JSON', 'POST', ':predict', b'{"instances": [', 400, 'JSON'),
    ('not an object', 'POST', ':predict', [1, 2], 400, 'JSON object'),
    ('wrong key', 'POST', ':predict', {'examples': []}, 400, 'examples'),
    ('neither key', 'POST', ':predict', {'signature_name': 'serving_default'}, 400, 'instances'),
    ('both keys', 'POST', ':predict', {'instances': [1], 'inputs': [1]}, 400, 'Only one'),
    ('empty instances', 'POST', ':predict', {'instances': []}, 400, 'non-empty'),
    ('bad base64', 'POST', ':predict',
     {'signature_name': 'translate_image', 'instances': [{'b64': '@@not base64@@'}]}, 400,
     'base64'),
    ('not an image', 'POST', ':predict',
     {'signature_name': 'translate_image', 'instances': [_b64(b'hello, world')]}, 400,
     'not an image'),
    ('unsupported format', 'POST', ':predict',
     {'signature_name': 'translate_image', 'instances': [_b64(_png((4, 4, 3), fmt='TIFF'))]},
     400, 'TIFF images are not supported'),
    ('wrong input name', 'POST', ':predict',
     {'signature_name': 'translate_image', 'instances': [{'images': _b64(b'x')}]}, 400,
     'image_bytes'),
    ('wrong rank', 'POST', ':predict', {'instances': [[1.0, 2.0, 3.0]]}, 400, 'shape'),
    ('wrong channels', 'POST', ':predict', {'inputs': np.zeros((1, 4, 4, 2)).tolist()}, 400,
     'shape'),
    ('ragged images', 'POST', ':predict',
     {'instances': [np.zeros((4, 4, 3)).tolist(), np.zeros((4, 8, 3)).tolist()]}, 400,
     'different lengths'),
    ('strings for floats', 'POST', ':predict', {'instances': [[[['a', 'b', 'c']]]]}, 400,
     'numbers'),
    ('image over the pixel limit', 'POST', ':predict',
     {'signature_name': 'translate_image', 'instances': [_b64(_png((65, 64, 3)))]}, 400,
     'limit'),
    ('float image over the pixel limit', 'POST', ':predict',
     {'inputs': {'images': np.zeros((1, 65, 64, 3)).tolist()}}, 400, 'limit'),
    ('body over the size limit', 'POST', ':predict', b' ' * (MAX_BODY + 1), 413, 'limit'),
    ('unknown signature', 'POST', ':predict', {'signature_name': 'nope', 'instances': [1]}, 400,
     'nope'),
    ('classify', 'POST', ':classify', {'examples': []}, 400, 'predict'),
    ('unknown model', 'POST', '@/v1/models/horse2zebra:predict', {'instances': [1]}, 404,
     'horse2zebra'),
    ('unknown version', 'POST', '@/v1/models/cyclegan_a2b/versions/99:predict',
     {'instances': [1]}, 404, '99'),
    ('unknown label', 'GET', '@/v1/models/cyclegan_a2b/labels/canary', None, 404, 'canary'),
    ('unknown version status', 'GET', '@/v1/models/cyclegan_b2a/versions/7', None, 404, '7'),
    ('unknown model metadata', 'GET', '@/v1/models/nope/metadata', None, 404, 'nope'),
    ('unknown route', 'GET', '@/v2/models/cyclegan_a2b', None, 404, 'Malformed'),
    ('GET on predict', 'GET', ':predict', None, 404, 'Malformed'),
    ('POST on status', 'POST', '@/v1/models/cyclegan_a2b', {}, 404, 'Malformed'),
    ('unknown verb', 'POST', ':explain', {}, 404, 'Malformed'),
]


@pytest.mark.parametrize('name,method,suffix,body,status,words', BAD_REQUESTS,
                         ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_json_errors_and_the_server_keeps_serving(live, name, method, suffix,
                                                                   body, status, words):
  del name
  url = live.url + suffix[1:] if suffix.startswith('@') else (
      f'{live.url}/v1/models/cyclegan_a2b{suffix}')
  got, reply = _call(url, method, body)
  assert got == status, reply
  assert set(reply) == {'error'} and words.lower() in reply['error'].lower(), reply
  assert _call(f'{live.url}/v1/models/cyclegan_a2b')[0] == 200


def test_missing_content_length_and_chunked_bodies_are_refused(live):
  host, port = live.url.split('//')[1].split(':')
  for headers in ({}, {'Transfer-Encoding': 'chunked'}):
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest('POST', '/v1/models/cyclegan_a2b:predict', skip_accept_encoding=True)
    for key, value in headers.items():
      connection.putheader(key, value)
    connection.endheaders()
    if headers:
      connection.send(b'0\r\n\r\n')
    reply = connection.getresponse()
    assert reply.status == 411 and 'error' in json.loads(reply.read())
    connection.close()
  assert _call(f'{live.url}/v1/models/cyclegan_a2b')[0] == 200


def test_concurrent_requests_all_succeed(live):
  sizes = [(9 + i, 11 + 2 * i) for i in range(8)]
  results = [None] * len(sizes)

  def work(i):
    body = {'signature_name': 'translate_image', 'instances': [_b64(_png(sizes[i] + (3,), i))]}
    results[i] = _call(_predict_url(live, 'cyclegan_a2b' if i % 2 else 'cyclegan_b2a'), 'POST',
                       body)

  threads = [threading.Thread(target=work, args=(i,)) for i in range(len(sizes))]
  for t in threads[:4]:  # four at a time, twice
    t.start()
  for t in threads[:4]:
    t.join()
  for t in threads[4:]:
    t.start()
  for t in threads[4:]:
    t.join()
  for (status, reply), (h, w) in zip(results, sizes):
    assert status == 200, reply
    with Image.open(io.BytesIO(base64.b64decode(reply['predictions'][0]['b64']))) as image:
      assert image.size == (w, h)


# ---------------------------------------------------------------------------------------------
# Client errors and retries.


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_client_retries_connection_errors_then_fails_clearly(tmp_path, capsys):
  path = tmp_path / 'x.png'
  path.write_bytes(_png((8, 8, 3)))
  url = f'http://127.0.0.1:{_free_port()}'
  code = client.main([f'--server={url}', f'--input={path}', f'--output={tmp_path / "out"}',
                      '--retries=2', '--retry_backoff=0.01'])
  captured = capsys.readouterr()
  assert code == 1
  assert 'retry 1/2' in captured.out and 'retry 2/2' in captured.out
  assert 'Cannot reach' in captured.err and 'after 3 attempt(s)' in captured.err


def test_client_reports_http_errors_with_the_server_message(live, tmp_path):
  with pytest.raises(client.ClientError) as error:
    client.post_json(client.predict_url(live.url, 'nope', 3), {'instances': [1]}, retries=0)
  assert error.value.status == 404
  assert 'HTTP 404' in str(error.value) and 'Specific(nope, 3)' in str(error.value)
  with pytest.raises(FileNotFoundError, match='nothing'):
    client.collect_inputs(str(tmp_path / 'nothing*.png'))
  # A rejected image is reported and skipped; the others go through; the exit code says so.
  (tmp_path / 'good.png').write_bytes(_png((8, 10, 3)))
  (tmp_path / 'zbad.png').write_bytes(b'not a png')
  lines = []
  results = client.translate_files(live.url, 'cyclegan_a2b', client.collect_inputs(
      str(tmp_path)), str(tmp_path / 'out'), log=lines.append)
  assert [r['error'] is None for r in results] == [True, False]
  assert 'HTTP 400' in results[1]['error'] and 'not an image' in results[1]['error']
  assert 'FAILED' in lines[1] and '1 request(s) rejected' in client.summarize(results)
  assert os.listdir(tmp_path / 'out') == ['good.png']
  assert client.main([f'--server={live.url}', f'--input={tmp_path}',
                      f'--output={tmp_path / "out2"}']) == 1


# ---------------------------------------------------------------------------------------------
# Versions appearing while serving; the command line; the container files.


def test_new_versions_are_picked_up_by_polling(live, tmp_path):
  base = tmp_path / 'cyclegan_b2a'
  base.mkdir()
  app = server.ModelServer([server.ModelConfig('m', str(base))])
  status, body = app.handle('GET', '/v1/models/m')
  assert status == 404 and 'versions' in body['error']
  shutil.copytree(live.run.paths['cyclegan_b2a'], base / '.tmp-3-1')  # export's temp folder
  app.poll()
  assert app.handle('GET', '/v1/models/m')[0] == 404
  os.rename(base / '.tmp-3-1', base / '3')  # ... renamed into place
  app.poll()
  status, body = app.handle('GET', '/v1/models/m')
  assert status == 200 and [s['version'] for s in body['model_version_status']] == ['3']
  status, body = app.handle('POST', '/v1/models/m:predict', json.dumps(
      {'signature_name': 'translate_image', 'instances': [_b64(_png((8, 8, 3)))]}).encode())
  assert status == 200 and len(body['predictions']) == 1


def test_server_command_line_checks_its_flags(tmp_path, capsys):
  # pylint: disable=protected-access
  with pytest.raises(SystemExit):
    server._parse_args([])
  with pytest.raises(SystemExit):
    server._parse_args(['--model_base_path=x', '--model_config_file=y'])
  assert server.main(['--model_base_path', str(tmp_path / 'missing'), '--model_name=m']) == 2
  assert 'does not exist' in capsys.readouterr().err
  args = server._parse_args(['--model_config_file=c', '--base_path_map=/models=exp'])
  assert args.rest_api_host == '127.0.0.1' and args.rest_api_port == 8501
  assert args.base_path_map == [('/models', os.path.abspath('exp'))]


def test_repository_serving_files(tmp_path):
  models = server.read_model_config(os.path.join(REPO, 'serving', 'models.config'),
                                    [('/models', str(tmp_path / 'export'))])
  assert [(m.name, m.base_path, m.policy) for m in models] == [
      ('cyclegan_a2b', str(tmp_path / 'export' / 'cyclegan_a2b'), ('latest', 1)),
      ('cyclegan_b2a', str(tmp_path / 'export' / 'cyclegan_b2a'), ('latest', 1))]
  with open(os.path.join(REPO, 'serving', 'batching.config')) as f:
    batching = server.parse_text_proto(f.read())
  assert batching['max_batch_size'] == [{'value': [8]}]
  assert set(batching) == {'max_batch_size', 'batch_timeout_micros', 'max_enqueued_batches',
                           'num_batch_threads', 'pad_variable_length_inputs'}
  with open(os.path.join(REPO, 'serving', 'docker-compose.yml')) as f:
    compose = f.read()
  for text in ('image: tensorflow/serving', '--rest_api_port=8501',
               '--model_config_file=/config/models.config', '--enable_batching=true',
               '--batching_parameters_file=/config/batching.config',
               './models.config:/config/models.config', ':/models:ro'):
    assert text in compose, text
  with pytest.raises(ValueError, match='no model_config_list'):
    server.read_model_config(_write(tmp_path, 'x: 1'))


def _write(folder, text):
  path = folder / 'bad.config'
  path.write_text(text)
  return str(path)
