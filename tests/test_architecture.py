"""The module map: every import of cyclegan_tf/ and serving/ (function-level ones included, read
with ast) goes down the layers the README's module map documents; no circles; the library
imports no tests, configs or absl.flags; modules stay small."""

import ast
import os
import re

import pytest

from conftest import REPO_ROOT

# The README's module map, lowest layer first: a module may import only from lower layers.
LAYERS = (
    ('images', 'image_files', 'hardware', 'progress', 'losses', 'schedules', 'image_pool',
     'distribute', 'synthetic', 'metrics', 'runtimes', 'custom_layers'),
    ('networks', 'precision'),
    ('configuration', 'preprocessing', 'inference', 'torch_layout'),
    ('data_sources',),
    ('input_pipeline',),
    ('run_dir',),
    ('trainer', 'domain_classifier', 'inception', 'plots', 'reports', 'init_from',
     'edge_export'),
    ('evaluate', 'export', 'benchmark'),
    ('train', 'translate', 'convert'),
    ('pretrained',),
)
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}
# What serving/ may use of the library: TF-free leaves only (it serves SavedModels).
SERVING_MAY_IMPORT = {'image_files', 'hardware'}
FORBIDDEN_IN_LIBRARY = ('tests', 'conftest', 'configs', 'absl.flags', 'ml_collections.config_flags')
# Modules allowed past MAX_LINES: each still does one job.
LONG_MODULES = {'cyclegan_tf/synthetic.py', 'cyclegan_tf/metrics.py', 'serving/model_server.py'}
MAX_LINES = 450


def _modules(package):
  folder = os.path.join(REPO_ROOT, package)
  return sorted(os.path.join(package, f) for f in os.listdir(folder)
                if f.endswith('.py') and f != '__init__.py')


def _imports(path):
  """Every module name a file imports, anywhere in it (as written: 'cyclegan_tf.images')."""
  with open(os.path.join(REPO_ROOT, path)) as f:
    tree = ast.parse(f.read(), path)
  names = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.extend(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names.append(node.module)
      names.extend(f'{node.module}.{alias.name}' for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level:
      names.extend(f'.{alias.name}' for alias in node.names)
  return names


def _internal(path, package):
  """The sibling modules (short names) a file of `package` imports."""
  siblings = {os.path.splitext(os.path.basename(m))[0] for m in _modules(package)}
  out = set()
  for name in _imports(path):
    parts = name.lstrip('.').split('.')
    if name.startswith(f'{package}.') and len(parts) > 1 and parts[1] in siblings:
      out.add(parts[1])
    elif name.startswith('.') and parts[0] in siblings:
      out.add(parts[0])
  return out


def _graph(package):
  return {os.path.splitext(os.path.basename(m))[0]: _internal(m, package)
          for m in _modules(package)}


def _cycle(graph):
  """One import circle as a list of modules, or None."""
  state = {}

  def visit(node, stack):
    state[node] = 'open'
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == 'open':
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        found = visit(nxt, stack + [nxt])
        if found:
          return found
    state[node] = 'done'
    return None

  for start in sorted(graph):
    if start not in state:
      found = visit(start, [start])
      if found:
        return found
  return None


def test_every_library_module_has_a_layer():
  names = {os.path.splitext(os.path.basename(m))[0] for m in _modules('cyclegan_tf')}
  assert sorted(names - set(LAYER)) == [], 'add new modules to LAYERS and the README map'


@pytest.mark.parametrize('package', ['cyclegan_tf', 'serving'])
def test_no_import_circles(package):
  assert _cycle(_graph(package)) is None


def test_library_imports_only_go_down_the_layers():
  upward = []
  for module, imported in _graph('cyclegan_tf').items():
    for name in imported:
      if LAYER[name] >= LAYER[module]:
        upward.append(f'{module} (layer {LAYER[module]}) imports {name} (layer {LAYER[name]})')
  assert upward == []


def test_library_imports_no_tests_configs_or_flags():
  bad = []
  for path in _modules('cyclegan_tf'):
    for name in _imports(path):
      if any(name == f or name.startswith(f + '.') for f in FORBIDDEN_IN_LIBRARY):
        bad.append(f'{path}: {name}')
  assert bad == []


def test_serving_needs_no_training_code():
  bad = []
  for path in _modules('serving'):
    for name in _imports(path):
      parts = name.split('.')
      if parts[0] == 'cyclegan_tf' and len(parts) > 1 and parts[1] not in SERVING_MAY_IMPORT:
        bad.append(f'{path}: {name}')
      if parts[0] in ('tests', 'configs'):
        bad.append(f'{path}: {name}')
  assert bad == []


def test_modules_stay_small():
  long = []
  for package in ('cyclegan_tf', 'serving'):
    for path in _modules(package):
      with open(os.path.join(REPO_ROOT, path)) as f:
        lines = sum(1 for _ in f)
      if lines > MAX_LINES and path not in LONG_MODULES:
        long.append(f'{path}: {lines} lines')
  assert long == []


def test_readme_module_map_names_every_module_in_its_layer():
  with open(os.path.join(REPO_ROOT, 'README.md')) as f:
    readme = f.read()
  section = readme[readme.index('## Module map'):]
  section = section[:section.index('\n## ', 3)]
  rows = re.findall(r'^\| (\d+) [^|]*\| ([^|]+) \|', section, re.MULTILINE)
  documented = {}
  for layer, modules in rows:
    for name in re.findall(r'`(\w+)`', modules):
      documented[name] = int(layer)
  assert documented == {name: layer for name, layer in LAYER.items()
                        if os.path.exists(os.path.join(REPO_ROOT, 'cyclegan_tf', f'{name}.py'))}


def test_the_checker_finds_a_circle_and_an_upward_import():
  assert _cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
  assert _cycle({'a': {'b'}, 'b': set()}) is None
  assert LAYER['networks'] < LAYER['trainer'] < LAYER['train']
