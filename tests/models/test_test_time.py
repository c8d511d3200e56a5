"""cyclegan_tf.models.test_time against the reference's U-Net rebuilt in PyTorch, in both modes.

benchmarks/reference_torch.py's UnetGenerator (batch norm, dropout) gets random weights with
non-trivial running statistics and is converted through the project's converter. Eval mode:
torch net.eval() against our generator as it is. Train mode: torch net.train() (batch norm with
the batch's statistics, batch 1) against train_mode_copy; dropout cannot share torch's RNG, so
that comparison turns it off in both (torch p=0, our dropout=False) and the seeded dropout is
tested on its own. Tolerance: max abs error 1e-5 on outputs in [-1, 1].
"""

import keras
import numpy as np
import pytest

from cyclegan_tf.models import networks
from cyclegan_tf.models import test_time

torch = pytest.importorskip(
    'torch', reason='PyTorch is not installed: the parity tests need it (pip install '
    'torch==2.13.0, or pip install -e ".[convert]").')

from benchmarks import reference_torch as ref  # pylint: disable=g-import-not-at-top,wrong-import-position
from cyclegan_tf.deploy import convert  # pylint: disable=g-import-not-at-top,wrong-import-position

MAX_ABS_ERROR = 1e-5
torch.set_num_threads(1)


def _images(n, side, seed):
  return np.random.default_rng(seed).uniform(-1, 1, (n, side, side, 3)).astype(np.float32)


@pytest.fixture(scope='module')
def unet():
  """(torch UnetGenerator unet_128 ngf 8 with batch norm and dropout, our converted copy)."""
  net = ref.randomize(ref.define_G(3, 3, 8, 'unet_128', 'batch', use_dropout=True), seed=4)
  state = {k: v.numpy() for k, v in net.state_dict().items()}
  model, arch, _ = convert.convert_state_dict(state, role='G_A', source='unet')
  assert arch['dropout'] is False  # default config: no_dropout; rebuilt with dropout below
  model = networks.define_G(3, 3, 8, 'unet_128', 'batch', use_dropout=True, name='G_A')
  convert.torch_layout.assign_state_dict(model, state)
  return net, model


def _torch(net, images, train):
  net.train(train)
  with torch.no_grad():
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    return net(x).numpy().transpose(0, 2, 3, 1)


def _dropout_p(net, p):
  for module in net.modules():
    if isinstance(module, torch.nn.Dropout):
      module.p = p


def test_eval_mode_matches_torch_eval(unet):
  net, model = unet
  x = _images(2, 128, 0)
  ours = test_time.for_mode(model, 'eval')(x, training=False).numpy()
  assert np.max(np.abs(ours - _torch(net, x, train=False))) < MAX_ABS_ERROR


def test_train_mode_matches_torch_train_at_batch_1(unet):
  """Per-image batch statistics; a batch of two equals the two images run one by one in torch."""
  net, model = unet
  x = _images(2, 128, 1)
  copy = test_time.train_mode_copy(model, dropout=False)
  _dropout_p(net, 0.0)
  try:
    theirs = np.concatenate([_torch(net, x[i:i + 1], train=True) for i in range(2)])
  finally:
    _dropout_p(net, 0.5)
  ours = copy(x).numpy()
  error = float(np.max(np.abs(ours - theirs)))
  assert error < MAX_ABS_ERROR, error
  eval_gap = float(np.max(np.abs(model(x, training=False).numpy() - theirs)))
  assert eval_gap > 100 * MAX_ABS_ERROR  # the modes really differ on these weights


def test_seeded_dropout_is_deterministic_per_seed(unet):
  _, model = unet
  x = _images(2, 128, 2)
  seeded = test_time.train_mode_copy(model, seed=7)
  again = test_time.train_mode_copy(model, seed=7)
  other = test_time.train_mode_copy(model, seed=8)
  first = seeded(x).numpy()
  np.testing.assert_array_equal(first, seeded(x).numpy())
  np.testing.assert_array_equal(first, again(x).numpy())
  assert np.max(np.abs(first - other(x).numpy())) > 1e-3
  # An image's output does not depend on its batch.
  np.testing.assert_allclose(first[1:], seeded(x[1:]).numpy(), atol=1e-6)
  no_dropout = test_time.train_mode_copy(model, dropout=False)(x).numpy()
  assert np.max(np.abs(first - no_dropout)) > 1e-3


def test_dropout_masks_drop_about_half_and_double_the_rest():
  layer = test_time.SeededDropout(0.5, seed=3, index=1)
  ones = np.ones((2, 64, 64, 8), np.float32)
  out = layer(ones).numpy()
  assert set(np.unique(out)) == {0.0, 2.0}
  assert 0.48 < float(np.mean(out == 0)) < 0.52
  np.testing.assert_array_equal(out[0], out[1])  # one mask for the batch
  assert not np.array_equal(out, test_time.SeededDropout(0.5, seed=3, index=2)(ones).numpy())
  with pytest.raises(ValueError, match=r'rate must be in \[0, 1\)'):
    test_time.SeededDropout(1.0)


def test_copies_keep_names_weights_and_the_eval_generator():
  instance = networks.define_G(3, 3, 4, 'resnet_6blocks', 'instance')
  assert test_time.train_mode_copy(instance) is instance  # nothing to change
  bn = networks.define_G(3, 3, 4, 'unet_128', 'batch', use_dropout=True)
  assert test_time.for_mode(bn, 'eval') is bn
  copy = test_time.for_mode(bn, 'train', seed=1)
  assert [l.name for l in copy.layers] == [l.name for l in bn.layers]
  kinds = {type(l).__name__ for l in copy.layers}
  assert {'PerImageBatchNorm', 'SeededDropout'} <= kinds and 'BatchNormalization' not in kinds
  norm = copy.get_layer('model.model.1.model.2')
  np.testing.assert_array_equal(norm.gamma.numpy(), bn.get_layer(norm.name).gamma.numpy())
  with pytest.raises(ValueError, match="test_mode='test' is not valid; allowed values: eval, "
                     'train'):
    test_time.for_mode(bn, 'test')
  keras.backend.clear_session()
