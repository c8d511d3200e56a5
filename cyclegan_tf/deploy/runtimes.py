"""Exported generators in their own runtimes, without TensorFlow: LiteRT and ONNX Runtime.

  model = runtimes.load('export/litert/cyclegan_a2b')          # newest version, its default file
  model = runtimes.load('export/onnx/cyclegan_a2b/1/cyclegan_a2b.onnx')
  outputs = model.translate(images)   # float32 [N, H, W, C] in [-1, 1], any H, W <= a fixed size

A ``.tflite`` file runs in the ai-edge-litert interpreter (``tf.lite.Interpreter`` is
deprecated), a ``.onnx`` file in onnxruntime's CPU provider. A folder written by
``--mode=export`` (edge_export.py) holds ``model.json`` (inputs, outputs, sizes, precision,
source step, measured error of each file) and names its default file; a model base folder
(``<format>/<model_name>``) means its newest numbered version.

Sizes. A dynamic-size model pads any image to its generator's size multiple inside the graph
(as the SavedModel does) and crops back: the same output as the Keras generator at any size. A
fixed-size model (e.g. 256x256, batch 1) takes exactly that size: ``translate`` reflect-pads a
smaller image at its bottom and right (numpy's 'reflect'; the image stays at (0, 0), so the
strided convolutions see it at the same phase) and crops the output back. The mirrored border
takes part in the instance-norm statistics, so the output differs from an unpadded translation
(README, Deploy, has a measured figure); use a dynamic-size file where that matters. Larger
images are cut into tiles of the fixed size by translate.py.

TF-free (numpy, json, and the runtime of the file loaded), so a server or a tool can run exports
with only ``pip install ai-edge-litert`` or ``pip install onnxruntime``.
"""

import json
import os
import re

import numpy as np

LITERT_SUFFIX = '.tflite'
ONNX_SUFFIX = '.onnx'
FORMAT_OF_SUFFIX = {LITERT_SUFFIX: 'litert', ONNX_SUFFIX: 'onnx'}
METADATA_FILE = 'model.json'
INSTALL = {
    'litert': 'pip install ai-edge-litert==2.3.0 (or pip install -e ".[edge]")',
    'onnx': 'pip install onnxruntime (or pip install -e ".[edge]")',
}
_VERSION_RE = re.compile(r'^\d+$')


class MissingRuntimeError(ImportError):
  """The runtime a model file needs is not installed; the message has the install command."""


def import_runtime(fmt):
  """The runtime module of a format (litert, onnx), or MissingRuntimeError with its install
  command."""
  try:
    if fmt == 'litert':
      from ai_edge_litert import interpreter  # pylint: disable=g-import-not-at-top
      return interpreter
    import onnxruntime  # pylint: disable=g-import-not-at-top
    return onnxruntime
  except ImportError as e:
    raise MissingRuntimeError(f'Running a {fmt} model needs its runtime: {INSTALL[fmt]}. '
                              f'({e})') from None


# ---------------------------------------------------------------------------------------------
# Padding a smaller image to a fixed size.


def pad_to_size(images, height, width):
  """Reflect-pads float32 [N, h, w, C] images (h <= height, w <= width) to [N, height, width, C].

  At the bottom and right, numpy's 'reflect' (repeated for pads wider than the image; a 1-pixel
  side repeats). Returns (padded, (0, 0, h, w)): where the image sits, for crop_box. Raises
  ValueError for an image larger than the target.
  """
  images = np.asarray(images, np.float32)
  h, w = images.shape[1:3]
  if h > height or w > width:
    raise ValueError(f'A {h}x{w} image does not fit the model\'s fixed {height}x{width} input; '
                     'cut it into tiles of that size (translate.py does).')
  widths = ((0, 0), (0, height - h), (0, width - w), (0, 0))
  return np.pad(images, widths, mode='reflect'), (0, 0, h, w)


def crop_box(images, box):
  top, left, h, w = box
  return images[:, top:top + h, left:left + w, :]


# ---------------------------------------------------------------------------------------------
# Models.


class EdgeModel:
  """A generator exported as LiteRT or ONNX: float32 [N, H, W, C_in] in [-1, 1] ->
  float32 [N, H, W, C_out] in [-1, 1].

  Attributes: path, format ('litert' / 'onnx'), fixed_size ((height, width) or None for any
  size), input_channels, output_channels, metadata (the folder's model.json entry, {} without
  one), description.
  """

  format = None

  def __init__(self, path, metadata=None):
    self.path = os.path.abspath(path)
    self.metadata = dict(metadata or {})
    self.fixed_size = None
    self.input_channels = self.output_channels = None
    self.batch_size = None  # the model's fixed batch size, None when dynamic

  @property
  def description(self):
    size = 'any size' if self.fixed_size is None else 'x'.join(map(str, self.fixed_size))
    precision = self.metadata.get('precision', 'float32')
    return f'{self.format} {os.path.basename(self.path)} ({size}, {precision})'

  def __call__(self, images):
    """Runs the model on images of a size it takes: its fixed size, or any for a dynamic one."""
    images = np.ascontiguousarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != self.input_channels:
      raise ValueError(f'{self.description} takes float32 [N, H, W, {self.input_channels}] '
                       f'images; got shape {images.shape}.')
    if self.fixed_size is not None and tuple(images.shape[1:3]) != tuple(self.fixed_size):
      raise ValueError(f'{self.description} takes {self.fixed_size[0]}x{self.fixed_size[1]} '
                       f'images; got {images.shape[1]}x{images.shape[2]} (use translate()).')
    if self.batch_size is None:
      return self._run(images)
    return np.concatenate([self._run(images[i:i + 1]) for i in range(len(images))], axis=0)

  def translate(self, images):
    """Any image no larger than a fixed size (any size for a dynamic model): pad, run, crop."""
    if self.fixed_size is None:
      return self(images)
    padded, box = pad_to_size(images, *self.fixed_size)
    return crop_box(self(padded), box)

  def _run(self, images):
    raise NotImplementedError


class LiteRTModel(EdgeModel):
  """A .tflite generator in the ai-edge-litert interpreter (XNNPACK on CPU), `num_threads`
  threads (default: all cores). Dynamic-size models are resized to each new input shape."""

  format = 'litert'

  def __init__(self, path, metadata=None, num_threads=None):
    super().__init__(path, metadata)
    interpreter = import_runtime('litert')
    self._interpreter = interpreter.Interpreter(model_path=self.path,
                                                num_threads=num_threads or os.cpu_count())
    inputs, outputs = (self._interpreter.get_input_details(),
                       self._interpreter.get_output_details())
    if len(inputs) != 1 or len(outputs) != 1:
      raise ValueError(f'{self.path} has {len(inputs)} inputs and {len(outputs)} outputs; a '
                       'generator export has one of each.')
    self._input, self._output = inputs[0], outputs[0]
    signature = [int(d) for d in self._input['shape_signature']]
    self.input_channels = signature[3]
    self.output_channels = int(self._output['shape_signature'][3])
    if signature[1] > 0 and signature[2] > 0:
      self.fixed_size = (signature[1], signature[2])
    self.batch_size = signature[0] if signature[0] > 0 else None
    self._shape = None
    if self.fixed_size is not None:
      self._interpreter.allocate_tensors()
      self._shape = tuple(int(d) for d in self._input['shape'])

  def _run(self, images):
    if images.shape != self._shape:
      self._interpreter.resize_tensor_input(self._input['index'], list(images.shape))
      self._interpreter.allocate_tensors()
      self._shape = images.shape
    self._interpreter.set_tensor(self._input['index'], images)
    self._interpreter.invoke()
    return np.array(self._interpreter.get_tensor(self._output['index']))


class OnnxModel(EdgeModel):
  """A .onnx generator in onnxruntime's CPUExecutionProvider, `num_threads` intra-op threads
  (default: all cores)."""

  format = 'onnx'

  def __init__(self, path, metadata=None, num_threads=None):
    super().__init__(path, metadata)
    onnxruntime = import_runtime('onnx')
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = num_threads or os.cpu_count()
    self._session = onnxruntime.InferenceSession(self.path, options,
                                                 providers=['CPUExecutionProvider'])
    inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
      raise ValueError(f'{self.path} has {len(inputs)} inputs and {len(outputs)} outputs; a '
                       'generator export has one of each.')
    self._input_name, self._output_name = inputs[0].name, outputs[0].name
    shape = inputs[0].shape
    self.input_channels = int(shape[3])
    self.output_channels = int(outputs[0].shape[3])
    if isinstance(shape[1], int) and isinstance(shape[2], int):
      self.fixed_size = (shape[1], shape[2])
    self.batch_size = shape[0] if isinstance(shape[0], int) else None

  def _run(self, images):
    return self._session.run([self._output_name], {self._input_name: images})[0]


# ---------------------------------------------------------------------------------------------
# Finding and loading files.


def read_metadata(folder):
  """The folder's model.json as a dict ({} when there is none)."""
  path = os.path.join(folder, METADATA_FILE)
  if not os.path.isfile(path):
    return {}
  with open(path) as f:
    return json.load(f)


def _versions(folder):
  return sorted(int(n) for n in os.listdir(folder)
                if _VERSION_RE.match(n) and os.path.isdir(os.path.join(folder, n)))


def _model_files(folder):
  return sorted(n for n in os.listdir(folder) if os.path.splitext(n)[1] in FORMAT_OF_SUFFIX)


def resolve(path):
  """The model file a path means: the file itself; a folder's default (model.json) or only
  model file; a model base folder's newest numbered version. Raises FileNotFoundError saying
  what the path holds and what is expected."""
  path = os.path.abspath(path)
  if os.path.isfile(path):
    if os.path.splitext(path)[1].lower() not in FORMAT_OF_SUFFIX:
      raise FileNotFoundError(f'{path} is not a LiteRT (.tflite) or ONNX (.onnx) file.')
    return path
  if not os.path.isdir(path):
    raise FileNotFoundError(f'No such file or folder: {path}')
  files = _model_files(path)
  if not files:
    versions = _versions(path)
    if versions:
      return resolve(os.path.join(path, str(versions[-1])))
    raise FileNotFoundError(
        f'{path} holds no .tflite or .onnx file and no numbered version folder; give a file or '
        'a folder that `--mode=export --config.export.formats=litert,onnx` wrote.')
  default = read_metadata(path).get('default')
  if default in files:
    return os.path.join(path, default)
  if len(files) == 1:
    return os.path.join(path, files[0])
  raise FileNotFoundError(f'{path} holds several models ({", ".join(files)}) and no '
                          f'{METADATA_FILE} naming the default one: give one file.')


def file_metadata(model_path):
  """The folder's model.json merged with the entry of this file (precision, size, check)."""
  folder_meta = read_metadata(os.path.dirname(model_path))
  entry = next((f for f in folder_meta.get('files', ())
                if f.get('file') == os.path.basename(model_path)), {})
  meta = {k: v for k, v in folder_meta.items() if k != 'files'}
  meta.update(entry)
  return meta


def load(path, num_threads=None):
  """A LiteRTModel or OnnxModel for a file or folder (see resolve)."""
  model_path = resolve(path)
  fmt = FORMAT_OF_SUFFIX[os.path.splitext(model_path)[1].lower()]
  cls = LiteRTModel if fmt == 'litert' else OnnxModel
  return cls(model_path, file_metadata(model_path), num_threads=num_threads)


def is_edge_model(path):
  """Whether `path` is a .tflite / .onnx file or a folder of them (not a SavedModel)."""
  if os.path.isfile(path):
    return os.path.splitext(path)[1].lower() in FORMAT_OF_SUFFIX
  if not os.path.isdir(path):
    return False
  if _model_files(path):
    return True
  versions = _versions(path)
  return bool(versions) and bool(_model_files(os.path.join(path, str(versions[-1]))))
