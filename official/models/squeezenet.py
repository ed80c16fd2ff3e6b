"""SqueezeNet (Iandola et al. arXiv 1602.07360) 1.0 and torchvision's 1.1, as one table and
one builder.

Fire modules (§3.2): a 1x1 "squeeze" convolution to s channels, then 1x1 and 3x3 "expand"
convolutions (e channels each) whose outputs are concatenated, every convolution followed by
ReLU. The classifier is convolutional (§3.3): dropout 0.5, a 1x1 convolution to the classes,
ReLU, global average pooling — no fully-connected layer. Layouts and max pooling (3x3/2 with
PyTorch's ceil mode) follow torchvision's squeezenet.py (1,248,424 / 1,235,496 parameters);
1.1 (from the authors' SqueezeNet v1.1 release) starts with a 3x3 convolution of 64 channels
and pools earlier: 2.4x less computation at the same accuracy.

Padding (the `padding` switch): the strided stem convolution is unpadded, the 3x3 expand
convolutions pad one pixel at stride 1, and the max poolings run in PyTorch's ceil mode
(`CeilMaxPooling2D`): torchvision's arithmetic, so "torch" is None. No TensorFlow reference
exists (SAME pooling would give one more output on odd sizes): "tf" is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from official.models import heads, layers, registry

# Per variant: (stem filters, stem kernel), then the network as "pool" or (squeeze, expand).
CONFIGS = {
    "1.0": (
        (96, 7),
        (
            "pool",
            (16, 64),
            (16, 64),
            (32, 128),
            "pool",
            (32, 128),
            (48, 192),
            (48, 192),
            (64, 256),
            "pool",
            (64, 256),
        ),
    ),
    "1.1": (
        (64, 3),
        (
            "pool",
            (16, 64),
            (16, 64),
            "pool",
            (32, 128),
            (32, 128),
            "pool",
            (48, 192),
            (48, 192),
            (64, 256),
            (64, 256),
        ),
    ),
}
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


class CeilMaxPooling2D(keras.layers.Layer):
    """3x3/2 max pooling with PyTorch's ceil_mode=True: the last window may run past the edge
    (out-of-range cells never win). Padding one row and column of -inf and pooling VALID gives
    exactly ceil((H − 3) / 2) + 1 outputs with the same maxima, for any input size."""

    def call(self, inputs):
        padded = keras.ops.pad(
            inputs, [[0, 0], [0, 1], [0, 1], [0, 0]], constant_values=float("-inf")
        )
        return keras.ops.max_pool(padded, 3, strides=2, padding="valid")

    def compute_output_shape(self, input_shape):
        height, width = (None if d is None else (d - 2) // 2 + 1 for d in input_shape[1:3])
        return (input_shape[0], height, width, input_shape[3])


def squeezenet(
    *,
    version: str,
    name: str = "squeezenet",
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
    kernel_initializer: str = "he_uniform",
    padding: str | None = None,
    norm_epsilon: float | None = None,
    mean: Sequence[float] | None = registry.IMAGENET_MEAN,
    std: Sequence[float] | None = registry.IMAGENET_STD,
) -> keras.Model:
    """Builds a SqueezeNet.

    Args:
      version: "1.0" or "1.1".
      name: model name.
      num_classes: classifier outputs.
      image_size: square input size (>= 32), or None for any size.
      include_top: add the convolutional classifier (dropout, 1x1 convolution, ReLU, global
        average pooling).
      pooling: without the top, global "avg" or "max" pooling of the last fire module, or None.
      dropout: dropout before the classifier convolution (0.5, §3.3).
      classifier_activation: None for logits, "softmax" for probabilities.
      features_only: return the stem and the map after each max pooling (strides 2, 4, 8, 16).
      width_multiplier: scales every fire module's and the stem's channels (not in the paper).
      activation: activation switch, see layers.ACTIVATIONS (ReLU in the paper; the classifier
        keeps ReLU before its pooling, as torchvision's).
      normalization: None (the paper) or a normalization switch after each convolution.
      kernel_initializer: see layers.KERNEL_INITIALIZERS (torchvision: Kaiming uniform).
      padding: None or "torch" (torchvision's); "tf" raises a ValueError.
      norm_epsilon: epsilon of the normalization layers when `normalization` is given (None:
        BN_EPSILON, 1e-5).
      mean: input mean on the 0..255 scale, or None for no input normalization.
      std: input standard deviation on the 0..255 scale.

    Returns:
      A keras.Model.
    """
    layers.check_choice(version, tuple(CONFIGS), "SqueezeNet version")
    if layers.padding_rule(padding, "symmetric") != "symmetric":
        raise ValueError(
            "SqueezeNet pools in PyTorch's ceil mode (torchvision's, its only reference): "
            "padding must be None or 'torch', not 'tf'"
        )
    (stem_filters, stem_kernel), table = CONFIGS[version]
    epsilon = layers.normalization_epsilon(norm_epsilon, BN_EPSILON)
    norm = layers.norm_kwargs(normalization, BN_MOMENTUM, epsilon, kernel_initializer)

    def width(filters: int) -> int:
        return max(8, int(round(filters * width_multiplier)))

    def conv(x, filters, kernel, name, strides=1):
        return layers.conv_norm_act(
            x,
            filters,
            kernel,
            strides=strides,
            padding="valid" if kernel > 1 and strides > 1 else "same",
            name=name,
            activation=activation,
            **norm,
        )

    inputs, x = layers.input_block(image_size, mean, std)
    x = conv(x, width(stem_filters), stem_kernel, "conv1", strides=2)
    features = [x]
    fire, pool = 1, 1
    for step in table:
        if step == "pool":
            x = CeilMaxPooling2D(name=f"pool{pool}")(x)
            features.append(x)
            pool += 1
            continue
        squeeze, expand = step
        fire += 1  # the paper numbers fire modules from 2
        prefix = f"fire{fire}"
        s = conv(x, width(squeeze), 1, f"{prefix}_squeeze")
        x = keras.layers.Concatenate(name=f"{prefix}_concat")(
            [
                conv(s, width(expand), 1, f"{prefix}_expand1x1"),
                conv(s, width(expand), 3, f"{prefix}_expand3x3"),
            ]
        )
    if features_only:
        return keras.Model(inputs, features[:4], name=name)
    if not include_top:
        return keras.Model(inputs, heads.pool(x, pooling), name=name)
    x = keras.layers.Dropout(dropout, name="classifier_dropout")(x)
    x = keras.layers.Conv2D(
        num_classes, 1, kernel_initializer=norm["kernel_initializer"], name="predictions"
    )(x)
    x = keras.layers.Activation("relu", name="predictions_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="predictions_pool")(x)
    return keras.Model(inputs, heads.output(x, classifier_activation), name=name)


for _version in CONFIGS:
    registry.register(
        "squeezenet" + _version.replace(".", "_"),
        squeezenet,
        family="squeezenet",
        default_resolution=224,
        kwargs={"version": _version},
    )
