"""Load test: concurrent clients on 127.0.0.1 against the local server (or TF Serving).

  python -m serving.load_test --export_dir=runs/quickstart/export      # starts its own server
  python -m serving.load_test --rest=127.0.0.1:8501 --grpc=127.0.0.1:8500 --server_pid=PID

Sends --requests requests in all (default 2,000), split evenly over the modes, from --clients
concurrent clients, images of --size x --size pixels:

  rest_json   POST :predict, serving_default, {"instances": [H x W x 3 floats in [-1, 1]]}
  rest_b64    POST :predict, translate_image, {"instances": [{"b64": "<PNG>"}]}
  grpc        PredictionService/Predict, serving_default, a float32 TensorProto
  grpc_bytes  PredictionService/Predict, translate_image, a DT_STRING TensorProto (PNG)

and prints, per mode, requests, errors, requests/s, p50 and p99 latency, then the server's
resident memory (RSS, via psutil) when it was ready, after a warm-up of a few requests per mode,
and after all requests. Each mode stops at its share of the requests or after its share of the
time left of --max_seconds (an even share of what the modes before it left), whichever comes
first. --max_rss_growth_mib makes the exit code 1 when the RSS
grew more than that from the warm-up to the end. REST clients keep one connection each (HTTP
keep-alive); gRPC clients share one channel.
"""

import argparse
import base64
import gc
import http.client
import io
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

MODES = ('rest_json', 'rest_b64', 'grpc', 'grpc_bytes')
DEFAULT_MODES = ('rest_b64', 'grpc', 'rest_json')  # the slow one last: it gets the time left


def _percentile(values, q):
  return float(np.percentile(values, q)) if values else float('nan')


class _Payloads:
  """One test image in each mode's encoding (built once, sent many times)."""

  def __init__(self, size, seed=0):
    from PIL import Image  # pylint: disable=g-import-not-at-top
    rng = np.random.RandomState(seed)
    pixels = rng.randint(0, 256, (size, size, 3), dtype=np.uint8)
    self.size = size
    self.floats = (pixels.astype(np.float32) / 127.5 - 1.0)[np.newaxis]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format='PNG')
    self.png = buffer.getvalue()
    self.rest_json = json.dumps({'instances': self.floats.tolist()}).encode()
    self.rest_b64 = json.dumps({'signature_name': 'translate_image', 'instances': [
        {'b64': base64.b64encode(self.png).decode('ascii')}]}).encode()


class _RestClient:
  """One keep-alive connection; send(body) -> None or an error string."""

  def __init__(self, address, model, timeout):
    host, port = address.rsplit(':', 1)
    self.host, self.port, self.timeout = host, int(port), timeout
    self.path = f'/v1/models/{model}:predict'
    self.connection = None

  def send(self, body, check):
    for attempt in range(2):  # one reconnect if the server closed an idle connection
      if self.connection is None:
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
      try:
        self.connection.request('POST', self.path, body=body,
                                headers={'Content-Type': 'application/json'})
        reply = self.connection.getresponse()
        data = reply.read()
        break
      except (ConnectionError, http.client.HTTPException, OSError) as e:
        self.connection.close()
        self.connection = None
        if attempt:
          return f'{type(e).__name__}: {e}'
    if reply.status != 200:
      return f'HTTP {reply.status}: {data[:200]!r}'
    return check(json.loads(data))


class _GrpcClient:
  """Calls over a shared channel; send(request) -> None or an error string."""

  def __init__(self, stub, timeout):
    self.stub, self.timeout = stub, timeout

  def send(self, request, check):
    import grpc  # pylint: disable=g-import-not-at-top
    try:
      response = self.stub.Predict(request, timeout=self.timeout)
    except grpc.RpcError as e:
      return f'gRPC {e.code().name}: {e.details()}'
    return check(response)


def _checks(payloads):
  """{mode: check(response) -> None or error}: every answer must be the right image size."""
  size = payloads.size

  def rest_json(reply):
    images = reply.get('predictions')
    shape = (len(images), len(images[0]), len(images[0][0]), len(images[0][0][0]))
    return None if shape == (1, size, size, 3) else f'bad shape {shape}'

  def rest_b64(reply):
    from PIL import Image  # pylint: disable=g-import-not-at-top
    png = base64.b64decode(reply['predictions'][0]['b64'])
    with Image.open(io.BytesIO(png)) as image:
      return None if image.size == (size, size) else f'bad size {image.size}'

  def grpc_float(response):
    dims = [d.size for d in response.outputs['translated'].tensor_shape.dim]
    return None if dims == [1, size, size, 3] else f'bad shape {dims}'

  def grpc_bytes(response):
    return None if len(response.outputs['png_bytes'].string_val) == 1 else 'no PNG'

  return {'rest_json': rest_json, 'rest_b64': rest_b64, 'grpc': grpc_float,
          'grpc_bytes': grpc_bytes}


def _grpc_requests(model, payloads):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top
  floats = predict_pb2.PredictRequest()
  floats.model_spec.name = model
  floats.inputs['images'].CopyFrom(tf.make_tensor_proto(payloads.floats))
  encoded = predict_pb2.PredictRequest()
  encoded.model_spec.name = model
  encoded.model_spec.signature_name = 'translate_image'
  encoded.inputs['image_bytes'].CopyFrom(tf.make_tensor_proto([payloads.png], dtype=tf.string))
  return floats, encoded


def run_mode(make_client, body, check, count, clients, max_seconds):
  """Sends `count` requests from `clients` threads; returns the mode's statistics."""
  latencies, errors, lock = [], [], threading.Lock()
  remaining = [count]
  deadline = time.monotonic() + max_seconds

  def worker():
    client = make_client()
    while time.monotonic() < deadline:
      with lock:
        if remaining[0] <= 0:
          return
        remaining[0] -= 1
      start = time.perf_counter()
      try:
        error = client.send(body, check)
      except Exception as e:  # pylint: disable=broad-except
        error = f'{type(e).__name__}: {e}'
      elapsed = (time.perf_counter() - start) * 1000
      with lock:
        if error:
          errors.append(error)
        else:
          latencies.append(elapsed)

  start = time.monotonic()
  threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  wall = time.monotonic() - start
  done = len(latencies) + len(errors)
  return {'requests': done, 'errors': len(errors), 'error_kinds': sorted(set(errors))[:5],
          'wall_s': wall, 'requests_per_s': done / wall if wall else 0.0,
          'p50_ms': _percentile(latencies, 50), 'p99_ms': _percentile(latencies, 99),
          'mean_ms': statistics.mean(latencies) if latencies else float('nan'),
          'stopped_by_time': done < count}


def _rss_mib(pid):
  if not pid:
    return None
  import psutil  # pylint: disable=g-import-not-at-top
  return psutil.Process(pid).memory_info().rss / 2**20


def _free_port():
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def launch_server(flags, timeout=300):
  """Starts `python -m serving.server *flags` and waits until it serves.

  Returns (process, lines): lines keeps receiving the server's output. Raises RuntimeError with
  the server's last output when it does not come up within `timeout` seconds.
  """
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2',
             PYTHONPATH=os.pathsep.join([repo, os.environ.get('PYTHONPATH', '')]))
  process = subprocess.Popen([sys.executable, '-m', 'serving.server', *flags], cwd=repo,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
  lines = []
  ready = threading.Event()

  def read():
    for line in process.stdout:
      lines.append(line)
      if 'Ctrl-C stops' in line:
        ready.set()

  threading.Thread(target=read, daemon=True).start()
  if not ready.wait(timeout):
    process.kill()
    raise RuntimeError('The server did not start:\n' + ''.join(lines[-40:]))
  return process, lines


def start_server(export_dir, model, extra_flags=(), timeout=300):
  """Starts `python -m serving.server` for export_dir/model on free ports.

  Returns (process, rest address, grpc address). Raises RuntimeError with the server's output
  when it does not come up within `timeout` seconds.
  """
  rest, grpc_port = _free_port(), _free_port()
  process, _ = launch_server(
      [f'--model_name={model}', f'--model_base_path={os.path.join(export_dir, model)}',
       f'--rest_api_port={rest}', f'--port={grpc_port}', '--file_system_poll_wait_seconds=0',
       *extra_flags], timeout)
  return process, f'127.0.0.1:{rest}', f'127.0.0.1:{grpc_port}'


def run(rest, grpc_address, model, modes, requests, clients, size, max_seconds, server_pid=None,
        timeout=120.0, log=print, freeze_gc=True):
  """Runs the modes one after the other; returns {'modes': {mode: stats}, 'rss_mib': {...}}.

  freeze_gc: gc.freeze() this process before sending (off when called from a larger program).
  """
  payloads = _Payloads(size)
  checks = _checks(payloads)
  results = {'modes': {}, 'rss_mib': {'ready': _rss_mib(server_pid)}, 'size': size,
             'clients': clients}
  stub = None
  if any(m.startswith('grpc') for m in modes):
    import grpc  # pylint: disable=g-import-not-at-top
    from tensorflow_serving.apis import prediction_service_pb2_grpc  # pylint: disable=g-import-not-at-top
    channel = grpc.insecure_channel(grpc_address, options=[
        ('grpc.max_receive_message_length', -1), ('grpc.max_send_message_length', -1)])
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    grpc_float, grpc_encoded = _grpc_requests(model, payloads)
  setups = {
      'rest_json': (lambda: _RestClient(rest, model, timeout), payloads.rest_json),
      'rest_b64': (lambda: _RestClient(rest, model, timeout), payloads.rest_b64),
      'grpc': (lambda: _GrpcClient(stub, timeout), grpc_float if stub else None),
      'grpc_bytes': (lambda: _GrpcClient(stub, timeout), grpc_encoded if stub else None),
  }
  # The clients parse large JSON replies in this process, which also holds TensorFlow (for the
  # gRPC protos): freezing what exists keeps the cyclic GC from walking all of it each time.
  if freeze_gc:
    gc.collect()
    gc.freeze()
  for mode in modes:  # warm-up, not measured
    make_client, body = setups[mode]
    run_mode(make_client, body, checks[mode], clients, clients, max_seconds)
  results['rss_mib']['warm'] = _rss_mib(server_pid)
  share = [requests // len(modes) + (i < requests % len(modes)) for i in range(len(modes))]
  end = time.monotonic() + max_seconds
  for i, (mode, count) in enumerate(zip(modes, share)):
    make_client, body = setups[mode]
    # Each mode may use an even share of the time left, so fast modes leave theirs to the rest.
    budget = max(0.0, end - time.monotonic()) / (len(modes) - i)
    stats = run_mode(make_client, body, checks[mode], count, clients, budget)
    results['modes'][mode] = stats
    results['rss_mib'][f'after_{mode}'] = _rss_mib(server_pid)
    if log:
      log(f'{mode}: {stats["requests"]} requests, {stats["errors"]} errors, '
          f'{stats["requests_per_s"]:.1f}/s, p50 {stats["p50_ms"]:.0f} ms, '
          f'p99 {stats["p99_ms"]:.0f} ms' + (f'; errors: {stats["error_kinds"]}'
                                              if stats['errors'] else ''))
  results['rss_mib']['end'] = _rss_mib(server_pid)
  return results


def table(results):
  """The results as a Markdown table plus RSS lines."""
  lines = [f'{results["clients"]} concurrent clients, {results["size"]} x {results["size"]} px '
           'images, 127.0.0.1', '',
           '| mode | requests | errors | requests/s | p50 ms | p99 ms |',
           '| --- | ---: | ---: | ---: | ---: | ---: |']
  for mode, s in results['modes'].items():
    lines.append(f'| {mode} | {s["requests"]} | {s["errors"]} | {s["requests_per_s"]:.1f} | '
                 f'{s["p50_ms"]:.0f} | {s["p99_ms"]:.0f} |')
  rss = results['rss_mib']
  if rss.get('end') is not None:
    total = sum(s['requests'] for s in results['modes'].values())
    lines += ['', f'server RSS: {rss["ready"]:.0f} MiB ready, {rss["warm"]:.0f} MiB after the '
                  f'warm-up, {rss["end"]:.0f} MiB after {total} requests '
                  f'({rss["end"] - rss["warm"]:+.0f} MiB)']
  return '\n'.join(lines)


def _parse_args(argv):
  parser = argparse.ArgumentParser(prog='python -m serving.load_test', description=__doc__.split(
      '\n\n')[0])
  parser.add_argument('--export_dir', help='Start a local server for EXPORT_DIR/--model.')
  parser.add_argument('--rest', help='host:port of a running server\'s REST API.')
  parser.add_argument('--grpc', help='host:port of a running server\'s gRPC API.')
  parser.add_argument('--server_pid', type=int, help='Its process id, for the RSS figures.')
  parser.add_argument('--model', default='cyclegan_a2b')
  parser.add_argument('--modes', default=','.join(DEFAULT_MODES),
                      help=f'Comma-separated, from {", ".join(MODES)}.')
  parser.add_argument('--requests', type=int, default=2000, help='Requests in all modes.')
  parser.add_argument('--clients', type=int, default=4, help='Concurrent clients.')
  parser.add_argument('--size', type=int, default=256, help='Image height and width.')
  parser.add_argument('--max_seconds', type=float, default=540.0,
                      help='Time budget of all modes together.')
  parser.add_argument('--max_rss_growth_mib', type=float, default=None,
                      help='Exit 1 when the RSS grows more than this after the warm-up.')
  parser.add_argument('--json', help='Also write the results to this file.')
  parser.add_argument('--server_flags', default='',
                      help='Extra flags of a server started with --export_dir.')
  args = parser.parse_args(argv)
  args.modes = [m.strip() for m in args.modes.split(',') if m.strip()]
  unknown = sorted(set(args.modes) - set(MODES))
  if unknown:
    parser.error(f'unknown --modes {unknown}; choose from {", ".join(MODES)}.')
  if bool(args.export_dir) == bool(args.rest or args.grpc):
    parser.error('give --export_dir (a server is started) or --rest / --grpc of a running one.')
  if args.rest is None and any(m.startswith('rest') for m in args.modes) and not args.export_dir:
    parser.error('the rest modes need --rest.')
  if args.grpc is None and any(m.startswith('grpc') for m in args.modes) and not args.export_dir:
    parser.error('the grpc modes need --grpc.')
  return args


def main(argv=None):
  args = _parse_args(sys.argv[1:] if argv is None else argv)
  process = None
  if args.export_dir:
    process, args.rest, args.grpc = start_server(args.export_dir, args.model,
                                                 args.server_flags.split())
    args.server_pid = process.pid
  try:
    results = run(args.rest, args.grpc, args.model, args.modes, args.requests, args.clients,
                  args.size, args.max_seconds, args.server_pid)
  finally:
    if process:
      process.terminate()
      process.wait(30)
  print(table(results))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=2)
  rss = results['rss_mib']
  if args.max_rss_growth_mib is not None and rss['end'] is not None:
    if rss['end'] - rss['warm'] > args.max_rss_growth_mib:
      print(f'RSS grew by {rss["end"] - rss["warm"]:.0f} MiB, over the bound of '
            f'{args.max_rss_growth_mib} MiB.', file=sys.stderr)
      return 1
  errors = sum(s['errors'] for s in results['modes'].values())
  return 1 if errors else 0


if __name__ == '__main__':
  sys.exit(main())
