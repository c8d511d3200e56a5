"""Tests for cyclegan_tf.data.image_files: which files are images, listings that name what they leave
out, inputs from a path or glob, output names, and saying what a file holds."""

import os

import numpy as np
from PIL import Image
import pytest

from cyclegan_tf.data import image_files


def _save(array_uint8, path, fmt=None):
  Image.fromarray(array_uint8).save(path, format=fmt)
  return str(path)


def _uint8(shape, seed=0):
  return np.random.RandomState(seed).randint(0, 256, shape, dtype=np.uint8)


def test_collect_inputs_and_errors_name_the_path(tmp_path):
  folder = tmp_path / 'in'
  folder.mkdir()
  a = _save(_uint8((4, 4, 3)), folder / 'a.png')
  b = _save(_uint8((4, 4, 3)), folder / 'b.JPG', 'JPEG')
  (folder / 'notes.txt').write_text('not an image')
  assert image_files.collect_inputs(a) == [a]
  assert image_files.collect_inputs(str(folder)) == [a, b]
  assert image_files.collect_inputs(str(folder / '*.png')) == [a]
  missing = str(tmp_path / 'missing.png')
  with pytest.raises(FileNotFoundError, match='missing.png'):
    image_files.collect_inputs(missing)
  with pytest.raises(FileNotFoundError, match=r'\*\.gif'):
    image_files.collect_inputs(str(folder / '*.gif'))
  (tmp_path / 'empty').mkdir()
  with pytest.raises(FileNotFoundError, match='empty'):
    image_files.collect_inputs(str(tmp_path / 'empty'))


def test_output_names_keep_base_names_and_separate_collisions():
  names = image_files.output_names(['x/a.jpg', 'x/a.png', 'x/b.jpeg', 'y/b.gif', 'z/c'])
  assert names == {'x/a.jpg': 'a_jpg.png', 'x/a.png': 'a_png.png', 'x/b.jpeg': 'b_jpeg.png',
                   'y/b.gif': 'b_gif.png', 'z/c': 'c.png'}
  assert image_files.output_names(['p/a.png', 'q/a.png']) == {'p/a.png': 'a.png',
                                                             'q/a.png': 'a_1.png'}


def test_listing_skips_hidden_folders_and_companions_and_names_them(tmp_path):
  """The kinds of files real dataset folders hold (macOS, Windows, Jupyter, notes)."""
  root = tmp_path / 'trainA'
  (root / '.ipynb_checkpoints').mkdir(parents=True)
  (root / 'sub').mkdir()
  kept = [_save(_uint8((4, 4, 3)), root / name, fmt)
          for name, fmt in [('a.JPG', 'JPEG'), ('b.Png', 'PNG'), ('c.tif', 'TIFF'),
                            ('d.ppm', 'PPM'), ('e.webp', 'WEBP')]]
  kept.append(_save(_uint8((4, 4, 3)), root / 'sub' / 'f.jpeg', 'JPEG'))
  _save(_uint8((4, 4, 3)), root / '.ipynb_checkpoints' / 'a-checkpoint.jpg', 'JPEG')
  (root / '._a.JPG').write_bytes(b'\x00\x05\x16\x07' + bytes(100))
  (root / '.DS_Store').write_bytes(b'\x00\x00\x00\x01Bud1')
  (root / 'Thumbs.db').write_bytes(b'\xd0\xcf\x11\xe0' + bytes(20))
  (root / 'notes.txt').write_text('to sort')
  listing = image_files.list_image_files(str(root))
  assert listing.paths == sorted(kept)
  reasons = {os.path.relpath(p, root) + ('/' if p.endswith(os.sep) else ''): r
             for p, r in listing.skipped}
  assert reasons == {
      '.ipynb_checkpoints/': 'a hidden folder, not walked',
      '._a.JPG': 'a macOS AppleDouble companion file, not an image',
      '.DS_Store': 'a hidden file',
      'Thumbs.db': reasons['Thumbs.db'], 'notes.txt': reasons['notes.txt']}
  assert reasons['notes.txt'].startswith('not an image file extension')
  line = image_files.summarize_skipped(listing.skipped, str(root))
  assert line.startswith('Left out 5 file(s)') and 'notes.txt' in line and '._a.JPG' in line
  assert image_files.summarize_skipped([], str(root)) == ''
  flat = image_files.list_image_files(str(root), recursive=False)
  assert os.path.join(str(root), 'sub', 'f.jpeg') not in flat.paths


def test_describe_bytes_names_what_a_file_holds(tmp_path):
  describe = image_files.describe_bytes
  assert describe(b'', 0) == 'an empty file'
  assert describe(b'<!DOCTYPE html><html><body>404</body>').startswith('an HTML page')
  assert describe(b'\n  <html><head>').startswith('an HTML page')
  assert describe(b'PK\x03\x04rest') == 'a ZIP archive'
  assert describe(b'\x80\x02}q\x00') == 'a Python pickle'
  assert describe(b'{"error": "x"}') == 'a JSON document'
  assert describe(b'RIFF\x00\x00\x00\x00WEBPVP8 ') == 'a WebP image'
  assert describe(b'\xff\xd8\xff\xe0') == 'a JPEG image'
  assert describe(b'plain words') == 'a text file'
  assert describe(b'\xfe\xfa\x00\x81\xc3') == 'binary data of an unknown format'
  page = tmp_path / 'model.pth'
  page.write_bytes(b'<html>Not Found</html>')
  assert image_files.describe_file(str(page)).startswith('an HTML page')
  assert '22 bytes' in image_files.describe_file(str(page))


def test_pfm_files_are_listed_and_described(tmp_path):
  (tmp_path / 'depth.pfm').write_bytes(b'Pf\n1 1\n-1.0\n' + bytes(4))
  assert image_files.list_image_files(str(tmp_path)).paths == [str(tmp_path / 'depth.pfm')]
  assert image_files.describe_bytes(b'Pf\n1 1\n-1.0\n') == (
      'a grayscale PFM (32-bit float) image')
  assert image_files.describe_bytes(b'P6\n4 4\n255\n\x00') == 'a PPM image'
  assert image_files.describe_bytes(b'P5: notes') == 'a text file'  # no whitespace after P5


def test_names_that_read_as_globs_are_taken_literally(tmp_path):
  """Brackets are common in real names ('photo[1].jpg', 'My Data [v2]'); a path that exists is
  the input as is, and a glob inside such a folder matches that folder's files."""
  literal = _save(_uint8((4, 4, 3)), tmp_path / 'photo[1].jpg', 'JPEG')
  _save(_uint8((4, 4, 3)), tmp_path / 'photo1.jpg', 'JPEG')  # what the glob reading would match
  assert image_files.find_inputs(literal).paths == [literal]
  folder = tmp_path / 'My Data [v2]'
  folder.mkdir()
  inside = [_save(_uint8((4, 4, 3)), folder / name)
            for name in ('café [2].png', 'b.png')]
  (tmp_path / 'My Data v').mkdir()  # a folder the glob reading of the name would match
  _save(_uint8((4, 4, 3)), tmp_path / 'My Data v' / 'other.png')
  assert image_files.find_inputs(str(folder)).paths == sorted(inside)
  assert image_files.find_inputs(str(folder / 'café [2].png')).paths == [inside[0]]
  assert image_files.find_inputs(str(folder / '*.png')).paths == sorted(inside)
  assert image_files.find_inputs(str(folder / 'caf? *.png')).paths == [inside[0]]
  # A real glob that matches keeps its meaning.
  assert image_files.find_inputs(str(tmp_path / 'photo[0-9].jpg')).paths == [
      str(tmp_path / 'photo1.jpg')]
  with pytest.raises(FileNotFoundError, match='matches no files'):
    image_files.find_inputs(str(folder / '*.gif'))
