"""The layers the reference's networks need that Keras lacks or that train faster here:
PyTorch's padded convs as one layer each (less memory), instance norm as a
fused kernel, a LeakyReLU whose gradient lets grappler fuse convolutions, a crop with a fast
gradient, and the GEMM form of a few-output conv.

Each computes what its PyTorch counterpart computes (tests/models/test_networks.py compares them with
numpy and PyTorch); none holds weights beyond a Conv2D's.
"""

from keras import layers
import tensorflow as tf


class LeakyReLU(layers.LeakyReLU):
  """keras' LeakyReLU whose gradient, in training, reads its output instead of its input.

  max(x, a x) has the gradient 1 where the output is positive and `a` elsewhere, so the output
  tells it (as ReluGrad uses Relu's output). TF's own LeakyReluGrad reads the input, which
  after a conv with a bias is the BiasAdd that grappler's remapper fuses away: it then aborts
  the whole pass ("remapper failed: ... fanout ... LeakyReluGrad exist for missing node
  .../BiasAdd") and the train step runs without any fused conv. Same values, same gradients.
  """

  def call(self, inputs, training=None):
    if not training:
      return super().call(inputs)
    alpha = self.negative_slope

    @tf.custom_gradient
    def leaky_relu(x):
      y = tf.nn.leaky_relu(x, alpha)

      def grad(dy):
        return dy * tf.where(y > 0, tf.ones_like(dy), tf.fill(tf.shape(dy),
                                                               tf.cast(alpha, dy.dtype)))
      return y, grad

    return leaky_relu(inputs)


def _fused_instance_norm(x, epsilon):
  """Instance norm of [1, H, W, C] as TF's fused batch norm over (H, W) in training mode: one
  oneDNN kernel forward and one backward, statistics in float32 for bfloat16 inputs too."""
  channels = x.shape[-1] if x.shape[-1] is not None else tf.shape(x)[-1]
  y = tf.raw_ops.FusedBatchNormV3(
      x=x, scale=tf.ones([channels], tf.float32), offset=tf.zeros([channels], tf.float32),
      mean=tf.zeros([0], tf.float32), variance=tf.zeros([0], tf.float32), epsilon=epsilon,
      exponential_avg_factor=1.0, data_format='NHWC', is_training=True)[0]
  return y


class InstanceNormalization(layers.Layer):
  """The reference's InstanceNorm2d (affine=False, eps 1e-5): each image's channels of [N, H, W,
  C] normalised by their own mean and biased variance over H and W.

  Computed by TF's fused batch norm (training mode) on one image at a time, which is instance
  norm exactly (batch norm over H and W of a batch of one): a fused kernel forward and
  backward, that keeps no full-size intermediates and computes bfloat16 inputs with float32
  statistics. A batch of N images is laid out as one image of N * C channels for it. No
  weights.
  """

  center = scale = False  # no affine parameters, as the reference's

  def __init__(self, epsilon=1e-5, **kwargs):
    super().__init__(**kwargs)
    self.epsilon = float(epsilon)

  def call(self, inputs):
    if inputs.dtype not in (tf.float32, tf.bfloat16, tf.float16):  # e.g. float64 references
      mean, variance = tf.nn.moments(inputs, axes=[1, 2], keepdims=True)
      return (inputs - mean) * tf.math.rsqrt(variance + self.epsilon)
    n, channels = inputs.shape[0], inputs.shape[-1]
    if n == 1:
      return _fused_instance_norm(inputs, self.epsilon)
    shape = tf.shape(inputs)
    batch, height, width = shape[0], shape[1], shape[2]
    per_channel = tf.reshape(tf.transpose(inputs, [1, 2, 0, 3]),
                             [1, height, width, batch * channels])
    outputs = _fused_instance_norm(tf.ensure_shape(per_channel, [1, None, None, None]),
                                   self.epsilon)
    return tf.transpose(tf.reshape(outputs, [height, width, batch, channels]), [2, 0, 1, 3])

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), 'epsilon': self.epsilon}


PAD_MODES = ('reflect', 'zero')


def pad2d(x, padding, mode='reflect'):
  """[N, H, W, C] padded by `padding` pixels a side: mode 'reflect' is PyTorch's ReflectionPad2d
  (no border repeat), 'zero' the padding of its Conv2d. Raises ValueError for another mode."""
  if mode not in PAD_MODES:
    raise ValueError(f'Unknown padding mode {mode!r}; allowed: {", ".join(PAD_MODES)}.')
  p = int(padding)
  return tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]],
                mode='REFLECT' if mode == 'reflect' else 'CONSTANT')


def padded_conv2d(x, kernel, padding, mode='reflect', stride=1):
  """conv2d(pad(x, padding), kernel, stride, "VALID") with `mode` 'reflect' (PyTorch's
  ReflectionPad2d) or 'zero' (Conv2d's own padding), whose gradient keeps x, not the padded x.

  TF's gradient of a conv keeps its input, here the padded copy of x, alive from the forward
  pass to the backward one, while x itself is usually kept anyway (the ReLU before it needs
  its output). This gradient pads x again instead: one full-size activation fewer per padded
  conv (7-9% less peak memory for a float32 256 px train step), for a cheap extra pad.
  Same values and gradients as TF's.
  """
  strides = [1, stride, stride, 1]

  @tf.custom_gradient
  def conv(x, kernel):
    y = tf.nn.conv2d(pad2d(x, padding, mode), kernel, strides=strides, padding='VALID')

    def grad(dy):
      # Depending on dy, the pad runs in the backward pass: grappler cannot merge it with the
      # forward one (which would keep the padded copy alive again).
      with tf.control_dependencies([dy]):
        padded = pad2d(x, padding, mode)
      dkernel = tf.raw_ops.Conv2DBackpropFilter(
          input=padded, filter_sizes=tf.shape(kernel), out_backprop=dy, strides=strides,
          padding='VALID')
      dpadded = tf.raw_ops.Conv2DBackpropInput(
          input_sizes=tf.shape(padded), filter=kernel, out_backprop=dy, strides=strides,
          padding='VALID')
      if mode == 'reflect':
        dx = tf.raw_ops.MirrorPadGrad(
            input=dpadded, paddings=[[0, 0], [padding] * 2, [padding] * 2, [0, 0]],
            mode='REFLECT')
      else:
        dx = tf.slice(dpadded, [0, padding, padding, 0], tf.shape(x))
      return dx, dkernel

    return y, grad

  # Tensors, not variables: a custom gradient over a variable would need a `variables` grad.
  return conv(tf.convert_to_tensor(x), tf.convert_to_tensor(kernel))


class PaddedConv2D(layers.Conv2D):
  """PyTorch's Conv2d(padding=p) (pad_mode 'zero') or ReflectionPad2d(p) then Conv2d
  (pad_mode 'reflect') as one layer, computed by padded_conv2d (less memory in training).
  The weights of a layers.Conv2D.

  Input [N, H, W, C] -> [N, (H + 2p - k) // s + 1, (W + 2p - k) // s + 1, filters].
  """

  def __init__(self, filters, kernel_size, pad=0, pad_mode='reflect', **kwargs):
    kwargs['padding'] = 'valid'
    super().__init__(filters, kernel_size, **kwargs)
    if pad_mode not in PAD_MODES:
      raise ValueError(f'Unknown pad_mode {pad_mode!r}; allowed: {", ".join(PAD_MODES)}.')
    self.pad, self.pad_mode = int(pad), pad_mode

  def convolution_op(self, inputs, kernel):
    if not self.pad:
      return tf.nn.conv2d(inputs, kernel, strides=self.strides, padding='VALID')
    return padded_conv2d(inputs, kernel, self.pad, self.pad_mode, self.strides[0])

  def compute_output_shape(self, input_shape):
    grow = lambda d: None if d is None else d + 2 * self.pad
    return super().compute_output_shape(
        (input_shape[0], grow(input_shape[1]), grow(input_shape[2]), input_shape[3]))

  def get_config(self):
    config = super().get_config()
    config.pop('padding', None)  # fixed by this layer
    return {**config, 'pad': self.pad, 'pad_mode': self.pad_mode}


class Cropping2D(layers.Cropping2D):
  """keras' Cropping2D ((top, bottom), (left, right)) of [N, H, W, C] computed by tf.slice.

  Keras crops by a strided slice, whose gradient for sizes unknown when tracing (the train
  step's) is a generic kernel: 9 ms for a 129x129x64 image on CPU, against 1.3 ms for
  tf.slice's gradient, a pad.
  """

  def call(self, inputs):
    (top, bottom), (left, right) = self.cropping
    shape = tf.shape(inputs)
    channels = inputs.shape[-1] if inputs.shape[-1] is not None else -1  # static for LiteRT
    outputs = tf.slice(inputs, [0, top, left, 0],
                       [-1, shape[1] - top - bottom, shape[2] - left - right, channels])
    outputs.set_shape(self.compute_output_shape(inputs.shape))  # tf.slice drops static sizes
    return outputs


def _per_image_matmul(rows, matrix):
  """rows (N, M, K) @ matrix (K, P), one GEMM of the same shape per image, so that an image's
  result does not depend on the batch it came in (a GEMM's rounding depends on its shape)."""
  return tf.map_fn(lambda image_rows: tf.matmul(image_rows, matrix), rows)


def few_output_conv2d(x, kernel):
  """conv2d(x, kernel, stride 1, "VALID") for a big kernel with few output channels, fast on CPU.

  The generators' last conv (7x7, 64 -> 3 channels) is the worst case of TF's CPU convolution
  kernels: Conv2DBackpropFilter materialises an im2col buffer of H*W*49*64 floats per image
  (760 MB and 2 s for one 256x256 image, the cost of a whole generator forward). Here
  z = x @ W, with W reshaped to (cin, kh*kw*cout), is a well-shaped GEMM and y is the sum of
  kh*kw shifted slices of z; the custom gradient keeps only x: dz stacks kh*kw shifted copies of
  dy, dW = x^T dz and dx = dz W^T are GEMMs too. Same result as tf.nn.conv2d up to float
  rounding (relative 1e-6, as close to float64 as tf.nn.conv2d). z and dx take one GEMM per
  image: a GEMM over the whole batch rounds an image's rows differently with the batch size,
  and then 2 replicas would not train like one device at the same global batch.
  """
  kh, kw, cin, cout = kernel.shape

  @tf.custom_gradient
  def conv(x, kernel):
    shape = tf.shape(x)
    n, h, w = shape[0], shape[1], shape[2]
    oh, ow = h - kh + 1, w - kw + 1
    wmat = tf.reshape(tf.transpose(kernel, [2, 0, 1, 3]), [cin, kh * kw * cout])
    z = tf.reshape(_per_image_matmul(tf.reshape(x, [n, h * w, cin]), wmat),
                   [n, h, w, kh * kw * cout])
    y = tf.add_n([z[:, i:i + oh, j:j + ow, (i * kw + j) * cout:(i * kw + j + 1) * cout]
                  for i in range(kh) for j in range(kw)])

    def grad(dy):
      dz = tf.concat([tf.pad(dy, [[0, 0], [i, kh - 1 - i], [j, kw - 1 - j], [0, 0]])
                      for i in range(kh) for j in range(kw)], axis=-1)
      dwmat = tf.matmul(tf.reshape(x, [-1, cin]), tf.reshape(dz, [-1, kh * kw * cout]),
                        transpose_a=True)
      dkernel = tf.transpose(tf.reshape(dwmat, [cin, kh, kw, cout]), [1, 2, 0, 3])
      dx = _per_image_matmul(tf.reshape(dz, [n, h * w, kh * kw * cout]), tf.transpose(wmat))
      return tf.reshape(dx, shape), dkernel

    return y, grad

  # Tensors, not variables: a custom gradient over a variable would need a `variables` grad.
  return conv(tf.convert_to_tensor(x), tf.convert_to_tensor(kernel))


class FewOutputConv2D(PaddedConv2D):
  """PaddedConv2D (stride 1) computed by few_output_conv2d (the generators' last conv on CPUs
  where that is faster, precision.gemm_last_conv); the same weights."""

  def convolution_op(self, inputs, kernel):
    return few_output_conv2d(pad2d(inputs, self.pad, self.pad_mode), kernel)
