"""cyclegan_tf: CycleGAN in TensorFlow 2 / Keras 3, the reference PyTorch CycleGAN's networks,
losses, defaults and train step, with a run directory that resumes exactly.

The public API (everything else is reachable by its package, e.g. cyclegan_tf.data.images):

  train(config, workdir)                      train or resume a run; returns the final step
  evaluate(config, workdir, step=None)        metrics, pictures and pages of a checkpoint
  export(config, workdir, export_dir=None)    TF Serving SavedModels of both generators
  translate(config, input, output, workdir=)  image files -> translated PNGs
  load_generators(workdir, step=None)         ({'G_A', 'G_B'}, step, config) from a run
  build_networks(model_config)                {'G_A', 'G_B', 'D_A', 'D_B'} Keras models
  validate_config(config)                     the config, or ConfigError naming the field
  ConfigError, DataError, RunDirError, NonFiniteLossError

Configs are data: start from configs/default.py (`from configs import default`). Names are
imported on first use, so `import cyclegan_tf` (and serving/, which needs only the TF-free
data.image_files) does not load TensorFlow.
"""

import importlib

# public name -> (module, attribute)
_API = {
    'train': ('cyclegan_tf.training.train', 'train_and_evaluate'),
    'evaluate': ('cyclegan_tf.evaluation.evaluate', 'evaluate'),
    'export': ('cyclegan_tf.deploy.export', 'export_run'),
    'translate': ('cyclegan_tf.deploy.translate', 'translate_paths'),
    'load_generators': ('cyclegan_tf.run_dir', 'restore_generators'),
    'build_networks': ('cyclegan_tf.models.networks', 'build_cyclegan'),
    'validate_config': ('cyclegan_tf.configuration', 'validate'),
    'ConfigError': ('cyclegan_tf.configuration', 'ConfigError'),
    'DataError': ('cyclegan_tf.configuration', 'DataError'),
    'RunDirError': ('cyclegan_tf.run_dir', 'RunDirError'),
    'NonFiniteLossError': ('cyclegan_tf.training.train_state', 'NonFiniteLossError'),
}
__all__ = sorted(_API)


def __getattr__(name):
  if name not in _API:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  module, attribute = _API[name]
  value = getattr(importlib.import_module(module), attribute)
  globals()[name] = value  # later lookups skip this function
  return value


def __dir__():
  return sorted(set(globals()) | set(_API))
