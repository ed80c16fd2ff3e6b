"""Inception v1 (GoogLeNet, Szegedy et al. arXiv 1409.4842) and Inception v3 (Szegedy et al.
arXiv 1512.00567), each a table of module widths and one builder, with the auxiliary
classifiers as a switch (`aux_head=True` returns {"logits": ..., "aux_logits": ...}).

GoogLeNet follows the paper: Table 1 widths, 5x5 convolutions in the third branch, convolutions
with biases and ReLU, local response normalization after the first pooling and after the 3x3
reduction stage (Figure 3), 40% dropout before the classifier (§5) and two auxiliary
classifiers on inception 4a and 4d (§5: 5x5/3 average pooling, 1x1 convolution with 128
filters, a 1024-unit fully-connected layer, 70% dropout, linear classifier). Its input is only
mean-subtracted (Table 1 note). `inception_v1_bn` adds batch normalization after every
convolution and drops the LRN (as Ioffe & Szegedy arXiv 1502.03167 §4.2.1 recommend); unlike
torchvision's and TF-slim's GoogLeNets it keeps the paper's 5x5 kernels.

Inception v3 follows the authors' reference implementation (TF-slim `nets/inception_v3.py`),
which keras.applications ports and whose 23.8M-parameter count is the published one: BN
without a learned scale after every convolution (epsilon 1e-3, momentum 0.9997), inputs in
[-1, 1], 20% dropout before the classifier (keep_prob 0.8), and the auxiliary classifier on
the 17x17 grid after `mixed7` (5x5/3 average pooling, 1x1 conv 128, 5x5 conv 768, linear 1x1
classifier; §4 of the paper). Its stem and grid reductions are the ones of TF-slim, which
differ in details from the paper's Table 1 (e.g. the first convolutions are unpadded).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras

from official.models import heads, layers, registry

# ---------------------------------------------------------------------------------------------
# GoogLeNet


@dataclasses.dataclass(frozen=True)
class InceptionV1Module:
    """A row of arXiv 1409.4842 Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj."""

    name: str
    conv1x1: int
    reduce3x3: int
    conv3x3: int
    reduce5x5: int
    conv5x5: int
    pool_proj: int


V1_MODULES = (
    InceptionV1Module("inception_3a", 64, 96, 128, 16, 32, 32),
    InceptionV1Module("inception_3b", 128, 128, 192, 32, 96, 64),
    InceptionV1Module("inception_4a", 192, 96, 208, 16, 48, 64),
    InceptionV1Module("inception_4b", 160, 112, 224, 24, 64, 64),
    InceptionV1Module("inception_4c", 128, 128, 256, 24, 64, 64),
    InceptionV1Module("inception_4d", 112, 144, 288, 32, 64, 64),
    InceptionV1Module("inception_4e", 256, 160, 320, 32, 128, 128),
    InceptionV1Module("inception_5a", 256, 160, 320, 32, 128, 128),
    InceptionV1Module("inception_5b", 384, 192, 384, 48, 128, 128),
)
# A 3x3/2 max pooling follows these modules (Table 1).
V1_POOL_AFTER = ("inception_3b", "inception_4e")
# Auxiliary classifiers sit on these modules (§5).
V1_AUX_AFTER = ("inception_4a", "inception_4d")
# Inputs are only mean-subtracted (Table 1 note); the ImageNet mean on the 0..255 scale.
V1_STD = (1.0, 1.0, 1.0)
# TF-slim inception_v1 arg scope for the BN variant.
V1_BN_MOMENTUM = 0.9997
BN_EPSILON = 1e-3


def _widths(module, width_multiplier: float):
    return {
        field.name: max(8, int(round(getattr(module, field.name) * width_multiplier)))
        for field in dataclasses.fields(module)
        if field.name != "name"
    }


def _concat(branches, name: str):
    return keras.layers.Concatenate(name=name)(branches)


def _googlenet_aux(x, *, name: str, num_classes: int, conv, width_multiplier: float):
    """GoogLeNet's auxiliary classifier (arXiv 1409.4842 §5)."""
    # 5x5/3 average pooling turns the 14x14 grid of a 224 input into 4x4; smaller inputs get a
    # pooling window no larger than the grid (TF-slim's reduced kernel for small inputs).
    window = min(5, x.shape[1] or 5, x.shape[2] or 5)
    x = keras.layers.AveragePooling2D(window, strides=3, name=name + "_pool")(x)
    x = conv(x, max(8, int(128 * width_multiplier)), 1, name=name + "_conv")
    x = keras.layers.Flatten(name=name + "_flatten")(x)
    x = keras.layers.Dense(max(8, int(1024 * width_multiplier)), name=name + "_fc")(x)
    x = keras.layers.ReLU(name=name + "_fc_relu")(x)
    x = keras.layers.Dropout(0.7, name=name + "_dropout")(x)
    return keras.layers.Dense(num_classes, name=name + "_predictions")(x)


def inception_v1(
    *,
    name: str = "inception_v1",
    num_classes: int = 1000,
    image_size: int | None = None,
    include_top: bool = True,
    pooling: str | None = "avg",
    dropout: float = 0.4,
    classifier_activation: str | None = None,
    features_only: bool = False,
    aux_head: bool = False,
    width_multiplier: float = 1.0,
    activation: str = "relu",
    normalization: str | None = None,
    kernel_initializer: str = "glorot_uniform",
    mean: Sequence[float] | None = registry.IMAGENET_MEAN,
    std: Sequence[float] | None = V1_STD,
) -> keras.Model:
    """Builds GoogLeNet (Inception v1).

    Args:
      name: model name.
      num_classes: classifier outputs.
      image_size: square input size, or None for any size (>= 32; the auxiliary classifiers'
        dense layers need a fixed size).
      include_top: add the classifier head.
      pooling: global pooling of the features ("avg", "max", or None without the top).
      dropout: dropout before the classifier (40%, §5).
      classifier_activation: None for logits, "softmax" for probabilities.
      features_only: return the outputs at strides 2, 4, 8, 16 and 32.
      aux_head: add the two auxiliary classifiers; the model then returns
        {"logits": main, "aux_logits": on 4a, "aux_logits_2": on 4d} (the paper weighs each
        auxiliary loss by 0.3).
      width_multiplier: scales every layer's channels (not in the paper; for small runs).
      activation: activation switch, see layers.ACTIVATIONS.
      normalization: None (the paper: conv biases and LRN) or a normalization switch.
      kernel_initializer: the paper does not say; Caffe's reference bvlc_googlenet uses Xavier
        (glorot_uniform; its constant 0.2 bias initialization is not reproduced).
      mean: input mean on the 0..255 scale, or None for no input normalization.
      std: input standard deviation on the 0..255 scale (1: mean subtraction only).

    Returns:
      A keras.Model.
    """
    if aux_head and not include_top:
        raise ValueError("aux_head=True needs include_top=True")
    norm = layers.norm_kwargs(normalization, V1_BN_MOMENTUM, BN_EPSILON, kernel_initializer)

    def conv(x, filters, kernel_size, *, name, strides=1):
        return layers.conv_norm_act(
            x, filters, kernel_size, strides=strides, name=name, activation=activation, **norm
        )

    def lrn(x, name):
        if normalization:
            return x
        # The paper gives no constants; Caffe's bvlc_googlenet uses local_size 5, alpha 1e-4
        # and beta 0.75 with Caffe's convention k = 1 and alpha divided by the window size.
        return layers.LocalResponseNormalization(size=5, k=1.0, alpha=1e-4 / 5, name=name)(x)

    def width(filters):
        return max(8, int(round(filters * width_multiplier)))

    inputs, x = layers.input_block(image_size, mean, std)
    x = conv(x, width(64), 7, strides=2, name="conv1")
    features = [x]
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
    x = lrn(x, "pool1_lrn")
    x = conv(x, width(64), 1, name="conv2_reduce")
    x = conv(x, width(192), 3, name="conv2")
    x = lrn(x, "conv2_lrn")
    features.append(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool2")(x)
    aux_outputs = []
    for module in V1_MODULES:
        w = _widths(module, width_multiplier)
        prefix = module.name
        branch1 = conv(x, w["conv1x1"], 1, name=prefix + "_1x1")
        branch2 = conv(x, w["reduce3x3"], 1, name=prefix + "_3x3_reduce")
        branch2 = conv(branch2, w["conv3x3"], 3, name=prefix + "_3x3")
        branch3 = conv(x, w["reduce5x5"], 1, name=prefix + "_5x5_reduce")
        branch3 = conv(branch3, w["conv5x5"], 5, name=prefix + "_5x5")
        branch4 = keras.layers.MaxPooling2D(3, strides=1, padding="same", name=prefix + "_pool")(x)
        branch4 = conv(branch4, w["pool_proj"], 1, name=prefix + "_pool_proj")
        x = _concat([branch1, branch2, branch3, branch4], prefix)
        if aux_head and module.name in V1_AUX_AFTER:
            aux = _googlenet_aux(
                x,
                name=f"aux{len(aux_outputs) + 1}",
                num_classes=num_classes,
                conv=conv,
                width_multiplier=width_multiplier,
            )
            aux_outputs.append(aux)
        if module.name in V1_POOL_AFTER:
            features.append(x)
            x = keras.layers.MaxPooling2D(
                3, strides=2, padding="same", name=module.name + "_pool_out"
            )(x)
    features.append(x)
    return heads.model_from_features(
        inputs,
        x,
        features,
        name=name,
        features_only=features_only,
        num_classes=num_classes,
        include_top=include_top,
        pooling=pooling,
        dropout=dropout,
        classifier_activation=classifier_activation,
        aux_logits=aux_outputs,
    )


# ---------------------------------------------------------------------------------------------
# Inception v3

# [-1, 1] inputs, as TF-slim and keras.applications.
V3_MEAN = (127.5, 127.5, 127.5)
V3_STD = (127.5, 127.5, 127.5)
V3_BN_MOMENTUM = 0.9997  # TF-slim inception_v3_arg_scope batch_norm_decay.


@dataclasses.dataclass(frozen=True)
class InceptionV3Module:
    """One module of the TF-slim Inception v3: its kind and widths.

    Kinds: "a" (35x35: 1x1, 5x5, double 3x3, pool; arXiv 1512.00567 Figure 5), "b" (35→17
    grid reduction), "c" (17x17 with factorized 1x7/7x1; Figure 6), "d" (17→8 reduction),
    "e" (8x8 with expanded 1x3/3x1 filter banks; Figure 7).
    """

    name: str
    kind: str
    widths: tuple[int, ...]


# TF-slim nets/inception_v3.py, Mixed_5b..Mixed_7c (keras.applications `mixed0`..`mixed10`).
V3_MODULES = (
    InceptionV3Module("mixed0", "a", (64, 48, 64, 64, 96, 96, 32)),
    InceptionV3Module("mixed1", "a", (64, 48, 64, 64, 96, 96, 64)),
    InceptionV3Module("mixed2", "a", (64, 48, 64, 64, 96, 96, 64)),
    InceptionV3Module("mixed3", "b", (384, 64, 96, 96)),
    InceptionV3Module("mixed4", "c", (192, 128, 192)),
    InceptionV3Module("mixed5", "c", (192, 160, 192)),
    InceptionV3Module("mixed6", "c", (192, 160, 192)),
    InceptionV3Module("mixed7", "c", (192, 192, 192)),
    InceptionV3Module("mixed8", "d", (192, 320, 192)),
    InceptionV3Module("mixed9", "e", (320, 384, 448, 384, 192)),
    InceptionV3Module("mixed10", "e", (320, 384, 448, 384, 192)),
)
V3_AUX_AFTER = "mixed7"


def _v3_module(x, module: InceptionV3Module, conv, width):
    """One Inception v3 module; branch order as TF-slim (and keras.applications)."""
    w = [width(v) for v in module.widths]
    n = module.name
    if module.kind == "a":
        b1 = conv(x, w[0], 1, name=n + "_1x1")
        b2 = conv(x, w[1], 1, name=n + "_5x5_reduce")
        b2 = conv(b2, w[2], 5, name=n + "_5x5")
        b3 = conv(x, w[3], 1, name=n + "_3x3dbl_reduce")
        b3 = conv(b3, w[4], 3, name=n + "_3x3dbl_1")
        b3 = conv(b3, w[5], 3, name=n + "_3x3dbl_2")
        b4 = keras.layers.AveragePooling2D(3, strides=1, padding="same", name=n + "_pool")(x)
        b4 = conv(b4, w[6], 1, name=n + "_pool_proj")
        return _concat([b1, b2, b3, b4], n)
    if module.kind == "b":
        b1 = conv(x, w[0], 3, strides=2, padding="valid", name=n + "_3x3")
        b2 = conv(x, w[1], 1, name=n + "_3x3dbl_reduce")
        b2 = conv(b2, w[2], 3, name=n + "_3x3dbl_1")
        b2 = conv(b2, w[3], 3, strides=2, padding="valid", name=n + "_3x3dbl_2")
        b3 = keras.layers.MaxPooling2D(3, strides=2, name=n + "_pool")(x)
        return _concat([b1, b2, b3], n)
    if module.kind == "c":
        outer, inner = w[0], w[1]
        b1 = conv(x, outer, 1, name=n + "_1x1")
        b2 = conv(x, inner, 1, name=n + "_7x7_reduce")
        b2 = conv(b2, inner, (1, 7), name=n + "_7x7_1")
        b2 = conv(b2, outer, (7, 1), name=n + "_7x7_2")
        b3 = conv(x, inner, 1, name=n + "_7x7dbl_reduce")
        b3 = conv(b3, inner, (7, 1), name=n + "_7x7dbl_1")
        b3 = conv(b3, inner, (1, 7), name=n + "_7x7dbl_2")
        b3 = conv(b3, inner, (7, 1), name=n + "_7x7dbl_3")
        b3 = conv(b3, outer, (1, 7), name=n + "_7x7dbl_4")
        b4 = keras.layers.AveragePooling2D(3, strides=1, padding="same", name=n + "_pool")(x)
        b4 = conv(b4, w[2], 1, name=n + "_pool_proj")
        return _concat([b1, b2, b3, b4], n)
    if module.kind == "d":
        b1 = conv(x, w[0], 1, name=n + "_3x3_reduce")
        b1 = conv(b1, w[1], 3, strides=2, padding="valid", name=n + "_3x3")
        b2 = conv(x, w[2], 1, name=n + "_7x7x3_reduce")
        b2 = conv(b2, w[2], (1, 7), name=n + "_7x7x3_1")
        b2 = conv(b2, w[2], (7, 1), name=n + "_7x7x3_2")
        b2 = conv(b2, w[2], 3, strides=2, padding="valid", name=n + "_7x7x3_3")
        b3 = keras.layers.MaxPooling2D(3, strides=2, name=n + "_pool")(x)
        return _concat([b1, b2, b3], n)
    # kind "e"
    b1 = conv(x, w[0], 1, name=n + "_1x1")
    b2 = conv(x, w[1], 1, name=n + "_3x3_reduce")
    b2 = _concat(
        [conv(b2, w[1], (1, 3), name=n + "_3x3_1x3"), conv(b2, w[1], (3, 1), name=n + "_3x3_3x1")],
        n + "_3x3",
    )
    b3 = conv(x, w[2], 1, name=n + "_3x3dbl_reduce")
    b3 = conv(b3, w[3], 3, name=n + "_3x3dbl")
    b3 = _concat(
        [
            conv(b3, w[3], (1, 3), name=n + "_3x3dbl_1x3"),
            conv(b3, w[3], (3, 1), name=n + "_3x3dbl_3x1"),
        ],
        n + "_3x3dbl_concat",
    )
    b4 = keras.layers.AveragePooling2D(3, strides=1, padding="same", name=n + "_pool")(x)
    b4 = conv(b4, w[4], 1, name=n + "_pool_proj")
    return _concat([b1, b2, b3, b4], n)


def inception_v3(
    *,
    name: str = "inception_v3",
    num_classes: int = 1000,
    image_size: int | None = None,
    include_top: bool = True,
    pooling: str | None = "avg",
    dropout: float = 0.2,
    classifier_activation: str | None = None,
    features_only: bool = False,
    aux_head: bool = False,
    width_multiplier: float = 1.0,
    activation: str = "relu",
    normalization: str = "batch",
    kernel_initializer: str = "he_normal",
    mean: Sequence[float] | None = V3_MEAN,
    std: Sequence[float] | None = V3_STD,
) -> keras.Model:
    """Builds Inception v3.

    Args:
      name: model name.
      num_classes: classifier outputs.
      image_size: square input size (>= 75), or None for any size.
      include_top: add the classifier head.
      pooling: global pooling of the features ("avg", "max", or None without the top).
      dropout: dropout before the classifier.
      classifier_activation: None for logits, "softmax" for probabilities.
      features_only: return the outputs at strides 2, 4, 8, 16 and 32 (TF-slim's
        Conv2d_2b_3x3, Conv2d_4a_3x3, Mixed_5d, Mixed_6e and Mixed_7c).
      aux_head: add the auxiliary classifier on `mixed7`; the model then returns
        {"logits": main, "aux_logits": auxiliary} (TF-slim weighs its loss by 0.4).
      width_multiplier: scales every layer's channels (not in the paper; for small runs).
      activation: activation switch, see layers.ACTIVATIONS.
      normalization: normalization switch, see layers.NORMALIZATIONS.
      kernel_initializer: TF-slim's variance_scaling_initializer is he_normal.
      mean: input mean on the 0..255 scale, or None for no input normalization.
      std: input standard deviation on the 0..255 scale.

    Returns:
      A keras.Model.
    """
    if aux_head and not include_top:
        raise ValueError("aux_head=True needs include_top=True")
    norm = layers.norm_kwargs(normalization, V3_BN_MOMENTUM, BN_EPSILON, kernel_initializer)

    def conv(x, filters, kernel_size, *, name, strides=1, padding="same"):
        return layers.conv_norm_act(
            x,
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            name=name,
            activation=activation,
            norm_scale=False,
            **norm,
        )

    def width(filters):
        return max(8, int(round(filters * width_multiplier)))

    inputs, x = layers.input_block(image_size, mean, std)
    # TF-slim stem: Conv2d_1a_3x3 .. MaxPool_5a_3x3 (299 → 35).
    x = conv(x, width(32), 3, strides=2, padding="valid", name="conv1a")
    x = conv(x, width(32), 3, padding="valid", name="conv2a")
    x = conv(x, width(64), 3, name="conv2b")
    features = [x]
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = conv(x, width(80), 1, padding="valid", name="conv3b")
    x = conv(x, width(192), 3, padding="valid", name="conv4a")
    features.append(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    aux_outputs = []
    for module in V3_MODULES:
        if module.kind in ("b", "d"):
            features.append(x)
        x = _v3_module(x, module, conv, width)
        if aux_head and module.name == V3_AUX_AFTER:
            aux_outputs.append(_v3_aux(x, num_classes=num_classes, conv=conv, width=width))
    features.append(x)
    return heads.model_from_features(
        inputs,
        x,
        features,
        name=name,
        features_only=features_only,
        num_classes=num_classes,
        include_top=include_top,
        pooling=pooling,
        dropout=dropout,
        classifier_activation=classifier_activation,
        aux_logits=aux_outputs,
    )


def _v3_aux(x, *, num_classes: int, conv, width):
    """Inception v3's auxiliary classifier (TF-slim `AuxLogits`): 5x5/3 average pooling, 1x1
    conv 128, conv 768 over the whole remaining grid (5x5 at 299 px), linear 1x1 classifier;
    the windows shrink with the grid for small inputs (TF-slim `_reduced_kernel_size_for_small_
    input`)."""
    window = min(5, x.shape[1] or 5, x.shape[2] or 5)
    x = keras.layers.AveragePooling2D(window, strides=3, name="aux_pool")(x)
    x = conv(x, width(128), 1, name="aux_1x1")
    kernel = (x.shape[1] or 5, x.shape[2] or 5)
    x = conv(x, width(768), kernel, padding="valid", name="aux_conv")
    x = keras.layers.Flatten(name="aux_flatten")(x)
    return keras.layers.Dense(num_classes, name="aux_predictions")(x)


registry.register(
    "inception_v1",
    inception_v1,
    family="inception",
    default_resolution=224,
    std=V1_STD,
)
registry.register(
    "inception_v1_bn",
    inception_v1,
    family="inception",
    default_resolution=224,
    std=V1_STD,
    kwargs={"normalization": "batch"},
)
registry.register(
    "inception_v3",
    inception_v3,
    family="inception",
    default_resolution=299,
    min_resolution=75,
    mean=V3_MEAN,
    std=V3_STD,
)
