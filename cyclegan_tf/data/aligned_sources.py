"""Paired data (the reference's aligned and colorization dataset modes) and the source chooser.

* aligned (pix2pix): ROOT/train/*.jpg and ROOT/test/*.jpg (ROOT/val/ when there is no test/),
  each file holding A and B side by side: A the left int(w / 2) columns, B the rest (the
  reference's aligned_dataset.py). Split 'trainA' reads the left halves, 'trainB' the right
  halves of the same files, so item i of A and item i of B are a pair.
* colorization: ROOT/train and ROOT/test hold any RGB photos; A and B are both the photo (the
  input pipeline turns A into its L channel and B into its ab channels after augmentation).
* pix2pix: one of the reference's pix2pix datasets by name (config.data.pix2pix_name),
  downloaded once as NAME.tar.gz from config.data.pix2pix_base_url (the reference's
  datasets/download_pix2pix_dataset.sh), extracted into config.data.download_dir/NAME and read
  as aligned.

make_source() picks the source for any config.data.dataset and dataset_mode.
"""

import os
import shutil
import tarfile

from absl import logging
import numpy as np
import tensorflow as tf

from cyclegan_tf import configuration
from cyclegan_tf.data import data_sources
from cyclegan_tf.data import downloads
from cyclegan_tf.data import image_files

DataError = configuration.DataError
DATASET_MODES = ('unaligned', 'aligned', 'colorization')
# The reference's pix2pix datasets (datasets/download_pix2pix_dataset.sh); cityscapes is not
# distributed.
PIX2PIX_DATASETS = ('facades', 'maps', 'edges2shoes', 'edges2handbags', 'night2day')
GZIP_MAGIC = b'\x1f\x8b'


def left_half(image):
  """The A part of an aligned A|B image [H, W, C]: columns [0, int(W / 2))."""
  return image[:, :tf.shape(image)[1] // 2]


def right_half(image):
  """The B part of an aligned A|B image [H, W, C]: columns [int(W / 2), W)."""
  return image[:, tf.shape(image)[1] // 2:]


class PairedFolderSource:
  """ROOT/train and ROOT/test (or val) of aligned A|B files or colorization photos."""

  def __init__(self, config, root=None):
    self.mode = config.data.dataset_mode
    self.root = root or config.data.root
    self.max_size = config.data.max_dataset_size
    what = ('images holding A and B side by side' if self.mode == 'aligned'
            else 'RGB photos')
    if not self.root or not os.path.isdir(self.root):
      raise DataError(f'config.data.root={self.root!r} is not a directory; with dataset_mode='
                      f'{self.mode!r} it must hold the folders train and test of {what} (the '
                      'reference\'s layout).')
    self.listing = {}
    for phase in ('train', 'test'):
      folder = self._folder(phase)
      listing = image_files.list_image_files(folder)
      if listing.skipped:
        logging.warning('%s', image_files.summarize_skipped(listing.skipped, folder))
      if not listing.paths:
        raise DataError(f'Folder {folder} holds no image files (expected {what}: '
                        f'{", ".join(image_files.IMAGE_EXTENSIONS)}).')
      paths = listing.paths[:self.max_size] if self.max_size else listing.paths
      self.listing[phase] = paths

  def _folder(self, phase):
    folder = os.path.join(self.root, phase)
    if phase == 'test' and not os.path.isdir(folder) and os.path.isdir(
        os.path.join(self.root, 'val')):
      logging.info('%s has no test/ folder: testing on val/.', self.root)
      folder = os.path.join(self.root, 'val')
    if not os.path.isdir(folder):
      found = sorted(e for e in os.listdir(self.root) if not e.startswith('.'))[:6]
      hint = (' (it holds trainA/testA: that is the unaligned CycleGAN layout; use '
              '--config.data.dataset_mode=unaligned)' if 'trainA' in found else '')
      raise DataError(f'Missing folder {folder}: with dataset_mode={self.mode!r} '
                      f'config.data.root must hold train/ and test/ (or val/){hint}; it holds: '
                      f'{", ".join(found) or "nothing"}.')
    return folder

  def split(self, name, channels, num_parallel_calls):
    """'trainA' / 'trainB' / 'testA' / 'testB': the halves (aligned) or the photos."""
    phase, domain = name[:-1], name[-1]
    data_sources.check_domain(domain)
    paths = self.listing[phase]
    region = None
    if self.mode == 'aligned':
      region = left_half if domain == 'A' else right_half
    split = data_sources.Split(f'{self._folder(phase)} ({domain})', paths,
                               np.zeros([len(paths), 2]), channels, paths=paths, region=region)
    result, bad = data_sources.scan(split, num_parallel_calls)
    if self.mode == 'aligned':
      narrow = [n for n, (h, w) in zip(result.names, result.sizes) if w < 1]
      if narrow:
        raise DataError(f'{narrow[0]} is too narrow to hold A and B side by side '
                        f'({len(narrow)} such files).')
    return result, bad

  def test_names(self, name):
    folder = self._folder(name[:-1])
    return [os.path.relpath(p, folder) for p in self.listing[name[:-1]]]


def _check_archive(path, url):
  with open(path, 'rb') as f:
    head = f.read(4)
  if not head.startswith(GZIP_MAGIC):
    raise downloads.DownloadError(
        f'{url} did not send a .tar.gz archive: what arrived is {downloads.what_arrived(path)}. '
        'Check the name and config.data.pix2pix_base_url.')
  try:
    with tarfile.open(path, 'r:gz') as archive:
      archive.getmembers()
  except (tarfile.TarError, EOFError, OSError) as e:
    raise downloads.DownloadError(f'{url} sent a broken .tar.gz archive ({e}). Run again.') from None


def pix2pix_dataset_root(data_config):
  """The extracted folder of config.data.pix2pix_name, downloaded and extracted when missing.

  Raises DataError for an unknown name, DownloadError when the archive cannot be fetched (with
  where to put it by hand) or holds no NAME/train folder.
  """
  name = data_config.pix2pix_name
  if name not in PIX2PIX_DATASETS:
    raise DataError(f'config.data.pix2pix_name={name!r} is not one of the reference\'s pix2pix '
                    f'datasets: {", ".join(PIX2PIX_DATASETS)}.')
  folder = downloads.cache_dir(data_config.download_dir, 'datasets')
  root = os.path.join(folder, name)
  if os.path.isdir(os.path.join(root, 'train')):
    return root
  archive = os.path.join(folder, f'{name}.tar.gz')
  url = f'{data_config.pix2pix_base_url.rstrip("/")}/{name}.tar.gz'
  if not os.path.isfile(archive):
    downloads.download(
        url, archive, check=_check_archive, url_field='config.data.pix2pix_base_url',
        offline_hint=(f'Without internet, fetch it on another machine (the reference\'s '
                      f'datasets/download_pix2pix_dataset.sh {name} downloads the same file) and '
                      f'put it at {archive}, or extract it and train with '
                      '--config.data.dataset=folder --config.data.root=PATH.'))
  staging = os.path.join(folder, f'.{name}.extract-{os.getpid()}')
  shutil.rmtree(staging, ignore_errors=True)
  try:
    with tarfile.open(archive, 'r:gz') as tar:
      tar.extractall(staging, filter='data')  # 'data': no paths outside staging, no devices
    if not os.path.isdir(os.path.join(staging, name, 'train')):
      raise downloads.DownloadError(
          f'{archive} holds no {name}/train folder (it holds '
          f'{", ".join(sorted(os.listdir(staging))[:6]) or "nothing"}); delete it to download '
          'it again.')
    shutil.rmtree(root, ignore_errors=True)  # a half-extracted leftover without train/
    os.replace(os.path.join(staging, name), root)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  logging.info('Extracted %s into %s.', archive, root)
  return root


def make_source(config):
  """The data source of config.data.dataset in config.data.dataset_mode.

  Raises DataError for missing data and for a dataset that has no such mode.
  """
  data = config.data
  mode = data.dataset_mode
  if mode not in DATASET_MODES:
    raise DataError(f'config.data.dataset_mode={mode!r} is not valid; allowed: '
                    f'{", ".join(DATASET_MODES)}.')
  if data.dataset == 'synthetic_seasons':
    return data_sources.SyntheticSource(config)
  if data.dataset == 'pix2pix':
    if mode != 'aligned':
      raise DataError(f'config.data.dataset="pix2pix" is aligned data; set '
                      f'config.data.dataset_mode=aligned (not {mode!r}).')
    return PairedFolderSource(config, root=pix2pix_dataset_root(data))
  if mode == 'unaligned':
    return data_sources.make_source(config)
  if data.dataset == 'folder':
    return PairedFolderSource(config)
  raise DataError(f'config.data.dataset={data.dataset!r} has no {mode} form; use folder, '
                  'pix2pix or synthetic_seasons.')
