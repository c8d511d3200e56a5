"""The pix2pix quick start: summer -> winter on the built-in scenes in their paired form, offline,
in about a minute on 2 CPU cores. A smaller U-Net (unet_128, ngf 32) at 128 px; everything else
is the reference's pix2pix default (configs/pix2pix.py).

  python main.py --config=configs/pix2pix_quickstart.py --workdir=runs/p2p_quickstart
"""

from configs import pix2pix


def get_config():
  config = pix2pix.get_config()
  config.model.netG = 'unet_128'
  config.model.ngf = 32
  config.model.ndf = 32
  config.data.load_size = 143
  config.data.crop_size = 128
  config.data.synthetic_train_size = 150
  config.data.synthetic_test_size = 16
  config.train.n_epochs = 2  # 4 epochs of 150 steps: 600 steps
  config.train.n_epochs_decay = 2
  config.train.checkpoint_every_steps = 200
  config.train.log_every_steps = 50
  config.train.image_every_steps = 200
  config.train.eval_every_steps = 600
  return config
