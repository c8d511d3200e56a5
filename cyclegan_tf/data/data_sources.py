"""Where images come from: folder / tfds / synthetic splits with random access by index.

One split is one (split, domain) of a dataset, e.g. trainA, with names, original sizes and a
tf function index -> float [0, 1] image. Sources:

* folder: root/{trainA,trainB,testA,testB} (the reference's layout), listed recursively by
  image_files.list_image_files (hidden folders such as .ipynb_checkpoints/ are not walked;
  every file left out is named in one log line with the reason), sorted, capped at
  max_dataset_size; read from disk by index. JPEG, PNG, BMP, GIF, WebP, TIFF and PPM files,
  turned upright by their EXIF orientation (images.decode_image).
* tfds: the real `cycle_gan` builder (download_and_prepare when not prepared yet, which downloads
  or, offline, takes <data_dir>/downloads/manual/<name>.zip); each split is read once, in its
  stored order, into memory as the ENCODED image bytes (SkipDecoding: about the zip's size, e.g.
  ~110 MB for horse2zebra) and decoded by index like files. A manual folder that holds the zip
  under another name ("horse2zebra (1).zip") or extracted is reported before any download, and
  an unreachable download host fails in seconds with the manual-download instructions.
* synthetic_seasons: synthetic.make_split rendered once into uint8 arrays (at load_size, or
  crop_size for preprocess none); the test split carries the paired truth (B_of_A).

In-memory arrays and bytes are captured by the tf.data map functions; fine for datasets up to a
few hundred MB (graph serialisation of a dataset, e.g. multi-worker auto-sharding, copies them;
tensors over 2 GB cannot be serialised at all).

Corrupt files. scan() decodes every image of a split once by a parallel tf.data map over
indices (returning the index and the decoded size) wrapped in `ignore_errors()`; indices missing
from the result are the bad files: each is decoded once more on its own for the decoder's
reason (e.g. a float TIFF holding NaN pixels) and logged by name with that reason and what it
holds (a web page, a truncated file...), with a count at the end, and the split keeps only the
good ones, so no epoch can crash mid-way. The sizes found are used to check crops and batching
at start-up. Every image is decoded once per start, so a folder of 100k images costs minutes here.
"""

import os
import shlex
import socket
import time
import urllib.parse

from absl import logging
import numpy as np
import tensorflow as tf

from cyclegan_tf import configuration
from cyclegan_tf.data import image_files
from cyclegan_tf.data import images
from cyclegan_tf.data import preprocessing
from cyclegan_tf.data import synthetic

DataError = configuration.DataError
DOMAINS = ('A', 'B')
SPLITS = ('trainA', 'trainB', 'testA', 'testB')
_NETWORK_CHECK_SECONDS = 5


def _decode01(contents, channels):
  """Encoded bytes -> float32 [H, W, channels] in [0, 1], upright (any readable format)."""
  return (images.decode_image(contents, channels, pillow_fallback=True) + 1.0) * 0.5


class Split:
  """One split of one domain: names, original sizes and a tf function index -> float [0, 1]."""

  def __init__(self, label, names, sizes, channels, *, paths=None, encoded=None, arrays=None,
               region=None):
    self.label = label  # e.g. 'trainB' or '/data/x/trainB': for messages
    self.names = tuple(names)
    self.sizes = np.asarray(sizes, np.int64).reshape(-1, 2)  # original (h, w) per item
    self.channels = channels
    # region(image) -> the part of each decoded image this split holds (e.g. the left half of
    # an aligned A|B file); None: all of it.
    self._region = region
    self._paths = paths
    self._encoded = encoded
    self._arrays = arrays
    self._cache = None  # (flat uint8, offsets, shapes) once built
    self._tensors = None

  def __len__(self):
    return len(self.names)

  def _source(self):
    if self._tensors is None:
      with tf.init_scope():  # eager constants, captured by every dataset function that uses them
        self._tensors = self._make_source()
    return self._tensors

  def _make_source(self):
    if self._paths is not None:
      return tf.constant(list(self._paths), tf.string)
    if self._encoded is not None:
      return tf.constant(list(self._encoded), tf.string)
    return tf.constant(self._arrays)

  def raw(self, index):
    """index (int64 scalar tensor) -> float32 [H, W, channels] in [0, 1], original size."""
    image = self._decoded(index)
    return image if self._region is None else self._region(image)

  def _decoded(self, index):
    source = self._source()
    if self._paths is not None:
      return _decode01(tf.io.read_file(tf.gather(source, index)), self.channels)
    if self._encoded is not None:
      return _decode01(tf.gather(source, index), self.channels)
    image = tf.cast(tf.gather(source, index), tf.float32) / 255.0
    if self.channels == 1:
      image = tf.image.rgb_to_grayscale(image)
    return image

  def resized(self, index, sizes):
    """index -> uint8 image resized to sizes[index] (from the cache when built)."""
    if self._cache is not None:
      flat, offsets, shapes = self._cache
      start = tf.gather(offsets, index)
      shape = tf.gather(shapes, index)
      return tf.reshape(flat[start:start + tf.reduce_prod(shape)], shape)
    return preprocessing.resize_like_pil(self.raw(index), tf.gather(sizes, index))

  def build_cache(self, sizes, num_parallel_calls):
    """Decodes and resizes every item once and keeps the uint8 results in memory."""
    sizes_t = tf.constant(sizes, tf.int32)
    ds = tf.data.Dataset.range(len(self)).map(
        lambda i: tf.reshape(preprocessing.resize_like_pil(self.raw(i), tf.gather(sizes_t, i)), [-1]),
        num_parallel_calls=num_parallel_calls, deterministic=True)
    parts = list(ds.as_numpy_iterator())
    lengths = np.array([len(p) for p in parts], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    shapes = np.concatenate([np.asarray(sizes, np.int64), np.full((len(self), 1), self.channels)],
                            axis=1)
    self._cache = (tf.constant(np.concatenate(parts) if parts else np.zeros([0], np.uint8)),
                   tf.constant(offsets), tf.constant(shapes))

  def subset(self, keep):
    """A split holding only the items `keep` (indices), e.g. those that decode."""
    keep = [int(i) for i in keep]
    if keep == list(range(len(self))):
      return self
    pick = lambda seq: None if seq is None else [seq[i] for i in keep]
    arrays = None if self._arrays is None else self._arrays[keep]
    return Split(self.label, pick(self.names), self.sizes[keep], self.channels,
                  paths=pick(self._paths), encoded=pick(self._encoded), arrays=arrays,
                  region=self._region)


def scan(split, num_parallel_calls):
  """Decodes every item once; returns (the split without the items that fail, their names).

  Each bad item is logged by name with the decoder's reason (for files, also what the file
  holds), then a count. Raises DataError when no item decodes.
  """
  start = time.perf_counter()
  sizes = [None] * len(split)
  ds = tf.data.Dataset.range(len(split)).map(
      lambda i: (i, tf.shape(split.raw(i))[:2]),
      num_parallel_calls=num_parallel_calls, deterministic=True)
  for index, hw in ds.ignore_errors().batch(1024).as_numpy_iterator():
    for i, (h, w) in zip(index, hw):
      sizes[int(i)] = (int(h), int(w))
  logging.info('Checked %d images of %s in %.2f s.', len(split), split.label,
               time.perf_counter() - start)
  bad = [i for i in range(len(split)) if sizes[i] is None]
  for i in bad:
    name = split.names[i]
    what = ''
    if os.path.isfile(name):
      what = f' ({image_files.describe_file(name)})'
    logging.warning('Skipping %s: it cannot be decoded as an image%s: %s.', name, what,
                    _decode_error(split, i).rstrip('.'))
  if bad:
    logging.warning('Skipped %d of %d files in %s that cannot be decoded.', len(bad), len(split),
                    split.label)
  good = [i for i in range(len(split)) if sizes[i] is not None]
  if not good:
    raise DataError(f'No image in {split.label} can be decoded ({len(split)} files tried).')
  result = split.subset(good)
  result.sizes = np.asarray([sizes[i] for i in good], np.int64).reshape(-1, 2)
  return result, tuple(split.names[i] for i in bad)


def _decode_error(split, index):
  """Why item `index` of `split` does not decode, in one line (ignore_errors() drops it)."""
  try:
    split.raw(tf.constant(index, tf.int64))
  except (tf.errors.OpError, OSError, ValueError) as e:
    return images.decode_error_reason(e)
  return 'it failed in the scan but decodes on its own (a transient read error?)'


# ---------------------------------------------------------------------------------------------
# Sources.


def _cap(items, max_size):
  return items[:max_size] if max_size and max_size > 0 else items


class FolderSource:
  """root/trainA, trainB, testA, testB (the reference's layout)."""

  def __init__(self, config):
    self.root = config.data.root
    self.max_size = config.data.max_dataset_size
    if not self.root or not os.path.isdir(self.root):
      raise DataError(
          f'config.data.root={self.root!r} is not a directory; it must hold the folders trainA, '
          'trainB, testA and testB of images (the reference CycleGAN layout).')
    self.listing = {}
    for name in ('trainA', 'trainB', 'testA', 'testB'):
      folder = os.path.join(self.root, name)
      if not os.path.isdir(folder):
        _refuse_windows_names(self.root)
        raise DataError(f'Missing folder {folder}: config.data.root must hold trainA, trainB, '
                        'testA and testB, each with image files '
                        f'({", ".join(image_files.IMAGE_EXTENSIONS)}).')
      listing = image_files.list_image_files(folder)
      if listing.skipped:
        logging.warning('%s', image_files.summarize_skipped(listing.skipped, folder))
      if not listing.paths:
        raise DataError(f'Folder {folder} holds no image files (expected '
                        f'{", ".join(image_files.IMAGE_EXTENSIONS)}, searched recursively, '
                        'hidden folders left out).')
      self.listing[name] = _cap(listing.paths, self.max_size)

  def split(self, name, channels, num_parallel_calls):
    paths = self.listing[name]
    split = Split(os.path.join(self.root, name), paths, np.zeros([len(paths), 2]), channels,
                   paths=paths)
    return scan(split, num_parallel_calls)

  def test_names(self, name):
    return [os.path.relpath(p, os.path.join(self.root, name)) for p in self.listing[name]]


def _refuse_windows_names(root):
  """Raises DataError when `root` holds files named like 'trainA\\x.jpg': a zip made on Windows
  and extracted by a tool that kept its separators in the names (Python's zipfile does)."""
  names = [n for n in os.listdir(root) if '\\' in n and n.split('\\')[0] in SPLITS]
  if names:
    raise DataError(
        f'{root} holds {len(names)} files named like {names[0]!r}: a zip made on Windows, '
        'extracted with the backslashes kept in the names, so there is no trainA folder. '
        'Extract it with `unzip` (which makes the folders), or turn the names into folders: '
        f'cd {shlex.quote(root)} && for f in *\\\\*; do d="${{f%\\\\*}}"; '
        'mkdir -p "${d//\\\\//}" && mv "$f" "${f//\\\\//}"; done')


class TfdsSource:
  """The real tensorflow-datasets cycle_gan builder; splits read into memory as encoded bytes."""

  def __init__(self, config):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    self.tfds = tfds
    self.name = config.data.tfds_name
    self.data_dir = config.data.tfds_data_dir or None
    self.max_size = config.data.max_dataset_size
    try:
      self.builder = tfds.builder(self.name, data_dir=self.data_dir)
    except Exception as e:  # unknown name or config
      raise DataError(f'config.data.tfds_name={self.name!r} is not a tfds dataset: {e}') from e
    if not self.builder.is_prepared():
      self._prepare()

  def _download_url(self):
    config_name = self.name.split('/')[-1]
    try:
      from tensorflow_datasets.image_classification import cycle_gan  # pylint: disable=g-import-not-at-top
      return cycle_gan._DL_URLS[config_name]  # pylint: disable=protected-access
    except (ImportError, AttributeError, KeyError):
      return f'https://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{config_name}.zip'

  def _prepare(self):
    config_name = self.name.split('/')[-1]
    zip_name = config_name + '.zip'
    manual = os.path.join(str(self.builder.data_dir_root), 'downloads', 'manual')
    url = self._download_url()
    how = (f'Without internet, download {zip_name} ({url}) elsewhere and put it, under exactly '
           f'that name, into {manual}/, then run again.')
    present = sorted(os.listdir(manual)) if os.path.isdir(manual) else []
    if zip_name not in present:
      near = [e for e in present if e.lower().startswith(config_name.lower())]
      if near:
        kinds = ', '.join(f'{e!r} ({"a folder" if os.path.isdir(os.path.join(manual, e)) else "a file"})'
                          for e in near)
        raise DataError(
            f'{manual} holds {kinds}, but tfds reads exactly {zip_name!r}: rename the zip to '
            f'{zip_name} (an extracted folder must be the original zip: zip it again, one top '
            f'folder {config_name}/ holding trainA, trainB, testA, testB), or train on the '
            f'extracted folder with --config.data.dataset=folder --config.data.root=PATH.')
      host = urllib.parse.urlparse(url)
      if host.scheme in ('http', 'https') and not _reachable(host):
        raise DataError(f'Cannot reach {host.hostname} to download tfds {self.name!r} (no '
                        f'connection within {_NETWORK_CHECK_SECONDS} s). {how}')
    try:
      self.builder.download_and_prepare()
    except Exception as e:
      raise DataError(
          f'Could not download and prepare tfds {self.name!r} into {self.builder.data_dir} '
          f'({type(e).__name__}: {e}). {how}') from e

  def split(self, name, channels, num_parallel_calls):
    tfds = self.tfds
    split_name = name if not self.max_size else f'{name}[:{self.max_size}]'
    ds = self.builder.as_dataset(
        split=split_name, shuffle_files=False, decoders={'image': tfds.decode.SkipDecoding()},
        read_config=tfds.ReadConfig(add_tfds_id=True))
    encoded, names = [], []
    for example in ds.as_numpy_iterator():
      encoded.append(example['image'])
      names.append(example['tfds_id'].decode())
    if not encoded:
      raise DataError(f'tfds {self.name} split {name} in {self.builder.data_dir} is empty.')
    label = f'tfds {self.name} {name}'
    split = Split(label, names, np.zeros([len(names), 2]), channels, encoded=encoded)
    return scan(split, num_parallel_calls)


class SyntheticSource:
  """synthetic.make_split arrays, rendered once in memory."""

  def __init__(self, config):
    data = config.data
    # aligned: B is the other season's render of each A scene (the paired truth);
    # colorization: the summer scenes are the photos, for A and B alike.
    self.mode = data.dataset_mode
    self.seed = data.seed
    self.max_size = data.max_dataset_size
    self.train_size = data.synthetic_train_size
    self.test_size = data.synthetic_test_size
    # Rendered so that the resize stage is an identity where it can be.
    self.train_render = data.crop_size if data.preprocess == 'none' else data.load_size
    self.test_render = data.crop_size
    self._arrays = {}

  def arrays(self, split):
    if split not in self._arrays:
      n = self.train_size if split == 'train' else self.test_size
      n = min(n, self.max_size) if self.max_size else n
      size = self.train_render if split == 'train' else self.test_render
      start = time.perf_counter()
      self._arrays[split] = synthetic.make_split(split, int(n), int(size), seed=self.seed,
                                                 paired=self.mode == 'aligned')
      logging.info('Rendered synthetic_seasons %s: %d scenes per domain at %d px in %.1f s.',
                   split, n, size, time.perf_counter() - start)
    return self._arrays[split]

  def split(self, name, channels, num_parallel_calls):
    del num_parallel_calls
    split_kind, key = ('train', name[5:]) if name.startswith('train') else ('test', name[4:])
    if self.mode == 'aligned' and key == 'B':
      key = 'B_of_A'
    elif self.mode == 'colorization':
      key = 'A'
    arrays = self.arrays(split_kind)[key]
    names = [f'synthetic_seasons/{name}/{i:05d}' for i in range(len(arrays))]
    sizes = np.tile(np.array(arrays.shape[1:3]), (len(arrays), 1))
    return Split(f'synthetic_seasons {name}', names, sizes, channels, arrays=arrays), ()


def _reachable(parsed_url):
  """True when a TCP connection to the URL's host opens within a few seconds."""
  port = parsed_url.port or (443 if parsed_url.scheme == 'https' else 80)
  try:
    with socket.create_connection((parsed_url.hostname, port), timeout=_NETWORK_CHECK_SECONDS):
      return True
  except OSError:
    return False


def make_source(config):
  """The data source config.data.dataset names; raises DataError on missing data."""
  sources = {'folder': FolderSource, 'tfds': TfdsSource, 'synthetic_seasons': SyntheticSource}
  if config.data.dataset not in sources:
    raise DataError(f'config.data.dataset={config.data.dataset!r} is not valid; allowed: '
                    f'{", ".join(sources)}.')
  return sources[config.data.dataset](config)


def num_parallel_calls(config):
  """config.data.num_parallel_calls as tf.data takes it (-1 -> AUTOTUNE)."""
  n = config.data.num_parallel_calls
  return tf.data.AUTOTUNE if n is None or n < 0 else max(1, int(n))


def split_name(config, domain, split):
  """The dataset's folder/split that feeds the model's `domain` ('A'/'B') after direction."""
  if config.data.direction == 'BtoA':
    domain = 'B' if domain == 'A' else 'A'
  return f'{split}{domain}'


def check_domain(domain):
  if domain not in DOMAINS:
    raise ValueError(f'domain must be "A" or "B", got {domain!r}.')


