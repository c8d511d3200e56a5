"""The run directory as users treat it: one writer at a time, paths as typed, storage failures
said in one line and no partial checkpoint left behind."""

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from conftest import REPO_ROOT
from conftest import one_error_line
from conftest import run_main
from cyclegan_tf import configuration
from cyclegan_tf import run_dir

# A process that holds a run directory's lock until it is killed.
_HOLDER = '''
import sys, time
sys.path.insert(0, {root!r})
from cyclegan_tf import run_dir
with run_dir.writer_lock(sys.argv[1], 'train'):
  print('locked', flush=True)
  time.sleep(120)
'''


def _start_holder(workdir):
  holder = subprocess.Popen([sys.executable, '-c', _HOLDER.format(root=REPO_ROOT), workdir],
                            stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == 'locked'
  return holder


@pytest.mark.parametrize('name', ['run [lr=2e-4]', 'runs*', 'run?', 'a]b'])
def test_a_workdir_with_glob_characters_is_refused_naming_a_working_name(tmp_path, name):
  workdir = str(tmp_path / name)
  with pytest.raises(run_dir.RunDirError, match=r'glob patterns.*Use a path without \[ \] \* \?'):
    run_dir.check_workdir(workdir)
  assert not os.path.exists(workdir)


def test_a_folder_with_glob_characters_above_the_run_is_refused_too(tmp_path):
  with pytest.raises(run_dir.RunDirError, match=r"e\.g\. --workdir='.*My Data \(v2\)/run'"):
    run_dir.check_workdir(str(tmp_path / 'My Data [v2]' / 'run'))


@pytest.mark.parametrize('name', ['run 1 ü', "it's", 'café (2)', '日本', 'a&b'])
def test_other_characters_are_fine(tmp_path, name):
  assert run_dir.check_workdir(str(tmp_path / name)) == str(tmp_path / name)


def test_a_second_writer_is_refused_naming_the_process_and_host(tmp_path):
  workdir = str(tmp_path / 'run')
  holder = _start_holder(workdir)
  try:
    with pytest.raises(run_dir.RunDirError) as refused:
      with run_dir.writer_lock(workdir, 'train'):
        pytest.fail('the second writer got the lock')
    message = str(refused.value)
    assert f'{workdir} is in use by process {holder.pid} on host {socket.gethostname()}' in (
        message)
    assert '(train, since ' in message and 'another --workdir' in message
  finally:
    holder.kill()
    holder.wait()


def test_evaluate_and_export_into_a_run_being_trained_are_refused(tmp_path, default_config):
  from cyclegan_tf.evaluation import evaluate  # pylint: disable=g-import-not-at-top
  from cyclegan_tf.deploy import export  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / 'run')
  holder = _start_holder(workdir)
  try:
    for consumer in (evaluate.evaluate, export.export_run):
      with pytest.raises(run_dir.RunDirError, match=f'is in use by process {holder.pid}'):
        consumer(default_config, workdir)
  finally:
    holder.kill()
    holder.wait()
  assert sorted(os.listdir(workdir)) == ['.lock']  # nothing else was written


def test_a_killed_writers_lock_is_taken_over_with_a_note(tmp_path, caplog):
  workdir = str(tmp_path / 'run')
  holder = _start_holder(workdir)
  holder.send_signal(signal.SIGKILL)  # kill -9: nothing runs on its way out
  holder.wait()
  assert json.loads(open(run_dir.lock_path(workdir)).read())['pid'] == holder.pid
  with caplog.at_level('WARNING', logger='absl'):
    with run_dir.writer_lock(workdir, 'evaluate'):
      now = json.loads(open(run_dir.lock_path(workdir)).read())
      assert now['pid'] == os.getpid() and now['mode'] == 'evaluate'
  assert f'Taking over the stale lock of process {holder.pid}' in caplog.text
  assert 'no longer running' in caplog.text
  assert open(run_dir.lock_path(workdir)).read() == ''  # released: no holder named


def test_the_lock_is_free_again_after_its_holder_exits(tmp_path):
  workdir = str(tmp_path / 'run')
  with run_dir.writer_lock(workdir, 'train'):
    open(os.path.join(workdir, 'config.json'), 'w').close()
  with run_dir.writer_lock(workdir, 'export'):
    pass
  assert sorted(os.listdir(workdir)) == ['.lock', 'config.json']


def test_a_lock_that_created_the_folder_removes_it_when_nothing_was_written(tmp_path):
  workdir = str(tmp_path / 'new' / 'run')
  with pytest.raises(configuration.ConfigError):
    with run_dir.writer_lock(workdir, 'train'):
      raise configuration.ConfigError('a failed start')
  assert not os.path.exists(workdir)


def test_tilde_is_expanded_and_paths_recorded_absolute(tmp_path, monkeypatch,
                                                       default_config):
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  monkeypatch.chdir(tmp_path)
  default_config.data.root = '~/data/cat2dog'
  default_config.train.init_from = 'weights'
  default_config.data.tfds_data_dir = 'gs://bucket/tfds'  # URLs stay as they are
  configuration.normalize_paths(default_config)
  assert default_config.data.root == str(tmp_path / 'home' / 'data' / 'cat2dog')
  assert default_config.train.init_from == str(tmp_path / 'weights')
  assert default_config.data.tfds_data_dir == 'gs://bucket/tfds'
  default_config.data.root = '~no_such_user_here/data'
  with pytest.raises(configuration.ConfigError,
                     match=r"config\.data\.root='~no_such_user_here/data'.*cannot be expanded"):
    configuration.normalize_paths(default_config)


def test_a_consumer_takes_the_data_location_from_the_run(default_config):
  run = configuration.validate(default_config)
  run.data.dataset, run.data.root = 'folder', '/data/cat2dog'
  cli = default_config.__class__(run.to_dict())
  cli.data.root = ''  # not given on the command line
  assert configuration.mode_config(run, cli, 'evaluate').data.root == '/data/cat2dog'
  cli.data.root = '/mnt/moved/cat2dog'  # given: the data moved
  assert configuration.mode_config(run, cli, 'evaluate').data.root == '/mnt/moved/cat2dog'


class _FailingManager:
  """A CheckpointManager whose write fails part-way, as on a full disk."""

  def __init__(self, directory, error):
    self.directory = directory
    self.error = error
    self.latest_checkpoint = os.path.join(directory, 'ckpt-4')

  def save(self, checkpoint_number):
    os.makedirs(os.path.join(self.directory, f'ckpt-{checkpoint_number}_temp'))
    raise self.error


def test_a_failed_checkpoint_write_leaves_no_partial_checkpoint(tmp_path):
  directory = str(tmp_path / 'run [x]' / 'checkpoints')  # glob characters are escaped
  error = tf.errors.ResourceExhaustedError(
      None, None, '{{function_node __wrapped__SaveV2}} ' + directory +
      '/ckpt-8_temp/part-00000; No space left on device [Op:SaveV2]')
  with pytest.raises(run_dir.RunDirError) as failed:
    run_dir.save_checkpoint(_FailingManager(directory, error), 8)
  assert str(failed.value) == (
      f'Could not save checkpoint {directory}/ckpt-8: No space left on device. The newest '
      f'complete checkpoint, {directory}/ckpt-4, is kept; free space (or make the folder '
      'writable) and rerun the same command to resume.')
  assert os.listdir(directory) == []


def _mount_tmpfs(path, size):
  os.makedirs(path, exist_ok=True)
  done = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(path)],
                        capture_output=True, text=True)
  if done.returncode:
    pytest.skip(f'cannot mount a tmpfs here (needs root): {done.stderr.strip()}')


@pytest.fixture
def small_disk(tmp_path):
  """A real 8 MB file system (tmpfs) at tmp_path/disk, unmounted afterwards."""
  disk = tmp_path / 'disk'
  _mount_tmpfs(disk, '8m')
  yield disk
  subprocess.run(['umount', str(disk)], check=False)


def test_a_read_only_run_directory_is_refused_when_locking(small_disk):
  subprocess.run(['mount', '-o', 'remount,ro', str(small_disk)], check=True)
  with pytest.raises(OSError) as refused:
    with run_dir.writer_lock(str(small_disk / 'run'), 'train'):
      pytest.fail('locked a read-only folder')
  assert refused.value.errno == errno.EROFS


TINY = ['--config.model.netG=resnet_6blocks', '--config.model.ngf=4', '--config.model.ndf=4',
        '--config.data.load_size=36', '--config.data.crop_size=32',
        '--config.data.synthetic_train_size=4', '--config.data.synthetic_test_size=2']


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_last_checkpoint_resumes(small_disk, tmp_path):
  workdir = small_disk / 'run'
  code, _, stderr = run_main(*TINY, '--config.train.max_steps=2', f'--workdir={workdir}')
  assert code == 0, stderr[-3000:]
  with open(small_disk / 'filler', 'wb') as f:  # fill the disk up to 64 KB
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    f.write(b'\0' * max(free - 64 * 1024, 0))
  code, _, stderr = run_main(*TINY, '--config.train.max_steps=4', f'--workdir={workdir}')
  assert code == 1
  line = one_error_line(stderr)
  assert 'No space left on device' in line and str(workdir) in line, line
  assert sorted(os.listdir(workdir / 'checkpoints')) == [
      'checkpoint', 'ckpt-2.data-00000-of-00001', 'ckpt-2.index']
  os.remove(small_disk / 'filler')
  code, _, stderr = run_main(*TINY, '--config.train.max_steps=4', f'--workdir={workdir}')
  assert code == 0, stderr[-3000:]
  assert 'Resumed from' in stderr and 'ckpt-2 at step 2' in stderr
  assert tf.train.latest_checkpoint(str(workdir / 'checkpoints')).endswith('ckpt-4')


@pytest.mark.slow
def test_a_read_only_run_directory_is_one_line_before_the_data_are_read(small_disk):
  subprocess.run(['mount', '-o', 'remount,ro', str(small_disk)], check=True)
  code, _, stderr = run_main(*TINY, f'--workdir={small_disk / "run"}')
  assert code == 1
  line = one_error_line(stderr)
  assert line == (f'Error: cannot write {small_disk / "run"}: Read-only file system; use a '
                  'writable folder.'), line
  assert 'Rendered synthetic_seasons' not in stderr  # refused before the data are read


@pytest.mark.slow
def test_tilde_in_flags_means_home_and_consumers_need_only_the_workdir(tmp_path):
  home, elsewhere = tmp_path / 'home', tmp_path / 'elsewhere'
  from PIL import Image  # pylint: disable=g-import-not-at-top
  for split, n in (('trainA', 2), ('trainB', 2), ('testA', 1), ('testB', 1)):
    os.makedirs(home / 'ds' / split)
    for i in range(n):
      Image.new('RGB', (40, 40), (40 * i, 90, 200)).save(home / 'ds' / split / f'{i}.png')
  os.makedirs(elsewhere)
  env = {'HOME': str(home)}
  code, _, stderr = run_main(f'--config={REPO_ROOT}/configs/folder.py', '--config.data.root=~/ds', *TINY[:5],
                          '--config.train.max_steps=2', '--workdir=~/runs/t1', cwd=elsewhere,
                          env=env)
  assert code == 0, stderr[-3000:]
  assert os.listdir(elsewhere) == []  # no folder named '~' where the command ran
  run = home / 'runs' / 't1'
  assert json.load(open(run / 'config.json'))['data']['root'] == str(home / 'ds')
  os.makedirs(elsewhere / 'other')
  code, _, stderr = run_main('--mode=evaluate', f'--workdir={run}', cwd=elsewhere / 'other',
                          env=env)
  assert code == 0, stderr[-3000:]
  assert json.load(open(run / 'eval' / '2' / 'metrics.json'))['num_images_a'] == 1


@pytest.mark.slow
def test_two_trainers_in_one_workdir_the_second_is_refused(tmp_path):
  workdir = tmp_path / 'run'
  first = subprocess.Popen(
      [sys.executable, os.path.join(REPO_ROOT, 'main.py'), *TINY, f'--workdir={workdir}',
       '--config.train.checkpoint_every_steps=2', '--config.train.max_steps=100000'],
      cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
      env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  try:
    deadline = time.time() + 240
    while not tf.train.latest_checkpoint(str(workdir / 'checkpoints')):
      assert time.time() < deadline and first.poll() is None, 'the first trainer never saved'
      time.sleep(0.5)
    code, _, stderr = run_main(*TINY, f'--workdir={workdir}')
    assert code == 1
    line = one_error_line(stderr)
    assert f'is in use by process {first.pid} on host {socket.gethostname()} (train' in line
    first.send_signal(signal.SIGINT)  # the first trainer saves and stops as usual
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err[-3000:]
    saved = tf.train.latest_checkpoint(str(workdir / 'checkpoints'))
    assert 'Received SIGINT: checkpoint saved at step' in err
    assert saved.endswith(f'ckpt-{err.split("checkpoint saved at step ")[1].split(";")[0]}')
  finally:
    if first.poll() is None:
      first.kill()
      first.wait()


def test_a_run_saved_before_model_names_existed_reads_as_cycle_gan(tmp_path):
  """config.json of an earlier version has no model.name: it reads as cycle_gan, and the same
  command (whose config has the field) resumes it without a conflict."""
  from conftest import tiny_config  # pylint: disable=g-import-not-at-top
  config = tiny_config()
  saved = config.to_dict()
  del saved['model']['name']
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  assert run_dir.read_config(str(tmp_path)).model.name == 'cycle_gan'
  assert run_dir.check_resume(str(tmp_path), config) is True
  config.model.name = 'other'
  with pytest.raises(configuration.ConfigError, match=r"model.name: run has 'cycle_gan'"):
    run_dir.check_resume(str(tmp_path), config)
