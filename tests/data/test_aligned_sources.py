"""Paired data: the reference's aligned A|B files (halves, one crop and flip per pair,
direction), the built-in scenes in paired form, colorization photos, and the reference's pix2pix
datasets fetched from a (local) server."""

import functools
import http.server
import io
import os
import tarfile
import threading

import numpy as np
from PIL import Image
import pytest

from configs import colorization as colorization_config
from configs import pix2pix as pix2pix_config
from cyclegan_tf import configuration
from cyclegan_tf.data import aligned_sources
from cyclegan_tf.data import downloads
from cyclegan_tf.data import input_pipeline
from cyclegan_tf.models import color

H, W = 40, 80  # each file: A (left 40 columns) | B (right 40 columns)


def _pair_image(index, width=W):
  """A|B image whose pixels name themselves: R = row * 6, G = column within the half * 6,
  B = 100 + index * 10 in A and 200 - index * 10 in B (PNG: lossless)."""
  half = width // 2
  rows, cols = np.mgrid[0:H, 0:width]
  in_b = cols >= half
  pixels = np.zeros((H, width, 3), np.uint8)
  pixels[..., 0] = rows * 6
  pixels[..., 1] = np.where(in_b, cols - half, cols) * 6
  pixels[..., 2] = np.where(in_b, 200 - index * 10, 100 + index * 10)
  return pixels


def _aligned_folder(root, n_train=5, n_test=2, width=W):
  for phase, n in (('train', n_train), ('test', n_test)):
    os.makedirs(root / phase, exist_ok=True)
    for i in range(n):
      Image.fromarray(_pair_image(i, width)).save(root / phase / f'{i:03d}.png')
  return str(root)


def _config(root, **overrides):
  config = pix2pix_config.get_config()
  config.model.netG, config.model.ngf, config.model.ndf = 'resnet_6blocks', 4, 4
  config.data.dataset = 'folder'
  config.data.root = root
  config.data.preprocess = 'crop'  # no resize: pixels keep their values
  config.data.crop_size = 32
  config.train.batch_size = 1
  for key, value in overrides.items():
    group, name = key.split('.')
    config[group][name] = value
  configuration.validate(config)
  return config


def _levels(image):
  return np.round((np.asarray(image) + 1) * 127.5).astype(int)


def test_aligned_pairs_share_their_crop_and_flip_and_stay_paired(tmp_path):
  pipeline = input_pipeline.InputPipeline(_config(_aligned_folder(tmp_path)))
  assert pipeline.info.epoch_size == 5 and pipeline.steps_per_epoch == 5
  seen, flipped = set(), 0
  for epoch in range(4):
    for batch in pipeline.train_dataset(epoch):
      a, b = _levels(batch['A'][0]), _levels(batch['B'][0])
      assert a.shape == b.shape == (32, 32, 3)
      # Same rows and columns of their halves: the pair shares one crop and one flip.
      np.testing.assert_array_equal(a[..., :2], b[..., :2])
      index = (a[0, 0, 2] - 100) // 10
      assert b[0, 0, 2] == 200 - index * 10  # B is the same file's right half
      seen.add(int(index))
      flipped += int(a[0, 0, 1] > a[0, -1, 1])
  assert seen == set(range(5))
  assert 0 < flipped < 20  # flips happen, not always


def test_direction_swaps_the_halves_and_the_test_split_is_paired(tmp_path):
  root = _aligned_folder(tmp_path)
  pipeline = input_pipeline.InputPipeline(_config(root, **{'data.direction': 'BtoA'}))
  batch = next(iter(pipeline.train_dataset(0)))
  assert _levels(batch['A'][0])[0, 0, 2] >= 160  # A is now the right half (200 - 10 i)
  paired = pipeline.paired_test_set()
  assert paired.a.shape == paired.b_true.shape == (2, 32, 32, 3)
  np.testing.assert_array_equal(_levels(paired.a)[..., 2][:, 0, 0], [200, 190])
  np.testing.assert_array_equal(_levels(paired.b_true)[..., 2][:, 0, 0], [100, 110])


def test_an_odd_width_splits_at_half_the_width_rounded_down(tmp_path):
  root = tmp_path / 'odd'
  os.makedirs(root / 'train')
  os.makedirs(root / 'val')  # no test/: val/ is the test split (the maps layout)
  pixels = _pair_image(0, width=81)
  Image.fromarray(pixels).save(root / 'train' / 'x.png')
  Image.fromarray(pixels).save(root / 'val' / 'x.png')
  config = _config(str(root), **{'data.preprocess': 'none', 'model.netG': 'unet_128'})
  pipeline = input_pipeline.InputPipeline(config)
  a, b = pipeline.train['A'], pipeline.train['B']
  assert tuple(a.sizes[0]) == (40, 40) and tuple(b.sizes[0]) == (40, 41)


def test_the_unaligned_layout_given_as_aligned_names_the_fix(tmp_path):
  for name in ('trainA', 'trainB', 'testA', 'testB'):
    os.makedirs(tmp_path / name)
  with pytest.raises(configuration.DataError, match='unaligned CycleGAN layout; use '
                     '--config.data.dataset_mode=unaligned'):
    input_pipeline.InputPipeline(_config(str(tmp_path)))


def test_synthetic_scenes_in_paired_form_are_the_same_scene_in_two_seasons():
  config = pix2pix_config.get_config()
  config.model.netG, config.model.ngf, config.model.ndf = 'resnet_6blocks', 4, 4
  config.data.load_size, config.data.crop_size = 36, 32
  config.data.synthetic_train_size, config.data.synthetic_test_size = 6, 2
  pipeline = input_pipeline.InputPipeline(config)
  arrays = pipeline.source.arrays('train')
  assert set(arrays) == {'A', 'B_of_A'}
  np.testing.assert_array_equal(pipeline.epoch_plan(0)['A'], pipeline.epoch_plan(0)['B'])
  paired = pipeline.paired_test_set()
  assert paired.a.shape == paired.b_true.shape == (2, 32, 32, 3)


def test_colorization_feeds_l_and_ab_of_the_same_crop(tmp_path):
  root = tmp_path / 'photos'
  rng = np.random.default_rng(0)
  for phase, n in (('train', 3), ('test', 1)):
    os.makedirs(root / phase)
    for i in range(n):
      Image.fromarray(rng.integers(0, 256, (40, 40, 3), np.uint8)).save(root / phase / f'{i}.png')
  config = colorization_config.get_config()
  config.model.netG, config.model.ngf, config.model.ndf = 'resnet_6blocks', 4, 4
  config.data.dataset, config.data.root = 'folder', str(root)
  config.data.preprocess, config.data.crop_size = 'crop', 32
  configuration.validate(config)
  pipeline = input_pipeline.InputPipeline(config)
  batch = next(iter(pipeline.train_dataset(0, with_indices=True)))
  assert batch['A'].shape == (1, 32, 32, 1) and batch['B'].shape == (1, 32, 32, 2)
  rgb = color.model_lab_to_uint8(batch['A'][0].numpy(), batch['B'][0].numpy())
  photo = np.asarray(Image.open(pipeline.info.train_names['A'][int(batch['A_index'][0])]))
  # The crop of the photo, found by its colours, round-trips through L and ab.
  found = [(y, x) for y in range(9) for x in range(9)
           if np.abs(photo[y:y + 32, x:x + 32].astype(int) - rgb).max() <= 1]
  flipped = [(y, x) for y in range(9) for x in range(9)
             if np.abs(photo[y:y + 32, x:x + 32][:, ::-1].astype(int) - rgb).max() <= 1]
  assert len(found) + len(flipped) == 1


# ---- the reference's pix2pix datasets, from a local server ----


def _archive_bytes(name):
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode='w:gz') as tar:
    for phase, n in (('train', 3), ('val', 1)):
      for i in range(n):
        png = io.BytesIO()
        Image.fromarray(_pair_image(i)).save(png, format='PNG')
        info = tarfile.TarInfo(f'{name}/{phase}/{i}.png')
        info.size = len(png.getvalue())
        tar.addfile(info, io.BytesIO(png.getvalue()))
  return buffer.getvalue()


class _Files(http.server.BaseHTTPRequestHandler):
  files = {}
  requests = []

  def do_GET(self):  # pylint: disable=invalid-name
    type(self).requests.append(self.path)
    body = self.files.get(self.path)
    if body is None:
      self.send_error(404)
      return
    self.send_response(200)
    self.send_header('Content-Length', str(len(body)))
    self.end_headers()
    self.wfile.write(body)

  def log_message(self, *args):
    del args


@pytest.fixture
def dataset_server():
  _Files.files, _Files.requests = {}, []
  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Files)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield f'http://127.0.0.1:{server.server_address[1]}/pix2pix/datasets', _Files
  server.shutdown()
  server.server_close()


def _download_config(base_url, download_dir, name='maps'):
  config = pix2pix_config.get_config()
  config.model.netG, config.model.ngf, config.model.ndf = 'resnet_6blocks', 4, 4
  config.data.dataset, config.data.pix2pix_name = 'pix2pix', name
  config.data.pix2pix_base_url, config.data.download_dir = base_url, download_dir
  config.data.preprocess, config.data.crop_size = 'crop', 32
  configuration.validate(config)
  return config


def test_a_pix2pix_dataset_is_downloaded_once_extracted_and_read_as_aligned(tmp_path,
                                                                           dataset_server):
  base_url, handler = dataset_server
  handler.files['/pix2pix/datasets/maps.tar.gz'] = _archive_bytes('maps')
  config = _download_config(base_url, str(tmp_path / 'cache'))
  pipeline = input_pipeline.InputPipeline(config)
  assert handler.requests == ['/pix2pix/datasets/maps.tar.gz']
  assert sorted(os.listdir(tmp_path / 'cache')) == ['maps', 'maps.tar.gz']
  assert pipeline.info.epoch_size == 3
  assert pipeline.paired_test_set().a.shape == (1, 32, 32, 3)  # val/ serves as test
  input_pipeline.InputPipeline(config)  # extracted already: no second request
  assert len(handler.requests) == 1


def test_a_web_page_instead_of_the_archive_is_named_and_nothing_is_kept(tmp_path,
                                                                        dataset_server):
  base_url, handler = dataset_server
  handler.files['/pix2pix/datasets/facades.tar.gz'] = b'<!DOCTYPE html><html>moved</html>'
  config = _download_config(base_url, str(tmp_path / 'cache'), name='facades')
  with pytest.raises(downloads.DownloadError, match='did not send a .tar.gz archive: what '
                     'arrived is .*HTML'):
    input_pipeline.InputPipeline(config)
  assert os.listdir(tmp_path / 'cache') == []
  config = _download_config(base_url, str(tmp_path / 'cache'), name='night2day')
  with pytest.raises(downloads.DownloadError, match='HTTP 404'):
    input_pipeline.InputPipeline(config)


def test_unknown_and_unreachable_datasets_say_what_to_do(tmp_path):
  config = _download_config('http://127.0.0.1:9/none', str(tmp_path), name='facades')
  with pytest.raises(downloads.DownloadError, match='download_pix2pix_dataset.sh facades .*'
                     f'put it at {tmp_path}/facades.tar.gz'):
    input_pipeline.InputPipeline(config)
  config.data.pix2pix_name = 'cityscapes'
  with pytest.raises(configuration.DataError, match="'cityscapes' is not one of the "
                     "reference's pix2pix datasets: facades, maps"):
    aligned_sources.make_source(config)
