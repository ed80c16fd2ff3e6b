"""NumPy float64 transcriptions of source networks, computed straight from their PyTorch state
dicts (no torch, no Keras): the reference a weight port is checked against.

Tensors are (N, C, H, W) as in PyTorch; convolution weights (out, in / groups, kh, kw).
"""

import math

import numpy as np

# (repeats, kernel, stride, expansion, output channels) per stage of EfficientNet-B0 / -Lite0
# (arXiv 1905.11946 Table 1; tensorflow/tpu efficientnet_builder.py `_DEFAULT_BLOCKS_ARGS`).
EFFICIENTNET_B0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
# (expansion t, channels c, repeats n, stride s) of MobileNetV2 (arXiv 1801.04381 Table 2).
MOBILENET_V2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow SAME: the output has ceil(size / stride) positions, the extra pad at the end."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv2d(x, weight, *, stride=1, padding="torch", groups=1, bias=None):
    """A PyTorch Conv2d: padding "torch" is k // 2 on every side, "tf" TensorFlow SAME."""
    out_channels, per_group, kh, kw = weight.shape
    if padding == "torch":
        pads = ((kh // 2, kh // 2), (kw // 2, kw // 2))
    else:
        pads = (tf_same_padding(x.shape[2], kh, stride), tf_same_padding(x.shape[3], kw, stride))
    x = np.pad(x, ((0, 0), (0, 0), *pads))
    n, channels, height, width = x.shape
    out_h, out_w = (height - kh) // stride + 1, (width - kw) // stride + 1
    x = x.reshape(n, groups, channels // groups, height, width)
    w = weight.reshape(groups, out_channels // groups, per_group, kh, kw).astype(np.float64)
    out = np.zeros((n, groups, out_channels // groups, out_h, out_w))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, :, i : i + stride * out_h : stride, j : j + stride * out_w : stride]
            out += np.einsum("ngchw,goc->ngohw", patch, w[:, :, :, i, j], optimize=True)
    out = out.reshape(n, out_channels, out_h, out_w)
    return out if bias is None else out + bias.reshape(1, -1, 1, 1)


def batch_norm(x, weights, prefix, epsilon):
    """BatchNorm2d in inference mode."""
    mean, var = weights[prefix + ".running_mean"], weights[prefix + ".running_var"]
    gamma, beta = weights[prefix + ".weight"], weights[prefix + ".bias"]
    scale = gamma / np.sqrt(var.astype(np.float64) + epsilon)
    return x * scale.reshape(1, -1, 1, 1) + (beta - mean * scale).reshape(1, -1, 1, 1)


def relu6(x):
    return np.clip(x, 0.0, 6.0)


def efficientnet_lite_lukemelas(weights, images, stages=EFFICIENTNET_B0_STAGES, epsilon=1e-3):
    """EfficientNet-Lite as lukemelas' EfficientNet-PyTorch layout stores it (`_conv_stem`,
    `_blocks.N._expand_conv/_depthwise_conv/_project_conv`, `_conv_head`, `_fc`): ReLU6, no
    squeeze-excitation, TensorFlow SAME padding (the port of TensorFlow checkpoints).

    Args:
      weights: the state dict (name → array).
      images: normalized (N, C, H, W) float64 inputs.
      stages: the stage table; the kernel sizes are checked against the weights.

    Returns:
      The logits, (N, classes) float64.
    """
    x = relu6(
        batch_norm(
            conv2d(images, weights["_conv_stem.weight"], stride=2, padding="tf"),
            weights,
            "_bn0",
            epsilon,
        )
    )
    index = 0
    for repeats, kernel, stride, _, _ in stages:
        for repeat in range(repeats):
            p = f"_blocks.{index}."
            inputs = x
            if p + "_expand_conv.weight" in weights:
                x = relu6(
                    batch_norm(
                        conv2d(x, weights[p + "_expand_conv.weight"]), weights, p + "_bn0", epsilon
                    )
                )
            depthwise = weights[p + "_depthwise_conv.weight"]
            assert depthwise.shape[2:] == (kernel, kernel)
            s = stride if repeat == 0 else 1
            x = conv2d(x, depthwise, stride=s, padding="tf", groups=x.shape[1])
            x = relu6(batch_norm(x, weights, p + "_bn1", epsilon))
            x = batch_norm(
                conv2d(x, weights[p + "_project_conv.weight"]), weights, p + "_bn2", epsilon
            )
            if s == 1 and x.shape == inputs.shape:
                x = x + inputs
            index += 1
    assert f"_blocks.{index}._depthwise_conv.weight" not in weights
    x = relu6(batch_norm(conv2d(x, weights["_conv_head.weight"]), weights, "_bn1", epsilon))
    x = x.mean(axis=(2, 3))
    return x @ weights["_fc.weight"].T.astype(np.float64) + weights["_fc.bias"]


def mobilenet_v2_torchvision(weights, images, epsilon=1e-5):
    """torchvision's mobilenet_v2 (`features.0` stem, `features.1..17` inverted residuals,
    `features.18` last 1x1, `classifier.1`): symmetric padding, ReLU6, BN epsilon 1e-5."""
    x = relu6(
        batch_norm(
            conv2d(images, weights["features.0.0.weight"], stride=2),
            weights,
            "features.0.1",
            epsilon,
        )
    )
    index = 1
    for expansion, _, repeats, stride in MOBILENET_V2_STAGES:
        for repeat in range(repeats):
            p = f"features.{index}.conv."
            inputs = x
            s = stride if repeat == 0 else 1
            part = 0
            if expansion != 1:
                x = relu6(
                    batch_norm(conv2d(x, weights[p + "0.0.weight"]), weights, p + "0.1", epsilon)
                )
                part = 1
            x = conv2d(x, weights[f"{p}{part}.0.weight"], stride=s, groups=x.shape[1])
            x = relu6(batch_norm(x, weights, f"{p}{part}.1", epsilon))
            x = conv2d(x, weights[f"{p}{part + 1}.weight"])
            x = batch_norm(x, weights, f"{p}{part + 2}", epsilon)
            if s == 1 and x.shape == inputs.shape:
                x = x + inputs
            index += 1
    x = relu6(
        batch_norm(
            conv2d(x, weights[f"features.{index}.0.weight"]),
            weights,
            f"features.{index}.1",
            epsilon,
        )
    )
    x = x.mean(axis=(2, 3))
    return x @ weights["classifier.1.weight"].T.astype(np.float64) + weights["classifier.1.bias"]


def normalize(images_uint8, mean, std):
    """0..255 (N, H, W, C) images → normalized (N, C, H, W) float64."""
    x = (images_uint8.astype(np.float64) - np.asarray(mean)) / np.asarray(std)
    return x.transpose(0, 3, 1, 2)
