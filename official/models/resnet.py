"""ResNet (He et al. arXiv 1512.03385) as one table and one builder, with the Bag-of-Tricks
variants (He et al. arXiv 1812.01187 §4.1), ResNeXt (Xie et al. arXiv 1611.05431), SE-ResNet,
SE-ResNeXt and SENet-154 (Hu et al. arXiv 1709.01507) and dilation as switches of the same
block function.

Depths 18/34 use the basic block (two 3x3 convolutions), 50 and deeper the bottleneck block
(1x1 → 3x3 → 1x1 with 4x expansion); table from arXiv 1512.03385 Table 1 (ResNet-200 from
He et al. arXiv 1603.05027 §4.2). The default block puts the down-sampling stride in the first
1x1 convolution, as the paper and keras.applications do ("ResNet-A" in Bag of Tricks Figure
2a). Convolutions carry no bias: the following BN has its own shift.

Variants (Bag of Tricks Figure 2, Table 5; each includes the previous one, as in the paper's
Table 5 FLOPs and GluonCV's resnet50_v1b/c/d):
  * B: the stride moves to the 3x3 convolution of the down-sampling block, so the 1x1 no
    longer ignores three quarters of its input (torchvision's "ResNet v1.5").
  * C: the 7x7 stem becomes three 3x3 convolutions (32, 32, 64 channels).
  * D: the projection shortcut averages 2x2 before its (now stride-1) 1x1 convolution.

ResNeXt (arXiv 1611.05431 §3.3, Table 1) is the bottleneck network with its 3x3 convolution
split into C groups (the cardinality) of d channels each for the first stage, doubling with the
stage: width = floor(filters · d / 64) · C, as the authors' fb.resnet.torch code and
torchvision. Its stride sits in the 3x3 convolution (variant B), as in the authors' code.

SE-ResNet, SE-ResNeXt and SENet-154 follow the reference implementation the SENet authors'
Caffe models were converted to (Cadene's pretrainedmodels `senet.py`): SE-ResNet keeps the
stride in the first 1x1 (variant A), SE-ResNeXt moves it to the 3x3 (B). SENet-154 (the ILSVRC
2017 winner, arXiv 1709.01507 §6.1 and Table 8) is a 64x4d SE-ResNeXt-152 with three changes:
the first 1x1 of each bottleneck halves the grouped width, the stem is three 3x3 convolutions
(64, 64, 128: a C stem of width 64), and the down-sampling projections are 3x3 convolutions;
dropout 0.2 before the classifier.

Padding (the `padding` switch): the reference is symmetric, (k − 1)/2 on each side of every
strided convolution (tensorflow/tpu's `conv2d_fixed_padding`) and of the stem's 3x3/2 max
pooling, as keras.applications and torchvision ("torch"). keras.applications pads that
pooling with zeros where torchvision pads with −inf: the same after the default ReLU, so None
equals "torch" for non-negative activations; a signed activation (PReLU, ELU, ...) needs
"torch" for torchvision's weights. "tf" pads by TensorFlow's SAME rule instead (the extra
row/column at the bottom/right on even sizes). ResNet-D's 2x2/2 average pooling keeps its one
rule under every setting: TensorFlow's SAME, which is GluonCV's and timm's
AvgPool2d(ceil_mode=True, count_include_pad=False) exactly. (tensorflow/tpu max pools the stem
with SAME padding, and Cadene's SE-ResNets and SENet-154 in ceil mode without padding, which is
the same on even sizes; both pad their convolutions symmetrically, a combination neither
setting builds.)

Binary ResNets (the `binary` switch, official/models/binary.py; basic blocks only): every
3x3 convolution of the residual branches is binary, the stem, the 1x1 shortcut projections and
the classifier stay real (XNOR-Net arXiv 1603.05279 §4 keeps the first and last layers real;
real projections as Bi-Real Net and larq zoo). "bwn" (Binary-Weight-Network, §3.1) binarizes
the weights only, in the real network's order. "xnor" (§3.2) binarizes inputs too, each
convolution as XNOR-Net's block BN → sign (with K) → binary convolution → ReLU (Figure 3).
"bireal" is Bi-Real Net (Liu et al. arXiv 1808.00278 §3, larq zoo `birealnet.py`, the
authors' PyTorch code): sign → binary convolution → BN with an identity shortcut around each
convolution, the down-sampling shortcut an average pooling 2x2/2 before the 1x1 projection
(ResNet-D's), and no ReLU anywhere (the stem neither).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import keras

from official.models import binary as binary_lib
from official.models import heads, layers, registry


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
# Bag of Tricks Figure 2b: the ResNet-C stem's three 3x3 convolutions are (w, w, 2w), w = 32;
# SENet-154 uses w = 64.
DEEP_STEM_WIDTH = 32
VARIANTS = ("a", "b", "c", "d")
# SENet's reduction ratio r = 16 (arXiv 1709.01507 §6.1, Table 10).
SE_RATIO = 1 / 16
# BN momentum 0.9 and epsilon 1e-5, as TF Model Garden, tensorflow/tpu and torchvision.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def _scaled(filters: int, width_multiplier: float) -> int:
    return max(8, int(round(filters * width_multiplier)))


def stage_dilations(output_stride: int) -> tuple[tuple[int, int], ...]:
    """(stride, dilation) of stages conv2..conv5 for an output stride of 8, 16 or 32.

    Past the requested output stride, a stage keeps its resolution and dilates its 3x3
    convolutions instead (Chen et al. arXiv 1606.00915 §3.1, Yu & Koltun arXiv 1511.07122):
    the same parameters see the same context at a finer resolution.
    """
    layers.check_choice(str(output_stride), ("8", "16", "32"), "output_stride")
    result, stride, dilation = [], 4, 1  # The stem reduces by 4.
    for stage in range(4):
        step = 1 if stage == 0 else 2
        if stride * step > output_stride:
            dilation *= step
            step = 1
        stride *= step
        result.append((step, dilation))
    return tuple(result)


@dataclasses.dataclass(frozen=True)
class Bottleneck:
    """The shape of a bottleneck's inner convolutions (ResNeXt's "C x d" template).

    Attributes:
      cardinality: groups of the 3x3 convolution (C; 1 for ResNet).
      base_width: channels per group in the first stage (d; 64 for ResNet, whose width is then
        the stage's filters).
      reduce_fraction: width of the first 1x1 relative to the 3x3's (SENet-154: 0.5).
      shortcut_kernel: kernel of the down-sampling projections (SENet-154: 3).
    """

    cardinality: int = 1
    base_width: int = 64
    reduce_fraction: float = 1.0
    shortcut_kernel: int = 1

    def width(self, filters: int) -> int:
        """Channels of the grouped 3x3 convolution for a stage with `filters`."""
        # At least one channel per group, so narrow test models keep their groups.
        return max(1, filters * self.base_width // 64) * self.cardinality


def _residual_block(
    x,
    *,
    block: str,
    filters: int,
    strides: int,
    dilation: int,
    name: str,
    conv_kwargs: dict,
    zero_gamma: bool,
    variant: str,
    se_ratio: float,
    bottleneck: Bottleneck,
    binary: str | None = None,
):
    """One residual block, keras.applications naming (`_0_` shortcut, `_1_`.. branch)."""
    out_filters = filters * BOTTLENECK_EXPANSION if block == "bottleneck" else filters
    activation = conv_kwargs["activation"]
    linear = {**conv_kwargs, "activation": None}
    mode = binary_lib.mode(binary) if binary else None
    # The branch's convolutions; binary networks keep the shortcut projections real.
    conv = functools.partial(binary_lib.conv_norm_act, binary=binary) if mode else None
    shortcut = x
    if strides != 1 or x.shape[-1] != out_filters:
        shortcut_strides = strides
        if (variant == "d" or (mode and mode.shortcut_per_conv)) and strides != 1:
            # Average the 2x2 neighbourhood instead of sampling one pixel of it (ResNet-D; also
            # Bi-Real Net's down-sampling shortcut, larq zoo and the authors' PyTorch code).
            # "same" pooling ignores the padding, as GluonCV's ceil_mode/count_include_pad=False.
            shortcut = layers.pool2d(
                x, "avg", strides, strides=strides, padding="same", name=name + "_0_pool"
            )
            shortcut_strides = 1
        # SENet-154's 3x3 projections apply only where the block down-samples.
        kernel = bottleneck.shortcut_kernel if shortcut_strides != 1 else 1
        shortcut = layers.conv_norm_act(
            shortcut, out_filters, kernel, strides=shortcut_strides, name=name + "_0", **linear
        )
    # ResNet-B and later: the stride is taken by the 3x3 convolution.
    stride_1x1, stride_3x3 = (strides, 1) if variant == "a" else (1, strides)
    if block == "bottleneck":
        width = bottleneck.width(filters)
        # Whole groups: the grouped 3x3 needs input channels divisible by the cardinality.
        groups_in = max(1, round(width * bottleneck.reduce_fraction / bottleneck.cardinality))
        reduced = groups_in * bottleneck.cardinality
        y = layers.conv_norm_act(x, reduced, 1, strides=stride_1x1, name=name + "_1", **conv_kwargs)
        y = layers.conv_norm_act(
            y,
            width,
            3,
            strides=stride_3x3,
            dilation_rate=dilation,
            groups=bottleneck.cardinality,
            name=name + "_2",
            **conv_kwargs,
        )
        last_name = name + "_3"
        last = layers.conv_norm_act(
            y, out_filters, 1, zero_init=zero_gamma, name=last_name, **linear
        )
    else:
        conv = conv or layers.conv_norm_act
        per_conv = mode is not None and mode.shortcut_per_conv
        y = conv(
            x,
            filters,
            3,
            strides=strides,
            dilation_rate=dilation,
            name=name + "_1",
            **(linear if per_conv else conv_kwargs),
        )
        if per_conv:
            # Bi-Real Net (arXiv 1808.00278 §3.1): a real-valued shortcut around each binary
            # convolution keeps the real activations that the next sign would discard.
            y = keras.layers.Add(name=name + "_1_add")([shortcut, y])
            shortcut = y
        last = conv(
            y,
            out_filters,
            3,
            dilation_rate=dilation,
            zero_init=zero_gamma,
            name=name + "_2",
            **linear,
        )
    if se_ratio > 0:
        # SE on the residual branch before the addition (arXiv 1709.01507 Figure 3).
        last = layers.squeeze_excite(
            last,
            max(1, int(out_filters * se_ratio)),
            name=name + "_se",
            activation=activation,
            kernel_initializer=conv_kwargs["kernel_initializer"],
        )
    y = keras.layers.Add(name=name + "_add")([shortcut, last])
    if mode is not None and not mode.activations:
        return y
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
    variant: str = "a",
    se_ratio: float = 0.0,
    cardinality: int = 1,
    base_width: int = 64,
    reduce_fraction: float = 1.0,
    shortcut_kernel: int = 1,
    stem_width: int = DEEP_STEM_WIDTH,
    output_stride: int = 32,
    width_multiplier: float = 1.0,
    zero_gamma: bool = False,
    activation: str = "relu",
    normalization: str = "batch",
    kernel_initializer: str = "he_normal",
    padding: str | None = None,
    norm_epsilon: float | None = None,
    binary: str | None = None,
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
      variant: "a" (the paper), "b", "c" or "d" (Bag of Tricks §4.1; cumulative). B changes
        nothing in the basic block, whose first 3x3 already takes the stride.
      se_ratio: > 0 adds squeeze-excitation with this reduction to every block (SE-ResNet:
        1/16).
      cardinality: groups of the bottleneck's 3x3 convolution (ResNeXt's C; 1 for ResNet).
      base_width: channels per group in the first stage (ResNeXt's d; 64 for ResNet).
      reduce_fraction: width of the bottleneck's first 1x1 relative to the 3x3 (SENet-154:
        0.5).
      shortcut_kernel: kernel of the down-sampling projections (SENet-154: 3).
      stem_width: w of the C/D stem's (w, w, 2w) 3x3 convolutions (32; SENet-154: 64).
      output_stride: 32 (the paper), 16 or 8: later stages keep their resolution and use
        dilated 3x3 convolutions; the parameters do not change.
      width_multiplier: scales every stage's filters (and the stem).
      zero_gamma: zero-initialise the last BN of each residual branch (Bag of Tricks §3.1).
      activation: activation switch, see layers.ACTIVATIONS.
      normalization: normalization switch, see layers.NORMALIZATIONS.
      kernel_initializer: "he_normal"/"kaiming_normal", "glorot_uniform"/"xavier_uniform", ...
      padding: None (keras.applications': symmetric, the stem pooling padded with zeros),
        "torch" (symmetric, the pooling padded with −inf: torchvision) or "tf" (TensorFlow's
        SAME); see the module docstring.
      norm_epsilon: epsilon of every normalization layer (None: BN_EPSILON, 1e-5).
      binary: None (real-valued), or a key of binary.MODES ("bwn", "xnor", "bireal"): the
        convolutions of the residual branches become binary; the stem, the shortcut
        projections and the classifier stay real, as in the papers (see the module docstring).
      mean: input mean on the 0..255 scale, or None for no input normalization.
      std: input standard deviation on the 0..255 scale.

    Returns:
      A keras.Model.
    """
    if depth not in DEPTHS:
        raise ValueError(f"unknown ResNet depth {depth}; choose one of {sorted(DEPTHS)}")
    layers.check_choice(variant, VARIANTS, "ResNet variant")
    table = DEPTHS[depth]
    bottleneck = Bottleneck(cardinality, base_width, reduce_fraction, shortcut_kernel)
    if table.block == "basic" and bottleneck != Bottleneck():
        raise ValueError(
            f"ResNet-{depth} uses basic blocks: cardinality, base_width, reduce_fraction and "
            "shortcut_kernel apply to bottleneck depths (50 and deeper)"
        )
    if binary is not None and table.block != "basic":
        raise ValueError(
            f"binary={binary!r}: the binary networks are defined on basic blocks (depth 18, 34)"
        )
    dilations = stage_dilations(output_stride)
    rule = layers.padding_rule(padding, "symmetric")
    epsilon = layers.normalization_epsilon(norm_epsilon, BN_EPSILON)
    conv_kwargs = dict(
        activation=activation,
        padding=rule,
        **layers.norm_kwargs(normalization, BN_MOMENTUM, epsilon, kernel_initializer),
    )
    # Bi-Real Net's stem has no ReLU (larq zoo birealnet.py): its only nonlinearity is the sign.
    stem_kwargs = conv_kwargs
    if binary is not None and not binary_lib.mode(binary).activations:
        stem_kwargs = {**conv_kwargs, "activation": None}
    inputs, x = layers.input_block(image_size, mean, std)
    if variant in ("c", "d"):
        # ResNet-C stem: three 3x3 convolutions, the first with stride 2 (Figure 2b).
        for index, filters in enumerate((stem_width, stem_width, 2 * stem_width)):
            x = layers.conv_norm_act(
                x,
                _scaled(filters, width_multiplier),
                3,
                strides=2 if index == 0 else 1,
                name=f"conv1{'abc'[index]}",
                **stem_kwargs,
            )
    else:
        # Stem: 7x7/2 convolution (arXiv 1512.03385 Table 1, conv1).
        x = layers.conv_norm_act(
            x, _scaled(64, width_multiplier), 7, strides=2, name="conv1", **stem_kwargs
        )
    features = [x]
    x = layers.pool2d(
        x,
        "max",
        3,
        strides=2,
        padding=rule,
        pad_with_zeros=padding is None,  # keras.applications' ZeroPadding2D
        name="pool1_pool",
        pad_name="pool1_pad",
    )
    previous_dilation = 1
    for stage, (filters, repeats) in enumerate(zip(STAGE_FILTERS, table.repeats)):
        stride, dilation = dilations[stage]
        for index in range(repeats):
            x = _residual_block(
                x,
                block=table.block,
                filters=_scaled(filters, width_multiplier),
                strides=stride if index == 0 else 1,
                # torchvision's `_make_layer`: a dilated stage's first block keeps the
                # previous dilation, the others use the new one.
                dilation=previous_dilation if index == 0 else dilation,
                name=f"conv{stage + 2}_block{index + 1}",
                conv_kwargs=conv_kwargs,
                zero_gamma=zero_gamma,
                variant=variant,
                se_ratio=se_ratio,
                bottleneck=bottleneck,
                binary=binary,
            )
        previous_dilation = dilation
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


for _depth in DEPTHS:
    for _variant in VARIANTS:
        registry.register(
            f"resnet{_depth}" + ("" if _variant == "a" else f"_{_variant}"),
            resnet,
            family="resnet",
            default_resolution=224,
            kwargs={"depth": _depth, "variant": _variant},
        )
# SE-ResNets of arXiv 1709.01507 Table 2 (on the paper's ResNet, variant A).
for _depth in (50, 101, 152):
    registry.register(
        f"se_resnet{_depth}",
        resnet,
        family="resnet",
        default_resolution=224,
        kwargs={"depth": _depth, "se_ratio": SE_RATIO},
    )
    # timm's seresnet50/101/152 put the same SE modules on its ResNet, which strides the 3x3
    # (ResNet-B; timm/models/resnet.py `Bottleneck`: conv2 has the stride): their weights
    # compute the same only in this variant.
    registry.register(
        f"se_resnet{_depth}_b",
        resnet,
        family="resnet",
        default_resolution=224,
        kwargs={"depth": _depth, "variant": "b", "se_ratio": SE_RATIO},
    )
# ResNeXt "depth_Cxd" (arXiv 1611.05431 Tables 1 and 5; 101_32x8d and 101_64x4d as torchvision
# and the authors' released models), with their SE versions (arXiv 1709.01507 Table 2, the
# reference implementation's se_resnext50_32x4d / 101_32x4d / 101_64x4d).
RESNEXTS = {
    "50_32x4d": (50, 32, 4),
    "101_32x4d": (101, 32, 4),
    "101_32x8d": (101, 32, 8),
    "101_64x4d": (101, 64, 4),
}
for _suffix, (_depth, _cardinality, _base_width) in RESNEXTS.items():
    _kwargs = {"depth": _depth, "variant": "b", "cardinality": _cardinality}
    _kwargs["base_width"] = _base_width
    registry.register(
        f"resnext{_suffix}", resnet, family="resnet", default_resolution=224, kwargs=_kwargs
    )
    if _suffix != "101_32x8d":
        registry.register(
            f"se_resnext{_suffix}",
            resnet,
            family="resnet",
            default_resolution=224,
            kwargs={**_kwargs, "se_ratio": SE_RATIO},
        )
# Binary ResNet-18s (official/models/binary.py): binary weights with real activations (BWN)
# and XNOR-Net (arXiv 1603.05279 Table 2), and Bi-Real Net (arXiv 1808.00278 Table 4).
BINARY_RESNETS = {"bwn_resnet18": "bwn", "xnor_resnet18": "xnor", "birealnet18": "bireal"}
for _name, _binary in BINARY_RESNETS.items():
    _kwargs = {"depth": 18, "binary": _binary}
    registry.register(_name, resnet, family="resnet", default_resolution=224, kwargs=_kwargs)
registry.register(
    "senet154",
    resnet,
    family="resnet",
    default_resolution=224,
    kwargs={
        "depth": 152,
        "variant": "c",
        "stem_width": 64,
        "cardinality": 64,
        "base_width": 4,
        "reduce_fraction": 0.5,
        "shortcut_kernel": 3,
        "se_ratio": SE_RATIO,
        "dropout": 0.2,
    },
)
