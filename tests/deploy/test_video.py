"""Videos and animated images: every frame translated, timing, audio, durations and loop kept;
instance-norm statistics shared over time (deploy/frames.py); one-line errors."""

import os
import sys

import numpy as np
import pytest
from PIL import Image

from cyclegan_tf import configuration
from cyclegan_tf.data import animation
from cyclegan_tf.data import image_files
from cyclegan_tf.data import images as images_lib
from cyclegan_tf.data import synthetic
from cyclegan_tf.deploy import frames as frames_lib
from cyclegan_tf.deploy import translate
from cyclegan_tf.deploy import video as video_lib
from cyclegan_tf.models import networks


av = pytest.importorskip('av', reason='PyAV is the [video] extra: pip install -e ".[video]"')


def make_clip(path, frames=8, fps=8, width=48, height=32, audio=True):
  """A small H.264 (or VP9 / MJPEG by extension) clip of a bar sweeping right, with a 440 Hz
  sine audio track (AAC / Opus / PCM) as long as the video; returns the path."""
  muxer, codec = video_lib.container_of(str(path))
  acodec = video_lib.AUDIO_FALLBACK[muxer]
  with av.open(str(path), 'w', format=muxer) as out:
    stream = out.add_stream(codec, rate=fps)
    stream.width, stream.height = width, height
    stream.pix_fmt = 'yuvj420p' if codec == 'mjpeg' else 'yuv420p'
    if audio:
      sound = out.add_stream(acodec, rate=48000 if acodec == 'libopus' else 16000)
      sound.layout = 'mono'
    for i in range(frames):
      image = np.full((height, width, 3), 90, np.uint8)
      image[:, :(i + 1) * width // frames] = (200, 120, 40)
      frame = av.VideoFrame.from_ndarray(image, format='rgb24')
      frame.pts = i
      out.mux(stream.encode(frame))
    out.mux(stream.encode(None))
    if audio:
      rate = sound.codec_context.sample_rate
      t = np.arange(rate * frames // fps) / rate
      samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
      fmt = sound.codec_context.format.name
      for start in range(0, len(samples), 960):
        chunk = samples[None, start:start + 960]
        if fmt.startswith('s16'):
          chunk = (chunk * 32767).astype(np.int16)
        piece = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format=fmt,
                                           layout='mono')
        piece.sample_rate, piece.pts = rate, start
        out.mux(sound.encode(piece))
      out.mux(sound.encode(None))
  return str(path)


def probe(path):
  """(frames decoded, fps, duration s, (width, height), [(stream type, codec)])."""
  with av.open(str(path)) as clip:
    video = clip.streams.video[0]
    streams = [(s.type, s.codec_context.name) for s in clip.streams]
    count = sum(1 for _ in clip.decode(video=0))
    return (count, float(video.average_rate), clip.duration / 1e6,
            (video.codec_context.width, video.codec_context.height), streams)


@pytest.fixture(scope='module')
def translator():
  return translate.Translator.from_generator(
      networks.define_G(3, 3, 4, 'resnet_6blocks', name='G_A', seed=0))


def _config(default_config, **fields):
  for key, value in fields.items():
    setattr(default_config.translate, key, value)
  return default_config


# ---------------------------------------------------------------------------------------------
# Video files.


def test_a_video_keeps_frames_rate_size_duration_and_its_audio(default_config, translator,
                                                                tmp_path):
  source = make_clip(tmp_path / 'clip.mp4', frames=8, fps=8)
  target = tmp_path / 'out' / 'translated.mp4'
  summary = translate.translate_paths(_config(default_config, temporal_smoothing=0.5),
                                      source, str(target), translator=translator)
  assert summary['written'] == [str(target)] and summary['skipped'] == []
  got, want = probe(target), probe(source)
  assert got[:4] == want[:4] == (8, 8.0, 1.0, (48, 32))
  assert got[4] == [('video', 'h264'), ('audio', 'aac')]
  with av.open(source) as a, av.open(str(target)) as b:  # remuxed: the very same packets
    packets = [[bytes(p) for p in c.demux(audio=0) if p.size] for c in (a, b)]
  assert packets[0] == packets[1] and len(packets[0]) > 5
  assert not [n for n in os.listdir(target.parent) if n.startswith('.')]  # no temporary left


def test_audio_the_container_cannot_hold_is_re_encoded(translator, tmp_path):
  source = make_clip(tmp_path / 'clip.mp4', frames=4, fps=8)
  info = video_lib.translate_video(frames_lib.FrameTranslator(translator), source,
                                   str(tmp_path / 'clip.webm'))
  assert info['audio'] == 're-encoded to libopus' and info['frames'] == 4
  got = probe(tmp_path / 'clip.webm')
  assert got[0] == 4 and got[3] == (48, 32) and got[4] == [('video', 'vp9'), ('audio', 'opus')]


def test_a_folder_of_clips_and_images(default_config, translator, tmp_path):
  folder = tmp_path / 'in'
  folder.mkdir()
  make_clip(folder / 'a.avi', frames=3, audio=False)
  make_clip(folder / 'b.mkv', frames=5, audio=False)
  Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(folder / 'c.jpg')
  summary = translate.translate_paths(default_config, str(folder), str(tmp_path / 'out'),
                                      translator=translator)
  assert sorted(os.path.basename(p) for p in summary['written']) == ['a.avi', 'b.mkv', 'c.png']
  assert probe(tmp_path / 'out' / 'a.avi')[:2] == (3, 8.0)
  assert probe(tmp_path / 'out' / 'b.mkv')[0] == 5


def test_an_unreadable_video_is_one_line_naming_it(default_config, translator, tmp_path):
  bad = tmp_path / 'broken.mp4'
  bad.write_bytes(b'\x00\x00\x00\x18ftypisom' + os.urandom(300))
  with pytest.raises(configuration.DataError) as info:
    translate.translate_paths(default_config, str(bad), str(tmp_path / 'out'),
                              translator=translator)
  message = str(info.value)
  assert 'broken.mp4 is not a readable video (an MP4 video' in message and '\n' not in message


def test_a_missing_pyav_is_one_line_naming_the_extra(monkeypatch):
  monkeypatch.setitem(sys.modules, 'av', None)  # import av raises ImportError
  with pytest.raises(configuration.ConfigError, match=r'pip install -e "\.\[video\]"') as info:
    video_lib.require_av()
  assert '\n' not in str(info.value)


def test_a_video_in_a_training_folder_is_named_as_a_video(tmp_path):
  make_clip(tmp_path / 'clip.avi', frames=2, audio=False)
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / 'a.png')
  listing = image_files.list_image_files(str(tmp_path))
  assert listing.paths == [str(tmp_path / 'a.png')]
  assert listing.skipped == [(str(tmp_path / 'clip.avi'),
                              'a video, not an image (--mode=translate translates videos)')]
  line = image_files.summarize_skipped(listing.skipped, str(tmp_path))
  assert line.startswith('Left out 1 file(s) (1 of them video(s), not images)')
  assert image_files.describe_file(str(tmp_path / 'clip.avi')).startswith('an AVI video')


# ---------------------------------------------------------------------------------------------
# Animated images.


def _animation(fmt, count=5):
  rs = np.random.RandomState(3)
  frames = [rs.randint(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(count)]
  return animation.encode_animation(frames, [40 + 10 * i for i in range(count)], 2, fmt)


@pytest.mark.parametrize('fmt,ext', [('GIF', '.gif'), ('WEBP', '.webp'), ('PNG', '.png')])
def test_animated_images_keep_every_frame_their_durations_and_loop(default_config, translator,
                                                                   tmp_path, fmt, ext):
  source = tmp_path / f'anim{ext}'
  source.write_bytes(_animation(fmt))
  summary = translate.translate_paths(default_config, str(source), str(tmp_path / 'out'),
                                      translator=translator)
  assert summary['written'] == [str(tmp_path / 'out' / f'anim{ext}')]
  got = animation.read_animation(summary['written'][0])
  assert (len(got.frames), got.durations, got.loop, got.format) == (
      5, [40, 50, 60, 70, 80], 2, fmt)
  assert got.frames[0].shape == (24, 32, 3)
  # Each frame is the translation of its source frame (up to GIF's palette).
  source_frames = np.stack(animation.read_animation(str(source)).frames)
  want = images_lib.uint8_rgb_array(translator.whole(video_lib.to_model(source_frames, 3)))
  error = np.abs(np.stack(got.frames).astype(int) - want).mean()
  assert error < (12 if fmt == 'GIF' else 0.5), error


def test_animated_image_as_one_png_per_frame(default_config, translator, tmp_path):
  source = tmp_path / 'anim.gif'
  source.write_bytes(_animation('GIF', count=3))
  summary = translate.translate_paths(_config(default_config, frames_as_files=True),
                                      str(source), str(tmp_path / 'out'), translator=translator)
  assert [os.path.basename(p) for p in summary['written']] == [
      'anim_00001.png', 'anim_00002.png', 'anim_00003.png']
  with Image.open(summary['written'][2]) as image:
    assert image.size == (32, 24)


# ---------------------------------------------------------------------------------------------
# Statistics shared over time.


def test_moving_average_of_statistics():
  means = np.array([1.0, 3.0, 3.0], np.float32).reshape(3, 1, 1, 1)
  stats = [(means, means * 2)]
  assert np.allclose(frames_lib.smooth_statistics(stats, None, 0.0)[0][0], means)
  smoothed = frames_lib.smooth_statistics(stats, None, 0.5)
  assert np.allclose(smoothed[0][0].ravel(), [1.0, 2.0, 2.5])
  assert np.allclose(smoothed[0][1].ravel(), [2.0, 4.0, 5.0])
  carried = frames_lib.smooth_statistics([(means[:1] * 0, means[:1] * 0)],
                                         [(m[-1:], v[-1:]) for m, v in smoothed], 0.5)
  assert np.allclose(carried[0][0].ravel(), [1.25])
  assert frames_lib.flicker(np.array([[0, 10], [4, 10], [4, 4]], np.uint8)) == pytest.approx(
      (4 + 0 + 0 + 6) / 4)


def test_a_single_frame_is_translated_as_a_single_image(translator):
  frame = np.random.RandomState(0).uniform(-1, 1, (1, 20, 28, 3)).astype(np.float32)
  alone = np.asarray(translator.whole(frame))
  for smoothing in (0.0, 0.9):
    out = frames_lib.FrameTranslator(translator, smoothing).translate(frame)
    np.testing.assert_allclose(out, alone, atol=1e-5)


def _moving_disk_clip(count=12, size=64):
  """A still synthetic scene with a dark disk crossing it, 3 px per frame: the disk moves every
  instance-norm layer's statistics, and frame by frame the still background shifts with them."""
  base = synthetic.render_scene(3, size, 'summer').astype(np.float32) / 127.5 - 1.0
  yy, xx = np.mgrid[0:size, 0:size]
  clip = np.repeat(base[None], count, 0)
  for i in range(count):
    clip[i][(yy - 20)**2 + (xx - 8 - 3 * i)**2 < 100] = -0.9
  return clip


@pytest.fixture(scope='module')
def flicker_translator():
  return translate.Translator.from_generator(
      networks.define_G(3, 3, 8, 'resnet_6blocks', name='G_A', seed=0))


def test_shared_statistics_flicker_less_on_a_moving_object(flicker_translator):
  """Measured (random-weight resnet_6blocks, ngf 8, 64x64, 12 frames): 11.55 uint8 levels of
  mean change between consecutive frames frame by frame, 10.85 with smoothing 0.9 (-6 %). On
  a still scene with pixel noise only there is no gain (docs/deploy.md, Video)."""
  clip = _moving_disk_clip()
  flicker = {s: frames_lib.flicker(images_lib.uint8_rgb_array(
      frames_lib.FrameTranslator(flicker_translator, s).translate(clip))) for s in (0.0, 0.9)}
  assert flicker[0.9] < 0.97 * flicker[0.0], flicker


def test_tiled_frames_flicker_no_more_than_whole_ones(flicker_translator):
  """Tiles of a frame share its (smoothed) whole-frame statistics, so seams add no flicker.
  Measured: see the assertion's message."""
  clip = _moving_disk_clip()
  whole = frames_lib.FrameTranslator(flicker_translator, 0.9)
  tiled = frames_lib.FrameTranslator(flicker_translator, 0.9, tile_size=32, tile_overlap=8,
                                     stats_size=64)
  flicker_whole = frames_lib.flicker(images_lib.uint8_rgb_array(whole.translate(clip)))
  flicker_tiled = frames_lib.flicker(images_lib.uint8_rgb_array(tiled.translate(clip)))
  assert flicker_tiled <= flicker_whole * 1.02, (flicker_tiled, flicker_whole)


def test_a_batch_norm_generator_translates_clips_frame_by_frame():
  """pix2pix's U-Net with batch norm (moving averages at inference: the same for every frame)
  takes the same path, with or without smoothing, and gives its single-image outputs."""
  generator = networks.define_G(3, 3, 4, 'unet_128', norm='batch', name='G', seed=0)
  batch_norm = translate.Translator.from_generator(generator, 'unet_128')
  clip = np.random.RandomState(1).uniform(-1, 1, (3, 24, 32, 3)).astype(np.float32)
  alone = np.asarray(batch_norm.whole(clip))
  smoothed = frames_lib.FrameTranslator(batch_norm, 0.9)
  np.testing.assert_allclose(smoothed.translate(clip), alone, atol=1e-5)
  assert not smoothed.smoothed  # no instance norm: nothing to share
