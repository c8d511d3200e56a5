"""Export: TF Serving's layout and signatures, checked the way TF Serving loads them.

The SavedModels come from the session fixture `exported_run` (conftest.py): one export_run of
two tiny generators; saved_model_cli runs as subprocesses (the session loader TF Serving uses).
"""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cyclegan_tf.deploy import export
from cyclegan_tf.deploy import serving_model
from cyclegan_tf.data import images as images_lib
from cyclegan_tf.models import networks


# The SavedModel's graph and an eager Keras call sum the last conv's 49 shifted GEMM slices
# (custom_layers.few_output_conv2d) in their own order: outputs in [-1, 1] differ by a few float32
# ulps behind instance norm (1.07e-6 seen), so parity is checked to 1e-5.
ATOL = 1e-5

def _images(shape, seed=0):
  return np.random.RandomState(seed).uniform(-1, 1, shape).astype(np.float32)


def _png(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format='PNG')
  return buffer.getvalue()


def _jpeg(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format='JPEG', quality=95)
  return buffer.getvalue()


def _uint8(shape, seed=0):
  return np.random.RandomState(seed).randint(0, 256, shape, dtype=np.uint8)


def _keras_on_reflect_padded(generator, images, multiple=4, min_size=8):
  """The reference for odd sizes: Keras on np.pad(reflect) input, cropped back.

  Sides go up to a multiple of 4 and at least 8 (the resnets' minimum), padding centred.
  """
  outputs = []
  for image in images:
    pads = []
    for side in image.shape[:2]:
      total = max(-(-side // multiple) * multiple, min_size) - side
      pads.append((total // 2, total - total // 2))
    padded = np.pad(image, pads + [(0, 0)], mode='reflect')
    out = generator(padded[np.newaxis], training=False).numpy()[0]
    (top, _), (left, _) = pads
    outputs.append(out[top:top + image.shape[0], left:left + image.shape[1]])
  return np.stack(outputs)


def _saved_model_cli():
  cli = os.path.join(os.path.dirname(sys.executable), 'saved_model_cli')
  return [cli] if os.path.exists(cli) else [
      sys.executable, '-m', 'tensorflow.python.tools.saved_model_cli']


# ---------------------------------------------------------------------------------------------
# Layout, export_run and versions.


def test_export_run_writes_both_generators_in_serving_layout(exported_run):
  export_dir = exported_run.export_dir
  assert exported_run.calls == [(exported_run.workdir, None)]  # latest checkpoint
  assert exported_run.paths == {
      'cyclegan_a2b': os.path.join(export_dir, 'cyclegan_a2b', '1'),
      'cyclegan_b2a': os.path.join(export_dir, 'cyclegan_b2a', '1'),
  }
  for name, path in exported_run.paths.items():
    assert os.path.isfile(os.path.join(path, 'saved_model.pb'))
    assert os.path.isdir(os.path.join(path, 'variables'))
    with open(os.path.join(path, export.METADATA_PATH)) as f:
      meta = json.load(f)
    assert meta['model_name'] == name
    assert meta['size_multiple'] == 4 and meta['min_size'] == 8
    assert meta['netG'] == 'resnet_6blocks'
    assert meta['step'] == 7 and meta['version'] == 1
    assert meta['input_channels'] == 3 and meta['output_channels'] == 3
  assert not [n for n in os.listdir(os.path.join(export_dir, 'cyclegan_a2b'))
              if n.startswith('.tmp')]


@pytest.mark.slow
def test_saved_model_cli_show_and_run_both_signatures(exported_run, tmp_path):
  """saved_model_cli loads through the TF1 session loader, as tensorflow_model_server does."""
  version_dir = exported_run.paths['cyclegan_a2b']
  x = _images((2, 20, 28, 3), seed=1)
  np.save(tmp_path / 'images.npy', x)
  sizes = [(21, 30), (8, 12), (17, 9)]
  contents = [_png(_uint8((h, w, 3), i)) for i, (h, w) in enumerate(sizes[:2])]
  contents.append(_jpeg(_uint8(sizes[2] + (3,), 5)))
  np.save(tmp_path / 'bytes.npy', np.array(contents, dtype=object), allow_pickle=True)
  env = {**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'}
  base = _saved_model_cli()
  commands = {
      'show': base + ['show', '--dir', version_dir, '--all'],
      'images': base + ['run', '--dir', version_dir, '--tag_set', 'serve', '--signature_def',
                        'serving_default', '--inputs', f'images={tmp_path / "images.npy"}',
                        '--outdir', str(tmp_path / 'out_images')],
      'bytes': base + ['run', '--dir', version_dir, '--tag_set', 'serve', '--signature_def',
                       'translate_image', '--inputs', f'image_bytes={tmp_path / "bytes.npy"}',
                       '--outdir', str(tmp_path / 'out_bytes')],
  }
  # Three TF imports at once: the two cores overlap them.
  procs = {k: subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
           for k, c in commands.items()}
  results = {k: p.communicate(timeout=300) for k, p in procs.items()}
  for key, proc in procs.items():
    assert proc.returncode == 0, (key, results[key][1].decode()[-3000:])

  show = results['show'][0].decode()
  for text in ("signature_def['serving_default']", "signature_def['translate_image']",
               "inputs['images']", "outputs['translated']", "inputs['image_bytes']",
               "outputs['png_bytes']", 'DT_FLOAT', 'DT_STRING', '(-1, -1, -1, 3)',
               'tensorflow/serving/predict'):
    assert text in show, text

  translated = np.load(tmp_path / 'out_images' / 'translated.npy')
  expected = exported_run.generators['G_A'](x, training=False).numpy()
  assert translated.dtype == np.float32 and translated.shape == x.shape
  np.testing.assert_allclose(translated, expected, atol=ATOL)

  png_bytes = np.load(tmp_path / 'out_bytes' / 'png_bytes.npy', allow_pickle=True)
  assert png_bytes.shape == (3,)
  for data, (h, w) in zip(png_bytes, sizes):
    with Image.open(io.BytesIO(data)) as image:
      assert image.format == 'PNG' and image.size == (w, h) and image.mode == 'RGB'


# ---------------------------------------------------------------------------------------------
# Signatures in process (tf.saved_model.load runs the same functions).


@pytest.fixture(scope='module')
def a2b_v1(exported_run):
  return serving_model.load_serving_model(exported_run.paths['cyclegan_a2b'])


def test_serving_default_equals_keras_on_valid_sizes(exported_run, a2b_v1):
  x = _images((1, 20, 28, 3), seed=2)
  out = a2b_v1(x).numpy()
  assert out.dtype == np.float32 and out.shape == x.shape
  np.testing.assert_allclose(out, exported_run.generators['G_A'](x).numpy(), atol=ATOL)
  assert np.abs(out).max() <= 1.0


@pytest.mark.parametrize('size', [(21, 30), (2, 3), (3, 5), (6, 9)])
def test_odd_sizes_keep_their_size_and_equal_padded_keras(exported_run, a2b_v1, size):
  x = _images((2,) + size + (3,), seed=3)
  out = a2b_v1(x).numpy()
  assert out.shape == x.shape
  expected = _keras_on_reflect_padded(exported_run.generators['G_A'], x)
  # Tiny images reach the bottleneck as 2x2 maps whose instance norm amplifies float rounding
  # (different op orders in the graph and in Keras): 4e-6 measured, hence the looser bound.
  np.testing.assert_allclose(out, expected, atol=ATOL if min(size) > 8 else 2e-5)


def test_a_single_pixel_comes_back_as_a_single_pixel(a2b_v1):
  # A 1x1 image pads to a constant 8x8 one; instance norm then divides rounding noise by
  # sqrt(eps), so only the shape and range are compared.
  out = a2b_v1(_images((3, 1, 1, 3), seed=6)).numpy()
  assert out.shape == (3, 1, 1, 3)
  assert np.all(np.isfinite(out)) and np.abs(out).max() <= 1.0


def test_mixed_precision_generator_is_exported_in_float32(exported_run):
  b2a = serving_model.load_serving_model(os.path.join(exported_run.export_dir, 'cyclegan_b2a'))
  x = _images((1, 16, 24, 3), seed=4)
  out = b2a(x)
  assert out.dtype == tf.float32
  np.testing.assert_allclose(out.numpy(), exported_run.generators['G_B'](x).numpy(), atol=ATOL)
  assert b2a.model_name == 'cyclegan_b2a' and b2a.version == 1


def test_translate_image_handles_a_batch_of_different_sizes_and_formats(exported_run, a2b_v1):
  gray = _uint8((8, 12), 2)
  rgba = _uint8((5, 7, 4), 3)
  rgb = _uint8((21, 30, 3), 1)
  contents = [_png(rgb), _jpeg(_uint8((17, 9, 3), 4)), _png(gray), _png(rgba)]
  outputs = a2b_v1.translate_bytes(contents)
  assert len(outputs) == 4
  for data, (h, w) in zip(outputs, [(21, 30), (17, 9), (8, 12), (5, 7)]):
    decoded = tf.io.decode_png(data).numpy()
    assert decoded.shape == (h, w, 3)
  # The PNG holds exactly the rounded translation of the decoded input.
  x = images_lib.decode_image(tf.constant(contents[0]), 3).numpy()[np.newaxis]
  expected = images_lib.to_uint8(_keras_on_reflect_padded(exported_run.generators['G_A'], x))
  np.testing.assert_array_equal(tf.io.decode_png(outputs[0]).numpy(), expected.numpy()[0])


def test_translate_image_rejects_data_that_is_not_an_image(a2b_v1):
  with pytest.raises(tf.errors.InvalidArgumentError):
    a2b_v1.translate_bytes([b'not an image'])


# ---------------------------------------------------------------------------------------------
# Versions and the loader.


def test_reexport_adds_a_version_and_the_loader_picks_the_newest(exported_run, tmp_path):
  """On a copy: the shared export keeps its one version for the other tests."""
  import shutil  # pylint: disable=g-import-not-at-top
  export_dir = str(tmp_path / 'export')
  shutil.copytree(exported_run.export_dir, export_dir)
  base = os.path.join(export_dir, 'cyclegan_a2b')
  assert export.next_version(base) == 2
  path = export.export_generator(exported_run.generators['G_A'], export_dir,
                                 'cyclegan_a2b', 'resnet_6blocks')
  assert path == os.path.join(base, '2')
  assert export.list_versions(base) == [1, 2]
  newest = serving_model.load_serving_model(base)
  assert newest.version == 2 and newest.path == path
  assert export.resolve_version_dir(os.path.join(base, '1')) == (os.path.join(base, '1'), 1)
  with pytest.raises(FileExistsError):
    export.export_generator(exported_run.generators['G_A'], export_dir, 'cyclegan_a2b',
                            version=2)
  assert sorted(os.listdir(base)) == ['1', '2']  # no temporary folders left behind


def test_next_version_and_resolve_version_dir(tmp_path):
  base = tmp_path / 'model'
  assert export.next_version(str(base)) == 1
  for name in ('1', '3', 'notes', '.tmp-4-123'):
    (base / name).mkdir(parents=True)
  assert export.next_version(str(base)) == 4
  with pytest.raises(FileNotFoundError, match='saved_model.pb'):
    export.resolve_version_dir(str(base))  # numbered folders without SavedModels
  (base / '3' / 'saved_model.pb').write_bytes(b'')
  assert export.resolve_version_dir(str(base)) == (str(base / '3'), 3)
  with pytest.raises(FileNotFoundError, match='no version 1'):
    export.resolve_version_dir(str(base), version=1)
  with pytest.raises(FileNotFoundError, match='No such directory'):
    serving_model.load_serving_model(str(tmp_path / 'missing'))


def test_translate_image_signature_turns_phone_photos_upright(a2b_v1):
  """The server's path (translate_image) applies EXIF orientation like the other modes."""
  from image_inputs import phone_jpeg as _phone_jpeg  # pylint: disable=g-import-not-at-top
  pngs = a2b_v1.translate_bytes([_phone_jpeg(o) for o in (1, 6, 7)])
  for png in pngs:
    assert tf.io.decode_png(png).shape == (32, 24, 3)  # displayed 24 x 32, stored 32 x 24


def test_export_helpers():
  g = networks.define_G(3, 3, 2, 'unet_128', name='G_A', seed=0)
  with pytest.raises(KeyError, match='G_B'):
    export.export_generators({'G_A': g}, '/nonexistent', _config())


def _hidden(base):
  return [n for n in os.listdir(base) if n.startswith('.')] if os.path.isdir(base) else []


def test_both_generators_share_one_version_even_after_an_interrupted_export(exported_run,
                                                                            tmp_path,
                                                                            monkeypatch):
  """Ctrl-C during the second SavedModel leaves neither new version; an export that stopped
  between two renames elsewhere (a2b at 2, b2a at 1) is followed by version 3 for both."""
  import shutil  # pylint: disable=g-import-not-at-top
  export_dir = str(tmp_path / 'export')
  shutil.copytree(exported_run.export_dir, export_dir)
  bases = {name: os.path.join(export_dir, name) for name in ('cyclegan_a2b', 'cyclegan_b2a')}
  real_save = tf.saved_model.save
  saved = []

  def interrupted_save(obj, path, **kwargs):
    saved.append(path)
    if len(saved) == 2:
      raise KeyboardInterrupt
    return real_save(obj, path, **kwargs)

  with monkeypatch.context() as patch:
    patch.setattr(tf.saved_model, 'save', interrupted_save)
    with pytest.raises(KeyboardInterrupt):
      export.export_generators(exported_run.generators, export_dir, exported_run.config, step=8)
  assert [os.path.dirname(p) for p in saved] == [bases['cyclegan_a2b'], bases['cyclegan_b2a']]
  for base in bases.values():
    assert export.list_versions(base) == [1] and not _hidden(base)

  shutil.copytree(os.path.join(bases['cyclegan_a2b'], '1'), os.path.join(bases['cyclegan_a2b'],
                                                                          '2'))
  paths = export.export_generators(exported_run.generators, export_dir, exported_run.config,
                                   step=8)
  assert paths == {name: os.path.join(base, '3') for name, base in bases.items()}
  for name, base in bases.items():
    with open(os.path.join(base, '3', export.METADATA_PATH)) as f:
      assert json.load(f)['version'] == 3
    assert not _hidden(base)
  assert export.list_versions(bases['cyclegan_b2a']) == [1, 3]


def test_export_run_pairs_every_format_and_publishes_all_or_nothing(exported_run, tmp_path,
                                                                    monkeypatch):
  """One version for both generators in every format (the largest next one of all their
  folders), and a failure in any of them publishes none. The edge conversion is a stand-in
  that writes through edge_export's staging (test_edge_export.py runs the real one)."""
  from cyclegan_tf.deploy import edge_export  # pylint: disable=g-import-not-at-top
  from cyclegan_tf import run_dir  # pylint: disable=g-import-not-at-top
  export_dir = tmp_path / 'export'
  for version in ('1', '2'):  # an earlier ONNX-only export of b2a went further
    (export_dir / 'onnx' / 'cyclegan_b2a' / version).mkdir(parents=True)
  monkeypatch.setattr(run_dir, 'restore_generators', lambda wd, step=None, cfg=None: (
      exported_run.generators, 9, cfg))
  failing = []

  def fake_edge(generator, export_dir, name, export_config, netG=None, step=None, version=None,
                staged=None):
    del export_config, netG, step
    if generator.name in failing:
      raise RuntimeError('conversion failed')
    write = lambda folder: open(os.path.join(folder, 'model.json'), 'w').close()
    return {'onnx': edge_export._write_folder(  # pylint: disable=protected-access
        edge_export.format_base(export_dir, 'onnx', name), version, write, staged)}

  monkeypatch.setattr(edge_export, 'export_edge', fake_edge)
  config = exported_run.config.copy_and_resolve_references()
  config.export.formats = 'onnx'
  failing.append('G_B')
  with pytest.raises(RuntimeError, match='conversion failed'):
    export.export_run(config, str(tmp_path / 'run'), str(export_dir))
  onnx_a2b = export_dir / 'onnx' / 'cyclegan_a2b'
  assert export.list_versions(str(onnx_a2b)) == [] and not _hidden(str(onnx_a2b))
  failing.clear()
  config.export.formats = 'saved_model,onnx'
  paths = export.export_run(config, str(tmp_path / 'run'), str(export_dir))
  assert paths == {
      'cyclegan_a2b': str(export_dir / 'cyclegan_a2b' / '3'),
      'cyclegan_b2a': str(export_dir / 'cyclegan_b2a' / '3'),
      'onnx/cyclegan_a2b': str(onnx_a2b / '3'),
      'onnx/cyclegan_b2a': str(export_dir / 'onnx' / 'cyclegan_b2a' / '3')}
  for path in paths.values():
    assert not _hidden(os.path.dirname(path))


def test_publishing_defers_ctrl_c_until_every_folder_is_renamed(tmp_path, monkeypatch):
  import signal  # pylint: disable=g-import-not-at-top
  pairs = []
  for name in ('a', 'b'):
    (tmp_path / name / '.tmp').mkdir(parents=True)
    pairs.append((str(tmp_path / name / '.tmp'), str(tmp_path / name / '4')))
  real_rename = os.rename

  def rename_with_ctrl_c(src, dst):
    os.kill(os.getpid(), signal.SIGINT)  # arrives between the two renames
    real_rename(src, dst)

  monkeypatch.setattr(os, 'rename', rename_with_ctrl_c)
  with pytest.raises(KeyboardInterrupt):
    with export._Staging() as staging:  # pylint: disable=protected-access
      staging.pairs.extend(pairs)
      staging.publish()
  assert all(os.path.isdir(target) and not os.path.exists(tmp) for tmp, target in pairs)
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_export_of_a_run_records_the_runs_own_architecture(trained_run, tmp_path):
  """--mode=export on a run without --config: the command line's default netG
  (resnet_9blocks) must not reach the metadata; the run's resnet_6blocks does."""
  _, workdir = trained_run
  paths = export.export_run(_config(), workdir, export_dir=str(tmp_path / 'export'))
  for name, path in paths.items():
    with open(os.path.join(path, export.METADATA_PATH)) as f:
      meta = json.load(f)
    assert meta['netG'] == 'resnet_6blocks' and meta['step'] == 24, name
    assert meta['norm_layer_widths'][:2] == [4, 8]


def _config():
  from configs import default  # pylint: disable=g-import-not-at-top
  return default.get_config()
