"""What a user who only trains installs: serving, edge and conversion are extras, and a missing
extra says its pip command in one line."""

import ast
import os
import subprocess
import sys

from conftest import REPO_ROOT


def _setup_lists():
  """install_requires and extras_require of setup.py, as written."""
  tree = ast.parse(open(os.path.join(REPO_ROOT, 'setup.py')).read())
  constants = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
               if isinstance(node, ast.Assign) and isinstance(node.value, ast.List)}
  call = next(node.value for node in tree.body
              if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call))
  keywords = {k.arg: k.value for k in call.keywords}
  requires = ast.literal_eval(keywords['install_requires'])
  extras = {}
  for key, value in zip(keywords['extras_require'].keys, keywords['extras_require'].values):
    extras[key.value] = eval(compile(ast.Expression(value), 'setup.py', 'eval'), {}, constants)  # pylint: disable=eval-used
  return requires, extras


def test_a_plain_install_leaves_serving_edge_and_torch_out():
  requires, extras = _setup_lists()
  names = ' '.join(requires)
  for extra_only in ('tensorflow-serving-api', 'ai-edge-litert', 'tf2onnx', 'onnxruntime',
                     'torch'):
    assert extra_only not in names, extra_only
  assert any(r.startswith('tensorflow-serving-api') for r in extras['serving'])
  assert set(extras['serving'] + extras['edge']) <= set(extras['test'])


def test_serving_without_its_extra_is_one_line_naming_the_pip_command(tmp_path):
  # A tensorflow_serving that cannot be imported, as in an environment without the extra.
  (tmp_path / 'tensorflow_serving.py').write_text(
      'raise ImportError("No module named \'tensorflow_serving\'")\n')
  done = subprocess.run([sys.executable, '-m', 'serving.server', '--help'], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=120,
                        env={**os.environ, 'PYTHONPATH': str(tmp_path)})
  assert done.returncode == 1
  assert 'Traceback' not in done.stderr
  assert done.stderr.strip().splitlines() == [
      'Error: serving needs TF Serving\'s protos and gRPC (No module named '
      '\'tensorflow_serving\'), which a plain install leaves out: pip install -e ".[serving]"']
