"""Flicker of translated clips, frame by frame and with instance-norm statistics shared over
time (config.translate.temporal_smoothing, deploy/frames.py).

  python -m benchmarks.flicker                                  # untrained resnet_6blocks, ngf 8
  python -m benchmarks.flicker --workdir=runs/quickstart        # a trained run's a2b generator
  python -m benchmarks.flicker --saved_model=E/cyclegan_a2b     # an export
  python -m benchmarks.flicker --photo=PATH.jpg --smoothing=0.9

Flicker is the mean absolute change between consecutive output frames, in uint8 levels; the
input change is the same figure for the input clip. Clips (made here, nothing downloaded):
  synthetic noise      a still synthetic_seasons scene (data/synthetic.py) with Gaussian pixel
                       noise of 2 levels per frame
  synthetic jitter     the same with a random 1-pixel camera shake per frame
  synthetic object     the still scene with a dark disk crossing it, 2 px per frame
  photo pan/zoom       a slow pan and zoom over one photo (default: the first of
                       /work/shared/data/cat2dog/testA), --photo_frames frames of 256x256
Prints a table with the CPU model and the command.
"""

import argparse
import os
import sys
import time

import numpy as np

from cyclegan_tf import hardware

DEFAULT_PHOTO_DIR = '/work/shared/data/cat2dog/testA'


def synthetic_clips(size, count, seed=0):
  """{name: float32 [count, size, size, 3] in [-1, 1]} of the still synthetic scene."""
  from cyclegan_tf.data import synthetic  # pylint: disable=g-import-not-at-top
  rs = np.random.RandomState(seed)
  pad = 2
  big = synthetic.render_scene(3, size + 2 * pad, 'summer').astype(np.float32)
  base = big[pad:-pad, pad:-pad]
  noise = lambda: rs.normal(0, 2.0, base.shape)  # pylint: disable=unnecessary-lambda-assignment
  clips = {'synthetic noise': [base + noise() for _ in range(count)], 'synthetic jitter': []}
  for _ in range(count):
    dy, dx = rs.randint(-1, 2, 2)
    clips['synthetic jitter'].append(big[pad + dy:pad + dy + size, pad + dx:pad + dx + size]
                                     + noise())
  yy, xx = np.mgrid[0:size, 0:size]
  radius = size / 8
  clips['synthetic object'] = []
  for i in range(count):
    frame = base.copy()
    frame[(yy - size * 0.35)**2 + (xx - radius - 2 * i)**2 < radius**2] = 25.0
    clips['synthetic object'].append(frame)
  return {k: np.clip(np.stack(v), 0, 255) / 127.5 - 1.0 for k, v in clips.items()}


def photo_clip(path, count, size=256):
  """A slow pan and zoom over one photo: float32 [count, size, size, 3] in [-1, 1]."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(path) as image:
    photo = np.asarray(image.convert('RGB'), np.float32) / 127.5 - 1.0
  height, width = photo.shape[:2]
  boxes = []
  for i in range(count):
    t = i / max(count - 1, 1)
    side = min(height, width) * (0.9 - 0.15 * t)  # zoom in by a sixth
    y0 = (height - side) * (0.5 - 0.2 * t + 0.2 * t * t)
    x0 = (width - side) * (0.2 + 0.6 * t)  # pan left to right
    boxes.append([y0 / height, x0 / width, (y0 + side) / height, (x0 + side) / width])
  frames = tf.image.crop_and_resize(photo[None], boxes, [0] * count, [size, size],
                                    method='bilinear')
  return np.clip(frames.numpy(), -1, 1)


def load(args):
  from configs import default  # pylint: disable=g-import-not-at-top
  from cyclegan_tf.deploy import translate  # pylint: disable=g-import-not-at-top
  from cyclegan_tf.models import networks  # pylint: disable=g-import-not-at-top
  if args.workdir or args.saved_model:
    return translate.load_translator(default.get_config(), workdir=args.workdir,
                                     saved_model=args.saved_model)
  generator = networks.define_G(3, 3, args.ngf, args.netG, name='G_A', seed=0)
  return translate.Translator.from_generator(generator, args.netG)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', help='a trained run (its a2b generator)')
  parser.add_argument('--saved_model', help='an exported SavedModel')
  parser.add_argument('--netG', default='resnet_6blocks')
  parser.add_argument('--ngf', type=int, default=8, help='untrained generator width')
  parser.add_argument('--smoothing', type=float, default=0.9)
  parser.add_argument('--size', type=int, default=128, help='synthetic clips\' side')
  parser.add_argument('--frames', type=int, default=30, help='synthetic clips\' frames')
  parser.add_argument('--photo', help=f'photo to pan over (default: first of {DEFAULT_PHOTO_DIR})')
  parser.add_argument('--photo_frames', type=int, default=60)
  args = parser.parse_args(argv)
  from cyclegan_tf.data import images  # pylint: disable=g-import-not-at-top
  from cyclegan_tf.deploy import frames as frames_lib  # pylint: disable=g-import-not-at-top

  translator = load(args)
  clips = synthetic_clips(args.size, args.frames)
  photo = args.photo
  if not photo and os.path.isdir(DEFAULT_PHOTO_DIR):
    photo = os.path.join(DEFAULT_PHOTO_DIR, sorted(os.listdir(DEFAULT_PHOTO_DIR))[0])
  if photo:
    clips[f'photo pan/zoom ({os.path.basename(photo)})'] = photo_clip(photo, args.photo_frames)
  print(f'# {" ".join(["python -m benchmarks.flicker"] + sys.argv[1:])}')
  print(f'# {hardware.cpu_description()}; {translator.description}; smoothing '
        f'{args.smoothing}')
  print('| clip | frames | size | flicker frame by frame | flicker shared | ratio | '
        'input change | s/frame shared |')
  print('| --- | --- | --- | --- | --- | --- | --- | --- |')
  for name, clip in clips.items():
    clip = clip.astype(np.float32)
    plain = frames_lib.FrameTranslator(translator, 0.0).translate(clip)
    start = time.perf_counter()
    shared = frames_lib.FrameTranslator(translator, args.smoothing).translate(clip)
    seconds = (time.perf_counter() - start) / len(clip)
    f_plain = frames_lib.flicker(images.uint8_rgb_array(plain))
    f_shared = frames_lib.flicker(images.uint8_rgb_array(shared))
    f_input = frames_lib.flicker(images.uint8_rgb_array(clip))
    print(f'| {name} | {len(clip)} | {clip.shape[2]}x{clip.shape[1]} | {f_plain:.2f} | '
          f'{f_shared:.2f} | {f_shared / max(f_plain, 1e-9):.3f} | {f_input:.2f} | '
          f'{seconds:.3f} |', flush=True)


if __name__ == '__main__':
  main()
