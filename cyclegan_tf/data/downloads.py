"""Files fetched over HTTP once and kept (published datasets and models): streamed to a
temporary name, checked, and renamed only when complete, so an interrupted or wrong download
never leaves a file that looks usable.
"""

import http.client
import os
import urllib.error
import urllib.request

from absl import logging

from cyclegan_tf import configuration
from cyclegan_tf import progress as progress_lib
from cyclegan_tf.data import image_files

CHUNK_BYTES = 1 << 20


class DownloadError(configuration.DataError):
  """A file could not be fetched; the message names the URL and what to do."""


def cache_dir(configured, kind):
  """`configured` (expanded), or $XDG_CACHE_HOME/cyclegan_tf/<kind> (~/.cache/...)."""
  if configured:
    return os.path.abspath(os.path.expanduser(configured))
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'cyclegan_tf', kind)


def what_arrived(path):
  """What a downloaded file looks like, in words (an HTML page, a truncated zip, ...)."""
  return image_files.describe_file(path, head_bytes=512)


def download(url, target, *, check=None, offline_hint='', url_field='the URL', timeout_s=60.0,
             progress_s=10.0):
  """Streams url to target (via target.part-<pid>, renamed when complete and checked).

  check(tmp_path, url) raises DownloadError when what arrived is not what was asked for.
  Logs '<url>: k/n bytes, r bytes/s, ETA' every progress_s seconds (seconds). Raises
  DownloadError for an HTTP error (naming url_field, the config field to check), an
  unreachable server (with offline_hint: how to get the file by hand), an incomplete file or a
  failed check; nothing is left at target then. Returns target.
  """
  os.makedirs(os.path.dirname(target), exist_ok=True)
  tmp = f'{target}.part-{os.getpid()}'
  received = 0
  try:
    try:
      with urllib.request.urlopen(url, timeout=timeout_s) as response:
        length = response.headers.get('Content-Length')
        expected = int(length) if length and length.isdigit() else None
        progress = progress_lib.Progress(f'Downloading {url}', expected or 0, unit='bytes',
                                         every=progress_s)
        with open(tmp, 'wb') as f:
          while True:
            chunk = response.read(CHUNK_BYTES)
            if not chunk:
              break
            f.write(chunk)
            received += len(chunk)
            progress.update(len(chunk))
    except urllib.error.HTTPError as e:
      body = e.read(512) if e.fp else b''
      raise DownloadError(
          f'{url} answered HTTP {e.code} {e.reason} ({image_files.describe_bytes(body)}, '
          f'starting {body[:16]!r}). Check the name and {url_field}.') from None
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as e:
      if received:
        raise DownloadError(f'The download of {url} broke after {received:,} bytes '
                            f'({getattr(e, "reason", e)}). Run the command again.') from None
      raise DownloadError(f'Could not download {url} ({getattr(e, "reason", e)}). '
                          f'{offline_hint}'.rstrip()) from None
    size = os.path.getsize(tmp)
    if expected is not None and size != expected:
      raise DownloadError(f'The download of {url} is incomplete: {size:,} of {expected:,} '
                          f'bytes arrived ({what_arrived(tmp)}). Run the command again.')
    if check is not None:
      check(tmp, url)
    os.replace(tmp, target)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  logging.info('Downloaded %s to %s (%d bytes).', url, target, os.path.getsize(target))
  return target
