"""Xception (Chollet, arXiv 1610.02357): Inception modules taken to the extreme, i.e. replaced
by depthwise-separable convolutions, as one table (the entry, middle and exit flows of the
paper's Figure 5) and one builder.

§3 and Figure 5: 36 convolutional layers in 14 modules, all but the first and the last with
linear residual connections. Every separable convolution is 3x3 with depth multiplier 1 and
no non-linearity between its depthwise and pointwise steps (§4.7: that trains faster and
better), and every convolution is followed by batch normalization. The entry flow's modules
end in 3x3/2 max pooling with a strided 1x1 convolution on the shortcut; the middle flow
repeats its identity-shortcut module eight times; the exit flow ends in two separable
convolutions with post-activation, global average pooling and the classifier (§4.3:
dropout 0.5 before it for ImageNet, no auxiliary tower). 22,855,952 parameters (Table 3).

Where the paper is silent the builder follows keras.applications' xception.py, Chollet's own
reference implementation whose ImageNet weights port into this model layer by layer: the two
stem convolutions are unpadded, the shortcut of each downsampling module takes the module's
input before its first ReLU (the first module has no leading ReLU: the stem ends in one),
batch normalization has epsilon 1e-3 and momentum 0.99, inputs are scaled to [-1, 1].

Padding (the `padding` switch): the reference pads the entry and exit flows' 3x3/2 max
poolings by TensorFlow's SAME rule ("tf"); the strided 1x1 shortcut convolutions need no
padding and the stem stays unpadded under every setting. "torch" pads the poolings with one −inf
pixel on each side, as Cadene's PyTorch port (timm's `legacy_xception`: MaxPool2d(3, 2, 1)),
whose BN epsilon is PyTorch's 1e-5 (norm_epsilon=1e-5 for its weights).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras

from official.models import heads, layers, registry


@dataclasses.dataclass(frozen=True)
class XceptionModule:
    """One row of Figure 5: a residual module of 3x3 separable convolutions, each preceded by
    the activation and followed by normalization.

    Attributes:
      flow: "entry", "middle" or "exit" (the paper's three parts).
      filters: output channels of the module's separable convolutions, in order.
      downsample: end in 3x3/2 max pooling, with a strided 1x1 convolution (and BN) on the
        shortcut; otherwise the shortcut is the identity.
      repeats: consecutive copies of the module (the middle flow's 8).
    """

    flow: str
    filters: tuple[int, ...]
    downsample: bool
    repeats: int = 1


# Figure 5. The stem (two 3x3 convolutions, the first with stride 2) is module 1 and the exit
# flow's last two separable convolutions module 14, as keras.applications numbers them.
STEM_FILTERS = (32, 64)
MODULES = (
    XceptionModule("entry", (128, 128), downsample=True),
    XceptionModule("entry", (256, 256), downsample=True),
    XceptionModule("entry", (728, 728), downsample=True),
    XceptionModule("middle", (728, 728, 728), downsample=False, repeats=8),
    XceptionModule("exit", (728, 1024), downsample=True),
)
# Exit flow after the last residual module: separable convolution → BN → activation.
HEAD_FILTERS = (1536, 2048)
# keras.applications' BatchNormalization defaults (the paper gives no constants).
BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3
# [-1, 1] inputs (keras.applications.xception.preprocess_input, mode "tf").
MEAN = (127.5, 127.5, 127.5)
STD = (127.5, 127.5, 127.5)


def xception(
    *,
    name: str = "xception",
    num_classes: int = 1000,
    image_size: int | None = None,
    include_top: bool = True,
    pooling: str | None = "avg",
    dropout: float = 0.5,
    classifier_activation: str | None = None,
    features_only: bool = False,
    width_multiplier: float = 1.0,
    activation: str = "relu",
    normalization: str | None = "batch",
    kernel_initializer: str = "glorot_uniform",
    padding: str | None = None,
    norm_epsilon: float | None = None,
    mean: Sequence[float] | None = MEAN,
    std: Sequence[float] | None = STD,
) -> keras.Model:
    """Builds Xception.

    Args:
      name: model name.
      num_classes: classifier outputs.
      image_size: square input size (>= 7: the unpadded stem needs a 3x3 map for its second
        convolution), or None for any size.
      include_top: add the classifier head.
      pooling: global pooling of the features ("avg", "max", or None without the top).
      dropout: dropout before the classifier (0.5 for ImageNet, §4.3; keras.applications has
        none, which changes nothing at inference).
      classifier_activation: None for logits, "softmax" for probabilities.
      features_only: return the last map at strides 2, 4, 8, 16 and 32 (the stem, the
        outputs of modules 2, 3 and 12, and the exit flow's last activation).
      width_multiplier: scales every layer's channels (not in the paper; for small runs).
      activation: activation switch, see layers.ACTIVATIONS (ReLU in the paper).
      normalization: normalization switch, see layers.NORMALIZATIONS, or None (convolutions
        with biases instead).
      kernel_initializer: see layers.KERNEL_INITIALIZERS; the paper does not say, keras'
        default is Glorot uniform.
      padding: None or "tf" (TensorFlow's SAME, the reference), or "torch" (symmetric, −inf);
        see the module docstring.
      norm_epsilon: epsilon of every normalization layer (None: BN_EPSILON, 1e-3).
      mean: input mean on the 0..255 scale, or None for no input normalization.
      std: input standard deviation on the 0..255 scale.

    Returns:
      A keras.Model.
    """
    rule = layers.padding_rule(padding, "same")
    epsilon = layers.normalization_epsilon(norm_epsilon, BN_EPSILON)
    norm = layers.norm_kwargs(normalization, BN_MOMENTUM, epsilon, kernel_initializer)

    def width(filters: int) -> int:
        return max(8, int(round(filters * width_multiplier)))

    def separable(x, filters: int, name: str):
        x = layers.separable_conv2d(
            x,
            width(filters),
            3,
            use_bias=normalization is None,
            kernel_initializer=norm["kernel_initializer"],
            name=name,
        )
        if normalization is None:
            return x
        return layers.normalization_layer(
            normalization,
            name + "_bn",
            channels=x.shape[-1],
            momentum=BN_MOMENTUM,
            epsilon=epsilon,
        )(x)

    inputs, x = layers.input_block(image_size, mean, std)
    for index, filters in enumerate(STEM_FILTERS, 1):
        x = layers.conv_norm_act(
            x,
            width(filters),
            3,
            strides=2 if index == 1 else 1,
            padding="valid",
            name=f"block1_{index}",
            activation=activation,
            **norm,
        )
    features = []
    number = 1
    for module in MODULES:
        for _ in range(module.repeats):
            number += 1
            prefix = f"block{number}"
            shortcut = x
            if module.downsample:
                features.append(x)  # the last map at this stride
                shortcut = layers.conv_norm_act(
                    x,
                    width(module.filters[-1]),
                    1,
                    strides=2,
                    padding="same",
                    name=prefix + "_shortcut",
                    activation=None,
                    **norm,
                )
            for index, filters in enumerate(module.filters, 1):
                if number > 2 or index > 1:  # the stem already ends with an activation
                    x = layers.activation_layer(activation, f"{prefix}_sepconv{index}_act")(x)
                x = separable(x, filters, f"{prefix}_sepconv{index}")
            if module.downsample:
                x = layers.pool2d(x, "max", 3, strides=2, padding=rule, name=prefix + "_pool")
            x = keras.layers.Add(name=prefix + "_add")([x, shortcut])
    number += 1
    for index, filters in enumerate(HEAD_FILTERS, 1):
        x = separable(x, filters, f"block{number}_sepconv{index}")
        x = layers.activation_layer(activation, f"block{number}_sepconv{index}_act")(x)
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


registry.register(
    "xception",
    xception,
    family="xception",
    default_resolution=299,
    min_resolution=7,
    mean=MEAN,
    std=STD,
)
