"""Files in, files out: translate images of any size with a run's generator or an export.

  python main.py --mode=translate --workdir=W --input=PATH --output=DIR [--direction=BtoA]
  python main.py --mode=translate --saved_model=E/cyclegan_a2b --input=PATH --output=DIR
  python main.py --mode=translate --model=E/litert/cyclegan_a2b --input=PATH --output=DIR

--model takes a SavedModel or a LiteRT (.tflite) / ONNX (.onnx) file or folder (runtimes.py):
a fixed-size file takes images up to its size (reflect-padded to it) and larger ones in tiles
of its size; LiteRT and ONNX files have no shared instance-norm statistics for tiles.

PATH is an image file, a folder (its image and video files, not recursive) or a glob; videos
and animated GIF / WebP / APNG files are translated frame by frame into the same kind of file
(docs/deploy.md, Video; deploy/frames.py, deploy/video.py). Every input is
written to DIR as a PNG named after it (``photo.jpg`` -> ``DIR/photo.png``) at its own size,
upright (EXIF orientation applied); inputs whose names would collide (``a.jpg`` and ``a.png``)
keep their extension in the name (``a_jpg.png``). An output that would replace one of the
inputs (DIR is the input folder) is refused before anything is written, and so is a DIR that
cannot be written (checked with a probe file first: an OSError naming it). Each PNG is written
to a hidden temporary file beside its final name and renamed into place, so a full disk or a
killed run never leaves a truncated PNG under the final name. Unreadable files (float images
with NaN pixels among them) are skipped with a warning saying what they hold and why, and
counted at the end; when none is readable the run fails with that list. Folders show progress
(count, images/s, ETA).

Any size works: sides that are not multiples of the generator's size multiple are
reflect-padded and cropped back (inference.pad_to_multiple). Images whose longer side exceeds
config.translate.tile_size are translated in overlapping tiles (tile_overlap pixels, blended
with cosine ramps), so memory stays bounded by the tile size.

Instance norm and tiles: each instance-norm layer normalises by the mean and variance of the
image it sees, so tiles translated on their own would each get their own statistics (visible
seams and colour shifts). Tiles here share one set: a first pass over the whole image,
downscaled so that its longer side is at most `stats_size` (default tile_size), records every
instance-norm layer's mean and variance, and every tile is translated with those fixed values
(inference.run_generator); docs/deploy.md gives the measured gaps to whole-image translation.
Batch norm and dropout follow config.model.test_mode (models/test_time.py; a SavedModel keeps
its export's): 'eval' uses the moving averages, the same for every tile; 'train' normalises per
image, sharing statistics between tiles as instance norm does, with a seeded dropout mask.
"""

import contextlib
import logging
import os

import numpy as np
import tensorflow as tf

from cyclegan_tf import configuration
from cyclegan_tf.deploy import export
from cyclegan_tf.deploy import frames as frames_lib
from cyclegan_tf.deploy import serving_model
from cyclegan_tf.deploy import tiling
from cyclegan_tf.data import animation
from cyclegan_tf.data import image_files
from cyclegan_tf.data import images as images_lib
from cyclegan_tf.models import color
from cyclegan_tf.models import family
from cyclegan_tf.models import inference
from cyclegan_tf import progress as progress_lib
from cyclegan_tf import run_dir
from cyclegan_tf.deploy import runtimes
from cyclegan_tf.deploy import video as video_lib

DIRECTIONS = ('AtoB', 'BtoA')
PROGRESS_SECONDS = 10  # at most one progress line this often
output_names = image_files.output_names
tile_starts = tiling.tile_starts  # kept here for callers of translate.*
translate_image = tiling.translate_image


# ---------------------------------------------------------------------------------------------
# Translators: one interface over a Keras generator and an exported SavedModel.


class Translator:
  """Wraps the three functions translation needs (same for Keras models and exports).

  whole(images) -> outputs; norm_statistics(images) -> statistics;
  with_statistics(images, statistics) -> outputs. Images are [N, H, W, C] float32 in [-1, 1]
  of any size; statistics support is optional (None).
  """

  def __init__(self, whole, input_channels, norm_statistics=None, with_statistics=None,
               description='', max_tile=None):
    self.whole = whole
    self.input_channels = int(input_channels)
    self.norm_statistics = norm_statistics
    self.with_statistics = with_statistics
    self.description = description
    self.max_tile = max_tile  # a fixed-size edge model's side: tiles are at most this

  @property
  def shares_statistics(self):
    return self.norm_statistics is not None and self.with_statistics is not None

  @classmethod
  def from_generator(cls, generator, netG=None, test_mode='eval', test_seed=0):
    padded = inference.PaddedGenerator(generator, netG, test_mode, test_seed)
    return cls(padded.translate, padded.input_channels, padded.norm_statistics,
               padded.translate_with_norm_statistics,
               description=f'generator {generator.name} (test mode {test_mode})')

  def through_lab(self):
    """This translator of a colorization generator (L -> ab) as one of pictures: RGB or gray
    in, colour out (color.LabPictures)."""
    lightness = lambda images, *args: self.norm_statistics(color.lightness(images), *args)
    return Translator(color.LabPictures(self.whole), 3,
                      lightness if self.norm_statistics else None,
                      color.LabPictures(self.with_statistics) if self.with_statistics else None,
                      description=f'{self.description} (L -> ab, in Lab)', max_tile=self.max_tile)

  @classmethod
  def from_saved_model(cls, path):
    model = serving_model.load_serving_model(path)
    shared = model.supports_shared_statistics
    if not shared:
      logging.warning('%s has no norm_statistics functions: large images are tiled without '
                      'shared instance-norm statistics (visible seams are likely).', model.path)
    translator = cls(model, model.input_channels,
                     model.norm_statistics if shared else None,
                     model.translate_with_norm_statistics if shared else None,
                     description=f'SavedModel {model.path}' +
                     (f' (test mode {model.test_mode})' if model.test_mode else ''))
    # L in, ab out: a colorization export, whose pictures are made in Lab.
    lab = (model.input_channels, model.output_channels) == (1, 2)
    return translator.through_lab() if lab else translator

  # Edge models: LiteRT / ONNX files through runtimes.py.
  @classmethod
  def from_edge_model(cls, model):
    """A runtimes.EdgeModel: no shared statistics; a fixed-size model pads smaller images to
    its size (runtimes.pad_to_size) and takes larger ones in tiles of its size."""
    max_tile = min(model.fixed_size) if model.fixed_size else None
    logging.info('%s: images%s are tiled with each tile normalised on its own (LiteRT and ONNX '
                 'files hold no shared-statistics functions)%s.', model.description,
                 f' over {max_tile} px' if max_tile else ' over config.translate.tile_size',
                 '; smaller images are reflect-padded to its fixed size' if max_tile else '')
    return cls(model.translate, model.input_channels, description=model.description,
               max_tile=max_tile)


def _resolve_saved_model(path, config, direction):
  """An export root E (holding model folders) picks the model of `direction`: the configured
  name (config.export.model_name_*), else its one folder named *_a2b (*_b2a for BtoA)."""
  if (not os.path.isdir(path) or export.list_versions(path) or
      os.path.isfile(os.path.join(path, 'saved_model.pb'))):
    return path
  suffix = 'a2b' if direction == 'AtoB' else 'b2a'
  candidate = os.path.join(path, family.export_name(config.model, config.export, suffix))
  if os.path.isdir(candidate):
    return candidate
  matches = sorted(e for e in os.listdir(path) if e.endswith(f'_{suffix}') and
                   os.path.isdir(os.path.join(path, e)))
  return os.path.join(path, matches[0]) if len(matches) == 1 else path


def load_translator(config, workdir=None, saved_model=None, direction='AtoB', step=None,
                    model=None):
  """A Translator from a run's checkpoint (its model's a2b generator for AtoB, b2a for BtoA:
  G_A and G_B for cycle_gan), a SavedModel, or
  `model`: a SavedModel, .tflite or .onnx file or folder (format by extension or contents)."""
  if direction not in DIRECTIONS:
    raise ValueError(f'direction={direction!r}; allowed: {", ".join(DIRECTIONS)}.')
  if sum(bool(x) for x in (workdir, saved_model, model)) != 1:
    raise ValueError('Give exactly one of workdir (a run), saved_model or model (an export).')
  # Edge models.
  if model:
    if not os.path.exists(model):
      raise FileNotFoundError(f'Model path {model} does not exist.')
    path = _resolve_saved_model(model, config, direction)
    if runtimes.is_edge_model(path):
      return Translator.from_edge_model(runtimes.load(path))
    return Translator.from_saved_model(path)
  if saved_model:
    if not os.path.exists(saved_model):
      raise FileNotFoundError(f'SavedModel path {saved_model} does not exist.')
    return Translator.from_saved_model(_resolve_saved_model(saved_model, config, direction))
  generators, _, run_config = run_dir.restore_generators(workdir, step, config)
  by_direction = family.by_direction(run_config.model, generators)
  wanted = 'a2b' if direction == 'AtoB' else 'b2a'
  if wanted not in by_direction:
    raise configuration.ConfigError(
        f'direction={direction!r}: the run\'s model ({run_config.model.name}) has '
        f'no {wanted} generator; it translates {", ".join(sorted(by_direction))} only.')
  translator = Translator.from_generator(by_direction[wanted], run_config.model.netG,
                                         *export.test_mode_of(config))
  return translator.through_lab() if run_config.model.name == 'colorization' else translator


def _refuse_overwriting_inputs(paths, output, names):
  """Raises FileExistsError when an output file would replace one of the inputs."""
  inputs = {os.path.realpath(p) for p in paths}
  clashes = sorted(p for p in paths
                   if os.path.realpath(os.path.join(output, names[p])) in inputs)
  if clashes:
    raise FileExistsError(
        f'Translating into {output} would overwrite input file(s) {", ".join(clashes)} with '
        'their translations. Choose another --output folder; nothing was written.')


def _temporary_name(path):
  """A hidden name beside `path` for writing it: never listed as an input (hidden files are
  skipped) and on the same file system, so os.replace is atomic."""
  folder, name = os.path.split(path)
  return os.path.join(folder, f'.{name}.tmp-{os.getpid()}')


def _write_bytes(path, data):
  """Writes `data` to a new file `path` and flushes it to disk (errors such as a full disk
  surface here, not after the rename)."""
  with open(path, 'wb') as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())


def write_file_atomically(path, data, write=None):
  """Writes bytes to `path` through a temporary file renamed into place (os.replace).

  write: instead of bytes, a function that writes the temporary file given its path (a video
  encoder). On any error (OSError such as ENOSPC, EACCES, EROFS; KeyboardInterrupt) the
  temporary file is removed and the error re-raised: `path` is either the whole new file or
  untouched.
  """
  tmp = _temporary_name(path)
  try:
    if write is None:
      _write_bytes(tmp, data)
    else:
      write(tmp)
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise


def check_writable_folder(folder):
  """Creates `folder` if needed and checks that files can be created in it (a probe file).

  Raises OSError (filename = the folder) when it cannot be created or written: read-only file
  system, no permission, a file in the way.
  """
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError as e:
    raise type(e)(e.errno, f'Cannot create the output folder ({e.strerror})', folder) from e
  probe = _temporary_name(os.path.join(folder, 'write-probe'))
  try:
    _write_bytes(probe, b'')
  except OSError as e:
    with contextlib.suppress(OSError):
      os.remove(probe)
    raise type(e)(e.errno, f'Cannot write into the output folder ({e.strerror})',
                  folder) from e
  os.remove(probe)


def _describe_unreadable(path, reason):
  try:
    return f'{path}: {image_files.describe_file(path)} ({reason})'
  except OSError:
    return f'{path}: {reason}'


def _clip_name(name, path):
  """A clip's output name: its PNG name with the input's extension ('clip.png' -> 'clip.mp4')."""
  return os.path.splitext(name)[0] + os.path.splitext(path)[1].lower()


def _translate_clip(config, translator, path, target, tile_args):
  """Translates a video or an animated image into `target` (frames_as_files: one PNG per
  frame, TARGET_00001.png, ...); returns the written paths. Raises DataError for an unreadable
  video, ConfigError when PyAV is missing."""
  frames = frames_lib.FrameTranslator(translator, config.translate.temporal_smoothing,
                                      *tile_args)
  if image_files.is_video_file(path):
    muxer = video_lib.container_of(target)[0]
    info = {}
    write_file_atomically(target, None, lambda tmp: info.update(video_lib.translate_video(
        frames, path, tmp, muxer, translator.input_channels, PROGRESS_SECONDS)))
    logging.info('%s: %d frames, %.3g fps, %dx%d, audio %s -> %s', path, info['frames'],
                 info['fps'], *info['size'], info['audio'] or 'none', target)
    return [target]
  clip = animation.read_animation(path)
  channels = translator.input_channels
  inputs = video_lib.to_model(np.stack(clip.frames), channels)
  out = images_lib.uint8_rgb_array(frames.translate(inputs))
  if not config.translate.frames_as_files:
    write_file_atomically(target, animation.encode_animation(out, clip.durations, clip.loop,
                                                             clip.format))
    return [target]
  stem = os.path.splitext(target)[0]
  written = [f'{stem}_{i + 1:05d}.png' for i in range(len(out))]
  for name, frame in zip(written, out):
    write_file_atomically(name, images_lib.png_bytes(frame))
  return written


def translate_paths(config, input, output, workdir=None,  # pylint: disable=redefined-builtin
                    saved_model=None, direction='AtoB', step=None, translator=None, model=None):
  """Translates a file, folder or glob into PNGs in `output`; returns a summary dict.

  Videos (image_files.VIDEO_EXTENSIONS) and animated GIF / WebP / APNG files are translated
  frame by frame (deploy/frames.py) into a file of the same kind (``clip.mp4`` ->
  ``DIR/clip.mp4``; config.translate.frames_as_files: one PNG per frame of an animated image).
  One video in with `output` a video file name (``out.mp4``) writes that file.
  Summary: {'written': [output paths], 'skipped': [(input path, reason)], 'tiled': count}.
  Unreadable images and videos are skipped with a warning. Raises FileExistsError (nothing written) when
  an output would replace an input, OSError (filename set) when `output` cannot be created or
  written (before any translation) or a PNG cannot be written (no partial file is left under
  its name), and DataError when no input could be read.
  """
  listing = image_files.find_inputs(input, videos=True)
  paths = listing.paths
  if listing.skipped:
    logging.warning('%s', image_files.summarize_skipped(listing.skipped, input))
  names = output_names(paths)
  clips = {p for p in paths if image_files.is_video_file(p) or animation.is_animated(p)}
  names.update({p: _clip_name(names[p], p) for p in clips})
  if len(paths) == 1 and paths[0] in clips and image_files.is_video_file(output):
    output, names[paths[0]] = os.path.split(os.path.abspath(output))  # one video -> that file
  _refuse_overwriting_inputs(paths, output, names)
  check_writable_folder(output)
  if translator is None:
    translator = load_translator(config, workdir=workdir, saved_model=saved_model,
                                 direction=direction, step=step, model=model)
  tile_size = int(config.translate.tile_size)
  tile_overlap = int(config.translate.tile_overlap)
  # Edge models: a fixed-size model takes tiles of at most its size.
  max_tile = getattr(translator, 'max_tile', None)  # duck-typed translators may lack it
  if max_tile and max_tile < tile_size:
    tile_size = max_tile
    tile_overlap = min(tile_overlap, tile_size // 4)
  stats_size = int(config.translate.stats_size) or None  # 0: tile_size
  written, skipped, tiled = [], [], 0
  progress = progress_lib.Progress('Translated', len(paths) if len(paths) > 1 else 0,
                                    every=PROGRESS_SECONDS)
  for path in paths:
    if path in clips:
      try:
        written += _translate_clip(config, translator, path, os.path.join(output, names[path]),
                                   (tile_size, tile_overlap, stats_size))
      except configuration.DataError as e:
        logging.warning('Skipping %s', e)
        skipped.append((path, str(e)))
      progress.update()
      continue
    try:
      image = images_lib.read_image_file(path, translator.input_channels).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, tf.errors.UnknownError,
            OSError) as e:
      reason = _describe_unreadable(path, images_lib.decode_error_reason(e))
      logging.warning('Skipping %s', reason)
      skipped.append((path, reason))
      continue
    if max(image.shape[:2]) > tile_size:
      tiled += 1
    result = translate_image(translator, image, tile_size, tile_overlap, stats_size=stats_size)
    target = os.path.join(output, names[path])
    write_file_atomically(target, images_lib.encode_png(result).numpy())
    written.append(target)
    progress.update()
  summary = {'written': written, 'skipped': skipped, 'tiled': tiled}
  done_clips = len(clips - {p for p, _ in skipped})
  print(f'Translated {len(paths) - len(skipped) - done_clips} image(s)'
        f'{f" and {done_clips} video(s) or animated image(s)" if clips else ""} with '
        f'{translator.description} into {output}'
        f'{f" ({tiled} in tiles)" if tiled else ""}; skipped {len(skipped)} unreadable'
        f'{": " + ", ".join(p for p, _ in skipped) if skipped else ""}.')
  if skipped and not written:
    raise configuration.DataError(
        f'None of the {len(skipped)} input(s) could be read as an image or video: ' +
        '; '.join(reason for _, reason in skipped) +
        '. Give JPEG, PNG, BMP, GIF, WebP, TIFF or PPM files, or MP4, MOV, AVI, WebM or MKV.')
  return summary
