"""MobileNet v1 (arXiv 1704.04861), v2 (arXiv 1801.04381) and v3 (arXiv 1905.02244): one
table per version and one builder each, on the shared depthwise-separable helper
(`layers.depthwise_separable`, wrapped by `layers.inverted_residual` for v2/v3).

Where the papers are silent we follow the authors' reference code (TF-slim
`nets/mobilenet_v1.py` and `nets/mobilenet/{mobilenet,mobilenet_v2,mobilenet_v3}.py`), which
keras.applications ports: ReLU6 in v1 (the paper's text says ReLU; the released results use
ReLU6), inputs scaled to [-1, 1], BN epsilon 1e-3 with momentum 0.9997 (v1) / 0.997 (v2, v3),
TF SAME padding, classifier dropout 0.001 (v1, keep_prob 0.999) and 0.2 (v2, v3), and channel
counts rounded to multiples of 8 (`layers.make_divisible`). Kernels use fan-out He
initialization (torchvision's MobileNets; TF-slim's fixed N(0, 0.09²) does not adapt to the
layer size).

Padding (the `padding` switch of all three builders): the reference pads the stem and every
strided depthwise convolution by TensorFlow's SAME rule ("tf", TF-slim and keras.applications).
"torch" pads them symmetrically, as torchvision's MobileNetV2 and V3, whose BN epsilons are
1e-5 (V2, PyTorch's default) and 1e-3 (V3): build with norm_epsilon=1e-5 for torchvision's V2
weights, whose small moving variances cannot absorb the difference from our 1e-3.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras

from official.models import heads, layers, registry

# TF-slim MobileNets take inputs in [-1, 1]: (x - 127.5) / 127.5.
MEAN = (127.5, 127.5, 127.5)
STD = (127.5, 127.5, 127.5)
BN_EPSILON = 1e-3

# MobileNet v1 (arXiv 1704.04861 Table 1): (pointwise filters, stride) of the 13
# depthwise-separable blocks after the 3x3/2 stem of 32 filters.
V1_STEM_FILTERS = 32
V1_BLOCKS = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
V1_BN_MOMENTUM = 0.9997  # TF-slim mobilenet_v1_arg_scope batch_norm_decay.


@dataclasses.dataclass(frozen=True)
class V2Stage:
    """A row of arXiv 1801.04381 Table 2: expansion t, channels c, repeats n, stride s."""

    expansion: int
    filters: int
    repeats: int
    strides: int


V2_STEM_FILTERS = 32
V2_STAGES = (
    V2Stage(1, 16, 1, 1),
    V2Stage(6, 24, 2, 2),
    V2Stage(6, 32, 3, 2),
    V2Stage(6, 64, 4, 2),
    V2Stage(6, 96, 3, 1),
    V2Stage(6, 160, 3, 2),
    V2Stage(6, 320, 1, 1),
)
V2_HEAD_FILTERS = 1280
V2_V3_BN_MOMENTUM = 0.997  # TF-slim mobilenet.training_scope bn_decay.


@dataclasses.dataclass(frozen=True)
class V3Block:
    """A row of arXiv 1905.02244 Tables 1-2: kernel, expansion (exp size / input channels),
    output channels, squeeze-excitation, nonlinearity ("relu" = RE, "hard_swish" = HS), stride.
    """

    kernel_size: int
    expansion: float
    filters: int
    se: bool
    activation: str
    strides: int


# arXiv 1905.02244 Table 1 (MobileNetV3-Large), expansions as in TF-slim mobilenet_v3.py.
V3_LARGE = (
    V3Block(3, 1, 16, False, "relu", 1),
    V3Block(3, 4, 24, False, "relu", 2),
    V3Block(3, 3, 24, False, "relu", 1),
    V3Block(5, 3, 40, True, "relu", 2),
    V3Block(5, 3, 40, True, "relu", 1),
    V3Block(5, 3, 40, True, "relu", 1),
    V3Block(3, 6, 80, False, "hard_swish", 2),
    V3Block(3, 2.5, 80, False, "hard_swish", 1),
    V3Block(3, 2.3, 80, False, "hard_swish", 1),
    V3Block(3, 2.3, 80, False, "hard_swish", 1),
    V3Block(3, 6, 112, True, "hard_swish", 1),
    V3Block(3, 6, 112, True, "hard_swish", 1),
    V3Block(5, 6, 160, True, "hard_swish", 2),
    V3Block(5, 6, 160, True, "hard_swish", 1),
    V3Block(5, 6, 160, True, "hard_swish", 1),
)
# arXiv 1905.02244 Table 2 (MobileNetV3-Small).
V3_SMALL = (
    V3Block(3, 1, 16, True, "relu", 2),
    V3Block(3, 72 / 16, 24, False, "relu", 2),
    V3Block(3, 88 / 24, 24, False, "relu", 1),
    V3Block(5, 4, 40, True, "hard_swish", 2),
    V3Block(5, 6, 40, True, "hard_swish", 1),
    V3Block(5, 6, 40, True, "hard_swish", 1),
    V3Block(5, 3, 48, True, "hard_swish", 1),
    V3Block(5, 3, 48, True, "hard_swish", 1),
    V3Block(5, 6, 96, True, "hard_swish", 2),
    V3Block(5, 6, 96, True, "hard_swish", 1),
    V3Block(5, 6, 96, True, "hard_swish", 1),
)
V3_TABLES = {"large": V3_LARGE, "small": V3_SMALL}
# The 1x1 "NBN" convolution after pooling (1280 for Large, 1024 for Small).
V3_HEAD_FILTERS = {"large": 1280, "small": 1024}
V3_STEM_FILTERS = 16
V3_SE_RATIO = 0.25  # Of the expanded channels (§5.3).
V3_LAST_EXPANSION = 6  # The last 1x1 convolution has 6x the last block's channels.


def multiplied_resolution(resolution_multiplier: float) -> int:
    """The input size of MobileNetV1's resolution multiplier ρ: round(224·ρ) px (arXiv
    1704.04861 §3.3); also what `--config.model.resolution_multiplier` sets data.image_size to."""
    return int(round(224 * resolution_multiplier))


def _input_size(image_size: int | None, resolution_multiplier: float | None) -> int | None:
    if resolution_multiplier is None:
        return image_size
    resized = multiplied_resolution(resolution_multiplier)
    if image_size is not None and image_size != resized:
        raise ValueError(
            f"resolution_multiplier={resolution_multiplier} gives {resized} px but "
            f"image_size={image_size}; pass one of them"
        )
    return resized


def mobilenet_v1(
    *,
    name: str = "mobilenet_v1",
    num_classes: int = 1000,
    image_size: int | None = None,
    resolution_multiplier: float | None = None,
    include_top: bool = True,
    pooling: str | None = "avg",
    dropout: float = 0.001,
    classifier_activation: str | None = None,
    features_only: bool = False,
    width_multiplier: float = 1.0,
    activation: str = "relu6",
    normalization: str = "batch",
    kernel_initializer: str = "he_normal_fan_out",
    padding: str | None = None,
    norm_epsilon: float | None = None,
    mean: Sequence[float] | None = MEAN,
    std: Sequence[float] | None = STD,
) -> keras.Model:
    """Builds MobileNet v1.

    Args:
      name: model name.
      num_classes: classifier outputs.
      image_size: square input size, or None for any size (>= 32).
      resolution_multiplier: ρ of arXiv 1704.04861 §3.3: the input is 224·ρ px (0.571,
        0.714, 0.857, 1 give the paper's 128, 160, 192, 224); an alternative to image_size.
      include_top: add the classifier head.
      pooling: global pooling of the features ("avg", "max", or None without the top).
      dropout: dropout before the classifier.
      classifier_activation: None for logits, "softmax" for probabilities.
      features_only: return the outputs at strides 2, 4, 8, 16 and 32.
      width_multiplier: α of §3.3: every layer has int(α·channels) channels (at least 8).
      activation: activation switch, see layers.ACTIVATIONS.
      normalization: normalization switch, see layers.NORMALIZATIONS.
      kernel_initializer: see layers.KERNEL_INITIALIZERS.
      padding: None or "tf" (TensorFlow's SAME, the reference), or "torch" (symmetric).
      norm_epsilon: epsilon of every normalization layer (None: BN_EPSILON, 1e-3).
      mean: input mean on the 0..255 scale, or None for no input normalization.
      std: input standard deviation on the 0..255 scale.

    Returns:
      A keras.Model.
    """
    rule = layers.padding_rule(padding, "same")
    epsilon = layers.normalization_epsilon(norm_epsilon, BN_EPSILON)
    norm = layers.norm_kwargs(normalization, V1_BN_MOMENTUM, epsilon, kernel_initializer)

    def width(filters: int) -> int:
        # TF-slim mobilenet_v1 `depth`: max(int(d · α), min_depth=8).
        return max(8, int(filters * width_multiplier))

    inputs, x = layers.input_block(_input_size(image_size, resolution_multiplier), mean, std)
    x = layers.conv_norm_act(
        x,
        width(V1_STEM_FILTERS),
        3,
        strides=2,
        padding=rule,
        name="conv1",
        activation=activation,
        **norm,
    )
    features = []
    for index, (filters, strides) in enumerate(V1_BLOCKS, start=1):
        if strides > 1:
            features.append(x)
        x = layers.depthwise_separable(
            x,
            width(filters),
            3,
            strides=strides,
            name=f"conv_dw_{index}",
            pointwise_name=f"conv_pw_{index}",
            activation=activation,
            pointwise_activation=activation,
            padding=rule,
            **norm,
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
    )


def mobilenet_v2(
    *,
    name: str = "mobilenet_v2",
    num_classes: int = 1000,
    image_size: int | None = None,
    include_top: bool = True,
    pooling: str | None = "avg",
    dropout: float = 0.2,
    stochastic_depth_rate: float = 0.0,
    classifier_activation: str | None = None,
    features_only: bool = False,
    width_multiplier: float = 1.0,
    zero_gamma: bool = False,
    activation: str = "relu6",
    normalization: str = "batch",
    kernel_initializer: str = "he_normal_fan_out",
    padding: str | None = None,
    norm_epsilon: float | None = None,
    mean: Sequence[float] | None = MEAN,
    std: Sequence[float] | None = STD,
) -> keras.Model:
    """Builds MobileNetV2.

    Args:
      name: model name.
      num_classes: classifier outputs.
      image_size: square input size, or None for any size (>= 32).
      include_top: add the classifier head.
      pooling: global pooling of the features ("avg", "max", or None without the top).
      dropout: dropout before the classifier.
      stochastic_depth_rate: drop rate of the last residual branch (0: none, as the paper).
      classifier_activation: None for logits, "softmax" for probabilities.
      features_only: return the outputs at strides 2, 4, 8, 16 and 32.
      width_multiplier: α (§6.1): block channels make_divisible(int(c·α), 8); the last 1x1
        layer keeps 1280 channels for α < 1 (TF-slim, keras.applications).
      zero_gamma: zero-init the projection BN of blocks with an identity skip.
      activation: activation switch, see layers.ACTIVATIONS.
      normalization: normalization switch, see layers.NORMALIZATIONS.
      kernel_initializer: see layers.KERNEL_INITIALIZERS.
      padding: None or "tf" (TensorFlow's SAME, the reference), or "torch" (symmetric).
      norm_epsilon: epsilon of every normalization layer (None: BN_EPSILON, 1e-3).
      mean: input mean on the 0..255 scale, or None for no input normalization.
      std: input standard deviation on the 0..255 scale.

    Returns:
      A keras.Model.
    """
    rule = layers.padding_rule(padding, "same")
    epsilon = layers.normalization_epsilon(norm_epsilon, BN_EPSILON)
    norm = layers.norm_kwargs(normalization, V2_V3_BN_MOMENTUM, epsilon, kernel_initializer)
    inputs, x = layers.input_block(image_size, mean, std)
    x = layers.conv_norm_act(
        x,
        layers.make_divisible(V2_STEM_FILTERS * width_multiplier),
        3,
        strides=2,
        padding=rule,
        name="stem",
        activation=activation,
        **norm,
    )
    total_blocks = sum(stage.repeats for stage in V2_STAGES)
    features, index = [], 0
    for stage in V2_STAGES:
        if stage.strides > 1:
            features.append(x)
        filters = layers.make_divisible(int(stage.filters * width_multiplier))
        for j in range(stage.repeats):
            x = layers.inverted_residual(
                x,
                filters,
                expanded_filters=stage.expansion * x.shape[-1],
                kernel_size=3,
                strides=stage.strides if j == 0 else 1,
                name=f"block{index}",
                activation=activation,
                drop_rate=stochastic_depth_rate * index / total_blocks,
                zero_init=zero_gamma,
                padding=rule,
                **norm,
            )
            index += 1
    features.append(x)
    if not features_only:
        head_filters = V2_HEAD_FILTERS
        if width_multiplier > 1.0:
            head_filters = layers.make_divisible(V2_HEAD_FILTERS * width_multiplier)
        x = layers.conv_norm_act(x, head_filters, 1, name="top", activation=activation, **norm)
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


def mobilenet_v3(
    *,
    size: str = "large",
    name: str = "mobilenet_v3",
    num_classes: int = 1000,
    image_size: int | None = None,
    include_top: bool = True,
    pooling: str | None = "avg",
    dropout: float = 0.2,
    stochastic_depth_rate: float = 0.0,
    se_ratio: float = V3_SE_RATIO,
    classifier_activation: str | None = None,
    features_only: bool = False,
    width_multiplier: float = 1.0,
    zero_gamma: bool = False,
    activation: str | None = None,
    normalization: str = "batch",
    kernel_initializer: str = "he_normal_fan_out",
    padding: str | None = None,
    norm_epsilon: float | None = None,
    mean: Sequence[float] | None = MEAN,
    std: Sequence[float] | None = STD,
) -> keras.Model:
    """Builds MobileNetV3-Large or -Small.

    Args:
      size: "large" (Table 1) or "small" (Table 2).
      name: model name.
      num_classes: classifier outputs.
      image_size: square input size, or None for any size (>= 32).
      include_top: add the classifier head: pooling, a 1x1 layer without BN (1280/1024
        channels, here a Dense layer `head_dense`), dropout, the classifier (§5.2, Figure 5).
        Because of that hidden layer, the pooling layer is `head_pool`, not `avg_pool`: class
        activation maps need Grad-CAM for this model.
      pooling: global pooling of the features without the top ("avg", "max" or None).
      dropout: dropout before the classifier.
      stochastic_depth_rate: drop rate of the last residual branch (0: none, as the paper).
      se_ratio: squeeze-excitation width as a fraction of the expanded channels, in the blocks
        of the table that have SE (0.25, §5.3; 0: none).
      classifier_activation: None for logits, "softmax" for probabilities.
      features_only: return the outputs at strides 2, 4, 8, 16 and 32.
      width_multiplier: α (§6.1.2): block channels make_divisible(c·α, 8); the stem stays at 16
        channels and the head layer is only widened for α > 1 (TF-slim, keras.applications).
      zero_gamma: zero-init the projection BN of blocks with an identity skip.
      activation: None for the paper's mix of ReLU and h-swish; a name replaces every
        nonlinearity except the SE gate.
      normalization: normalization switch, see layers.NORMALIZATIONS.
      kernel_initializer: see layers.KERNEL_INITIALIZERS.
      padding: None or "tf" (TensorFlow's SAME, the reference), or "torch" (symmetric).
      norm_epsilon: epsilon of every normalization layer (None: BN_EPSILON, 1e-3).
      mean: input mean on the 0..255 scale, or None for no input normalization.
      std: input standard deviation on the 0..255 scale.

    Returns:
      A keras.Model.
    """
    layers.check_choice(size, tuple(V3_TABLES), "MobileNetV3 size")
    if not 0 <= se_ratio <= 1:
        raise ValueError(f"se_ratio must be in [0, 1], got {se_ratio}")
    rule = layers.padding_rule(padding, "same")
    epsilon = layers.normalization_epsilon(norm_epsilon, BN_EPSILON)
    norm = layers.norm_kwargs(normalization, V2_V3_BN_MOMENTUM, epsilon, kernel_initializer)
    hard_swish = activation or "hard_swish"
    inputs, x = layers.input_block(image_size, mean, std)
    x = layers.conv_norm_act(
        x,
        V3_STEM_FILTERS,
        3,
        strides=2,
        padding=rule,
        name="stem",
        activation=hard_swish,
        **norm,
    )
    table = V3_TABLES[size]
    features = []
    for index, block in enumerate(table):
        if block.strides > 1:
            features.append(x)
        expanded = layers.make_divisible(x.shape[-1] * block.expansion)
        block_activation = activation or block.activation
        x = layers.inverted_residual(
            x,
            layers.make_divisible(block.filters * width_multiplier),
            expanded_filters=expanded,
            kernel_size=block.kernel_size,
            strides=block.strides,
            name=f"block{index}",
            activation=block_activation,
            se_filters=layers.make_divisible(expanded * se_ratio) if block.se and se_ratio else 0,
            se_activation=activation or "relu",
            se_gate="hard_sigmoid",
            drop_rate=stochastic_depth_rate * index / len(table),
            zero_init=zero_gamma,
            padding=rule,
            **norm,
        )
    features.append(x)
    if not features_only:
        top_filters = layers.make_divisible(x.shape[-1] * V3_LAST_EXPANSION)
        x = layers.conv_norm_act(x, top_filters, 1, name="top", activation=hard_swish, **norm)
        if include_top:
            head_filters = V3_HEAD_FILTERS[size]
            if width_multiplier > 1.0:
                head_filters = layers.make_divisible(head_filters * width_multiplier)
            x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
            x = keras.layers.Dense(
                head_filters, kernel_initializer=norm["kernel_initializer"], name="head_dense"
            )(x)
            x = layers.activation_layer(hard_swish, "head_relu", spatial=False)(x)
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
    "mobilenet_v1", mobilenet_v1, family="mobilenet", default_resolution=224, mean=MEAN, std=STD
)
registry.register(
    "mobilenet_v2", mobilenet_v2, family="mobilenet", default_resolution=224, mean=MEAN, std=STD
)
for _size in V3_TABLES:
    registry.register(
        f"mobilenet_v3_{_size}",
        mobilenet_v3,
        family="mobilenet",
        default_resolution=224,
        mean=MEAN,
        std=STD,
        kwargs={"size": _size},
    )
