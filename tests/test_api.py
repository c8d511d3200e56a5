"""The public API: the names cyclegan_tf exports, loaded on first use, and the README's
Python example run as written."""

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

API = ['ConfigError', 'DataError', 'NonFiniteLossError', 'RunDirError', 'build_networks',
       'evaluate', 'export', 'load_generators', 'train', 'translate', 'validate_config']


def test_the_api_is_small_and_importing_it_loads_no_tensorflow():
  code = ('import sys, cyclegan_tf; print(sorted(cyclegan_tf.__all__)); '
          'print("tensorflow" in sys.modules)')
  done = subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT, capture_output=True,
                        text=True, timeout=120, check=True)
  assert done.stdout.splitlines() == [str(API), 'False']


def test_every_name_resolves_and_unknown_names_fail():
  import cyclegan_tf  # pylint: disable=g-import-not-at-top
  from cyclegan_tf.training import train  # pylint: disable=g-import-not-at-top
  assert cyclegan_tf.train is train.train_and_evaluate
  for name in API:
    assert getattr(cyclegan_tf, name) is not None
  with pytest.raises(AttributeError, match="has no attribute 'trian'"):
    cyclegan_tf.trian  # pylint: disable=pointless-statement


@pytest.mark.slow
def test_the_readme_example_runs_as_written(tmp_path):
  readme = open(os.path.join(REPO_ROOT, 'README.md')).read()
  example = re.search(r'```python\n(import cyclegan_tf\n.*?)```', readme, re.S).group(1)
  done = subprocess.run([sys.executable, '-c', example], cwd=tmp_path, capture_output=True,
                        text=True, timeout=600,
                        env={**os.environ, 'PYTHONPATH': REPO_ROOT, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  assert done.returncode == 0, done.stderr[-3000:]
  assert done.stdout.strip().splitlines()[-1] == (
      "2 (None, None, None, 3) ['cyclegan_a2b', 'cyclegan_b2a']")
  assert os.path.exists(tmp_path / 'runs' / 'api' / 'export' / 'cyclegan_b2a' / '1' /
                        'saved_model.pb')
