"""The reference's colorization model: pix2pix from L to ab in Lab (input_nc 1, output_nc 2)
on any RGB photos, with the pix2pix defaults (unet_256, batch norm, dropout, 100 x L1).

  python main.py --config=configs/colorization.py --workdir=runs/color \
      --config.data.dataset=folder --config.data.root=PHOTOS   # PHOTOS/train, PHOTOS/test

Without data.root it trains on the built-in synthetic scenes. Needs scikit-image
(pip install -e ".[colorization]").
"""

from configs import pix2pix


def get_config():
  config = pix2pix.get_config()
  config.model.name = 'colorization'
  config.model.input_nc = 1
  config.model.output_nc = 2
  config.data.dataset_mode = 'colorization'
  # Paired PSNR / SSIM / L1 and SWD on the RGB pictures; the domain classifier would need
  # gray and colour training pictures.
  config.eval.metrics = 'swd,paired,fid_kid'
  return config
