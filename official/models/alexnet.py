"""AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012): the published two-tower network and
torchvision's one-tower form, as one table and one builder.

The 2012 network ("alexnet_2012", 60,965,224 parameters) splits its convolutions over two GPUs:
conv2, conv4 and conv5 see only the feature maps of their own tower (grouped convolutions with
2 groups, §3.2 and Figure 2), conv3 and the fully-connected layers see both; local response
normalization (k=2, n=5, α=1e-4, β=0.75, §3.3) follows conv1 and conv2, and overlapping 3x3/2
max pooling (§3.4) follows the two normalizations and conv5. It takes 227 px crops (the size
that makes conv1's 11x11/4 map 55x55, as Figure 2 draws; the text's "224" does not fit) and
only mean-subtracted inputs (§2). Dropout 0.5 follows fc6 and fc7 (§4.2).

torchvision's AlexNet ("alexnet", 61,100,840 parameters) is the one-tower variant of "One
weird trick" (Krizhevsky arXiv 1404.5997): 64-192-384-256-256 channels, no LRN, padding 2 in
conv1, dropout before fc6 and fc7. Both end in an adaptive 6x6 average pooling, as
torchvision's: at the reference sizes it is the identity (pool5 is 6x6), and it lets every
input size at or above the minimum use the same fully-connected weights.

Padding (the `padding` switch): the table gives each convolution's padding in pixels, as
torchvision (and the paper's Caffe layers) do, and the max poolings pad nothing; that is
PyTorch's arithmetic, so "torch" is None. TensorFlow's SAME has no counterpart for explicit
amounts such as torchvision's padding=2 on conv1's 11x11/4 kernel: "tf" is refused.

The binary AlexNets of XNOR-Net (Rastegari et al. arXiv 1603.05279 §4.1; "xnor_alexnet",
"bwn_alexnet") are the `binary` switch on the "xnor" row: the 2012 channels in one tower
(96-256-384-384-256, as the authors' Torch model and larq zoo's XNORNet), conv1 padded by 2 at
224 px, batch normalization instead of LRN and no dropout. Every layer but the first
convolution and the classifier is binary (§4: "we keep the first and last layer real"); each
binary layer is XNOR-Net's block, BN → binarize → binary convolution → ReLU (Figure 3) for
"xnor", and convolution → BN → ReLU with binary weights for "bwn" (official/models/binary.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras

from official.models import binary as binary_lib
from official.models import heads, layers, registry

# Inputs are only mean-subtracted in the paper (§2).
STD_2012 = (1.0, 1.0, 1.0)
FC_FILTERS = 4096
POOL_GRID = 6  # pool5's map at the reference size; the adaptive pooling's output.
# BN settings when a normalization switch is given (not in the paper): torchvision's defaults.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


@dataclasses.dataclass(frozen=True)
class Conv:
    """One convolutional layer: filters, kernel, stride, zero padding on each side, groups
    (towers), and whether LRN and max pooling follow it."""

    filters: int
    kernel: int
    stride: int = 1
    padding: int = 1
    groups: int = 1
    lrn: bool = False
    pool: bool = False


@dataclasses.dataclass(frozen=True)
class AlexNetConfig:
    convs: tuple[Conv, ...]
    dropout_before: tuple[str, ...]  # which FC layers dropout precedes


CONFIGS = {
    "2012": AlexNetConfig(
        convs=(
            Conv(96, 11, stride=4, padding=0, lrn=True, pool=True),
            Conv(256, 5, padding=2, groups=2, lrn=True, pool=True),
            Conv(384, 3),
            Conv(384, 3, groups=2),
            Conv(256, 3, groups=2, pool=True),
        ),
        dropout_before=("fc7", "predictions"),  # after fc6 and fc7 (§4.2)
    ),
    "torchvision": AlexNetConfig(
        convs=(
            Conv(64, 11, stride=4, padding=2, pool=True),
            Conv(192, 5, padding=2, pool=True),
            Conv(384, 3),
            Conv(256, 3),
            Conv(256, 3, pool=True),
        ),
        dropout_before=("fc6", "fc7"),
    ),
    # XNOR-Net's AlexNet (arXiv 1603.05279 §4.1; allenai/XNOR-Net's Torch model): BN in place
    # of LRN, no dropout.
    "xnor": AlexNetConfig(
        convs=(
            Conv(96, 11, stride=4, padding=2, pool=True),
            Conv(256, 5, padding=2, pool=True),
            Conv(384, 3),
            Conv(384, 3),
            Conv(256, 3, pool=True),
        ),
        dropout_before=(),
    ),
}


@keras.saving.register_keras_serializable(package="official")
class AdaptiveAveragePooling2D(keras.layers.Layer):
    """Average pooling to a fixed output grid, with PyTorch's AdaptiveAvgPool2d bins (bin i
    of n over a length L spans floor(i·L/n) to ceil((i+1)·L/n)); needs static spatial sizes."""

    def __init__(self, output_size: int, **kwargs):
        super().__init__(**kwargs)
        self.output_size = output_size

    def call(self, inputs):
        height, width = inputs.shape[1], inputs.shape[2]
        n = self.output_size

        def bins(length):
            return [(i * length // n, -(-(i + 1) * length // n)) for i in range(n)]

        rows = []
        for top, bottom in bins(height):
            cells = [
                keras.ops.mean(inputs[:, top:bottom, left:right, :], axis=(1, 2))
                for left, right in bins(width)
            ]
            rows.append(keras.ops.stack(cells, axis=1))
        return keras.ops.stack(rows, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_size, self.output_size, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size}


def alexnet(
    *,
    config: str,
    name: str = "alexnet",
    num_classes: int = 1000,
    image_size: int | None = None,
    include_top: bool = True,
    pooling: str | None = None,
    dropout: float = 0.5,
    classifier_activation: str | None = None,
    features_only: bool = False,
    width_multiplier: float = 1.0,
    activation: str = "relu",
    normalization: str | None = None,
    head_batch_norm: bool = False,
    kernel_initializer: str = "he_uniform",
    padding: str | None = None,
    norm_epsilon: float | None = None,
    binary: str | None = None,
    mean: Sequence[float] | None = registry.IMAGENET_MEAN,
    std: Sequence[float] | None = registry.IMAGENET_STD,
) -> keras.Model:
    """Builds an AlexNet.

    Args:
      config: a key of CONFIGS ("2012": the paper's two towers; "torchvision": one tower).
      name: model name.
      num_classes: classifier outputs.
      image_size: square input size; with the top it defaults to 224 (torchvision) or 227
        (2012). Without the top, None accepts any size.
      include_top: add the adaptive 6x6 pooling and the three FC layers.
      pooling: without the top, global "avg" or "max" pooling of pool5, or None.
      dropout: dropout rate of the first two FC layers (0.5 in the paper, §4.2).
      classifier_activation: None for logits, "softmax" for probabilities.
      features_only: return conv1 (stride 4), pool1, pool2 and pool5 (strides 8, 16, 32).
      width_multiplier: scales every layer's channels, FC layers included (not in the paper;
        for small runs).
      activation: activation switch, see layers.ACTIVATIONS (ReLU in the paper, §3.1).
      normalization: None (the paper; convolutions with biases) or a normalization switch,
        which then replaces LRN, as batch normalization replaced it (arXiv 1502.03167 §4.2.1).
      head_batch_norm: batch normalization between fc6 and fc7 and their activations (see
        layers.dense_norm_act); the binary models have it anyway.
      kernel_initializer: see layers.KERNEL_INITIALIZERS (torchvision: Kaiming uniform; the
        paper: N(0, 0.01)).
      padding: None or "torch" (the table's explicit padding, torchvision's); "tf" raises a
        ValueError.
      norm_epsilon: epsilon of the normalization layers when `normalization` is given (None:
        BN_EPSILON, 1e-5).
      binary: None (real-valued) or a key of binary.MODES: conv2..conv5, fc6 and fc7 become
        binary (XNOR-Net §4); needs a `normalization`.
      mean: input mean on the 0..255 scale, or None for no input normalization.
      std: input standard deviation on the 0..255 scale (1: mean subtraction only).

    Returns:
      A keras.Model.
    """
    layers.check_choice(config, tuple(CONFIGS), "AlexNet configuration")
    if layers.padding_rule(padding, "symmetric") != "symmetric":
        raise ValueError(
            "AlexNet pads by its table's explicit amounts (torchvision's, PyTorch arithmetic): "
            "padding must be None or 'torch', not 'tf'"
        )
    if include_top and pooling is not None:
        raise ValueError("AlexNet's top flattens the 6x6 map: pooling only applies without it")
    table = CONFIGS[config]
    if include_top and image_size is None:
        image_size = 227 if config == "2012" else 224
    epsilon = layers.normalization_epsilon(norm_epsilon, BN_EPSILON)
    norm = layers.norm_kwargs(normalization, BN_MOMENTUM, epsilon, kernel_initializer)
    initializer = norm["kernel_initializer"]

    def width(filters: int) -> int:  # a multiple of 8, so the two towers stay equal
        return max(8, int(round(filters * width_multiplier / 8)) * 8)

    inputs, x = layers.input_block(image_size, mean, std)
    features = []
    for index, conv in enumerate(table.convs, start=1):
        common = dict(strides=conv.stride, groups=conv.groups, activation=activation, **norm)
        if binary is not None and index > 1:
            # A binary convolution pads after binarizing (binary.py); these paddings are all
            # (k − 1)/2, the "symmetric" rule.
            x = binary_lib.conv_norm_act(
                x,
                width(conv.filters),
                conv.kernel,
                binary=binary,
                padding="symmetric" if conv.padding else "valid",
                name=f"conv{index}",
                **common,
            )
        else:
            if conv.padding:
                x = keras.layers.ZeroPadding2D(conv.padding, name=f"conv{index}_pad")(x)
            x = layers.conv_norm_act(
                x, width(conv.filters), conv.kernel, padding="valid", name=f"conv{index}", **common
            )
        if index == 1:
            features.append(x)
        if conv.lrn and normalization is None:
            x = layers.LocalResponseNormalization(name=f"conv{index}_lrn")(x)
        if conv.pool:
            x = keras.layers.MaxPooling2D(3, strides=2, name=f"pool{index}")(x)
            features.append(x)
    if features_only:
        return keras.Model(inputs, features, name=name)
    if not include_top:
        return keras.Model(inputs, heads.pool(x, pooling), name=name)
    x = AdaptiveAveragePooling2D(POOL_GRID, name="adaptive_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for fc in ("fc6", "fc7", "predictions"):
        if fc in table.dropout_before:
            x = keras.layers.Dropout(dropout, name=f"{fc}_dropout")(x)
        if fc == "predictions":
            x = keras.layers.Dense(num_classes, kernel_initializer=initializer, name=fc)(x)
        elif binary is not None:
            x = binary_lib.dense_norm_act(
                x,
                width(FC_FILTERS),
                binary=binary,
                name=fc,
                activation=activation,
                normalization=normalization,
                norm_momentum=BN_MOMENTUM,
                norm_epsilon=epsilon,
                kernel_initializer=initializer,
            )
        else:
            x = layers.dense_norm_act(
                x,
                width(FC_FILTERS),
                name=fc,
                activation=activation,
                normalization=layers.head_batch_normalization(normalization, head_batch_norm),
                norm_momentum=BN_MOMENTUM,
                norm_epsilon=epsilon,
                kernel_initializer=initializer,
            )
    return keras.Model(inputs, heads.output(x, classifier_activation), name=name)


registry.register(
    "alexnet",
    alexnet,
    family="alexnet",
    default_resolution=224,
    min_resolution=63,  # pool5 needs a 3x3 map
    kwargs={"config": "torchvision"},
)
registry.register(
    "alexnet_2012",
    alexnet,
    family="alexnet",
    default_resolution=227,
    min_resolution=67,  # conv1 is unpadded
    crop_fraction=227 / 256,  # 227 px crops of images resized to 256 (§2)
    std=STD_2012,
    kwargs={"config": "2012"},
)
# XNOR-Net's binary AlexNets (arXiv 1603.05279 Table 1; see the module docstring).
for _binary in ("xnor", "bwn"):
    registry.register(
        f"{_binary}_alexnet",
        alexnet,
        family="alexnet",
        default_resolution=224,
        min_resolution=63,  # pool5 needs a 3x3 map
        kwargs={"config": "xnor", "binary": _binary, "normalization": "batch", "dropout": 0.0},
    )
