"""Folder / tfds / synthetic datasets -> tf.data batches of {"A", "B"}, preprocessed like the
reference.

What the reference does (data/unaligned_dataset.py, data/base_dataset.py) and what we do:

* Epoch = max(len(A), len(B)) items (after max_dataset_size). Item i takes A[perm[i] % len(A)]
  where perm is a per-epoch permutation (identity with serial_batches: the reference's
  DataLoader shuffles unless serial_batches) and B[random index] (B[i % len(B)] with
  serial_batches). Batches of train.batch_size, the last partial batch dropped, so
  steps_per_epoch = max(len(A), len(B)) // batch_size.
* Preprocessing (get_transform): resize_and_crop (bicubic to load_size x load_size, random crop
  crop_size), crop (random crop from the original), scale_width (width -> load_size, height ->
  int(max(load_size * h / w, crop_size))), scale_width_and_crop (then a random crop), none
  (sides rounded to the nearest multiple, the reference's __make_power_2 with base 4); then a
  random horizontal flip unless no_flip; then [-1, 1]. Two deliberate differences: `none` rounds
  to networks.size_multiple(netG) (4 for ResNets, like the reference; 128/256 for U-Nets) and
  `scale_width` (which has no crop) also rounds its result that way, since the generator cannot
  keep other sizes (the reference then fails in the loss).
* Resizing matches PIL's BICUBIC closely: tf.image.resize(bicubic, antialias=True) (Keys a=-0.5,
  widened when downsampling, like PIL), horizontally then vertically with rounding to 8 bits
  after each pass, as PIL does. On real photos this agrees with PIL to at most 1 level (mean
  < 1e-3 levels). The deterministic part of preprocessing (decode + resize) therefore ends in a
  uint8 image, which is also what data.cache keeps in memory (16-bit PNGs are decoded in full
  precision, then land on 8 bits after that stage; the reference's PIL would clip them).
* Test split (the reference's test options): load_size = crop_size, no flip, and crops are
  centred instead of random (resize_and_crop -> straight to crop_size x crop_size).

Exact resume without iterator checkpoints. `train_dataset(config, epoch, start_step)` is a pure
function of (config, epoch, start_step): the whole epoch's plan (A order, B draws, and for every
item and domain three random integers for the crop offsets and the flip) is drawn up front in
numpy from SeedSequence([seed, epoch]) (seed = data.seed or else train.seed). Item k of the epoch
always gets the same images and augmentation, whatever num_parallel_calls, cache or the strategy.
start_step slices the plan (indices only: skipped images are never read), so a run resumed at
step s of an epoch sees exactly batches s.. of the uninterrupted run. The map is parallel with
deterministic order; the trainer only has to save (epoch, step).

Random access per split, by source:
* folder: root/{trainA,trainB,testA,testB}, listed recursively (images.is_image_file), sorted,
  capped at max_dataset_size; items read from disk by index.
* tfds: the real `cycle_gan` builder (download_and_prepare when not prepared yet, which downloads
  or, offline, takes <data_dir>/downloads/manual/<name>.zip); each split is read once, in its
  stored order, into memory as the ENCODED image bytes (SkipDecoding: the original JPEGs, about
  the zip's size, e.g. ~110 MB for horse2zebra) and decoded by index like files. This works for
  data prepared in tfds' default tfrecord format (no array_record re-preparation needed).
* synthetic_seasons: synthetic.make_split rendered once into uint8 arrays (at load_size, or
  crop_size for preprocess none); the test split carries the paired truth (B_of_A).
In-memory arrays and bytes are captured by the tf.data map functions; that is fine for datasets
up to a few hundred MB (graph serialisation of a dataset, e.g. multi-worker auto-sharding, copies
them; tensors over 2 GB cannot be serialised at all).

Corrupt files. At start-up every image of a split is decoded once by a parallel tf.data map over
indices (returning the index and the decoded size) wrapped in `ignore_errors()`; indices missing
from the result are the bad files: each is logged (absl warning) by name, with a count at the end,
and the split keeps only the good ones, so no epoch can crash mid-way. The sizes found are used
to check crops and batching at start-up: a crop larger than an image, or batch_size > 1 with
sizes that end up different (scale_width / none on images of different shapes) are DataErrors
naming files. Results are memoised per process (per file path, size and mtime), so calling
train_dataset every epoch costs nothing more; nothing is written into the dataset root. Cost on
the 2,000 training JPEGs (180x180) of cat2dog: 1.5 s on this machine's 2 cores when quiet,
4.4 s with the cores shared (load ~5); the 200 test images 0.3-1.2 s (about 1-2 ms per image and
core: a 100k-image folder would spend minutes here at every start).

Channels: the model's domain A (after direction) is decoded with model.input_nc channels, B with
model.output_nc (like the reference's grayscale=(input_nc == 1)).
"""

import collections
import dataclasses
import json
import os
import threading
import time

from absl import logging
import numpy as np
import tensorflow as tf

from cyclegan_tf import image_files
from cyclegan_tf import images
from cyclegan_tf import networks

DOMAINS = ('A', 'B')
CROP_MODES = ('resize_and_crop', 'crop', 'scale_width_and_crop')
# Random integers per item and domain in the epoch plan: crop row, crop column, flip.
_RAND_PER_DOMAIN = 3


class DataError(ValueError):
  """The data cannot be used as configured; the message names the path or field and the fix."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the training pipeline reads, after direction, max_dataset_size and skipped files."""
  dataset: str
  train_size: dict  # {'A': int, 'B': int}
  epoch_size: int  # max(train_size): items per epoch, the reference's len(dataset)
  batch_size: int
  steps_per_epoch: int
  train_names: dict  # {'A': tuple of names, 'B': ...}: file paths, tfds ids or synthetic ids
  image_shape: dict  # {'A': (h, w, c), 'B': ...}: training image shape after preprocessing
  skipped: tuple  # train files that failed to decode and are left out


class PairedTestSet(collections.namedtuple('PairedTestSet', ['a', 'b_true'])):
  """Test inputs of domain A and the true translation into B: float32 [N, H, W, C] in [-1, 1]."""


# ---------------------------------------------------------------------------------------------
# Sizes (numpy / python: decided at start-up from the scanned image sizes).
# ---------------------------------------------------------------------------------------------

def _round_to_multiple(side, multiple):
  # Python's round, like the reference's __make_power_2 (round half to even).
  return max(multiple, int(round(side / multiple) * multiple))


def resized_size(height, width, preprocess, load_size, crop_size, multiple):
  """(h, w) after the deterministic resize stage for one image of size (height, width)."""
  if preprocess == 'resize_and_crop':
    return load_size, load_size
  if preprocess == 'crop':
    return height, width
  if preprocess in ('scale_width', 'scale_width_and_crop'):
    if not (width == load_size and height >= crop_size):
      height, width = int(max(load_size * height / width, crop_size)), load_size
    if preprocess == 'scale_width':
      height, width = (_round_to_multiple(height, multiple), _round_to_multiple(width, multiple))
    return height, width
  if preprocess == 'none':
    return _round_to_multiple(height, multiple), _round_to_multiple(width, multiple)
  raise DataError(f'config.data.preprocess={preprocess!r} is not valid.')


def output_size(height, width, preprocess, load_size, crop_size, multiple):
  """(h, w) of the image the network sees."""
  if preprocess in CROP_MODES:
    return crop_size, crop_size
  return resized_size(height, width, preprocess, load_size, crop_size, multiple)


# ---------------------------------------------------------------------------------------------
# TF image ops.
# ---------------------------------------------------------------------------------------------

def _round8(x):
  return tf.round(tf.clip_by_value(x, 0.0, 1.0) * 255.0) / 255.0


def resize_like_pil(image, size):
  """float [0, 1] [H, W, C] -> uint8 [h, w, C]: PIL's BICUBIC (horizontal pass, then vertical,
  8-bit rounding after each). `size` is (h, w), Python ints or an int32 tensor."""
  size = tf.cast(size, tf.int32)
  h, w = size[0], size[1]
  shape = tf.shape(image)
  image = tf.cond(
      tf.equal(shape[1], w), lambda: image,
      lambda: _round8(tf.image.resize(image, tf.stack([shape[0], w]), 'bicubic', antialias=True)))
  image = tf.cond(
      tf.equal(shape[0], h), lambda: image,
      lambda: _round8(tf.image.resize(image, tf.stack([h, w]), 'bicubic', antialias=True)))
  return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0), tf.uint8)


def _decode01(contents, channels):
  """Encoded bytes -> float32 [H, W, channels] in [0, 1] (images.decode_image's conversions)."""
  return (images.decode_image(contents, channels) + 1.0) * 0.5


def _crop(image, top, left, crop_size):
  return image[top:top + crop_size, left:left + crop_size]


# ---------------------------------------------------------------------------------------------
# Splits: one (split, domain) of a dataset with random access by index.
# ---------------------------------------------------------------------------------------------

class _Split:
  """One split of one domain: names, original sizes and a tf function index -> float [0, 1]."""

  def __init__(self, label, names, sizes, channels, *, paths=None, encoded=None, arrays=None):
    self.label = label  # e.g. 'trainB' or '/data/x/trainB': for messages
    self.names = tuple(names)
    self.sizes = np.asarray(sizes, np.int64).reshape(-1, 2)  # original (h, w) per item
    self.channels = channels
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
    return resize_like_pil(self.raw(index), tf.gather(sizes, index))

  def build_cache(self, sizes, num_parallel_calls):
    """Decodes and resizes every item once and keeps the uint8 results in memory."""
    sizes_t = tf.constant(sizes, tf.int32)
    ds = tf.data.Dataset.range(len(self)).map(
        lambda i: tf.reshape(resize_like_pil(self.raw(i), tf.gather(sizes_t, i)), [-1]),
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
    return _Split(self.label, pick(self.names), self.sizes[keep], self.channels,
                  paths=pick(self._paths), encoded=pick(self._encoded), arrays=arrays)


_SCAN_MEMO = {}  # key -> (h, w) or None (failed to decode)
_SCAN_LOCK = threading.Lock()


def _file_key(path):
  try:
    stat = os.stat(path)
  except OSError:
    return None
  return ('file', path, stat.st_size, stat.st_mtime_ns)


def _scan(split, keys, num_parallel_calls):
  """Decodes every item once; returns the split without the items that fail (logged by name).

  keys: a memo key per item (None: do not memoise)."""
  sizes = [None] * len(split)
  known = [False] * len(split)
  with _SCAN_LOCK:
    for i, key in enumerate(keys):
      if key is not None and key in _SCAN_MEMO:
        sizes[i], known[i] = _SCAN_MEMO[key], True
  todo = np.array([i for i in range(len(split)) if not known[i]], np.int64)
  if len(todo):
    start = time.perf_counter()
    ds = tf.data.Dataset.from_tensor_slices(todo).map(
        lambda i: (i, tf.shape(split.raw(i))[:2]),
        num_parallel_calls=num_parallel_calls, deterministic=True)
    ds = ds.ignore_errors().batch(1024)
    for index, hw in ds.as_numpy_iterator():
      for i, (h, w) in zip(index, hw):
        sizes[int(i)] = (int(h), int(w))
    with _SCAN_LOCK:
      for i in todo:
        if keys[i] is not None:
          _SCAN_MEMO[keys[i]] = sizes[i]
    logging.info('Checked %d images of %s in %.2f s.', len(todo), split.label,
                 time.perf_counter() - start)
  bad = [i for i in range(len(split)) if sizes[i] is None]
  for i in bad:
    logging.warning('Skipping %s: it cannot be decoded as an image.', split.names[i])
  if bad:
    logging.warning('Skipped %d of %d files in %s that cannot be decoded.', len(bad), len(split),
                    split.label)
  good = [i for i in range(len(split)) if sizes[i] is not None]
  if not good:
    raise DataError(f'No image in {split.label} can be decoded ({len(split)} files tried).')
  result = split.subset(good)
  result.sizes = np.asarray([sizes[i] for i in good], np.int64).reshape(-1, 2)
  return result, tuple(split.names[i] for i in bad)


# ---------------------------------------------------------------------------------------------
# Sources.
# ---------------------------------------------------------------------------------------------

def _list_images(folder):
  paths = []
  for dirpath, _, filenames in os.walk(folder, followlinks=True):
    paths.extend(os.path.join(dirpath, f) for f in filenames if image_files.is_image_file(f))
  return sorted(paths)


def _cap(items, max_size):
  return items[:max_size] if max_size and max_size > 0 else items


class _FolderSource:
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
        raise DataError(f'Missing folder {folder}: config.data.root must hold trainA, trainB, '
                        'testA and testB, each with image files '
                        f'({", ".join(image_files.IMAGE_EXTENSIONS)}).')
      paths = _list_images(folder)
      if not paths:
        raise DataError(f'Folder {folder} holds no image files (expected '
                        f'{", ".join(image_files.IMAGE_EXTENSIONS)}, searched recursively).')
      self.listing[name] = _cap(paths, self.max_size)

  def split(self, name, channels, num_parallel_calls):
    paths = self.listing[name]
    split = _Split(os.path.join(self.root, name), paths, np.zeros([len(paths), 2]), channels,
                   paths=paths)
    return _scan(split, [_file_key(p) for p in paths], num_parallel_calls)

  def test_names(self, name):
    return [os.path.relpath(p, os.path.join(self.root, name)) for p in self.listing[name]]


class _TfdsSource:
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

  def _prepare(self):
    zip_name = self.name.split('/')[-1] + '.zip'
    manual = os.path.join(str(self.builder.data_dir_root), 'downloads', 'manual')
    try:
      self.builder.download_and_prepare()
    except Exception as e:
      raise DataError(
          f'Could not download and prepare tfds {self.name!r} into {self.builder.data_dir} '
          f'({type(e).__name__}: {e}). Without internet, put the dataset zip ({zip_name}, from '
          f'https://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{zip_name}) into {manual}/ '
          'and run again.') from e

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
    split = _Split(label, names, np.zeros([len(names), 2]), channels, encoded=encoded)
    return _scan(split, [None] * len(names), num_parallel_calls)


class _SyntheticSource:
  """synthetic.make_split arrays, rendered once in memory."""

  def __init__(self, config):
    from cyclegan_tf import synthetic  # pylint: disable=g-import-not-at-top
    self.synthetic = synthetic
    data = config.data
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
      self._arrays[split] = self.synthetic.make_split(split, int(n), int(size), seed=self.seed)
      logging.info('Rendered synthetic_seasons %s: %d scenes per domain at %d px in %.1f s.',
                   split, n, size, time.perf_counter() - start)
    return self._arrays[split]

  def split(self, name, channels, num_parallel_calls):
    del num_parallel_calls
    split_kind, key = ('train', name[5:]) if name.startswith('train') else ('test', name[4:])
    arrays = self.arrays(split_kind)[key]
    names = [f'synthetic_seasons/{name}/{i:05d}' for i in range(len(arrays))]
    sizes = np.tile(np.array(arrays.shape[1:3]), (len(arrays), 1))
    return _Split(f'synthetic_seasons {name}', names, sizes, channels, arrays=arrays), ()


# ---------------------------------------------------------------------------------------------
# The pipeline.
# ---------------------------------------------------------------------------------------------

def _parallel(config):
  n = config.data.num_parallel_calls
  return tf.data.AUTOTUNE if n is None or n < 0 else max(1, int(n))


def _dataset_name(config, domain, split):
  """The dataset's folder/split that feeds the model's `domain` ('A'/'B') after direction."""
  if config.data.direction == 'BtoA':
    domain = 'B' if domain == 'A' else 'A'
  return f'{split}{domain}'


def _check_domain(domain):
  if domain not in DOMAINS:
    raise ValueError(f'domain must be "A" or "B", got {domain!r}.')


class InputPipeline:
  """Everything the data stage knows for one config; build once (start-up), use every epoch."""

  def __init__(self, config):
    self.config = config
    data = config.data
    self.preprocess = data.preprocess
    self.load_size = int(data.load_size)
    self.crop_size = int(data.crop_size)
    self.no_flip = bool(data.no_flip)
    self.batch_size = int(config.train.batch_size)
    self.seed = int(data.seed or config.train.seed)
    self.multiple = networks.size_multiple(config.model.netG)
    self.channels = {'A': int(config.model.input_nc), 'B': int(config.model.output_nc)}
    self.num_parallel_calls = _parallel(config)
    if self.preprocess in CROP_MODES:
      try:
        networks.check_image_size(self.crop_size, self.crop_size, self.multiple,
                                  f'netG={config.model.netG}')
      except ValueError as e:
        raise DataError(f'config.data.crop_size={self.crop_size}: {e}') from e
    if self.preprocess in ('resize_and_crop', 'scale_width_and_crop') and (
        self.crop_size > self.load_size):
      raise DataError(f'config.data.crop_size={self.crop_size} is larger than '
                      f'config.data.load_size={self.load_size}.')
    sources = {'folder': _FolderSource, 'tfds': _TfdsSource, 'synthetic_seasons': _SyntheticSource}
    if data.dataset not in sources:
      raise DataError(f'config.data.dataset={data.dataset!r} is not valid; allowed: '
                      f'{", ".join(sources)}.')
    self.source = sources[data.dataset](config)
    self._lock = threading.Lock()
    self._test = {}
    self._load_item = None

    self.train = {}
    self.train_sizes = {}  # domain -> int32 [n, 2] sizes after the resize stage
    skipped = []
    for domain in DOMAINS:
      split, bad = self.source.split(_dataset_name(config, domain, 'train'), self.channels[domain],
                                     self.num_parallel_calls)
      skipped.extend(bad)
      self.train[domain] = split
      self.train_sizes[domain] = self._resized_sizes(split, train=True)
    self.train_shapes = {d: self._output_shape(self.train[d], self.train_sizes[d], train=True)
                         for d in DOMAINS}
    self.epoch_size = max(len(self.train['A']), len(self.train['B']))
    self.steps_per_epoch = self.epoch_size // self.batch_size
    if self.steps_per_epoch < 1:
      raise DataError(
          f'config.train.batch_size={self.batch_size} is larger than the epoch '
          f'({self.epoch_size} images = max(len(A), len(B))); lower the batch size.')
    for domain, split in self.train.items():
      if data.cache and split._arrays is None:  # pylint: disable=protected-access
        start = time.perf_counter()  # synthetic arrays are in memory already
        split.build_cache(self.train_sizes[domain], self.num_parallel_calls)
        logging.info('Cached %d decoded images of %s in %.1f s.', len(split), split.label,
                     time.perf_counter() - start)
    self.info = DatasetInfo(
        dataset=data.dataset,
        train_size={d: len(self.train[d]) for d in DOMAINS},
        epoch_size=self.epoch_size, batch_size=self.batch_size,
        steps_per_epoch=self.steps_per_epoch,
        train_names={d: self.train[d].names for d in DOMAINS},
        image_shape={d: self.train_shapes[d] for d in DOMAINS},
        skipped=tuple(skipped))

  # --- sizes -----------------------------------------------------------------------------------

  def _resized_sizes(self, split, train):
    load = self.load_size if train else self.crop_size  # test: load_size = crop_size
    out = np.array([resized_size(int(h), int(w), self.preprocess, load, self.crop_size,
                                 self.multiple) for h, w in split.sizes], np.int32).reshape(-1, 2)
    if self.preprocess in CROP_MODES:
      small = np.flatnonzero((out < self.crop_size).any(axis=1))
      if len(small):
        i = small[0]
        raise DataError(
            f'{split.names[i]} is {out[i][0]}x{out[i][1]} (h x w) after preprocess='
            f'{self.preprocess!r}, smaller than config.data.crop_size={self.crop_size} '
            f'({len(small)} such images in {split.label}); use preprocess=resize_and_crop or a '
            'smaller crop_size.')
    return out

  def _output_shape(self, split, sizes, train):
    """(h, w, c) when every item ends at the same size, else None (batch_size 1 only)."""
    if self.preprocess in CROP_MODES:
      return (self.crop_size, self.crop_size, split.channels)
    distinct = np.unique(sizes, axis=0)
    if len(distinct) == 1:
      return (int(distinct[0][0]), int(distinct[0][1]), split.channels)
    if train and self.batch_size > 1:
      first = split.names[0]
      other = int(np.flatnonzero((sizes != sizes[0]).any(axis=1))[0])
      raise DataError(
          f'config.train.batch_size={self.batch_size} needs equal image sizes, but with '
          f'preprocess={self.preprocess!r} {first} becomes {sizes[0][0]}x{sizes[0][1]} and '
          f'{split.names[other]} becomes {sizes[other][0]}x{sizes[other][1]} ({len(distinct)} '
          f'different sizes in {split.label}). Use batch_size=1 or a cropping preprocess '
          '(resize_and_crop, crop, scale_width_and_crop).')
    return None

  # --- training --------------------------------------------------------------------------------

  def epoch_plan(self, epoch):
    """The epoch's plan: int64 arrays over its steps_per_epoch * batch_size items.

    {'A': A index, 'B': B index, 'A_rand': [n, 3], 'B_rand': [n, 3]} (crop row, crop column,
    flip draws). A pure function of (seed, epoch, dataset sizes, serial_batches)."""
    if int(epoch) < 0:
      raise ValueError(f'epoch must be >= 0, got {epoch}.')
    n_a, n_b = len(self.train['A']), len(self.train['B'])
    n = self.epoch_size
    rng = np.random.default_rng(np.random.SeedSequence([self.seed % 2**63, int(epoch)]))
    if self.config.data.serial_batches:
      order = np.arange(n)
    else:
      order = rng.permutation(n)
    b_draws = rng.integers(0, n_b, n)
    rand = rng.integers(0, 2**31 - 1, (n, 2, _RAND_PER_DOMAIN))
    b_index = order % n_b if self.config.data.serial_batches else b_draws
    used = self.steps_per_epoch * self.batch_size
    return {'A': (order % n_a)[:used].astype(np.int64), 'B': b_index[:used].astype(np.int64),
            'A_rand': rand[:used, 0].astype(np.int64), 'B_rand': rand[:used, 1].astype(np.int64)}

  def _augment(self, image, rand, shape):
    """uint8 resized image + its 3 random ints -> float32 [-1, 1] (random crop, random flip)."""
    if self.preprocess in CROP_MODES:
      h, w = tf.shape(image, out_type=tf.int64)[0], tf.shape(image, out_type=tf.int64)[1]
      top = rand[0] % (h - self.crop_size + 1)
      left = rand[1] % (w - self.crop_size + 1)
      image = _crop(image, top, left, self.crop_size)
    if not self.no_flip:
      image = tf.cond(tf.equal(rand[2] % 2, 1), lambda: tf.reverse(image, [1]), lambda: image)
    image = images.to_unit_range(image)
    if shape is not None:
      image = tf.ensure_shape(image, shape)
    return image

  def _train_loader(self):
    """The per-item function (plan item -> {'A', 'B'} images), traced once per pipeline."""
    if self._load_item is None:
      with tf.init_scope():
        sizes = {d: tf.constant(self.train_sizes[d]) for d in DOMAINS}

      def load_item(item):
        return {d: self._augment(self.train[d].resized(item[d], sizes[d]), item[f'{d}_rand'],
                                 self.train_shapes[d]) for d in DOMAINS}

      scalar, rand = tf.TensorSpec([], tf.int64), tf.TensorSpec([_RAND_PER_DOMAIN], tf.int64)
      self._load_item = tf.function(load_item, input_signature=[
          {'A': scalar, 'B': scalar, 'A_rand': rand, 'B_rand': rand}], autograph=False)
    return self._load_item

  def train_dataset(self, epoch, start_step=0, with_indices=False):
    """One epoch of batches {'A': float32 [B, H, W, C_A], 'B': ...} from batch `start_step` on.

    with_indices adds 'A_index' and 'B_index' (int64 [B]): the items' indices into
    info.train_names."""
    start_step = int(start_step)
    if not 0 <= start_step <= self.steps_per_epoch:
      raise ValueError(f'start_step={start_step} is outside the epoch (0..'
                       f'{self.steps_per_epoch} steps).')
    plan = self.epoch_plan(epoch)
    start = start_step * self.batch_size
    plan = {k: v[start:] for k, v in plan.items()}
    load_item = self._train_loader()

    def load(item):
      out = load_item(item)
      if with_indices:
        out.update({f'{d}_index': item[d] for d in DOMAINS})
      return out

    ds = tf.data.Dataset.from_tensor_slices(plan)
    ds = ds.map(load, num_parallel_calls=self.num_parallel_calls, deterministic=True)
    ds = ds.batch(self.batch_size, drop_remainder=True)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)

  # --- test ------------------------------------------------------------------------------------

  def _test_split(self, domain):
    _check_domain(domain)
    with self._lock:
      if domain not in self._test:
        split, _ = self.source.split(_dataset_name(self.config, domain, 'test'),
                                     self.channels[domain], self.num_parallel_calls)
        self._test[domain] = (split, self._resized_sizes(split, train=False))
      return self._test[domain]

  def _test_map(self, split, sizes):
    sizes_t = tf.constant(sizes)
    shape = self._output_shape(split, sizes, train=False)

    def load(index):
      image = resize_like_pil(split.raw(index), tf.gather(sizes_t, index))
      if self.preprocess in CROP_MODES:
        hw = tf.shape(image, out_type=tf.int64)[:2]
        top, left = (hw[0] - self.crop_size) // 2, (hw[1] - self.crop_size) // 2
        image = _crop(image, top, left, self.crop_size)
      image = images.to_unit_range(image)
      return tf.ensure_shape(image, shape) if shape is not None else image
    return load

  def test_names(self, domain):
    return self._test_split(domain)[0].names

  def test_dataset(self, domain, with_names=False):
    """Unbatched float32 [H, W, C] test images of `domain` (after direction), in name order;
    (image, name) pairs when with_names."""
    split, sizes = self._test_split(domain)
    load = self._test_map(split, sizes)
    ds = tf.data.Dataset.range(len(split))
    if with_names:
      names = tf.constant(list(split.names))
      ds = ds.map(lambda i: (load(i), tf.gather(names, i)),
                  num_parallel_calls=self.num_parallel_calls, deterministic=True)
    else:
      ds = ds.map(load, num_parallel_calls=self.num_parallel_calls, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)

  def load_test_arrays(self, domain, max_images=0):
    """The test split of `domain` as one float32 array [N, H, W, C] (the first max_images)."""
    split, sizes = self._test_split(domain)
    if self._output_shape(split, sizes, train=False) is None:
      raise DataError(f'The test images of {split.label} have different sizes with preprocess='
                      f'{self.preprocess!r}; read them one by one with test_dataset().')
    ds = self.test_dataset(domain)
    if max_images and max_images > 0:
      ds = ds.take(max_images)
    return np.stack(list(ds.as_numpy_iterator()))

  def _folder_pairs(self):
    """[(split A, sizes), (split B, sizes)] matched by file name, or None when not paired."""
    folders = {d: os.path.join(self.source.root, _dataset_name(self.config, d, 'test'))
               for d in DOMAINS}
    stem = lambda d, path: os.path.splitext(os.path.relpath(path, folders[d]))[0]
    listed = {d: [stem(d, p) for p in self.source.listing[os.path.basename(folders[d])]]
              for d in DOMAINS}
    # Paired only when every file has a partner (a few equal names by chance are not pairs).
    if len(set(listed['A'])) != len(listed['A']) or set(listed['A']) != set(listed['B']):
      return None
    splits = {d: self._test_split(d)[0] for d in DOMAINS}
    index = {d: {stem(d, n): i for i, n in enumerate(splits[d].names)} for d in DOMAINS}
    common = sorted(set(index['A']) & set(index['B']))  # both files decode
    pairs = []
    for d in DOMAINS:
      keep = [index[d][k] for k in common]
      sub = splits[d].subset(keep)
      sub.sizes = splits[d].sizes[keep]
      pairs.append((sub, self._resized_sizes(sub, train=False)))
    return pairs

  def paired_test_set(self, max_images=0):
    """PairedTestSet(a, b_true) when the test split has ground-truth pairs, else None.

    synthetic_seasons: the test A scenes and their renders in the other season. folder: when
    testA and testB hold the same file names (extensions aside). tfds: None (tfds order loses
    any pairing)."""
    if isinstance(self.source, _SyntheticSource):
      arrays = self.source.arrays('test')
      src, truth = (arrays['A'], arrays['B_of_A'])
      if self.config.data.direction == 'BtoA':
        src, truth = truth, src
      out = []
      for domain, array in (('A', src), ('B', truth)):
        split = _Split(f'synthetic_seasons paired test {domain}', [''] * len(array),
                       np.tile(np.array(array.shape[1:3]), (len(array), 1)),
                       self.channels[domain], arrays=array)
        out.append(split)
      pairs = [(s, self._resized_sizes(s, train=False)) for s in out]
    elif isinstance(self.source, _FolderSource):
      pairs = self._folder_pairs()
      if pairs is None:
        return None
    else:
      return None
    arrays = []
    for split, sizes in pairs:
      if self._output_shape(split, sizes, train=False) is None:
        raise DataError(f'The paired test images of {split.label} have different sizes.')
      ds = tf.data.Dataset.range(len(split)).map(
          self._test_map(split, sizes), num_parallel_calls=self.num_parallel_calls,
          deterministic=True)
      if max_images and max_images > 0:
        ds = ds.take(max_images)
      arrays.append(np.stack(list(ds.as_numpy_iterator())))
    return PairedTestSet(arrays[0], arrays[1])


# ---------------------------------------------------------------------------------------------
# Module-level API: one memoised pipeline per (relevant part of the) config.
# ---------------------------------------------------------------------------------------------

_PIPELINES = {}
_PIPELINES_LOCK = threading.Lock()


def _key(config):
  relevant = {'data': config.data.to_dict(),
              'model': {k: config.model[k] for k in ('input_nc', 'output_nc', 'netG')},
              'train': {k: config.train[k] for k in ('batch_size', 'seed')}}
  return json.dumps(relevant, sort_keys=True, default=str)


def get_pipeline(config):
  """The InputPipeline for `config`, built on first use (lists, checks and maybe caches data)."""
  key = _key(config)
  with _PIPELINES_LOCK:
    if key not in _PIPELINES:
      _PIPELINES[key] = InputPipeline(config)
    return _PIPELINES[key]


def clear_cache():
  """Forgets memoised pipelines and decode checks (e.g. after files changed)."""
  with _PIPELINES_LOCK:
    _PIPELINES.clear()
  with _SCAN_LOCK:
    _SCAN_MEMO.clear()


def train_dataset(config, epoch, start_step=0, with_indices=False):
  """Batches of one training epoch, from batch `start_step` on: {'A', 'B'} float32 [B, H, W, C].

  A pure function of (config, epoch, start_step): resuming at (epoch, step) reproduces the
  uninterrupted run's batches exactly."""
  return get_pipeline(config).train_dataset(epoch, start_step, with_indices)


def steps_per_epoch(config):
  """max(len(A), len(B)) // batch_size (after max_dataset_size and skipped files)."""
  return get_pipeline(config).steps_per_epoch


def dataset_info(config):
  return get_pipeline(config).info


def test_dataset(config, domain, with_names=False):
  return get_pipeline(config).test_dataset(domain, with_names)


def test_names(config, domain):
  return get_pipeline(config).test_names(domain)


def load_test_arrays(config, domain, max_images=0):
  return get_pipeline(config).load_test_arrays(domain, max_images)


def paired_test_set(config, max_images=0):
  return get_pipeline(config).paired_test_set(max_images)
