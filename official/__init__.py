"""cnn-repro: Keras 3 / TensorFlow reproductions of the classic ImageNet CNN papers."""

import os

# TensorFlow's C++ INFO lines (oneDNN notice, CUDA stub, CPU feature guard) drown the progress
# output of every command; hide them unless the user chose a level. Set before any subpackage
# imports TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

__version__ = "0.1.0"
