"""Evaluators: small plug-ins chosen by config.eval.metrics, each yielding (name, value).

  evaluator = EVALUATORS[name](context)  # context: config, pipeline, workdir, data
  for key, value in evaluator.run(data, translations): ...

`data` holds the test images (a, b: float32 [N, H, W, C] in [-1, 1]; paired: the ground
truth or None); `translations` the generators' outputs on them (fake_b, rec_a, fake_a, rec_b,
paired_fake_b, paired_fake_a; None where the model has no generator for it: an evaluator
yields only what it can compute). An evaluator that cannot run here (no Inception weights, too
few images) logs why and yields nothing. A new metric is a new module plus a line below.
"""

from cyclegan_tf import configuration
from cyclegan_tf.evaluation.evaluators import classifier
from cyclegan_tf.evaluation.evaluators import cycle
from cyclegan_tf.evaluation.evaluators import fid_kid
from cyclegan_tf.evaluation.evaluators import paired
from cyclegan_tf.evaluation.evaluators import swd

# In the order their keys appear in metrics.json and the pages.
EVALUATORS = {module.NAME: module.Evaluator for module in (swd, cycle, classifier, paired, fid_kid)}


def names(metrics):
  """config.eval.metrics ('swd,cycle,...') as a list; raises ConfigError for an unknown name."""
  chosen = [n.strip() for n in str(metrics).split(',') if n.strip()]
  unknown = [n for n in chosen if n not in EVALUATORS]
  if unknown:
    raise configuration.ConfigError(
        f'config.eval.metrics={metrics!r}: {", ".join(unknown)} is not an evaluator; allowed: '
        f'{", ".join(EVALUATORS)} (comma-separated).')
  return chosen


def build(metrics, context):
  """The evaluators config.eval.metrics names, in EVALUATORS order, built on `context`."""
  chosen = set(names(metrics))
  return [make(context) for name, make in EVALUATORS.items() if name in chosen]
