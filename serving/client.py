"""Client for the exported generators (TF Serving or serving/server.py), over REST or gRPC.

  python -m serving.client --server=http://127.0.0.1:8501 --model=cyclegan_a2b \\
      --input='photos/*.jpg' --output=translated/ [--version=2] [--format=columnar]
  python -m serving.client --grpc --server=127.0.0.1:8500 --model=cyclegan_a2b \\
      --input=photos/ --output=translated/

Sends each image's encoded bytes to the translate_image signature: over REST as {"b64": ...}
to /v1/models/<model>[/versions/<n>]:predict in row ({"instances": [...]}) or columnar
({"inputs": {"image_bytes": [...]}}) format, standard library only; over gRPC (--grpc) as a
DT_STRING tensor to PredictionService/Predict, with the stubs of tensorflow-serving-api (which
load TensorFlow, so that client starts slower). The returned PNGs are written into --output
named after the inputs (photo.jpg -> photo.png; inputs whose names would collide keep their
extension: a_jpg.png). Prints each request's latency and a summary. Connection errors (server
not up yet, connection reset; gRPC UNAVAILABLE) and 503s are retried --retries times with
exponential backoff. Errors are reported with the status and the server's message: a request
rejected as bad input (HTTP 400, gRPC INVALID_ARGUMENT, e.g. a file that is not an image) is
skipped (exit code 1 at the end), any other error stops the client.
"""

import argparse
import base64
import json
import os
import statistics
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from cyclegan_tf.data.image_files import collect_inputs
from cyclegan_tf.data.image_files import output_names

SIGNATURE = 'translate_image'
INPUT = 'image_bytes'
OUTPUT = 'png_bytes'


class ClientError(Exception):
  """A failed request with the server's message.

  status: the HTTP status or gRPC code name (None for connection failures). bad_input: the
  server rejected the request's content (HTTP 400, gRPC INVALID_ARGUMENT).
  """

  def __init__(self, message, status=None, bad_input=None):
    super().__init__(message)
    self.status = status
    self.bad_input = status in (400, 'INVALID_ARGUMENT') if bad_input is None else bad_input


def predict_url(server, model, version=None):
  base = server.rstrip('/')
  if '://' not in base:
    base = 'http://' + base
  version_part = f'/versions/{int(version)}' if version is not None else ''
  return f'{base}/v1/models/{urllib.parse.quote(model, safe="")}{version_part}:predict'


def build_request(contents, fmt='row', signature_name=SIGNATURE, input_name=INPUT):
  """Encoded images (list of bytes) -> the predict request body (a dict)."""
  values = [{'b64': base64.b64encode(c).decode('ascii')} for c in contents]
  if fmt == 'row':
    return {'signature_name': signature_name, 'instances': values}
  if fmt == 'columnar':
    return {'signature_name': signature_name, 'inputs': {input_name: values}}
  raise ValueError(f'format must be row or columnar, got {fmt!r}.')


def parse_response(response, count, output_name=OUTPUT):
  """The predict response -> list of `count` PNG bytes (row or columnar, bare or named)."""
  values = response.get('predictions', response.get('outputs'))
  if isinstance(values, dict):  # columnar with several named outputs
    values = values.get(output_name)
  if not isinstance(values, list) or len(values) != count:
    raise ClientError(f'Unexpected response: expected {count} outputs, got '
                      f'{json.dumps(response)[:200]}')
  images = []
  for value in values:
    if isinstance(value, dict) and 'b64' not in value:  # row format, named outputs
      value = value.get(output_name)
    if not isinstance(value, dict) or 'b64' not in value:
      raise ClientError(f'Unexpected output value {json.dumps(value)[:200]}')
    images.append(base64.b64decode(value['b64']))
  return images


def post_json(url, body, timeout=60.0, retries=3, backoff=0.5, log=None):
  """POSTs a JSON body; returns the decoded JSON reply.

  Connection errors (refused, reset, timed out) and 503s are retried `retries` times, waiting
  backoff, 2 * backoff, 4 * backoff ... seconds. Other HTTP errors raise ClientError with the
  status and the server's {"error": ...} message.
  """
  data = json.dumps(body).encode('utf-8')
  attempt = 0
  while True:
    request = urllib.request.Request(url, data=data, method='POST',
                                     headers={'Content-Type': 'application/json'})
    try:
      with urllib.request.urlopen(request, timeout=timeout) as reply:
        return json.loads(reply.read())
    except urllib.error.HTTPError as e:
      raw = e.read()
      try:
        message = json.loads(raw).get('error', raw.decode('utf-8', 'replace'))
      except (ValueError, AttributeError):
        message = raw.decode('utf-8', 'replace')[:500]
      if e.code != 503 or attempt >= retries:
        raise ClientError(f'HTTP {e.code} from {url}: {message}', status=e.code) from None
      reason = f'HTTP 503: {message}'
    except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
      if attempt >= retries:
        raise ClientError(f'Cannot reach {url} after {attempt + 1} attempt(s): '
                          f'{getattr(e, "reason", e)}') from None
      reason = str(getattr(e, 'reason', e))
    delay = backoff * 2**attempt
    attempt += 1
    if log:
      log(f'  {reason}; retry {attempt}/{retries} in {delay:.2f} s')
    time.sleep(delay)


class GrpcSender:
  """Sends encoded images to translate_image over gRPC; call it with a list of bytes.

  One channel serves every call; close() ends it. UNAVAILABLE (no server yet, connection reset)
  is retried `retries` times with exponential backoff; other errors raise ClientError with the
  gRPC code name as status.
  """

  def __init__(self, server, model, version=None, timeout=60.0, retries=3, backoff=0.5,
               log=None):
    # pylint: disable=g-import-not-at-top  (the stubs load TensorFlow; REST use stays light)
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_service_pb2_grpc
    self._grpc, self._tf, self._predict_pb2 = grpc, tf, predict_pb2
    self.target = server.split('://', 1)[-1].rstrip('/')
    self.model, self.version = model, version
    self.timeout, self.retries, self.backoff, self.log = timeout, retries, backoff, log
    self._channel = grpc.insecure_channel(self.target, options=[
        ('grpc.max_receive_message_length', -1), ('grpc.max_send_message_length', -1)])
    self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

  def close(self):
    self._channel.close()

  def __call__(self, contents):
    tf, grpc = self._tf, self._grpc
    request = self._predict_pb2.PredictRequest()
    request.model_spec.name = self.model
    request.model_spec.signature_name = SIGNATURE
    if self.version is not None:
      request.model_spec.version.value = int(self.version)
    request.inputs[INPUT].CopyFrom(tf.make_tensor_proto(list(contents), dtype=tf.string,
                                                        shape=[len(contents)]))
    attempt = 0
    while True:
      try:
        response = self._stub.Predict(request, timeout=self.timeout)
        break
      except grpc.RpcError as e:
        code = e.code()
        if code != grpc.StatusCode.UNAVAILABLE:
          raise ClientError(f'gRPC {code.name} from {self.target}: {e.details()}',
                            status=code.name) from None
        if attempt >= self.retries:
          raise ClientError(f'Cannot reach {self.target} after {attempt + 1} attempt(s): '
                            f'{e.details()}') from None
        reason = f'gRPC UNAVAILABLE: {e.details()}'
      delay = self.backoff * 2**attempt
      attempt += 1
      if self.log:
        self.log(f'  {reason}; retry {attempt}/{self.retries} in {delay:.2f} s')
      time.sleep(delay)
    if OUTPUT not in response.outputs:
      raise ClientError(f'Unexpected response: no {OUTPUT} output, got '
                        f'{sorted(response.outputs)}')
    return [bytes(x) for x in tf.make_ndarray(response.outputs[OUTPUT]).ravel()]


def translate_files(server, model, paths, output_dir, version=None, fmt='row', batch_size=1,
                    timeout=60.0, retries=3, backoff=0.5, log=print, use_grpc=False):
  """Translates the files through the server; returns one result dict per request.

  Result: {'inputs', 'outputs', 'latency_ms', 'error'}. A request the server rejects as bad
  input (HTTP 400 / gRPC INVALID_ARGUMENT, e.g. a file that is not an image) is reported and
  skipped; other failures (unknown model or version, server errors, no connection) raise
  ClientError. use_grpc: send over gRPC (`server` is host:port) instead of REST.
  """
  os.makedirs(output_dir, exist_ok=True)
  if use_grpc:
    send = GrpcSender(server, model, version, timeout, retries, backoff, log)
  else:
    url = predict_url(server, model, version)

    def send(contents):
      response = post_json(url, build_request(contents, fmt), timeout, retries, backoff, log)
      return parse_response(response, len(contents))

  names = output_names(paths)
  batches = [paths[i:i + batch_size] for i in range(0, len(paths), max(1, batch_size))]
  results = []
  try:
    for number, batch in enumerate(batches, 1):
      contents = []
      for path in batch:
        with open(path, 'rb') as f:
          contents.append(f.read())
      start = time.perf_counter()
      try:
        pngs = send(contents)
      except ClientError as e:
        if not e.bad_input:
          raise
        results.append({'inputs': batch, 'outputs': [], 'latency_ms': None, 'error': str(e)})
        if log:
          log(f'request {number}/{len(batches)}: FAILED for {", ".join(batch)}: {e}')
        continue
      latency_ms = (time.perf_counter() - start) * 1000
      outputs = []
      for path, png in zip(batch, pngs):
        target = os.path.join(output_dir, names[path])
        with open(target, 'wb') as f:
          f.write(png)
        outputs.append(target)
      results.append({'inputs': batch, 'outputs': outputs, 'latency_ms': latency_ms,
                      'error': None})
      if log:
        log(f'request {number}/{len(batches)}: {len(batch)} image(s) in {latency_ms:.1f} ms -> '
            f'{", ".join(outputs)}')
  finally:
    if use_grpc:
      send.close()
  return results


def summarize(results):
  done = [r for r in results if r['error'] is None]
  failed = [r for r in results if r['error'] is not None]
  images = sum(len(r['inputs']) for r in done)
  text = f'{len(done)} request(s), {images} image(s) translated'
  if done:
    latencies = [r['latency_ms'] for r in done]
    text += (f': latency mean {statistics.mean(latencies):.1f} ms, median '
             f'{statistics.median(latencies):.1f} ms, max {max(latencies):.1f} ms')
  if failed:
    text += (f'; {len(failed)} request(s) rejected ('
             f'{sum(len(r["inputs"]) for r in failed)} image(s))')
  return text


def _parse_args(argv):
  parser = argparse.ArgumentParser(
      prog='python -m serving.client',
      description='Translate images through TF Serving (or serving.server) over REST or gRPC. '
                  'Writes PNGs named after the inputs (NAME.png) into --output.')
  parser.add_argument('--server', default=None,
                      help='REST: http://host:port (default http://127.0.0.1:8501); with '
                           '--grpc: host:port (default 127.0.0.1:8500).')
  parser.add_argument('--grpc', action='store_true',
                      help='Use gRPC (PredictionService/Predict) instead of REST.')
  parser.add_argument('--model', default='cyclegan_a2b')
  parser.add_argument('--version', type=int, default=None,
                      help='A model version (default: the newest the server has).')
  parser.add_argument('--format', choices=('row', 'columnar'), default='row',
                      help='REST body: row {"instances": [...]}; columnar {"inputs": {...}}.')
  parser.add_argument('--input', required=True, help='An image file, a folder or a glob.')
  parser.add_argument('--output', required=True, help='Folder for the translated PNGs.')
  parser.add_argument('--batch_size', type=int, default=1, help='Images per request.')
  parser.add_argument('--timeout', type=float, default=60.0, help='Seconds per request.')
  parser.add_argument('--retries', type=int, default=3,
                      help='Retries of a request after a connection error (or a 503).')
  parser.add_argument('--retry_backoff', type=float, default=0.5,
                      help='Seconds before the first retry; doubles each time.')
  args = parser.parse_args(argv)
  if args.server is None:
    args.server = '127.0.0.1:8500' if args.grpc else 'http://127.0.0.1:8501'
  return args


def main(argv=None):
  args = _parse_args(sys.argv[1:] if argv is None else argv)
  try:
    paths = collect_inputs(args.input)
    results = translate_files(args.server, args.model, paths, args.output, args.version,
                              args.format, args.batch_size, args.timeout, args.retries,
                              args.retry_backoff, use_grpc=args.grpc)
  except (ClientError, FileNotFoundError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print(summarize(results))
  return 1 if any(r['error'] for r in results) else 0


if __name__ == '__main__':
  sys.exit(main())
