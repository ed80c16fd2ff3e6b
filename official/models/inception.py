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
torchvision's and TF-slim's GoogLeNets it keeps the paper's 5x5 kernels
(`inception_v1_torchvision` is torchvision's: `third_branch_kernel=3`, `last_pool_size=2`).

Inception v3 follows the authors' reference implementation (TF-slim `nets/inception_v3.py`),
which keras.applications ports and whose 23.8M-parameter count is the published one: BN
without a learned scale after every convolution (epsilon 1e-3, momentum 0.9997), inputs in
[-1, 1], 20% dropout before the classifier (keep_prob 0.8), and the auxiliary classifier on
the 17x17 grid after `mixed7` (5x5/3 average pooling, 1x1 conv 128, 5x5 conv 768, linear 1x1
classifier; §4 of the paper). Its stem and grid reductions are the ones of TF-slim, which
differ in details from the paper's Table 1 (e.g. the first convolutions are unpadded).

Padding (the `padding` switch of every builder here; the deliberately unpadded layers of
TF-slim's stems and grid reductions, and the auxiliary heads, stay unpadded under every
setting):
  * Inception v3, v4 and Inception-ResNet-v2: the reference is TF-slim's SAME ("tf"). The
    layers it pads are stride-1 convolutions (the same under both rules) and the 3x3/1
    average poolings, which leave the padded cells out; "torch" counts them as zeros, as
    torchvision's Inception3 (F.avg_pool2d(x, 3, 1, 1)). timm's Inception-v4 and
    Inception-ResNet-v2 pool with count_include_pad=False: they take "tf".
  * GoogLeNet and BN-Inception: the references are Caffe models (bvlc_googlenet; BN-Inception
    as converted by Cadene's pretrainedmodels), which pad convolutions symmetrically and max
    pool in ceil mode without padding; torchvision's GoogLeNet does the same. Ceil mode is
    TensorFlow's SAME on even sizes (every grid of a 224 px input), so None pads convolutions
    symmetrically and poolings by the SAME rule. "tf" pads both by the SAME rule; "torch" pads
    both symmetrically, max poolings with −inf (PyTorch's MaxPool2d(3, 2, padding=1), which is
    not torchvision's ceil mode) and BN-Inception's average poolings with counted zeros (as
    Caffe and Cadene's port do, where None and "tf" leave them out).
"""

from __future__ import annotations

import dataclasses
import functools
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
        field.name: _channels(width_multiplier)(getattr(module, field.name))
        for field in dataclasses.fields(module)
        if field.name != "name"
    }


def _channels(width_multiplier: float):
    """Scales a layer's channels by the width multiplier (at least 8), for small runs."""

    def width(filters: int) -> int:
        return max(8, int(round(filters * width_multiplier)))

    return width


def _slim_conv(activation: str, norm: dict, rule: str, norm_scale: bool = False):
    """TF-slim's convolution as Inception v3, v4 and Inception-ResNet-v2 use it: BN without a
    learned scale (a linear layer follows every ReLU), then the activation; `norm_scale` gives
    the BN its scale (torchvision's Inception-v3)."""

    def conv(x, filters, kernel_size, *, name, strides=1, padding=rule):
        return layers.conv_norm_act(
            x,
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            name=name,
            activation=activation,
            norm_scale=norm_scale,
            **norm,
        )

    return conv


def _concat(branches, name: str):
    return keras.layers.Concatenate(name=name)(branches)


def _slim_pool(x, kind: str, *, name: str, rule: str, strides: int = 1):
    """TF-slim's poolings in Inception v3, v4 and Inception-ResNet-v2: 3x3/1 average pooling
    padded by `rule`, or unpadded 3x3 max pooling (the stems' and grid reductions')."""
    if kind == "avg":
        return layers.pool2d(x, "avg", 3, strides=1, padding=rule, name=name)
    return layers.pool2d(x, "max", 3, strides=strides, padding="valid", name=name)


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
    third_branch_kernel: int = 5,
    last_pool_size: int = 3,
    width_multiplier: float = 1.0,
    activation: str = "relu",
    normalization: str | None = None,
    kernel_initializer: str = "glorot_uniform",
    padding: str | None = None,
    norm_epsilon: float | None = None,
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
      third_branch_kernel: kernel of each module's third branch (the paper's 5x5);
        torchvision's GoogLeNet uses 3 (googlenet.py: "kernel_size=3 instead of
        kernel_size=5 is a known bug", kept for its released weights).
      last_pool_size: window of the 3x3/2 max pooling before inception 5a; torchvision's
        GoogLeNet pools 2x2/2 there (`maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)`).
      width_multiplier: scales every layer's channels (not in the paper; for small runs).
      activation: activation switch, see layers.ACTIVATIONS.
      normalization: None (the paper: conv biases and LRN) or a normalization switch.
      kernel_initializer: the paper does not say; Caffe's reference bvlc_googlenet uses Xavier
        (glorot_uniform; its constant 0.2 bias initialization is not reproduced).
      padding: None (symmetric convolutions, SAME max pooling: Caffe's and torchvision's
        ceil mode on even sizes), "tf" or "torch"; see the module docstring.
      norm_epsilon: epsilon of the normalization layers (None: BN_EPSILON, 1e-3).
      mean: input mean on the 0..255 scale, or None for no input normalization.
      std: input standard deviation on the 0..255 scale (1: mean subtraction only).

    Returns:
      A keras.Model.
    """
    if aux_head and not include_top:
        raise ValueError("aux_head=True needs include_top=True")
    conv_rule = layers.padding_rule(padding, "symmetric")
    pool_rule = layers.padding_rule(padding, "same")
    epsilon = layers.normalization_epsilon(norm_epsilon, BN_EPSILON)
    norm = layers.norm_kwargs(normalization, V1_BN_MOMENTUM, epsilon, kernel_initializer)

    def conv(x, filters, kernel_size, *, name, strides=1):
        return layers.conv_norm_act(
            x,
            filters,
            kernel_size,
            strides=strides,
            padding=conv_rule,
            name=name,
            activation=activation,
            **norm,
        )

    def max_pool(x, strides, name, size=3):
        return layers.pool2d(x, "max", size, strides=strides, padding=pool_rule, name=name)

    def lrn(x, name):
        if normalization:
            return x
        # The paper gives no constants; Caffe's bvlc_googlenet uses local_size 5, alpha 1e-4
        # and beta 0.75 with Caffe's convention k = 1 and alpha divided by the window size.
        return layers.LocalResponseNormalization(size=5, k=1.0, alpha=1e-4 / 5, name=name)(x)

    width = _channels(width_multiplier)

    inputs, x = layers.input_block(image_size, mean, std)
    x = conv(x, width(64), 7, strides=2, name="conv1")
    features = [x]
    x = max_pool(x, 2, "pool1")
    x = lrn(x, "pool1_lrn")
    x = conv(x, width(64), 1, name="conv2_reduce")
    x = conv(x, width(192), 3, name="conv2")
    x = lrn(x, "conv2_lrn")
    features.append(x)
    x = max_pool(x, 2, "pool2")
    aux_outputs = []
    for module in V1_MODULES:
        w = _widths(module, width_multiplier)
        prefix = module.name
        branch1 = conv(x, w["conv1x1"], 1, name=prefix + "_1x1")
        branch2 = conv(x, w["reduce3x3"], 1, name=prefix + "_3x3_reduce")
        branch2 = conv(branch2, w["conv3x3"], 3, name=prefix + "_3x3")
        branch3 = conv(x, w["reduce5x5"], 1, name=prefix + "_5x5_reduce")
        branch3 = conv(branch3, w["conv5x5"], third_branch_kernel, name=prefix + "_5x5")
        branch4 = max_pool(x, 1, prefix + "_pool")
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
            last = module.name == V1_POOL_AFTER[-1]
            size = last_pool_size if last else 3
            x = max_pool(x, 2, module.name + "_pool_out", size=size)
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


def _v3_module(x, module: InceptionV3Module, conv, width, pool):
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
        b4 = pool(x, "avg", name=n + "_pool")
        b4 = conv(b4, w[6], 1, name=n + "_pool_proj")
        return _concat([b1, b2, b3, b4], n)
    if module.kind == "b":
        b1 = conv(x, w[0], 3, strides=2, padding="valid", name=n + "_3x3")
        b2 = conv(x, w[1], 1, name=n + "_3x3dbl_reduce")
        b2 = conv(b2, w[2], 3, name=n + "_3x3dbl_1")
        b2 = conv(b2, w[3], 3, strides=2, padding="valid", name=n + "_3x3dbl_2")
        b3 = pool(x, "max", strides=2, name=n + "_pool")
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
        b4 = pool(x, "avg", name=n + "_pool")
        b4 = conv(b4, w[2], 1, name=n + "_pool_proj")
        return _concat([b1, b2, b3, b4], n)
    if module.kind == "d":
        b1 = conv(x, w[0], 1, name=n + "_3x3_reduce")
        b1 = conv(b1, w[1], 3, strides=2, padding="valid", name=n + "_3x3")
        b2 = conv(x, w[2], 1, name=n + "_7x7x3_reduce")
        b2 = conv(b2, w[2], (1, 7), name=n + "_7x7x3_1")
        b2 = conv(b2, w[2], (7, 1), name=n + "_7x7x3_2")
        b2 = conv(b2, w[2], 3, strides=2, padding="valid", name=n + "_7x7x3_3")
        b3 = pool(x, "max", strides=2, name=n + "_pool")
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
    b4 = pool(x, "avg", name=n + "_pool")
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
    norm_scale: bool = False,
    width_multiplier: float = 1.0,
    activation: str = "relu",
    normalization: str = "batch",
    kernel_initializer: str = "he_normal",
    padding: str | None = None,
    norm_epsilon: float | None = None,
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
      norm_scale: give every BN a learned scale, as torchvision's Inception3 (its
        BasicConv2d's `nn.BatchNorm2d(out_channels, eps=0.001)` is affine); TF-slim's has
        none (False).
      width_multiplier: scales every layer's channels (not in the paper; for small runs).
      activation: activation switch, see layers.ACTIVATIONS.
      normalization: normalization switch, see layers.NORMALIZATIONS.
      kernel_initializer: TF-slim's variance_scaling_initializer is he_normal.
      padding: None or "tf" (TF-slim's SAME), or "torch" (symmetric; the average poolings
        count the padded zeros); see the module docstring.
      norm_epsilon: epsilon of every normalization layer (None: BN_EPSILON, 1e-3).
      mean: input mean on the 0..255 scale, or None for no input normalization.
      std: input standard deviation on the 0..255 scale.

    Returns:
      A keras.Model.
    """
    if aux_head and not include_top:
        raise ValueError("aux_head=True needs include_top=True")
    rule = layers.padding_rule(padding, "same")
    epsilon = layers.normalization_epsilon(norm_epsilon, BN_EPSILON)
    norm = layers.norm_kwargs(normalization, V3_BN_MOMENTUM, epsilon, kernel_initializer)

    conv = _slim_conv(activation, norm, rule, norm_scale)
    width = _channels(width_multiplier)

    inputs, x = layers.input_block(image_size, mean, std)
    # TF-slim stem: Conv2d_1a_3x3 .. MaxPool_5a_3x3 (299 → 35).
    x = conv(x, width(32), 3, strides=2, padding="valid", name="conv1a")
    x = conv(x, width(32), 3, padding="valid", name="conv2a")
    x = conv(x, width(64), 3, name="conv2b")
    features = [x]
    pool = functools.partial(_slim_pool, rule=rule)
    x = pool(x, "max", strides=2, name="pool1")
    x = conv(x, width(80), 1, padding="valid", name="conv3b")
    x = conv(x, width(192), 3, padding="valid", name="conv4a")
    features.append(x)
    x = pool(x, "max", strides=2, name="pool2")
    aux_outputs = []
    for module in V3_MODULES:
        if module.kind in ("b", "d"):
            features.append(x)
        x = _v3_module(x, module, conv, width, pool)
        if aux_head and module.name == V3_AUX_AFTER:
            aux_outputs.append(_slim_aux(x, num_classes=num_classes, conv=conv, width=width))
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


def _slim_aux(x, *, num_classes: int, conv, width):
    """The auxiliary classifier of TF-slim's Inception v3, v4 and Inception-ResNet-v2
    (`AuxLogits`): 5x5/3 average pooling, 1x1 conv 128, conv 768 over the whole remaining grid
    (5x5 at 299 px), linear 1x1 classifier; the windows shrink with the grid for small inputs
    (TF-slim `_reduced_kernel_size_for_small_input`)."""
    window = min(5, x.shape[1] or 5, x.shape[2] or 5)
    x = keras.layers.AveragePooling2D(window, strides=3, name="aux_pool")(x)
    x = conv(x, width(128), 1, name="aux_1x1")
    kernel = (x.shape[1] or 5, x.shape[2] or 5)
    x = conv(x, width(768), kernel, padding="valid", name="aux_conv")
    x = keras.layers.Flatten(name="aux_flatten")(x)
    return keras.layers.Dense(num_classes, name="aux_predictions")(x)


# ---------------------------------------------------------------------------------------------
# Inception v2 (BN-Inception)


@dataclasses.dataclass(frozen=True)
class InceptionV2Module:
    """A row of arXiv 1502.03167 Figure 5: #1x1, #3x3 reduce, #3x3, double #3x3 reduce,
    double #3x3, pooling and its projection, stride.

    Stride-2 modules (3c, 4e) have no 1x1 branch and pass the max-pooled input through
    without a projection (`conv1x1` and `pool_proj` are 0).
    """

    name: str
    conv1x1: int
    reduce3x3: int
    conv3x3: int
    reduce_double: int
    conv_double: int
    pool: str
    pool_proj: int
    strides: int = 1


# arXiv 1502.03167 Figure 5 (appendix), the network of §4.2.
V2_MODULES = (
    InceptionV2Module("inception_3a", 64, 64, 64, 64, 96, "avg", 32),
    InceptionV2Module("inception_3b", 64, 64, 96, 64, 96, "avg", 64),
    InceptionV2Module("inception_3c", 0, 128, 160, 64, 96, "max", 0, strides=2),
    InceptionV2Module("inception_4a", 224, 64, 96, 96, 128, "avg", 128),
    InceptionV2Module("inception_4b", 192, 96, 128, 96, 128, "avg", 128),
    InceptionV2Module("inception_4c", 160, 128, 160, 128, 160, "avg", 128),
    InceptionV2Module("inception_4d", 96, 128, 192, 160, 192, "avg", 128),
    InceptionV2Module("inception_4e", 0, 128, 192, 192, 256, "max", 0, strides=2),
    InceptionV2Module("inception_5a", 352, 192, 320, 160, 224, "avg", 128),
    InceptionV2Module("inception_5b", 352, 192, 320, 192, 224, "max", 128),
)
# BN momentum and epsilon of the reference Caffe model (Caffe's BatchNorm defaults: moving
# average factor 0.999, epsilon 1e-5).
V2_BN_MOMENTUM = 0.999
V2_BN_EPSILON = 1e-5


def inception_v2(
    *,
    name: str = "inception_v2",
    num_classes: int = 1000,
    image_size: int | None = None,
    include_top: bool = True,
    pooling: str | None = "avg",
    dropout: float = 0.0,
    classifier_activation: str | None = None,
    features_only: bool = False,
    width_multiplier: float = 1.0,
    activation: str = "relu",
    normalization: str = "batch",
    kernel_initializer: str = "he_normal",
    padding: str | None = None,
    norm_epsilon: float | None = None,
    mean: Sequence[float] | None = registry.IMAGENET_MEAN,
    std: Sequence[float] | None = registry.IMAGENET_STD,
) -> keras.Model:
    """Builds Inception v2, the BN-Inception of Ioffe & Szegedy (arXiv 1502.03167 §4.1).

    GoogLeNet with batch normalization after every convolution and the changes of §4.1 and
    Figure 5: each 5x5 convolution becomes two 3x3 convolutions (up to 128 filters more per
    module), the 28x28 grid has three modules (3a, 3b, 3c), pooling in the modules is average
    or max as the table says, and the grid is reduced inside modules 3c and 4e by stride-2
    convolutions next to a pass-through max pooling, with no pooling layers in between. No
    dropout (§4.2.1: removed) and no LRN. The paper's "Inception-v2" is not the network of the
    same name in arXiv 1512.00567 (which is Inception-v3 without its last changes), nor
    TF-slim's `inception_v2` (depthwise-separable first convolution).

    Args:
      name: model name.
      num_classes: classifier outputs.
      image_size: square input size, or None for any size (>= 32).
      include_top: add the classifier head.
      pooling: global pooling of the features ("avg", "max", or None without the top).
      dropout: dropout before the classifier (none in the paper, §4.2.1).
      classifier_activation: None for logits, "softmax" for probabilities.
      features_only: return the outputs at strides 2, 4, 8, 16 and 32.
      width_multiplier: scales every layer's channels (not in the paper; for small runs).
      activation: activation switch, see layers.ACTIVATIONS.
      normalization: normalization switch, see layers.NORMALIZATIONS.
      kernel_initializer: the paper does not say; he_normal as our other BN networks.
      padding: None (symmetric convolutions, SAME pooling: the Caffe model's ceil mode on even
        sizes), "tf" or "torch"; see the module docstring.
      norm_epsilon: epsilon of every normalization layer (None: V2_BN_EPSILON, 1e-5).
      mean: input mean on the 0..255 scale, or None for no input normalization.
      std: input standard deviation on the 0..255 scale.

    Returns:
      A keras.Model.
    """
    conv_rule = layers.padding_rule(padding, "symmetric")
    pool_rule = layers.padding_rule(padding, "same")
    epsilon = layers.normalization_epsilon(norm_epsilon, V2_BN_EPSILON)
    norm = layers.norm_kwargs(normalization, V2_BN_MOMENTUM, epsilon, kernel_initializer)

    def conv(x, filters, kernel_size, *, name, strides=1):
        return layers.conv_norm_act(
            x,
            filters,
            kernel_size,
            strides=strides,
            padding=conv_rule,
            name=name,
            activation=activation,
            **norm,
        )

    width = _channels(width_multiplier)

    def pool(x, kind, *, strides, name):
        return layers.pool2d(x, kind, 3, strides=strides, padding=pool_rule, name=name)

    inputs, x = layers.input_block(image_size, mean, std)
    x = conv(x, width(64), 7, strides=2, name="conv1")
    features = [x]
    x = pool(x, "max", strides=2, name="pool1")
    x = conv(x, width(64), 1, name="conv2_reduce")
    x = conv(x, width(192), 3, name="conv2")
    features.append(x)
    x = pool(x, "max", strides=2, name="pool2")
    for module in V2_MODULES:
        n, stride = module.name, module.strides
        if stride > 1:
            features.append(x)
        branches = []
        if module.conv1x1:
            branches.append(conv(x, width(module.conv1x1), 1, name=n + "_1x1"))
        b = conv(x, width(module.reduce3x3), 1, name=n + "_3x3_reduce")
        branches.append(conv(b, width(module.conv3x3), 3, strides=stride, name=n + "_3x3"))
        b = conv(x, width(module.reduce_double), 1, name=n + "_double_3x3_reduce")
        b = conv(b, width(module.conv_double), 3, name=n + "_double_3x3_1")
        branches.append(
            conv(b, width(module.conv_double), 3, strides=stride, name=n + "_double_3x3_2")
        )
        b = pool(x, module.pool, strides=stride, name=n + "_pool")
        if module.pool_proj:
            b = conv(b, width(module.pool_proj), 1, name=n + "_pool_proj")
        branches.append(b)
        x = _concat(branches, n)
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
    )


# ---------------------------------------------------------------------------------------------
# Inception v4 and Inception-ResNet-v2 (Szegedy et al. arXiv 1602.07261)


@dataclasses.dataclass(frozen=True)
class InceptionV4Stage:
    """A run of identical modules (or one grid reduction) of Inception v4 / Inception-ResNet-v2.

    Kinds: Inception v4's "a", "b", "c" (35x35, 17x17, 8x8 modules; arXiv 1602.07261 Figures
    4, 5, 6) and "reduction_a", "reduction_b" (Figures 7, 8); Inception-ResNet-v2's
    "block35", "block17", "block8" (Figures 16, 17, 19) and its reductions "mixed_6a",
    "mixed_7a" (Figures 7 and 18). `scale` multiplies the residual branch (§3.3: 0.1 to 0.3
    keeps very wide residual networks from dying early in training).
    """

    name: str
    kind: str
    repeats: int = 1
    scale: float = 1.0


V4_STAGES = (
    InceptionV4Stage("mixed_5", "a", 4),
    InceptionV4Stage("mixed_6a", "reduction_a"),
    InceptionV4Stage("mixed_6", "b", 7),
    InceptionV4Stage("mixed_7a", "reduction_b"),
    InceptionV4Stage("mixed_7", "c", 3),
)
# TF-slim inception_resnet_v2 (and keras.applications): 10 x block35 (scale 0.17), 20 x
# block17 (0.1), 10 x block8 (0.2; the last one unscaled and without the ReLU).
RESNET_V2_STAGES = (
    InceptionV4Stage("block35", "block35", 10, 0.17),
    InceptionV4Stage("mixed_6a", "mixed_6a"),
    InceptionV4Stage("block17", "block17", 20, 0.1),
    InceptionV4Stage("mixed_7a", "mixed_7a"),
    InceptionV4Stage("block8", "block8", 10, 0.2),
)
# The aux classifier sits on the 17x17 grid's last module (TF-slim Mixed_6h / PreAuxLogits).
V4_AUX_AFTER = ("b", "block17")
# keras.applications InceptionResNetV2 uses Keras' default BN momentum; TF-slim trained both
# networks with decay 0.9997 as Inception v3.
V4_BN_MOMENTUM = V3_BN_MOMENTUM


def _v4_module(x, kind: str, n: str, conv, width, pool):
    """One Inception v4 module or reduction (TF-slim `inception_v4.py` branch order)."""
    if kind == "a":
        b0 = conv(x, width(96), 1, name=n + "_1x1")
        b1 = conv(x, width(64), 1, name=n + "_3x3_reduce")
        b1 = conv(b1, width(96), 3, name=n + "_3x3")
        b2 = conv(x, width(64), 1, name=n + "_3x3dbl_reduce")
        b2 = conv(b2, width(96), 3, name=n + "_3x3dbl_1")
        b2 = conv(b2, width(96), 3, name=n + "_3x3dbl_2")
        b3 = pool(x, "avg", name=n + "_pool")
        b3 = conv(b3, width(96), 1, name=n + "_pool_proj")
        return [b0, b1, b2, b3]
    if kind == "reduction_a":  # Figure 7 with k, l, m, n = 192, 224, 256, 384 (Table 1)
        b0 = conv(x, width(384), 3, strides=2, padding="valid", name=n + "_3x3")
        b1 = conv(x, width(192), 1, name=n + "_3x3dbl_reduce")
        b1 = conv(b1, width(224), 3, name=n + "_3x3dbl_1")
        b1 = conv(b1, width(256), 3, strides=2, padding="valid", name=n + "_3x3dbl_2")
        return [b0, b1, pool(x, "max", strides=2, name=n + "_pool")]
    if kind == "b":
        b0 = conv(x, width(384), 1, name=n + "_1x1")
        b1 = conv(x, width(192), 1, name=n + "_7x7_reduce")
        b1 = conv(b1, width(224), (1, 7), name=n + "_7x7_1")
        b1 = conv(b1, width(256), (7, 1), name=n + "_7x7_2")
        b2 = conv(x, width(192), 1, name=n + "_7x7dbl_reduce")
        b2 = conv(b2, width(192), (7, 1), name=n + "_7x7dbl_1")
        b2 = conv(b2, width(224), (1, 7), name=n + "_7x7dbl_2")
        b2 = conv(b2, width(224), (7, 1), name=n + "_7x7dbl_3")
        b2 = conv(b2, width(256), (1, 7), name=n + "_7x7dbl_4")
        b3 = pool(x, "avg", name=n + "_pool")
        b3 = conv(b3, width(128), 1, name=n + "_pool_proj")
        return [b0, b1, b2, b3]
    if kind == "reduction_b":
        b0 = conv(x, width(192), 1, name=n + "_3x3_reduce")
        b0 = conv(b0, width(192), 3, strides=2, padding="valid", name=n + "_3x3")
        b1 = conv(x, width(256), 1, name=n + "_7x7x3_reduce")
        b1 = conv(b1, width(256), (1, 7), name=n + "_7x7x3_1")
        b1 = conv(b1, width(320), (7, 1), name=n + "_7x7x3_2")
        b1 = conv(b1, width(320), 3, strides=2, padding="valid", name=n + "_7x7x3_3")
        return [b0, b1, pool(x, "max", strides=2, name=n + "_pool")]
    # kind "c": the 1x3 / 3x1 pairs are concatenated into the module's output directly.
    b0 = conv(x, width(256), 1, name=n + "_1x1")
    b1 = conv(x, width(384), 1, name=n + "_3x3_reduce")
    b1a = conv(b1, width(256), (1, 3), name=n + "_3x3_1x3")
    b1b = conv(b1, width(256), (3, 1), name=n + "_3x3_3x1")
    b2 = conv(x, width(384), 1, name=n + "_3x3dbl_reduce")
    b2 = conv(b2, width(448), (3, 1), name=n + "_3x3dbl_1")
    b2 = conv(b2, width(512), (1, 3), name=n + "_3x3dbl_2")
    b2a = conv(b2, width(256), (1, 3), name=n + "_3x3dbl_1x3")
    b2b = conv(b2, width(256), (3, 1), name=n + "_3x3dbl_3x1")
    b3 = pool(x, "avg", name=n + "_pool")
    b3 = conv(b3, width(256), 1, name=n + "_pool_proj")
    return [b0, _concat([b1a, b1b], n + "_3x3"), _concat([b2a, b2b], n + "_3x3dbl"), b3]


def _resnet_v2_branches(x, kind: str, n: str, conv, width, pool):
    """The branches of one Inception-ResNet-v2 block or reduction (TF-slim / keras order)."""
    if kind == "block35":
        b0 = conv(x, width(32), 1, name=n + "_1x1")
        b1 = conv(x, width(32), 1, name=n + "_3x3_reduce")
        b1 = conv(b1, width(32), 3, name=n + "_3x3")
        b2 = conv(x, width(32), 1, name=n + "_3x3dbl_reduce")
        b2 = conv(b2, width(48), 3, name=n + "_3x3dbl_1")
        b2 = conv(b2, width(64), 3, name=n + "_3x3dbl_2")
        return [b0, b1, b2]
    if kind == "block17":
        b0 = conv(x, width(192), 1, name=n + "_1x1")
        b1 = conv(x, width(128), 1, name=n + "_7x7_reduce")
        b1 = conv(b1, width(160), (1, 7), name=n + "_7x7_1")
        b1 = conv(b1, width(192), (7, 1), name=n + "_7x7_2")
        return [b0, b1]
    if kind == "block8":
        b0 = conv(x, width(192), 1, name=n + "_1x1")
        b1 = conv(x, width(192), 1, name=n + "_3x3_reduce")
        b1 = conv(b1, width(224), (1, 3), name=n + "_3x3_1")
        b1 = conv(b1, width(256), (3, 1), name=n + "_3x3_2")
        return [b0, b1]
    if kind == "mixed_6a":  # Reduction-A with k, l, m, n = 256, 256, 384, 384 (Table 1)
        b0 = conv(x, width(384), 3, strides=2, padding="valid", name=n + "_3x3")
        b1 = conv(x, width(256), 1, name=n + "_3x3dbl_reduce")
        b1 = conv(b1, width(256), 3, name=n + "_3x3dbl_1")
        b1 = conv(b1, width(384), 3, strides=2, padding="valid", name=n + "_3x3dbl_2")
        return [b0, b1, pool(x, "max", strides=2, name=n + "_pool")]
    # kind "mixed_7a": Reduction-B of Figure 18 (TF-slim widths 384, 288, 288/320).
    b0 = conv(x, width(256), 1, name=n + "_3x3_reduce")
    b0 = conv(b0, width(384), 3, strides=2, padding="valid", name=n + "_3x3")
    b1 = conv(x, width(256), 1, name=n + "_3x3b_reduce")
    b1 = conv(b1, width(288), 3, strides=2, padding="valid", name=n + "_3x3b")
    b2 = conv(x, width(256), 1, name=n + "_3x3dbl_reduce")
    b2 = conv(b2, width(288), 3, name=n + "_3x3dbl_1")
    b2 = conv(b2, width(320), 3, strides=2, padding="valid", name=n + "_3x3dbl_2")
    return [b0, b1, b2, pool(x, "max", strides=2, name=n + "_pool")]


def inception_v4(
    *,
    name: str = "inception_v4",
    num_classes: int = 1000,
    image_size: int | None = None,
    include_top: bool = True,
    pooling: str | None = "avg",
    dropout: float = 0.2,
    classifier_activation: str | None = None,
    features_only: bool = False,
    aux_head: bool = False,
    residual: bool = False,
    width_multiplier: float = 1.0,
    activation: str = "relu",
    normalization: str = "batch",
    kernel_initializer: str = "he_normal",
    padding: str | None = None,
    norm_epsilon: float | None = None,
    mean: Sequence[float] | None = V3_MEAN,
    std: Sequence[float] | None = V3_STD,
) -> keras.Model:
    """Builds Inception v4 or Inception-ResNet-v2 (Szegedy et al. arXiv 1602.07261).

    Both follow the authors' reference implementation, TF-slim `nets/inception_v4.py` and
    `nets/inception_resnet_v2.py` (as Inception v3 here): BN without a learned scale after
    every convolution (epsilon 1e-3, momentum 0.9997), inputs in [-1, 1], 20% dropout before
    the classifier, and the auxiliary classifier of Inception v3 on the last 17x17 module.

    Inception v4 is the paper's Figure 9: the stem of Figure 3, 4 x Inception-A, Reduction-A,
    7 x Inception-B, Reduction-B, 3 x Inception-C.

    Inception-ResNet-v2 (`residual=True`) is the network of keras.applications
    InceptionResNetV2, whose weights port layer for layer: TF-slim's stem (Inception v3's up
    to the 35x35 grid, then the 320-channel `mixed_5b` module; the paper's Figure 15 draws the
    Inception v4 stem instead, but the released weights use this one), 10 x block35, Reduction
    -A, 20 x block17, Reduction-B, 10 x block8 and a 1x1 convolution to 1536 channels. In each
    block the concatenated branches are projected back to the input width by a 1x1
    convolution with a bias and no BN, scaled (§3.3) and added to the input, then ReLU; the
    last block8 is unscaled and has no ReLU.

    Args:
      name: model name.
      num_classes: classifier outputs.
      image_size: square input size (>= 75), or None for any size.
      include_top: add the classifier head.
      pooling: global pooling of the features ("avg", "max", or None without the top).
      dropout: dropout before the classifier (TF-slim keep_prob 0.8).
      classifier_activation: None for logits, "softmax" for probabilities.
      features_only: return the outputs at strides 2, 4, 8, 16 and 32 (the last map of each
        grid size).
      aux_head: add the auxiliary classifier; the model then returns
        {"logits": main, "aux_logits": auxiliary} (TF-slim weighs its loss by 0.4).
      residual: build Inception-ResNet-v2 instead of Inception v4.
      width_multiplier: scales every layer's channels (not in the paper; for small runs).
      activation: activation switch, see layers.ACTIVATIONS.
      normalization: normalization switch, see layers.NORMALIZATIONS.
      kernel_initializer: TF-slim's variance_scaling_initializer is he_normal.
      padding: None or "tf" (TF-slim's SAME), or "torch" (symmetric; the average poolings
        count the padded zeros); see the module docstring.
      norm_epsilon: epsilon of every normalization layer (None: BN_EPSILON, 1e-3).
      mean: input mean on the 0..255 scale, or None for no input normalization.
      std: input standard deviation on the 0..255 scale.

    Returns:
      A keras.Model.
    """
    if aux_head and not include_top:
        raise ValueError("aux_head=True needs include_top=True")
    rule = layers.padding_rule(padding, "same")
    epsilon = layers.normalization_epsilon(norm_epsilon, BN_EPSILON)
    norm = layers.norm_kwargs(normalization, V4_BN_MOMENTUM, epsilon, kernel_initializer)

    conv = _slim_conv(activation, norm, rule)
    width = _channels(width_multiplier)

    pool = functools.partial(_slim_pool, rule=rule)

    inputs, x = layers.input_block(image_size, mean, std)
    # The stems of TF-slim (Figure 3 for v4): 3x3/2, 3x3, 3x3 (299 → 147).
    x = conv(x, width(32), 3, strides=2, padding="valid", name="conv1a")
    x = conv(x, width(32), 3, padding="valid", name="conv2a")
    x = conv(x, width(64), 3, name="conv2b")
    features = [x]
    if residual:
        x = pool(x, "max", strides=2, name="pool1")
        x = conv(x, width(80), 1, padding="valid", name="conv3b")
        x = conv(x, width(192), 3, padding="valid", name="conv4a")
        features.append(x)
        x = pool(x, "max", strides=2, name="pool2")
        b0 = conv(x, width(96), 1, name="mixed_5b_1x1")
        b1 = conv(x, width(48), 1, name="mixed_5b_5x5_reduce")
        b1 = conv(b1, width(64), 5, name="mixed_5b_5x5")
        b2 = conv(x, width(64), 1, name="mixed_5b_3x3dbl_reduce")
        b2 = conv(b2, width(96), 3, name="mixed_5b_3x3dbl_1")
        b2 = conv(b2, width(96), 3, name="mixed_5b_3x3dbl_2")
        b3 = pool(x, "avg", name="mixed_5b_pool")
        b3 = conv(b3, width(64), 1, name="mixed_5b_pool_proj")
        x = _concat([b0, b1, b2, b3], "mixed_5b")
    else:
        # Figure 3: three joins of a convolution and a pooling or a second branch (147 → 35).
        b0 = pool(x, "max", strides=2, name="mixed_3a_pool")
        b1 = conv(x, width(96), 3, strides=2, padding="valid", name="mixed_3a_3x3")
        x = _concat([b0, b1], "mixed_3a")
        b0 = conv(x, width(64), 1, name="mixed_4a_3x3_reduce")
        b0 = conv(b0, width(96), 3, padding="valid", name="mixed_4a_3x3")
        b1 = conv(x, width(64), 1, name="mixed_4a_7x7_reduce")
        b1 = conv(b1, width(64), (1, 7), name="mixed_4a_7x7_1")
        b1 = conv(b1, width(64), (7, 1), name="mixed_4a_7x7_2")
        b1 = conv(b1, width(96), 3, padding="valid", name="mixed_4a_7x7_3")
        x = _concat([b0, b1], "mixed_4a")
        features.append(x)
        b0 = conv(x, width(192), 3, strides=2, padding="valid", name="mixed_5a_3x3")
        b1 = pool(x, "max", strides=2, name="mixed_5a_pool")
        x = _concat([b0, b1], "mixed_5a")
    aux_outputs = []
    for stage in RESNET_V2_STAGES if residual else V4_STAGES:
        if stage.repeats == 1:  # a grid reduction
            features.append(x)
            build = _resnet_v2_branches if residual else _v4_module
            x = _concat(build(x, stage.kind, stage.name, conv, width, pool), stage.name)
            continue
        for index in range(stage.repeats):
            n = f"{stage.name}_{index + 1}" if residual else f"{stage.name}{'bcdefgh'[index]}"
            if not residual:
                x = _concat(_v4_module(x, stage.kind, n, conv, width, pool), n)
                continue
            last = stage.kind == "block8" and index == stage.repeats - 1
            mixed = _concat(_resnet_v2_branches(x, stage.kind, n, conv, width, pool), n + "_mixed")
            up = layers.conv2d(
                mixed,
                x.shape[-1],
                1,
                use_bias=True,
                kernel_initializer=norm["kernel_initializer"],
                name=n + "_conv",
            )
            if not last:
                up = keras.layers.Rescaling(stage.scale, name=n + "_scale")(up)
            x = keras.layers.Add(name=n)([x, up])
            if not last:
                x = layers.activation_layer(activation, n + "_ac")(x)
        if aux_head and stage.kind in V4_AUX_AFTER:
            aux_outputs.append(_slim_aux(x, num_classes=num_classes, conv=conv, width=width))
    if residual:
        x = conv(x, width(1536), 1, name="conv_7b")
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
# torchvision's GoogLeNet (torchvision/models/googlenet.py, the weights of
# `googlenet(weights=...)`): BN (epsilon 1e-3) after every convolution and no LRN, 3x3
# kernels in the "5x5" branch, a 2x2/2 pooling before 5a, dropout 0.2, and inputs in [-1, 1]
# (`transform_input=True` with its weights). Ceil-mode max pooling is the SAME rule on even
# grids (any input size divisible by 32).
registry.register(
    "inception_v1_torchvision",
    inception_v1,
    family="inception",
    default_resolution=224,
    mean=V3_MEAN,
    std=V3_STD,
    kwargs={
        "normalization": "batch",
        "third_branch_kernel": 3,
        "last_pool_size": 2,
        "dropout": 0.2,
    },
)
# torchvision's Inception3 (torchvision/models/inception.py): TF-slim's network with a learned
# BN scale and dropout 0.5; inputs in [-1, 1] (`transform_input=True` with its weights). Its
# 3x3/1 average poolings count the padded zeros (F.avg_pool2d(x, 3, 1, 1)): the torchvision
# layout builds it with padding="torch".
registry.register(
    "inception_v3_torchvision",
    inception_v3,
    family="inception",
    default_resolution=299,
    min_resolution=75,
    mean=V3_MEAN,
    std=V3_STD,
    kwargs={"norm_scale": True, "dropout": 0.5},
)
registry.register(
    "inception_v2",
    inception_v2,
    family="inception",
    default_resolution=224,
)
registry.register(
    "inception_v4",
    inception_v4,
    family="inception",
    default_resolution=299,
    min_resolution=75,
    mean=V3_MEAN,
    std=V3_STD,
)
registry.register(
    "inception_resnet_v2",
    inception_v4,
    family="inception",
    default_resolution=299,
    min_resolution=75,
    mean=V3_MEAN,
    std=V3_STD,
    kwargs={"residual": True},
)
