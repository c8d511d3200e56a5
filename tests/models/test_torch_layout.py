"""Tests for cyclegan_tf.models.torch_layout: our networks want exactly the reference's state-dict keys
and shapes (ngf 64, on PyTorch's meta device: shapes only), and read architectures back."""

import pytest

torch = pytest.importorskip(
    'torch', reason='PyTorch is not installed: these tests need it (pip install '
    'torch==2.13.0, or pip install -e ".[convert]").')

from benchmarks import reference_torch as ref  # pylint: disable=g-import-not-at-top,wrong-import-position
from cyclegan_tf.models import networks  # pylint: disable=g-import-not-at-top,wrong-import-position
from cyclegan_tf.models import torch_layout  # pylint: disable=g-import-not-at-top,wrong-import-position


@pytest.mark.parametrize('netG,norm', [('resnet_9blocks', 'instance'), ('unet_256', 'batch')])
def test_full_size_keys_and_shapes(monkeypatch, netG, norm):
  """At ngf 64: our networks want exactly the reference's keys and shapes (not run)."""
  monkeypatch.setattr(networks, 'kernel_initializer', lambda *args, **kwargs: 'zeros')
  with torch.device('meta'):  # shapes only, no memory
    net = ref.define_G(3, 3, 64, netG, norm)
  theirs = {k: tuple(v.shape) for k, v in net.state_dict().items()
            if not k.endswith('num_batches_tracked')}
  model = networks.define_G(3, 3, 64, netG, norm)
  assert torch_layout.torch_shapes(model) == theirs
  assert networks.count_params(model) == ref.count_params(net)
  arch = torch_layout.infer_architecture(theirs)
  assert (arch['netG'], arch['ngf'], arch['norm']) == (netG, 64, norm)


def test_full_size_discriminator_keys():
  net = ref.define_D(3, 64, 'basic', norm='instance')
  theirs = {k: tuple(v.shape) for k, v in net.state_dict().items()}
  assert sorted(theirs) == sorted(f'model.{i}.{p}' for i in (0, 2, 5, 8, 11)
                                  for p in ('weight', 'bias'))
  model = networks.define_D(3, 64, 'basic', norm='instance')
  assert torch_layout.torch_shapes(model) == theirs
  assert networks.count_params(model) == ref.count_params(net) == 2_764_737


def test_architecture_differences_name_the_config_field():
  saved = {'kind': 'generator', 'netG': 'resnet_6blocks', 'ngf': 4, 'norm': 'batch',
           'dropout': False, 'input_nc': 1, 'output_nc': 3}
  current = dict(saved, ngf=8, input_nc=3)
  diffs = torch_layout.architecture_differences(saved, current, 'G_B')
  assert diffs == ['ngf: converted 4, model 8 (set config.model.ngf=4 to match)',
                   'input_nc: converted 1, model 3 (set config.model.output_nc=1 to match)']
  assert torch_layout.architecture_differences(saved, dict(saved), 'G_A') == []
