"""Every default of the reference CycleGAN, grouped; the base of the other configs.

Field names keep the reference's option names (netG, ngf, lambda_A, n_epochs_decay, ...) so its
users find them. Override any field on the command line: --config.model.ngf=32.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()

  config.model = model = ml_collections.ConfigDict()
  # The model (the reference's --model): cycle_gan | pix2pix | colorization (models/family.py)
  model.name = 'cycle_gan'
  model.netG = 'resnet_9blocks'  # resnet_9blocks | resnet_6blocks | unet_128 | unet_256
  model.netD = 'basic'  # basic | n_layers | pixel
  model.ngf = 64
  model.ndf = 64
  model.n_layers_D = 3  # used when netD is n_layers
  model.norm = 'instance'  # instance | batch | none
  model.init_type = 'normal'  # normal | xavier | kaiming | orthogonal
  model.init_gain = 0.02
  model.no_dropout = True  # the reference's CycleGAN trains without dropout
  model.input_nc = 3
  model.output_nc = 3
  # How exports and translate run the generator (cyclegan_tf/models/test_time.py): eval =
  # batch norm with its moving statistics, no dropout; train = the reference's test.py without
  # --eval (each image's own batch-norm statistics, dropout on with a seeded mask), which made
  # its published pix2pix results. Converted reference weights with batch norm or dropout
  # default to train unless this is set on the command line.
  model.test_mode = 'eval'  # eval | train
  model.test_seed = 0  # train mode: the dropout masks' seed (same input + seed = same output)

  config.data = data = ml_collections.ConfigDict()
  data.dataset = 'synthetic_seasons'  # synthetic_seasons | folder | tfds | pix2pix
  # How the images pair up (the reference's --dataset_mode): unaligned (CycleGAN: trainA and
  # trainB apart) | aligned (pix2pix: each file holds A | B side by side) | colorization (any
  # RGB photos: A = their L, B = their ab in Lab)
  data.dataset_mode = 'unaligned'
  # folder datasets: root/trainA, trainB, testA, testB (unaligned); root/train, test (aligned,
  # colorization)
  data.root = ''
  data.tfds_name = 'cycle_gan/horse2zebra'
  data.tfds_data_dir = ''  # '' = tfds' default (~/tensorflow_datasets)
  # dataset pix2pix: one of the reference's pix2pix datasets (facades | maps | edges2shoes |
  # edges2handbags | night2day), downloaded once as NAME.tar.gz from pix2pix_base_url (the
  # reference's datasets/download_pix2pix_dataset.sh) into download_dir and read as aligned.
  data.pix2pix_name = 'facades'
  data.pix2pix_base_url = 'http://efrosgans.eecs.berkeley.edu/pix2pix/datasets'
  data.download_dir = ''  # '' = $XDG_CACHE_HOME/cyclegan_tf/datasets (~/.cache/...)
  data.load_size = 286
  data.crop_size = 256
  # resize_and_crop | crop | scale_width | scale_width_and_crop | none
  data.preprocess = 'resize_and_crop'
  data.no_flip = False
  data.direction = 'AtoB'  # AtoB | BtoA
  data.max_dataset_size = 0  # 0 = no limit (the reference's inf)
  data.serial_batches = False  # True: B in order too instead of at random
  data.cache = False  # cache decoded images in memory
  data.num_parallel_calls = -1  # -1 = tf.data.AUTOTUNE
  data.synthetic_train_size = 400  # scenes per domain
  data.synthetic_test_size = 50
  data.seed = 0

  config.train = train = ml_collections.ConfigDict()
  train.batch_size = 1
  train.lr = 0.0002
  train.beta1 = 0.5
  train.beta2 = 0.999
  train.n_epochs = 100  # epochs at the initial learning rate
  train.n_epochs_decay = 100  # epochs of linear decay to zero
  train.epoch_count = 1
  train.lr_policy = 'linear'  # linear | step | cosine | plateau
  train.lr_decay_iters = 50  # step policy: multiply by 0.1 every lr_decay_iters epochs
  train.pool_size = 50  # 0 = no image pool
  train.gan_mode = 'lsgan'  # lsgan | vanilla | wgangp
  train.gp_weight = 10.0  # wgangp gradient penalty weight
  train.max_steps = 0  # 0 = run all epochs; else stop after this many steps in total
  train.checkpoint_every_steps = 1000
  train.max_to_keep = 3
  train.log_every_steps = 100
  train.image_every_steps = 500  # image summaries and sample grids
  train.eval_every_steps = 0  # 0 = no evaluation during training
  train.deterministic = False  # bit-reproducible ops (slower)
  train.seed = 0
  train.strategy = 'default'  # default | mirrored | multi_worker | tpu
  train.devices = ''  # mirrored: comma-separated devices, '' = all local GPUs
  # float32 | mixed_bfloat16 | mixed_float16 | auto (bfloat16 where the hardware has it)
  train.precision = 'float32'
  train.jit_compile = False  # XLA for the forward/backward passes (GPUs, TPUs)
  train.init_from = ''  # directory of converted reference weights to start from

  config.loss = loss = ml_collections.ConfigDict()
  loss.lambda_A = 10.0
  loss.lambda_B = 10.0
  loss.lambda_identity = 0.5
  loss.lambda_L1 = 100.0  # pix2pix and colorization: weight of |G(A) - B|_1

  config.eval = evaluation = ml_collections.ConfigDict()
  evaluation.num_images = 0  # test images per domain, 0 = the whole test split
  # Evaluators (cyclegan_tf/evaluation/evaluators/), comma-separated:
  # swd | cycle | classifier | paired | fid_kid (fid_kid: with InceptionV3 weights only)
  evaluation.metrics = 'swd,cycle,classifier,paired,fid_kid'
  evaluation.inception_weights = ''  # path to InceptionV3 no-top weights for FID / KID
  evaluation.classifier_epochs = 5
  evaluation.classifier_train_images = 500  # training images per domain for the classifier
  evaluation.grid_rows = 6  # rows of the result grids
  evaluation.seed = 0

  config.export = export = ml_collections.ConfigDict()
  # SavedModel names of the a2b / b2a generators; '' = the model's own: cyclegan_a2b,
  # cyclegan_b2a, pix2pix_a2b, colorization_a2b (models/family.py export_name).
  export.model_name_a2b = ''
  export.model_name_b2a = ''
  # Edge exports (cyclegan_tf/edge_export.py).
  # What --mode=export (and --mode=pretrained) writes, comma-separated: saved_model (TF Serving),
  # litert (.tflite files), onnx. Edge files go to EXPORT_DIR/<format>/<model name>/<version>/.
  export.formats = 'saved_model'
  export.litert_sizes = '256'  # LiteRT fixed input sizes, SIDE or HxW, comma-separated ('' = none)
  export.litert_dynamic = True  # also LiteRT models for any size (resized by the interpreter)
  # LiteRT precisions, comma-separated: float32 | float16 (float16 weights) | int8 (dynamic-range
  # quantization: int8 weights, activations quantized at run time)
  export.litert_precisions = 'float32,float16,int8'
  export.onnx_opset = 18  # the newest opset tf2onnx 1.17 writes
  export.check_images = 2  # synthetic scenes each edge file is checked on against the generator

  # Published models (cyclegan_tf/deploy/pretrained.py, --mode=pretrained).
  config.pretrained = pretrained = ml_collections.ConfigDict()
  # Where NAME.pth is downloaded from: the reference's scripts/download_cyclegan_model.sh's URL.
  pretrained.base_url = 'http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models'
  # Where the pix2pix names (pix2pix_NAME) download NAME.pth from: the reference's
  # scripts/download_pix2pix_model.sh's URL.
  pretrained.pix2pix_base_url = 'http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch'
  pretrained.cache_dir = ''  # downloaded .pth files; '' = $XDG_CACHE_HOME/cyclegan_tf/pretrained
  pretrained.timeout_s = 60.0  # seconds a download may wait for data before it fails
  pretrained.progress_s = 10.0  # seconds between download progress lines

  config.benchmark = benchmark = ml_collections.ConfigDict()
  benchmark.warmup_steps = 2  # untimed train steps (the first traces the graph)
  benchmark.steps = 5  # timed train steps; the median is reported
  benchmark.generator_steps = 5  # timed generator forwards

  config.translate = translate = ml_collections.ConfigDict()
  translate.tile_size = 512  # images larger than this are translated in tiles
  translate.tile_overlap = 64
  # Longer side (px) of the downscaled whole-image pass whose instance-norm statistics all
  # tiles share; 0 = tile_size. Larger is closer to untiled results, at that pass's memory.
  translate.stats_size = 0
  # Videos and animated images: weight in [0, 1) of the past in a moving average over frames of
  # each instance-norm layer's statistics (deploy/frames.py); 0 = every frame on its own, as
  # single images always are. Costs a second generator pass per frame.
  translate.temporal_smoothing = 0.0
  # Animated GIF / WebP / APNG: write one PNG per frame (NAME_00001.png, ...) instead of one
  # animated file.
  translate.frames_as_files = False

  return config
