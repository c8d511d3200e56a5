"""The reference CycleGAN's generators and discriminators, layer for layer, in Keras.

Every layer that holds weights is named after its key in the reference's PyTorch state dict
(``model.1``, ``model.10.conv_block.5``, ``model.model.1.model.1`` ...), so converting published
weights is a lookup by name. PyTorch's padding is reproduced exactly: padding then a "valid"
conv (custom_layers.PaddedConv2D; TF's "same" pads bottom/right only), and "valid"
transposed convs cropped afterwards (TF's "same" is shifted by one pixel).
"""

import contextlib
import functools

import keras
from keras import layers

from cyclegan_tf.models import custom_layers

GENERATORS = ('resnet_9blocks', 'resnet_6blocks', 'unet_128', 'unet_256')
DISCRIMINATORS = ('basic', 'n_layers', 'pixel')
NORMS = ('instance', 'batch', 'none')
INIT_TYPES = ('normal', 'xavier', 'kaiming', 'orthogonal')


@contextlib.contextmanager
def dtype_policy(name):
  """Builds models under the given Keras dtype policy, then restores the previous one."""
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(name)
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy(previous)


def _is_few_output(filters, kernel, stride):
  return stride == 1 and filters <= 4 and kernel >= 5


def rebuilt(model, dtype='float32', gemm_last_conv=False):
  """The model with every layer computing in `dtype` and, unless gemm_last_conv, every
  custom_layers.FewOutputConv2D as a plain conv: same layer names and weights. The model itself when
  nothing changes.

  For exports and converters (LiteRT, ONNX, XLA): the GEMM form is a CPU training trick whose
  per-image map_fn lowers to While / TensorList ops that they cannot take; and a generator
  trained under a mixed-precision policy keeps float32 variables, so its weights copy over.
  """
  def plain_class(layer):
    if gemm_last_conv or not isinstance(layer, custom_layers.FewOutputConv2D):
      return layer.__class__
    return custom_layers.PaddedConv2D

  if not any(layer.compute_dtype != dtype or plain_class(layer) is not layer.__class__
             for layer in model.layers):
    return model

  def rebuild(layer):
    return plain_class(layer).from_config({**layer.get_config(), 'dtype': dtype})

  clone = keras.models.clone_model(model, clone_function=rebuild)
  clone.set_weights(model.get_weights())
  return clone


class ImageSizeCheck(layers.Layer):
  """Fails fast when a generator would not give back its input size.

  The resnet generators need sides that are multiples of 4, the U-Nets multiples of 2^depth;
  other sizes would silently come back resized, so they are an error instead.
  """

  def __init__(self, multiple, net_name, **kwargs):
    super().__init__(**kwargs)
    self.multiple = int(multiple)
    self.net_name = net_name

  def call(self, x):
    h, w = x.shape[1], x.shape[2]
    check_image_size(h, w, self.multiple, self.net_name)
    return x

  def get_config(self):
    return {**super().get_config(), 'multiple': self.multiple, 'net_name': self.net_name}


def size_multiple(netG):
  """The multiple that height and width must have for ``netG`` to keep the image size."""
  if netG.startswith('resnet'):
    return 4
  if netG == 'unet_128':
    return 2**7
  if netG == 'unet_256':
    return 2**8
  raise ValueError(f'Unknown netG {netG!r}; allowed: {", ".join(GENERATORS)}.')


def check_image_size(height, width, multiple, net_name='the generator'):
  """Raises ValueError naming the bad side and the nearest valid sizes (None = unknown, ok)."""
  for side_name, side in (('height', height), ('width', width)):
    if side is None or side % multiple == 0:
      continue
    below = (side // multiple) * multiple
    above = below + multiple
    nearest = f'{below} or {above}' if below > 0 else f'{above}'
    raise ValueError(
        f'Image {side_name} {side} cannot be reproduced by {net_name}: it needs sides that are '
        f'multiples of {multiple}. Nearest valid {side_name}: {nearest}. Resize or pad the '
        'image (translate and the exported models pad automatically).')


def discriminator_output_size(size, netD, n_layers_D=3):
  """Side of the patch map a discriminator gives for an input side (PyTorch's conv arithmetic)."""
  if netD == 'pixel':
    return size
  n_layers = 3 if netD == 'basic' else n_layers_D
  for _ in range(n_layers):  # k4 s2 p1 convs
    size = (size + 2 - 4) // 2 + 1
  return size - 2  # two k4 s1 p1 convs


def kernel_initializer(init_type, init_gain, seed=None):
  """The reference's init_weights for conv weights (biases start at zero)."""
  if init_type == 'normal':
    return keras.initializers.RandomNormal(0.0, init_gain, seed=seed)
  if init_type == 'xavier':  # xavier_normal_(gain): std = gain * sqrt(2 / (fan_in + fan_out))
    return keras.initializers.VarianceScaling(
        init_gain**2, 'fan_avg', 'untruncated_normal', seed=seed)
  if init_type == 'kaiming':  # kaiming_normal_(a=0, mode='fan_in'); gain unused, as there
    return keras.initializers.VarianceScaling(2.0, 'fan_in', 'untruncated_normal', seed=seed)
  if init_type == 'orthogonal':
    return keras.initializers.Orthogonal(init_gain, seed=seed)
  raise ValueError(f'Unknown init_type {init_type!r}; allowed: {", ".join(INIT_TYPES)}.')


class _LayerFactory:
  """Makes the layers of one network with the reference's norm, bias and init rules."""

  def __init__(self, norm, init_type, init_gain, seed=None, gemm_last_conv=True):
    if norm not in NORMS:
      raise ValueError(f'Unknown norm {norm!r}; allowed: {", ".join(NORMS)}.')
    self.norm_type = norm
    # The reference's quirk: convs carry a bias only when the norm is instance norm.
    self.use_bias = norm == 'instance'
    self.init_type, self.init_gain = init_type, init_gain
    self._seed = keras.random.SeedGenerator(seed) if seed is not None else None
    self.gemm_last_conv = gemm_last_conv

  def _kernel_init(self):
    return kernel_initializer(self.init_type, self.init_gain, seed=self._seed)

  def conv(self, x, filters, kernel, stride, padding, name, bias=None, reflect=False):
    """Conv2d(kernel, stride, padding) as PyTorch computes it; reflect: after ReflectionPad2d."""
    few = self.gemm_last_conv and _is_few_output(filters, kernel, stride)
    conv = custom_layers.FewOutputConv2D if few else custom_layers.PaddedConv2D
    return conv(filters, kernel, strides=stride, pad=padding,
                pad_mode='reflect' if reflect else 'zero',
                use_bias=self.use_bias if bias is None else bias,
                kernel_initializer=self._kernel_init(), name=name)(x)

  def conv_transpose(self, x, filters, kernel, name, bias=None):
    """ConvTranspose2d(stride 2, padding 1) as PyTorch computes it.

    "valid" then a crop: PyTorch drops `padding` rows and columns from each side of the full
    output and adds `output_padding` back at the bottom/right, which for k3 (output_padding 1)
    is a crop at the top/left only and for k4 a crop on every side.
    """
    x = layers.Conv2DTranspose(
        filters, kernel, strides=2, padding='valid',
        use_bias=self.use_bias if bias is None else bias,
        kernel_initializer=self._kernel_init(), name=name)(x)
    crop = ((1, 0), (1, 0)) if kernel == 3 else ((1, 1), (1, 1))
    return custom_layers.Cropping2D(crop)(x)

  def norm(self, x, name):
    if self.norm_type == 'instance':  # InstanceNorm2d(affine=False, eps=1e-5)
      return custom_layers.InstanceNormalization(epsilon=1e-5, name=name)(x)
    if self.norm_type == 'batch':  # BatchNorm2d(eps=1e-5, momentum=0.1), gamma ~ N(1, gain)
      return layers.BatchNormalization(
          epsilon=1e-5, momentum=0.9, name=name,
          gamma_initializer=keras.initializers.RandomNormal(1.0, self.init_gain,
                                                            seed=self._seed))(x)
    return x


def _resnet_generator(f, input_nc, output_nc, ngf, use_dropout, n_blocks, name):
  inputs = keras.Input((None, None, input_nc), name='images')
  x = ImageSizeCheck(4, name)(inputs)
  x = f.conv(x, ngf, 7, 1, 3, 'model.1', reflect=True)
  x = layers.ReLU()(f.norm(x, 'model.2'))
  index = 4
  for i in range(2):  # downsampling
    x = f.conv(x, ngf * 2**(i + 1), 3, 2, 1, f'model.{index}')
    x = layers.ReLU()(f.norm(x, f'model.{index + 1}'))
    index += 3
  dim = ngf * 4
  for _ in range(n_blocks):
    block = f'model.{index}.conv_block'
    y = f.conv(x, dim, 3, 1, 1, f'{block}.1', reflect=True)
    y = layers.ReLU()(f.norm(y, f'{block}.2'))
    second = 5
    if use_dropout:
      y = layers.Dropout(0.5)(y)
      second = 6
    y = f.conv(y, dim, 3, 1, 1, f'{block}.{second}', reflect=True)
    y = f.norm(y, f'{block}.{second + 1}')
    x = layers.Add()([x, y])
    index += 1
  for i in range(2):  # upsampling
    x = f.conv_transpose(x, ngf * 2**(1 - i), 3, f'model.{index}')
    x = layers.ReLU()(f.norm(x, f'model.{index + 1}'))
    index += 3
  x = f.conv(x, output_nc, 7, 1, 3, f'model.{index + 1}', bias=True, reflect=True)
  outputs = layers.Activation('tanh', dtype='float32')(x)
  return keras.Model(inputs, outputs, name=name)


def _unet_generator(f, input_nc, output_nc, num_downs, ngf, use_dropout, name):
  """The reference's nested UnetSkipConnectionBlocks, unrolled outermost first."""
  # (outer_nc, inner_nc) of each block from the outside in.
  channels = [(output_nc, ngf), (ngf, ngf * 2), (ngf * 2, ngf * 4), (ngf * 4, ngf * 8)]
  channels += [(ngf * 8, ngf * 8)] * (num_downs - 4)

  def block(x, depth, prefix):
    outer_nc, inner_nc = channels[depth]
    outermost, innermost = depth == 0, depth == num_downs - 1
    if outermost:
      y = f.conv(x, inner_nc, 4, 2, 1, f'{prefix}.0')
      y = block(y, depth + 1, f'{prefix}.1.model')
      y = layers.ReLU()(y)
      y = f.conv_transpose(y, outer_nc, 4, f'{prefix}.3', bias=True)
      return layers.Activation('tanh', dtype='float32')(y)
    y = custom_layers.LeakyReLU(0.2)(x)
    y = f.conv(y, inner_nc, 4, 2, 1, f'{prefix}.1')
    if innermost:
      y = layers.ReLU()(y)
      y = f.conv_transpose(y, outer_nc, 4, f'{prefix}.3')
      y = f.norm(y, f'{prefix}.4')
    else:
      y = f.norm(y, f'{prefix}.2')
      y = block(y, depth + 1, f'{prefix}.3.model')
      y = layers.ReLU()(y)
      y = f.conv_transpose(y, outer_nc, 4, f'{prefix}.5')
      y = f.norm(y, f'{prefix}.6')
      if use_dropout and depth >= 4:  # the reference drops out in the ngf*8 middle blocks only
        y = layers.Dropout(0.5)(y)
    return layers.Concatenate(axis=-1)([x, y])  # skip connection: input first

  inputs = keras.Input((None, None, input_nc), name='images')
  x = ImageSizeCheck(2**num_downs, name)(inputs)
  outputs = block(x, 0, 'model.model')
  return keras.Model(inputs, outputs, name=name)


def define_G(input_nc, output_nc, ngf, netG, norm='instance', use_dropout=False,
             init_type='normal', init_gain=0.02, name=None, seed=None, gemm_last_conv=True):
  """A generator by the reference's name: [N, H, W, input_nc] in [-1, 1] -> [N, H, W, output_nc]
  in [-1, 1] (float32 tanh), fully convolutional.

  gemm_last_conv: the last 7x7 conv as few_output_conv2d (fast on CPU; same weights and
  checkpoints as the plain Conv2D used when False). Raises ValueError for an unknown netG.
  """
  f = _LayerFactory(norm, init_type, init_gain, seed, gemm_last_conv)
  name = name or netG
  if netG == 'resnet_9blocks':
    return _resnet_generator(f, input_nc, output_nc, ngf, use_dropout, 9, name)
  if netG == 'resnet_6blocks':
    return _resnet_generator(f, input_nc, output_nc, ngf, use_dropout, 6, name)
  if netG == 'unet_128':
    return _unet_generator(f, input_nc, output_nc, 7, ngf, use_dropout, name)
  if netG == 'unet_256':
    return _unet_generator(f, input_nc, output_nc, 8, ngf, use_dropout, name)
  raise ValueError(f'Unknown netG {netG!r}; allowed: {", ".join(GENERATORS)}.')


def define_D(input_nc, ndf, netD, n_layers_D=3, norm='instance', init_type='normal',
             init_gain=0.02, name=None, seed=None):
  """A discriminator by the reference's name: PatchGAN (basic, n_layers) or PixelGAN."""
  f = _LayerFactory(norm, init_type, init_gain, seed)
  inputs = keras.Input((None, None, input_nc), name='images')
  lrelu = functools.partial(custom_layers.LeakyReLU, 0.2)
  if netD in ('basic', 'n_layers'):
    n_layers = 3 if netD == 'basic' else n_layers_D
    x = lrelu()(f.conv(inputs, ndf, 4, 2, 1, 'model.0', bias=True))
    index, nf_mult = 2, 1
    for n in range(1, n_layers + 1):
      nf_mult = min(2**n, 8)
      stride = 2 if n < n_layers else 1
      x = f.conv(x, ndf * nf_mult, 4, stride, 1, f'model.{index}')
      x = lrelu()(f.norm(x, f'model.{index + 1}'))
      index += 3
    x = f.conv(x, 1, 4, 1, 1, f'model.{index}', bias=True)
  elif netD == 'pixel':
    x = lrelu()(f.conv(inputs, ndf, 1, 1, 0, 'net.0', bias=True))
    x = f.conv(x, ndf * 2, 1, 1, 0, 'net.2')
    x = lrelu()(f.norm(x, 'net.3'))
    x = f.conv(x, 1, 1, 1, 0, 'net.5')
  else:
    raise ValueError(f'Unknown netD {netD!r}; allowed: {", ".join(DISCRIMINATORS)}.')
  outputs = layers.Activation('linear', dtype='float32')(x)  # logits in float32
  return keras.Model(inputs, outputs, name=name or f'D_{netD}')


def generator_from_config(model_config, input_nc, output_nc, name, seed=None,
                          gemm_last_conv=True):
  c = model_config
  return define_G(input_nc, output_nc, c.ngf, c.netG, c.norm, not c.no_dropout, c.init_type,
                  c.init_gain, name=name, seed=seed, gemm_last_conv=gemm_last_conv)


def discriminator_from_config(model_config, input_nc, name, seed=None):
  c = model_config
  return define_D(input_nc, c.ndf, c.netD, c.n_layers_D, c.norm, c.init_type, c.init_gain,
                  name=name, seed=seed)


def build_cyclegan(model_config, seed=None, with_discriminators=True, gemm_last_conv=True):
  """{'G_A', 'G_B'[, 'D_A', 'D_B']}: G_A maps A -> B, G_B maps B -> A, D_A judges B images, D_B
  judges A images (the reference's roles)."""
  c = model_config
  seed = (lambda k: None) if seed is None else (lambda k, s=seed: s + k)
  nets = {
      'G_A': generator_from_config(c, c.input_nc, c.output_nc, 'G_A', seed(0), gemm_last_conv),
      'G_B': generator_from_config(c, c.output_nc, c.input_nc, 'G_B', seed(1), gemm_last_conv),
  }
  if with_discriminators:
    nets['D_A'] = discriminator_from_config(c, c.output_nc, 'D_A', seed(2))
    nets['D_B'] = discriminator_from_config(c, c.input_nc, 'D_B', seed(3))
  return nets


def count_params(model):
  """Trainable parameters, as the reference counts them (BN running stats excluded)."""
  return int(sum(keras.ops.size(w) for w in model.trainable_weights))


def summarize(model_config):
  """One line per network of a CycleGAN with this config: role, architecture, parameters."""
  c = model_config
  lines = []
  for role, net in build_cyclegan(c).items():
    arch = c.netG if role.startswith('G') else (
        f'{c.netD} (n_layers_D={c.n_layers_D})' if c.netD == 'n_layers' else c.netD)
    lines.append(f'{role}: {arch}, norm={c.norm}, {count_params(net):,} parameters')
  return '\n'.join(lines)
