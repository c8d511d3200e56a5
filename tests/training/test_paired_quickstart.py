"""pix2pix and colorization end to end through main.py, as a user runs them: train on the
built-in paired data (no download), evaluate, export, translate, and serve the export."""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from conftest import REPO_ROOT
from conftest import run_main
from serving import load_test
import serving_testlib as lib

# A small resnet at 32 px: this is about the path through every mode (the U-Net's step is
# tests/models/test_pix2pix.py's).
TINY = ('--config.model.netG=resnet_6blocks', '--config.model.ngf=4', '--config.model.ndf=4',
        '--config.data.load_size=36', '--config.data.crop_size=32',
        '--config.data.synthetic_train_size=8', '--config.data.synthetic_test_size=3',
        '--config.train.n_epochs=1', '--config.train.n_epochs_decay=1',
        '--config.train.log_every_steps=4', '--config.train.image_every_steps=8',
        '--config.train.checkpoint_every_steps=8')


def _photo(path, size, gray=False):
  rng = np.random.default_rng(len(str(path)))
  shape = (size[1], size[0]) if gray else (size[1], size[0], 3)
  Image.fromarray(rng.integers(0, 256, shape, np.uint8)).save(path)


@pytest.mark.slow
def test_pix2pix_trains_evaluates_exports_translates_and_serves(tmp_path):
  workdir = str(tmp_path / 'p2p')
  code, _, err = run_main('--config=configs/pix2pix.py', f'--workdir={workdir}', *TINY)
  assert code == 0, err[-3000:]
  assert 'G_GAN' in err and 'G_L1' in err and 'D_real' in err and 'D_fake' in err
  assert os.path.isfile(os.path.join(workdir, 'checkpoints', 'ckpt-16.index'))
  with open(os.path.join(workdir, 'config.json')) as f:
    saved = json.load(f)
  assert (saved['model']['name'], saved['data']['dataset_mode']) == ('pix2pix', 'aligned')

  code, _, err = run_main('--mode=evaluate', f'--workdir={workdir}')
  assert code == 0, err[-3000:]
  with open(os.path.join(workdir, 'eval', '16', 'metrics.json')) as f:
    metrics = json.load(f)
  assert metrics['num_paired'] == 3 and 0 < metrics['psnr_a2b'] < 60
  assert {'ssim_a2b', 'l1_a2b', 'psnr_baseline_a2b'} <= set(metrics)
  assert 'psnr_b2a' not in metrics  # one generator: one direction

  code, out, err = run_main('--mode=export', f'--workdir={workdir}')
  assert code == 0, err[-3000:]
  export_dir = os.path.join(workdir, 'export')
  assert os.listdir(export_dir) == ['pix2pix_a2b']
  assert os.path.isfile(os.path.join(export_dir, 'pix2pix_a2b', '1', 'saved_model.pb'))

  os.makedirs(tmp_path / 'in')
  _photo(tmp_path / 'in' / 'facade.png', (150, 100))
  code, out, err = run_main('--mode=translate', f'--saved_model={export_dir}',
                            f'--input={tmp_path / "in"}', f'--output={tmp_path / "out"}')
  assert code == 0, err[-3000:]
  assert Image.open(tmp_path / 'out' / 'facade.png').size == (150, 100)

  port = lib.free_port()
  process, lines = load_test.launch_server(
      [f'--rest_api_port={port}', '--model_name=pix2pix_a2b',
       f'--model_base_path={os.path.join(export_dir, "pix2pix_a2b")}'], timeout=180)
  try:
    assert 'Serving pix2pix_a2b versions [1]' in ''.join(lines)
    client = subprocess.run(
        [sys.executable, '-m', 'serving.client', f'--server=http://127.0.0.1:{port}',
         '--model=pix2pix_a2b', f'--input={tmp_path / "in"}', f'--output={tmp_path / "served"}'],
        cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=REPO_ROOT), capture_output=True,
        text=True, timeout=120, check=False)
    assert client.returncode == 0, client.stdout + client.stderr
    served = np.asarray(Image.open(tmp_path / 'served' / 'facade.png'), np.int32)
    local = np.asarray(Image.open(tmp_path / 'out' / 'facade.png'), np.int32)
    assert served.shape == local.shape == (100, 150, 3)
    assert np.abs(served - local).max() <= 1  # the same SavedModel, the same pixels
  finally:
    process.terminate()
    process.wait(30)


@pytest.mark.slow
def test_colorization_trains_and_turns_gray_photos_into_colour_ones(tmp_path):
  root = tmp_path / 'photos'
  for phase, n in (('train', 6), ('test', 2)):
    os.makedirs(root / phase)
    for i in range(n):
      _photo(root / phase / f'{i}.jpg', (40, 36))
  workdir = str(tmp_path / 'color')
  code, _, err = run_main('--config=configs/colorization.py', f'--workdir={workdir}', *TINY,
                          '--config.data.dataset=folder', f'--config.data.root={root}',
                          '--config.train.eval_every_steps=12')
  assert code == 0, err[-3000:]
  with open(os.path.join(workdir, 'eval', '12', 'metrics.json')) as f:
    metrics = json.load(f)
  assert metrics['num_paired'] == 2 and 'psnr_a2b' in metrics and 'ssim_a2b' in metrics
  os.makedirs(tmp_path / 'gray')
  _photo(tmp_path / 'gray' / 'old.png', (90, 70), gray=True)
  code, out, err = run_main('--mode=translate', f'--workdir={workdir}',
                            f'--input={tmp_path / "gray"}', f'--output={tmp_path / "out"}')
  assert code == 0, err[-3000:]
  out = Image.open(tmp_path / 'out' / 'old.png')
  assert (out.mode, out.size) == ('RGB', (90, 70))
  # The lightness is the gray photo's own: gray back through Lab is the input to a level or so.
  gray_in = np.asarray(Image.open(tmp_path / 'gray' / 'old.png'), np.float64)
  from skimage import color  # pylint: disable=g-import-not-at-top
  l_out = color.rgb2lab(np.asarray(out))[..., 0]
  l_in = color.rgb2lab(np.repeat(gray_in[..., None], 3, -1).astype(np.uint8))[..., 0]
  assert np.abs(l_out - l_in).mean() < 1.5
  # The export (L -> ab) colorizes the same way through translate.
  code, _, err = run_main('--mode=export', f'--workdir={workdir}')
  assert code == 0, err[-3000:]
  code, _, err = run_main('--mode=translate', f'--saved_model={workdir}/export',
                          f'--input={tmp_path / "gray"}', f'--output={tmp_path / "exported"}')
  assert code == 0, err[-3000:]
  exported = np.asarray(Image.open(tmp_path / 'exported' / 'old.png'), np.int32)
  assert exported.shape == (70, 90, 3)
  assert np.abs(exported - np.asarray(out, np.int32)).max() <= 2
