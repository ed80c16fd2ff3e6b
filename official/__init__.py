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

# oneDNN converts a convolution's weights from TensorFlow's layout on every call unless told
# they never change; told so, it converts them once, caches them in its blocked layout and runs
# its brgemm kernels instead of the gemm ones. Measured for inference with BN folded (README
# "Speed"): batch-1 latency MobileNetV2 56 -> 15 ms, ResNet-50 205 -> 73 ms. The cache belongs to
# the kernel, not to the weights' values: after a weight changes (an assign, a checkpoint
# restored into a model already called, even an eager op called with other weights) the kernel
# keeps computing with the old ones. So it is only for processes that serve one set of weights:
# `official.predict` and the benchmark's serving sides, never training or evaluation.
FROZEN_WEIGHTS_ENV = "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS"


def assume_frozen_weights() -> None:
    """Lets oneDNN cache every convolution's converted weights for the rest of this process
    (unless the user chose otherwise). TensorFlow reads the setting once, when the first oneDNN
    kernel is built: call it before any op runs, and only where weights never change."""
    os.environ.setdefault(FROZEN_WEIGHTS_ENV, "1")


__version__ = "0.1.0"
