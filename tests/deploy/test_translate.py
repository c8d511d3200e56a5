"""translate: files in, PNGs out, any size; tiles that share instance-norm statistics."""

import errno
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cyclegan_tf import configuration
from cyclegan_tf.deploy import serving_model
from cyclegan_tf.data import images as images_lib
from cyclegan_tf.models import networks
from cyclegan_tf import run_dir
from cyclegan_tf.deploy import translate



def _scene(height, width, seed=0):
  """A structured float image in [-1, 1]: smooth gradients, flat discs and a little noise."""
  rs = np.random.RandomState(seed)
  yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
  image = np.stack([np.sin(6 * xx + 1) * 0.5, np.cos(5 * yy) * 0.5, xx - yy], -1)
  for _ in range(6):
    cy, cx, r = rs.rand() * height, rs.rand() * width, rs.rand() * height / 4 + 3
    image[(np.mgrid[0:height, 0:width][0] - cy)**2 + (np.mgrid[0:height, 0:width][1] - cx)**2
          < r * r] = rs.uniform(-1, 1, 3)
  image += rs.normal(0, 0.05, image.shape)
  return np.clip(image, -1, 1).astype(np.float32)


def _save(array_uint8, path, fmt=None):
  Image.fromarray(array_uint8).save(path, format=fmt)
  return str(path)


def _uint8(shape, seed=0):
  return np.random.RandomState(seed).randint(0, 256, shape, dtype=np.uint8)


def _config(exported_run, tile_size=512, tile_overlap=64):
  config = exported_run.config.copy_and_resolve_references()  # never mutate the shared one
  config.translate.tile_size = tile_size
  config.translate.tile_overlap = tile_overlap
  return config


def _read_png(path):
  with Image.open(path) as image:
    assert image.format == 'PNG'
    return np.asarray(image)


# ---------------------------------------------------------------------------------------------
# Tiling.


@pytest.fixture(scope='module')
def tiling_translator():
  generator = networks.define_G(3, 3, 8, 'resnet_6blocks', name='G_A', seed=0)
  return translate.Translator.from_generator(generator)


def test_tiled_translation_matches_whole_image_with_shared_statistics(tiling_translator):
  """Tiles (96 px, 32 px overlap) of a 128x160 image against one whole-image pass.

  Measured (random-weight resnet_6blocks, ngf 8, outputs in [-1, 1]), mean absolute difference
  to the whole-image translation: 0.0085 with statistics shared from a full-resolution pass
  (what is left is the tiles' borders), 0.047 with statistics from the default pass downscaled
  to the tile size (here by 1.67x), 0.12 without shared statistics (each tile normalised on
  its own, the seams and colour shifts that sharing removes).
  """
  image = _scene(128, 160)
  whole = translate.translate_image(tiling_translator, image, tile_size=512)
  assert whole.shape == (128, 160, 3)
  tiled = {
      'shared, full-resolution statistics': translate.translate_image(
          tiling_translator, image, 96, 32, stats_size=160),
      'shared, downscaled statistics': translate.translate_image(tiling_translator, image, 96,
                                                                 32),
      'not shared': translate.translate_image(tiling_translator, image, 96, 32,
                                              shared_statistics=False),
  }
  diffs = {k: float(np.abs(v - whole).mean()) for k, v in tiled.items()}
  print('mean |tiled - whole|:', {k: round(v, 4) for k, v in diffs.items()})
  for result in tiled.values():
    assert result.shape == whole.shape and np.all(np.isfinite(result))
  assert diffs['shared, full-resolution statistics'] < 0.015
  assert diffs['shared, downscaled statistics'] < 0.07
  assert diffs['not shared'] > 0.09
  assert diffs['not shared'] > 2 * diffs['shared, downscaled statistics']


class _Identity:
  """A stand-in translator that returns its input: tiling must then give back the image."""
  input_channels = 3
  shares_statistics = True
  description = 'the identity'

  def whole(self, images):
    return np.asarray(images)

  def norm_statistics(self, images):
    del images
    return [(np.zeros((1, 1, 1, 3), np.float32), np.ones((1, 1, 1, 3), np.float32))]

  def with_statistics(self, images, statistics):
    assert len(statistics) == 1
    return np.asarray(images)


@pytest.mark.parametrize('shape,tile,overlap', [
    ((50, 70), 16, 4), ((33, 20), 16, 0), ((17, 90), 24, 23), ((100, 9), 32, 8)])
def test_tiles_cover_the_image_and_blend_to_a_partition_of_unity(shape, tile, overlap):
  image = _scene(*shape, seed=1)
  for shared in (True, False):
    out = translate.translate_image(_Identity(), image, tile, overlap, shared_statistics=shared)
    np.testing.assert_allclose(out, image, atol=1e-6)
  for length in shape:
    starts = translate.tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] == max(0, length - tile)
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


def test_tile_arguments_are_checked(tiling_translator):
  with pytest.raises(ValueError, match='tile_overlap'):
    translate.translate_image(tiling_translator, _scene(8, 8), 16, 16)
  with pytest.raises(ValueError, match='tile_size'):
    translate.translate_image(tiling_translator, _scene(8, 8), 0, 0)


def test_exported_model_tiles_like_the_keras_generator(exported_run):
  """The SavedModel's norm_statistics functions give the same tiles as the Keras route."""
  from_export = translate.Translator.from_saved_model(exported_run.paths['cyclegan_a2b'])
  from_keras = translate.Translator.from_generator(exported_run.generators['G_A'])
  assert from_export.shares_statistics and from_keras.shares_statistics
  image = _scene(37, 50, seed=2)
  tiled_export = translate.translate_image(from_export, image, 24, 8)
  tiled_keras = translate.translate_image(from_keras, image, 24, 8)
  assert tiled_export.shape == (37, 50, 3)
  np.testing.assert_allclose(tiled_export, tiled_keras, atol=1e-5)
  for size in [(1, 1), (3, 2), (9, 5)]:  # tiny and odd sizes keep their size
    assert translate.translate_image(from_keras, _scene(*size), 24, 8).shape == size + (3,)


# ---------------------------------------------------------------------------------------------
# Files.


def test_translate_paths_from_an_export_keeps_sizes_and_names(exported_run, tmp_path):
  config = _config(exported_run, 16, 4)
  folder = tmp_path / 'in'
  folder.mkdir()
  _save(_uint8((21, 30, 3), 1), folder / 'odd.png')
  _save(_uint8((17, 9, 3), 2), folder / 'photo.jpg', 'JPEG')
  _save(_uint8((8, 12), 3), folder / 'gray.png')
  _save(_uint8((10, 10, 3), 4), folder / 'twin.png')
  _save(_uint8((10, 10, 3), 5), folder / 'twin.bmp', 'BMP')
  (folder / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'garbage' * 10)
  out = tmp_path / 'out'
  # The export root: the direction picks cyclegan_a2b.
  summary = translate.translate_paths(config, str(folder), str(out),
                                      saved_model=exported_run.export_dir)
  assert [os.path.basename(p) for p, _ in summary['skipped']] == ['broken.png']
  assert summary['tiled'] == 2  # odd.png (30 px) and photo.jpg (17 px) exceed 16
  assert sorted(os.listdir(out)) == ['gray.png', 'odd.png', 'photo.png', 'twin_bmp.png',
                                     'twin_png.png']
  for name, (h, w) in [('odd.png', (21, 30)), ('photo.png', (17, 9)), ('gray.png', (8, 12))]:
    assert _read_png(out / name).shape == (h, w, 3)
  # An image within the tile size is exactly what the export's translate_image returns.
  model = serving_model.load_serving_model(os.path.join(exported_run.export_dir, 'cyclegan_a2b'))
  with open(folder / 'gray.png', 'rb') as f:
    served = model.translate_bytes([f.read()])[0]
  np.testing.assert_array_equal(_read_png(out / 'gray.png'), tf.io.decode_png(served).numpy())


def test_translate_paths_from_a_run_uses_the_direction(exported_run, tmp_path, monkeypatch):
  monkeypatch.setattr(run_dir, 'restore_generators',
                      lambda workdir, step=None, config=None: (exported_run.generators, 3, config))
  config = _config(exported_run)
  path = _save(_uint8((16, 20, 3), 6), tmp_path / 'x.png')
  summary = translate.translate_paths(config, path, str(tmp_path / 'out'), workdir='run',
                                      direction='BtoA')
  assert summary['written'] == [str(tmp_path / 'out' / 'x.png')] and not summary['skipped']
  x = images_lib.read_image_file(path).numpy()[np.newaxis]
  expected = images_lib.to_uint8(exported_run.generators['G_B'](x)).numpy()[0]
  np.testing.assert_array_equal(_read_png(tmp_path / 'out' / 'x.png'), expected)


def test_translate_paths_errors(exported_run, tmp_path):
  config = _config(exported_run)
  with pytest.raises(FileNotFoundError, match='nowhere'):
    translate.translate_paths(config, str(tmp_path / 'nowhere'), str(tmp_path / 'out'),
                              saved_model=exported_run.export_dir)
  bad = tmp_path / 'bad.jpg'
  bad.write_bytes(b'not a jpeg')
  with pytest.raises(configuration.DataError, match='bad.jpg: a text file'):
    translate.translate_paths(config, str(bad), str(tmp_path / 'out'), translator=_Identity())
  with pytest.raises(FileNotFoundError, match='does not exist'):
    translate.load_translator(config, saved_model=str(tmp_path / 'no_export'))
  with pytest.raises(ValueError, match='exactly one'):
    translate.load_translator(config)


# ---------------------------------------------------------------------------------------------
# What users give it: their own folder as the output, phone photos, TIFF scans.


def _digest(folder):
  import hashlib  # pylint: disable=g-import-not-at-top
  return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
          for name in sorted(os.listdir(folder)) if (folder / name).is_file()}


def test_translating_a_folder_onto_itself_is_refused_and_nothing_changes(exported_run,
                                                                         tmp_path):
  folder = tmp_path / 'photos'
  folder.mkdir()
  _save(_uint8((12, 16, 3), 1), folder / 'portrait.png')
  _save(_uint8((12, 16, 3), 2), folder / 'holiday.jpg', 'JPEG')
  _save(_uint8((12, 16, 3), 3), folder / 'holiday.png')
  before = _digest(folder)
  with pytest.raises(FileExistsError, match=r'portrait\.png.*another --output.*nothing was '
                     'written'):
    translate.translate_paths(_config(exported_run), str(folder), str(folder),
                              saved_model=exported_run.export_dir)
  assert _digest(folder) == before
  # Into a subfolder of it nothing collides: every input stays as it was.
  translate.translate_paths(_config(exported_run), str(folder), str(folder / 'out'),
                            saved_model=exported_run.export_dir)
  assert _digest(folder) == before and len(os.listdir(folder / 'out')) == 3


def test_phone_photos_and_tiff_scans_come_back_upright_at_their_size(exported_run, tmp_path):
  from image_inputs import phone_jpeg as _phone_jpeg  # pylint: disable=g-import-not-at-top
  folder = tmp_path / 'in'
  folder.mkdir()
  for orientation in (1, 6, 8):
    (folder / f'exif_{orientation}.jpg').write_bytes(_phone_jpeg(orientation))
  _save(_uint8((14, 10, 3), 4), folder / 'scan.tif', 'TIFF')
  _save(_uint8((6, 9, 3), 5), folder / 'frame.ppm', 'PPM')
  out = tmp_path / 'out'
  summary = translate.translate_paths(_config(exported_run), str(folder), str(out),
                                      saved_model=exported_run.export_dir)
  assert not summary['skipped']
  for orientation in (1, 6, 8):  # displayed 24 wide x 32 tall, whatever the stored order
    assert _read_png(out / f'exif_{orientation}.png').shape == (32, 24, 3)
  assert _read_png(out / 'scan.png').shape == (14, 10, 3)
  assert _read_png(out / 'frame.png').shape == (6, 9, 3)


# ---------------------------------------------------------------------------------------------
# Float images with NaN pixels, full disks and read-only outputs.


class _Counting(_Identity):
  """_Identity that counts the images it translates."""

  def __init__(self):
    self.calls = 0

  def whole(self, images):
    self.calls += 1
    return super().whole(images)


def _nan_float_tiff(path):
  values = np.full((6, 8), 0.5, np.float32)
  values[1:3, 2:4] = np.nan
  Image.fromarray(values, mode='F').save(path, format='TIFF')
  return str(path)


def test_a_float_tiff_with_nan_pixels_is_skipped_naming_the_file_and_why(default_config,
                                                                         tmp_path):
  folder = tmp_path / 'in'
  folder.mkdir()
  _save(_uint8((6, 8, 3), 1), folder / 'good.png')
  bad = _nan_float_tiff(folder / 'depth.tif')
  summary = translate.translate_paths(default_config, str(folder), str(tmp_path / 'out'),
                                      translator=_Identity())
  assert summary['written'] == [str(tmp_path / 'out' / 'good.png')]
  [(path, reason)] = summary['skipped']
  assert path == bad and reason.startswith(f'{bad}: a TIFF image')
  assert 'holding NaN/Inf pixels (4 NaN and 0 Inf of 48 values)' in reason
  assert sorted(os.listdir(tmp_path / 'out')) == ['good.png']


@pytest.mark.parametrize('code', [errno.ENOSPC, errno.EACCES, errno.EROFS])
def test_a_failing_write_leaves_no_partial_png(default_config, tmp_path, monkeypatch, code):
  folder = tmp_path / 'in'
  folder.mkdir()
  for name in ('a', 'b', 'c'):
    _save(_uint8((6, 8, 3), 1), folder / f'{name}.png')
  out = tmp_path / 'out'
  real_write = translate._write_bytes  # pylint: disable=protected-access
  writes = []

  def write_then_fail(path, data):
    writes.append(path)
    if len(writes) <= 2:  # the probe of the folder, then a.png
      return real_write(path, data)
    with open(path, 'wb') as f:  # part of the PNG reaches the disk, then it is full
      f.write(data[:len(data) // 2])
    raise OSError(code, os.strerror(code), path)

  monkeypatch.setattr(translate, '_write_bytes', write_then_fail)
  with pytest.raises(OSError) as caught:
    translate.translate_paths(default_config, str(folder), str(out), translator=_Identity())
  assert caught.value.errno == code
  assert os.path.basename(writes[2]).startswith('.b.png.tmp-')  # never the final name
  assert os.listdir(out) == ['a.png']  # whole; no b.png, no temporary file
  np.testing.assert_array_equal(_read_png(out / 'a.png'), _uint8((6, 8, 3), 1))


def test_an_output_that_cannot_be_written_fails_before_translating(default_config, tmp_path,
                                                                  monkeypatch):
  image = _save(_uint8((6, 8, 3), 1), tmp_path / 'a.png')
  (tmp_path / 'some_file').write_text('in the way')
  translator = _Counting()
  with pytest.raises((NotADirectoryError, FileExistsError)) as caught:
    translate.translate_paths(default_config, image, str(tmp_path / 'some_file' / 'sub'),
                              translator=translator)
  assert caught.value.filename == str(tmp_path / 'some_file' / 'sub')
  # A read-only folder (chmod does not stop root, so the probe's failure is injected).

  def read_only(path, data):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)

  monkeypatch.setattr(translate, '_write_bytes', read_only)
  out = tmp_path / 'out'
  with pytest.raises(OSError, match='Cannot write into the output folder') as caught:
    translate.translate_paths(default_config, image, str(out), translator=translator)
  assert caught.value.errno == errno.EROFS and caught.value.filename == str(out)
  assert translator.calls == 0 and os.listdir(out) == []
