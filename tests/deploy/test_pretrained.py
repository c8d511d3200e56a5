"""--mode=pretrained against a local HTTP server on 127.0.0.1 (tests never reach the internet).

The server serves reference-layout .pth files made here from benchmarks/reference_torch.py's
ResnetGenerator (resnet_9blocks, ngf 4, random weights), in the legacy format with the stale
instance-norm keys of the published (pre-0.4) files, or in today's zip format; its UnetGenerator
as a published pix2pix generator (unet_256, batch norm, dropout, ngf 4); and, on other
paths, the broken answers a download can get: an HTML page, a cut connection, a 404.
"""

import http.server
import io
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

torch = pytest.importorskip('torch', reason='PyTorch is not installed: --mode=pretrained '
                            'converts .pth files with it (pip install -e ".[convert]").')

from conftest import REPO_ROOT  # pylint: disable=g-import-not-at-top,wrong-import-position
from cyclegan_tf import configuration  # pylint: disable=g-import-not-at-top,wrong-import-position
from cyclegan_tf.deploy import convert  # pylint: disable=g-import-not-at-top,wrong-import-position
from cyclegan_tf.deploy import serving_model  # pylint: disable=g-import-not-at-top,wrong-import-position
from cyclegan_tf.deploy import pretrained  # pylint: disable=g-import-not-at-top,wrong-import-position
from cyclegan_tf.data import synthetic  # pylint: disable=g-import-not-at-top,wrong-import-position
from cyclegan_tf.deploy import translate  # pylint: disable=g-import-not-at-top,wrong-import-position
from cyclegan_tf.models import test_time  # pylint: disable=g-import-not-at-top,wrong-import-position
from cyclegan_tf.models import torch_layout  # pylint: disable=g-import-not-at-top,wrong-import-position

sys.path.insert(0, REPO_ROOT)
from benchmarks import reference_torch as ref  # pylint: disable=g-import-not-at-top,wrong-import-position

torch.set_num_threads(1)
HTML = b'<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>'


def _reference_pth(legacy=True, seed=0):
  """(bytes of a published-style .pth, the torch network it holds)."""
  net = ref.randomize(ref.define_G(3, 3, 4, 'resnet_9blocks', 'instance'), seed=seed)
  state = dict(net.state_dict())
  if legacy:  # what pre-0.4 files also hold: dropped by the converter
    for name, module in net.named_modules():
      if isinstance(module, torch.nn.InstanceNorm2d):
        state[f'{name}.running_mean'] = torch.zeros(module.num_features)
        state[f'{name}.running_var'] = torch.ones(module.num_features)
  buffer = io.BytesIO()
  torch.save(state, buffer, _use_new_zipfile_serialization=not legacy)
  return buffer.getvalue(), net


def _pix2pix_pth():
  """(bytes of a published pix2pix-style .pth: unet_256, batch norm, dropout; the torch net)."""
  net = ref.randomize(ref.define_G(3, 3, 4, 'unet_256', 'batch', use_dropout=True), seed=3)
  buffer = io.BytesIO()
  torch.save(net.state_dict(), buffer)
  return buffer.getvalue(), net


class _Handler(http.server.BaseHTTPRequestHandler):
  routes = {}  # path -> (status, content type, body, declared length or None)
  requests = []

  def do_GET(self):  # pylint: disable=invalid-name
    type(self).requests.append(self.path)
    status, content_type, body, declared = self.routes.get(
        self.path, (404, 'text/html', b'<html><body>Not Found</body></html>', None))
    self.send_response(status)
    self.send_header('Content-Type', content_type)
    self.send_header('Content-Length', str(declared or len(body)))
    self.end_headers()
    self.wfile.write(body)
    self.close_connection = True

  def log_message(self, *args):
    pass


@pytest.fixture(scope='module')
def server():
  """A local server: /horse2zebra.pth (legacy), /style_monet.pth (zip), /zebra2horse.pth (an
  HTML page with status 200), /apple2orange.pth (cut after half its declared length)."""
  horse, horse_net = _reference_pth(legacy=True, seed=1)
  monet, _ = _reference_pth(legacy=False, seed=2)
  shoes, shoes_net = _pix2pix_pth()
  _Handler.routes = {
      '/models/horse2zebra.pth': (200, 'application/octet-stream', horse, None),
      '/models/style_monet.pth': (200, 'application/octet-stream', monet, None),
      '/models/zebra2horse.pth': (200, 'text/html', HTML, None),
      '/models/apple2orange.pth': (200, 'application/octet-stream', horse[:len(horse) // 2],
                                   len(horse)),
      '/pix2pix/edges2shoes.pth': (200, 'application/octet-stream', shoes, None),
  }
  httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield type('Server', (), {'url': f'http://127.0.0.1:{httpd.server_port}/models',
                            'pix2pix_url': f'http://127.0.0.1:{httpd.server_port}/pix2pix',
                            'horse': horse, 'horse_net': horse_net, 'shoes': shoes,
                            'shoes_net': shoes_net})
  httpd.shutdown()
  httpd.server_close()


def _closed_port_url():
  """A URL on 127.0.0.1 where nothing listens (a port just released)."""
  probe = http.server.HTTPServer(('127.0.0.1', 0), _Handler)
  port = probe.server_port
  probe.server_close()
  return f'http://127.0.0.1:{port}/models'


def _config(default_config, base_url, cache, pix2pix_base_url=None):
  config = default_config
  config.pretrained.base_url = base_url
  config.pretrained.pix2pix_base_url = pix2pix_base_url or _closed_port_url()
  config.pretrained.cache_dir = str(cache)
  config.pretrained.timeout_s = 20.0
  config.pretrained.progress_s = 0.0
  return config


def _leftovers(folder):
  return [n for n in os.listdir(folder) if '.part' in n] if os.path.isdir(folder) else []


def test_fetch_downloads_converts_and_matches_the_reference(server, tmp_path, default_config,
                                                           caplog, capsys):
  """horse2zebra.pth over HTTP -> cache -> SavedModel; its output matches the torch network's
  (max abs error < 1e-4). A second fetch needs no server: the cached file is used."""
  caplog.set_level('INFO')
  caplog.set_level('INFO', logger='absl')  # absl's logger sits at WARNING once flags are parsed
  config = _config(default_config, server.url, tmp_path / 'cache')
  result = pretrained.fetch('horse2zebra', str(tmp_path / 'models'), config)
  cached = tmp_path / 'cache' / 'horse2zebra.pth'
  assert cached.read_bytes() == server.horse and _leftovers(tmp_path / 'cache') == []
  assert result['direction'] == ('horse photo', 'zebra photo')
  out = tmp_path / 'models' / 'horse2zebra'
  assert result['export_path'] == str(out / 'cyclegan_a2b' / '1')
  assert sorted(os.listdir(out)) == ['G_A.json', 'G_A.weights.h5', 'cyclegan_a2b']
  assert result['architecture']['netG'] == 'resnet_9blocks' and len(result['dropped_keys']) == 46
  assert f'--saved_model={out}' in capsys.readouterr().out
  assert 'horse2zebra.pth: ' in caplog.text and 'bytes/s' in caplog.text  # progress lines

  scene = synthetic.make_split('test', 1, 32)['A'].astype(np.float32) / 127.5 - 1
  ours = serving_model.load_serving_model(str(out / 'cyclegan_a2b'))(scene).numpy()
  assert np.max(np.abs(ours - ref.run(server.horse_net, scene))) < 1e-4

  config.pretrained.base_url = _closed_port_url()
  again = pretrained.fetch('horse2zebra', str(tmp_path / 'models'), config)
  assert again['export_path'] == str(out / 'cyclegan_a2b' / '2')


def test_zip_format_and_edge_formats(server, tmp_path, default_config):
  config = _config(default_config, server.url, tmp_path / 'cache')
  config.export.formats = 'saved_model,onnx'
  config.export.check_images = 1
  result = pretrained.fetch('style_monet', str(tmp_path / 'models'), config)
  assert result['edge'] == {'onnx': str(tmp_path / 'models' / 'style_monet' / 'onnx' /
                                        'cyclegan_a2b' / '1')}
  from cyclegan_tf.deploy import runtimes  # pylint: disable=g-import-not-at-top
  meta = runtimes.read_metadata(result['edge']['onnx'])
  assert meta['files'][0]['check']['max_abs_error'] < 1e-4


@pytest.mark.parametrize('name,expected', [
    ('zebra2horse', ['did not send a PyTorch file', 'an HTML page', f'{len(HTML):,} bytes',
                     "starting b'<!DOCTYPE html><'"]),
    ('apple2orange', ['is incomplete', 'of', 'bytes arrived', 'Run the command again']),
    ('orange2apple', ['answered HTTP 404', 'an HTML page']),
])
def test_bad_downloads_name_the_url_and_keep_nothing(server, tmp_path, default_config, name,
                                                     expected):
  config = _config(default_config, server.url, tmp_path / 'cache')
  with pytest.raises(pretrained.DownloadError) as error:
    pretrained.fetch(name, str(tmp_path / 'models'), config)
  message = str(error.value)
  assert f'{server.url}/{name}.pth' in message
  for text in expected:
    assert text in message
  assert os.listdir(tmp_path / 'cache') == [] and not (tmp_path / 'models').exists()


def test_offline_error_says_where_to_put_the_file(tmp_path, default_config):
  config = _config(default_config, _closed_port_url(), tmp_path / 'cache')
  with pytest.raises(pretrained.DownloadError) as error:
    pretrained.fetch('horse2zebra', str(tmp_path / 'models'), config)
  message = str(error.value)
  assert message.startswith(f'Could not download {config.pretrained.base_url}/horse2zebra.pth')
  assert f'put it at {tmp_path / "cache" / "horse2zebra.pth"}' in message
  assert 'download_cyclegan_model.sh horse2zebra' in message


def test_without_torch_nothing_is_downloaded(server, tmp_path, default_config, monkeypatch):
  def no_torch():
    raise convert.TorchNotInstalledError(convert.INSTALL_HINT)
  monkeypatch.setattr(convert, 'import_torch', no_torch)
  before = len(_Handler.requests)
  with pytest.raises(convert.TorchNotInstalledError, match='pip install'):
    pretrained.fetch('horse2zebra', str(tmp_path / 'models'),
                     _config(default_config, server.url, tmp_path / 'cache'))
  assert len(_Handler.requests) == before


def test_list_names_and_directions(default_config):
  lines = pretrained.list_models()
  assert len(lines) == 23 == len(convert.PUBLISHED_MODELS) + len(convert.PIX2PIX_PUBLISHED)
  assert set(pretrained.DIRECTIONS) == set(pretrained.NAMES) and len(set(pretrained.NAMES)) == 23
  assert any(l.startswith('horse2zebra ') and l.endswith('horse photo -> zebra photo')
             for l in lines)
  assert [l.split()[:2] for l in lines if 'sat2map' in l] == [
      ['sat2map', 'cycle_gan'], ['pix2pix_sat2map', 'pix2pix']]
  assert pretrained.model_url('sat2map', default_config.pretrained.base_url) == (
      'http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/sat2map.pth')
  pix2pix_base = pretrained.base_url_of('pix2pix_sat2map', default_config.pretrained)
  assert pretrained.model_url('pix2pix_sat2map', pix2pix_base) == (
      'http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/sat2map.pth')
  with pytest.raises(configuration.ConfigError, match='horse2zebra'):
    pretrained.cached_file('horse2zebras', default_config.pretrained)
  with pytest.raises(configuration.ConfigError,
                     match="'edges2shoes' is not a published model \\(the pix2pix generator is "
                     "'pix2pix_edges2shoes'\\)"):
    pretrained.cached_file('edges2shoes', default_config.pretrained)


def test_pix2pix_name_downloads_converts_as_g_in_train_mode(server, tmp_path, default_config,
                                                            capsys):
  """pix2pix_edges2shoes: PIX2PIX_BASE/edges2shoes.pth, cached under its prefixed name,
  converted as G (unet_256, batch norm, dropout), exported in test mode 'train'; it translates
  and serves. Without dropout and in eval mode its weights give torch's eval output."""
  config = _config(default_config, _closed_port_url(), tmp_path / 'cache', server.pix2pix_url)
  result = pretrained.fetch('pix2pix_edges2shoes', str(tmp_path / 'models'), config)
  assert (tmp_path / 'cache' / 'pix2pix_edges2shoes.pth').read_bytes() == server.shoes
  out = tmp_path / 'models' / 'pix2pix_edges2shoes'
  assert sorted(os.listdir(out)) == ['G.json', 'G.weights.h5', 'pix2pix_a2b']
  arch = result['architecture']
  assert (result['role'], arch['model'], arch['netG'], arch['norm'], arch['dropout']) == (
      'G', 'pix2pix', 'unet_256', 'batch', True)
  assert arch['test_mode'] == 'train' and result['export_path'] == str(out / 'pix2pix_a2b' / '1')
  assert 'pix2pix: shoe edge map -> shoe photo, test mode train' in capsys.readouterr().out
  served = serving_model.load_serving_model(result['export_path'])
  assert served.test_mode == 'train'
  generator = torch_layout.build_network(arch, name='G')
  generator.load_weights(result['weights_path'])
  scene = synthetic.make_split('test', 1, 256)['A'].astype(np.float32) / 127.5 - 1
  want = test_time.train_mode_copy(generator, seed=0)(scene).numpy()
  assert np.max(np.abs(served(scene).numpy() - want)) < 1e-5
  assert np.max(np.abs(generator(scene, training=False).numpy() -
                       ref.run(server.shoes_net, scene))) < 1e-4
  translator = translate.load_translator(config, saved_model=str(out))  # the folder's one model
  assert 'pix2pix_a2b' in translator.description and 'test mode train' in translator.description


def test_pix2pix_name_with_edge_formats_is_refused_before_downloading(server, tmp_path,
                                                                     default_config):
  config = _config(default_config, server.url, tmp_path / 'cache', server.pix2pix_url)
  config.export.formats = 'saved_model,litert'
  before = len(_Handler.requests)
  with pytest.raises(configuration.ConfigError, match="litert, which run the generator in eval "
                     "mode only; this export's config.model.test_mode is 'train'"):
    pretrained.fetch('pix2pix_day2night', str(tmp_path / 'models'), config)
  assert len(_Handler.requests) == before


def _main(*args):
  return subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'main.py'), *args],
                        capture_output=True, text=True, cwd=REPO_ROOT, check=False, timeout=300)


@pytest.mark.slow
def test_main_pretrained_list_fetch_and_offline_error(server, tmp_path):
  done = _main('--mode=pretrained', '--list')
  assert done.returncode == 0 and len(done.stdout.strip().splitlines()) == 23
  cache = f'--config.pretrained.cache_dir={tmp_path / "cache"}'
  done = _main('--mode=pretrained', '--name=horse2zebra', f'--output={tmp_path / "models"}',
               f'--base_url={server.url}', cache)
  assert done.returncode == 0, done.stderr[-2000:]
  assert os.path.isfile(tmp_path / 'models' / 'horse2zebra' / 'cyclegan_a2b' / '1' /
                        'saved_model.pb')
  done = _main('--mode=pretrained', '--name=pix2pix_edges2shoes', f'--output={tmp_path / "models"}',
               f'--base_url={server.pix2pix_url}', cache)
  assert done.returncode == 0, done.stderr[-2000:]
  with open(tmp_path / 'models' / 'pix2pix_edges2shoes' / 'pix2pix_a2b' / '1' / 'assets.extra' /
            'cyclegan_export.json') as f:
    assert json.load(f)['test_mode'] == 'train'
  done = _main('--mode=pretrained', '--name=summer2winter_yosemite',
               f'--output={tmp_path / "models"}', f'--base_url={_closed_port_url()}', cache)
  assert done.returncode == 1 and 'Traceback' not in done.stderr
  assert 'Error: Could not download' in done.stderr and 'summer2winter_yosemite.pth' in done.stderr
