"""What a model is, to everything around it: the model family's base (the reference's BaseModel).

A model of the family is one module beside this one, registered in family.py, that subclasses
GANModel and says:

  NAME             its config.model.name ('cycle_gan')
  LOSS_NAMES       its loss terms, in the order the logs report them
  GENERATOR_TERMS  the terms that make the generator loss (the plateau policy watches their sum)
  EXPORTS          {generator role: direction ('a2b' | 'b2a')}: the networks a run ships
  VISUAL_NAMES     the visuals the sample grids show, left to right
  EXPORT_PREFIX    default SavedModel names: EXPORT_PREFIX_a2b / _b2a
  CHANNELS         {'input_nc': allowed, 'output_nc': allowed} channel counts
  to_rgb(inputs, outputs)          a generator's outputs as RGB/gray pictures (colour spaces)
  validate_config(config)          raises ValueError for settings the model cannot train with
  build_generators(model_config)   the exported generators alone, for consumers of a run
  __init__         its networks, optimizers and other state, built under the strategy
  replica_step(batch, step)        one iteration on one replica: {loss name: per-example loss}
  checkpoint_items()               {checkpoint key: trackable} of that state
  visuals(real_a, real_b)          {name: images} the image summaries show

The train loop, the run directory, export and evaluation know a model only through these; the
loop owns the schedule, the counters and the loss bookkeeping around the step.
"""

import keras
import tensorflow as tf

from cyclegan_tf.models import optimizers

DIRECTIONS = ('a2b', 'b2a')


def make_optimizer(train_config, precision):
  """Adam as torch.optim.Adam computes it (optimizers.TorchAdam) with the reference's lr, beta1
  and beta2; wrapped in loss scaling for float16."""
  optimizer = optimizers.TorchAdam(train_config.lr, beta_1=train_config.beta1,
                                   beta_2=train_config.beta2)
  if precision == 'mixed_float16':  # float16 gradients need loss scaling
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
  return optimizer


def after_update(optimizer, terms):
  """Tensors that exist only once `optimizer`'s last apply_gradients has run and `terms` (loss
  tensors) are computed: control inputs for what must come after an update."""
  inner = getattr(optimizer, 'inner_optimizer', optimizer)  # through loss scaling
  return [tf.identity(inner.iterations)] + list(terms.values())


class GANModel:
  """The base of the model family: the shared machinery of a GAN's train step.

  Args:
    config: the run's config (validated).
    strategy: the tf.distribute strategy every variable is created under.
    precision: 'float32', 'mixed_bfloat16' or 'mixed_float16' (config 'auto' resolved).
  A subclass builds `networks` ({role: Keras model}) and `optimizers` ({name: optimizer}) in
  its __init__, under `strategy.scope()` and the precision's dtype policy.
  """

  NAME = None
  LOSS_NAMES = ()
  GENERATOR_TERMS = ()
  EXPORTS = {}
  VISUAL_NAMES = ()
  EXPORT_PREFIX = None  # default SavedModel names: <prefix>_a2b, <prefix>_b2a; None: NAME
  CHANNELS = {'input_nc': (1, 3), 'output_nc': (1, 3)}

  @classmethod
  def validate_config(cls, config):
    """Raises ValueError, naming the field and the fix, for a setting this model cannot train
    with (configuration.validate reports it as a ConfigError)."""

  @classmethod
  def build_generators(cls, model_config):
    """{role: float32 Keras model} of the EXPORTS roles, untrained, for restoring a run."""
    raise NotImplementedError

  def __init__(self, config, strategy, precision='float32'):
    self.config = config
    self.strategy = strategy
    self.precision = precision
    self.global_batch_size = config.train.batch_size
    self.networks = {}
    self.optimizers = {}

  @property
  def loss_names(self):
    """The loss terms this configuration computes (LOSS_NAMES unless the config adds some)."""
    return self.LOSS_NAMES

  def generators(self):
    """{direction: generator} of the networks the run exports ('a2b' maps A to B)."""
    return {direction: self.networks[role] for role, direction in self.EXPORTS.items()}

  # ---- what a model implements ----

  def replica_step(self, batch, step):
    """One training iteration on this replica's part of `batch` ({'A', 'B'}: float [n, H, W,
    C] in [-1, 1]) at 0-based `step`; returns {loss name: per-example or scalar loss}."""
    raise NotImplementedError

  def checkpoint_items(self):
    """{checkpoint key: trackable}: everything of the model a resume needs."""
    items = dict(self.networks)
    items.update(self.optimizers)
    return items

  def random_states(self):
    """A trackable holding the random state of every layer that draws (dropout's seed
    generators), for checkpoint_items: a resumed run then draws the masks an uninterrupted
    one would. None when no layer draws."""
    states = [layer.seed_generator.state for net in self.networks.values()
              for layer in net.layers if getattr(layer, 'seed_generator', None) is not None]
    if not states:
      return None
    holder = tf.Module()
    holder.states = states
    return holder

  def reset_replica_state(self):
    """Drops state kept per replica (image pools) when a run resumes on another replica
    count."""

  def visuals(self, real_a, real_b):
    """{name: images} the image summaries show, in inference mode."""
    raise NotImplementedError

  @staticmethod
  def to_rgb(inputs, outputs):
    """A generator's outputs as pictures (float [N, H, W, C] in [-1, 1], C 1 or 3) given its
    inputs: themselves, unless the model works in another colour space (colorization)."""
    del inputs
    return outputs

  # ---- shared machinery ----

  def set_learning_rate(self, lr):
    """Sets every optimizer's learning rate (the schedule is the train loop's)."""
    for optimizer in self.optimizers.values():
      optimizer.learning_rate = lr

  def distributed_step(self, batch, step):
    """replica_step on every replica of a distributed batch; returns the losses as a float32
    vector in loss_names order, each the global-batch mean."""
    per_replica = self.strategy.run(self._averaged_step, args=(batch, step))
    return tf.stack([self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica[k], axis=None)
                     for k in self.loss_names])

  def _averaged_step(self, batch, step):
    return {name: self.average(value) for name, value in self.replica_step(batch, step).items()}

  def average(self, per_example):
    """Mean over the GLOBAL batch: the optimizer sums the replicas' gradients."""
    return tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch_size)

  def gradients(self, optimizer, tape, loss, variables):
    """d loss / d variables, through the optimizer's loss scaling when it has one; zeros, not
    None, for a variable the loss does not reach (so that gradients of loss groups add)."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
      with tape:  # recorded, or the scaled loss has no gradient (all None)
        loss = optimizer.scale_loss(loss)
    # LossScaleOptimizer unscales them in apply.
    return tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)

  def replica_seed(self, step):
    """A stateless seed for (config.train.seed, step, replica): a resumed run draws what an
    uninterrupted one would."""
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    return tf.random.experimental.stateless_fold_in(
        tf.cast(tf.stack([self.config.train.seed, step]), tf.int64), replica)

  def compile(self, function):
    """`function` under XLA when config.train.jit_compile (forward and backward passes only:
    never strategy.run or apply_gradients); else itself."""
    if self.config.train.jit_compile:
      return tf.function(function, jit_compile=True)
    return function
