"""Pixels: decoding image files, value ranges, channel counts, PNG encoding. The one place for them.

Networks see float32 in [-1, 1] (the reference's Normalize((0.5,), (0.5,))). Files may be JPEG
(camera MPO JPEGs included), PNG (8 or 16 bit), BMP, GIF (first frame) or WebP, which TF's
decoders read inside a graph (training pipelines, exported SavedModels), and TIFF (8, 16 or
32 bit, integer or float), PPM / PGM / PBM or grayscale PFM (32-bit float), which Pillow reads
(where Python runs: training and translation, not in a SavedModel). Every file is brought to the
configured channel count the way PIL's convert('RGB') / convert('L') does, and turned upright by
its EXIF Orientation tag, as image viewers show it (the reference's PIL loader ignores the tag;
phone photos then train sideways).

Deep pixels keep their real range: 16-bit files are divided by 65535; 32-bit integer ones by 255
or 65535 when their values fit (else by 2**31 - 1); float ones are taken as [0, 1] when their
values lie there and as [0, 255] when they lie there, and refused otherwise, as are float images
holding NaN or Inf pixels (a ValueError naming them; TF raises it as InvalidArgumentError).
"""

import io
import re

import numpy as np
import tensorflow as tf

# Magic numbers of the formats that only Pillow decodes: TIFF, PBM / PGM / PPM, PFM.
_PIL_ONLY_MAGIC = (b'II*\x00', b'MM\x00*', b'P1', b'P2', b'P3', b'P4', b'P5', b'P6', b'Pf',
                   b'PF')
_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
_EXIF_ORIENTATION_TAG = 0x0112
_EXIF_SCAN_BYTES = 1 << 16  # APP1 Exif sits in the first segments of a JPEG


# ---------------------------------------------------------------------------------------------
# Value ranges (TF).


def to_unit_range(images):
  """uint8 [0, 255] (or float [0, 1]) -> float32 [-1, 1]."""
  if images.dtype == tf.uint8:
    images = tf.cast(images, tf.float32) / 255.0
  return tf.cast(images, tf.float32) * 2.0 - 1.0


def to_uint8(images):
  """float [-1, 1] -> uint8 [0, 255], rounded."""
  images = (tf.clip_by_value(tf.cast(images, tf.float32), -1.0, 1.0) + 1.0) * 127.5
  return tf.cast(tf.round(images), tf.uint8)


def encode_png(image):
  """float [-1, 1] [H, W, C] -> PNG bytes (scalar string tensor), C = 1 or 3 kept."""
  return tf.io.encode_png(to_uint8(image))


# ---------------------------------------------------------------------------------------------
# Value ranges (NumPy, for pictures and reports).


def rgb_array(images):
  """float32 [..., H, W, C] with C = 1 or 3 -> float32 [..., H, W, 3] (gray repeated)."""
  images = np.asarray(images, np.float32)
  return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def uint8_rgb_array(images):
  """float [-1, 1] [..., H, W, C] (C = 1 or 3; [H, W] is gray) -> uint8 [..., H, W, 3]."""
  images = np.asarray(images, np.float32)
  if images.ndim == 2:
    images = images[..., None]
  images = rgb_array(images)
  return np.round((np.clip(images, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def png_bytes(image):
  """One float [-1, 1] [H, W, C] image -> 8-bit RGB PNG bytes (Pillow, no graph)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  Image.fromarray(uint8_rgb_array(image)).save(buffer, format='PNG')
  return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# EXIF orientation inside a graph (so exported SavedModels apply it too).


_EXIF_HEADER = (0xFF, 0xE1, None, None, 0x45, 0x78, 0x69, 0x66, 0, 0)  # APP1, length, "Exif\0\0"
_MAX_IFD_ENTRIES = 64


def _uint(data, offsets, size, little):
  """Unsigned integers of `size` bytes at `offsets` (int32 [k]) of an int32 byte vector `data`
  (zero-padded, so offsets past the end read 0), big- or little-endian (bool scalar)."""
  last = tf.size(data) - 1
  parts = [tf.gather(data, tf.clip_by_value(offsets + i, 0, last)) for i in range(size)]
  weights = [256**(size - 1 - i) for i in range(size)]
  big = tf.add_n([p * w for p, w in zip(parts, weights)])
  small = tf.add_n([p * w for p, w in zip(parts, weights[::-1])])
  return tf.where(little, small, big)


def exif_orientation(contents):
  """The EXIF Orientation (1-8) of JPEG bytes (scalar string tensor); 1 for other files.

  Finds the APP1 "Exif" segment (FF E1, length, "Exif\0\0": entropy-coded image data never
  holds FF E1, so the first match is the segment) in the first 64 KiB, then reads tag 0x0112
  of its first IFD in the TIFF block's byte order (EXIF 2.3, section 4.6.4). Vectorised (no
  loops), so it costs little inside tf.data maps and exported signatures.
  """
  head = tf.strings.substr(contents, 0, _EXIF_SCAN_BYTES)
  data = tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int32)
  data = tf.concat([data, tf.zeros([len(_EXIF_HEADER) + 8], tf.int32)], 0)
  n = tf.size(data) - len(_EXIF_HEADER) - 8
  match = tf.ones([tf.maximum(n, 0)], tf.bool)
  for i, value in enumerate(_EXIF_HEADER):
    if value is not None:
      match = tf.logical_and(match, tf.equal(data[i:i + tf.maximum(n, 0)], value))
  match = tf.concat([match, [False]], 0)  # argmax of an empty vector fails
  found = tf.reduce_any(match)
  tiff = tf.cast(tf.argmax(tf.cast(match, tf.int32)), tf.int32) + len(_EXIF_HEADER)
  little = tf.logical_and(tf.equal(_uint(data, tiff[None], 1, False)[0], 0x49),
                          tf.equal(_uint(data, tiff[None] + 1, 1, False)[0], 0x49))
  ifd = tiff + _uint(data, tiff[None] + 4, 4, little)[0]
  count = _uint(data, ifd[None], 2, little)[0]
  entries = ifd + 2 + 12 * tf.range(_MAX_IFD_ENTRIES)
  is_tag = tf.logical_and(tf.equal(_uint(data, entries, 2, little), _EXIF_ORIENTATION_TAG),
                          tf.range(_MAX_IFD_ENTRIES) < count)
  values = _uint(data, entries + 8, 2, little)
  value = tf.reduce_max(tf.where(is_tag, values, 0))
  is_jpeg = tf.logical_and(tf.equal(data[0], 0xFF), tf.equal(data[1], 0xD8))
  valid = tf.logical_and(tf.logical_and(is_jpeg, found),
                         tf.logical_and(value >= 1, value <= 8))
  return tf.where(valid, value, 1)


def apply_orientation(image, orientation):
  """[H, W, C] stored pixels -> the displayed image for an EXIF orientation 1-8 (as viewers)."""
  transpose = lambda x: tf.transpose(x, [1, 0, 2])
  branches = [
      lambda: image,  # 1: upright
      lambda: tf.reverse(image, [1]),  # 2: mirrored
      lambda: tf.reverse(image, [0, 1]),  # 3: rotated 180
      lambda: tf.reverse(image, [0]),  # 4: flipped
      lambda: transpose(image),  # 5: transposed
      lambda: tf.reverse(transpose(image), [1]),  # 6: rotate 90 clockwise to display
      lambda: tf.reverse(transpose(image), [0, 1]),  # 7: transverse
      lambda: tf.reverse(transpose(image), [0]),  # 8: rotate 90 counter-clockwise
  ]
  index = tf.clip_by_value(tf.cast(orientation, tf.int32), 1, 8) - 1
  return tf.switch_case(index, branches)


# ---------------------------------------------------------------------------------------------
# Decoding.


def _to_channels(image, channels):
  """A float [0, 1] image with 1-4 channels -> `channels` (1 or 3), as PIL's convert()."""
  n = tf.shape(image)[-1]
  # RGB(A) keeps its colour channels; gray(+alpha) is repeated into RGB.
  image = tf.cond(n >= 3, lambda: image[..., :3], lambda: tf.tile(image[..., :1], [1, 1, 3]))
  image = tf.ensure_shape(image, [None, None, 3])
  if channels == 1:
    image = tf.image.rgb_to_grayscale(image)
  return image


def _decode_tf01(contents):
  """TF-decodable bytes -> float32 [H, W, C] in [0, 1], C as stored (16-bit PNGs kept)."""
  # WebP decodes to uint8 only; every other format straight to float keeps 16-bit precision.
  is_webp = tf.logical_and(tf.equal(tf.strings.substr(contents, 0, 4), b'RIFF'),
                           tf.equal(tf.strings.substr(contents, 8, 4), b'WEBP'))
  return tf.cond(
      is_webp,
      lambda: tf.image.convert_image_dtype(
          tf.io.decode_image(contents, channels=0, dtype=tf.uint8, expand_animations=False),
          tf.float32),
      lambda: tf.io.decode_image(contents, channels=0, dtype=tf.float32,
                                 expand_animations=False))


def _kind(mode, fmt):
  """'a 32-bit float TIFF image' and the like: what a deep Pillow image is, for messages."""
  if fmt == 'PPM':  # Pillow's name for the whole PNM family, PFM included
    fmt = 'PFM' if mode == 'F' else 'PGM'
  depth = {'F': '32-bit float', 'I': '32-bit integer'}.get(mode, '16-bit')
  return f'a {depth} {fmt} image' if fmt else f'a {depth} image'


def _deep_gray01(image, fmt):
  """A one-channel Pillow image of 16 / 32-bit integers or 32-bit floats -> float32 [H, W] in
  [0, 1], by its real range (module docstring); fmt: its file format (Pillow's name).

  Raises ValueError for NaN / Inf pixels and for values outside the ranges read here (negative
  integers, floats beyond [0, 255]).
  """
  array = np.asarray(image)
  kind = _kind(image.mode, fmt)
  if image.mode.startswith('I;16'):
    return array.astype(np.float32) / 65535.0
  if image.mode == 'F':
    array = array.astype(np.float32)
    nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
    if nan or inf:
      raise ValueError(
          f'{kind} holding NaN/Inf pixels ({nan} NaN and {inf} Inf of {array.size} values): '
          'not a picture; replace them (e.g. numpy.nan_to_num) before using the file.')
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if low >= 0.0 and high <= 1.0:
      return array
    if low >= 0.0 and high <= 255.0:
      return array / 255.0
    raise ValueError(f'{kind} with values in [{low:g}, {high:g}]: float pixels are read in '
                     '[0, 1] or [0, 255] only; rescale the file into one of them.')
  # Mode 'I'. Pillow scales 16-bit PGMs (any maxval over 255) to [0, 65535].
  array = array.astype(np.int64)
  low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
  if low < 0:
    raise ValueError(f'{kind} with negative values (down to {low}): not a picture.')
  if fmt == 'PPM' or 255 < high <= 65535:
    scale = 65535.0
  elif high <= 255:
    scale = 255.0
  else:
    scale = 2.0**31 - 1
  return (array / scale).astype(np.float32)


def _pil_decode01(contents, channels):
  """Pillow's decode of any file it reads -> float32 [H, W, channels] in [0, 1], upright.

  Deep images (16 / 32-bit integer, 32-bit float) keep their real range (_deep_gray01). Raises
  ValueError naming the problem for float pixels that are NaN / Inf or out of range, and for
  colour PFM files (Pillow reads grayscale PFM only); PIL.UnidentifiedImageError for data that
  is no image Pillow knows.
  """
  from PIL import Image, ImageOps, UnidentifiedImageError  # pylint: disable=g-import-not-at-top
  if isinstance(contents, np.ndarray):  # numpy_function passes a 0-d object array
    contents = contents.item()
  try:
    opened = Image.open(io.BytesIO(contents))
  except UnidentifiedImageError:
    if contents[:2] == b'PF':
      raise ValueError('a colour PFM image (PF): Pillow reads grayscale PFM (Pf) only; convert '
                       'it to a 16-bit PNG or TIFF.') from None
    raise
  with opened as image:
    fmt = image.format  # the transposed copy has none
    image = ImageOps.exif_transpose(image)
    if image.mode in ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I', 'F'):  # one deep channel
      array = _deep_gray01(image, fmt)[..., None]
      if int(channels) == 3:
        array = np.repeat(array, 3, axis=-1)
      return array.astype(np.float32)
    image = image.convert('RGB')
    if int(channels) == 1:
      image = image.convert('L')
    array = np.asarray(image, np.float32) / 255.0
  return (array[..., None] if array.ndim == 2 else array).astype(np.float32)


def is_pillow_only(contents):
  """True (bool tensor) for bytes of a format only Pillow decodes here (TIFF, PNM, PFM)."""
  head = tf.strings.substr(contents, 0, 4)
  return tf.reduce_any([
      tf.equal(tf.strings.substr(head, 0, len(magic)), magic) for magic in _PIL_ONLY_MAGIC])


def decode_image(contents, channels=3, pillow_fallback=False):
  """Encoded bytes (a scalar string tensor) -> float32 [H, W, channels] in [-1, 1], upright.

  JPEG (MPO too), PNG (16-bit precision kept), BMP, GIF (first frame) and WebP decode with TF
  ops, so this runs inside any graph, exported SavedModels included; the EXIF Orientation tag
  of JPEGs is applied (exif_orientation). With pillow_fallback, TIFF (8 / 16 / 32 bit, float
  too), PPM / PGM / PBM and grayscale PFM go through Pillow (a tf.numpy_function: not for
  SavedModels), deep pixels by their real range (module docstring). Raises
  tf.errors.InvalidArgumentError on data that is not a readable image, float images with NaN /
  Inf or out-of-range pixels included (the message says which; decode_error_reason extracts
  it), and tf.errors.UnknownError for data Pillow cannot identify.
  """
  channels = int(channels)
  if channels not in (1, 3):
    raise ValueError(f'channels must be 1 or 3, got {channels}.')
  return _decoder(channels, bool(pillow_fallback))(contents)


_DECODERS = {}


def _decoder(channels, pillow_fallback):
  """decode_image as one tf.function per (channels, pillow_fallback), traced once per process:
  every tf.data map and export that decodes calls it instead of rebuilding its graph."""
  key = (channels, pillow_fallback)
  if key not in _DECODERS:
    _DECODERS[key] = tf.function(
        lambda contents: _decode(contents, channels, pillow_fallback),
        input_signature=[tf.TensorSpec([], tf.string)], autograph=False)
  return _DECODERS[key]


def _decode(contents, channels, pillow_fallback):
  """decode_image's graph (see there)."""

  def with_tf():
    image = _to_channels(_decode_tf01(contents), channels)
    return apply_orientation(image, exif_orientation(contents))

  if not pillow_fallback:
    return with_tf() * 2.0 - 1.0

  def with_pillow():
    image = tf.numpy_function(_pil_decode01, [contents, channels], tf.float32, stateful=False)
    return tf.ensure_shape(image, [None, None, channels])

  return tf.cond(is_pillow_only(contents), with_pillow, with_tf) * 2.0 - 1.0


def read_image_file(path, channels=3):
  """A file on disk (any format above) -> float32 [H, W, channels] in [-1, 1], upright.

  Raises tf.errors.InvalidArgumentError (or UnknownError) when the file is not a readable image
  and tf.errors.NotFoundError when it does not exist.
  """
  return decode_image(tf.io.read_file(path), channels, pillow_fallback=True)


def decode_error_reason(error):
  """The reason in a decode error (a tf.errors.OpError or any exception), in one line.

  Drops TensorFlow's op decorations, the ValueError prefix of this module's own messages and
  the object address Pillow puts in 'cannot identify image file'.
  """
  lines = str(getattr(error, 'message', error)).strip().splitlines()
  text = re.sub(r'\{\{function_node [^}]*\}\}\s*', '', lines[0] if lines else '')
  text = re.sub(r'\s*\[Op:\w+\].*$', '', text)
  text = re.sub(r'^ValueError: ', '', text)
  text = re.sub(r' <_io\.BytesIO object at 0x[0-9a-f]+>', '', text)
  return text or type(error).__name__


def resize_array(images, size):
  """float32 [N, H, W, C] -> [N, size[0], size[1], C] (antialiased bilinear), clipped to [-1, 1];
  the input itself when it has that size already."""
  images = np.asarray(images, np.float32)
  if tuple(images.shape[1:3]) == tuple(size):
    return images
  out = tf.image.resize(images, size, method='bilinear', antialias=True)
  return np.clip(out.numpy(), -1.0, 1.0).astype(np.float32)
