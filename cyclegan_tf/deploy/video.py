"""Video files in, video files out, through PyAV (FFmpeg inside the wheel: pip install -e
".[video]").

Every frame of the first video stream is translated (deploy/frames.py: batched, with
temporally shared instance-norm statistics when config.translate.temporal_smoothing > 0) and
encoded with the source's timestamps, so the output keeps the frame count, frame rate, size and
duration. The first audio stream is copied packet by packet (remuxed, not re-encoded) when the
output container can hold its codec, else re-encoded to one it can (a log line says so); other
streams (subtitles, data) are dropped.

Codecs written: H.264 (libx264, CRF 17: visually lossless) in .mp4 / .m4v / .mov / .mkv, VP9
in .webm, Motion JPEG in .avi. 4:2:0 chroma needs even sides; odd-sized frames are encoded 4:4:4
(H.264 High 4:4:4, VP9 profile 1), which some players do not play.
"""

import logging
import os

import numpy as np

from cyclegan_tf import configuration
from cyclegan_tf import progress as progress_lib
from cyclegan_tf.data import images as images_lib

INSTALL_HINT = 'pip install -e ".[video]"'
# Output container (FFmpeg's muxer name) and video codec by file extension.
CONTAINERS = {'.mp4': ('mp4', 'libx264'), '.m4v': ('mp4', 'libx264'),
              '.mov': ('mov', 'libx264'), '.mkv': ('matroska', 'libx264'),
              '.webm': ('webm', 'libvpx-vp9'), '.avi': ('avi', 'mjpeg')}
# Audio codec to re-encode to when a container cannot hold the source's.
AUDIO_FALLBACK = {'mp4': 'aac', 'mov': 'aac', 'matroska': 'aac', 'webm': 'libopus',
                  'avi': 'pcm_s16le'}
_ENCODER_OPTIONS = {'libx264': {'crf': '17', 'preset': 'medium'},
                    'libvpx-vp9': {'crf': '20', 'b': '0', 'row-mt': '1'}}


def require_av():
  """The av module; ConfigError in one line naming the pip command when it is missing."""
  try:
    import av  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise configuration.ConfigError(
        f'Translating videos needs PyAV, which is not installed: {INSTALL_HINT}') from None
  return av


def container_of(path):
  """(FFmpeg muxer name, video codec) for a video file name; ValueError for other names."""
  ext = os.path.splitext(path)[1].lower()
  if ext not in CONTAINERS:
    raise ValueError(f'{path}: not a video file name ({", ".join(CONTAINERS)}).')
  return CONTAINERS[ext]


def _pixel_format(codec, width, height):
  even = width % 2 == 0 and height % 2 == 0
  if codec == 'mjpeg':
    return 'yuvj420p' if even else 'yuvj444p'
  return 'yuv420p' if even else 'yuv444p'


def to_model(frames_uint8, channels):
  """uint8 RGB [N, H, W, 3] -> float32 [N, H, W, channels] in [-1, 1] (gray as PIL's 'L')."""
  x = frames_uint8.astype(np.float32)
  if channels == 1:
    x = x @ np.array([[0.299], [0.587], [0.114]], np.float32)
  return x / 127.5 - 1.0


def _open_input(av, path):
  """(container, video stream, audio stream or None); DataError in one line when `path` is no
  readable video."""
  from cyclegan_tf.data import image_files  # pylint: disable=g-import-not-at-top
  try:
    source = av.open(path)
  except (av.FFmpegError, OSError, ValueError) as e:
    try:
      what = image_files.describe_file(path)
    except OSError:
      what = 'unreadable'
    raise configuration.DataError(
        f'{path} is not a readable video ({what}): {e}. Give an MP4, MOV, AVI, WebM or MKV '
        'file that a video player opens.') from None
  if not source.streams.video:
    source.close()
    raise configuration.DataError(f'{path} holds no video stream (only '
                                  f'{", ".join(s.type for s in source.streams) or "nothing"}).')
  audio = source.streams.audio[0] if source.streams.audio else None
  return source, source.streams.video[0], audio


def _add_audio(av, target, audio, muxer):
  """The output's audio stream: a copy of `audio`'s codec when `muxer` can hold it (returns
  (stream, None)), else a re-encoding one (returns (stream, resampler))."""
  name = audio.codec_context.name
  if name in target.supported_codecs:
    return target.add_stream_from_template(audio), None
  codec = AUDIO_FALLBACK[muxer]
  logging.warning('The %s container cannot hold %s audio: re-encoding it to %s.', muxer, name,
                  codec)
  rate = audio.codec_context.sample_rate or 48000
  if codec == 'libopus':
    rate = 48000  # Opus encodes 48 kHz only
  stream = target.add_stream(codec, rate=rate)
  stream.layout = audio.codec_context.layout.name
  fmt = av.codec.Codec(codec, 'w').audio_formats[0].name
  return stream, av.AudioResampler(format=fmt, layout=stream.layout, rate=rate)


def translate_video(frame_translator, source_path, target_path, muxer=None, channels=3,
                    progress_every=10.0):
  """Translates the video file `source_path` into `target_path` (see the module docstring).

  frame_translator: a frames.FrameTranslator (one per clip); muxer: FFmpeg's container name for
  the target (default: from target_path's extension; give it for a temporary name without
  one); channels: the generator's input channels (1 = gray). Returns {'frames', 'fps' (float),
  'duration_s', 'size' (width, height), 'audio': None, 'copied' or 're-encoded to CODEC'}.
  Raises ConfigError when PyAV is missing and DataError (one line) when the source is no
  readable video; FFmpeg errors while writing propagate (av.FFmpegError, an OSError).
  """
  av = require_av()
  muxer = muxer or container_of(target_path)[0]
  codec = next(c for m, c in CONTAINERS.values() if m == muxer)
  source, video, audio = _open_input(av, source_path)
  name = os.path.basename(source_path)
  with source, av.open(target_path, 'w', format=muxer) as target:
    width, height = video.codec_context.width, video.codec_context.height
    rate = video.average_rate or video.guessed_rate or 25
    out_video = target.add_stream(codec, rate=rate, options=_ENCODER_OPTIONS.get(codec, {}))
    out_video.width, out_video.height = width, height
    out_video.pix_fmt = _pixel_format(codec, width, height)
    out_video.codec_context.time_base = video.time_base  # keep every source timestamp
    if codec == 'mjpeg':
      out_video.codec_context.qscale = True  # fixed quality: JPEG q 2 (x FF_QP2LAMBDA)
      out_video.codec_context.global_quality = 2 * 118
    out_audio, resampler = (_add_audio(av, target, audio, muxer) if audio else (None, None))
    progress = progress_lib.Progress(f'Translated {name}', int(video.frames or 0),
                                     unit='frames', every=progress_every)
    pending, count = [], 0

    def flush():
      batch = np.stack([f for f, _ in pending])
      out = frame_translator.translate(to_model(batch, channels))
      for result, (_, pts) in zip(images_lib.uint8_rgb_array(out), pending):
        frame = av.VideoFrame.from_ndarray(result, format='rgb24')
        frame.pts, frame.time_base = pts, video.time_base
        target.mux(out_video.encode(frame))
      progress.update(len(pending))
      pending.clear()

    streams = [video] + ([audio] if audio else [])
    for packet in source.demux(streams):
      if packet.stream is audio:
        if packet.dts is None:
          continue  # the demuxer's end-of-stream marker
        if resampler is None:
          packet.stream = out_audio
          target.mux(packet)
        else:
          for decoded in packet.decode():
            for frame in resampler.resample(decoded):
              target.mux(out_audio.encode(frame))
        continue
      for decoded in packet.decode():
        pts = decoded.pts  # None in some AVIs: the frame's place at the stream's rate
        if pts is None:
          pts = round(count / rate / video.time_base)
        pending.append((decoded.to_ndarray(format='rgb24'), pts))
        count += 1
        if len(pending) >= frame_translator.batch_size:
          flush()
    if pending:
      flush()
    target.mux(out_video.encode(None))
    if resampler is not None:
      target.mux(out_audio.encode(None))
  if not count:
    raise configuration.DataError(f'{source_path}: its video stream holds no frame.')
  return {'frames': count, 'fps': float(rate), 'size': (width, height),
          'duration_s': float(video.duration * video.time_base) if video.duration else None,
          'audio': None if not audio else 'copied' if resampler is None
                   else f're-encoded to {out_audio.codec_context.name}'}
