"""cyclegan_tf: CycleGAN unpaired image-to-image translation in TensorFlow 2 / Keras 3."""

import setuptools

SERVING = ['tensorflow-serving-api==2.21.0', 'grpcio>=1.60']
VIDEO = ['av>=18.1']
COLORIZATION = ['scikit-image>=0.22']
EDGE = ['ai-edge-litert==2.3.0', 'tf2onnx==1.17.0', 'onnxruntime>=1.20']

setuptools.setup(
    name='cyclegan_tf',
    version='0.1.0',
    description='CycleGAN in TensorFlow 2 / Keras 3, matching the reference PyTorch CycleGAN',
    packages=setuptools.find_packages(include=['cyclegan_tf', 'cyclegan_tf.*', 'serving',
                                               'configs']),
    # The local server's try-it page (serving/web/), served from the installed package.
    package_data={'serving': ['web/*.html', 'web/*.js', 'web/*.css', 'web/examples/*']},
    python_requires='>=3.11,<3.12',
    install_requires=[
        'tensorflow==2.21.0',
        'keras==3.15.1',
        'tensorboard==2.21.0',
        'tensorflow-datasets==4.9.10',
        'importlib_resources>=6.0',
        'absl-py>=2.1',
        'ml-collections>=1.0',
        'matplotlib>=3.8',
        'pillow>=10.0',
        'numpy>=1.26',
        'scipy>=1.11',
        'psutil>=5.9',
    ],
    extras_require={
        # serving/: TF Serving's own protos (models.config, gRPC stubs) and gRPC.
        'serving': SERVING,
        # Edge exports (LiteRT, ONNX) and their runtimes.
        'edge': EDGE,
        # Video files (mp4, mov, avi, webm, mkv) for translate: PyAV, FFmpeg inside the wheel.
        'video': VIDEO,
        'convert': ['torch==2.13.0'],
        # The colorization model's Lab conversion.
        'colorization': COLORIZATION,
        'test': ['pytest>=8.0', 'pytest-timeout>=2.3', 'pytest-xdist>=3.5', 'dill>=0.3.8',
                 'selenium>=4.20'] + SERVING + EDGE + COLORIZATION + VIDEO,
    },
)
