"""DenseNet (Huang et al. arXiv 1608.06993) as one table and one builder.

Every layer of a dense block sees the concatenation of the block input and of all earlier
layers' outputs, and adds k ("growth rate") channels of its own (§3, eq. 2): features are
reused instead of re-learned, so the network is narrow (k = 32) and has few parameters. Each
layer is pre-activation, BN → ReLU → convolution (§3 "Composite function", after He et al.
arXiv 1603.05027). The ImageNet networks (Table 1) are DenseNet-BC:
  * B, bottleneck (§3 "Bottleneck layers"): a 1x1 convolution to 4k channels before the 3x3
    one, BN → ReLU → Conv(1x1, 4k) → BN → ReLU → Conv(3x3, k);
  * C, compression (§3 "Compression"): the transition between two blocks (BN → ReLU →
    Conv 1x1 → 2x2 average pooling) keeps floor(θ·m) of the m channels, θ = 0.5.
Both are switches (the paper's CIFAR ablation §4.3 trains DenseNet, -B, -C and -BC); the
stem is a 7x7/2 convolution with 2k channels and a 3x3/2 max pooling, and the network ends
with BN → ReLU → global average pooling → fully-connected (Table 1; the final BN and ReLU as
in the authors' Torch code, liuzhuang13/DenseNet densenet.lua, and torchvision).

DenseNet-161 (k = 48, 96 initial channels) is not in the paper: it comes from the authors'
ImageNet model release (liuzhuang13/DenseNet README) and torchvision. Layer order and names
follow keras.applications' densenet.py (conv1_conv, conv2_block1_1_conv, pool2_conv, the
final `bn`...), so its DenseNet121/169/201 weights port layer for layer (port.py).

Padding (the `padding` switch): the 7x7/2 stem convolution and the 3x3/2 max pooling pad
symmetrically, one pixel each side for the pooling, as torchvision and keras.applications
("torch"); keras.applications pads the pooling with zeros, torchvision with −inf, the same
after the default ReLU, so None equals "torch" for non-negative activations. "tf" pads both
by TensorFlow's SAME rule. The transitions' 2x2/2 average pooling pads nothing under any
setting (torchvision's AvgPool2d(2, 2)).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras

from official.models import heads, layers, registry


@dataclasses.dataclass(frozen=True)
class DenseNetConfig:
    """One row of the table (arXiv 1608.06993 Table 1).

    Attributes:
      growth_rate: k, the channels each layer of a dense block adds.
      repeats: layers in each of the four dense blocks.
      initial_features: channels of the 7x7 stem convolution (2k in the paper).
      bottleneck: the "B": a 1x1 convolution to BOTTLENECK_WIDTH·k channels before each 3x3.
      compression: the "C": θ, the fraction of channels a transition keeps (1.0: none).
    """

    growth_rate: int
    repeats: tuple[int, int, int, int]
    initial_features: int
    bottleneck: bool = True
    compression: float = 0.5


# Table 1 (DenseNet-BC, k = 32); DenseNet-161 (k = 48) from the authors' release/torchvision.
CONFIGS = {
    121: DenseNetConfig(32, (6, 12, 24, 16), 64),
    169: DenseNetConfig(32, (6, 12, 32, 32), 64),
    201: DenseNetConfig(32, (6, 12, 48, 32), 64),
    161: DenseNetConfig(48, (6, 12, 36, 24), 96),
}
# §3 "Bottleneck layers": "we let each 1x1 convolution produce 4k feature-maps".
BOTTLENECK_WIDTH = 4
# The Torch reference (fb.resnet.torch, which the authors' code builds on) and torchvision:
# BN momentum 0.1 in their convention (0.9 in Keras'), epsilon 1e-5. keras.applications uses
# 1.001e-5; the port shifts the moving variance by the difference.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def _scaled(channels: int, width_multiplier: float) -> int:
    return max(8, int(round(channels * width_multiplier)))


def densenet(
    *,
    depth: int,
    name: str = "densenet",
    num_classes: int = 1000,
    image_size: int | None = None,
    include_top: bool = True,
    pooling: str | None = "avg",
    dropout: float = 0.0,
    classifier_activation: str | None = None,
    features_only: bool = False,
    bottleneck: bool | None = None,
    compression: float | None = None,
    width_multiplier: float = 1.0,
    activation: str = "relu",
    normalization: str | None = "batch",
    kernel_initializer: str = "he_normal",
    padding: str | None = None,
    norm_epsilon: float | None = None,
    mean: Sequence[float] | None = registry.IMAGENET_MEAN,
    std: Sequence[float] | None = registry.IMAGENET_STD,
) -> keras.Model:
    """Builds a DenseNet.

    Args:
      depth: a key of CONFIGS (121, 169, 201, 161).
      name: model name.
      num_classes: classifier outputs.
      image_size: square input size (>= 32), or None for any size.
      include_top: add the classifier head.
      pooling: global pooling of the features ("avg", "max", or None without the top).
      dropout: dropout before the classifier (none in the paper's ImageNet models).
      classifier_activation: None for logits, "softmax" for probabilities.
      features_only: return the stem's activation, the outputs of dense blocks 1-3 (before
        their transitions) and the final activation: strides 2, 4, 8, 16, 32.
      bottleneck: override the table's "B" (None: the table's value, True for all rows).
      compression: override the table's θ (None: the table's 0.5; 1.0 disables "C").
      width_multiplier: scales the growth rate and the stem's channels (not in the paper).
      activation: activation switch, see layers.ACTIVATIONS.
      normalization: normalization switch, see layers.NORMALIZATIONS; None drops every
        normalization layer (the convolutions then carry biases).
      kernel_initializer: see layers.KERNEL_INITIALIZERS (torchvision: Kaiming normal).
      padding: None (keras.applications': symmetric, the stem pooling padded with zeros),
        "torch" (symmetric, −inf: torchvision) or "tf" (TensorFlow's SAME); see the module
        docstring.
      norm_epsilon: epsilon of every normalization layer (None: BN_EPSILON, 1e-5).
      mean: input mean on the 0..255 scale, or None for no input normalization.
      std: input standard deviation on the 0..255 scale.

    Returns:
      A keras.Model.
    """
    if depth not in CONFIGS:
        raise ValueError(f"unknown DenseNet depth {depth}; choose one of {sorted(CONFIGS)}")
    config = CONFIGS[depth]
    bottleneck = config.bottleneck if bottleneck is None else bottleneck
    compression = config.compression if compression is None else compression
    if not 0 < compression <= 1:
        raise ValueError(f"compression θ must be in (0, 1], got {compression}")
    growth_rate = _scaled(config.growth_rate, width_multiplier)
    rule = layers.padding_rule(padding, "symmetric")
    epsilon = layers.normalization_epsilon(norm_epsilon, BN_EPSILON)
    norm = layers.norm_kwargs(normalization, BN_MOMENTUM, epsilon, kernel_initializer)

    def norm_act(x, prefix: str):
        """The pre-activation of a convolution: BN → activation, `prefix_bn`, `prefix_relu`
        (keras' names; the final pair is plain `bn`, `relu`)."""
        separator = "_" if prefix else ""
        if normalization is not None:
            x = layers.normalization_layer(
                normalization,
                prefix + separator + "bn",
                channels=x.shape[-1],
                momentum=BN_MOMENTUM,
                epsilon=epsilon,
            )(x)
        return layers.activation_layer(activation, prefix + separator + "relu")(x)

    def conv(x, filters: int, kernel_size: int, name: str):
        return layers.conv2d(
            x,
            filters,
            kernel_size,
            use_bias=normalization is None,
            kernel_initializer=norm["kernel_initializer"],
            name=name,
        )

    inputs, x = layers.input_block(image_size, mean, std)
    x = layers.conv_norm_act(
        x,
        _scaled(config.initial_features, width_multiplier),
        7,
        strides=2,
        padding=rule,
        name="conv1",
        activation=activation,
        **norm,
    )
    features = [x]
    # keras.applications pads with zeros where PyTorch pads the pooling with -inf: the same
    # after a ReLU (zeros never win); with a signed activation the border can win.
    x = layers.pool2d(
        x, "max", 3, strides=2, padding=rule, pad_with_zeros=padding is None, name="pool1"
    )
    for block, repeats in enumerate(config.repeats):
        for index in range(repeats):
            prefix = f"conv{block + 2}_block{index + 1}"
            y = norm_act(x, prefix + "_0")
            if bottleneck:
                y = layers.conv_norm_act(
                    y,
                    BOTTLENECK_WIDTH * growth_rate,
                    1,
                    name=prefix + "_1",
                    activation=activation,
                    **norm,
                )
            y = conv(y, growth_rate, 3, f"{prefix}_{2 if bottleneck else 1}_conv")
            x = keras.layers.Concatenate(name=prefix + "_concat")([x, y])
        if block == len(config.repeats) - 1:
            break
        # A block's output is the last map at its stride (the transition halves it).
        features.append(x)
        # Transition layer (§3 "Pooling layers"): BN → ReLU → 1x1 conv → 2x2/2 average pool.
        prefix = f"pool{block + 2}"
        x = norm_act(x, prefix)
        x = conv(x, int(x.shape[-1] * compression), 1, prefix + "_conv")
        x = keras.layers.AveragePooling2D(2, strides=2, name=prefix + "_pool")(x)
    # The last block's output is normalized and activated before the pooling.
    x = norm_act(x, "")
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


for _depth in CONFIGS:
    registry.register(
        f"densenet{_depth}",
        densenet,
        family="densenet",
        default_resolution=224,
        min_resolution=32,
        mean=registry.IMAGENET_MEAN,
        std=registry.IMAGENET_STD,
        kwargs={"depth": _depth},
    )
