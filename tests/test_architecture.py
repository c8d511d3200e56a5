"""The package map: every import of cyclegan_tf/ and serving/ (function-level ones included, read
with ast) goes down the layers of packages the README's map documents; no circles; the library
imports no tests, configs or absl.flags; modules stay small."""

import ast
import os
import re

import pytest

from conftest import REPO_ROOT

# The README's package map, lowest layer first. A unit is a sub-package of cyclegan_tf or one
# of its top-level modules; a module may import from units of lower layers and from its own
# package, never from a unit of its own or a higher layer.
LAYERS = (
    ('hardware', 'progress', 'distribute'),
    ('models',),
    ('configuration',),
    ('data',),
    ('run_dir',),
    ('evaluation', 'deploy'),
    ('training',),
)
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}
PACKAGES = tuple(u for u in LAYER if os.path.isdir(os.path.join(REPO_ROOT, 'cyclegan_tf', u)))
# What serving/ may use of the library: TF-free leaves only (it serves SavedModels).
SERVING_MAY_IMPORT = {'data.image_files', 'data.animation', 'hardware'}
FORBIDDEN_IN_LIBRARY = ('tests', 'conftest', 'configs', 'absl.flags', 'ml_collections.config_flags')
MAX_LINES = 400  # past it, a module usually does two jobs


def _files(package):
  """The .py files of a package and its sub-packages (paths relative to the repository)."""
  out = []
  for folder, _, names in os.walk(os.path.join(REPO_ROOT, package)):
    out += [os.path.relpath(os.path.join(folder, n), REPO_ROOT) for n in names
            if n.endswith('.py') and n != '__init__.py']
  return sorted(out)


def _modules(package):
  return _files(package)


def _dotted(path, package):
  """'cyclegan_tf/data/images.py' -> 'data.images' (relative to `package`)."""
  return os.path.splitext(os.path.relpath(path, package))[0].replace(os.sep, '.')


def _unit(dotted):
  return dotted.split('.')[0]


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
  """The modules of `package` (dotted, relative to it) a file imports."""
  known = {_dotted(m, package) for m in _modules(package)}
  out = set()
  for name in _imports(path):
    if name.startswith(f'{package}.'):
      rest = name[len(package) + 1:]
      while rest and rest not in known:  # 'data.images.decode_image' -> 'data.images'
        rest = rest.rpartition('.')[0]
      if rest:
        out.add(rest)
  return out


def _graph(package):
  return {_dotted(m, package): _internal(m, package) for m in _modules(package)}


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
  units = {_unit(_dotted(m, 'cyclegan_tf')) for m in _modules('cyclegan_tf')}
  assert sorted(units - set(LAYER)) == [], 'add new packages to LAYERS and the README map'


@pytest.mark.parametrize('package', ['cyclegan_tf', 'serving'])
def test_no_import_circles(package):
  assert _cycle(_graph(package)) is None


def test_library_imports_only_go_down_the_layers():
  upward = []
  for module, imported in _graph('cyclegan_tf').items():
    for name in imported:
      own, other = _unit(module), _unit(name)
      if own in PACKAGES and own == other:
        continue  # within a package: only circles are refused
      if LAYER[other] >= LAYER[own]:
        upward.append(f'{module} (layer {LAYER[own]}) imports {name} (layer {LAYER[other]})')
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
    for name in _internal(path, 'cyclegan_tf'):
      if name not in SERVING_MAY_IMPORT:
        bad.append(f'{path}: cyclegan_tf.{name}')
    for name in _imports(path):
      if name.split('.')[0] in ('tests', 'configs'):
        bad.append(f'{path}: {name}')
  assert bad == []


def test_modules_stay_small():
  long = []
  for package in ('cyclegan_tf', 'serving'):
    for path in _modules(package):
      with open(os.path.join(REPO_ROOT, path)) as f:
        lines = sum(1 for _ in f)
      if lines > MAX_LINES:
        long.append(f'{path}: {lines} lines')
  assert long == []


def test_tests_mirror_the_packages():
  """tests/<package>/ holds the tests of cyclegan_tf/<package>/ (serving/ of serving/); the
  top-level modules' tests and the shared helpers sit in tests/ itself."""
  folders = {n for n in os.listdir(os.path.join(REPO_ROOT, 'tests'))
             if os.path.isdir(os.path.join(REPO_ROOT, 'tests', n)) and not n.startswith(('.', '_'))}
  assert folders == set(PACKAGES) | {'serving'}
  for name in os.listdir(os.path.join(REPO_ROOT, 'tests')):
    if name.startswith('test_') and name.endswith('.py'):
      unit = name[len('test_'):-len('.py')]
      assert unit in LAYER and unit not in PACKAGES or unit in ('api', 'architecture', 'install',
                                                                'main'), name


def test_readme_package_map_names_every_module_in_its_layer():
  with open(os.path.join(REPO_ROOT, 'README.md')) as f:
    readme = f.read()
  section = readme[readme.index('## Package map'):]
  section = section[:section.index('\n## ', 3)]
  rows = re.findall(r'^\| (\d+) \| ([^|]+) \|([^|]*)\|', section, re.MULTILINE)
  documented = {}
  for layer, units, modules in rows:
    for unit in re.findall(r'`(\w+)/?`', units):
      documented[unit] = (int(layer), sorted(re.findall(r'`([\w.]+)`', modules)))
  actual = {}
  for module in _graph('cyclegan_tf'):
    unit = _unit(module)
    listed = actual.setdefault(unit, (LAYER.get(unit), []))[1]
    if unit in PACKAGES:
      listed.append(module.split('.', 1)[1])
  assert documented == {u: (layer, sorted(names)) for u, (layer, names) in actual.items()}


def test_the_checker_finds_a_circle_and_an_upward_import():
  assert _cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
  assert _cycle({'a': {'b'}, 'b': set()}) is None
  assert LAYER['models'] < LAYER['data'] < LAYER['training']
  graph = _graph('cyclegan_tf')
  assert 'models.family' in graph['training.train_state']
  assert 'data.image_files' in _internal('serving/client.py', 'cyclegan_tf')
