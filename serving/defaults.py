"""Default limits of the local server, shared by its modules and its command line (no imports,
so that `python -m serving.server --help` answers without loading TensorFlow)."""

MAX_IMAGE_PIXELS = 2048 * 2048  # height x width of one image (--max_image_pixels)
MAX_BODY_BYTES = 64 * 1024 * 1024  # a request body after decompression (--max_body_bytes)
REST_TIMEOUT_MS = 30000  # TF Serving's --rest_api_timeout_in_ms default
READ_TIMEOUT_MS = 30000  # time for a request body to arrive (--rest_api_read_timeout_in_ms)
GRPC_MAX_THREADS = 16  # --grpc_max_threads
MAX_CONCURRENT_PREDICTIONS = 2  # --max_concurrent_predictions
MAX_ANIMATION_FRAMES = 300  # frames of one animated GIF / WebP / APNG sent to translate_image
