"""NASNet-A (Zoph et al., arXiv 1707.07012): the normal and reduction cells found by neural
architecture search on CIFAR-10, stacked for ImageNet; one table of variants and one builder.

A cell (§3, Figure 4) takes the outputs of the two previous cells: h (this cell's input,
through ReLU, a 1x1 convolution and BN) and p (the cell before, matched to h's shape by the
"adjust" step: a factorized reduction, i.e. two 1x1 convolutions on the even and the
one-pixel-shifted odd positions, when p has twice h's resolution; else a 1x1 projection when
the channels differ). Five combinations each add two operations (3x3/5x5/7x7 separable
convolutions, applied twice as ReLU → separable convolution → BN; 3x3 average or max pooling;
identity) on two earlier hidden states; the cell concatenates the states no combination used.
A reduction cell applies stride 2 to every operation on h and p. The cells are the tables
NORMAL_CELL and REDUCTION_CELL below, in the order of the authors' TF-slim
`nasnet_utils.py` (operations, hiddenstate_indices, used_hiddenstates), which keras.applications'
nasnet.py wires the same way, layer for layer.

The ImageNet network (§4.2, Figure 2; TF-slim `nasnet.py`): a 3x3/2 unpadded convolution
with BN, two reduction cells as the stem (filters F/4 and F/2), then N normal cells, a
reduction cell, N normal cells, a reduction cell, N normal cells, the filters doubling at
each reduction (F, 2F, 4F); ReLU, global average pooling, dropout 0.5 (TF-slim
`dense_dropout_keep_prob` of both ImageNet configurations), the classifier. A normal cell
outputs 6 states, so the last one has 24F channels: the paper names a network "N @ 24F",
NASNet-A Mobile 4 @ 1056 and Large 6 @ 4032. Large also feeds the first normal cell after a
reduction with the cell before the reduction's input (TF-slim `skip_reduction_layer_input`).
BN: epsilon 1e-3, momentum 0.9997; inputs in [-1, 1]. Not built: the auxiliary classifier and
ScheduledDropPath (training-time regularizers of §4.1, off at inference; keras has neither).

Where keras.applications differs from TF-slim the builder follows keras, whose ImageNet
weights (converted from TF-slim's) port into it: its stride-2 pooling in reduction cells
zero-pads the input (TF-slim pools with SAME padding, which ignores the padded cells); this
changes only the last row and column of those poolings.

Padding (the `padding` switch): None is keras.applications' model: separable convolutions and
poolings padded by TensorFlow's SAME rule, the stride-2 poolings with zeros. "tf" is TF-slim's
(SAME everywhere, the padded cells ignored by every pooling). "torch" pads every separable
convolution and pooling symmetrically, max poolings with −inf and average poolings with counted
zeros (PyTorch's defaults); the PyTorch ports of these weights (Cadene's pretrainedmodels, timm)
emulate TensorFlow's SAME instead, so they take "tf". The stem convolution is unpadded and the
factorized reduction's one-pixel shift stays under every setting.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras

from official.models import heads, layers, registry


@dataclasses.dataclass(frozen=True)
class NASNetConfig:
    """A NASNet-A ImageNet network, "N @ P" in arXiv 1707.07012 Table 2/3.

    Attributes:
      cells: N, the normal cells between reductions.
      penultimate_filters: P, channels of the last cell (24 × the first stack's cell filters).
      stem_filters: channels of the stem convolution (32 · TF-slim `stem_multiplier`).
      default_resolution: the input size the network was trained at.
      skip_reduction: TF-slim `skip_reduction_layer_input` (keras `skip_reduction`).
    """

    cells: int
    penultimate_filters: int
    stem_filters: int
    default_resolution: int
    skip_reduction: bool


# TF-slim mobile_imagenet_config / large_imagenet_config (keras NASNetMobile / NASNetLarge).
CONFIGS = {
    "nasnet_a_mobile": NASNetConfig(4, 1056, 32, 224, skip_reduction=False),
    "nasnet_a_large": NASNetConfig(6, 4032, 96, 331, skip_reduction=True),
}


@dataclasses.dataclass(frozen=True)
class Cell:
    """A NASNet cell as data.

    Attributes:
      combinations: five (left operation, left input, right operation, right input); inputs
        index the hidden states [h, p, combination 0, combination 1, ...]; operations are
        "separable_KxK", "avg_pool_3x3", "max_pool_3x3" or "identity".
      outputs: the hidden states the cell concatenates (those no combination used).
      reduction: stride 2 on every operation applied to h or p.
    """

    combinations: tuple[tuple[str, int, str, int], ...]
    outputs: tuple[int, ...]
    reduction: bool


# arXiv 1707.07012 Figure 4 (TF-slim NasNetANormalCell / NasNetAReductionCell).
NORMAL_CELL = Cell(
    combinations=(
        ("separable_5x5", 0, "separable_3x3", 1),
        ("separable_5x5", 1, "separable_3x3", 1),
        ("avg_pool_3x3", 0, "identity", 1),
        ("avg_pool_3x3", 1, "avg_pool_3x3", 1),
        ("separable_3x3", 0, "identity", 0),
    ),
    outputs=(1, 2, 3, 4, 5, 6),
    reduction=False,
)
REDUCTION_CELL = Cell(
    combinations=(
        ("separable_5x5", 0, "separable_7x7", 1),
        ("max_pool_3x3", 0, "separable_7x7", 1),
        ("avg_pool_3x3", 0, "separable_5x5", 1),
        ("identity", 3, "avg_pool_3x3", 2),
        ("separable_3x3", 2, "max_pool_3x3", 0),
    ),
    outputs=(3, 4, 5, 6),
    reduction=True,
)
# Filters double at every reduction (TF-slim filter_scaling_rate, keras filter_multiplier).
FILTER_SCALING = 2
BN_MOMENTUM = 0.9997
BN_EPSILON = 1e-3
# [-1, 1] inputs (keras.applications.nasnet.preprocess_input, mode "tf").
MEAN = (127.5, 127.5, 127.5)
STD = (127.5, 127.5, 127.5)


def SameZeroPadding2D(kernel_size: int, strides: int, **kwargs) -> layers.WindowPadding2D:  # noqa: N802
    """Zero padding by TensorFlow's SAME rule for a k×k window with stride s, for a VALID
    window after it: what keras.applications' `correct_pad` computes from a static size, here
    also for inputs whose size is only known when the model runs (the padding of the stride-2
    poolings with padding=None, through `layers.pool2d(pad_with_zeros=True)`)."""
    return layers.WindowPadding2D(kernel_size, strides, "same", 0.0, **kwargs)


def nasnet(
    *,
    cells: int,
    penultimate_filters: int,
    stem_filters: int,
    skip_reduction: bool,
    name: str = "nasnet",
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
    kernel_initializer: str = "he_normal_fan_out",
    padding: str | None = None,
    norm_epsilon: float | None = None,
    mean: Sequence[float] | None = MEAN,
    std: Sequence[float] | None = STD,
) -> keras.Model:
    """Builds a NASNet-A ImageNet network.

    Args:
      cells: N, normal cells per stack (a table row).
      penultimate_filters: channels of the last cell, a multiple of 96 (a table row).
      stem_filters: channels of the stem convolution (a table row).
      skip_reduction: feed the normal cell after a reduction with the previous stack's
        second-to-last cell instead of its last (a table row).
      name: model name.
      num_classes: classifier outputs.
      image_size: square input size (>= 3), or None for any size.
      include_top: add the classifier head.
      pooling: global pooling of the features ("avg", "max", or None without the top).
      dropout: dropout before the classifier (TF-slim: keep probability 0.5; keras has none,
        which changes nothing at inference).
      classifier_activation: None for logits, "softmax" for probabilities.
      features_only: return the last map at strides 2, 4, 8, 16 and 32 (the stem, the first
        stem cell, the last normal cell of each stack, after the final activation).
      width_multiplier: scales the cell filters (rounded to a multiple of 4, so that every
        factorized reduction has two equal halves) and the stem (not in the paper).
      activation: activation switch, see layers.ACTIVATIONS (ReLU in the paper).
      normalization: normalization switch, see layers.NORMALIZATIONS, or None (convolutions
        with biases instead).
      kernel_initializer: see layers.KERNEL_INITIALIZERS; TF-slim initializes with
        variance scaling over the fan-out (he_normal_fan_out).
      padding: None (keras.applications'), "tf" (TF-slim's) or "torch" (symmetric); see the
        module docstring.
      norm_epsilon: epsilon of every normalization layer (None: BN_EPSILON, 1e-3).
      mean: input mean on the 0..255 scale, or None for no input normalization.
      std: input standard deviation on the 0..255 scale.

    Returns:
      A keras.Model.
    """
    if penultimate_filters % (24 * FILTER_SCALING**2):
        raise ValueError(
            f"penultimate_filters must be a multiple of {24 * FILTER_SCALING**2}, "
            f"got {penultimate_filters}"
        )
    rule = layers.padding_rule(padding, "same")
    epsilon = layers.normalization_epsilon(norm_epsilon, BN_EPSILON)
    norm = layers.norm_kwargs(normalization, BN_MOMENTUM, epsilon, kernel_initializer)
    initializer = norm["kernel_initializer"]
    filters = layers.make_divisible(
        penultimate_filters // 24 * width_multiplier, divisor=FILTER_SCALING**2
    )

    def relu(x, name):
        return layers.activation_layer(activation, name)(x)

    def normalize(x, name):
        if normalization is None:
            return x
        return layers.normalization_layer(
            normalization, name, channels=x.shape[-1], momentum=BN_MOMENTUM, epsilon=epsilon
        )(x)

    def conv1x1(x, width, name):
        return layers.conv2d(
            x,
            width,
            1,
            use_bias=normalization is None,
            kernel_initializer=initializer,
            name=name,
        )

    def operation(x, kind, strides, width, name):
        if kind == "identity":
            return x
        kernel = int(kind[-1])
        if kind.startswith("separable"):
            # TF-slim `_stacked_separable_conv`: twice ReLU → separable conv → BN, the first
            # one strided.
            for index in (1, 2):
                x = relu(x, f"{name}_relu{index}")
                x = layers.separable_conv2d(
                    x,
                    width,
                    kernel,
                    strides=strides if index == 1 else 1,
                    use_bias=normalization is None,
                    padding=rule,
                    kernel_initializer=initializer,
                    name=f"{name}_separable{index}",
                )
                x = normalize(x, f"{name}_separable{index}_bn")
            return x
        # keras.applications zero-pads its stride-2 poolings (see the module docstring).
        return layers.pool2d(
            x,
            kind[:3],
            kernel,
            strides=strides,
            padding=rule,
            pad_with_zeros=padding is None and strides > 1,
            name=name,
        )

    def adjust(x, stride, previous, previous_stride, width, name):
        """p matched to h: factorized reduction, 1x1 projection or nothing (TF-slim
        `_reduce_prev_layer`, keras `_adjust_block`); the first cell's p is its input x."""
        if previous is None:
            return x
        if previous_stride != stride:
            # Two 1x1 convolutions of width/2 on the even positions and on the positions one
            # pixel down and right (padding the bottom/right edge), concatenated: a stride-2
            # reduction that sees every pixel (TF-slim `factorized_reduction`).
            x = relu(previous, name + "_prev_relu")
            path1 = keras.layers.AveragePooling2D(1, strides=2, name=name + "_path1_pool")(x)
            path1 = conv1x1(path1, width // 2, name + "_path1_conv")
            path2 = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name=name + "_path2_pad")(x)
            path2 = keras.layers.Cropping2D(((1, 0), (1, 0)), name=name + "_path2_shift")(path2)
            path2 = keras.layers.AveragePooling2D(1, strides=2, name=name + "_path2_pool")(path2)
            path2 = conv1x1(path2, width // 2, name + "_path2_conv")
            x = keras.layers.Concatenate(name=name + "_paths")([path1, path2])
            return normalize(x, name + "_final_path_bn")
        if previous.shape[-1] != width:
            x = relu(previous, name + "_prev_relu")
            return normalize(conv1x1(x, width, name + "_prev_1x1"), name + "_prev_bn")
        return previous

    def cell(spec: Cell, x, x_stride, previous, previous_stride, width, name):
        """One cell; returns its output and its stride."""
        previous = adjust(x, x_stride, previous, previous_stride, width, name)
        h = relu(x, name + "_beginning_relu")
        h = normalize(conv1x1(h, width, name + "_beginning_conv"), name + "_beginning_bn")
        states = [h, previous]
        for index, (left, left_input, right, right_input) in enumerate(spec.combinations):
            branches = []
            for side, kind, source in (("left", left, left_input), ("right", right, right_input)):
                strides = 2 if spec.reduction and source < 2 else 1
                branches.append(
                    operation(states[source], kind, strides, width, f"{name}_comb{index}_{side}")
                )
            states.append(keras.layers.Add(name=f"{name}_comb{index}_add")(branches))
        output = keras.layers.Concatenate(name=name + "_concat")([states[i] for i in spec.outputs])
        return output, x_stride * (2 if spec.reduction else 1)

    inputs, x = layers.input_block(image_size, mean, std)
    x = layers.conv_norm_act(
        x,
        max(8, int(round(stem_filters * width_multiplier))),
        3,
        strides=2,
        padding="valid",
        name="stem",
        activation=None,
        **norm,
    )
    features = [x]
    # (tensor, stride) of this cell's input and of the cell before (none for the first).
    current, previous = (x, 2), (None, None)
    for index in range(2):  # TF-slim cell_stem_0/1: filters F/4, F/2
        width = filters // FILTER_SCALING ** (2 - index)
        output = cell(REDUCTION_CELL, *current, *previous, width, f"cell_stem_{index}")
        current, previous = output, current
        if index == 0:
            features.append(current[0])
    number = 0
    for stack in range(3):
        width = filters * FILTER_SCALING**stack
        if stack > 0:
            output = cell(REDUCTION_CELL, *current, *previous, width, f"reduction_cell_{stack - 1}")
            # Large: the next normal cell sees the cell before the reduction's input.
            current, previous = output, (previous if skip_reduction else current)
        for _ in range(cells):
            output = cell(NORMAL_CELL, *current, *previous, width, f"cell_{number}")
            current, previous = output, current
            number += 1
        if stack < 2:
            features.append(current[0])
    x = relu(current[0], "final_relu")
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


for _name, _config in CONFIGS.items():
    registry.register(
        _name,
        nasnet,
        family="nasnet",
        default_resolution=_config.default_resolution,
        min_resolution=3,
        mean=MEAN,
        std=STD,
        kwargs={
            "cells": _config.cells,
            "penultimate_filters": _config.penultimate_filters,
            "stem_filters": _config.stem_filters,
            "skip_reduction": _config.skip_reduction,
        },
    )
