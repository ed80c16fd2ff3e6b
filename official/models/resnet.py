"""ResNet (He et al. arXiv 1512.03385) as one table and one builder.

Depths 18/34 use the basic block (two 3x3 convolutions), 50 and deeper the bottleneck block
(1x1 → 3x3 → 1x1 with 4x expansion); table from arXiv 1512.03385 Table 1 (ResNet-200 from
He et al. arXiv 1603.05027 §4.2). The default block puts the down-sampling stride in the first
1x1 convolution, as the paper and keras.applications do ("ResNet-A" in Bag of Tricks arXiv
1812.01187 Figure 2a). Convolutions carry no bias: the following BN has its own shift.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras

from official import registry
from official.models import heads, layers


@dataclasses.dataclass(frozen=True)
class ResNetDepth:
    """One row of the depth table: block type and number of blocks per stage (conv2..conv5)."""

    block: str
    repeats: tuple[int, int, int, int]


# arXiv 1512.03385 Table 1; ResNet-200 from arXiv 1603.05027 §4.2.
DEPTHS = {
    18: ResNetDepth("basic", (2, 2, 2, 2)),
    34: ResNetDepth("basic", (3, 4, 6, 3)),
    50: ResNetDepth("bottleneck", (3, 4, 6, 3)),
    101: ResNetDepth("bottleneck", (3, 4, 23, 3)),
    152: ResNetDepth("bottleneck", (3, 8, 36, 3)),
    200: ResNetDepth("bottleneck", (3, 24, 36, 3)),
}
STAGE_FILTERS = (64, 128, 256, 512)
BOTTLENECK_EXPANSION = 4
# BN momentum 0.9 and epsilon 1e-5, as TF Model Garden, tensorflow/tpu and torchvision.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def _scaled(filters: int, width_multiplier: float) -> int:
    return max(8, int(round(filters * width_multiplier)))


def _residual_block(
    x,
    *,
    block: str,
    filters: int,
    strides: int,
    name: str,
    conv_kwargs: dict,
    zero_gamma: bool,
):
    """One residual block, keras.applications naming (`_0_` shortcut, `_1_`.. branch)."""
    out_filters = filters * BOTTLENECK_EXPANSION if block == "bottleneck" else filters
    activation = conv_kwargs["activation"]
    linear = {**conv_kwargs, "activation": None}
    shortcut = x
    if strides != 1 or x.shape[-1] != out_filters:
        shortcut = layers.conv_norm_act(
            x, out_filters, 1, strides=strides, name=name + "_0", **linear
        )
    if block == "bottleneck":
        y = layers.conv_norm_act(x, filters, 1, strides=strides, name=name + "_1", **conv_kwargs)
        y = layers.conv_norm_act(y, filters, 3, name=name + "_2", **conv_kwargs)
        last = layers.conv_norm_act(
            y, out_filters, 1, zero_init=zero_gamma, name=name + "_3", **linear
        )
    else:
        y = layers.conv_norm_act(x, filters, 3, strides=strides, name=name + "_1", **conv_kwargs)
        last = layers.conv_norm_act(
            y, out_filters, 3, zero_init=zero_gamma, name=name + "_2", **linear
        )
    y = keras.layers.Add(name=name + "_add")([shortcut, last])
    return layers.activation_layer(activation, name + "_out")(y)


def resnet(
    *,
    depth: int,
    name: str = "resnet",
    num_classes: int = 1000,
    image_size: int | None = None,
    include_top: bool = True,
    pooling: str | None = "avg",
    dropout: float = 0.0,
    classifier_activation: str | None = None,
    features_only: bool = False,
    width_multiplier: float = 1.0,
    zero_gamma: bool = False,
    activation: str = "relu",
    normalization: str = "batch",
    kernel_initializer: str = "he_normal",
    mean: Sequence[float] | None = registry.IMAGENET_MEAN,
    std: Sequence[float] | None = registry.IMAGENET_STD,
) -> keras.Model:
    """Builds a ResNet.

    Args:
      depth: a key of DEPTHS (18, 34, 50, 101, 152, 200).
      name: model name.
      num_classes: classifier outputs.
      image_size: square input size, or None for any size.
      include_top: add the classifier head.
      pooling: global pooling of the features ("avg", "max", or None without the top).
      dropout: dropout before the classifier.
      classifier_activation: None for logits, "softmax" for probabilities.
      features_only: return the outputs of the stem and of the four stages (strides 2..32)
        instead of the head, for transfer learning and dense prediction.
      width_multiplier: scales every stage's filters (and the stem).
      zero_gamma: zero-initialise the last BN of each residual branch (Bag of Tricks §3.1).
      activation: activation switch, see layers.ACTIVATIONS.
      normalization: normalization switch, see layers.NORMALIZATIONS.
      kernel_initializer: "he_normal"/"kaiming_normal", "glorot_uniform"/"xavier_uniform", ...
      mean: input mean on the 0..255 scale, or None for no input normalization.
      std: input standard deviation on the 0..255 scale.

    Returns:
      A keras.Model.
    """
    if depth not in DEPTHS:
        raise ValueError(f"unknown ResNet depth {depth}; choose one of {sorted(DEPTHS)}")
    table = DEPTHS[depth]
    conv_kwargs = dict(
        activation=activation,
        normalization=normalization,
        norm_momentum=BN_MOMENTUM,
        norm_epsilon=BN_EPSILON,
        kernel_initializer=layers.kernel_initializer(kernel_initializer),
    )
    inputs, x = layers.input_block(image_size, mean, std)
    # Stem: 7x7/2 convolution and 3x3/2 max pooling (arXiv 1512.03385 Table 1, conv1).
    x = layers.conv_norm_act(
        x, _scaled(64, width_multiplier), 7, strides=2, name="conv1", **conv_kwargs
    )
    features = [x]
    x = keras.layers.ZeroPadding2D(padding=1, name="pool1_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, (filters, repeats) in enumerate(zip(STAGE_FILTERS, table.repeats)):
        for index in range(repeats):
            x = _residual_block(
                x,
                block=table.block,
                filters=_scaled(filters, width_multiplier),
                strides=2 if index == 0 and stage > 0 else 1,
                name=f"conv{stage + 2}_block{index + 1}",
                conv_kwargs=conv_kwargs,
                zero_gamma=zero_gamma,
            )
        features.append(x)
    if features_only:
        return keras.Model(inputs, features, name=name)
    outputs = heads.classifier_head(
        x,
        num_classes=num_classes,
        include_top=include_top,
        pooling=pooling,
        dropout=dropout,
        classifier_activation=classifier_activation,
    )
    return keras.Model(inputs, outputs, name=name)


for _depth in DEPTHS:
    registry.register(
        f"resnet{_depth}",
        resnet,
        family="resnet",
        default_resolution=224,
        kwargs={"depth": _depth},
    )
