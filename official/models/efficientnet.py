"""EfficientNet (Tan & Le arXiv 1905.11946) and EfficientNet-Lite: one block table, one
scaling table, one builder.

The base network B0 is the block table (arXiv 1905.11946 Table 1); a variant scales its width
(channels, `round_filters`), depth (blocks per stage, `round_repeats`) and input resolution.
B0-B7 use the coefficients of the reference code (tensorflow/tpu
`efficientnet_builder.py::efficientnet_params`, the same in keras.applications), which are
*not* α^φ, β^φ, γ^φ: B1 has depth 1.1 and width 1.0 where the formula gives 1.2 and 1.1.
`efficientnet_phi(φ)` (registry names `efficientnet_phi<φ>`) applies the paper's compound
scaling rule itself (§3.3, eq. 3) for any φ.

EfficientNet-Lite (tensorflow/tpu `lite/efficientnet_lite_builder.py`) is the same builder
with `lite=True`: no squeeze-excitation, ReLU6, and the stem, the head and the first and last
stages are not scaled (`fix_head_stem`), which keeps the models quantization-friendly.

Where the paper is silent we follow tensorflow/tpu `efficientnet_model.py`: BN momentum 0.99
and epsilon 1e-3, TF SAME padding, the SE width from the block's *input* channels, a
stochastic-depth rate growing linearly with the block index, and fan-out He initialization.
Layer names follow keras.applications (`stem_conv`, `block3a_expand_conv`, `top_conv`).

Padding (the `padding` switch): the reference pads the stem and the strided depthwise
convolutions by TensorFlow's SAME rule ("tf", also keras.applications' `correct_pad` and timm's
`tf_efficientnet_*`). "torch" pads them symmetrically, as torchvision's and timm's PyTorch-native
`efficientnet_*` (whose BN epsilon is PyTorch's 1e-5: pass norm_epsilon=1e-5 for those).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import keras

from official.models import heads, layers, registry


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One stage of MBConv blocks (a row of arXiv 1905.11946 Table 1)."""

    repeats: int
    kernel_size: int
    strides: int
    expand_ratio: int
    filters_in: int
    filters_out: int
    se_ratio: float = 0.25


# EfficientNet-B0 (arXiv 1905.11946 Table 1; tensorflow/tpu `_DEFAULT_BLOCKS_ARGS`).
B0_BLOCKS = (
    BlockSpec(1, 3, 1, 1, 32, 16),
    BlockSpec(2, 3, 2, 6, 16, 24),
    BlockSpec(2, 5, 2, 6, 24, 40),
    BlockSpec(3, 3, 2, 6, 40, 80),
    BlockSpec(3, 5, 1, 6, 80, 112),
    BlockSpec(4, 5, 2, 6, 112, 192),
    BlockSpec(1, 3, 1, 6, 192, 320),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280


@dataclasses.dataclass(frozen=True)
class Scaling:
    """Width and depth coefficients, input resolution and classifier dropout of a variant."""

    width: float
    depth: float
    resolution: int
    dropout: float


# tensorflow/tpu `efficientnet_builder.py::efficientnet_params` (keras.applications identical).
SCALING = {
    "b0": Scaling(1.0, 1.0, 224, 0.2),
    "b1": Scaling(1.0, 1.1, 240, 0.2),
    "b2": Scaling(1.1, 1.2, 260, 0.3),
    "b3": Scaling(1.2, 1.4, 300, 0.3),
    "b4": Scaling(1.4, 1.8, 380, 0.4),
    "b5": Scaling(1.6, 2.2, 456, 0.4),
    "b6": Scaling(1.8, 2.6, 528, 0.5),
    "b7": Scaling(2.0, 3.1, 600, 0.5),
}
# tensorflow/tpu `lite/efficientnet_lite_builder.py::efficientnet_lite_params`.
LITE_SCALING = {
    "lite0": Scaling(1.0, 1.0, 224, 0.2),
    "lite1": Scaling(1.0, 1.1, 240, 0.2),
    "lite2": Scaling(1.1, 1.2, 260, 0.3),
    "lite3": Scaling(1.2, 1.4, 280, 0.3),
    "lite4": Scaling(1.4, 1.8, 300, 0.3),
}
# The compound-scaling constants found by grid search on B0 (arXiv 1905.11946 §4.2):
# depth α, width β, resolution γ with α·β²·γ² ≈ 2, so FLOPs grow by about 2^φ.
ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15
# Resolutions of φ-scaled models are rounded to a multiple of 8 (see `phi_scaling`).
RESOLUTION_MULTIPLE = 8
# tensorflow/tpu: `batch_norm_momentum=0.99`, `batch_norm_epsilon=1e-3`, `survival_prob=0.8`.
BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3
STOCHASTIC_DEPTH_RATE = 0.2
# EfficientNet-Lite normalizes inputs with mean 127 and std 128 ("inception-style ... for
# better post-quantization", lite/efficientnet_lite_builder.py MEAN_RGB / STDDEV_RGB).
LITE_MEAN = (127.0, 127.0, 127.0)
LITE_STD = (128.0, 128.0, 128.0)
# The classifier initializer of tensorflow/tpu `dense_kernel_initializer`: U(±1/sqrt(classes)).
_DENSE_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1.0 / 3.0, "mode": "fan_out", "distribution": "uniform"},
}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Scales a channel count by `width`, rounded as tensorflow/tpu `round_filters`.

    `max(divisor, int(f·w + divisor/2) // divisor · divisor)`, plus `divisor` when that rounds
    down by more than 10% (= layers.make_divisible of the scaled count).
    """
    return layers.make_divisible(filters * width, divisor)


def round_repeats(repeats: int, depth: float) -> int:
    """Scales a stage's number of blocks by `depth`, rounding up (tensorflow/tpu)."""
    return int(math.ceil(depth * repeats))


def crop_fraction(resolution: int) -> float:
    """Eval center-crop fraction of tensorflow/tpu `preprocessing.py::_decode_and_center_crop`:
    size / (size + round(size · (1/0.875 - 1)))."""
    return resolution / (resolution + round(resolution * (1 / 0.875 - 1)))


def phi_scaling(phi: float) -> Scaling:
    """Compound scaling for coefficient φ (arXiv 1905.11946 §3.3, eq. 3).

    depth = α^φ, width = β^φ, resolution = 224·γ^φ, so FLOPs grow by (α·β²·γ²)^φ ≈ 1.92^φ
    before rounding; the reference rounding (ceil of the repeats, which doubles the one-block
    stages at φ = 1) adds 15-20% (measured: 2.23× for φ = 1, 16.4× for φ = 4 against 13.6×).
    The paper gives no rounding for the resolution; we round to the nearest multiple of 8:
    fine enough to follow γ^φ closely (a step of 8 px changes FLOPs by at most ~7% at 224 px,
    where 32 px steps would change them by ~30%), and coarse enough that the stride-2, -4 and
    -8 feature maps have exact integer sizes. Dropout follows the reference table,
    0.2 + 0.1·floor(φ/2) (exact for B0-B7), capped at 0.5 like B7, B8 and L2, and not below 0.

    Note that φ = 0 is exactly B0 but φ ≥ 1 is not B1-B7: the released models use
    hand-adjusted coefficients (see SCALING).
    """
    resolution = 224 * GAMMA**phi
    resolution = max(32, RESOLUTION_MULTIPLE * round(resolution / RESOLUTION_MULTIPLE))
    dropout = round(min(0.5, max(0.0, 0.2 + 0.1 * math.floor(phi / 2))), 2)
    return Scaling(width=BETA**phi, depth=ALPHA**phi, resolution=int(resolution), dropout=dropout)


def efficientnet(
    *,
    width: float = 1.0,
    depth: float = 1.0,
    resolution: int | None = None,
    lite: bool = False,
    name: str = "efficientnet",
    num_classes: int = 1000,
    image_size: int | None = None,
    include_top: bool = True,
    pooling: str | None = "avg",
    dropout: float = 0.2,
    stochastic_depth_rate: float = STOCHASTIC_DEPTH_RATE,
    classifier_activation: str | None = None,
    features_only: bool = False,
    blocks: Sequence[BlockSpec] = B0_BLOCKS,
    se_ratio: float | None = None,
    width_multiplier: float = 1.0,
    zero_gamma: bool = False,
    activation: str | None = None,
    normalization: str = "batch",
    kernel_initializer: str = "he_normal_fan_out",
    padding: str | None = None,
    norm_epsilon: float | None = None,
    mean: Sequence[float] | None = registry.IMAGENET_MEAN,
    std: Sequence[float] | None = registry.IMAGENET_STD,
) -> keras.Model:
    """Builds an EfficientNet with the given width and depth coefficients.

    Args:
      width: width coefficient (channels scale; rounded by `round_filters`).
      depth: depth coefficient (blocks per stage; rounded up by `round_repeats`).
      resolution: the resolution coefficient as an input size, the paper's third knob; the
        same as `image_size` (pass either; they must agree when both are given).
      lite: EfficientNet-Lite: no SE, ReLU6 (unless `activation` is given), stem, head and the
        first and last stages unscaled.
      name: model name.
      num_classes: classifier outputs.
      image_size: square input size, or None for any size (>= 32).
      include_top: add the classifier head.
      pooling: global pooling of the features ("avg", "max", or None without the top).
      dropout: dropout before the classifier (the variant's table value via the registry).
      stochastic_depth_rate: drop probability of the last block's residual branch; block i of
        n drops with rate · i / n (tensorflow/tpu `survival_prob` 0.8).
      classifier_activation: None for logits, "softmax" for probabilities.
      features_only: return the outputs at strides 2, 4, 8, 16 and 32 (the last block before
        each stride-2 stage and the last block: tensorflow/tpu's `reduction_1..5` endpoints).
      blocks: the base block table (B0).
      se_ratio: squeeze-excitation width as a fraction of each block's input channels, for
        every block (None: the table's, 0.25; 0: no SE). Lite has no SE: only None or 0.
      width_multiplier: extra factor on `width` (the training config's width switch).
      zero_gamma: zero-init the projection BN of blocks with an identity skip.
      activation: activation switch (default swish, ReLU6 for Lite), see layers.ACTIVATIONS.
      normalization: normalization switch, see layers.NORMALIZATIONS.
      kernel_initializer: see layers.KERNEL_INITIALIZERS.
      padding: None or "tf" (TensorFlow's SAME, the reference), or "torch" (symmetric).
      norm_epsilon: epsilon of every normalization layer (None: BN_EPSILON, 1e-3).
      mean: input mean on the 0..255 scale, or None for no input normalization.
      std: input standard deviation on the 0..255 scale.

    Returns:
      A keras.Model.
    """
    if resolution is not None and image_size is not None and resolution != image_size:
        raise ValueError(f"resolution={resolution} and image_size={image_size} disagree")
    image_size = image_size or resolution
    if lite and se_ratio:
        raise ValueError("EfficientNet-Lite has no squeeze-excitation: se_ratio must be 0")
    if se_ratio is not None and not 0 <= se_ratio <= 1:
        raise ValueError(f"se_ratio must be in [0, 1], got {se_ratio}")
    width = width * width_multiplier
    activation = activation or ("relu6" if lite else "swish")
    rule = layers.padding_rule(padding, "same")
    epsilon = layers.normalization_epsilon(norm_epsilon, BN_EPSILON)
    norm = layers.norm_kwargs(normalization, BN_MOMENTUM, epsilon, kernel_initializer)

    inputs, x = layers.input_block(image_size, mean, std)
    stem_filters = STEM_FILTERS if lite else round_filters(STEM_FILTERS, width)
    x = layers.conv_norm_act(
        x,
        stem_filters,
        3,
        strides=2,
        padding=rule,
        name="stem",
        activation=activation,
        **norm,
    )
    repeats = [
        spec.repeats if lite and i in (0, len(blocks) - 1) else round_repeats(spec.repeats, depth)
        for i, spec in enumerate(blocks)
    ]
    total_blocks = sum(repeats)
    features, index = [], 0
    for stage, (spec, count) in enumerate(zip(blocks, repeats)):
        if spec.strides > 1:
            features.append(x)
        filters_in = round_filters(spec.filters_in, width)
        filters_out = round_filters(spec.filters_out, width)
        ratio = 0.0 if lite else spec.se_ratio if se_ratio is None else se_ratio
        for j in range(count):
            block_in = filters_in if j == 0 else filters_out
            x = layers.inverted_residual(
                x,
                filters_out,
                # From the actual input channels: with Lite's unscaled stem, the first block
                # gets 32 channels where round_filters(32) would say more (tensorflow/tpu
                # builds its layers from the input tensor too).
                expanded_filters=x.shape[-1] * spec.expand_ratio,
                kernel_size=spec.kernel_size,
                strides=spec.strides if j == 0 else 1,
                name=f"block{stage + 1}{chr(ord('a') + j)}",
                activation=activation,
                # tensorflow/tpu: the SE width is a ratio of the block's *input* channels.
                se_filters=max(1, int(block_in * ratio)) if ratio > 0 else 0,
                drop_rate=stochastic_depth_rate * index / total_blocks,
                zero_init=zero_gamma,
                padding=rule,
                **norm,
            )
            index += 1
    features.append(x)
    if not features_only:
        head_filters = HEAD_FILTERS if lite else round_filters(HEAD_FILTERS, width)
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
        kernel_initializer=keras.initializers.get(_DENSE_INITIALIZER),
    )


def efficientnet_phi(phi: float, **kwargs) -> keras.Model:
    """EfficientNet scaled from B0 by the compound coefficient φ (see `phi_scaling`).

    Args:
      phi: the compound coefficient (any real number; 0 is B0).
      **kwargs: other `efficientnet` arguments (image_size defaults to the scaled resolution).

    Returns:
      A keras.Model.
    """
    scaling = phi_scaling(phi)
    kwargs.setdefault("image_size", scaling.resolution)
    kwargs.setdefault("dropout", scaling.dropout)
    kwargs.setdefault("name", f"efficientnet_phi{phi:g}")
    return efficientnet(width=scaling.width, depth=scaling.depth, **kwargs)


def _metadata(scaling: Scaling, lite: bool = False) -> dict:
    """Registry metadata of a variant: resolution, eval crop, input statistics, coefficients."""
    return dict(
        family="efficientnet",
        default_resolution=scaling.resolution,
        crop_fraction=crop_fraction(scaling.resolution),
        # tensorflow/tpu preprocessing resizes with bicubic interpolation.
        interpolation="bicubic",
        mean=LITE_MEAN if lite else registry.IMAGENET_MEAN,
        std=LITE_STD if lite else registry.IMAGENET_STD,
        kwargs={
            "width": scaling.width,
            "depth": scaling.depth,
            "dropout": scaling.dropout,
            "lite": lite,
        },
    )


def _phi_spec(name: str, suffix: str) -> registry.ModelSpec:
    """The spec of `efficientnet_phi<φ>` (registry pattern)."""
    try:
        phi = float(suffix)
    except ValueError:
        raise ValueError(f"{suffix!r} is not a number") from None
    if not -10 <= phi <= 20:
        raise ValueError(f"φ={suffix} is outside [-10, 20]")
    return registry.ModelSpec(name=name, builder=efficientnet, **_metadata(phi_scaling(phi)))


for _key, _scaling in SCALING.items():
    registry.register(f"efficientnet_{_key}", efficientnet, **_metadata(_scaling))
for _key, _scaling in LITE_SCALING.items():
    registry.register(f"efficientnet_{_key}", efficientnet, **_metadata(_scaling, lite=True))
registry.register_pattern("efficientnet_phi", _phi_spec, example="efficientnet_phi1.5")
