"""Helpers shared by the serving tests (test_serving*.py): images, requests, live servers.

A live server is a model_server.ModelServer over the session's export (conftest.py
`exported_run`), read through a models.config file, behind the real HTTP front end (and, when
asked, the gRPC server) on free 127.0.0.1 ports, in threads of the test process.
"""

import base64
import http.client
import io
import json
import os
import socket
import threading
import types
import urllib.error
import urllib.request

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def encoded_image(shape, seed=0, fmt='PNG', mode=None, **save_args):
  """Random pixels of `shape` (H, W, C) encoded as `fmt` bytes."""
  array = np.random.RandomState(seed).randint(0, 256, shape, dtype=np.uint8)
  image = Image.fromarray(array)
  if mode:
    image = image.convert(mode)
  buffer = io.BytesIO()
  image.save(buffer, format=fmt, **save_args)
  return buffer.getvalue()


def mpo_jpeg(width=40, height=30):
  """A 2-frame camera JPEG that Pillow reports as format 'MPO'."""
  first = Image.fromarray(np.full((height, width, 3), 200, np.uint8))
  second = Image.fromarray(np.full((height, width, 3), 50, np.uint8))
  buffer = io.BytesIO()
  first.save(buffer, format='MPO', save_all=True, append_images=[second], quality=90)
  data = buffer.getvalue()
  with Image.open(io.BytesIO(data)) as check:
    assert check.format == 'MPO'
  return data


def b64(data):
  return {'b64': base64.b64encode(data).decode('ascii')}


def png_size(data):
  with Image.open(io.BytesIO(data)) as image:
    assert image.format == 'PNG'
    return image.size


def call(url, method='GET', body=None, headers=None, timeout=60):
  """(status, decoded JSON, headers) of one request; bodies may be bytes or JSON-able."""
  if body is not None and not isinstance(body, bytes):
    body = json.dumps(body).encode()
  request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
  try:
    with urllib.request.urlopen(request, timeout=timeout) as reply:
      return reply.status, json.loads(reply.read() or b'null'), dict(reply.headers)
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read() or b'null'), dict(e.headers)


def raw_request(port, data, timeout=30):
  """Sends raw bytes to 127.0.0.1:port; returns (status, JSON body or None) of the reply."""
  with socket.create_connection(('127.0.0.1', port), timeout=timeout) as sock:
    sock.sendall(data)
    response = http.client.HTTPResponse(sock)
    response.begin()
    payload = response.read()
    try:
      return response.status, json.loads(payload)
    except ValueError:
      return response.status, None


def free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def write_models_config(folder, export_dir):
  """A models.config serving both exported models: a2b by a relative path, every version, with
  a label; b2a absolute, the newest only."""
  relative = os.path.relpath(os.path.join(export_dir, 'cyclegan_a2b'), folder)
  path = os.path.join(folder, 'models.config')
  with open(path, 'w') as f:
    f.write(f'''
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
    base_path: '{os.path.join(export_dir, 'cyclegan_b2a')}',
    model_platform: "tensorflow"
  }}
}}
''')
  return path


def start_live(exported_run, folder, grpc=False, enable_cors=False, read_timeout_ms=30000,
               **server_args):
  """A live server (see the module docstring); call .stop() when done."""
  from serving import http_server  # pylint: disable=g-import-not-at-top
  from serving import model_config  # pylint: disable=g-import-not-at-top
  from serving import model_server  # pylint: disable=g-import-not-at-top
  config_path = write_models_config(str(folder), exported_run.export_dir)
  models = model_config.read_model_config(config_path)
  server_args.setdefault('warm_up', False)
  app = model_server.ModelServer(models, **server_args)
  httpd = http_server.make_http_server(app, '127.0.0.1', 0, enable_cors, read_timeout_ms)
  threading.Thread(target=httpd.serve_forever, daemon=True).start()
  port = httpd.server_address[1]
  live = types.SimpleNamespace(url=f'http://127.0.0.1:{port}', port=port, app=app,
                               models=models, run=exported_run, httpd=httpd, grpc=None,
                               grpc_port=None)
  if grpc:
    from serving import grpc_server  # pylint: disable=g-import-not-at-top
    live.grpc, live.grpc_port = grpc_server.make_grpc_server(app, '127.0.0.1', 0)

  def stop():
    httpd.shutdown()
    httpd.server_close()
    if live.grpc:
      live.grpc.stop(grace=None)
    app.stop()

  live.stop = stop
  return live
