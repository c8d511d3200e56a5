"""Tests for the input pipeline and its parts (input_pipeline, data_sources, preprocessing):
folder / tfds / synthetic sources, the reference's preprocessing, skipping corrupt files, and
exact resume (a pure function of config, epoch, step).

Tiny images (16-48 px) in tmp_path; nothing reaches the network (tfds runs its real builder on a
local zip).
"""

import io
import logging as std_logging
import os
import socket
import zipfile

import numpy as np
from PIL import Image
import pytest

from conftest import tiny_config
from cyclegan_tf import configuration
from cyclegan_tf.data import data_sources
from cyclegan_tf.data import input_pipeline as ip
from cyclegan_tf.data import preprocessing


def _save(path, array, fmt=None, **kwargs):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path, fmt, **kwargs)


def _noise(seed, h, w):
  """A smooth-ish random RGB image (JPEG-friendly), uint8 [h, w, 3]."""
  rng = np.random.default_rng(seed)
  small = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3)).astype(np.uint8)
  return np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR))


def _make_folder(root, counts=None, size=(20, 24), fmt='png'):
  """root/trainA.. with distinct images (PNG: lossless, so values can be compared exactly)."""
  counts = counts or {'trainA': 5, 'trainB': 3, 'testA': 2, 'testB': 2}
  seed = 0
  for split, n in counts.items():
    for i in range(n):
      seed += 1
      _save(os.path.join(root, split, f'{split}_{i:02d}.{fmt}'), _noise(seed, *size))
  return str(root)


def _folder_config(config, root, **data):
  config.data.dataset = 'folder'
  config.data.root = str(root)
  config.data.load_size = 20
  config.data.crop_size = 16
  config.data.num_parallel_calls = 2
  for key, value in data.items():
    config.data[key] = value
  return config


def _batches(dataset):
  return [{k: v.numpy() for k, v in b.items()} for b in dataset]


def _to_float(array):
  return array.astype(np.float32) / 255.0 * 2.0 - 1.0


# --- start-up errors ---------------------------------------------------------------------------

def test_missing_root(default_config, tmp_path):
  config = _folder_config(default_config, tmp_path / 'nowhere')
  with pytest.raises(ip.DataError, match='nowhere.*trainA, trainB, testA and testB'):
    ip.InputPipeline(config).steps_per_epoch


def test_missing_trainb(default_config, tmp_path):
  root = _make_folder(tmp_path, {'trainA': 2, 'testA': 1, 'testB': 1})
  with pytest.raises(ip.DataError, match=f'Missing folder {os.path.join(root, "trainB")}'):
    ip.InputPipeline(_folder_config(default_config, root)).train_dataset(0)


def test_empty_testa(default_config, tmp_path):
  root = _make_folder(tmp_path, {'trainA': 2, 'trainB': 2, 'testB': 1})
  os.makedirs(tmp_path / 'testA' / 'sub')
  (tmp_path / 'testA' / 'notes.txt').write_text('not an image')
  with pytest.raises(ip.DataError, match=f'{os.path.join(root, "testA")} holds no image files'):
    ip.InputPipeline(_folder_config(default_config, root))


def test_crop_larger_than_image(default_config, tmp_path):
  root = _make_folder(tmp_path, size=(12, 30))
  config = _folder_config(default_config, root, preprocess='crop')
  with pytest.raises(ip.DataError, match='12x30.*smaller than config.data.crop_size=16'):
    ip.InputPipeline(config)


def test_crop_size_must_suit_generator(default_config, tmp_path):
  root = _make_folder(tmp_path)
  config = _folder_config(default_config, root, crop_size=18)
  with pytest.raises(ip.DataError, match='crop_size=18.*multiples of 4'):
    ip.InputPipeline(config)


# --- corrupt files ------------------------------------------------------------------------------

def test_corrupt_jpeg_is_skipped_with_a_warning(default_config, tmp_path, caplog):
  root = _make_folder(tmp_path, {'trainA': 4, 'trainB': 3, 'testA': 1, 'testB': 1}, fmt='jpg')
  bad = os.path.join(root, 'trainA', 'trainA_01.jpg')
  with open(bad, 'rb') as f:
    data = f.read()
  with open(bad, 'wb') as f:  # a JPEG header, then garbage
    f.write(data[:30] + b'\x00garbage' * 10)
  with open(os.path.join(root, 'trainB', 'zz.png'), 'wb') as f:  # not an image at all
    f.write(b'hello')
  config = _folder_config(default_config, root)
  with caplog.at_level(std_logging.WARNING):
    info = ip.InputPipeline(config).info
  messages = '\n'.join(r.getMessage() for r in caplog.records)
  assert f'Skipping {bad}' in messages
  assert 'zz.png' in messages
  assert 'Skipped 1 of 4 files' in messages and 'Skipped 1 of 4 files' in messages
  assert info.train_size == {'A': 3, 'B': 3}
  assert set(info.skipped) == {bad, os.path.join(root, 'trainB', 'zz.png')}
  batches = _batches(ip.InputPipeline(config).train_dataset(0, with_indices=True))
  assert len(batches) == 3 == ip.InputPipeline(config).steps_per_epoch  # the epoch completes
  assert all(np.isfinite(b['A']).all() for b in batches)


# --- formats and channels -----------------------------------------------------------------------

def _format_folder(root):
  """testA holds one solid-colour image per format; returns {name: expected RGB in [0, 255]}."""
  h, w = 16, 16
  expected = {}
  gray = np.full((h, w), 64, np.uint8)
  _save(os.path.join(root, 'testA', 'a_gray.png'), gray)
  expected['a_gray.png'] = (64, 64, 64)
  rgba = np.zeros((h, w, 4), np.uint8)
  rgba[...] = (200, 100, 50, 128)
  _save(os.path.join(root, 'testA', 'b_rgba.png'), rgba)
  expected['b_rgba.png'] = (200, 100, 50)
  deep = np.full((h, w), 20000, np.uint16)  # 16-bit gray
  Image.fromarray(deep).save(os.path.join(root, 'testA', 'c_16bit.png'))
  expected['c_16bit.png'] = (20000 / 65535 * 255,) * 3
  rgb = np.zeros((h, w, 3), np.uint8)
  rgb[...] = (10, 220, 130)
  _save(os.path.join(root, 'testA', 'd_rgb.bmp'), rgb)
  expected['d_rgb.bmp'] = (10, 220, 130)
  _save(os.path.join(root, 'testA', 'e_palette.gif'), rgb)
  expected['e_palette.gif'] = tuple(np.asarray(Image.open(
      os.path.join(root, 'testA', 'e_palette.gif')).convert('RGB'))[0, 0])
  for split in ('trainA', 'trainB', 'testB'):
    _save(os.path.join(root, split, 'x.png'), rgb)
  return expected


@pytest.mark.parametrize('input_nc', [3, 1])
def test_formats_decode_to_float_channels(default_config, tmp_path, input_nc):
  expected = _format_folder(tmp_path)
  config = _folder_config(default_config, tmp_path, load_size=16, crop_size=16)
  config.model.input_nc = input_nc
  assert os.path.getsize(tmp_path / 'testA' / 'c_16bit.png') > 0
  assert Image.open(tmp_path / 'testA' / 'c_16bit.png').mode.startswith('I')
  names = [os.path.basename(n) for n in ip.InputPipeline(config).test_names('A')]
  assert names == sorted(expected)
  arrays = ip.InputPipeline(config).load_test_arrays('A')
  assert arrays.shape == (5, 16, 16, input_nc) and arrays.dtype == np.float32
  assert arrays.min() >= -1.0 and arrays.max() <= 1.0
  for name, image in zip(names, arrays):
    rgb = np.array(expected[name], np.float64)
    want = rgb if input_nc == 3 else [rgb @ [0.2989, 0.5870, 0.1140]]
    np.testing.assert_allclose(image.reshape(-1, input_nc).mean(0), np.array(want) / 127.5 - 1,
                               atol=1.5 / 127.5, err_msg=name)
  assert ip.InputPipeline(config).train_dataset(0).element_spec['A'].shape == (1, 16, 16, input_nc)
  assert ip.InputPipeline(config).train_dataset(0).element_spec['B'].shape == (1, 16, 16, 3)


def test_resize_matches_pil_bicubic():
  image = _noise(3, 37, 53)
  for size in [(20, 20), (64, 80), (37, 30), (16, 53)]:
    ours = preprocessing.resize_like_pil(image.astype(np.float32) / 255.0, size).numpy()
    pil = np.asarray(Image.fromarray(image).resize(size[::-1], Image.BICUBIC))
    diff = np.abs(ours.astype(int) - pil.astype(int))
    assert ours.shape == pil.shape
    assert diff.max() <= 1 and diff.mean() < 0.01, size


# --- sizes ---------------------------------------------------------------------------------------

def test_resized_and_output_sizes():
  f = preprocessing.resized_size
  assert f(30, 45, 'none', 0, 0, 4) == (32, 44)  # round(7.5) = 8, round(11.25) = 11
  assert f(180, 180, 'resize_and_crop', 143, 128, 4) == (143, 143)
  assert f(100, 200, 'crop', 143, 128, 4) == (100, 200)
  assert f(100, 200, 'scale_width_and_crop', 64, 32, 4) == (32, 64)  # int(max(32.0, 32))
  assert f(300, 200, 'scale_width_and_crop', 64, 32, 4) == (96, 64)
  assert f(100, 400, 'scale_width_and_crop', 64, 32, 4) == (32, 64)  # at least crop_size
  assert f(150, 200, 'scale_width', 62, 32, 4) == (48, 64)  # 46.5 -> 46 -> 48; 62 -> 64
  assert f(30, 45, 'none', 0, 0, 128) == (128, 128)
  assert preprocessing.output_size(300, 200, 'scale_width_and_crop', 64, 32, 4) == (32, 32)


def test_preprocess_none_makes_multiple_of_4(default_config, tmp_path):
  root = _make_folder(tmp_path, size=(30, 45))
  config = _folder_config(default_config, root, preprocess='none', no_flip=True)
  batch = next(iter(ip.InputPipeline(config).train_dataset(0)))
  assert batch['A'].shape == (1, 32, 44, 3)
  assert ip.InputPipeline(config).load_test_arrays('B').shape == (2, 32, 44, 3)


def test_batch_needs_equal_sizes(default_config, tmp_path):
  root = _make_folder(tmp_path)
  _save(os.path.join(root, 'trainA', 'wide.png'), _noise(99, 20, 40))
  config = _folder_config(default_config, root, preprocess='none')
  config.train.batch_size = 2
  with pytest.raises(ip.DataError, match='batch_size=2 needs equal image sizes.*wide.png'):
    ip.InputPipeline(config)
  config.train.batch_size = 1  # batch 1 takes any size
  shapes = {b['A'].shape for b in _batches(ip.InputPipeline(config).train_dataset(0))}
  assert shapes == {(1, 20, 24, 3), (1, 20, 40, 3)}


def test_crop_and_flip(default_config, tmp_path):
  """Every output is a crop_size window of the image, flipped or not; with no_flip never."""
  root = _make_folder(tmp_path, {'trainA': 10, 'trainB': 2, 'testA': 1, 'testB': 1},
                      size=(24, 28))
  originals = [_to_float(np.asarray(Image.open(path)))
               for path in sorted((tmp_path / 'trainA').iterdir())]
  for no_flip in (False, True):
    config = _folder_config(default_config, root, preprocess='crop', no_flip=no_flip)
    flips, offsets = [], set()
    for batch in _batches(ip.InputPipeline(config).train_dataset(0, with_indices=True)):
      image = batch['A'][0]
      assert image.shape == (16, 16, 3)
      source = originals[batch['A_index'][0]]
      found = [(y, x, flip) for y in range(9) for x in range(13) for flip in (False, True)
               if np.array_equal(image, source[y:y + 16, x:x + 16][:, ::-1 if flip else 1])]
      assert found, 'not a window of the source image'
      offsets.add(found[0][:2])
      flips.append(all(f for _, _, f in found))
    assert len(offsets) > 3  # random crops
    if no_flip:
      assert not any(flips)
    else:
      assert any(flips) and not all(flips)


def test_resize_and_crop_shapes(default_config, tmp_path):
  root = _make_folder(tmp_path, size=(30, 45))
  config = _folder_config(default_config, root, load_size=24, crop_size=16)
  config.train.batch_size = 2
  batch = next(iter(ip.InputPipeline(config).train_dataset(0)))
  assert batch['A'].shape == (2, 16, 16, 3) and batch['B'].shape == (2, 16, 16, 3)
  assert ip.InputPipeline(config).info.image_shape == {'A': (16, 16, 3), 'B': (16, 16, 3)}
  test = ip.InputPipeline(config).load_test_arrays('A')  # test: straight to crop_size, no crop
  assert test.shape == (2, 16, 16, 3)
  pil = np.asarray(Image.open(os.path.join(root, 'testA', 'testA_00.png')).resize(
      (16, 16), Image.BICUBIC))
  assert np.abs(test[0] - _to_float(pil)).max() <= 1.01 / 127.5


# --- epochs, sizes, order ------------------------------------------------------------------------

def test_steps_per_epoch_and_max_dataset_size(default_config, tmp_path):
  root = _make_folder(tmp_path, {'trainA': 7, 'trainB': 3, 'testA': 4, 'testB': 1})
  config = _folder_config(default_config, root)
  config.train.batch_size = 2
  assert ip.InputPipeline(config).steps_per_epoch == 3  # max(7, 3) // 2
  assert len(_batches(ip.InputPipeline(config).train_dataset(0))) == 3
  config.data.max_dataset_size = 4
  info = ip.InputPipeline(config).info
  assert info.train_size == {'A': 4, 'B': 3} and info.steps_per_epoch == 2
  assert [os.path.basename(n) for n in info.train_names['A']] == [
      f'trainA_{i:02d}.png' for i in range(4)]
  assert len(ip.InputPipeline(config).test_names('A')) == 4


def test_epoch_order(default_config, tmp_path):
  root = _make_folder(tmp_path, {'trainA': 6, 'trainB': 4, 'testA': 1, 'testB': 1})
  config = _folder_config(default_config, root)
  pipeline = ip.InputPipeline(config)
  plan = pipeline.epoch_plan(0)
  assert sorted(plan['A']) == list(range(6))  # a permutation of A
  assert plan['A'].tolist() != list(range(6))
  assert plan['B'].min() >= 0 and plan['B'].max() < 4
  config.data.serial_batches = True
  plan = ip.InputPipeline(config).epoch_plan(3)
  assert plan['A'].tolist() == list(range(6))
  assert plan['B'].tolist() == [0, 1, 2, 3, 0, 1]


def test_direction_btoa_swaps(default_config, tmp_path):
  root = _make_folder(tmp_path, {'trainA': 5, 'trainB': 3, 'testA': 2, 'testB': 1})
  config = _folder_config(default_config, root, direction='BtoA')
  config.model.input_nc = 1
  info = ip.InputPipeline(config).info
  assert info.train_size == {'A': 3, 'B': 5}
  assert all('/trainB/' in n for n in info.train_names['A'])
  assert len(ip.InputPipeline(config).test_names('A')) == 1 and '/testB/' in ip.InputPipeline(config).test_names('A')[0]
  batch = next(iter(ip.InputPipeline(config).train_dataset(0)))
  assert batch['A'].shape[-1] == 1 and batch['B'].shape[-1] == 3


# --- determinism and resume ----------------------------------------------------------------------

def test_determinism_and_resume(default_config, tmp_path):
  root = _make_folder(tmp_path, {'trainA': 9, 'trainB': 5, 'testA': 1, 'testB': 1})
  config = _folder_config(default_config, root)
  config.train.batch_size = 2
  full = _batches(ip.InputPipeline(config).train_dataset(1, with_indices=True))
  assert len(full) == 4
  again = _batches(ip.InputPipeline(config).train_dataset(1, with_indices=True))
  for a, b in zip(full, again):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  other = _batches(ip.InputPipeline(config).train_dataset(2))
  assert any(not np.array_equal(a['A'], b['A']) for a, b in zip(full, other))
  # Resume from step 2 in a fresh process state, with other parallelism: batches 2.. exactly.
  config.data.num_parallel_calls = 1
  resumed = _batches(ip.InputPipeline(config).train_dataset(1, start_step=2, with_indices=True))
  assert len(resumed) == 2
  for a, b in zip(full[2:], resumed):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  assert _batches(ip.InputPipeline(config).train_dataset(1, start_step=4)) == []
  with pytest.raises(ValueError, match='start_step=5'):
    ip.InputPipeline(config).train_dataset(1, start_step=5)


@pytest.mark.parametrize('preprocess', ['resize_and_crop', 'crop'])
def test_cache_gives_identical_batches(default_config, tmp_path, preprocess):
  """data.cache may change on resume: cached decoded images must give the same batches."""
  root = _make_folder(tmp_path, {'trainA': 4, 'trainB': 3, 'testA': 1, 'testB': 1},
                      size=(30, 45))
  _save(os.path.join(root, 'trainA', 'other_size.png'), _noise(50, 21, 17))  # cache offsets
  config = _folder_config(default_config, root, load_size=24, crop_size=16,
                          preprocess=preprocess)
  plain = _batches(ip.InputPipeline(config).train_dataset(0))
  config.data.cache = True
  cached = _batches(ip.InputPipeline(config).train_dataset(0))
  assert ip.InputPipeline(config).train['A']._cache is not None  # pylint: disable=protected-access
  assert len(plain) == len(cached) == 5
  for a, b in zip(plain, cached):
    np.testing.assert_array_equal(a['A'], b['A'])
    np.testing.assert_array_equal(a['B'], b['B'])


def test_folder_pairs(default_config, tmp_path):
  root = _make_folder(tmp_path, {'trainA': 2, 'trainB': 2})
  for i in range(3):
    _save(os.path.join(root, 'testA', f'p{i}.png'), _noise(10 + i, 16, 16))
    _save(os.path.join(root, 'testB', f'p{i}.jpg'), _noise(20 + i, 16, 16))
  config = _folder_config(default_config, root, load_size=16, crop_size=16)
  pairs = ip.InputPipeline(config).paired_test_set()
  assert pairs.a.shape == pairs.b_true.shape == (3, 16, 16, 3)
  np.testing.assert_allclose(pairs.a[1], _to_float(_noise(11, 16, 16)), atol=1e-6)
  image, name = next(iter(ip.InputPipeline(config).test_dataset('B', with_names=True)))
  assert image.shape == (16, 16, 3) and name.numpy().decode().endswith('testB/p0.jpg')
  os.remove(os.path.join(root, 'testB', 'p2.jpg'))
  assert ip.InputPipeline(config).paired_test_set() is None


# --- synthetic_seasons ---------------------------------------------------------------------------

def test_synthetic_seasons(default_config):
  config = default_config
  config.data.dataset = 'synthetic_seasons'
  config.data.load_size = 36
  config.data.crop_size = 32
  config.data.synthetic_train_size = 6
  config.data.synthetic_test_size = 3
  config.train.batch_size = 2
  assert ip.InputPipeline(config).steps_per_epoch == 3
  batches = _batches(ip.InputPipeline(config).train_dataset(0))
  assert len(batches) == 3
  assert batches[0]['A'].shape == (2, 32, 32, 3) and batches[0]['B'].shape == (2, 32, 32, 3)
  assert -1.0 <= batches[0]['A'].min() and batches[0]['A'].max() <= 1.0
  pairs = ip.InputPipeline(config).paired_test_set()
  assert pairs.a.shape == pairs.b_true.shape == (3, 32, 32, 3)
  np.testing.assert_array_equal(pairs.a, ip.InputPipeline(config).load_test_arrays('A'))
  assert np.abs(pairs.a - pairs.b_true).mean() > 0.05  # summer vs its winter render
  config.data.direction = 'BtoA'
  swapped = ip.InputPipeline(config).paired_test_set()
  np.testing.assert_array_equal(swapped.a, pairs.b_true)
  np.testing.assert_array_equal(swapped.b_true, pairs.a)


# --- tfds: the real cycle_gan builder, offline ---------------------------------------------------

def test_tfds_offline_real_builder(default_config, tmp_path, monkeypatch):
  tfds = pytest.importorskip('tensorflow_datasets')
  cycle_gan = pytest.importorskip('tensorflow_datasets.image_classification.cycle_gan')
  tfds.disable_progress_bar()

  def no_network(*args, **kwargs):
    raise AssertionError(f'test tried to reach the network: {args}')
  monkeypatch.setattr(socket.socket, 'connect', no_network)
  monkeypatch.setattr(socket, 'create_connection', no_network)
  urls = cycle_gan._DL_URLS  # pylint: disable=protected-access
  zip_path = tmp_path / 'horse2zebra.zip'
  counts = {'trainA': 3, 'trainB': 5, 'testA': 2, 'testB': 1}
  with zipfile.ZipFile(zip_path, 'w') as z:
    seed = 0
    for split, n in counts.items():
      for i in range(n):
        seed += 1
        buf = io.BytesIO()
        Image.fromarray(_noise(seed, 20, 20)).save(buf, 'JPEG')
        z.writestr(f'horse2zebra/{split}/{i}.jpg', buf.getvalue())
  monkeypatch.setitem(urls, 'horse2zebra', str(zip_path))
  data_dir = tmp_path / 'tfds'
  tfds.builder('cycle_gan/horse2zebra', data_dir=str(data_dir)).download_and_prepare()
  monkeypatch.setitem(urls, 'horse2zebra', 'http://unreachable.invalid/x.zip')

  config = default_config
  config.data.dataset = 'tfds'
  config.data.tfds_name = 'cycle_gan/horse2zebra'
  config.data.tfds_data_dir = str(data_dir)
  config.data.load_size = 20
  config.data.crop_size = 16
  config.train.batch_size = 2
  info = ip.InputPipeline(config).info
  assert info.train_size == {'A': 3, 'B': 5} and info.steps_per_epoch == 2
  batches = _batches(ip.InputPipeline(config).train_dataset(0, start_step=1))
  assert len(batches) == 1 and batches[0]['A'].shape == (2, 16, 16, 3)
  assert ip.InputPipeline(config).load_test_arrays('A').shape == (2, 16, 16, 3)
  assert ip.InputPipeline(config).paired_test_set() is None

  # Not prepared and offline: a clear error naming the manual download folder.
  config.data.tfds_data_dir = str(tmp_path / 'empty')
  monkeypatch.setitem(urls, 'horse2zebra', str(tmp_path / 'missing.zip'))
  with pytest.raises(ip.DataError, match=r'horse2zebra.zip.*empty/downloads/manual'):
    ip.InputPipeline(config)


# --- the folders people have ---------------------------------------------------------------------

def test_a_real_users_folder(default_config, tmp_path, caplog):
  """Case variants, TIFF (8 / 16 bit), PPM, WebP, phone photos, and what macOS, Windows and
  Jupyter leave behind: every image trains, nothing else does, and the rest is named."""
  from image_inputs import phone_jpeg as _phone_jpeg  # pylint: disable=g-import-not-at-top
  root = tmp_path / 'data'
  a = root / 'trainA'
  (a / '.ipynb_checkpoints').mkdir(parents=True)
  _save(str(a / 'IMG_0001.JPG'), _noise(1, 32, 24), 'JPEG')
  _save(str(a / 'Photo.Png'), _noise(2, 32, 24), 'PNG')
  _save(str(a / 'scan.tif'), _noise(3, 32, 24), 'TIFF')
  Image.fromarray((np.arange(32 * 24).reshape(32, 24) * 80).astype(np.uint16)).save(
      a / 'deep.tiff')
  _save(str(a / 'frame.ppm'), _noise(4, 32, 24), 'PPM')
  _save(str(a / 'photo.webp'), _noise(5, 32, 24), 'WEBP')
  (a / 'phone.jpg').write_bytes(_phone_jpeg(6))  # stored 32 wide x 24 tall, shown 24 x 32
  _save(str(a / '.ipynb_checkpoints' / 'IMG_0001-checkpoint.jpg'), _noise(1, 32, 24), 'JPEG')
  (a / '._IMG_0001.JPG').write_bytes(b'\x00\x05\x16\x07' + bytes(200))
  (a / '.DS_Store').write_bytes(b'\x00\x00\x00\x01Bud1')
  (a / 'Thumbs.db').write_bytes(b'\xd0\xcf\x11\xe0' + bytes(100))
  (a / 'notes.txt').write_text('to sort')
  for split in ('trainB', 'testB'):
    _save(str(root / split / 'b.png'), _noise(9, 32, 24))
  (root / 'testA').mkdir()
  (root / 'testA' / 'phone.jpg').write_bytes(_phone_jpeg(8))
  config = _folder_config(default_config, root, preprocess='none', no_flip=True)
  with caplog.at_level(std_logging.WARNING):
    pipeline = ip.InputPipeline(config)
  names = sorted(os.path.basename(n) for n in pipeline.info.train_names['A'])
  assert names == ['IMG_0001.JPG', 'Photo.Png', 'deep.tiff', 'frame.ppm', 'phone.jpg',
                   'photo.webp', 'scan.tif']
  assert pipeline.info.skipped == ()
  left_out = [r.getMessage() for r in caplog.records if 'Left out' in r.getMessage()]
  assert len(left_out) == 1 and left_out[0].startswith('Left out 5 file(s)')
  for name in ('.ipynb_checkpoints', '._IMG_0001.JPG', '.DS_Store', 'Thumbs.db', 'notes.txt'):
    assert name in left_out[0], name
  # Every training image, the phone photo included, comes out at its displayed 32 x 24.
  for batch in pipeline.train_dataset(0):
    assert batch['A'].shape == (1, 32, 24, 3)
  assert pipeline.load_test_arrays('A').shape == (1, 32, 24, 3)


def test_a_domain_of_tiff_files_only(default_config, tmp_path):
  root = _make_folder(tmp_path, {'trainA': 2, 'testA': 1, 'testB': 1})
  for i in range(3):
    _save(os.path.join(root, 'trainB', f'b_{i}.tif'), _noise(30 + i, 20, 24), 'TIFF')
  pipeline = ip.InputPipeline(_folder_config(default_config, root))
  assert pipeline.info.train_size == {'A': 2, 'B': 3}
  assert next(iter(pipeline.train_dataset(0)))['B'].shape == (1, 16, 16, 3)


def _tfds_config(config, data_dir):
  config.data.dataset = 'tfds'
  config.data.tfds_name = 'cycle_gan/horse2zebra'
  config.data.tfds_data_dir = str(data_dir)
  return config


def test_tfds_manual_folder_with_a_renamed_zip_or_a_folder_is_named(default_config, tmp_path,
                                                                    monkeypatch):
  """Reported before any download is tried: no minutes of waiting offline."""
  pytest.importorskip('tensorflow_datasets')

  def no_network(*args, **kwargs):
    raise AssertionError(f'test tried to reach the network: {args}')
  monkeypatch.setattr(socket, 'create_connection', no_network)
  manual = tmp_path / 'tfds' / 'downloads' / 'manual'
  manual.mkdir(parents=True)
  (manual / 'horse2zebra (1).zip').write_bytes(b'PK\x03\x04')
  (manual / 'horse2zebra').mkdir()
  config = _tfds_config(default_config, tmp_path / 'tfds')
  with pytest.raises(ip.DataError, match=r"'horse2zebra' \(a folder\), 'horse2zebra \(1\).zip' "
                     r"\(a file\).*exactly 'horse2zebra.zip': rename"):
    ip.InputPipeline(config)


def test_tfds_offline_fails_in_seconds_naming_the_url_and_the_folder(default_config, tmp_path,
                                                                     monkeypatch):
  pytest.importorskip('tensorflow_datasets')
  cycle_gan = pytest.importorskip('tensorflow_datasets.image_classification.cycle_gan')
  monkeypatch.setitem(cycle_gan._DL_URLS, 'horse2zebra',  # pylint: disable=protected-access
                      'https://efrosgans.example.invalid/horse2zebra.zip')
  tried = []

  def offline(address, timeout=None):
    tried.append((address, timeout))
    raise OSError('Network is unreachable')
  monkeypatch.setattr(socket, 'create_connection', offline)
  config = _tfds_config(default_config, tmp_path / 'tfds')
  with pytest.raises(ip.DataError, match=r'Cannot reach efrosgans.example.invalid.*'
                     r'horse2zebra.zip.*downloads/manual'):
    ip.InputPipeline(config)
  assert tried == [(('efrosgans.example.invalid', 443), 5)]


def test_a_windows_zip_extracted_with_backslash_names_is_refused_with_the_fix(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  root = tmp_path / 'horse2zebra'
  root.mkdir()
  for split in data_sources.SPLITS:
    Image.new('RGB', (40, 40), (9, 99, 199)).save(root / f'{split}\\{split[-1]}_0.jpg')
  config = tiny_config(**{'data.dataset': 'folder', 'data.root': str(root)})
  with pytest.raises(configuration.DataError,
                     match=r"holds 4 files named like 'test.\\\\._0\.jpg': a zip made on Windows"
                     ) as refused:
    data_sources.FolderSource(config)
  command = str(refused.value).split('turn the names into folders: ')[1]
  subprocess.run(['bash', '-c', command], check=True)
  assert sorted(os.listdir(root)) == sorted(data_sources.SPLITS)
  assert data_sources.FolderSource(config).listing['trainB'] == [str(root / 'trainB' / 'B_0.jpg')]
