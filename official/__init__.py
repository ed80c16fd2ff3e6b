"""cnn-repro: Keras 3 / TensorFlow reproductions of the classic ImageNet CNN papers."""

__version__ = "0.1.0"
