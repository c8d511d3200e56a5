"""The optimizer every model of the family trains with: Adam exactly as the reference's.

The reference uses torch.optim.Adam (epsilon 1e-8), whose update is

  m_t = b1 m + (1 - b1) g,   v_t = b2 v + (1 - b2) g^2
  p  -= lr / (1 - b1^t) * m_t / (sqrt(v_t) / sqrt(1 - b2^t) + eps)

(Kingma & Ba 2015, Algorithm 1: epsilon added AFTER the bias correction). Keras' Adam adds its
epsilon to sqrt(v_t) before the correction, which at step 1 is an effective epsilon of
~3e-6 (1e-7 / sqrt(1 - 0.999)) instead of 1e-8: small gradients move differently early on.
"""

import keras
from keras import ops

# torch.optim.Adam's default epsilon, which the reference never changes.
TORCH_EPSILON = 1e-8


@keras.saving.register_keras_serializable(package='cyclegan_tf')
class TorchAdam(keras.optimizers.Adam):
  """keras.optimizers.Adam with torch.optim.Adam's update (epsilon after bias correction).

  The same variables (iterations, momentums, velocities) under the same names as Keras' Adam,
  so checkpoints of either restore into the other. amsgrad is not offered (the reference does
  not use it).
  """

  def __init__(self, learning_rate=0.0002, beta_1=0.5, beta_2=0.999, epsilon=TORCH_EPSILON,
               **kwargs):
    if kwargs.get('amsgrad'):
      raise ValueError('TorchAdam does not implement amsgrad (the reference does not use it).')
    super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                     epsilon=epsilon, **kwargs)

  def update_step(self, gradient, variable, learning_rate):
    """One Adam update of `variable` by `gradient`, as torch.optim.Adam computes it."""
    dtype = variable.dtype
    lr = ops.cast(learning_rate, dtype)
    gradient = ops.cast(gradient, dtype)
    step = ops.cast(self.iterations + 1, dtype)
    beta_1_power = ops.power(ops.cast(self.beta_1, dtype), step)
    beta_2_power = ops.power(ops.cast(self.beta_2, dtype), step)
    m = self._momentums[self._get_variable_index(variable)]
    v = self._velocities[self._get_variable_index(variable)]
    self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
    self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
    denominator = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(1 - beta_2_power)), self.epsilon)
    step_size = lr / (1 - beta_1_power)
    self.assign_sub(variable, ops.divide(ops.multiply(m, step_size), denominator))
