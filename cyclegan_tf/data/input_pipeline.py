"""The input pipeline: one object, built once at start-up and passed around, that turns a data
source into tf.data batches {"A", "B"} preprocessed like the reference.

  pipeline = InputPipeline(config)       # lists and checks the data (corrupt files, sizes)
  pipeline.train_dataset(epoch, start_step)   # batches {'A', 'B'}: float32 [B, H, W, C]
  pipeline.test_dataset('A'), pipeline.load_test_arrays('B'), pipeline.paired_test_set()

Epochs as the reference's unaligned dataset: max(len(A), len(B)) items (after
max_dataset_size). Item i takes A[perm[i] % len(A)] where perm is a per-epoch permutation
(identity with serial_batches: the reference's DataLoader shuffles unless serial_batches) and
B[random index] (B[i % len(B)] with serial_batches). Batches of train.batch_size, the last
partial batch dropped, so steps_per_epoch = max(len(A), len(B)) // batch_size.

Exact resume without iterator checkpoints. `train_dataset(epoch, start_step)` is a pure function
of (config, epoch, start_step): the whole epoch's plan (A order, B draws, and for every item and
domain three random integers for the crop offsets and the flip) is drawn up front in numpy from
SeedSequence([seed, epoch]) (seed = data.seed or else train.seed). Item k of the epoch always
gets the same images and augmentation, whatever num_parallel_calls, cache or the strategy.
start_step slices the plan (skipped images are never read), so a run resumed at step s of an
epoch sees exactly batches s.. of the uninterrupted run; the trainer only saves (epoch, step).

Channels: the model's domain A (after direction) is decoded with model.input_nc channels, B with
model.output_nc (like the reference's grayscale=(input_nc == 1)).

Paired data (dataset_mode aligned or colorization, aligned_sources.py): item i of A and item i
of B are one pair; an epoch is the pairs in a per-epoch order, and both halves of a pair get the
SAME crop and flip (the reference's one get_params call per pair). Colorization reads the RGB
photo for both and turns A into its L channel and B into its ab channels (color.py) after the
crop and flip, which commute with the per-pixel conversion.
"""

import collections
import dataclasses
import os
import threading
import time

from absl import logging
import numpy as np
import tensorflow as tf

from cyclegan_tf import configuration
from cyclegan_tf.data import aligned_sources
from cyclegan_tf.data import data_sources
from cyclegan_tf.data import images
from cyclegan_tf.models import color
from cyclegan_tf.models import networks
from cyclegan_tf.data import preprocessing

DataError = configuration.DataError
DOMAINS = data_sources.DOMAINS
CROP_MODES = preprocessing.CROP_MODES


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


class InputPipeline:
  """Everything the data stage knows for one config; build once (start-up), use every epoch.

  Raises DataError (missing folders, no decodable image, crops larger than images, batches of
  unequal sizes) and ConfigError-like DataErrors for sizes the generator cannot keep.
  """

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
    self.mode = data.dataset_mode
    self.paired = self.mode in ('aligned', 'colorization')
    self.channels = {'A': int(config.model.input_nc), 'B': int(config.model.output_nc)}
    if self.mode == 'colorization':
      color.check_available()
      self.channels = {'A': 3, 'B': 3}  # the RGB photo; encode() makes L and ab of it
    self.num_parallel_calls = data_sources.num_parallel_calls(config)
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
    self.source = aligned_sources.make_source(config)
    self._lock = threading.Lock()
    self._test = {}
    self._load_item = None

    self.train = {}
    self.train_sizes = {}  # domain -> int32 [n, 2] sizes after the resize stage
    skipped = []
    for domain in DOMAINS:
      split, bad = self.source.split(data_sources.split_name(config, domain, 'train'), self.channels[domain],
                                     self.num_parallel_calls)
      skipped.extend(bad)
      self.train[domain] = split
      self.train_sizes[domain] = self._resized_sizes(split, train=True)
    self.train_shapes = {d: self._output_shape(self.train[d], self.train_sizes[d], train=True)
                         for d in DOMAINS}
    # The largest training image per domain, (H_max, W_max, C): what the image pools store.
    self.max_train_shapes = {d: self._max_output_shape(self.train[d], self.train_sizes[d])
                             for d in DOMAINS}
    if self.paired and len(self.train['A']) != len(self.train['B']):
      raise DataError(f'{len(self.train["A"])} A images but {len(self.train["B"])} B images in '
                      f'paired data ({self.train["A"].label}): every A needs its B.')
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
    out = np.array([preprocessing.resized_size(int(h), int(w), self.preprocess, load, self.crop_size,
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

  def _max_output_shape(self, split, sizes):
    """(H_max, W_max, c): the largest height and width the network sees (not necessarily of
    one image). After the resize stage only the crop modes change the size (augment flips)."""
    if self.preprocess in CROP_MODES:
      return (self.crop_size, self.crop_size, split.channels)
    return (int(sizes[:, 0].max()), int(sizes[:, 1].max()), split.channels)

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
    rand = rng.integers(0, 2**31 - 1, (n, 2, preprocessing.RANDOM_INTS))
    b_index = order % n_b if self.config.data.serial_batches else b_draws
    if self.paired:  # the pair's B, with the pair's one crop and flip
      b_index, rand[:, 1] = order % n_b, rand[:, 0]
    used = self.steps_per_epoch * self.batch_size
    return {'A': (order % n_a)[:used].astype(np.int64), 'B': b_index[:used].astype(np.int64),
            'A_rand': rand[:used, 0].astype(np.int64), 'B_rand': rand[:used, 1].astype(np.int64)}

  def _train_loader(self):
    """The per-item function (plan item -> {'A', 'B'} images), traced once per pipeline."""
    if self._load_item is None:
      with tf.init_scope():
        sizes = {d: tf.constant(self.train_sizes[d]) for d in DOMAINS}

      def load_item(item):
        return self.encode({d: preprocessing.augment(
            self.train[d].resized(item[d], sizes[d]), item[f'{d}_rand'], self.preprocess,
            self.crop_size, self.no_flip, self.train_shapes[d]) for d in DOMAINS})

      scalar, rand = tf.TensorSpec([], tf.int64), tf.TensorSpec([preprocessing.RANDOM_INTS], tf.int64)
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

  def encode(self, images_by_domain):
    """{'A', 'B'} float [-1, 1] images as loaded -> as the model takes them: unchanged, or
    for colorization A = L / 50 - 1 (1 channel) and B = ab / 110 (2 channels)."""
    if self.mode != 'colorization':
      return images_by_domain
    out = {}
    for domain, image in images_by_domain.items():
      l_channel, ab = color.tf_rgb_to_model_lab(image)
      out[domain] = l_channel if domain == 'A' else ab
    return out

  # --- test ------------------------------------------------------------------------------------

  def _test_split(self, domain):
    data_sources.check_domain(domain)
    with self._lock:
      if domain not in self._test:
        split, _ = self.source.split(data_sources.split_name(self.config, domain, 'test'),
                                     self.channels[domain], self.num_parallel_calls)
        self._test[domain] = (split, self._resized_sizes(split, train=False))
      return self._test[domain]

  def _test_map(self, split, sizes, domain):
    sizes_t = tf.constant(sizes)
    shape = self._output_shape(split, sizes, train=False)

    def load(index):
      image = preprocessing.resize_like_pil(split.raw(index), tf.gather(sizes_t, index))
      image = images.to_unit_range(
          preprocessing.center_crop(image, self.preprocess, self.crop_size))
      image = tf.ensure_shape(image, shape) if shape is not None else image
      return self.encode({domain: image})[domain]
    return load

  def test_names(self, domain):
    return self._test_split(domain)[0].names

  def test_dataset(self, domain, with_names=False):
    """Unbatched float32 [H, W, C] test images of `domain` (after direction), in name order;
    (image, name) pairs when with_names."""
    split, sizes = self._test_split(domain)
    load = self._test_map(split, sizes, domain)
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
    folders = {d: os.path.join(self.source.root, data_sources.split_name(self.config, d, 'test'))
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
    if self.paired:  # item i of test A and of test B are a pair
      pairs = [self._test_split(d) for d in DOMAINS]
    elif isinstance(self.source, data_sources.SyntheticSource):
      arrays = self.source.arrays('test')
      src, truth = (arrays['A'], arrays['B_of_A'])
      if self.config.data.direction == 'BtoA':
        src, truth = truth, src
      out = []
      for domain, array in (('A', src), ('B', truth)):
        split = data_sources.Split(f'synthetic_seasons paired test {domain}', [''] * len(array),
                       np.tile(np.array(array.shape[1:3]), (len(array), 1)),
                       self.channels[domain], arrays=array)
        out.append(split)
      pairs = [(s, self._resized_sizes(s, train=False)) for s in out]
    elif isinstance(self.source, data_sources.FolderSource):
      pairs = self._folder_pairs()
      if pairs is None:
        return None
    else:
      return None
    arrays = []
    for domain, (split, sizes) in zip(DOMAINS, pairs):
      if self._output_shape(split, sizes, train=False) is None:
        raise DataError(f'The paired test images of {split.label} have different sizes.')
      ds = tf.data.Dataset.range(len(split)).map(
          self._test_map(split, sizes, domain), num_parallel_calls=self.num_parallel_calls,
          deterministic=True)
      if max_images and max_images > 0:
        ds = ds.take(max_images)
      arrays.append(np.stack(list(ds.as_numpy_iterator())))
    return PairedTestSet(arrays[0], arrays[1])


