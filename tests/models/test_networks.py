"""cyclegan_tf.models.networks against the reference's architecture (shared/reference/FACTS.md).

Numerics are checked against small float64 numpy versions of PyTorch's ops, written here from
PyTorch's definitions (reflection pad, conv2d, conv_transpose2d as a scatter-add, instance norm),
with weights in PyTorch's layouts converted as the weight converter does (transpose(2, 3, 1, 0)).
"""

import math

import keras
from keras import layers
import numpy as np
import pytest

from cyclegan_tf.models import custom_layers
from cyclegan_tf.models import networks

ATOL = RTOL = 1e-5

# FACTS.md: parameter counts of the reference's own classes, input_nc = output_nc = 3,
# ngf = ndf = 64 (n_layers_D = 5 for 'n_layers').
G_COUNTS = {
    'resnet_9blocks': {'instance': 11_378_179, 'batch': 11_383_427, 'none': 11_372_931},
    'resnet_6blocks': {'instance': 7_837_699, 'batch': 7_841_411, 'none': 7_833_987},
    'unet_128': {'instance': 41_825_667, 'batch': 41_828_995, 'none': 41_821_187},
    'unet_256': {'instance': 54_409_603, 'batch': 54_413_955, 'none': 54_404_099},
}
D_COUNTS = {
    'basic': {'instance': 2_764_737, 'batch': 2_765_633, 'none': 2_763_841},
    'n_layers': {'instance': 11_154_369, 'batch': 11_156_289, 'none': 11_152_449},
    'pixel': {'instance': 8_705, 'batch': 8_832, 'none': 8_576},
}


@pytest.fixture
def zero_init(monkeypatch):
  """Zero kernels: counting parameters needs only shapes, and random init of 54M weights is slow.

  (Random init makes the 21 full-size builds take ~35 s instead of ~9 s on 2 cores.)
  """
  monkeypatch.setattr(networks, 'kernel_initializer', lambda *args, **kwargs: 'zeros')


def _clear():
  keras.backend.clear_session()


# ---------------------------------------------------------------------------------------------
# float64 numpy versions of PyTorch's ops. Activations are NHWC; weights are in PyTorch's layout.
# ---------------------------------------------------------------------------------------------


def np_reflection_pad(x, p):
  """ReflectionPad2d: mirror without repeating the border pixel (index arithmetic)."""

  def index(n):
    idx = np.arange(-p, n + p)
    idx = np.where(idx < 0, -idx, idx)
    return np.where(idx >= n, 2 * (n - 1) - idx, idx)

  return x[:, index(x.shape[1])][:, :, index(x.shape[2])]


def np_conv2d(x, w, b=None, stride=1, padding=0):
  """Conv2d with zero padding; w is [out, in, kh, kw]. Output floor((H + 2p - k) / s) + 1."""
  x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  n, h, wd, _ = x.shape
  out_c, _, kh, kw = w.shape
  oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
  out = np.zeros((n, oh, ow, out_c))
  for a in range(kh):
    for c in range(kw):
      patch = x[:, a:a + stride * (oh - 1) + 1:stride, c:c + stride * (ow - 1) + 1:stride]
      out += np.einsum('nhwi,oi->nhwo', patch, w[:, :, a, c])
  return out if b is None else out + b


def np_conv_transpose2d(x, w, b=None, stride=2, padding=1, output_padding=0):
  """ConvTranspose2d by its scatter-add definition; w is [in, out, kh, kw].

  Every input pixel (i, j) adds x[i, j] * w[:, :, a, c] at (i * s + a, j * s + c) of the full
  output; PyTorch then drops `padding` rows/columns at each side and keeps `output_padding`
  more at the bottom/right. Output (H - 1) * s - 2p + k + output_padding.
  """
  n, h, wd, _ = x.shape
  _, out_c, kh, kw = w.shape
  full = np.zeros((n, (h - 1) * stride + kh + output_padding,
                   (wd - 1) * stride + kw + output_padding, out_c))
  for i in range(h):
    for j in range(wd):
      full[:, i * stride:i * stride + kh, j * stride:j * stride + kw] += np.einsum(
          'ni,ioac->naco', x[:, i, j], w)
  oh = (h - 1) * stride - 2 * padding + kh + output_padding
  ow = (wd - 1) * stride - 2 * padding + kw + output_padding
  out = full[:, padding:padding + oh, padding:padding + ow]
  return out if b is None else out + b


def np_instance_norm(x, eps=1e-5):
  """InstanceNorm2d(affine=False): per example and channel, biased variance."""
  mean = x.mean(axis=(1, 2), keepdims=True)
  var = ((x - mean)**2).mean(axis=(1, 2), keepdims=True)
  return (x - mean) / np.sqrt(var + eps)


def relu(x):
  return np.maximum(x, 0.0)


def to_keras(w):
  """PyTorch conv [out, in, kh, kw] or ConvTranspose [in, out, kh, kw] -> Keras (FACTS.md)."""
  return np.ascontiguousarray(w.transpose(2, 3, 1, 0)).astype(np.float32)


def torch_out_size(size, kernel, stride, padding):
  return (size + 2 * padding - kernel) // stride + 1


def patchgan_out_size(size, n_layers):
  """PyTorch's output side of NLayerDiscriminator (k4, p1; strides 2 .. 2, 1, 1)."""
  size = torch_out_size(size, 4, 2, 1)
  for n in range(1, n_layers + 1):
    size = torch_out_size(size, 4, 2 if n < n_layers else 1, 1)
  return torch_out_size(size, 4, 1, 1)


def _single_layer_model(build, in_channels):
  x = keras.Input((None, None, in_channels))
  return keras.Model(x, build(x))


def _weighted_layer_names(model):
  return {layer.name for layer in model.layers if layer.weights}


def _conv_layers(model):
  return [l for l in model.layers if isinstance(l, (layers.Conv2D, layers.Conv2DTranspose))]


# ---------------------------------------------------------------------------------------------
# Parameter counts
# ---------------------------------------------------------------------------------------------


# Convs that have a bias whatever the norm (the reference's quirk: the others have one only with
# instance norm). Layer names are the state-dict keys; n_layers is built with n_layers_D = 5.
ALWAYS_BIASED = {
    'resnet_6blocks': {'model.23'},
    'resnet_9blocks': {'model.26'},
    'unet_128': {'model.model.3'},  # the outermost up-conv
    'unet_256': {'model.model.3'},
    'basic': {'model.0', 'model.11'},
    'n_layers': {'model.0', 'model.17'},
    'pixel': {'net.0'},  # the reference's last pixel conv (net.5) has bias=use_bias
}


def _check_biases(model, net_name, norm):
  convs = _conv_layers(model)
  with_bias = {l.name for l in convs if l.use_bias}
  if norm == 'instance':
    assert with_bias == {l.name for l in convs}, net_name
  else:
    assert with_bias == ALWAYS_BIASED[net_name], (net_name, norm)


@pytest.mark.parametrize('netG', networks.GENERATORS)
def test_generator_parameter_counts_and_biases_match_reference(netG, zero_init):
  for norm in networks.NORMS:
    model = networks.define_G(3, 3, 64, netG, norm)
    assert networks.count_params(model) == G_COUNTS[netG][norm], (netG, norm)
    _check_biases(model, netG, norm)
  _clear()  # frees the big models (gc.collect costs ~0.3 s, so once per test)


@pytest.mark.parametrize('netD', networks.DISCRIMINATORS)
def test_discriminator_parameter_counts_and_biases_match_reference(netD, zero_init):
  for norm in networks.NORMS:
    model = networks.define_D(3, 64, netD, n_layers_D=5, norm=norm)
    assert networks.count_params(model) == D_COUNTS[netD][norm], (netD, norm)
    _check_biases(model, netD, norm)
  _clear()  # frees the big models (gc.collect costs ~0.3 s, so once per test)


def test_batch_norm_running_statistics_are_not_counted():
  model = networks.define_D(3, 8, 'basic', norm='batch')
  non_trainable = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
  assert non_trainable == 2 * (16 + 32 + 64)  # moving mean and variance of the 3 norms
  assert networks.count_params(model) == sum(
      int(np.prod(w.shape)) for w in model.trainable_weights)


def test_one_channel_counts_change_only_in_first_and_last_conv(zero_init):
  ngf = ndf = 64
  # First conv k x k x in x 64: 2 input channels fewer = 2 * k * k * 64 weights fewer.
  # Last conv/up-conv: 2 output channels fewer, each with k * k * fan-in weights and a bias.
  full = G_COUNTS['resnet_6blocks']['instance']
  one_in = networks.count_params(networks.define_G(1, 3, ngf, 'resnet_6blocks'))
  one_out = networks.count_params(networks.define_G(3, 1, ngf, 'resnet_6blocks'))
  assert full - one_in == 2 * 7 * 7 * ngf
  assert full - one_out == 2 * (7 * 7 * ngf + 1)
  one_both = networks.count_params(networks.define_G(1, 1, ngf, 'unet_128'))
  assert G_COUNTS['unet_128']['instance'] - one_both == 2 * 4 * 4 * ngf + 2 * (
      4 * 4 * 2 * ngf + 1)  # the outermost up-conv sees ngf * 2 channels (skip concat)
  for netD, k in (('basic', 4), ('pixel', 1)):
    one = networks.count_params(networks.define_D(1, ndf, netD))
    assert D_COUNTS[netD]['instance'] - one == 2 * k * k * ndf, netD
  _clear()


# ---------------------------------------------------------------------------------------------
# Layer names, biases, dropout
# ---------------------------------------------------------------------------------------------


def test_resnet_9blocks_layer_names_are_the_state_dict_keys():
  model = networks.define_G(3, 3, 4, 'resnet_9blocks', norm='instance')
  expected = {'model.1', 'model.4', 'model.7', 'model.19', 'model.22', 'model.26'}
  expected |= {f'model.{i}.conv_block.{j}' for i in range(10, 19) for j in (1, 5)}
  assert _weighted_layer_names(model) == expected


def test_discriminator_layer_names_are_the_state_dict_keys():
  basic = networks.define_D(3, 4, 'basic', norm='instance')
  assert _weighted_layer_names(basic) == {'model.0', 'model.2', 'model.5', 'model.8',
                                          'model.11'}
  pixel = networks.define_D(3, 4, 'pixel', norm='batch')
  assert _weighted_layer_names(pixel) == {'net.0', 'net.2', 'net.3', 'net.5'}


def test_unet_256_batch_norm_has_the_reference_state_dict_tensors():
  model = networks.define_G(3, 3, 2, 'unet_256', norm='batch')
  # FACTS.md: 82 state-dict tensors = 17 conv tensors + 13 batch norms x 5 (weight, bias,
  # running_mean, running_var, num_batches_tracked); Keras has no num_batches_tracked.
  assert len(model.weights) == 82 - 13
  names = _weighted_layer_names(model)
  for key in ('model.model.0', 'model.model.3', 'model.model.1.model.1',
              'model.model.1.model.2', 'model.model.1.model.5', 'model.model.1.model.6',
              'model.model.1.model.3.model.1'):
    assert key in names, key
  innermost = 'model.model' + '.1.model' + '.3.model' * 6
  assert {f'{innermost}.{i}' for i in (1, 3, 4)} <= names


def test_resnet_dropout_names_the_second_block_conv_6():
  model = networks.define_G(3, 3, 2, 'resnet_6blocks', use_dropout=True)
  names = _weighted_layer_names(model)
  for i in range(10, 16):
    assert f'model.{i}.conv_block.6' in names and f'model.{i}.conv_block.5' not in names
  assert sum(isinstance(l, layers.Dropout) for l in model.layers) == 6


@pytest.mark.parametrize('netG,num_downs', [('unet_128', 7), ('unet_256', 8)])
def test_unet_dropout_only_in_the_ngf8_middle_blocks(netG, num_downs):
  """The reference passes use_dropout only to its num_downs - 5 (ngf*8, ngf*8) middle blocks.

  (UnetGenerator: `for i in range(num_downs - 5): UnetSkipConnectionBlock(ngf * 8, ngf * 8,
  ..., use_dropout=use_dropout)`; the ngf*4, ngf*2, ngf and outermost blocks get none.)
  """
  ngf = 2
  model = networks.define_G(3, 3, ngf, netG, norm='batch', use_dropout=True)
  dropouts = [l for l in model.layers if isinstance(l, layers.Dropout)]
  assert dropouts and all(l.rate == 0.5 for l in dropouts)
  assert len(dropouts) == num_downs - 5
  for layer in dropouts:  # each follows an up-path norm with ngf * 8 channels
    assert layer.input.shape[-1] == ngf * 8


def test_no_dropout_by_default(default_config):
  c = default_config.model
  assert c.no_dropout  # the reference's CycleGAN trains with --no_dropout
  c.ngf = 2
  for netG in ('resnet_9blocks', 'unet_128'):
    c.netG = netG
    model = networks.generator_from_config(c, 3, 3, netG)
    assert not any(isinstance(l, layers.Dropout) for l in model.layers), netG


# ---------------------------------------------------------------------------------------------
# Output shapes and image size checks
# ---------------------------------------------------------------------------------------------


def test_resnet_keeps_the_image_size():
  model = networks.define_G(3, 2, 4, 'resnet_6blocks')
  for h, w in ((32, 32), (36, 44), (64, 128)):
    y = model(np.zeros((1, h, w, 3), np.float32))
    assert tuple(y.shape) == (1, h, w, 2)


def test_unet_keeps_the_image_size():
  model = networks.define_G(3, 1, 2, 'unet_128')
  assert tuple(model(np.zeros((1, 128, 256, 3), np.float32)).shape) == (1, 128, 256, 1)
  model = networks.define_G(1, 3, 2, 'unet_256')
  assert tuple(model(np.zeros((2, 256, 256, 1), np.float32)).shape) == (2, 256, 256, 3)


@pytest.mark.parametrize('size', [(256, 256), (64, 64), (70, 70), (37, 53)])
def test_basic_discriminator_output_size_is_pytorchs(size):
  model = networks.define_D(3, 8, 'basic')
  y = model(np.zeros((1, *size, 3), np.float32))
  expected = tuple(patchgan_out_size(s, 3) for s in size)
  assert tuple(y.shape) == (1, *expected, 1)
  if size == (256, 256):
    assert expected == (30, 30)
  if size == (64, 64):
    assert expected == (6, 6)


def test_n_layers_discriminator_output_size_is_pytorchs():
  model = networks.define_D(3, 4, 'n_layers', n_layers_D=5)
  for size in ((256, 256), (96, 130)):
    expected = tuple(patchgan_out_size(s, 5) for s in size)
    assert tuple(model(np.zeros((1, *size, 3), np.float32)).shape) == (1, *expected, 1)
  # An odd side where TF's "same" padding would differ (9 -> 5 there, 4 in PyTorch).
  model = networks.define_D(3, 4, 'n_layers', n_layers_D=1)
  assert patchgan_out_size(9, 1) == 2
  assert tuple(model(np.zeros((1, 9, 11, 3), np.float32)).shape) == (
      1, 2, patchgan_out_size(11, 1), 1)


def test_pixel_discriminator_keeps_the_size():
  model = networks.define_D(3, 4, 'pixel')
  assert tuple(model(np.zeros((2, 13, 17, 3), np.float32)).shape) == (2, 13, 17, 1)


def test_invalid_size_names_the_nearest_valid_sizes():
  with pytest.raises(ValueError, match=r'30.*28 or 32'):
    networks.check_image_size(30, 32, networks.size_multiple('resnet_9blocks'))
  with pytest.raises(ValueError, match=r'300.*256 or 512'):
    networks.check_image_size(256, 300, networks.size_multiple('unet_256'))
  networks.check_image_size(None, 64, 4)  # unknown sides pass

  resnet = networks.define_G(3, 3, 2, 'resnet_6blocks')
  with pytest.raises(ValueError) as info:
    resnet(np.zeros((1, 30, 32, 3), np.float32))
  assert '30' in str(info.value) and ('28' in str(info.value) or '32' in str(info.value))
  unet = networks.define_G(3, 3, 2, 'unet_256')
  with pytest.raises(ValueError) as info:
    unet(np.zeros((1, 256, 300, 3), np.float32))
  assert '300' in str(info.value) and ('256' in str(info.value) or '512' in str(info.value))


# ---------------------------------------------------------------------------------------------
# Numerics of single ops against numpy
# ---------------------------------------------------------------------------------------------


def _check(model, x, expected):
  got = np.asarray(model(x.astype(np.float32)))
  assert got.shape == expected.shape
  np.testing.assert_allclose(got, expected, atol=ATOL, rtol=RTOL)


def test_reflection_padding_matches_pytorch():
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (2, 5, 7, 3))
  for p in (1, 3):
    got = custom_layers.pad2d(x.astype(np.float32), p, 'reflect').numpy()
    np.testing.assert_allclose(got, np_reflection_pad(x, p), atol=ATOL, rtol=RTOL)
  with pytest.raises(ValueError, match="'replicate'.*reflect, zero"):
    custom_layers.pad2d(x, 1, 'replicate')
  # Known values: [0, 1, 2, 3] padded by 2 -> [2, 1, 0, 1, 2, 3, 2, 1].
  img = np.tile(np.arange(4.0), (1, 3, 1))[..., None]  # [1, 3, 4, 1], rows 0 1 2 3
  assert np_reflection_pad(img, 2)[0, 2, :, 0].tolist() == [2, 1, 0, 1, 2, 3, 2, 1]


@pytest.mark.parametrize('padding,kernel,stride,mode,dtype', [
    (1, 3, 1, 'reflect', 'float32'), (3, 7, 1, 'reflect', 'float32'),
    (1, 3, 1, 'reflect', 'bfloat16'), (1, 3, 2, 'zero', 'float32'), (1, 4, 2, 'zero', 'bfloat16'),
    (1, 4, 1, 'zero', 'float32')])
def test_padded_conv_gradients_are_tfs(padding, kernel, stride, mode, dtype):
  """Its own gradient (the pad recomputed in the backward pass) equals TF's gradient of
  pad-then-conv, for the input and the kernel."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(kernel)
  x = tf.constant(rng.uniform(-1, 1, (2, 9, 8, 4)), dtype)
  kernel_ = tf.constant(rng.normal(0, 0.2, (kernel, kernel, 4, 5)), dtype)
  out = [(side + 2 * padding - kernel) // stride + 1 for side in (9, 8)]
  dy = tf.constant(rng.normal(0, 1, (2, *out, 5)), dtype)
  pads = [[0, 0], [padding, padding], [padding, padding], [0, 0]]
  tf_mode = 'REFLECT' if mode == 'reflect' else 'CONSTANT'
  plain = lambda x, k: tf.nn.conv2d(tf.pad(x, pads, tf_mode), k, stride, 'VALID')
  results = []
  for conv in (lambda x, k: custom_layers.padded_conv2d(x, k, padding, mode, stride), plain):
    with tf.GradientTape() as tape:
      tape.watch([x, kernel_])
      y = conv(x, kernel_)
      loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.cast(dy, tf.float32))
    results.append([y] + tape.gradient(loss, [x, kernel_]))
  for got, want in zip(*results):
    assert got.dtype == want.dtype == dtype and got.shape == want.shape
    np.testing.assert_array_equal(tf.cast(got, tf.float32).numpy(),
                                  tf.cast(want, tf.float32).numpy())


@pytest.mark.parametrize('kernel,stride,padding,size', [
    (3, 2, 1, (8, 8)),
    (3, 2, 1, (9, 9)),  # odd: Keras "same" would pad differently
    (3, 2, 1, (7, 10)),
    (4, 2, 1, (8, 8)),
    (4, 2, 1, (9, 11)),
    (4, 1, 1, (6, 7)),
    (7, 1, 0, (9, 9)),
])
def test_conv_matches_pytorch(kernel, stride, padding, size):
  rng = np.random.default_rng(kernel * 100 + stride * 10 + size[0])
  cin, cout = 3, 5
  f = networks._LayerFactory('instance', 'normal', 0.02)
  model = _single_layer_model(lambda x: f.conv(x, cout, kernel, stride, padding, 'c'), cin)
  w = rng.normal(0, 0.2, (cout, cin, kernel, kernel))
  b = rng.normal(0, 0.2, cout)
  model.get_layer('c').set_weights([to_keras(w), b.astype(np.float32)])
  x = rng.uniform(-1, 1, (2, *size, cin))
  expected = np_conv2d(x, w, b, stride, padding)
  assert expected.shape[1:3] == tuple(torch_out_size(s, kernel, stride, padding) for s in size)
  _check(model, x, expected)


@pytest.mark.parametrize('cin,size', [(8, (11, 9)), (2, (7, 7))])
def test_few_output_conv_matches_numpy_and_tf_gradients(cin, size):
  """The generators' last conv (7x7, few output channels) runs as GEMMs with its own gradient:
  its output must be the conv's, and its gradients must be tf.nn.conv2d's."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(cin)
  f = networks._LayerFactory('instance', 'normal', 0.02)
  model = _single_layer_model(lambda x: f.conv(x, 3, 7, 1, 0, 'c'), cin)
  assert isinstance(model.get_layer('c'), custom_layers.FewOutputConv2D)
  w, b = rng.normal(0, 0.2, (3, cin, 7, 7)), rng.normal(0, 0.2, 3)
  model.get_layer('c').set_weights([to_keras(w), b.astype(np.float32)])
  x = rng.uniform(-1, 1, (2, *size, cin))
  _check(model, x, np_conv2d(x, w, b))

  x = tf.constant(x, tf.float32)
  kernel = tf.constant(to_keras(w))
  dy = tf.constant(rng.normal(0, 1, (2, size[0] - 6, size[1] - 6, 3)), tf.float32)
  grads = []
  for conv in (custom_layers.few_output_conv2d,
               lambda x, k: tf.nn.conv2d(x, k, strides=1, padding='VALID')):
    with tf.GradientTape() as tape:
      tape.watch([x, kernel])
      loss = tf.reduce_sum(conv(x, kernel) * dy)
    grads.append(tape.gradient(loss, [x, kernel]))
  for got, want in zip(*grads):
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-4, rtol=1e-5)
  # Each image's output is bit-identical alone or in a batch (as tf.nn.conv2d's), so replicas
  # with 1 image each compute what one device computes for a batch of 2.
  np.testing.assert_array_equal(custom_layers.few_output_conv2d(x, kernel)[1:].numpy(),
                                custom_layers.few_output_conv2d(x[1:], kernel).numpy())


def test_only_the_generators_last_conv_is_few_output():
  for netG, last in (('resnet_6blocks', 'model.23'), ('resnet_9blocks', 'model.26')):
    model = networks.define_G(3, 3, 8, netG, 'instance')
    few = [l.name for l in model.layers if isinstance(l, custom_layers.FewOutputConv2D)]
    assert few == [last], netG
  for netD in networks.DISCRIMINATORS:
    model = networks.define_D(3, 8, netD)
    assert not [l for l in model.layers if isinstance(l, custom_layers.FewOutputConv2D)], netD


def test_reflect_padded_conv_matches_pytorch():
  rng = np.random.default_rng(1)
  f = networks._LayerFactory('instance', 'normal', 0.02)
  model = _single_layer_model(lambda x: f.conv(x, 4, 3, 1, 1, 'c', reflect=True), 2)
  w, b = rng.normal(0, 0.2, (4, 2, 3, 3)), rng.normal(0, 0.2, 4)
  model.get_layer('c').set_weights([to_keras(w), b.astype(np.float32)])
  x = rng.uniform(-1, 1, (1, 6, 5, 2))
  _check(model, x, np_conv2d(np_reflection_pad(x, 1), w, b))


@pytest.mark.parametrize('kernel,size', [(3, (5, 7)), (3, (4, 4)), (4, (5, 7)), (4, (1, 1))])
def test_conv_transpose_matches_pytorch(kernel, size):
  """k3 s2 p1 output_padding 1 (resnet) and k4 s2 p1 (U-Net): both give 2x the input."""
  rng = np.random.default_rng(kernel * 10 + size[0])
  cin, cout = 4, 3
  f = networks._LayerFactory('instance', 'normal', 0.02)
  model = _single_layer_model(lambda x: f.conv_transpose(x, cout, kernel, 'up'), cin)
  w = rng.normal(0, 0.2, (cin, cout, kernel, kernel))  # PyTorch ConvTranspose layout
  b = rng.normal(0, 0.2, cout)
  model.get_layer('up').set_weights([to_keras(w), b.astype(np.float32)])
  x = rng.uniform(-1, 1, (2, *size, cin))
  expected = np_conv_transpose2d(x, w, b, stride=2, padding=1,
                                 output_padding=1 if kernel == 3 else 0)
  assert expected.shape[1:3] == (2 * size[0], 2 * size[1])
  _check(model, x, expected)


def test_numpy_conv_transpose_is_the_adjoint_of_conv():
  """Sanity of the reference itself: <conv(x), y> == <x, conv_transpose(y)> (k4 s2 p1)."""
  rng = np.random.default_rng(2)
  w = rng.normal(size=(3, 2, 4, 4))  # conv [out=3, in=2]; as ConvTranspose [in=3, out=2]
  x = rng.normal(size=(1, 8, 8, 2))
  y = rng.normal(size=(1, 4, 4, 3))
  lhs = np.sum(np_conv2d(x, w, stride=2, padding=1) * y)
  rhs = np.sum(x * np_conv_transpose2d(y, w, stride=2, padding=1))
  assert math.isclose(lhs, rhs, rel_tol=1e-10)


def test_instance_norm_matches_pytorch():
  rng = np.random.default_rng(3)
  f = networks._LayerFactory('instance', 'normal', 0.02)
  model = _single_layer_model(lambda x: f.norm(x, 'n'), 4)
  assert not model.get_layer('n').weights  # affine=False
  x = rng.normal(0.5, 2.0, (2, 6, 5, 4))
  x[1, ..., 3] = 0.25  # a constant channel: var 0, output 0 (eps)
  _check(model, x, np_instance_norm(x))


# ---------------------------------------------------------------------------------------------
# A whole generator against a numpy forward pass composed by layer name
# ---------------------------------------------------------------------------------------------


def _np_resnet_forward(x, p, n_blocks):
  conv = lambda x, name, **kw: np_conv2d(x, p[name][0], p[name][1], **kw)
  up = lambda x, name: np_conv_transpose2d(x, p[name][0], p[name][1], 2, 1, 1)
  x = relu(np_instance_norm(conv(np_reflection_pad(x, 3), 'model.1')))
  x = relu(np_instance_norm(conv(x, 'model.4', stride=2, padding=1)))
  x = relu(np_instance_norm(conv(x, 'model.7', stride=2, padding=1)))
  for i in range(10, 10 + n_blocks):
    y = relu(np_instance_norm(conv(np_reflection_pad(x, 1), f'model.{i}.conv_block.1')))
    y = np_instance_norm(conv(np_reflection_pad(y, 1), f'model.{i}.conv_block.5'))
    x = x + y
  i = 10 + n_blocks
  x = relu(np_instance_norm(up(x, f'model.{i}')))
  x = relu(np_instance_norm(up(x, f'model.{i + 3}')))
  return np.tanh(conv(np_reflection_pad(x, 3), f'model.{i + 7}'))


def test_resnet_6blocks_matches_numpy_forward_by_layer_name():
  ngf, in_nc, out_nc, n_blocks = 4, 3, 2, 6
  rng = np.random.default_rng(4)
  # name -> (PyTorch weight shape, fan_in); ConvTranspose shapes are [in, out, k, k].
  shapes = {'model.1': (ngf, in_nc, 7, 7), 'model.4': (2 * ngf, ngf, 3, 3),
            'model.7': (4 * ngf, 2 * ngf, 3, 3), 'model.16': (4 * ngf, 2 * ngf, 3, 3),
            'model.19': (2 * ngf, ngf, 3, 3), 'model.23': (out_nc, ngf, 7, 7)}
  for i in range(10, 16):
    for j in (1, 5):
      shapes[f'model.{i}.conv_block.{j}'] = (4 * ngf, 4 * ngf, 3, 3)
  params = {}
  for name, shape in shapes.items():
    fan = shape[1] * shape[2] * shape[3]
    bias_len = shape[1] if name in ('model.16', 'model.19') else shape[0]
    params[name] = (rng.normal(0, 1 / math.sqrt(fan), shape), rng.normal(0, 0.1, bias_len))

  model = networks.define_G(in_nc, out_nc, ngf, 'resnet_6blocks', norm='instance')
  assert _weighted_layer_names(model) == set(shapes)
  for name, (w, b) in params.items():
    model.get_layer(name).set_weights([to_keras(w), b.astype(np.float32)])
  x = rng.uniform(-1, 1, (2, 20, 24, in_nc))
  got = np.asarray(model(x.astype(np.float32)))
  expected = _np_resnet_forward(x, params, n_blocks)
  assert got.shape == expected.shape == (2, 20, 24, out_nc)
  assert np.abs(got - expected).max() < 1e-4
  assert expected.std() > 0.1  # not a trivially saturated or constant output


# ---------------------------------------------------------------------------------------------
# Weight initialisation (the reference's init_weights)
# ---------------------------------------------------------------------------------------------


def _init_model(init_type, gain=0.02, norm='instance', seed=0, cin=64, cout=128, kernel=3):
  f = networks._LayerFactory(norm, init_type, gain, seed=seed)

  def build(x):
    return [f.conv(x, cout, kernel, 1, 0, 'conv'),
            f.norm(f.conv_transpose(x, cout, kernel, 'up'), 'norm')]

  return _single_layer_model(build, cin)


def test_normal_init_std_and_zero_biases():
  model = _init_model('normal')
  for name in ('conv', 'up'):
    kernel, bias = (np.asarray(w) for w in model.get_layer(name).weights)
    assert abs(kernel.std() / 0.02 - 1) < 0.1, name
    assert abs(kernel.mean()) < 0.002, name
    assert not bias.any(), name


def test_normal_init_of_a_whole_generator():
  model = networks.define_G(3, 3, 8, 'resnet_6blocks', seed=0)
  kernels = np.concatenate([np.asarray(l.kernel).ravel() for l in _conv_layers(model)])
  assert abs(kernels.std() / 0.02 - 1) < 0.1
  assert not any(np.asarray(l.bias).any() for l in _conv_layers(model))


def test_batch_norm_gamma_is_normal_around_one():
  f = networks._LayerFactory('batch', 'normal', 0.02, seed=1)
  model = _single_layer_model(lambda x: f.norm(x, 'bn'), 2048)
  bn = model.get_layer('bn')
  gamma, beta = np.asarray(bn.gamma), np.asarray(bn.beta)
  assert abs(gamma.mean() - 1) < 0.002
  assert abs(gamma.std() / 0.02 - 1) < 0.1
  assert not beta.any()
  assert np.allclose(np.asarray(bn.moving_mean), 0) and np.allclose(np.asarray(bn.moving_variance), 1)
  assert bn.epsilon == 1e-5 and math.isclose(bn.momentum, 0.9)


def test_xavier_init_std():
  gain = 0.02
  model = _init_model('xavier', gain)
  kernel = np.asarray(model.get_layer('conv').kernel)
  fan_in, fan_out = 64 * 9, 128 * 9
  assert abs(kernel.std() / (gain * math.sqrt(2 / (fan_in + fan_out))) - 1) < 0.1


def test_kaiming_init_std_uses_pytorchs_fan_in():
  model = _init_model('kaiming', gain=0.02)  # the reference ignores the gain here
  conv = np.asarray(model.get_layer('conv').kernel)
  assert abs(conv.std() / math.sqrt(2 / (64 * 9)) - 1) < 0.1
  # PyTorch's fan_in of a ConvTranspose weight [in, out, k, k] is out * k * k.
  up = np.asarray(model.get_layer('up').kernel)
  assert abs(up.std() / math.sqrt(2 / (128 * 9)) - 1) < 0.1


def test_orthogonal_init_is_orthogonal_times_gain():
  gain = 0.02
  model = _init_model('orthogonal', gain, cin=16, cout=32)
  kernel = np.asarray(model.get_layer('conv').kernel, np.float64)  # [3, 3, 16, 32]
  flat = kernel.reshape(-1, kernel.shape[-1])  # 144 x 32: one column per output filter
  np.testing.assert_allclose(flat.T @ flat / gain**2, np.eye(32), atol=1e-4)


def test_unknown_names_raise_value_error():
  with pytest.raises(ValueError, match='resnet_9blocks'):
    networks.define_G(3, 3, 4, 'foo')
  with pytest.raises(ValueError, match='basic'):
    networks.define_D(3, 4, 'foo')
  with pytest.raises(ValueError, match='instance'):
    networks.define_G(3, 3, 4, 'resnet_6blocks', norm='foo')
  with pytest.raises(ValueError, match='orthogonal'):
    networks.kernel_initializer('foo', 0.02)


def test_build_cyclegan_roles_and_channels(default_config):
  c = default_config.model
  c.ngf = c.ndf = 2
  c.netG, c.netD = 'resnet_6blocks', 'pixel'
  c.input_nc, c.output_nc = 1, 3
  nets = networks.build_cyclegan(c)
  assert sorted(nets) == ['D_A', 'D_B', 'G_A', 'G_B']
  assert nets['G_A'].input_shape[-1] == 1 and nets['G_A'].output_shape[-1] == 3
  assert nets['G_B'].input_shape[-1] == 3 and nets['G_B'].output_shape[-1] == 1
  assert nets['D_A'].input_shape[-1] == 3  # judges B (output_nc) images
  assert nets['D_B'].input_shape[-1] == 1


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_leaky_relu_trains_with_the_same_values_and_gradients(dtype):
  """Its gradient reads the output (so grappler can fuse conv + bias + LeakyRelu): equal to
  TF's LeakyReluGrad, zero inputs included."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  x = tf.constant([[-2.0, -0.5, 0.0, 0.25, 3.0]], dtype)
  layer = custom_layers.LeakyReLU(0.2, dtype=dtype)
  for training in (False, True):
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(x)
      ours = layer(x, training=training)
      theirs = tf.nn.leaky_relu(x, 0.2)
      weights = tf.constant([[1.0, 2.0, 3.0, 4.0, 5.0]], dtype)
      loss_ours, loss_theirs = (tf.reduce_sum(y * weights) for y in (ours, theirs))
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    np.testing.assert_array_equal(tape.gradient(loss_ours, x).numpy(),
                                  tape.gradient(loss_theirs, x).numpy())
