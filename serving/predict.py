"""Runs a signature on checked inputs, shared by the REST and gRPC front ends.

Inputs arrive as numpy arrays (REST: from JSON; gRPC: from TensorProtos) and are checked
against the signature before anything runs: input names, dtypes, shapes, an empty batch, the
pixel limit (height x width of [N, H, W, C] float images and of each encoded image's header),
encoded images that are not images (with a hint when they are base64 text or a data URI), and,
for cyclegan_tf exports, float pixels outside [-1, 1]. Encoded images are not judged by their
format name: whatever the signature's own decoder reads (JPEG, camera MPO JPEGs, PNG, BMP, GIF,
WebP where the export decodes it) goes through, and the decoder's own error is reported
otherwise.

Animated GIF, WebP and APNG images sent to an encoded-image signature (translate_image) have
every frame translated: the frames go through the signature as one batch of PNGs, and the
answer is an animated PNG (APNG: still a PNG, frame 1 for viewers that do not animate) with the
source's frame durations and loop count. Up to defaults.MAX_ANIMATION_FRAMES frames.

At most `max_concurrent` predictions run at once (threads of one executor, so memory stays
bounded); a request that waits or runs past its deadline gets DEADLINE_EXCEEDED while its
computation, which TensorFlow cannot interrupt, finishes in the background.
"""

import base64
import binascii
import concurrent.futures
import io
import logging
import re

import numpy as np

from cyclegan_tf.data import animation
from serving import defaults
from serving.errors import ServingError
from serving.errors import invalid

DECODERS = 'JPEG, PNG, GIF, BMP and WebP'  # what tf.io.decode_image reads
# cyclegan_tf exports take floats in [-1, 1]; the slack forgives rounding in clients.
_RANGE_SLACK = 0.01
_BASE64_TEXT = re.compile(rb'^[A-Za-z0-9+/\-_\s]+=*\s*$')


def _first_line(text):
  """The first line of a TF error, without its {{function_node ...}} and [Op:...] noise."""
  text = re.sub(r'\{\{[^{}]*\}\}\s*', '', text or '').strip()
  text = text.splitlines()[0] if text else ''
  return re.sub(r'\s*\[Op:[^\]]*\]$', '', text).strip()


def _pillow_header(data):
  """(format, width, height) from the header, or None when Pillow does not know the data."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(io.BytesIO(data)) as image:
      return image.format, image.size[0], image.size[1]
  except Image.DecompressionBombError:
    raise
  except Exception:  # pylint: disable=broad-except
    return None


def _not_an_image(where, data):
  """The ServingError for bytes Pillow cannot read, with what they look like instead."""
  if not data:
    return invalid(f'{where}: empty (0 bytes); send the encoded image file\'s bytes.')
  head = bytes(data[:40])
  if head.lower().startswith(b'data:'):
    return invalid(f'{where}: a data URI ({head[:30]!r}...), not image bytes; send only the '
                   'base64 text after the comma (in REST JSON: {"b64": "<that text>"}).')
  if len(data) >= 8 and _BASE64_TEXT.match(bytes(data[:4096])):
    try:
      decoded = base64.b64decode(re.sub(rb'\s', b'', bytes(data)).replace(b'-', b'+').replace(
          b'_', b'/') + b'==', validate=False)
    except (binascii.Error, ValueError):
      decoded = b''
    if decoded and _pillow_header(decoded):
      return invalid(f'{where}: base64 text, not image bytes; decode it first (in REST JSON, '
                     'wrap it as {"b64": "<the text>"}).')
  return invalid(f'{where}: not an image (first bytes {head[:12]!r}); send an encoded '
                 f'{DECODERS} file.')


class Predictor:
  """Checks inputs and runs signatures.

  max_image_pixels: the largest height x width accepted (--max_image_pixels).
  max_concurrent: predictions run at once (--max_concurrent_predictions).
  """

  def __init__(self, max_image_pixels=defaults.MAX_IMAGE_PIXELS,
               max_concurrent=defaults.MAX_CONCURRENT_PREDICTIONS):
    self.max_image_pixels = int(max_image_pixels)
    self._executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=max(1, int(max_concurrent)), thread_name_prefix='predict')

  def close(self):
    self._executor.shutdown(wait=False, cancel_futures=True)

  @staticmethod
  def signature(servable, signature_name):
    """The SignatureSpec to run ('' means serving_default); INVALID_ARGUMENT if unknown."""
    key = signature_name or 'serving_default'
    if key not in servable.specs:
      raise invalid(f'Serving signature name: "{key}" not found in signature def; '
                    f'{servable.name} has {", ".join(sorted(servable.specs))}.')
    return servable.specs[key]

  # -- checks --------------------------------------------------------------------------------

  def check(self, servable, spec, arrays):
    """Raises ServingError INVALID_ARGUMENT naming the first problem of `arrays` (see run()):
    missing or unknown inputs, a shape the signature does not take, an empty batch, an image
    over max_image_pixels (height x width), bytes that are no image, floats outside [-1, 1]."""
    missing = sorted(set(spec.inputs) - set(arrays))
    extra = sorted(set(arrays) - set(spec.inputs))
    if missing or extra:
      raise invalid(f'Signature {spec.key} takes the input(s) {sorted(spec.inputs)}; the request '
                    f'has {sorted(arrays)} (missing {missing}, unknown {extra}).')
    for name, array in arrays.items():
      info = spec.inputs[name]
      if info.dims is not None and (array.ndim != len(info.dims) or any(
          d not in (-1, s) for d, s in zip(info.dims, array.shape))):
        raise invalid(f'{name}: shape {list(array.shape)} does not match the signature\'s '
                      f'{info.shape_text()} (the first dimension is the batch).')
      if array.ndim and array.shape[0] == 0:
        raise invalid(f'{name}: empty batch; send at least one instance.')
      if info.dtype_name == 'DT_STRING':
        self._check_encoded_images(name, array)
      elif array.ndim == 4:  # [N, H, W, C] images
        if array.shape[1] < 1 or array.shape[2] < 1:
          raise invalid(f'{name}: images must be at least 1x1, got {list(array.shape)}.')
        self._check_pixels(name, array.shape[2], array.shape[1])
        self._check_range(servable, spec, name, array)

  def _check_pixels(self, where, width, height):
    if width * height > self.max_image_pixels:
      raise invalid(f'{where}: a {width}x{height} image has {width * height} pixels, over the '
                    f'limit of {self.max_image_pixels} (--max_image_pixels).')

  def _check_encoded_images(self, name, array):
    from PIL import Image  # pylint: disable=g-import-not-at-top
    for i, data in enumerate(array.ravel()):
      where = f'{name}[{i}]'
      if not isinstance(data, (bytes, bytearray)):
        raise invalid(f'{where}: expected bytes, got {type(data).__name__}.')
      try:
        header = _pillow_header(data)
      except Image.DecompressionBombError:
        raise invalid(f'{where}: the image header declares over {2 * Image.MAX_IMAGE_PIXELS} '
                      f'pixels, over the limit of {self.max_image_pixels} '
                      '(--max_image_pixels).') from None
      if header is None:
        raise _not_an_image(where, data)
      self._check_pixels(where, header[1], header[2])
      frames = animation.frame_count(data) if animation.is_animated(data) else 1
      if frames > defaults.MAX_ANIMATION_FRAMES:
        raise invalid(f'{where}: an animated image of {frames} frames, over the limit of '
                      f'{defaults.MAX_ANIMATION_FRAMES}; send fewer frames, or translate it '
                      'with python main.py --mode=translate.')

  @staticmethod
  def _check_range(servable, spec, name, array):
    if not servable.export_info or spec.inputs[name].dtype_name != 'DT_FLOAT':
      return
    low, high = float(np.nanmin(array)), float(np.nanmax(array))
    if low < -1 - _RANGE_SLACK or high > 1 + _RANGE_SLACK:
      raise invalid(f'{name}: values range from {low:g} to {high:g}, but this model takes '
                    'pixels in [-1, 1]; scale 8-bit pixels with x / 127.5 - 1, or send the '
                    'encoded image file to the translate_image signature.')

  # -- running -------------------------------------------------------------------------------

  def run(self, servable, spec, arrays, timeout_s=None, timeout_flag='--rest_api_timeout_in_ms'):
    """Checks `arrays` and runs the signature; returns {output name: numpy array}.

    arrays: {input name: numpy array} with the batch first; for the cyclegan_tf exports, images
    float32 [N, H, W, C] in [-1, 1] (serving_default) or image_bytes, an object array [N] of
    encoded image files (translate_image). The outputs: translated float32 [N, H, W, C] in
    [-1, 1], or png_bytes [N] of PNG files at each input's size.
    timeout_s: seconds from now until DEADLINE_EXCEEDED (None: no limit), counting the wait for
    a free prediction slot. Raises ServingError: INVALID_ARGUMENT for bad inputs and images the
    signature cannot decode, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL for a failure
    inside the model.
    """
    self.check(servable, spec, arrays)
    future = self._executor.submit(self._call, servable, spec, arrays)
    try:
      return future.result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
      future.cancel()  # a request still queued never runs
      raise ServingError('DEADLINE_EXCEEDED',
                         f'The prediction did not finish within {timeout_s * 1000:.0f} ms '
                         f'({timeout_flag}); the server is busy or the input is large.') from None

  @staticmethod
  def _call(servable, spec, arrays):
    strings = [n for n, info in spec.inputs.items() if info.dtype_name == 'DT_STRING']
    if len(strings) == 1 and len(spec.inputs) == 1 and any(
        animation.is_animated(bytes(d)) for d in arrays[strings[0]].ravel()):
      return Predictor._call_animated(servable, spec, strings[0], arrays[strings[0]].ravel())
    return Predictor._run_function(servable, spec, arrays)

  @staticmethod
  def _call_animated(servable, spec, name, images):
    """Runs an encoded-image signature on every frame of the animated images among `images`
    (still ones go through as they are) and answers each animation as an APNG."""
    from PIL import Image  # pylint: disable=g-import-not-at-top
    batch, parts = [], []  # parts: (first index in batch, frame count, Animation or None)
    for data in images:
      data = bytes(data)
      if animation.is_animated(data):
        pngs, clip = animation.frames_as_png(data)
      else:
        pngs, clip = [data], None
      parts.append((len(batch), len(pngs), clip))
      batch += pngs
    outputs = Predictor._run_function(servable, spec, {name: np.array(batch, dtype=object)})
    key = next(k for k, v in outputs.items() if v.dtype == object)
    answers = []
    for start, count, clip in parts:
      results = outputs[key][start:start + count]
      if clip is None:
        answers.append(results[0])
        continue
      frames = [np.asarray(Image.open(io.BytesIO(r)).convert('RGB')) for r in results]
      answers.append(animation.encode_animation(frames, clip.durations, clip.loop, 'PNG'))
    return {key: np.array(answers, dtype=object)}

  @staticmethod
  def _run_function(servable, spec, arrays):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    function = servable.functions[spec.key]
    try:
      outputs = function(**{k: tf.constant(v) for k, v in arrays.items()})
    except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError) as e:
      raise invalid(Predictor._explain(spec, arrays, e.message)) from None
    except tf.errors.ResourceExhaustedError as e:
      raise ServingError('RESOURCE_EXHAUSTED', _first_line(e.message)) from None
    except Exception as e:  # pylint: disable=broad-except
      logging.exception('%s version %d signature %s failed', servable.name, servable.version,
                        spec.key)
      raise ServingError('INTERNAL', f'The model failed: {type(e).__name__}: '
                                     f'{_first_line(str(e))}') from None
    return {k: v.numpy() for k, v in outputs.items()}

  @staticmethod
  def _explain(spec, arrays, message):
    """TF's error, with the encoded images' formats when a decoder refused one."""
    text = _first_line(message)
    for name, info in spec.inputs.items():
      if info.dtype_name != 'DT_STRING':
        continue
      kinds = []
      for data in arrays[name].ravel():
        header = _pillow_header(data)
        kinds.append(f'{header[0]} {header[1]}x{header[2]}' if header else 'unknown')
      return (f'{name}: the model\'s {spec.key} signature could not decode the image(s) '
              f'({", ".join(kinds)}): {text}')
    return text
