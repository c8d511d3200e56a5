"""A local stand-in for tensorflow_model_server: REST, gRPC and a try-it page.

  python -m serving.server --rest_api_port=8501 --model_name=cyclegan_a2b \\
      --model_base_path=runs/quickstart/export/cyclegan_a2b
  python -m serving.server --model_config_file=serving/models.config \\
      --base_path_map=/models=runs/quickstart/export --port=8500

It loads each model's SavedModel versions with tf.saved_model.load and runs their signatures,
which is what TF Serving runs. Flags follow tensorflow_model_server's names (--port,
--rest_api_port, --rest_api_timeout_in_ms, --rest_api_enable_cors_support, --model_name,
--model_base_path, --model_config_file, --file_system_poll_wait_seconds, --grpc_max_threads);
the local additions are --rest_api_host, --base_path_map, --max_image_pixels, --max_body_bytes,
--max_concurrent_predictions, --rest_api_read_timeout_in_ms and --warm_up. See
serving/README.md for the API and every difference from TF Serving.
"""

import argparse
import logging
import os
import signal
import sys
import threading

from serving import defaults
from serving import model_config


def _flag_bool(text):
  value = str(text).strip().lower()
  if value in ('1', 'true', 'yes', 'on'):
    return True
  if value in ('0', 'false', 'no', 'off'):
    return False
  raise argparse.ArgumentTypeError(f'expected true or false, got {text!r}')


def _parse_args(argv):
  parser = argparse.ArgumentParser(
      prog='python -m serving.server',
      description='Serve exported CycleGAN generators over TF Serving\'s REST and gRPC APIs '
                  '(a local stand-in for tensorflow_model_server), with a try-it page at /.')
  parser.add_argument('--rest_api_port', type=int, default=8501,
                      help='REST port (0: no REST API, as in TF Serving).')
  parser.add_argument('--port', type=int, default=0,
                      help='gRPC port, e.g. 8500 (default 0: no gRPC API).')
  parser.add_argument('--rest_api_host', default='127.0.0.1',
                      help='Address of both APIs (default 127.0.0.1: only this machine can '
                           'connect; 0.0.0.0 exposes the server).')
  parser.add_argument('--model_name', default='default',
                      help='Name of the model given by --model_base_path.')
  parser.add_argument('--model_base_path', default='',
                      help='Folder holding the model\'s numbered version folders (E/<name>).')
  parser.add_argument('--model_config_file', default='',
                      help='A ModelServerConfig file (protobuf text format) for several models.')
  parser.add_argument('--base_path_map', action='append', default=[], metavar='FROM=TO',
                      help='Rewrite base_path prefixes of --model_config_file, e.g. '
                           '/models=runs/quickstart/export (repeatable).')
  parser.add_argument('--max_image_pixels', type=int, default=defaults.MAX_IMAGE_PIXELS,
                      help='Largest image (height x width) a request may carry.')
  parser.add_argument('--max_body_bytes', type=int, default=defaults.MAX_BODY_BYTES,
                      help='Largest request body (after gzip decompression) or gRPC message.')
  parser.add_argument('--max_concurrent_predictions', type=int,
                      default=defaults.MAX_CONCURRENT_PREDICTIONS,
                      help='Model calls that may run at once (others wait).')
  parser.add_argument('--rest_api_timeout_in_ms', type=int, default=defaults.REST_TIMEOUT_MS,
                      help='A REST prediction not done by then (waiting included) gets 504 '
                           '(<= 0: no limit).')
  parser.add_argument('--rest_api_read_timeout_in_ms', type=int,
                      default=defaults.READ_TIMEOUT_MS,
                      help='A REST request body must arrive within this time (408 otherwise).')
  parser.add_argument('--rest_api_enable_cors_support', type=_flag_bool, nargs='?',
                      const=True, default=False,
                      help='Send Access-Control-Allow-* headers and answer OPTIONS preflights.')
  parser.add_argument('--grpc_max_threads', type=int, default=defaults.GRPC_MAX_THREADS,
                      help='Threads serving gRPC calls.')
  parser.add_argument('--file_system_poll_wait_seconds', type=float, default=1.0,
                      help='How often to look for new versions (0: never).')
  parser.add_argument('--warm_up', default=True, action=argparse.BooleanOptionalAction,
                      help='Run each signature once on a tiny input when a version loads.')
  args = parser.parse_args(argv)
  if bool(args.model_base_path) == bool(args.model_config_file):
    parser.error('give exactly one of --model_base_path (with --model_name) or '
                 '--model_config_file.')
  if args.rest_api_port == 0 and args.port == 0:
    parser.error('--rest_api_port=0 and --port=0 leave nothing to serve; give a REST port '
                 '(e.g. 8501) or a gRPC port (e.g. --port=8500).')
  try:
    args.base_path_map = model_config.parse_base_path_map(args.base_path_map)
  except ValueError as e:
    parser.error(str(e))
  return args


def _serve(args):
  """Builds and starts everything; returns (app, [started servers' stop functions], lines)."""
  # pylint: disable=g-import-not-at-top  (TensorFlow loads only once the flags are fine)
  from serving.http_server import make_http_server
  from serving.model_server import ModelServer
  if args.model_config_file:
    models = model_config.read_model_config(args.model_config_file, args.base_path_map)
  else:
    models = [model_config.ModelConfig(args.model_name, args.model_base_path)]
  app = ModelServer(models, args.max_image_pixels, args.max_body_bytes,
                    args.max_concurrent_predictions, args.warm_up, args.rest_api_timeout_in_ms,
                    freeze_gc=True)
  stops, lines = [app.stop], []
  host = args.rest_api_host
  try:
    if args.port:
      from serving.grpc_server import make_grpc_server
      grpc_server, port = make_grpc_server(app, host, args.port, args.grpc_max_threads)
      stops.append(lambda: grpc_server.stop(grace=1))
      lines.append(f'gRPC API at {host}:{port}')
    if args.rest_api_port:
      try:
        httpd = make_http_server(app, host, args.rest_api_port,
                                 args.rest_api_enable_cors_support,
                                 args.rest_api_read_timeout_in_ms)
      except OSError as e:
        raise OSError(f'Cannot listen for REST on {host}:{args.rest_api_port}: {e.strerror or e}'
                      '; pick another --rest_api_port.') from None
      threading.Thread(target=httpd.serve_forever, daemon=True, name='http').start()
      stops.append(lambda: (httpd.shutdown(), httpd.server_close()))
      port = httpd.server_address[1]
      lines.append(f'REST API at http://{host}:{port}/v1/models/<name>; try-it page at '
                   f'http://{host}:{port}/')
  except BaseException:
    for stop in reversed(stops):
      stop()
    raise
  return app, stops, lines


def main(argv=None):
  """Runs until Ctrl-C or SIGTERM; returns the exit code (2 for a bad setup)."""
  args = _parse_args(sys.argv[1:] if argv is None else argv)
  logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s')
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  try:
    app, stops, lines = _serve(args)
  except (OSError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  done = threading.Event()
  signal.signal(signal.SIGTERM, lambda *_: done.set())
  if args.file_system_poll_wait_seconds > 0:
    threading.Thread(target=app.poll_forever, args=(args.file_system_poll_wait_seconds,),
                     daemon=True, name='poll').start()
  from serving import servables  # pylint: disable=g-import-not-at-top
  for model in app.models.values():
    print(f'Serving {model.config.name} versions {sorted(model.servables)} from '
          f'{model.config.base_path}{servables.describe_test_mode(model.servables.values())}')
  for line in lines:
    print(line)
  print('Ctrl-C stops.', flush=True)
  try:
    done.wait()
  except KeyboardInterrupt:
    pass
  finally:
    for stop in reversed(stops):
      stop()
  return 0


if __name__ == '__main__':
  sys.exit(main())
