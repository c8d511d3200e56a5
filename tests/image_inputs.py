"""Image files made for tests of several packages: phone photos whose EXIF orientation (1-8)
makes them display as one upright picture."""

import io

import numpy as np
from PIL import Image

W, H = 24, 32  # displayed width and height

# The PIL transpose that turns the DISPLAYED picture into the STORED pixels per orientation.
TO_STORED = {
    1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270,
}


def displayed():
  """Upright test picture: red bar on top, blue bar on the left, grey elsewhere."""
  a = np.full((H, W, 3), 180, np.uint8)
  a[:6] = (220, 30, 30)
  a[:, :5] = (30, 40, 210)
  return Image.fromarray(a)


def phone_jpeg(orientation, big_endian=False):
  """JPEG bytes whose stored pixels need EXIF `orientation` to display as displayed()."""
  stored = displayed()
  if TO_STORED[orientation] is not None:
    stored = stored.transpose(TO_STORED[orientation])
  exif = Image.Exif()
  exif[0x0112] = orientation
  exif[0x010F] = 'PhoneMaker'  # another tag before it in the IFD
  data = exif.tobytes()
  if big_endian:  # Pillow writes little-endian; rebuild the same IFD big-endian by hand
    data = (b'Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x01' +
            b'\x01\x12\x00\x03\x00\x00\x00\x01' + bytes([0, orientation, 0, 0]) + b'\x00' * 4)
  buffer = io.BytesIO()
  stored.save(buffer, format='JPEG', quality=95, exif=data)
  return buffer.getvalue()
