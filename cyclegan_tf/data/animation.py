"""Animated images (GIF, WebP, APNG): their frames, per-frame durations and loop count, read and
written with Pillow.

Free of TensorFlow, so the model server (serving/) uses it too. Frames are composited as a
viewer shows them (Pillow applies GIF disposal and APNG blending when seeking) and returned as
uint8 RGB [H, W, 3]. Durations are milliseconds per frame; loop is the number of repeats
(0 = forever) or None for a file that does not say (it plays once).
"""

import collections
import io

import numpy as np

# Formats whose files can hold several frames, by Pillow's format name, with the extension a
# written file gets.
ANIMATED_FORMATS = {'GIF': '.gif', 'WEBP': '.webp', 'PNG': '.png'}
DEFAULT_DURATION_MS = 100  # a frame that states no duration

Animation = collections.namedtuple('Animation', ['frames', 'durations', 'loop', 'format'])
Animation.__doc__ = """frames: list of uint8 RGB [H, W, 3]; durations: list of int ms; loop:
int (0 = forever) or None; format: Pillow's name ('GIF', 'WEBP', 'PNG').

Pillow writes a GIF frame equal to the one before it as a longer display of that frame (the
total duration is kept, the frame count drops by one).
"""


def _open(source):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if isinstance(source, (bytes, bytearray, memoryview)):
    return Image.open(io.BytesIO(bytes(source)))
  return Image.open(source)


def frame_count(source):
  """The number of frames of an image file (path) or its bytes: 1 for a still image.

  Raises OSError (PIL.UnidentifiedImageError among them) for data Pillow cannot read.
  """
  with _open(source) as image:
    return int(getattr(image, 'n_frames', 1))


def is_animated(source):
  """True for a GIF, WebP or APNG (path or bytes) with more than one frame; False for still
  images and for data Pillow cannot read (the image decoders then say why)."""
  try:
    with _open(source) as image:
      return image.format in ANIMATED_FORMATS and getattr(image, 'n_frames', 1) > 1
  except (OSError, ValueError):
    return False


def read_animation(source):
  """Every frame of an animated image (path or bytes) -> Animation (see the module docstring).

  Raises OSError for data Pillow cannot read.
  """
  from PIL import ImageSequence  # pylint: disable=g-import-not-at-top
  with _open(source) as image:
    fmt = image.format
    loop = image.info.get('loop')
    frames, durations = [], []
    for frame in ImageSequence.Iterator(image):
      frames.append(np.asarray(frame.convert('RGB')))
      durations.append(int(round(frame.info.get('duration') or DEFAULT_DURATION_MS)))
  return Animation(frames, durations, None if loop is None else int(loop), fmt)


def encode_animation(frames, durations, loop=0, fmt='GIF'):
  """uint8 [H, W, 3] (or [H, W]) frames -> the bytes of an animated image in `fmt` ('GIF',
  'WEBP' lossless, or 'PNG' as APNG), with the given per-frame durations (ms) and loop count
  (None: plays once, as the source did). Raises ValueError for an unknown format or mismatched
  frame / duration counts."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if fmt not in ANIMATED_FORMATS:
    raise ValueError(f'Cannot write an animated {fmt}; allowed: {", ".join(ANIMATED_FORMATS)}.')
  if len(frames) != len(durations) or not len(frames):
    raise ValueError(f'{len(frames)} frames and {len(durations)} durations: give one duration '
                     'per frame, at least one frame.')
  images = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
  options = {'save_all': True, 'append_images': images[1:], 'duration': list(durations)}
  if loop is not None:
    options['loop'] = int(loop)
  if fmt == 'GIF':
    options['disposal'] = 1  # full frames: each one replaces the last
    options['optimize'] = False  # keep every frame, even one equal to the last
  elif fmt == 'WEBP':
    options['lossless'] = True
    options['minimize_size'] = False
  else:
    options['disposal'] = 0
    options['blend'] = 0
  buffer = io.BytesIO()
  images[0].save(buffer, format=fmt, **options)
  return buffer.getvalue()


def frames_as_png(source):
  """An animated image (path or bytes) -> (PNG bytes of each frame, its Animation): for a
  server that translates frames as separate images. Raises OSError for unreadable data."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  animation = read_animation(source)
  pngs = []
  for frame in animation.frames:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format='PNG')
    pngs.append(buffer.getvalue())
  return pngs, animation
