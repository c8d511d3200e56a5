"""serving/ end to end (slow): `python -m serving.server` as a subprocess with REST and gRPC,
the clients' command lines, the try-it page in headless Chromium, a fuzz run and the load
script. Everything runs on 127.0.0.1.
"""

import base64
import gzip
import io
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import types
import zlib

import numpy as np
import pytest
from PIL import Image

import serving_testlib as lib

from serving import load_test

# One xdist group: the module's server starts once, not once per pytest worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group('server_e2e')]

MAX_PIXELS = 30_000  # the 48 x 64 test image and the 160 x 160 examples pass; 200 x 160 not
MAX_BODY = 2_000_000
READ_TIMEOUT_MS = 1000
CHROMIUM = '/usr/bin/chromium'
CHROMEDRIVER = '/usr/bin/chromedriver'
CHROMIUM_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
                  '--no-first-run', '--disable-background-networking',
                  '--disable-component-update', '--disable-sync')


@pytest.fixture(scope='module')
def cli_server(exported_run, tmp_path_factory):
  """`python -m serving.server` over both models, REST + gRPC + CORS, small limits."""
  folder = tmp_path_factory.mktemp('cli_server')
  config = lib.write_models_config(str(folder), exported_run.export_dir)
  rest, grpc_port = lib.free_port(), lib.free_port()
  flags = [f'--model_config_file={config}', f'--rest_api_port={rest}', f'--port={grpc_port}',
           '--rest_api_enable_cors_support', f'--max_image_pixels={MAX_PIXELS}',
           f'--max_body_bytes={MAX_BODY}', f'--rest_api_read_timeout_in_ms={READ_TIMEOUT_MS}',
           '--file_system_poll_wait_seconds=0']
  process, lines = load_test.launch_server(flags, timeout=180)
  server = types.SimpleNamespace(url=f'http://127.0.0.1:{rest}', port=rest,
                                     grpc=f'127.0.0.1:{grpc_port}', process=process,
                                     lines=lines, folder=folder)
  yield server
  process.terminate()
  assert process.wait(30) == 0  # SIGTERM stops it cleanly


def test_cli_server_serves_rest_and_grpc_to_the_clients(cli_server, tmp_path):
  output = ''.join(cli_server.lines)
  assert 'Serving cyclegan_a2b versions [1]' in output
  assert f'gRPC API at {cli_server.grpc}' in output
  assert f'try-it page at {cli_server.url}/' in output
  folder = tmp_path / 'in'
  folder.mkdir()
  (folder / 'a.png').write_bytes(lib.encoded_image((20, 24, 3), 1))
  (folder / 'b.jpg').write_bytes(lib.mpo_jpeg(30, 16))
  (folder / 'c.webp').write_bytes(lib.encoded_image((12, 10, 3), 2, fmt='WEBP'))
  rest = subprocess.run(
      [sys.executable, '-m', 'serving.client', f'--server={cli_server.url}',
       '--model=cyclegan_b2a', f'--input={folder}', f'--output={tmp_path / "rest"}',
       '--format=columnar', '--batch_size=2'],
      cwd=lib.REPO, env=dict(os.environ, PYTHONPATH=lib.REPO), capture_output=True, text=True,
      timeout=120, check=False)
  assert 'image(s) translated' in rest.stdout, rest.stdout + rest.stderr
  from serving import client  # pylint: disable=g-import-not-at-top
  assert client.main(['--grpc', f'--server={cli_server.grpc}', '--model=cyclegan_b2a',
                      f'--input={folder}', f'--output={tmp_path / "grpc"}']) == rest.returncode
  for name in os.listdir(tmp_path / 'rest'):
    assert (tmp_path / 'rest' / name).read_bytes() == (tmp_path / 'grpc' / name).read_bytes()
  assert {'a.png', 'b.png'} <= set(os.listdir(tmp_path / 'rest'))


# ---------------------------------------------------------------------------------------------
# The try-it page in a real browser.


def _browser(tmp_path):
  if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip('needs Debian\'s chromium and chromium-driver (apt-get install -y chromium '
                'chromium-driver)')
  from selenium import webdriver  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.chrome.service import Service  # pylint: disable=g-import-not-at-top
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for flag in CHROMIUM_FLAGS + (f'--user-data-dir={tmp_path / "chromium-profile"}',
                                '--window-size=1280,1000'):
    options.add_argument(flag)
  return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def _upload(driver, path):
  """Chooses a file, after clearing the page's state so that the old one cannot be mistaken for
  the answer to this one."""
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  driver.execute_script("document.body.dataset.state = 'test-waiting'")
  driver.find_element(By.ID, 'file').send_keys(str(path))


def _wait_state(driver, states, timeout=90):
  from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=g-import-not-at-top
  WebDriverWait(driver, timeout).until(
      lambda d: d.execute_script('return document.body.dataset.state') in states)
  return driver.execute_script('return document.body.dataset.state')


def _shown_pixels(driver, element_id):
  """The pixels an <img> shows, read back through a canvas as PNG bytes."""
  url = driver.execute_script('''
      const image = document.getElementById(arguments[0]);
      const canvas = document.createElement('canvas');
      canvas.width = image.naturalWidth;
      canvas.height = image.naturalHeight;
      canvas.getContext('2d').drawImage(image, 0, 0);
      return canvas.toDataURL('image/png');''', element_id)
  return base64.b64decode(url.split(',', 1)[1])


def test_try_it_page_in_headless_chromium(cli_server, tmp_path):
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  picture = np.zeros((48, 64, 3), np.uint8)
  picture[:, :, 0] = np.linspace(0, 255, 64, dtype=np.uint8)[None]
  picture[12:36, 16:48] = (250, 220, 40)
  Image.fromarray(picture).save(tmp_path / 'sun.png')
  Image.fromarray(np.random.RandomState(0).randint(0, 256, (160, 200, 3), np.uint8)).save(
      tmp_path / 'large.png')
  (tmp_path / 'notes.png').write_bytes(b'this is a text file, not a picture')
  driver = _browser(tmp_path)
  try:
    driver.get(cli_server.url + '/')
    assert _wait_state(driver, ('ready', 'error')) == 'ready'
    options = driver.execute_script(
        "return [...document.querySelectorAll('#model option')].map(o => [o.value, o.disabled])")
    assert options == [['cyclegan_a2b', False], ['cyclegan_b2a', False]]
    assert 'over' not in driver.find_element(By.ID, 'server-info').text
    _upload(driver, tmp_path / 'sun.png')
    assert _wait_state(driver, ('done', 'error')) == 'done', driver.find_element(
        By.ID, 'error').text
    sizes = driver.execute_script(
        "const i = document.getElementById('input-image'), o = "
        "document.getElementById('output-image'); "
        'return [i.naturalWidth, i.naturalHeight, o.naturalWidth, o.naturalHeight]')
    assert sizes == [64, 48, 64, 48]
    with Image.open(io.BytesIO(_shown_pixels(driver, 'output-image'))) as result:
      translated = np.asarray(result.convert('RGB'), np.float32)
    assert translated.shape == picture.shape
    assert np.abs(translated - picture).mean() > 5  # a translation, not the input echoed
    assert driver.find_element(By.ID, 'latency').text.endswith(' ms')
    download = driver.find_element(By.ID, 'download')
    assert download.get_attribute('download') == 'sun_cyclegan_a2b.png'
    assert download.get_attribute('href').startswith('blob:')
    assert not driver.find_element(By.ID, 'error').is_displayed()
    driver.save_screenshot(str(tmp_path / 'tryit_result.png'))

    # Too large for --max_image_pixels: the server's own message, naming the limit.
    _upload(driver, tmp_path / 'large.png')
    assert _wait_state(driver, ('error', 'done')) == 'error'
    message = driver.find_element(By.ID, 'error').text
    assert message.startswith('HTTP 400: ')
    assert f'has 32000 pixels, over the limit of {MAX_PIXELS} (--max_image_pixels)' in message
    assert not driver.find_element(By.ID, 'output-image').is_displayed()
    assert not driver.find_element(By.ID, 'download').is_displayed()
    driver.save_screenshot(str(tmp_path / 'tryit_too_large.png'))

    _upload(driver, tmp_path / 'notes.png')
    assert _wait_state(driver, ('error', 'done')) == 'error'
    assert 'not an image' in driver.find_element(By.ID, 'error').text

    # A bundled example through the other model.
    driver.execute_script("const s = document.getElementById('model'); s.value = "
                          "'cyclegan_b2a'; document.body.dataset.state = 'test-waiting';")
    driver.find_element(By.CSS_SELECTOR, '#examples button[data-example="summer.png"]').click()
    assert _wait_state(driver, ('done', 'error')) == 'done'
    assert driver.find_element(By.ID, 'download').get_attribute(
        'download') == 'summer_cyclegan_b2a.png'
    errors = [e for e in driver.get_log('browser') if e['level'] == 'SEVERE'
              and 'status of 400' not in e['message']]
    assert not errors, errors
  finally:
    driver.quit()
  keep = os.environ.get('SERVING_SCREENSHOT_DIR')
  if keep:
    for name in ('tryit_result.png', 'tryit_too_large.png'):
      shutil.copy(tmp_path / name, os.path.join(keep, name))


# ---------------------------------------------------------------------------------------------
# Fuzz.


def _png_declaring(width, height):
  """A tiny PNG whose header declares width x height (its data does not match)."""
  def chunk(kind, data):
    return (struct.pack('>I', len(data)) + kind + data +
            struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
  return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2,
                                                             0, 0, 0)) +
          chunk(b'IDAT', zlib.compress(b'\x00' * 16)) + chunk(b'IEND', b''))


def _fuzz_requests(rng):
  """[(description, raw request bytes)]: a few hundred malformed REST requests."""
  predict = '/v1/models/cyclegan_a2b:predict'
  png = lib.encoded_image((12, 10, 3), 0)
  good = json.dumps({'signature_name': 'translate_image',
                     'instances': [lib.b64(png)]}).encode()

  def post(body, path=predict, headers=(), method='POST'):
    head = [f'{method} {path} HTTP/1.1', 'Host: 127.0.0.1', 'Connection: close']
    head += [f'Content-Length: {len(body)}'] if body is not None else []
    head += list(headers)
    return '\r\n'.join(head).encode() + b'\r\n\r\n' + (body or b'')

  requests = []
  for cut in rng.sample(range(1, len(good) - 1), 60):
    requests.append(('truncated JSON', post(good[:cut])))
  values = [None, True, 0, -1.5, 1e308, 'x', '', [], {}, [[]], [None], [{'b64': 5}],
            {'b64': 'AAAA'}, [[[[0.5]]]], [[['a']]], {'image_bytes': 3}, 'AAAA' * 50]
  for _ in range(70):
    body = {rng.choice(['instances', 'inputs', 'signature_name', 'examples']): rng.choice(values)
            for _ in range(rng.randint(1, 3))}
    if rng.random() < 0.5:
      body['signature_name'] = rng.choice(['translate_image', 'serving_default', 7, None, ''])
    requests.append(('wrong types', post(json.dumps(body).encode())))
  huge = [
      {'inputs': np.zeros((1, 1, 40000, 3)).tolist()},
      {'inputs': np.zeros((2000, 1, 1, 3)).tolist()},
      {'signature_name': 'translate_image', 'instances': [lib.b64(_png_declaring(60000, 60000))]},
      {'signature_name': 'translate_image', 'instances': [lib.b64(_png_declaring(1, 200000))]},
      {'signature_name': 'translate_image', 'instances': [lib.b64(_png_declaring(0, 0))]},
  ]
  for body in huge:
    requests.append(('huge dims', post(json.dumps(body).encode())))
  requests.append(('deep nesting', post(b'{"instances": ' + b'[' * 100000 + b']' * 100000 +
                                        b'}')))
  for _ in range(40):
    text = ''.join(rng.choice('ABCD+/=-_!@#$ \n\u00e9') for _ in range(rng.randint(0, 40)))
    requests.append(('bad base64', post(json.dumps(
        {'signature_name': 'translate_image', 'instances': [{'b64': text}]}).encode())))
  for _ in range(30):
    broken = bytearray(png)
    for _ in range(rng.randint(1, 20)):
      broken[rng.randrange(len(broken))] = rng.randrange(256)
    requests.append(('corrupt image', post(json.dumps(
        {'signature_name': 'translate_image',
         'instances': [lib.b64(bytes(broken[:rng.randint(8, len(broken))]))]}).encode())))
  paths = ['/', '/v1/models/cyclegan_a2b', predict, '/v1/models', '/v1/models/x/versions/abc',
           '/ui/app.js', '/v1/models/%ZZ:predict', '/v1/models/a/labels/%FF%FE',
           '/v1/' + 'x' * 5000, '/\u00e9'.encode('utf-8').decode('latin-1'), '/v1/models/../..']
  for _ in range(40):
    method = rng.choice(['PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'TRACE', 'BREW', 'GET',
                         'POST'])
    requests.append(('methods and paths', post(rng.choice([None, b'{}', good]),
                                               rng.choice(paths), method=method)))
  requests.append(('URI too long', post(None, '/v1/' + 'x' * 70000, method='GET')))
  header_cases = [
      ['Content-Encoding: gzip'], ['Content-Encoding: deflate'], ['Transfer-Encoding: chunked'],
      ['Transfer-Encoding: identity'], ['Content-Type: text/plain'], ['Expect: 100-continue'],
      ['Content-Encoding: gzip', 'Content-Encoding: gzip'],
  ]
  for _ in range(25):
    requests.append(('headers', post(rng.choice([good, gzip.compress(good), b'\x00' * 10]),
                                     headers=rng.choice(header_cases))))
  for _ in range(10):
    requests.append(('garbage', bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))
                     + b'\r\n\r\n'))
  requests.append(('bad Content-Length', b'POST ' + predict.encode() +
                   b' HTTP/1.1\r\nContent-Length: 12x\r\n\r\n{}'))
  requests.append(('two lengths', b'POST ' + predict.encode() + b' HTTP/1.1\r\n'
                   b'Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'))
  return requests


def _send_raw(port, data, timeout=30):
  """(status, body) of the reply to raw bytes; status None when the server closed without
  one. Interim 100 Continue replies are skipped."""
  with socket.create_connection(('127.0.0.1', port), timeout=timeout) as sock:
    try:
      sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
      pass
    reply = b''
    try:
      while True:
        part = sock.recv(65536)
        if not part:
          break
        reply += part
    except (ConnectionResetError, socket.timeout):
      pass
  while reply.startswith(b'HTTP/1.1 100 '):
    reply = reply.partition(b'\r\n\r\n')[2]
  if not reply.startswith(b'HTTP/'):
    return None, reply
  head, _, body = reply.partition(b'\r\n\r\n')
  return int(head.split()[1]), body


def _slow_loris(port):
  """A body that trickles in a byte every 0.2 s; the read deadline must end it."""
  with socket.create_connection(('127.0.0.1', port), timeout=10) as sock:
    sock.sendall(b'POST /v1/models/cyclegan_a2b:predict HTTP/1.1\r\nContent-Length: 500\r\n\r\n')
    start = time.monotonic()
    sock.setblocking(False)
    reply = b''
    while time.monotonic() - start < 8 and not reply:
      try:
        reply = sock.recv(65536)
      except BlockingIOError:
        try:
          sock.send(b' ')
        except (BlockingIOError, BrokenPipeError, ConnectionResetError):
          pass
        time.sleep(0.2)
    return int(reply.split()[1]) if reply.startswith(b'HTTP/') else None, time.monotonic() - start


def test_fuzz_gets_no_server_errors_and_the_server_survives(cli_server):
  import grpc  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import prediction_service_pb2_grpc  # pylint: disable=g-import-not-at-top
  rng = random.Random(11)
  counts, kinds = {}, {}
  for kind, data in _fuzz_requests(rng):
    status, body = _send_raw(cli_server.port, data)
    counts[status] = counts.get(status, 0) + 1
    kinds.setdefault(kind, {}).setdefault(status, 0)
    kinds[kind][status] += 1
    assert status is None or status < 500, (kind, data[:200], status, body[:300])
    if status not in (None, 200, 204) and data.split(b' ')[0] != b'HEAD' and body:
      assert 'error' in json.loads(body), (kind, body[:200])
  results = [None] * 5
  threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, _slow_loris(
      cli_server.port))) for i in range(5)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  for status, seconds in results:
    assert status == 408 and seconds < READ_TIMEOUT_MS / 1000 + 3
  counts[408] = counts.get(408, 0) + len(results)
  # gRPC: wrong dtypes, declared shapes without values, random bytes as images.
  grpc_codes = {}
  with grpc.insecure_channel(cli_server.grpc) as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    for i in range(30):
      request = predict_pb2.PredictRequest()
      request.model_spec.name = rng.choice(['cyclegan_a2b', 'nope', ''])
      request.model_spec.signature_name = rng.choice(['', 'translate_image', 'x'])
      proto = rng.choice([
          tf.make_tensor_proto(np.zeros((1, 4, 4, 3), np.float64)),
          tf.make_tensor_proto([bytes(rng.randrange(256) for _ in range(30))]),
          tf.make_tensor_proto(np.zeros((2, 3), np.float32)),
      ])
      if i % 3 == 0:
        proto.tensor_shape.dim[0].size = 10**9
      request.inputs[rng.choice(['images', 'image_bytes', 'zzz'])].CopyFrom(proto)
      try:
        stub.Predict(request, timeout=60)
        code = 'OK'
      except grpc.RpcError as e:
        code = e.code().name
      grpc_codes[code] = grpc_codes.get(code, 0) + 1
  assert set(grpc_codes) <= {'OK', 'INVALID_ARGUMENT', 'NOT_FOUND'}, grpc_codes
  total = sum(counts.values()) + sum(grpc_codes.values())
  print(f'fuzz: {total} requests; REST statuses {dict(sorted(counts.items(), key=str))}; '
        f'by kind {kinds}; gRPC codes {grpc_codes}')
  assert total >= 300
  status, body, _ = lib.call(f'{cli_server.url}/v1/models/cyclegan_a2b:predict', 'POST', {
      'signature_name': 'translate_image', 'instances': [lib.b64(lib.encoded_image((8, 8, 3)))]})
  assert status == 200 and len(body['predictions']) == 1
  assert cli_server.process.poll() is None


# ---------------------------------------------------------------------------------------------
# The load script.


def test_load_script_reports_throughput_latency_and_rss(cli_server, capsys):
  from serving import load_test  # pylint: disable=g-import-not-at-top
  rest = cli_server.url.split('//')[1]
  results = load_test.run(rest, cli_server.grpc, 'cyclegan_a2b',
                          ['rest_json', 'rest_b64', 'grpc', 'grpc_bytes'], requests=24,
                          clients=2, size=32, max_seconds=120,
                          server_pid=cli_server.process.pid, freeze_gc=False)
  for mode, stats in results['modes'].items():
    assert stats['requests'] == 6 and stats['errors'] == 0, (mode, stats)
    assert stats['requests_per_s'] > 0 and 0 < stats['p50_ms'] <= stats['p99_ms']
  rss = results['rss_mib']
  assert 100 < rss['ready'] and rss['end'] - rss['warm'] < 200
  text = load_test.table(results)
  assert '| rest_json | 6 | 0 |' in text and 'server RSS:' in text
  print(text)
  del capsys
