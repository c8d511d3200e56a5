"""The README's first run: summer -> winter on the built-in synthetic_seasons data, offline.

A small resnet generator at 64 px that visibly learns the winter palette in about five minutes
on 2 CPU cores. Everything else is the reference's default.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.netG = 'resnet_6blocks'
  config.model.ngf = 16
  config.model.ndf = 16
  config.data.dataset = 'synthetic_seasons'
  config.data.load_size = 72
  config.data.crop_size = 64
  config.data.synthetic_train_size = 150
  config.data.synthetic_test_size = 16
  config.train.batch_size = 1
  config.train.n_epochs = 2  # 4 epochs of 150 steps: 600 steps
  config.train.n_epochs_decay = 2
  config.train.checkpoint_every_steps = 200
  config.train.log_every_steps = 50
  config.train.image_every_steps = 200
  return config
