"""`--mode=pretrained`: the reference's published generators by name, downloaded once and converted.

  python main.py --mode=pretrained --list
  python main.py --mode=pretrained --name=horse2zebra --output=models/
  python main.py --mode=pretrained --name=pix2pix_edges2shoes --output=models/

Two families, one list (23 names). The 18 CycleGAN generators: fetches BASE_URL/NAME.pth (the
URL pattern of the reference's scripts/download_cyclegan_model.sh; config.pretrained.base_url),
converts it as role G_A (a published generator maps the direction it is named after) and
writes ``OUTPUT/NAME/``: ``G_A.weights.h5``, ``G_A.json`` and the SavedModel
``cyclegan_a2b/<version>/``. The 5 pix2pix generators (unet_256, batch norm, dropout) are named
``pix2pix_<upstream name>`` (sat2map, map2sat and facades_label2photo exist in both families:
``sat2map`` is the CycleGAN one, ``pix2pix_sat2map`` the pix2pix one): fetches
PIX2PIX_BASE_URL/<upstream name>.pth (scripts/download_pix2pix_model.sh's URL;
config.pretrained.pix2pix_base_url), caches it as ``pix2pix_<name>.pth``, converts it as role G
and writes ``G.weights.h5``, ``G.json`` and ``pix2pix_a2b/<version>/``, exported in test mode
'train' (models/test_time.py: the reference's test.py without --eval, which made its published
pix2pix results) unless config.model.test_mode is set on the command line. Both are ready for
``--mode=translate --saved_model=OUTPUT/NAME`` and the server (plus the edge formats that
config.export.formats names; eval mode only).

Downloads. The file is streamed to ``NAME.pth.part-<pid>`` in the cache and renamed only when
complete: the size must match the server's Content-Length, the first bytes must be a PyTorch
file (a ZIP archive or the legacy pickle), and torch must read it as a state dict; otherwise
DownloadError names the URL and what arrived (size, first bytes, what they look like: an HTML
error page, ...), and nothing is kept or converted. A cached file is used without the network.
Offline, the error names the URL that failed and where to put the file by hand. Long downloads
log progress (bytes, rate, ETA) every config.pretrained.progress_s seconds.
"""

import logging
import os

from cyclegan_tf import configuration
from cyclegan_tf.data import downloads
from cyclegan_tf.deploy import convert
from cyclegan_tf.deploy import edge_export
from cyclegan_tf.models import torch_layout

# name -> (what it translates from, to), for --list. The names are convert.PUBLISHED_MODELS
# and convert.PIX2PIX_PUBLISHED.
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
    'pix2pix_edges2shoes': ('shoe edge map', 'shoe photo'),
    'pix2pix_sat2map': ('aerial photo', 'map'),
    'pix2pix_map2sat': ('map', 'aerial photo'),
    'pix2pix_facades_label2photo': ('label map (facades)', 'facade photo'),
    'pix2pix_day2night': ('daytime photo', 'night photo'),
}
NAMES = convert.PUBLISHED_MODELS + convert.PIX2PIX_PUBLISHED
# configs/default.py's config.pretrained.pix2pix_base_url (scripts/download_pix2pix_model.sh's).
PIX2PIX_BASE_URL = 'http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch'
# torch.save's first bytes: a ZIP archive (PyTorch >= 1.6), or the legacy format's pickled
# magic number (protocol 2, a 10-byte long).
TORCH_SIGNATURES = (b'PK\x03\x04', b'\x80\x02\x8a\x0a')


DownloadError = downloads.DownloadError  # a published model could not be fetched


def model_of(name):
  """'pix2pix' for a published pix2pix generator's name, else 'cycle_gan'."""
  return 'pix2pix' if name in convert.PIX2PIX_PUBLISHED else 'cycle_gan'


def list_models():
  """One line per published generator, its model and direction:
  'horse2zebra  cycle_gan  horse photo -> zebra photo'."""
  width = max(len(n) for n in NAMES)
  return [f'{name:<{width}}  {model_of(name):<9}  {DIRECTIONS[name][0]} -> {DIRECTIONS[name][1]}'
          for name in NAMES]


def model_url(name, base_url):
  """BASE_URL/NAME.pth; a pix2pix name loses its prefix (pix2pix_sat2map -> sat2map.pth)."""
  if name in convert.PIX2PIX_PUBLISHED:
    name = name[len(convert.PIX2PIX_PREFIX):]
  return f'{base_url.rstrip("/")}/{name}.pth'


def base_url_of(name, pretrained_config):
  """config.pretrained.pix2pix_base_url for a pix2pix name, else config.pretrained.base_url."""
  if model_of(name) == 'pix2pix':
    return pretrained_config.get('pix2pix_base_url', PIX2PIX_BASE_URL)
  return pretrained_config.base_url


def cache_dir(configured=''):
  """config.pretrained.cache_dir, or $XDG_CACHE_HOME/cyclegan_tf/pretrained (~/.cache/...)."""
  return downloads.cache_dir(configured, 'pretrained')


def _check_name(name):
  if name not in NAMES:
    hint = ''
    if convert.PIX2PIX_PREFIX + name in NAMES:
      hint = f' (the pix2pix generator is {convert.PIX2PIX_PREFIX + name!r})'
    raise configuration.ConfigError(
        f'{name!r} is not a published model{hint}; --mode=pretrained --list shows them: '
        f'{", ".join(NAMES)}.')


def _check_download(tmp, url):
  """DownloadError unless tmp holds a PyTorch state dict."""
  with open(tmp, 'rb') as f:
    head = f.read(16)
  if not head.startswith(TORCH_SIGNATURES):
    raise DownloadError(f'{url} did not send a PyTorch file: what arrived is '
                        f'{downloads.what_arrived(tmp)}. Check the URL '
                        '(config.pretrained.base_url) or download the file by hand.')
  try:
    convert.load_state_dict(tmp)
  except torch_layout.ConversionError as e:
    if isinstance(e, convert.TorchNotInstalledError):
      raise
    raise DownloadError(f'{url} sent a file PyTorch cannot use as a state dict: {e}') from None


def _offline_hint(target):
  name = os.path.splitext(os.path.basename(target))[0]
  script = 'download_cyclegan_model.sh'
  if name in convert.PIX2PIX_PUBLISHED:
    script, name = 'download_pix2pix_model.sh', name[len(convert.PIX2PIX_PREFIX):]
  return (f'Without internet, fetch it on another machine (the reference\'s scripts/{script} '
          f'{name} downloads the same file) and put it at {target}; --mode=pretrained then '
          'converts that file without downloading.')


def download(url, target, timeout_s=60.0, progress_s=10.0):
  """Streams url to target (downloads.download: a temporary name, renamed when complete) and
  checks it is a PyTorch state dict. Raises DownloadError for an HTTP error, an unreachable
  server (saying where to put the file by hand), an incomplete file or one that is not a state
  dict; nothing is left at target then."""
  return downloads.download(url, target, check=_check_download,
                            offline_hint=_offline_hint(target),
                            url_field='config.pretrained.base_url', timeout_s=timeout_s,
                            progress_s=progress_s)


def cached_file(name, pretrained_config):
  """The cached NAME.pth, downloaded first when missing; returns its path."""
  _check_name(name)
  target = os.path.join(cache_dir(pretrained_config.cache_dir), f'{name}.pth')
  if os.path.isfile(target):
    logging.info('Using the cached %s.', target)
    return target
  convert.import_torch()  # before a 45 MB download, not after
  return download(model_url(name, base_url_of(name, pretrained_config)), target,
                  float(pretrained_config.timeout_s), float(pretrained_config.progress_s))


def fetch(name, output, config, explicit_fields=None):
  """Downloads (or reuses) the published generator `name` and converts it into OUTPUT/NAME.

  Writes what convert.convert_file writes (G_A.weights.h5, G_A.json and cyclegan_a2b/ for a
  CycleGAN name; G.weights.h5, G.json and pix2pix_a2b/ for a pix2pix one) plus the edge formats
  of config.export.formats. explicit_fields: config.model fields set on the command line; of
  them only test_mode counts (else a pix2pix export runs in 'train' mode). Returns
  convert_file's dict with 'pth', 'output_dir', 'edge' ({format: folder}) and 'direction'
  ((from, to)). Raises ConfigError for an unknown name, or for edge formats with a 'train' mode
  (before downloading), DownloadError and ConversionError as their docs say.
  """
  _check_name(name)
  explicit = {'test_mode'} & set(explicit_fields or ())
  role = 'G' if model_of(name) == 'pix2pix' else 'G_A'
  mode = config.model.get('test_mode', 'eval')
  formats = edge_export.parse_list(config.export.formats, edge_export.FORMATS, 'export.formats')
  edge_export.check_test_mode(formats, mode if explicit or role == 'G_A' else 'train')
  pth = cached_file(name, config.pretrained)
  output_dir = os.path.join(os.path.abspath(output), name)
  try:
    result = convert.convert_file(pth, output_dir, config, role=role, explicit_fields=explicit)
  except torch_layout.ConversionError as e:
    if isinstance(e, convert.TorchNotInstalledError):
      raise
    url = model_url(name, base_url_of(name, config.pretrained))
    raise torch_layout.ConversionError(f'{e}\n(The cached copy of {url}: delete {pth} to '
                                       'download it again.)') from None
  edge = {}
  if any(f in formats for f in edge_export.EDGE_FORMATS):
    generator = torch_layout.build_network(result['architecture'], name=role)
    generator.load_weights(result['weights_path'])
    version = int(os.path.basename(result['export_path']))
    edge = edge_export.export_edge(generator, output_dir, result['architecture']['model_name'],
                                   config.export, netG=result['architecture']['netG'],
                                   version=version)
  source, target = DIRECTIONS[name]
  print(f'{name} ({model_of(name)}: {source} -> {target}, test mode '
        f'{result["architecture"]["test_mode"]}) is ready in {output_dir}:\n'
        f'  python main.py --mode=translate --saved_model={output_dir} --input=IMAGES '
        f'--output=OUT\n' +
        ''.join(f'  {fmt}: {folder}\n' for fmt, folder in edge.items()), end='')
  return {**result, 'pth': pth, 'output_dir': output_dir, 'edge': edge,
          'direction': (source, target)}
