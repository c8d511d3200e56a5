"""A folder dataset in the reference's layout: ROOT/trainA, trainB, testA, testB.

  python main.py --config=configs/folder.py --config.data.root=/path/to/cat2dog --workdir=W

Reference defaults otherwise (load 286, crop 256, resnet_9blocks); for a quicker look on a CPU
add e.g. --config.data.load_size=143 --config.data.crop_size=128.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.dataset = 'folder'
  config.data.root = ''  # required: --config.data.root=PATH
  return config
