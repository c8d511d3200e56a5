"""The model server and its client: they need only SavedModels, and the `serving` extra
(TF Serving's protos and gRPC): pip install -e ".[serving]"."""

import sys

try:
  import grpc  # pylint: disable=unused-import
  import tensorflow_serving  # pylint: disable=unused-import
except ImportError as e:
  # One line, not a traceback: the fix is an install.
  sys.exit(f'Error: serving needs TF Serving\'s protos and gRPC ({e}), which a plain install '
           'leaves out: pip install -e ".[serving]"')
