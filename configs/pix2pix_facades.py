"""The reference's facades script: pix2pix label -> photo (direction BtoA) on the facades
dataset, downloaded once (29 MB) from the reference's server.

  python main.py --config=configs/pix2pix_facades.py --workdir=runs/facades
"""

from configs import pix2pix


def get_config():
  config = pix2pix.get_config()
  config.data.dataset = 'pix2pix'
  config.data.pix2pix_name = 'facades'
  config.data.direction = 'BtoA'  # facades files are photo | label: BtoA maps label -> photo
  return config
