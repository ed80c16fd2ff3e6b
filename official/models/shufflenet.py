"""ShuffleNet v1 (Zhang et al. arXiv 1707.01083) and v2 (Ma et al. arXiv 1807.11164): one table
per version and one builder each, sharing the channel shuffle layer, the stem and the
1x1 → 3x3 depthwise → 1x1 branch of their units.

Channel shuffle (v1 §3.1, Figure 1c): a convolution with g groups whose output has g·n channels
is followed by reshaping the channels to (g, n), transposing to (n, g) and flattening, so the
next grouped convolution sees one channel of every group (`ChannelShuffle`).

v1 (§3.2-3.3, Table 1): a 3x3/2 stem of 24 channels, 3x3/2 max pooling, then three stages of
4/8/4 units. A unit is a 1x1 group convolution to the bottleneck (a quarter of the output
channels), BN, ReLU, channel shuffle, a 3x3 depthwise convolution (stride 2 in a stage's first
unit) with BN and no ReLU ("as suggested by" Xception), and a 1x1 group convolution back to the
output with BN; identity units add the input, stride-2 units concatenate a 3x3/2 average-pooled
shortcut, so their branch only produces (output − input) channels; ReLU follows. The first
1x1 convolution of stage 2 is not grouped (its input has only 24 channels). Where the paper is
silent we follow megvii's official PyTorch code (megvii-model/ShuffleNet-Series
ShuffleNetV1/network.py and blocks.py @d8e4db13), which reproduces the published accuracies:
convolutions without bias, BN after each, PyTorch's zero-padded (count_include_pad) average
pooling, and a classifier without bias. The megvii code applies the ReLU of a stride-2 unit to
the branch only; the shortcut averages a ReLU output, so for ReLU it is the same function as the
paper's ReLU after the concatenation (Figure 2c), which is what we build (other activations
act on both halves).

v2 (§3, Figure 3c-d, Table 5): a channel split sends half the channels through unchanged and
the other half through 1x1 → BN → ReLU → 3x3 depthwise → BN → 1x1 → BN → ReLU (no group
convolutions, guideline G2); the halves are concatenated and shuffled with 2 groups. Stride-2
units feed the whole input to both branches, the left one a 3x3/2 depthwise convolution
and a 1x1 convolution, which doubles the channels. A 1x1 convolution (1024 or 2048 channels)
precedes global pooling. We follow torchvision's shufflenetv2.py, whose parameter counts
(1,366,792 / 2,278,604 / 3,503,624 / 7,393,996) we match: its classifier has a bias and no
dropout. (megvii's ShuffleNetV2 code has no classifier bias, dropout 0.2 at 2.0x, and keeps
the concatenation unshuffled, splitting the next unit's input into even and odd channels
instead: another bookkeeping of the same idea, each unit passing on half of the previous
identity and half of the previous branch channels, which matters only when converting its
checkpoints.)

Both versions take BN momentum 0.9 / epsilon 1e-5 (PyTorch's defaults) and the 3x3/2 max
pooling with PyTorch's one-pixel padding (zero padding equals PyTorch's -inf padding because
the input is a ReLU output).

Padding (the `padding` switch): the references are PyTorch code, symmetric padding of the
stem convolution, the stem max pooling, the strided depthwise convolutions and v1's 3x3/2
average-pooled shortcut (zeros counted, count_include_pad=True): "torch". None pads the max
pooling with zeros, the same as "torch"'s −inf after the default ReLU. "tf" pads all of them by
TensorFlow's SAME rule (the shortcut's average then leaves the padded cells out).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from official.models import heads, layers, registry

# Units per stage (stages 2, 3, 4), v1 Table 1 and v2 Table 5.
STAGE_REPEATS = (4, 8, 4)
# v1 Table 1: output channels of stages 2, 3 and 4 of "ShuffleNet 1x" for each number of groups
# g (about 140 MFLOPs each); "ShuffleNet s×" scales them by s (§3.3).
V1_STAGE_CHANNELS = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}
# Stem channels per width s as in megvii's network.py (the paper's Table 1 gives 24 at 1x and
# says nothing for other widths): 24·s except at 1.5x, which keeps 24. Rounded to a multiple of
# g (g=8 at 0.5x: 16), so that the first unit's branch, (output − stem) channels, divides by g.
V1_STEM_CHANNELS = {0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48}
V1_WIDTHS = tuple(V1_STEM_CHANNELS)
# The bottleneck of every v1 unit has a quarter of its output channels (§3.3).
V1_BOTTLENECK_RATIO = 4
SHUFFLE_ORDERS = ("paper", "megvii")
# v2 Table 5 (torchvision's `stages_out_channels`): stem, stages 2-4, final 1x1 convolution.
V2_CHANNELS = {
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
    2.0: (24, 244, 488, 976, 2048),
}
# PyTorch's BatchNorm2d defaults (momentum 0.1 of the new value = Keras' 0.9), megvii and
# torchvision alike.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


@keras.saving.register_keras_serializable(package="official")
class ChannelShuffle(keras.layers.Layer):
    """Channel shuffle (arXiv 1707.01083 §3.1): view the C channels as (groups, C / groups),
    transpose, flatten, so output channel j·groups + i is input channel i·(C / groups) + j
    (torchvision's `channel_shuffle`).

    `inverse=True` applies the inverse permutation: view as (C / groups, groups), transpose,
    flatten; megvii's ShuffleNetV1 code (blocks.py `channel_shuffle`) shuffles this way. Either
    works when training from scratch (the grouped convolutions around it learn any channel
    order); converting megvii's v1 checkpoints needs theirs. The two coincide when
    C = groups².
    """

    def __init__(self, groups: int, inverse: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.groups = groups
        self.inverse = inverse

    def call(self, inputs):
        channels = inputs.shape[-1]
        if channels % self.groups:
            raise ValueError(f"{channels} channels do not split into {self.groups} groups")
        per_group = channels // self.groups
        grid = (per_group, self.groups) if self.inverse else (self.groups, per_group)
        shape = keras.ops.shape(inputs)
        x = keras.ops.reshape(inputs, (-1, *grid))
        x = keras.ops.transpose(x, (0, 2, 1))
        return keras.ops.reshape(x, shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "inverse": self.inverse}


@keras.saving.register_keras_serializable(package="official")
class ChannelSplit(keras.layers.Layer):
    """Splits the channels into their first and second halves (ShuffleNet v2 §3, Figure 3c;
    torchvision's `x.chunk(2, dim=1)`)."""

    def call(self, inputs):
        return keras.ops.split(inputs, 2, axis=-1)

    def compute_output_shape(self, input_shape):
        half = (*input_shape[:-1], input_shape[-1] // 2)
        return [half, half]


def v1_channels(
    groups: int, width: float, width_multiplier: float = 1.0
) -> tuple[int, tuple[tuple[int, int], ...]]:
    """Stem channels and (output, bottleneck) channels of stages 2-4 of a ShuffleNet v1.

    Every count is its exact value rounded to the nearest multiple of g (`make_divisible`,
    ties up): the grouped 1x1 convolutions need the bottleneck and every branch output to
    divide by g. This reproduces megvii's tables for g=3 and g=8 at every width, and changes
    only the bottlenecks of g=2 and g=4 at 0.5x and 1.5x, whose quarter of the output does not
    divide by g (g=2 0.5x: 100/4 = 25 → 26; g=4 0.5x: 136/4 = 34 → 36).

    Args:
      groups: g, a key of V1_STAGE_CHANNELS.
      width: s, a key of V1_STEM_CHANNELS (the table row).
      width_multiplier: a further factor on every layer (see `shufflenet_v1`).

    Returns:
      (stem channels, ((stage-2 output, bottleneck), (stage 3 ...), (stage 4 ...))).
    """
    layers.check_choice(str(groups), tuple(map(str, V1_STAGE_CHANNELS)), "ShuffleNet v1 groups")
    layers.check_choice(str(float(width)), tuple(map(str, V1_WIDTHS)), "ShuffleNet v1 width")

    def rounded(value: float) -> int:
        return layers.make_divisible(value, groups)

    stem = rounded(V1_STEM_CHANNELS[width] * width_multiplier)
    stages = []
    for channels in V1_STAGE_CHANNELS[groups]:
        out = rounded(channels * width * width_multiplier)
        stages.append((out, rounded(out / V1_BOTTLENECK_RATIO)))
    return stem, tuple(stages)


def v2_channels(width: float, width_multiplier: float = 1.0) -> tuple[int, ...]:
    """Stem, stage 2-4 and final convolution channels of a ShuffleNet v2: the row of
    V2_CHANNELS, times `width_multiplier`, rounded to even numbers (each stage splits its
    channels in two)."""
    layers.check_choice(str(float(width)), tuple(map(str, V2_CHANNELS)), "ShuffleNet v2 width")
    return tuple(layers.make_divisible(c * width_multiplier, 2) for c in V2_CHANNELS[width])


def _depthwise_norm(x, *, strides: int, name: str, norm: dict, padding: str):
    """3x3 depthwise convolution → normalization, no activation (v1 §3.2 after Xception; v2
    Figure 3). PyTorch's one-pixel padding when strided ("symmetric"), so any input size
    works."""
    x, keras_padding = layers.window_padding(x, 3, strides, 1, padding, name)
    x = keras.layers.DepthwiseConv2D(
        3,
        strides=strides,
        padding=keras_padding,
        use_bias=norm["normalization"] is None,
        depthwise_initializer=norm["kernel_initializer"],
        name=name + "_conv",
    )(x)
    if norm["normalization"] is None:
        return x
    return layers.normalization_layer(
        norm["normalization"],
        name + "_bn",
        channels=x.shape[-1],
        momentum=norm["norm_momentum"],
        epsilon=norm["norm_epsilon"],
    )(x)


def _bottleneck_branch(
    x,
    *,
    bottleneck: int,
    filters: int,
    strides: int,
    name: str,
    activation: str,
    norm: dict,
    expand_groups: int = 1,
    groups: int = 1,
    shuffle_inverse: bool = False,
    output_activation: bool = False,
    padding: str = "symmetric",
):
    """The residual branch of both versions: 1x1 (group) convolution → norm → act → [channel
    shuffle] → 3x3 depthwise (stride) → norm → 1x1 (group) convolution → norm → [act].

    Args:
      bottleneck: channels of the depthwise convolution.
      filters: output channels.
      expand_groups: groups of the first 1x1 convolution (v1: g, or 1 at the start of stage 2).
      groups: groups of the second 1x1 convolution, and of the channel shuffle when > 1 (v1).
      shuffle_inverse: see `ChannelShuffle`.
      output_activation: end with an activation (v2; v1 activates after adding the shortcut).
      padding: padding rule of the strided depthwise convolution, see `layers.conv2d`.
    """
    x = layers.conv_norm_act(
        x, bottleneck, 1, groups=expand_groups, name=name + "_expand", activation=activation, **norm
    )
    if groups > 1:
        x = ChannelShuffle(groups, inverse=shuffle_inverse, name=name + "_shuffle")(x)
    x = _depthwise_norm(x, strides=strides, name=name + "_dw", norm=norm, padding=padding)
    return layers.conv_norm_act(
        x,
        filters,
        1,
        groups=groups,
        name=name + "_project",
        activation=activation if output_activation else None,
        **norm,
    )


def _stem(x, filters: int, *, activation: str, norm: dict, padding: str | None):
    """3x3/2 convolution → norm → act, then 3x3/2 max pooling; returns both outputs (strides 2
    and 4). `padding` is the builder's switch (None: the pooling padded with zeros)."""
    rule = layers.padding_rule(padding, "symmetric")
    x = layers.conv_norm_act(
        x, filters, 3, strides=2, padding=rule, name="conv1", activation=activation, **norm
    )
    pooled = layers.pool2d(
        x, "max", 3, strides=2, padding=rule, pad_with_zeros=padding is None, name="pool1"
    )
    return x, pooled


def _v1_unit(
    x, filters, bottleneck, *, strides, groups, first, name, activation, norm, inverse, padding
):
    """A ShuffleNet v1 unit (Figure 2b, or 2c when strided)."""
    branch = _bottleneck_branch(
        x,
        bottleneck=bottleneck,
        filters=filters - x.shape[-1] if strides > 1 else filters,
        strides=strides,
        name=name,
        activation=activation,
        norm=norm,
        expand_groups=1 if first else groups,
        groups=groups,
        shuffle_inverse=inverse,
        padding=padding,
    )
    if strides == 1:
        x = keras.layers.Add(name=name + "_add")([x, branch])
    else:
        # PyTorch's AvgPool2d(3, 2, padding=1) averages the zero padding too (count_include_pad).
        shortcut = layers.pool2d(
            x,
            "avg",
            3,
            strides=2,
            padding=padding,
            name=name + "_shortcut_pool",
            pad_name=name + "_shortcut_pad",
        )
        x = keras.layers.Concatenate(name=name + "_concat")([shortcut, branch])
    return layers.activation_layer(activation, name + "_out")(x)


def _v2_unit(x, filters, *, strides, name, activation, norm, padding):
    """A ShuffleNet v2 unit (Figure 3c, or 3d when strided); torchvision's branch1/branch2."""
    half = filters // 2
    if strides == 1:
        left, right = ChannelSplit(name=name + "_split")(x)
    else:
        left = _depthwise_norm(
            x, strides=strides, name=name + "_branch1_dw", norm=norm, padding=padding
        )
        left = layers.conv_norm_act(
            left, half, 1, name=name + "_branch1_project", activation=activation, **norm
        )
        right = x
    right = _bottleneck_branch(
        right,
        bottleneck=half,
        filters=half,
        strides=strides,
        name=name + "_branch2",
        activation=activation,
        norm=norm,
        output_activation=True,
        padding=padding,
    )
    x = keras.layers.Concatenate(name=name + "_concat")([left, right])
    return ChannelShuffle(2, name=name + "_shuffle")(x)


def shufflenet_v1(
    *,
    groups: int = 3,
    width: float = 1.0,
    shuffle_order: str = "paper",
    name: str = "shufflenet_v1",
    num_classes: int = 1000,
    image_size: int | None = None,
    include_top: bool = True,
    pooling: str | None = "avg",
    dropout: float = 0.0,
    classifier_activation: str | None = None,
    features_only: bool = False,
    width_multiplier: float = 1.0,
    activation: str = "relu",
    normalization: str | None = "batch",
    kernel_initializer: str = "he_normal",
    padding: str | None = None,
    norm_epsilon: float | None = None,
    mean: Sequence[float] | None = registry.IMAGENET_MEAN,
    std: Sequence[float] | None = registry.IMAGENET_STD,
) -> keras.Model:
    """Builds ShuffleNet v1 "s×, g" (arXiv 1707.01083 Table 1-2).

    Args:
      groups: g, groups of the 1x1 convolutions: 1, 2, 3, 4 or 8.
      width: s, the paper's scale factor (0.5, 1.0, 1.5, 2.0): the table row, see
        `v1_channels`.
      shuffle_order: "paper" (torchvision's order) or "megvii" (the inverse permutation of
        megvii's code, for its checkpoints), see `ChannelShuffle`.
      name: model name.
      num_classes: classifier outputs.
      image_size: square input size, or None for any size (>= 32).
      include_top: add the classifier head (global average pooling, a dense layer without
        bias as megvii's).
      pooling: global pooling of the features ("avg", "max", or None without the top).
      dropout: dropout before the classifier (none in the paper).
      classifier_activation: None for logits, "softmax" for probabilities.
      features_only: return the stem, max pooling and stage 2-4 outputs (strides 2-32).
      width_multiplier: a factor on every layer on top of `width` (not in the paper; the
        zoo's small test models): the channels are those of width · width_multiplier for the
        stages and the stem's row times width_multiplier, rounded by `v1_channels`'s rule.
      activation: activation switch, see layers.ACTIVATIONS (ReLU in the paper).
      normalization: normalization switch, see layers.NORMALIZATIONS, or None (biases).
      kernel_initializer: see layers.KERNEL_INITIALIZERS (megvii draws N(0, 1/fan-in
        channels), which none of the switches names; He normal is the ReLU default).
      padding: None (the reference, symmetric; the stem pooling padded with zeros), "torch"
        (symmetric, −inf) or "tf" (TensorFlow's SAME); see the module docstring.
      norm_epsilon: epsilon of every normalization layer (None: BN_EPSILON, 1e-5).
      mean: input mean on the 0..255 scale, or None for no input normalization (megvii's
        checkpoints take unnormalized BGR 0..255).
      std: input standard deviation on the 0..255 scale.

    Returns:
      A keras.Model.
    """
    layers.check_choice(shuffle_order, SHUFFLE_ORDERS, "channel shuffle order")
    stem_filters, stages = v1_channels(groups, width, width_multiplier)
    rule = layers.padding_rule(padding, "symmetric")
    epsilon = layers.normalization_epsilon(norm_epsilon, BN_EPSILON)
    norm = layers.norm_kwargs(normalization, BN_MOMENTUM, epsilon, kernel_initializer)
    inputs, x = layers.input_block(image_size, mean, std)
    stem, x = _stem(x, stem_filters, activation=activation, norm=norm, padding=padding)
    features = [stem, x]
    for stage, ((filters, bottleneck), repeats) in enumerate(zip(stages, STAGE_REPEATS)):
        for index in range(repeats):
            x = _v1_unit(
                x,
                filters,
                bottleneck,
                strides=2 if index == 0 else 1,
                groups=groups,
                # Table 1 note: stage 2 starts with an ungrouped 1x1 (only 24 input channels).
                first=stage == 0 and index == 0,
                name=f"stage{stage + 2}_unit{index + 1}",
                activation=activation,
                norm=norm,
                inverse=shuffle_order == "megvii",
                padding=rule,
            )
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
        classifier_bias=False,
    )


def shufflenet_v2(
    *,
    width: float = 1.0,
    name: str = "shufflenet_v2",
    num_classes: int = 1000,
    image_size: int | None = None,
    include_top: bool = True,
    pooling: str | None = "avg",
    dropout: float = 0.0,
    classifier_activation: str | None = None,
    features_only: bool = False,
    width_multiplier: float = 1.0,
    activation: str = "relu",
    normalization: str | None = "batch",
    kernel_initializer: str = "he_normal",
    padding: str | None = None,
    norm_epsilon: float | None = None,
    mean: Sequence[float] | None = registry.IMAGENET_MEAN,
    std: Sequence[float] | None = registry.IMAGENET_STD,
) -> keras.Model:
    """Builds ShuffleNet v2 "s×" (arXiv 1807.11164 Table 5), as torchvision.

    Args:
      width: 0.5, 1.0, 1.5 or 2.0, the row of V2_CHANNELS (the paper's widths are not a
        single multiple: 48/116/176/244 channels in stage 2).
      name: model name.
      num_classes: classifier outputs.
      image_size: square input size, or None for any size (>= 32).
      include_top: add the classifier head.
      pooling: global pooling of the final 1x1 convolution ("avg", "max", or None without
        the top).
      dropout: dropout before the classifier (none in torchvision; megvii's 2.0x uses 0.2).
      classifier_activation: None for logits, "softmax" for probabilities.
      features_only: return the stem, max pooling and stage 2-4 outputs (strides 2-32); the
        final 1x1 convolution belongs to the head.
      width_multiplier: a factor on every layer of the `width` row, stem and final
        convolution included (not in the paper; the zoo's small test models); see
        `v2_channels`.
      activation: activation switch, see layers.ACTIVATIONS (ReLU in the paper).
      normalization: normalization switch, see layers.NORMALIZATIONS, or None (biases).
      kernel_initializer: see layers.KERNEL_INITIALIZERS.
      padding: None (the reference, symmetric; the stem pooling padded with zeros), "torch"
        (symmetric, −inf) or "tf" (TensorFlow's SAME); see the module docstring.
      norm_epsilon: epsilon of every normalization layer (None: BN_EPSILON, 1e-5).
      mean: input mean on the 0..255 scale, or None for no input normalization.
      std: input standard deviation on the 0..255 scale.

    Returns:
      A keras.Model.
    """
    stem_filters, *stage_filters, last_filters = v2_channels(width, width_multiplier)
    rule = layers.padding_rule(padding, "symmetric")
    epsilon = layers.normalization_epsilon(norm_epsilon, BN_EPSILON)
    norm = layers.norm_kwargs(normalization, BN_MOMENTUM, epsilon, kernel_initializer)
    inputs, x = layers.input_block(image_size, mean, std)
    stem, x = _stem(x, stem_filters, activation=activation, norm=norm, padding=padding)
    features = [stem, x]
    for stage, (filters, repeats) in enumerate(zip(stage_filters, STAGE_REPEATS)):
        for index in range(repeats):
            x = _v2_unit(
                x,
                filters,
                strides=2 if index == 0 else 1,
                name=f"stage{stage + 2}_unit{index + 1}",
                activation=activation,
                norm=norm,
                padding=rule,
            )
        features.append(x)
    if not features_only:
        x = layers.conv_norm_act(x, last_filters, 1, name="conv5", activation=activation, **norm)
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


for _groups in V1_STAGE_CHANNELS:
    for _width in V1_WIDTHS:
        registry.register(
            f"shufflenet_v1_g{_groups}_{_width:.1f}",
            shufflenet_v1,
            family="shufflenet",
            default_resolution=224,
            kwargs={"groups": _groups, "width": _width},
        )
for _width in V2_CHANNELS:
    registry.register(
        f"shufflenet_v2_{_width:.1f}",
        shufflenet_v2,
        family="shufflenet",
        default_resolution=224,
        kwargs={"width": _width},
    )
