"""`--mode=pretrained`: the reference's published generators by name, downloaded once and converted.

  python main.py --mode=pretrained --list
  python main.py --mode=pretrained --name=horse2zebra --output=models/

fetches BASE_URL/NAME.pth (the URL pattern of the reference's
scripts/download_cyclegan_model.sh; config.pretrained.base_url overrides the base), keeps it in
config.pretrained.cache_dir, converts it (convert.convert_file, role G_A: a published generator
maps the direction it is named after) and writes ``OUTPUT/NAME/``: ``G_A.weights.h5``,
``G_A.json`` and the SavedModel ``cyclegan_a2b/<version>/`` (plus the edge formats that
config.export.formats names), ready for ``--mode=translate --saved_model=OUTPUT/NAME`` and the
server.

Downloads. The file is streamed to ``NAME.pth.part-<pid>`` in the cache and renamed only when
complete: the size must match the server's Content-Length, the first bytes must be a PyTorch
file (a ZIP archive or the legacy pickle), and torch must read it as a state dict; otherwise
DownloadError names the URL and what arrived (size, first bytes, what they look like: an HTML
error page, ...), and nothing is kept or converted. A cached file is used without the network.
Offline, the error names the URL that failed and where to put the file by hand. Long downloads
log progress (bytes, rate, ETA) every config.pretrained.progress_s seconds.
"""

import http.client
import logging
import os
import urllib.error
import urllib.request

from cyclegan_tf import configuration
from cyclegan_tf.deploy import convert
from cyclegan_tf.deploy import edge_export
from cyclegan_tf.data import image_files
from cyclegan_tf import progress as progress_lib
from cyclegan_tf.models import torch_layout

# name -> (what it translates from, to), for --list. The names are convert.PUBLISHED_MODELS.
DIRECTIONS = {
    'apple2orange': ('apple photo', 'orange photo'),
    'orange2apple': ('orange photo', 'apple photo'),
    'summer2winter_yosemite': ('Yosemite in summer', 'Yosemite in winter'),
    'winter2summer_yosemite': ('Yosemite in winter', 'Yosemite in summer'),
    'horse2zebra': ('horse photo', 'zebra photo'),
    'zebra2horse': ('zebra photo', 'horse photo'),
    'monet2photo': ('Monet painting', 'photo'),
    'style_monet': ('photo', 'Monet painting'),
    'style_cezanne': ('photo', 'Cezanne painting'),
    'style_ukiyoe': ('photo', 'Ukiyo-e print'),
    'style_vangogh': ('photo', 'Van Gogh painting'),
    'sat2map': ('aerial photo', 'map'),
    'map2sat': ('map', 'aerial photo'),
    'cityscapes_photo2label': ('street photo (Cityscapes)', 'label map'),
    'cityscapes_label2photo': ('label map (Cityscapes)', 'street photo'),
    'facades_photo2label': ('facade photo', 'label map'),
    'facades_label2photo': ('label map (facades)', 'facade photo'),
    'iphone2dslr_flower': ('iPhone flower photo', 'DSLR photo (shallow depth of field)'),
}
CHUNK_BYTES = 1 << 20
# torch.save's first bytes: a ZIP archive (PyTorch >= 1.6), or the legacy format's pickled
# magic number (protocol 2, a 10-byte long).
TORCH_SIGNATURES = (b'PK\x03\x04', b'\x80\x02\x8a\x0a')


class DownloadError(configuration.DataError):
  """A published model could not be fetched; the message names the URL and what to do."""


def list_models():
  """One line per published generator: 'horse2zebra  horse photo -> zebra photo'."""
  width = max(len(n) for n in convert.PUBLISHED_MODELS)
  return [f'{name:<{width}}  {DIRECTIONS[name][0]} -> {DIRECTIONS[name][1]}'
          for name in convert.PUBLISHED_MODELS]


def model_url(name, base_url):
  return f'{base_url.rstrip("/")}/{name}.pth'


def cache_dir(configured=''):
  """config.pretrained.cache_dir, or $XDG_CACHE_HOME/cyclegan_tf/pretrained (~/.cache/...)."""
  if configured:
    return os.path.abspath(os.path.expanduser(configured))
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'cyclegan_tf', 'pretrained')


def _check_name(name):
  if name not in convert.PUBLISHED_MODELS:
    raise configuration.ConfigError(
        f'{name!r} is not a published model; --mode=pretrained --list shows them: '
        f'{", ".join(convert.PUBLISHED_MODELS)}.')


def _what_arrived(path):
  return image_files.describe_file(path, head_bytes=512)


def _check_download(tmp, url, expected_size):
  """DownloadError unless tmp holds all of a PyTorch state dict."""
  size = os.path.getsize(tmp)
  if expected_size is not None and size != expected_size:
    raise DownloadError(f'The download of {url} is incomplete: {size:,} of {expected_size:,} '
                        f'bytes arrived ({_what_arrived(tmp)}). Run the command again.')
  with open(tmp, 'rb') as f:
    head = f.read(16)
  if not head.startswith(TORCH_SIGNATURES):
    raise DownloadError(f'{url} did not send a PyTorch file: what arrived is '
                        f'{_what_arrived(tmp)}. Check the URL (config.pretrained.base_url) '
                        'or download the file by hand.')
  try:
    convert.load_state_dict(tmp)
  except torch_layout.ConversionError as e:
    if isinstance(e, convert.TorchNotInstalledError):
      raise
    raise DownloadError(f'{url} sent a file PyTorch cannot use as a state dict: {e}') from None


def _offline_error(url, target, reason):
  name = os.path.splitext(os.path.basename(target))[0]
  return DownloadError(
      f'Could not download {url} ({reason}). Without internet, fetch it on another machine '
      f'(the reference\'s scripts/download_cyclegan_model.sh {name} downloads the same file) and '
      f'put it at {target}; --mode=pretrained then converts that file without downloading.')


def download(url, target, timeout_s=60.0, progress_s=10.0):
  """Streams url to target (via target.part-<pid>, renamed when complete and checked).

  Logs '<url>: k/n bytes, r bytes/s, ETA' every progress_s seconds. Raises DownloadError for
  an HTTP error, an unreachable server, an incomplete file or one that is not a state dict;
  nothing is left at target then.
  """
  os.makedirs(os.path.dirname(target), exist_ok=True)
  tmp = f'{target}.part-{os.getpid()}'
  received = 0
  try:
    try:
      with urllib.request.urlopen(url, timeout=timeout_s) as response:
        length = response.headers.get('Content-Length')
        expected = int(length) if length and length.isdigit() else None
        progress = progress_lib.Progress(f'Downloading {url}', expected or 0, unit='bytes',
                                         every=progress_s)
        with open(tmp, 'wb') as f:
          while True:
            chunk = response.read(CHUNK_BYTES)
            if not chunk:
              break
            f.write(chunk)
            received += len(chunk)
            progress.update(len(chunk))
    except urllib.error.HTTPError as e:
      body = e.read(512) if e.fp else b''
      raise DownloadError(
          f'{url} answered HTTP {e.code} {e.reason} ({image_files.describe_bytes(body)}, '
          f'starting {body[:16]!r}). Check the name and config.pretrained.base_url.') from None
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as e:
      if received:
        raise DownloadError(f'The download of {url} broke after {received:,} bytes '
                            f'({getattr(e, "reason", e)}). Run the command again.') from None
      raise _offline_error(url, target, getattr(e, 'reason', e)) from None
    _check_download(tmp, url, expected)
    os.replace(tmp, target)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  logging.info('Downloaded %s to %s (%d bytes).', url, target, os.path.getsize(target))
  return target


def cached_file(name, pretrained_config):
  """The cached NAME.pth, downloaded first when missing; returns its path."""
  _check_name(name)
  target = os.path.join(cache_dir(pretrained_config.cache_dir), f'{name}.pth')
  if os.path.isfile(target):
    logging.info('Using the cached %s.', target)
    return target
  convert.import_torch()  # before a 45 MB download, not after
  return download(model_url(name, pretrained_config.base_url), target,
                  float(pretrained_config.timeout_s), float(pretrained_config.progress_s))


def fetch(name, output, config):
  """Downloads (or reuses) the published generator `name` and converts it into OUTPUT/NAME.

  Writes what convert.convert_file writes (G_A.weights.h5, G_A.json, the SavedModel) plus the
  edge formats of config.export.formats. Returns convert_file's dict with 'pth', 'output_dir',
  'edge' ({format: folder}) and 'direction' ((from, to)).
  """
  pth = cached_file(name, config.pretrained)
  output_dir = os.path.join(os.path.abspath(output), name)
  try:
    result = convert.convert_file(pth, output_dir, config, role='G_A')
  except torch_layout.ConversionError as e:
    if isinstance(e, convert.TorchNotInstalledError):
      raise
    raise torch_layout.ConversionError(f'{e}\n(The cached copy of '
                                       f'{model_url(name, config.pretrained.base_url)}: delete '
                                       f'{pth} to download it again.)') from None
  edge = {}
  formats = edge_export.parse_list(config.export.formats, edge_export.FORMATS, 'export.formats')
  if any(f in formats for f in edge_export.EDGE_FORMATS):
    generator = torch_layout.build_network(result['architecture'], name='G_A')
    generator.load_weights(result['weights_path'])
    version = int(os.path.basename(result['export_path']))
    edge = edge_export.export_edge(generator, output_dir, result['architecture']['model_name'],
                                   config.export, netG=result['architecture']['netG'],
                                   version=version)
  source, target = DIRECTIONS[name]
  print(f'{name} ({source} -> {target}) is ready in {output_dir}:\n'
        f'  python main.py --mode=translate --saved_model={output_dir} --input=IMAGES '
        f'--output=OUT\n' +
        ''.join(f'  {fmt}: {folder}\n' for fmt, folder in edge.items()), end='')
  return {**result, 'pth': pth, 'output_dir': output_dir, 'edge': edge,
          'direction': (source, target)}
