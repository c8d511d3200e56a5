"""The domain classifier's verdict: the share of G_A(A) classified as B (classifier_a2b) and of
G_B(B) as A (classifier_b2a), 1 = fully translated; the untranslated images' shares as the
baselines; the classifier's accuracy on the real test images. The classifier (a small CNN on
trainA vs trainB, domain_classifier.py) is trained once per run and cached in eval/."""

from absl import logging

from cyclegan_tf.evaluation import domain_classifier

NAME = 'classifier'


class Evaluator:

  def __init__(self, context):
    c = context.config.eval
    m = context.config.model
    self.model = None
    if {m.input_nc, m.output_nc} - {1, 3}:  # e.g. colorization's ab: no pictures to learn on
      logging.info('No classifier metrics: the training images of %s (%d and %d channels) are '
                   'not pictures.', m.name, m.input_nc, m.output_nc)
      return
    size = domain_classifier.input_size(context.data.a.shape[1:])
    self.model = domain_classifier.load_or_train(
        context.workdir, context.pipeline, size, train_images=int(c.classifier_train_images),
        epochs=int(c.classifier_epochs), seed=int(c.seed))

  def _share(self, images, domain):
    size = int(self.model.input_shape[1])
    return domain_classifier.classifier_share(
        self.model, domain_classifier.as_input(images, size), domain)

  def run(self, data, tr):
    if self.model is None:
      return
    baseline_a2b, baseline_b2a = self._share(data.a, 'B'), self._share(data.b, 'A')
    if tr.fake_b is not None:  # None: the model has no such generator
      yield 'classifier_a2b', self._share(tr.fake_b, 'B')
      yield 'classifier_baseline_a2b', baseline_a2b
    if tr.fake_a is not None:
      yield 'classifier_b2a', self._share(tr.fake_a, 'A')
      yield 'classifier_baseline_b2a', baseline_b2a
    acc_a, acc_b = 1.0 - baseline_a2b, 1.0 - baseline_b2a
    yield 'classifier_accuracy', (acc_a * len(data.a) + acc_b * len(data.b)) / (
        len(data.a) + len(data.b))
    yield 'classifier_accuracy_a', acc_a
    yield 'classifier_accuracy_b', acc_b
