"""Tests for cyclegan_tf.models.inference: any size through padding, float32 copies, batched
prediction, shared instance-norm statistics."""

import numpy as np
import tensorflow as tf

from cyclegan_tf.models import inference
from cyclegan_tf.models import custom_layers
from cyclegan_tf.models import networks


def _images(shape, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def test_pad_to_multiple_matches_numpy_reflect_for_any_size():
  for height, width in [(20, 28), (21, 30), (1, 1), (2, 3), (3, 7), (5, 1)]:
    x = _images((1, height, width, 2), seed=height * 31 + width)
    padded, box = inference.pad_to_multiple(tf.constant(x), 4, min_size=8)
    expected, expected_box = inference.reflect_pad_numpy(x[0], 4, min_size=8)
    assert padded.shape[1] == max(8, -(-height // 4) * 4)
    assert padded.shape[2] == max(8, -(-width // 4) * 4)
    np.testing.assert_array_equal(padded.numpy()[0], expected)
    assert tuple(int(v) for v in box) == expected_box
    np.testing.assert_array_equal(inference.crop_padding(padded, box).numpy(), x)
  # Below the size limit of tf.pad's REFLECT mode the two agree.
  x = _images((1, 9, 10, 3))
  padded, _ = inference.pad_to_multiple(tf.constant(x), 4)
  np.testing.assert_array_equal(
      padded.numpy(), tf.pad(x, [[0, 0], [1, 2], [1, 1], [0, 0]], mode='REFLECT').numpy())


def test_generator_helpers():
  resnet = networks.define_G(3, 3, 2, 'resnet_6blocks', seed=0)
  assert inference.size_multiple_of(resnet) == 4 and inference.minimum_size(resnet, 4) == 8
  g = networks.define_G(3, 3, 2, 'unet_128', name='G_A', seed=0)
  assert inference.size_multiple_of(g) == 128 and inference.minimum_size(g, 128) == 128
  assert inference.norm_layer_widths(g)[:3] == [4, 8, 16]


def test_inference_copy_is_float32_with_a_plain_last_conv():
  """Mixed-precision training generators and the GEMM last conv become a float32 plain-conv
  copy with the same weights and (to float rounding) the same outputs."""
  plain = networks.define_G(3, 3, 4, 'resnet_6blocks', seed=3, gemm_last_conv=False)
  assert inference.inference_copy(plain) is plain
  with networks.dtype_policy('mixed_bfloat16'):
    mixed = networks.define_G(3, 3, 4, 'resnet_6blocks', seed=3)
  assert any(isinstance(l, custom_layers.FewOutputConv2D) for l in mixed.layers)
  copy = inference.inference_copy(mixed)
  assert not any(isinstance(l, custom_layers.FewOutputConv2D) for l in copy.layers)
  assert all(l.compute_dtype == 'float32' for l in copy.layers)
  assert [w.path for w in copy.weights] == [w.path for w in plain.weights]
  x = _images((2, 24, 20, 3), seed=4)
  np.testing.assert_allclose(copy(x).numpy(), plain(x).numpy(), atol=1e-5)


def test_predict_batches_and_returns_float32():
  g = networks.define_G(3, 3, 2, 'resnet_6blocks', seed=0)
  x = _images((5, 16, 16, 3), seed=1)
  out = inference.predict(g, x, batch_size=2)
  assert out.shape == (5, 16, 16, 3) and out.dtype == np.float32
  np.testing.assert_allclose(out, g(x, training=False).numpy(), atol=1e-5)


def test_padded_generator_keeps_any_size_and_shares_statistics():
  g = networks.define_G(3, 1, 2, 'resnet_6blocks', seed=0)
  padded = inference.PaddedGenerator(g)
  assert (padded.input_channels, padded.output_channels, padded.multiple) == (3, 1, 4)
  x = _images((1, 13, 7, 3), seed=2)
  out = padded.translate(x).numpy()
  assert out.shape == (1, 13, 7, 1)
  stats = padded.norm_statistics(x)
  assert len(stats) == len(padded.norm_widths)
  np.testing.assert_allclose(padded.translate_with_norm_statistics(x, stats).numpy(), out,
                             atol=1e-5)
