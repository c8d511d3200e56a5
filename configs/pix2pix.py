"""pix2pix with the reference's defaults (its pix2pix_model.py and the facades script): a
unet_256 generator with batch norm and dropout, a conditional PatchGAN, vanilla GAN loss +
100 x L1, no image pool, Adam 2e-4 / 0.5, 100 + 100 epochs at 286 -> 256 px.

  python main.py --config=configs/pix2pix.py --workdir=runs/p2p

trains on the built-in synthetic_seasons scenes in their paired form (each summer scene with
its winter render), no download. On an aligned folder (ROOT/train, ROOT/test of A|B images):
--config.data.dataset=folder --config.data.root=ROOT; on a reference dataset:
configs/pix2pix_facades.py, or --config.data.dataset=pix2pix --config.data.pix2pix_name=maps.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.model.name = 'pix2pix'
  config.model.netG = 'unet_256'
  config.model.norm = 'batch'
  config.model.no_dropout = False  # the reference's pix2pix trains with dropout
  config.data.dataset_mode = 'aligned'
  config.train.pool_size = 0
  config.train.gan_mode = 'vanilla'
  config.loss.lambda_L1 = 100.0
  return config
