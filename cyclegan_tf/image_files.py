"""Image file names: which files are images, inputs from a path or glob, output names.

Free of TensorFlow, so the REST client (serving/client.py) starts instantly.
"""

import glob
import os

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif')


def is_image_file(name):
  return name.lower().endswith(IMAGE_EXTENSIONS)


def collect_inputs(pattern):
  """An image file, a folder (its image files, sorted) or a glob -> list of paths.

  Raises FileNotFoundError naming the path when nothing matches.
  """
  if os.path.isfile(pattern):
    return [pattern]
  if os.path.isdir(pattern):
    paths = sorted(os.path.join(pattern, name) for name in os.listdir(pattern)
                   if is_image_file(name) and
                   os.path.isfile(os.path.join(pattern, name)))
    if not paths:
      raise FileNotFoundError(
          f'Folder {pattern} holds no image files ({", ".join(IMAGE_EXTENSIONS)}).')
    return paths
  if glob.has_magic(pattern):
    paths = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    if not paths:
      raise FileNotFoundError(f'The glob {pattern!r} matches no files.')
    return paths
  raise FileNotFoundError(f'Input {pattern} does not exist (give an image file, a folder or a '
                          'glob).')


def output_names(paths):
  """{input path: output file name}: base name + .png; colliding names keep their extension."""
  groups = {}
  for path in paths:
    groups.setdefault(os.path.splitext(os.path.basename(path))[0], []).append(path)
  names = {}
  for stem, group in groups.items():
    extensions = {os.path.splitext(path)[1].lstrip('.') for path in group}
    for path in group:
      ext = os.path.splitext(path)[1].lstrip('.')
      names[path] = f'{stem}_{ext}.png' if len(extensions) > 1 and ext else f'{stem}.png'
  seen = {}
  for path in paths:  # same names from different folders of a glob
    name = names[path]
    if name in seen:
      seen[name] += 1
      names[path] = f'{os.path.splitext(name)[0]}_{seen[name]}.png'
    else:
      seen[name] = 0
  return names
