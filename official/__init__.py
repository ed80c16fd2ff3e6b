"""cnn-repro: Keras 3 / TensorFlow reproductions of the classic ImageNet CNN papers."""

import os

# TensorFlow's C++ INFO lines (oneDNN notice, CUDA stub, CPU feature guard) drown the progress
# output of every command; hide them unless the user chose a level. Set before any subpackage
# imports TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
# TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512 VNNI/BF16 or AMX;
# on AVX2 CPUs they are off, and with Eigen's kernels our training steps take 1.3-2.1x as long
# (ResNet-50 1.34x, MobileNetV2 1.62x, EfficientNet-B0 2.12x: README "Speed", measured side by
# side). On unless the user chose (TF_ENABLE_ONEDNN_OPTS=0); like the line above, it must run
# before TensorFlow is imported.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
