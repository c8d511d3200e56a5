"""HTTP front end of the local server: TF Serving's REST API, the try-it page and CORS.

Request bodies arrive with Content-Length or `Transfer-Encoding: chunked`, optionally with
`Content-Encoding: gzip`; each is bounded by --max_body_bytes (413; for gzip, after
decompression) and must arrive within --rest_api_read_timeout_in_ms (408), so a client sending a
byte at a time cannot hold a thread for long. Every error is a JSON {"error": ...} body. With
--rest_api_enable_cors_support, responses carry TF Serving's Access-Control-Allow-* headers and
OPTIONS preflights are answered.

  /                 the try-it page (serving/web/index.html)
  /ui/<file>        its script, style sheet and example images; /ui/config.json: model names
                    and limits
  /v1/...           TF Serving's REST API (model_server.ModelServer.handle)
"""

import json
import logging
import os
import socket
import time
import zlib
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

from serving import defaults
from serving.model_server import body_too_large

WEB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'web')
CORS_HEADERS = (('Access-Control-Allow-Origin', '*'),
                ('Access-Control-Allow-Methods', 'POST, GET'),
                ('Access-Control-Allow-Headers', 'Content-Type'))
_TYPES = {'.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
          '.css': 'text/css; charset=utf-8', '.png': 'image/png', '.jpg': 'image/jpeg',
          '.ico': 'image/x-icon'}
# The page loads nothing from elsewhere (it works offline); its API calls may go to another
# server (?server=...), which then needs CORS.
_PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; connect-src *; "
                "style-src 'self'; script-src 'self'; frame-ancestors 'none'")
_MAX_CHUNK_LINE = 1024
# Before closing a connection, unread request bytes are drained for this long, so that the
# client's kernel does not answer our close with a reset that destroys the error response.
_LINGER_S = 1.0
_LINGER_BYTES = 1 << 20


class _HttpError(Exception):

  def __init__(self, status, message):
    super().__init__(message)
    self.status, self.message = int(status), message


def load_static_files(folder=WEB_DIR):
  """{URL path: (bytes, content type)} of the page's files ('/' is index.html)."""
  files = {}
  for root, _, names in os.walk(folder):
    for name in names:
      ext = os.path.splitext(name)[1].lower()
      if ext not in _TYPES:
        continue
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        url = '/ui/' + os.path.relpath(path, folder).replace(os.sep, '/')
        files[url] = (f.read(), _TYPES[ext])
  if '/ui/index.html' in files:
    files['/'] = files['/index.html'] = files.pop('/ui/index.html')
  return files


class Handler(BaseHTTPRequestHandler):
  """One connection; requests are dispatched to the server's ModelServer (`server.app`)."""

  protocol_version = 'HTTP/1.1'
  server_version = 'cyclegan-model-server/2.0'

  def setup(self):
    self.timeout = self.server.read_timeout_s  # idle keep-alive connections close after it
    super().setup()

  def __getattr__(self, name):
    # Every method (GET, POST, OPTIONS, PUT, unknown tokens ...) goes through _dispatch, so
    # that each gets a JSON answer and none the stdlib's 501 HTML page.
    if name.startswith('do_'):
      return lambda: self._dispatch(name[3:])
    raise AttributeError(name)

  def send_error(self, code, message=None, explain=None):
    """The stdlib's protocol errors (bad request line, long headers ...) as JSON, closing."""
    del explain
    if code == HTTPStatus.HTTP_VERSION_NOT_SUPPORTED:  # a malformed request, not a server fault
      code, message = 400, f'{message}; send HTTP/1.1 or HTTP/1.0.'
      self.request_version = 'HTTP/1.0'  # answer with a status line (the stdlib sends none)
    self.close_connection = True
    self._send_json(code, {'error': message or HTTPStatus(code).phrase})

  def _dispatch(self, method):
    route = self.path.split('?', 1)[0]
    try:
      if method == 'OPTIONS' and self.server.enable_cors:
        self._read_body()
        return self._send(200, b'', None)
      if not route.lower().startswith('/v1/'):
        return self._static(method, route)
      body = self._read_body()
    except _HttpError as e:
      self.close_connection = True
      return self._send_json(e.status, {'error': e.message})
    status, payload = self.server.app.handle(method, self.path, body)
    self._send_json(status, payload)

  def _static(self, method, route):
    self._read_body()
    if route == '/ui/config.json':
      config = dict(self.server.app.ui_config(), examples=sorted(
          u for u in self.server.static_files if u.startswith('/ui/examples/')))
      found = (json.dumps(config).encode(), 'application/json')
    else:
      found = self.server.static_files.get(route)
    if found is None:
      return self._send_json(404, {'error': f'Not found: {route} (the try-it page is at /, the '
                                            'REST API under /v1/models/<name>).'})
    if method not in ('GET', 'HEAD'):
      return self._send_json(405, {'error': f'{method} is not allowed on {route}; use GET.'},
                             (('Allow', 'GET, HEAD'),))
    extra = [('Cache-Control', 'no-cache')]
    if found[1].startswith('text/html'):
      extra.append(('Content-Security-Policy', _PAGE_POLICY))
    self._send(200, found[0], found[1], extra)

  # -- request bodies ------------------------------------------------------------------------

  def _read_body(self):
    """The request body, de-chunked and decompressed; raises _HttpError (4xx)."""
    try:
      return self._read_body_before(time.monotonic() + self.server.read_timeout_s)
    finally:
      self.connection.settimeout(self.timeout)  # for the next request on this connection

  def _read_body_before(self, deadline):
    limit = self.server.app.max_body_bytes
    codings = [c.strip().lower() for c in self.headers.get('Transfer-Encoding', '').split(',')
               if c.strip()]
    if codings:
      if codings != ['chunked']:
        raise _HttpError(400, f'Transfer-Encoding {", ".join(codings)} is not supported; send '
                              'chunked or a Content-Length.')
      body = self._read_chunked(limit, deadline)
    elif self.headers.get('Content-Length') is not None:
      text = self.headers['Content-Length'].strip()
      if not text.isdigit():
        raise _HttpError(400, f'Invalid Content-Length {text!r}; expected a byte count.')
      if int(text) > limit:
        raise _HttpError(413, body_too_large(int(text), limit).message)
      body = self._read_exact(int(text), deadline)
    else:
      body = b''  # HTTP/1.1: no length and not chunked means no body
    return self._decode(body, limit)

  def _timed_out(self):
    ms = self.server.read_timeout_s * 1000
    return _HttpError(408, f'The request did not arrive within {ms:.0f} ms '
                           '(--rest_api_read_timeout_in_ms); send the whole body at once.')

  def _wait(self, deadline):
    remaining = deadline - time.monotonic()
    if remaining <= 0:
      raise self._timed_out()
    self.connection.settimeout(remaining)

  def _read_exact(self, size, deadline):
    parts, got = [], 0
    try:
      while got < size:
        self._wait(deadline)
        part = self.rfile.read1(min(size - got, 1 << 20))
        if not part:
          raise _HttpError(400, f'The body ended after {got} of {size} bytes '
                                '(Content-Length).')
        parts.append(part)
        got += len(part)
    except TimeoutError:
      raise self._timed_out() from None
    return b''.join(parts)

  def _read_line(self, deadline):
    try:
      self._wait(deadline)
      line = self.rfile.readline(_MAX_CHUNK_LINE + 1)
    except TimeoutError:
      raise self._timed_out() from None
    if len(line) > _MAX_CHUNK_LINE or not line.endswith(b'\n'):
      raise _HttpError(400, 'Malformed chunked body: a chunk size line is cut off or too long.')
    return line

  def _read_chunked(self, limit, deadline):
    parts, total = [], 0
    while True:
      line = self._read_line(deadline)
      try:
        size = int(line.split(b';', 1)[0].strip(), 16)
      except ValueError:
        raise _HttpError(400, f'Malformed chunked body: {line[:40]!r} is not a hexadecimal '
                              'chunk size.') from None
      if size == 0:
        for _ in range(100):  # trailer fields, up to the blank line
          if self._read_line(deadline) in (b'\r\n', b'\n'):
            return b''.join(parts)
        raise _HttpError(400, 'Malformed chunked body: too many trailer lines.')
      total += size
      if total > limit:
        raise _HttpError(413, body_too_large(total, limit).message)
      parts.append(self._read_exact(size, deadline))
      if self._read_line(deadline) not in (b'\r\n', b'\n'):
        raise _HttpError(400, 'Malformed chunked body: a chunk is longer than its size.')

  def _decode(self, body, limit):
    encoding = self.headers.get('Content-Encoding', '').strip().lower()
    if encoding in ('', 'identity'):
      return body
    if encoding not in ('gzip', 'x-gzip'):
      raise _HttpError(415, f'Content-Encoding {encoding!r} is not supported; send gzip or an '
                            'uncompressed body.')
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
      data = decompressor.decompress(body, limit + 1)
    except zlib.error as e:
      raise _HttpError(400, f'Content-Encoding: gzip, but the body is not gzip data ({e}).'
                       ) from None
    if len(data) > limit or decompressor.unconsumed_tail:
      raise _HttpError(413, f'The gzip body decompresses to over the limit of {limit} bytes '
                            '(--max_body_bytes).')
    if not decompressor.eof:
      raise _HttpError(400, 'Content-Encoding: gzip, but the gzip data is cut off.')
    return data

  # -- responses -----------------------------------------------------------------------------

  def _send_json(self, status, payload, extra=()):
    self._send(status, json.dumps(payload).encode('utf-8'), 'application/json', extra)

  def _send(self, status, data, content_type, extra=()):
    try:
      self.send_response(int(status))
      if content_type:
        self.send_header('Content-Type', content_type)
      self.send_header('Content-Length', str(len(data)))
      self.send_header('X-Content-Type-Options', 'nosniff')
      if self.server.enable_cors:
        for key, value in CORS_HEADERS:
          self.send_header(key, value)
      for key, value in extra:
        self.send_header(key, value)
      if self.close_connection:
        self.send_header('Connection', 'close')
      self.end_headers()
      if self.command != 'HEAD':
        self.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
      self.close_connection = True  # the client went away

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    logging.debug('%s %s', self.address_string(), format % args)


class HTTPServer(ThreadingHTTPServer):
  """A thread per connection; `app` is the ModelServer."""

  daemon_threads = True
  allow_reuse_address = True
  request_queue_size = 128  # connections the kernel holds while threads start

  def __init__(self, address, app, enable_cors=False, read_timeout_ms=defaults.READ_TIMEOUT_MS):
    self.app = app
    self.enable_cors = bool(enable_cors)
    self.read_timeout_s = max(1, int(read_timeout_ms)) / 1000
    self.static_files = load_static_files()
    super().__init__(address, Handler)

  def shutdown_request(self, request):
    try:
      request.shutdown(socket.SHUT_WR)
      deadline, drained = time.monotonic() + _LINGER_S, 0
      while drained < _LINGER_BYTES and time.monotonic() < deadline:
        request.settimeout(max(0.01, deadline - time.monotonic()))
        data = request.recv(65536)
        if not data:
          break
        drained += len(data)
    except OSError:
      pass
    self.close_request(request)


def make_http_server(app, host='127.0.0.1', port=8501, enable_cors=False,
                     read_timeout_ms=defaults.READ_TIMEOUT_MS):
  """An HTTPServer serving `app`; call serve_forever() (port 0 picks a free one).

  Raises OSError when the address cannot be bound (e.g. the port is in use).
  """
  return HTTPServer((host, port), app, enable_cors, read_timeout_ms)
