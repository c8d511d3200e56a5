"""serving/client.py against a live local server, over REST and over gRPC."""

import os

import numpy as np
import pytest
from PIL import Image

import serving_testlib as lib
from serving import client


@pytest.fixture(scope='module')
def live(exported_run, tmp_path_factory):
  server = lib.start_live(exported_run, tmp_path_factory.mktemp('client_config'), grpc=True)
  yield server
  server.stop()


def _folder(tmp_path):
  folder = tmp_path / 'in'
  folder.mkdir()
  sizes = {'a.png': (21, 30), 'b.png': (8, 12), 'c.jpg': (17, 9)}
  for name, (h, w) in sizes.items():
    Image.fromarray(np.full((h, w, 3), 100, np.uint8)).save(folder / name)
  return folder, sizes


@pytest.mark.parametrize('fmt,batch_size,version,use_grpc', [
    ('row', 2, None, False), ('columnar', 3, 1, False), ('row', 2, None, True)])
def test_client_translates_files(live, tmp_path, fmt, batch_size, version, use_grpc):
  folder, sizes = _folder(tmp_path)
  out = tmp_path / 'out'
  lines = []
  server = f'127.0.0.1:{live.grpc_port}' if use_grpc else live.url
  results = client.translate_files(server, 'cyclegan_a2b', client.collect_inputs(str(folder)),
                                   str(out), version=version, fmt=fmt, batch_size=batch_size,
                                   log=lines.append, use_grpc=use_grpc)
  assert sum(len(r['inputs']) for r in results) == 3
  assert all(r['latency_ms'] > 0 for r in results)
  assert len(lines) == len(results) and 'ms' in lines[0]
  for name, (h, w) in sizes.items():
    with Image.open(out / (os.path.splitext(name)[0] + '.png')) as image:
      assert image.format == 'PNG' and image.size == (w, h)


def test_client_command_line_over_rest_and_grpc(live, tmp_path, capsys):
  path = tmp_path / 'x.png'
  path.write_bytes(lib.encoded_image((10, 14, 3)))
  for flags, out in (([f'--server={live.url}'], 'rest'),
                     (['--grpc', f'--server=127.0.0.1:{live.grpc_port}'], 'grpc')):
    code = client.main(flags + ['--model=cyclegan_b2a', f'--input={path}',
                                f'--output={tmp_path / out}'])
    assert code == 0
    captured = capsys.readouterr().out
    assert 'request 1/1: 1 image(s) in' in captured
    assert '1 request(s), 1 image(s) translated: latency mean' in captured
    assert (tmp_path / out / 'x.png').exists()
  # The REST and gRPC answers are the same PNG.
  assert (tmp_path / 'rest' / 'x.png').read_bytes() == (tmp_path / 'grpc' / 'x.png').read_bytes()
  assert client._parse_args(['--grpc', '--input=x', '--output=y']).server == '127.0.0.1:8500'  # pylint: disable=protected-access


def test_client_retries_connection_errors_then_fails_clearly(tmp_path, capsys):
  path = tmp_path / 'x.png'
  path.write_bytes(lib.encoded_image((8, 8, 3)))
  port = lib.free_port()
  for flags in ([f'--server=http://127.0.0.1:{port}'],
                ['--grpc', f'--server=127.0.0.1:{port}', '--timeout=5']):
    code = client.main(flags + [f'--input={path}', f'--output={tmp_path / "out"}',
                                '--retries=2', '--retry_backoff=0.01'])
    captured = capsys.readouterr()
    assert code == 1
    assert 'retry 1/2' in captured.out and 'retry 2/2' in captured.out
    assert 'Cannot reach' in captured.err and 'after 3 attempt(s)' in captured.err


@pytest.mark.parametrize('use_grpc', [False, True])
def test_client_reports_server_errors_and_skips_bad_inputs(live, tmp_path, use_grpc):
  server = f'127.0.0.1:{live.grpc_port}' if use_grpc else live.url
  (tmp_path / 'in').mkdir()
  good = tmp_path / 'in' / 'good.png'
  good.write_bytes(lib.encoded_image((8, 10, 3)))
  with pytest.raises(client.ClientError) as error:
    client.translate_files(server, 'nope', [str(good)], str(tmp_path / 'o'), version=3,
                           retries=0, log=None, use_grpc=use_grpc)
  assert error.value.status == ('NOT_FOUND' if use_grpc else 404)
  assert 'Servable not found for request: Specific(nope, 3)' in str(error.value)
  # A rejected image is reported and skipped; the others go through; the exit code says so.
  (tmp_path / 'in' / 'zbad.png').write_bytes(b'not a png')
  lines = []
  results = client.translate_files(server, 'cyclegan_a2b', client.collect_inputs(
      str(tmp_path / 'in')), str(tmp_path / 'out'), log=lines.append, use_grpc=use_grpc)
  assert [r['error'] is None for r in results] == [True, False]
  assert ('INVALID_ARGUMENT' if use_grpc else 'HTTP 400') in results[1]['error']
  assert 'not an image' in results[1]['error']
  assert 'FAILED' in lines[1] and '1 request(s) rejected' in client.summarize(results)
  assert os.listdir(tmp_path / 'out') == ['good.png']
  flags = ['--grpc'] if use_grpc else []
  assert client.main(flags + [f'--server={server}', f'--input={tmp_path / "in"}',
                              f'--output={tmp_path / "out2"}']) == 1
  with pytest.raises(FileNotFoundError, match='nothing'):
    client.collect_inputs(str(tmp_path / 'nothing*.png'))
