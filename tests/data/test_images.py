"""Tests for cyclegan_tf.data.images: every file people have decodes upright, like PIL shows it.

Inputs are made here: phone photos with EXIF orientations 1-8 (all showing the same upright
picture), TIFF (8 and 16 bit), PPM / PGM, WebP, camera MPO JPEGs.
"""

import io

import numpy as np
from PIL import Image
from PIL import ImageOps
import pytest
import tensorflow as tf

from cyclegan_tf.data import images

from image_inputs import H, W
from image_inputs import displayed as _displayed
from image_inputs import phone_jpeg as _phone_jpeg


def _decode(contents, channels=3, pillow=False):
  return images.decode_image(tf.constant(contents), channels, pillow_fallback=pillow).numpy()


@pytest.mark.parametrize('orientation', range(1, 9))
@pytest.mark.parametrize('pillow', [False, True])
def test_every_exif_orientation_decodes_upright_like_pil(orientation, pillow):
  contents = _phone_jpeg(orientation)
  got = _decode(contents, pillow=pillow)
  assert got.shape == (H, W, 3)
  with Image.open(io.BytesIO(contents)) as im:
    want = np.asarray(ImageOps.exif_transpose(im).convert('RGB'), np.float32) / 127.5 - 1
  assert want.shape == got.shape
  assert np.abs(got - want).mean() < 0.02  # JPEG decoders round a little differently
  assert got[:4, 8:, 0].mean() > 0.5 and got[:4, 8:, 2].mean() < -0.5  # the red bar on top
  assert got[10:, :3, 2].mean() > 0.5  # the blue bar on the left


def test_exif_orientation_reads_either_byte_order_and_survives_damage():
  for orientation in (3, 6, 8):
    assert int(images.exif_orientation(tf.constant(_phone_jpeg(orientation, True)))) == (
        orientation)
  good = _phone_jpeg(6)
  at = good.index(b'Exif\x00\x00')
  damaged = good[:at + 6] + b'\xff' * 40 + good[at + 46:]  # offsets pointing anywhere
  assert int(images.exif_orientation(tf.constant(damaged))) in range(1, 9)
  for contents in (b'', b'\xff\xd8', b'\xff\xd8\xff\xe1\x00\x08Exif\x00\x00', b'plain text'):
    assert int(images.exif_orientation(tf.constant(contents))) == 1
  png = io.BytesIO()
  _displayed().save(png, format='PNG')
  assert int(images.exif_orientation(tf.constant(png.getvalue()))) == 1


def _encoded(image, fmt, **kwargs):
  buffer = io.BytesIO()
  image.save(buffer, format=fmt, **kwargs)
  return buffer.getvalue()


@pytest.mark.parametrize('fmt,kwargs', [('TIFF', {}), ('TIFF', {'compression': 'tiff_lzw'}),
                                        ('PPM', {}), ('WEBP', {'lossless': True}),
                                        ('PNG', {}), ('BMP', {})])
def test_formats_people_have_decode_like_pil(fmt, kwargs):
  rng = np.random.default_rng(0)
  array = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
  contents = _encoded(Image.fromarray(array), fmt, **kwargs)
  pillow_only = fmt in ('TIFF', 'PPM')
  assert bool(images.is_pillow_only(tf.constant(contents))) == pillow_only
  got = _decode(contents, pillow=True)
  np.testing.assert_array_equal(np.round((got + 1) * 127.5).astype(np.uint8), array)
  gray = _decode(contents, channels=1, pillow=True)
  want = np.asarray(Image.fromarray(array).convert('L'), np.float32)
  assert gray.shape == (9, 13, 1)
  assert np.abs((gray[..., 0] + 1) * 127.5 - want).max() <= 1.0
  if pillow_only:
    with pytest.raises(tf.errors.InvalidArgumentError):
      _decode(contents, pillow=False)  # SavedModels have TF's decoders only


def test_16_bit_tiff_and_pgm_keep_their_precision():
  deep = (np.arange(12 * 10).reshape(12, 10) * 500).astype(np.uint16)
  got = _decode(_encoded(Image.fromarray(deep), 'TIFF'), channels=1, pillow=True)
  np.testing.assert_allclose((got[..., 0] + 1) / 2 * 65535, deep, atol=0.02)
  rgb = _decode(_encoded(Image.fromarray(deep), 'TIFF'), channels=3, pillow=True)
  assert rgb.shape == (12, 10, 3)
  pgm = np.arange(35, dtype=np.uint8).reshape(5, 7) * 7
  got = _decode(_encoded(Image.fromarray(pgm), 'PPM'), channels=1, pillow=True)
  np.testing.assert_array_equal(np.round((got[..., 0] + 1) * 127.5), pgm)


def test_camera_mpo_jpeg_and_lossy_webp_decode():
  picture = _displayed()
  mpo = _encoded(picture, 'MPO', quality=95, save_all=True,  # a camera's 2-frame MPO
                 append_images=[picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])
  with Image.open(io.BytesIO(mpo)) as im:
    assert im.format == 'MPO'
  assert _decode(mpo).shape == (H, W, 3)
  webp = _decode(_encoded(picture, 'WEBP', quality=90))
  assert webp.shape == (H, W, 3)
  assert np.abs(webp - (np.asarray(picture, np.float32) / 127.5 - 1)).mean() < 0.05


def test_not_an_image_raises_invalid_argument():
  for contents in (b'', b'hello', b'\x89PNG\r\n\x1a\n' + b'garbage'):
    with pytest.raises(tf.errors.InvalidArgumentError):
      _decode(contents, pillow=True)
  with pytest.raises(ValueError, match='channels must be 1 or 3'):
    images.decode_image(tf.constant(b''), 2)


def test_pixel_conversions():
  x = np.array([[-1.0, 0.0, 1.0, 2.0]], np.float32)[..., None]
  assert images.uint8_rgb_array(x).shape == (1, 4, 3)
  np.testing.assert_array_equal(images.uint8_rgb_array(x)[0, :, 0], [0, 128, 255, 255])
  np.testing.assert_array_equal(images.to_uint8(tf.constant(x)).numpy()[0, :, 0],
                                [0, 128, 255, 255])
  assert images.to_unit_range(tf.constant([[0, 255]], tf.uint8)).numpy().tolist() == [[-1, 1]]
  with Image.open(io.BytesIO(images.png_bytes(np.zeros((3, 5, 1), np.float32)))) as im:
    assert (im.mode, im.size) == ('RGB', (5, 3))
  assert images.resize_array(np.zeros((2, 8, 8, 3)), (4, 6)).shape == (2, 4, 6, 3)


# ---------------------------------------------------------------------------------------------
# Deep pixels: 32-bit float and integer files keep their real range.


def _float_tiff(array):
  return _encoded(Image.fromarray(np.asarray(array, np.float32), mode='F'), 'TIFF')


def _pfm(array):
  """Grayscale PFM bytes ('Pf', little-endian: negative scale; rows stored bottom to top)."""
  height, width = array.shape
  return (b'Pf\n%d %d\n-1.0\n' % (width, height) +
          np.ascontiguousarray(array[::-1], '<f4').tobytes())


def _unit(decoded):
  """A decode in [-1, 1] -> [0, 1]."""
  return (decoded + 1.0) / 2.0


@pytest.mark.parametrize('scale', [1.0, 255.0])
def test_float_tiff_decodes_its_values_not_black(scale):
  values = np.linspace(0.0, 1.0, 6 * 7, dtype=np.float32).reshape(6, 7)
  contents = _float_tiff(values * scale)
  assert bool(images.is_pillow_only(tf.constant(contents)))
  gray = _decode(contents, channels=1, pillow=True)
  assert gray.shape == (6, 7, 1)
  np.testing.assert_allclose(_unit(gray[..., 0]), values, atol=1e-6)
  rgb = _decode(contents, channels=3, pillow=True)
  np.testing.assert_allclose(_unit(rgb), np.repeat(values[..., None], 3, -1), atol=1e-6)


def test_grayscale_pfm_is_read_by_pillow_and_listed():
  values = np.linspace(0.0, 1.0, 4 * 5, dtype=np.float32).reshape(4, 5)
  contents = _pfm(values)
  assert bool(images.is_pillow_only(tf.constant(contents)))
  np.testing.assert_allclose(_unit(_decode(contents, 1, pillow=True)[..., 0]), values, atol=1e-6)
  with pytest.raises(tf.errors.InvalidArgumentError, match='colour PFM'):
    _decode(b'PF\n2 2\n-1.0\n' + bytes(48), pillow=True)


def test_32_bit_integer_and_16_bit_pgm_scale_by_their_range():
  small = np.arange(20, dtype=np.int32).reshape(4, 5) * 13  # <= 255: 8-bit values
  got = _decode(_encoded(Image.fromarray(small, mode='I'), 'TIFF'), 1, pillow=True)
  np.testing.assert_allclose(_unit(got[..., 0]) * 255, small, atol=1e-3)
  deep = small * 250  # <= 65535: 16-bit values
  got = _decode(_encoded(Image.fromarray(deep, mode='I'), 'TIFF'), 1, pillow=True)
  np.testing.assert_allclose(_unit(got[..., 0]) * 65535, deep, atol=0.02)
  # A 16-bit PGM (maxval 65535, read by Pillow as 32-bit 'I') even when its values are small.
  pgm = (np.arange(20).reshape(4, 5) * 3).astype('>u2')
  got = _decode(b'P5\n5 4\n65535\n' + pgm.tobytes(), 1, pillow=True)
  np.testing.assert_allclose(_unit(got[..., 0]) * 65535, pgm, atol=0.02)


def test_float_tiff_with_nan_or_out_of_range_pixels_is_refused_naming_why():
  values = np.full((8, 8), 0.5, np.float32)
  values[2:5, 3:6] = np.nan
  with pytest.raises(tf.errors.InvalidArgumentError, match='NaN') as caught:
    _decode(_float_tiff(values), pillow=True)
  assert images.decode_error_reason(caught.value).startswith(
      'a 32-bit float TIFF image holding NaN/Inf pixels (9 NaN and 0 Inf')
  values[2:5, 3:6] = np.inf
  with pytest.raises(tf.errors.InvalidArgumentError, match='Inf'):
    _decode(_float_tiff(values), pillow=True)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r'values in \[-1, 300\]'):
    _decode(_float_tiff(np.linspace(-1, 300, 16).reshape(4, 4)), pillow=True)


def test_scan_skips_a_nan_float_tiff_naming_the_file_and_why(tmp_path, caplog):
  from cyclegan_tf.data import data_sources  # pylint: disable=g-import-not-at-top
  folder = tmp_path / 'trainA'
  folder.mkdir()
  good = str(folder / 'a.png')
  Image.fromarray(np.zeros((6, 5, 3), np.uint8)).save(good)
  values = np.full((6, 5), 0.25, np.float32)
  values[0, 0] = np.nan
  bad = folder / 'b.tif'
  bad.write_bytes(_float_tiff(values))
  paths = [good, str(bad)]
  split = data_sources.Split(str(folder), paths, np.zeros([2, 2]), 3, paths=paths)
  with caplog.at_level('WARNING'):
    kept, skipped = data_sources.scan(split, 2)
  assert kept.names == (good,) and skipped == (str(bad),)
  warning = next(r.getMessage() for r in caplog.records if r.getMessage().startswith('Skipping'))
  assert warning.startswith(f'Skipping {bad}: it cannot be decoded as an image (a TIFF image')
  assert 'holding NaN/Inf pixels (1 NaN' in warning
