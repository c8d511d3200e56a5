"""The model family by name (config.model.name, the reference's --model): one module each.

A new model is a module of models/ whose MODEL subclasses base.GANModel, plus a line below and
a config. Modules are imported on first use.
"""

import importlib

from cyclegan_tf.models import base

# config.model.name -> module holding MODEL.
MODELS = {
    'cycle_gan': 'cyclegan_tf.models.cycle_gan',
    'pix2pix': 'cyclegan_tf.models.pix2pix',
    'colorization': 'cyclegan_tf.models.colorization',
}
DEFAULT = 'cycle_gan'  # of runs saved before config.model.name existed (run_dir.read_config)


def get(model_config_or_name):
  """The model class (a base.GANModel) of a config.model or a name.

  Raises ValueError naming the allowed names for an unknown one.
  """
  name = (model_config_or_name if isinstance(model_config_or_name, str)
          else model_config_or_name.name)
  if name not in MODELS:
    raise ValueError(f'config.model.name={name!r} is not a model; allowed: '
                     f'{", ".join(MODELS)}.')
  model = importlib.import_module(MODELS[name]).MODEL
  assert issubclass(model, base.GANModel), model
  return model


def build_generators(model_config):
  """{role: float32 Keras model} a run of this config exports (untrained)."""
  return get(model_config).build_generators(model_config)


def export_name(model_config_or_name, export_config, direction):
  """The SavedModel name of the `direction` ('a2b' | 'b2a') generator: config.export's
  model_name_<direction>, or when that is '' the model's default (cyclegan_a2b, pix2pix_a2b)."""
  configured = export_config[f'model_name_{direction}']
  model = get(model_config_or_name)
  return configured or f'{model.EXPORT_PREFIX or model.NAME}_{direction}'


def by_direction(model_config, generators):
  """{role: generator} -> {direction ('a2b' | 'b2a'): generator}, for the roles the model
  exports."""
  return {direction: generators[role]
          for role, direction in get(model_config).EXPORTS.items() if role in generators}
