"""CycleGAN unpaired image-to-image translation in TensorFlow 2 / Keras 3."""
