"""The reference's CycleGAN losses, per example so a distribution strategy can average them.

Each function returns one value per example ([batch]); the mean over the batch equals the
reference's mean over every element, because every example has the same number of elements.
The train step divides their sum by the GLOBAL batch size (tf.nn.compute_average_loss).
"""

import tensorflow as tf

GAN_MODES = ('lsgan', 'vanilla', 'wgangp')


def _per_example_mean(x):
  return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def gan_loss(prediction, target_is_real, gan_mode):
  """GANLoss: lsgan = MSE to 1/0, vanilla = BCE with logits, wgangp = -mean/+mean."""
  prediction = tf.cast(prediction, tf.float32)
  if gan_mode == 'lsgan':
    target = 1.0 if target_is_real else 0.0
    return _per_example_mean(tf.square(prediction - target))
  if gan_mode == 'vanilla':
    labels = tf.ones_like(prediction) if target_is_real else tf.zeros_like(prediction)
    return _per_example_mean(
        tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=prediction))
  if gan_mode == 'wgangp':
    return _per_example_mean(-prediction if target_is_real else prediction)
  raise ValueError(f'Unknown gan_mode {gan_mode!r}; allowed: {", ".join(GAN_MODES)}.')


def l1_loss(prediction, target):
  """nn.L1Loss per example (the cycle and identity criterion)."""
  return _per_example_mean(tf.abs(tf.cast(prediction, tf.float32) - tf.cast(target, tf.float32)))


def cycle_loss(real, reconstructed, lambda_):
  """Cycle consistency ||G_B(G_A(A)) - A||_1 * lambda_A (or ||G_A(G_B(B)) - B||_1 * lambda_B)."""
  return l1_loss(reconstructed, real) * lambda_


def identity_loss(real, identity, lambda_other, lambda_identity):
  """||G_A(B) - B||_1 * lambda_B * lambda_idt (idt_A), or ||G_B(A) - A||_1 * lambda_A * lambda_idt
  (idt_B): the reference weights each identity by the lambda of the images it sees."""
  return l1_loss(identity, real) * lambda_other * lambda_identity


def discriminator_loss(pred_real, pred_fake, gan_mode):
  """0.5 * (loss on real + loss on the pooled, detached fake), as backward_D_basic."""
  return 0.5 * (gan_loss(pred_real, True, gan_mode) + gan_loss(pred_fake, False, gan_mode))


def gradient_penalty(discriminator, real, fake, seed=None, constant=1.0):
  """WGAN-GP penalty on random interpolates of real and fake, per example.

  The reference defines cal_gradient_penalty but its CycleGAN never calls it; the train step
  adds gp_weight * this to the discriminator loss when gan_mode is wgangp.
  """
  real = tf.cast(real, tf.float32)
  fake = tf.cast(fake, tf.float32)
  batch = tf.shape(real)[0]
  if seed is None:
    alpha = tf.random.uniform([batch, 1, 1, 1])
  else:
    alpha = tf.random.stateless_uniform([batch, 1, 1, 1], seed=seed)
  interpolates = alpha * real + (1.0 - alpha) * fake
  with tf.GradientTape() as tape:
    tape.watch(interpolates)
    pred = discriminator(interpolates, training=True)
  grads = tape.gradient(pred, interpolates)
  norm = tf.sqrt(tf.reduce_sum(tf.square(tf.reshape(grads, [batch, -1])), axis=1) + 1e-16)
  return tf.square(norm - constant)
