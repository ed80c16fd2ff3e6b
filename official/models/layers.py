"""Building blocks shared by every model family.

Model code uses `keras.layers` / `keras.ops` only (no `tf.*`), so the builders stay portable
and the graphs match keras.applications layer for layer where a family has a counterpart there.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

# Names accepted by every family's `activation` switch.
ACTIVATIONS = ("relu", "relu6", "leaky_relu", "prelu", "elu", "swish", "silu", "hard_swish")
# Names accepted by every family's `normalization` switch.
NORMALIZATIONS = ("batch", "sync_batch", "group", "layer")
# Names accepted by every family's `kernel_initializer` switch, mapped to Keras initializers.
KERNEL_INITIALIZERS = {
    "he_normal": "he_normal",
    "kaiming_normal": "he_normal",
    "he_uniform": "he_uniform",
    "kaiming_uniform": "he_uniform",
    "glorot_normal": "glorot_normal",
    "xavier_normal": "glorot_normal",
    "glorot_uniform": "glorot_uniform",
    "xavier_uniform": "glorot_uniform",
}


def check_choice(value: str, choices: Sequence[str], what: str) -> str:
    """Returns `value` if it is one of `choices`, else raises a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")
    return value


def kernel_initializer(name: str) -> str:
    """Maps a switch value ("he_normal", "kaiming_normal", "xavier_uniform", ...) to Keras."""
    check_choice(name, tuple(KERNEL_INITIALIZERS), "kernel_initializer")
    return KERNEL_INITIALIZERS[name]


def activation_layer(kind: str, name: str) -> keras.layers.Layer:
    """One activation layer by switch name; `swish` and `silu` are the same function."""
    check_choice(kind, ACTIVATIONS, "activation")
    if kind == "prelu":
        # One slope per channel, as in He et al. 2015 (arXiv 1502.01852 §2.1).
        return keras.layers.PReLU(shared_axes=[1, 2], name=name)
    if kind == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=0.1, name=name)
    keras_name = {"swish": "silu", "hard_swish": "hard_silu"}.get(kind, kind)
    return keras.layers.Activation(keras_name, name=name)


def normalization_layer(
    kind: str,
    name: str,
    *,
    momentum: float = 0.9,
    epsilon: float = 1e-5,
    zero_init: bool = False,
    groups: int = 32,
) -> keras.layers.Layer:
    """A normalization layer over the channel axis.

    Args:
      kind: "batch", "sync_batch" (statistics all-reduced across replicas), "group" or "layer".
      name: layer name.
      momentum: moving-average momentum of batch statistics (batch kinds only).
      epsilon: variance epsilon.
      zero_init: initialise the scale (gamma) to zero, so a residual branch starts as identity
        (Goyal et al. arXiv 1706.02677 §5.1; Bag of Tricks arXiv 1812.01187 §3.1).
      groups: number of groups for group normalization (Wu & He arXiv 1803.08494 use 32).

    Returns:
      The layer.
    """
    check_choice(kind, NORMALIZATIONS, "normalization")
    gamma = "zeros" if zero_init else "ones"
    if kind in ("batch", "sync_batch"):
        return keras.layers.BatchNormalization(
            momentum=momentum,
            epsilon=epsilon,
            gamma_initializer=gamma,
            synchronized=kind == "sync_batch",
            name=name,
        )
    if kind == "group":
        return keras.layers.GroupNormalization(
            groups=groups, epsilon=epsilon, gamma_initializer=gamma, name=name
        )
    return keras.layers.LayerNormalization(epsilon=epsilon, gamma_initializer=gamma, name=name)


def conv2d(
    x,
    filters: int,
    kernel_size: int,
    *,
    strides: int = 1,
    dilation_rate: int = 1,
    groups: int = 1,
    use_bias: bool = False,
    padding: str = "symmetric",
    kernel_initializer: str = "he_normal",
    name: str,
):
    """A 2-D convolution with explicit padding rules.

    Args:
      x: input tensor.
      filters: output channels.
      kernel_size: square kernel size.
      strides: stride.
      dilation_rate: dilation (atrous) rate; keeps resolution without more parameters.
      groups: grouped convolution (ResNeXt / ShuffleNet).
      use_bias: add a bias; off before a normalization layer, which has its own shift.
      padding: "symmetric" pads (k-1)*d/2 on both sides before a VALID convolution when the
        stride is above 1, as tensorflow/tpu's `conv2d_fixed_padding` and PyTorch do, so the
        output does not depend on the input size being even; "same" is TensorFlow's SAME
        (extra row/column at the bottom/right); "valid" pads nothing.
      kernel_initializer: a Keras initializer name.
      name: layer name; a padding layer, when needed, is named `name + "_pad"`.

    Returns:
      The output tensor.
    """
    check_choice(padding, ("symmetric", "same", "valid"), "padding")
    keras_padding = padding
    if padding == "symmetric":
        keras_padding = "same"
        total = (kernel_size - 1) * dilation_rate
        if strides > 1 and total > 0:
            x = keras.layers.ZeroPadding2D(
                padding=((total // 2, total - total // 2),) * 2, name=name + "_pad"
            )(x)
            keras_padding = "valid"
        elif strides > 1:
            keras_padding = "valid"
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=keras_padding,
        dilation_rate=dilation_rate,
        groups=groups,
        use_bias=use_bias,
        kernel_initializer=kernel_initializer,
        name=name,
    )(x)


def conv_norm_act(
    x,
    filters: int,
    kernel_size: int,
    *,
    name: str,
    strides: int = 1,
    dilation_rate: int = 1,
    groups: int = 1,
    padding: str = "symmetric",
    activation: str | None = "relu",
    normalization: str = "batch",
    norm_momentum: float = 0.9,
    norm_epsilon: float = 1e-5,
    zero_init: bool = False,
    kernel_initializer: str = "he_normal",
):
    """Convolution (no bias) → normalization → optional activation, named `name_{conv,bn,act}`.

    The naming follows keras.applications (`conv2_block1_1_conv`, `..._bn`), so weights can be
    ported layer by layer. Pass `activation=None` for a linear output (e.g. the last BN of a
    residual branch, before the addition).
    """
    x = conv2d(
        x,
        filters,
        kernel_size,
        strides=strides,
        dilation_rate=dilation_rate,
        groups=groups,
        padding=padding,
        kernel_initializer=kernel_initializer,
        name=name + "_conv",
    )
    x = normalization_layer(
        normalization,
        name + "_bn",
        momentum=norm_momentum,
        epsilon=norm_epsilon,
        zero_init=zero_init,
    )(x)
    if activation is not None:
        # keras.applications names these `..._relu`; the name stays when the activation changes.
        x = activation_layer(activation, name + "_relu")(x)
    return x


def input_block(
    image_size: int | None,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    name: str = "input_normalization",
):
    """The model input (0..255 pixels, any float or integer dtype) and its normalization.

    Images stay uint8 in the input pipeline and are normalized here, once per batch on the
    device: per-image float normalization inside tf.data costs about 40% of the pipeline's
    throughput on a 2-core machine (../shared/reference/perf-baseline.md §e).

    Args:
      image_size: square input size, or None for a fully-convolutional model of any size.
      mean: per-channel mean on the 0..255 scale, or None to feed the network unnormalized.
      std: per-channel standard deviation on the 0..255 scale (required with `mean`).
      name: name of the normalization layer.

    Returns:
      (inputs, x): the keras.Input and the normalized tensor.
    """
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    if mean is None:
        return inputs, inputs
    if std is None or len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 channels each, got mean={mean} std={std}")
    variance = [float(s) ** 2 for s in std]
    # float32 so the subtraction is exact under a bfloat16 policy; the next layer casts.
    x = keras.layers.Normalization(
        mean=list(mean), variance=variance, axis=-1, dtype="float32", name=name
    )(inputs)
    return inputs, x
