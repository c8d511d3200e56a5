"""main.py as users run it: every user error is one line on stderr (no traceback, exit status
1), flags a mode cannot apply are refused, and TensorFlow's own INFO chatter stays hidden."""

import os

import pytest

from conftest import one_error_line
from conftest import run_main

pytestmark = pytest.mark.slow
TINY = ['--config.model.netG=resnet_6blocks', '--config.model.ngf=4', '--config.model.ndf=4',
        '--config.data.load_size=36', '--config.data.crop_size=32',
        '--config.data.synthetic_train_size=4', '--config.data.synthetic_test_size=2']


def test_translate_with_nothing_readable_is_one_line(tmp_path, trained_run):
  _, workdir = trained_run
  (tmp_path / 'photo.jpg').write_text('<html>Not Found</html>')
  code, _, stderr = run_main('--mode=translate', f'--workdir={workdir}',
                          f'--input={tmp_path / "photo.jpg"}', f'--output={tmp_path / "out"}')
  assert code == 1
  line = one_error_line(stderr)
  assert 'photo.jpg: an HTML page' in line and 'Give JPEG, PNG' in line


def test_a_web_page_saved_as_pth_is_one_line(tmp_path):
  pytest.importorskip('torch')
  (tmp_path / 'latest_net_G_A.pth').write_bytes(b'<!DOCTYPE html><html>403</html>')
  code, _, stderr = run_main('--mode=convert', f'--pth={tmp_path / "latest_net_G_A.pth"}',
                          f'--output={tmp_path / "out"}')
  assert code == 1
  assert 'an HTML page' in one_error_line(stderr)
  assert not os.path.exists(tmp_path / 'out')


def test_a_workdir_tensorflow_would_glob_is_one_line_before_anything_is_written(tmp_path):
  workdir = tmp_path / 'run [lr=2e-4] ü'
  code, _, stderr = run_main(f'--workdir={workdir}', *TINY)
  assert code == 1
  line = one_error_line(stderr)
  assert 'reads checkpoint paths as glob patterns' in line
  assert f"--workdir='{tmp_path / 'run (lr=2e-4) ü'}'" in line
  assert not os.path.exists(workdir)


def test_a_schedule_that_trains_nothing_is_refused(tmp_path):
  code, _, stderr = run_main(f'--workdir={tmp_path / "run"}', '--config.train.epoch_count=201')
  assert code == 1 and 'Traceback' not in stderr
  assert 'epoch_count=201 starts after the schedule ends' in stderr
  assert not os.path.exists(tmp_path / 'run')


def test_export_of_a_run_refuses_architecture_flags_and_stays_quiet(tmp_path, trained_run):
  _, workdir = trained_run
  code, _, stderr = run_main('--mode=export', f'--workdir={workdir}',
                          '--config.model.netG=unet_128', f'--export_dir={tmp_path / "e"}')
  assert code == 1 and 'Traceback' not in stderr
  assert '--config.model.netG cannot change --mode=export' in stderr
  code, stdout, stderr = run_main('--mode=export', f'--workdir={workdir}',
                               f'--export_dir={tmp_path / "e"}')
  assert code == 0, stderr[-3000:]
  assert 'Exported cyclegan_a2b (step 24)' in stdout
  # TF's signature-serialisation INFO lines are hidden at the default verbosity.
  assert 'contains input name(s)' not in stderr and 'Function `' not in stderr, stderr[-3000:]
