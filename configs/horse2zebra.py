"""horse2zebra through tensorflow-datasets' cycle_gan builder, with the reference's defaults.

tfds downloads the data on first use (internet needed once; or put horse2zebra.zip in
<tfds_data_dir>/downloads/manual/).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.dataset = 'tfds'
  config.data.tfds_name = 'cycle_gan/horse2zebra'
  return config
