"""Which files are images, listing them, inputs from a path or glob, output names, file sniffing.

Free of TensorFlow, so the REST client (serving/client.py) starts instantly.

A folder's images are its files with an image extension (any case), walked recursively, but
never inside hidden folders (`.ipynb_checkpoints/`, `.git/`: copies there would train twice)
and never hidden files (macOS `._NAME.jpg` AppleDouble companions, `.DS_Store`). Every other
file that is left out is reported by name with the reason, so nothing is skipped silently;
videos (VIDEO_EXTENSIONS) are named as videos, which translate takes and training does not.
"""

import collections
import glob
import os

# The reference's IMG_EXTENSIONS (.jpg .jpeg .png .ppm .bmp .tif .tiff) plus what TF or Pillow
# also read here: GIF, WebP, the other PNM kinds, PFM (float) and MPO (camera JPEGs).
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp', '.tif', '.tiff', '.ppm',
                    '.pgm', '.pbm', '.pnm', '.pfm', '.mpo')

# Containers translate reads and writes through PyAV (deploy/video.py); never training images.
VIDEO_EXTENSIONS = ('.mp4', '.m4v', '.mov', '.avi', '.webm', '.mkv')

Listing = collections.namedtuple('Listing', ['paths', 'skipped'])
Listing.__doc__ = """Image files found (sorted paths) and what was left out: [(path, reason)]."""


def is_image_file(name):
  """True for a file name with an image extension that is not a hidden file."""
  base = os.path.basename(name)
  return not base.startswith('.') and base.lower().endswith(IMAGE_EXTENSIONS)


def is_video_file(name):
  """True for a file name with a video extension (VIDEO_EXTENSIONS) that is not a hidden file."""
  base = os.path.basename(name)
  return not base.startswith('.') and base.lower().endswith(VIDEO_EXTENSIONS)


def _skip_reason(name):
  base = os.path.basename(name)
  if is_video_file(name):
    return 'a video, not an image (--mode=translate translates videos)'
  if base.startswith('._'):
    return 'a macOS AppleDouble companion file, not an image'
  if base.startswith('.'):
    return 'a hidden file'
  return f'not an image file extension ({", ".join(IMAGE_EXTENSIONS)})'


def list_image_files(folder, recursive=True, videos=False):
  """The image files under `folder` -> Listing(paths, skipped); see the module docstring.

  videos: also list video files (VIDEO_EXTENSIONS) among the paths, for translate.
  """
  paths, skipped = [], []
  for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
    hidden = sorted(d for d in dirnames if d.startswith('.'))
    skipped.extend((os.path.join(dirpath, d) + os.sep, 'a hidden folder, not walked')
                   for d in hidden)
    dirnames[:] = sorted(d for d in dirnames if not d.startswith('.')) if recursive else []
    for name in filenames:
      path = os.path.join(dirpath, name)
      if is_image_file(name) or videos and is_video_file(name):
        paths.append(path)
      else:
        skipped.append((path, _skip_reason(name)))
    if not recursive:
      break
  return Listing(sorted(paths), sorted(skipped))


def summarize_skipped(skipped, where, limit=8):
  """One line naming the skipped files and why, e.g. for a log: '' when nothing was skipped."""
  if not skipped:
    return ''
  shown = '; '.join(f'{os.path.relpath(p, where) if where else p} ({reason})'
                    for p, reason in skipped[:limit])
  more = f'; and {len(skipped) - limit} more' if len(skipped) > limit else ''
  videos = sum(is_video_file(p) for p, _ in skipped)
  of_them = f' ({videos} of them video(s), not images)' if videos else ''
  return f'Left out {len(skipped)} file(s){of_them} of {where}: {shown}{more}.'


def collect_inputs(pattern):
  """An image file, a folder (its image files, sorted) or a glob -> list of paths.

  Raises FileNotFoundError naming the path when nothing matches (find_inputs also says what
  was left out).
  """
  return find_inputs(pattern).paths


def find_inputs(pattern, videos=False):
  """An image file, a folder (its image files, not recursive, sorted) or a glob.

  videos: a folder's video files are inputs too (translate takes them).

  A file or folder that exists under exactly that name is taken as is, even when its name reads
  as a glob ('photo[1].jpg', 'My Data [v2]'), and so is the longest leading part of a glob
  that exists ('My Data [v2]/*.jpg': the files in that folder; see _glob_files).

  Returns Listing(paths, skipped). Raises FileNotFoundError naming the path when nothing
  matches, and for a folder without image files naming what it holds instead.
  """
  if os.path.isfile(pattern):
    return Listing([pattern], [])
  if os.path.isdir(pattern):
    listing = list_image_files(pattern, recursive=False, videos=videos)
    if not listing.paths:
      held = f' It holds: {summarize_skipped(listing.skipped, pattern)}' if listing.skipped else ''
      kinds = IMAGE_EXTENSIONS + (VIDEO_EXTENSIONS if videos else ())
      raise FileNotFoundError(
          f'Folder {pattern} holds no image{" or video" if videos else ""} files '
          f'({", ".join(kinds)}).{held}')
    return listing
  if glob.has_magic(pattern):
    paths = _glob_files(pattern)
    if not paths:
      raise FileNotFoundError(f'The glob {pattern!r} matches no files.')
    return Listing(paths, [])
  raise FileNotFoundError(f'Input {pattern} does not exist (give an image file, a folder or a '
                          'glob).')


def _glob_files(pattern):
  """The files a glob matches, sorted.

  The longest leading part of the pattern's path that exists on disk under exactly that name
  is taken literally (glob.escape), as find_inputs takes whole paths: 'My Data [v2]/*.jpg'
  globs the files of the folder 'My Data [v2]', not of 'My Data 2'. When that reading matches
  nothing, or no such part has glob characters, the pattern is globbed as written.
  """
  parts = (pattern.replace(os.altsep, os.sep) if os.altsep else pattern).split(os.sep)
  for count in range(len(parts) - 1, 0, -1):
    head = os.sep.join(parts[:count])
    if head and glob.has_magic(head) and os.path.exists(head):
      literal = os.sep.join([glob.escape(head)] + parts[count:])
      paths = sorted(p for p in glob.glob(literal, recursive=True) if os.path.isfile(p))
      if paths:
        return paths
      break
  return sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))


def output_names(paths):
  """{input path: output file name}: base name + .png; colliding names keep their extension."""
  groups = {}
  for path in paths:
    groups.setdefault(os.path.splitext(os.path.basename(path))[0], []).append(path)
  names = {}
  for stem, group in groups.items():
    extensions = {os.path.splitext(path)[1].lstrip('.') for path in group}
    for path in group:
      ext = os.path.splitext(path)[1].lstrip('.')
      names[path] = f'{stem}_{ext}.png' if len(extensions) > 1 and ext else f'{stem}.png'
  seen = {}
  for path in paths:  # same names from different folders of a glob
    name = names[path]
    if name in seen:
      seen[name] += 1
      names[path] = f'{os.path.splitext(name)[0]}_{seen[name]}.png'
    else:
      seen[name] = 0
  return names


# ---------------------------------------------------------------------------------------------
# What a file holds, for error messages ("a web page", "a truncated ZIP") instead of guesses.

_SIGNATURES = (
    (b'\x89PNG\r\n\x1a\n', 'a PNG image'),
    (b'\xff\xd8\xff', 'a JPEG image'),
    (b'GIF8', 'a GIF image'),
    (b'BM', 'a BMP image'),
    (b'II*\x00', 'a TIFF image'),
    (b'MM\x00*', 'a TIFF image'),
    (b'PK\x03\x04', 'a ZIP archive'),
    (b'\x1f\x8b', 'a gzip file'),
    (b'\x80\x02', 'a Python pickle'),
    (b'\x80\x03', 'a Python pickle'),
    (b'\x80\x04', 'a Python pickle'),
    (b'\x80\x05', 'a Python pickle'),
    (b'\x00\x05\x16\x07', 'a macOS AppleDouble companion file'),
    (b'\xd0\xcf\x11\xe0', 'a Windows compound file (e.g. Thumbs.db)'),
    (b'\x89HDF\r\n\x1a\n', 'an HDF5 file'),
)
# Netpbm magics ('P1'-'P6', 'Pf' / 'PF'), each followed by whitespace.
_NETPBM = {b'P1': 'a PBM image', b'P4': 'a PBM image', b'P2': 'a PGM image',
           b'P5': 'a PGM image', b'P3': 'a PPM image', b'P6': 'a PPM image',
           b'Pf': 'a grayscale PFM (32-bit float) image',
           b'PF': 'a colour PFM (32-bit float) image'}


def describe_bytes(head, size=None):
  """What the first bytes of a file look like, in words: 'an HTML page', 'a ZIP archive', ...

  `size`, when given, is the whole file's size in bytes (an empty file is named as such).
  """
  if size == 0 or not head:
    return 'an empty file'
  if head[:4] == b'RIFF' and head[8:12] == b'WEBP':
    return 'a WebP image'
  video = _video_kind(head)
  if video:
    return video
  for magic, what in _SIGNATURES:
    if head.startswith(magic):
      return what
  if head[:2] in _NETPBM and head[2:3].isspace():
    return _NETPBM[head[:2]]
  text = head.lstrip()[:64].lower()
  if text.startswith((b'<!doctype html', b'<html', b'<head', b'<body')) or b'<html' in head[:512].lower():
    return 'an HTML page (a web page or a server\'s error page, not the file itself)'
  if text.startswith((b'<?xml', b'<')):
    return 'an XML or HTML document'
  if text.startswith((b'{', b'[')):
    return 'a JSON document'
  try:
    head.decode('utf-8')
    return 'a text file'
  except UnicodeDecodeError:
    return 'binary data of an unknown format'


def _video_kind(head):
  """'an AVI video' and the like for the first bytes of a video container, else None."""
  if head[:4] == b'RIFF' and head[8:12] == b'AVI ':
    return 'an AVI video'
  if head[4:8] == b'ftyp':
    return 'a QuickTime video (.mov)' if head[8:10] == b'qt' else 'an MP4 video'
  if head[4:8] in (b'moov', b'mdat', b'wide', b'free'):
    return 'a QuickTime video (.mov)'
  if head[:4] == b'\x1aE\xdf\xa3':
    return 'a WebM video' if b'webm' in head[:64] else 'a Matroska video (.mkv)'
  return None


def describe_file(path, head_bytes=512):
  """describe_bytes of a file on disk, with its size: 'an HTML page, 1,234 bytes'."""
  size = os.path.getsize(path)
  with open(path, 'rb') as f:
    head = f.read(head_bytes)
  return f'{describe_bytes(head, size)}, {size:,} bytes, starting {head[:16]!r}'
