"""serving/: what clients really send (image formats, base64 variants, float images, gzip and
chunked bodies, slow bodies, CORS) and the try-it page's files.

The kinds come from ../shared/field/11_serving_requests; every input here is made in the test.
"""

import base64
import gzip
import http.client
import io
import json
import os
import re
import select
import socket
import time
import urllib.request

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import serving_testlib as lib

MAX_PIXELS = 64 * 64
MAX_BODY = 300_000
READ_TIMEOUT_MS = 1000


@pytest.fixture(scope='module')
def live(exported_run, tmp_path_factory):
  server = lib.start_live(exported_run, tmp_path_factory.mktemp('inputs_config'),
                          enable_cors=True, read_timeout_ms=READ_TIMEOUT_MS,
                          max_image_pixels=MAX_PIXELS, max_body_bytes=MAX_BODY)
  yield server
  server.stop()


def _translate(live, images, model='cyclegan_a2b'):
  body = {'signature_name': 'translate_image', 'instances': [lib.b64(d) for d in images]}
  status, reply, _ = lib.call(f'{live.url}/v1/models/{model}:predict', 'POST', body)
  return status, reply


FORMATS = {
    'PNG RGB': lambda: lib.encoded_image((20, 28, 3), 1),
    'PNG gray': lambda: lib.encoded_image((20, 28, 3), 2, mode='L'),
    'PNG RGBA': lambda: lib.encoded_image((20, 28, 4), 3),
    'PNG palette': lambda: lib.encoded_image((20, 28, 3), 4, mode='P'),
    'JPEG': lambda: lib.encoded_image((20, 28, 3), 5, fmt='JPEG', quality=90),
    'camera MPO JPEG': lambda: lib.mpo_jpeg(28, 20),
    'BMP': lambda: lib.encoded_image((20, 28, 3), 6, fmt='BMP'),
    'GIF': lambda: lib.encoded_image((20, 28, 3), 7, mode='P', fmt='GIF'),
    'WebP': lambda: lib.encoded_image((20, 28, 3), 8, fmt='WEBP'),
    'TIFF': lambda: lib.encoded_image((20, 28, 3), 9, fmt='TIFF'),
}
MUST_DECODE = ('PNG RGB', 'PNG gray', 'PNG RGBA', 'PNG palette', 'JPEG', 'camera MPO JPEG', 'BMP',
               'GIF')


@pytest.mark.parametrize('kind', sorted(FORMATS))
def test_the_server_accepts_what_the_signature_decodes(live, kind):
  """Never refused by format name: the answer is the signature's own, 200 or its decoder's
  error as a 400 naming the format."""
  data = FORMATS[kind]()
  servable = live.app.manager.servable('cyclegan_a2b')
  try:
    direct = servable.functions['translate_image'](image_bytes=tf.constant([data]))
    expected = direct['png_bytes'].numpy()[0]
  except tf.errors.InvalidArgumentError:
    expected = None
  assert expected is not None or kind not in MUST_DECODE
  status, reply = _translate(live, [data])
  if expected is None:
    assert status == 400, reply
    assert "translate_image signature could not decode the image(s)" in reply['error']
    assert kind.split()[0].upper() in reply['error'].upper()
  else:
    assert status == 200, reply
    png = base64.b64decode(reply['predictions'][0]['b64'])
    assert png == expected and lib.png_size(png) == (28, 20)


def test_one_request_mixes_sizes_modes_and_formats(live):
  images = [lib.encoded_image((40, 30, 3), 1, mode='L'), lib.encoded_image((36, 36, 4), 2),
            lib.encoded_image((20, 30, 3), 3, mode='P', fmt='GIF'), lib.mpo_jpeg(48, 32)]
  status, reply = _translate(live, images)
  assert status == 200, reply
  sizes = [lib.png_size(base64.b64decode(p['b64'])) for p in reply['predictions']]
  assert sizes == [(30, 40), (36, 36), (30, 20), (48, 32)]


def _image_text():
  """Standard base64 of a PNG whose text holds '+', '/' and '=' padding."""
  for seed in range(500):
    data = lib.encoded_image((12, 16, 3), seed)
    text = base64.b64encode(data).decode('ascii')
    if '+' in text and '/' in text and text.endswith('='):
      return data, text
  raise AssertionError('no seed')


def test_base64_as_clients_send_it(live):
  data, text = _image_text()
  url = f'{live.url}/v1/models/cyclegan_a2b:predict'
  wrapped = '\n'.join(text[i:i + 76] for i in range(0, len(text), 76))

  def send(instances, raw=None):
    body = raw if raw is not None else {'signature_name': 'translate_image',
                                        'instances': instances}
    return lib.call(url, 'POST', body)[:2]

  ok = [[{'b64': text}], [{'b64': wrapped + '\n'}], [{'b64': text.rstrip('=')}],
        [{'image_bytes': {'b64': text}}]]
  for instances in ok:
    status, reply = send(instances)
    assert status == 200 and lib.png_size(base64.b64decode(reply['predictions'][0]['b64'])) == (
        16, 12), reply
  refused = [
      ([{'b64': base64.urlsafe_b64encode(data).decode()}], "web-safe base64"),
      ([{'b64': 'data:image/png;base64,' + text}], 'a data URI'),
      ([text], 'base64 text, not image bytes'),
      ({'b64': text}, "'instances' must be a list"),
      ([{'image': {'b64': text}}], "the signature translate_image takes the inputs "
                                   "['image_bytes']"),
      ([{'b64': '@@@@'}], 'invalid base64'),
      ([{'b64': 5}], '"b64" must hold a base64 string'),
      ([], "No values in 'instances' array"),
  ]
  for instances, words in refused:
    status, reply = send(instances)
    assert status == 400 and words in reply['error'], (instances, reply)
  raw = ('{"signature_name": "translate_image", "instances": [{"b64": "' + wrapped +
         '"}]}').encode()
  status, reply = send(None, raw)
  assert status == 400 and 'raw line break' in reply['error']
  # Binary data sent to the float signature: the error names the signature to use.
  status, reply = lib.call(url, 'POST', {'instances': [{'b64': text}]})[:2]
  assert status == 400 and 'expected numbers (DT_FLOAT)' in reply['error']
  assert "'translate_image'" in reply['error']


def test_float_images_as_clients_send_them(live):
  url = f'{live.url}/v1/models/cyclegan_a2b:predict'
  rng = np.random.RandomState(0)
  a = np.round(rng.uniform(-1, 1, (24, 32, 3)), 3).tolist()
  b = np.round(rng.uniform(-1, 1, (28, 20, 3)), 3).tolist()
  for body in ({'instances': [a, b]}, {'inputs': [a, b]}):
    status, reply, _ = lib.call(url, 'POST', body)
    assert status == 400 and 'has the shape [28, 20, 3]' in reply['error']
    assert 'separate requests' in reply['error'] and 'translate_image' in reply['error']
  status, reply, _ = lib.call(url, 'POST', {'instances': [a, a]})
  assert status == 200 and np.array(reply['predictions']).shape == (2, 24, 32, 3)
  status, reply, _ = lib.call(url, 'POST', {'instances': [rng.randint(0, 256, (16, 16, 3))
                                                          .tolist()]})
  assert status == 400 and 'values range from 0 to 255' in reply['error']
  assert 'x / 127.5 - 1' in reply['error']
  status, reply, _ = lib.call(url, 'POST', {'instances': [[[['x', 'y', 'z']]]]})
  assert status == 400 and 'expected numbers (DT_FLOAT), got a string' in reply['error']
  status, reply, _ = lib.call(url, 'POST', {'instances': [[[[True, False, True]]]]})
  assert status == 400 and 'got true' in reply['error']


# ---------------------------------------------------------------------------------------------
# Transport: gzip, chunked, slow and broken bodies.


def _body(seed=0):
  return json.dumps({'signature_name': 'translate_image',
                     'instances': [lib.b64(lib.encoded_image((10, 12, 3), seed))]}).encode()


def _post(live, body, headers, chunks=None):
  connection = http.client.HTTPConnection('127.0.0.1', live.port, timeout=30)
  path = '/v1/models/cyclegan_a2b:predict'
  if chunks is not None:
    connection.request('POST', path, body=iter(chunks), headers=headers, encode_chunked=True)
  else:
    connection.request('POST', path, body=body, headers=headers)
  reply = connection.getresponse()
  payload = json.loads(reply.read())
  connection.close()
  return reply.status, payload


def test_gzip_and_chunked_bodies_are_accepted(live):
  body = _body()
  for headers, data, chunks in (
      ({'Content-Encoding': 'gzip'}, gzip.compress(body), None),
      ({'Transfer-Encoding': 'chunked'}, None, [body[:100], body[100:1000], body[1000:]]),
      ({'Transfer-Encoding': 'chunked', 'Content-Encoding': 'gzip'}, None,
       [gzip.compress(body)]),
  ):
    status, reply = _post(live, data, headers, chunks)
    assert status == 200, reply
    assert lib.png_size(base64.b64decode(reply['predictions'][0]['b64'])) == (12, 10)


def test_broken_bodies_get_4xx_naming_the_problem(live):
  body = _body()
  bomb = gzip.compress(b' ' * (MAX_BODY + 10))  # small on the wire, over the limit unpacked
  cases = [
      ({'Content-Encoding': 'gzip'}, b'not gzip at all', 400, 'not gzip data'),
      ({'Content-Encoding': 'gzip'}, gzip.compress(body)[:-20], 400, 'cut off'),
      ({'Content-Encoding': 'gzip'}, bomb, 413, 'decompresses to over the limit'),
      ({'Content-Encoding': 'br'}, body, 415, "Content-Encoding 'br' is not supported"),
  ]
  for headers, data, status, words in cases:
    got, reply = _post(live, data, headers)
    assert got == status and words in reply['error'], reply
  raw = [
      (b'POST /v1/models/cyclegan_a2b:predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n'
       b'zz\r\n{}\r\n0\r\n\r\n', 400, 'not a hexadecimal chunk size'),
      (b'POST /v1/models/cyclegan_a2b:predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n'
       + f'{MAX_BODY + 1:x}\r\n'.encode(), 413, '--max_body_bytes'),
      (b'POST /v1/models/cyclegan_a2b:predict HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n',
       400, 'Transfer-Encoding gzip is not supported'),
      (b'POST /v1/models/cyclegan_a2b:predict HTTP/1.1\r\nContent-Length: -5\r\n\r\n', 400,
       'Invalid Content-Length'),
      (b'POST /v1/models/cyclegan_a2b:predict HTTP/1.1\r\nContent-Length: '
       + str(MAX_BODY + 1).encode() + b'\r\n\r\n', 413, '--max_body_bytes'),
      (b'POST /v1/models/cyclegan_a2b:predict HTTP/1.1\r\n\r\n', 400, 'document is empty'),
      (b'GET / HTTP/2.0\r\n\r\n', 400, 'HTTP/1.1'),
      (b'BREW / HTTP/1.1\r\n\r\n', 405, 'BREW is not allowed'),
      (b'GET / HTTP/1.1\r\nX: ' + b'a' * 70000 + b'\r\n\r\n', 431, 'Line too long'),
  ]
  for data, status, words in raw:
    got, reply = lib.raw_request(live.port, data)
    assert got == status and words in reply['error'], (data[:60], reply)
  assert lib.call(f'{live.url}/v1/models/cyclegan_a2b')[0] == 200


def test_slow_bodies_are_cut_off_with_408(live):
  head = (b'POST /v1/models/cyclegan_a2b:predict HTTP/1.1\r\nHost: x\r\n'
          b'Content-Length: 100\r\n\r\n{"instances"')
  chunked = (b'POST /v1/models/cyclegan_a2b:predict HTTP/1.1\r\nHost: x\r\n'
             b'Transfer-Encoding: chunked\r\n\r\n')
  for first, trickle in ((head, b''), (chunked, b'1\r\n \r\n')):
    start = time.monotonic()
    with socket.create_connection(('127.0.0.1', live.port), timeout=10) as sock:
      sock.sendall(first)
      while trickle and time.monotonic() - start < 5:  # a byte every 0.2 s: slow-loris
        if select.select([sock], [], [], 0.2)[0]:
          break  # the server answered
        sock.sendall(trickle)
      response = http.client.HTTPResponse(sock)
      response.begin()
      reply = json.loads(response.read())
    assert response.status == 408, reply
    assert '--rest_api_read_timeout_in_ms' in reply['error']
    assert time.monotonic() - start < READ_TIMEOUT_MS / 1000 + 2


# ---------------------------------------------------------------------------------------------
# CORS and the try-it page.


def test_cors_headers_and_preflight(live):
  connection = http.client.HTTPConnection('127.0.0.1', live.port, timeout=30)
  connection.request('OPTIONS', '/v1/models/cyclegan_a2b:predict', headers={
      'Origin': 'http://example.test', 'Access-Control-Request-Method': 'POST',
      'Access-Control-Request-Headers': 'content-type'})
  reply = connection.getresponse()
  assert reply.status == 200 and reply.read() == b''
  assert reply.headers['Access-Control-Allow-Origin'] == '*'
  assert reply.headers['Access-Control-Allow-Methods'] == 'POST, GET'
  assert reply.headers['Access-Control-Allow-Headers'] == 'Content-Type'
  connection.close()
  for method, path, body in (('GET', '/v1/models/cyclegan_a2b', None),
                             ('POST', '/v1/models/cyclegan_a2b:predict', {'instances': []})):
    _, _, headers = lib.call(live.url + path, method, body)
    assert headers['Access-Control-Allow-Origin'] == '*'


def test_the_try_it_page_and_its_files(live):
  with urllib.request.urlopen(live.url + '/', timeout=30) as reply:
    page = reply.read().decode()
    assert reply.headers['Content-Type'] == 'text/html; charset=utf-8'
    assert "script-src 'self'" in reply.headers['Content-Security-Policy']
  assert 'ui/app.js' in page and 'ui/style.css' in page and 'id="file"' in page
  status, config, _ = lib.call(live.url + '/ui/config.json')
  assert status == 200 and config['models'] == ['cyclegan_a2b', 'cyclegan_b2a']
  assert config['max_image_pixels'] == MAX_PIXELS and config['max_body_bytes'] == MAX_BODY
  assert len(config['examples']) >= 2
  for path in ['/ui/app.js', '/ui/style.css'] + config['examples']:
    with urllib.request.urlopen(live.url + path, timeout=30) as reply:
      data = reply.read()
      assert reply.status == 200 and data
      if path.startswith('/ui/examples/'):
        with Image.open(io.BytesIO(data)) as image:
          assert image.size[0] * image.size[1] <= MAX_PIXELS * 16
  assert lib.call(live.url + '/ui/nope.js')[0] == 404
  assert lib.call(live.url + '/ui/../server.py')[0] == 404
  status, reply, headers = lib.call(live.url + '/', 'POST', b'x')
  assert status == 405 and headers['Allow'] == 'GET, HEAD'
  # Works offline: the page's files reference nothing outside the server.
  web = os.path.join(lib.REPO, 'serving', 'web')
  for name in ('index.html', 'app.js', 'style.css'):
    with open(os.path.join(web, name)) as f:
      assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//|url\(\s*["\']?(https?:)?//|'
                           r'@import|fetch\(\s*["\'`]https?:', f.read()), name
