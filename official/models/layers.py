"""Building blocks shared by every model family.

Model code uses `keras.layers` / `keras.ops` only (no `tf.*`), so the builders stay portable
and the graphs match keras.applications layer for layer where a family has a counterpart there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras

# Names accepted by every family's `activation` switch.
ACTIVATIONS = (
    "relu",
    "relu6",
    "leaky_relu",
    "prelu",
    "elu",
    "swish",
    "silu",
    "hard_swish",
    "tanh",
    "lecun_tanh",
    # Klambauer et al. arXiv 1706.02515 eq. 2: self-normalizing only with LeCun-normal kernels
    # ("lecun_normal") and without normalization layers (§ "Initialization").
    "selu",
)
# Names accepted by every family's `normalization` switch.
NORMALIZATIONS = ("batch", "sync_batch", "group", "layer", "instance")
# The kinds that keep moving statistics (BatchNormalization layers); the others normalize each
# sample by its own statistics and have only a scale and an offset.
BATCH_NORMALIZATIONS = ("batch", "sync_batch")


def head_batch_normalization(normalization: str | None, enabled: bool) -> str | None:
    """The normalization of a head's hidden FC layers under the `head_batch_norm` switch: None
    when off; the synchronized kind when the convolutions use it, else "batch" (the other kinds
    are per-sample statistics over a feature map, which a vector does not have)."""
    if not enabled:
        return None
    return "sync_batch" if normalization == "sync_batch" else "batch"


# He et al. (arXiv 1502.01852 §2.2) with the fan-out variance, N(0, 2 / (k·k·c_out)): the
# initializer of the EfficientNet and MobileNet reference code (tensorflow/tpu
# efficientnet_model.py `conv_kernel_initializer`, an untruncated normal) and of torchvision's
# `kaiming_normal_(mode="fan_out")`.
_HE_NORMAL_FAN_OUT = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal"},
}
# Names accepted by every family's `kernel_initializer` switch, mapped to Keras initializers.
KERNEL_INITIALIZERS = {
    "he_normal": "he_normal",
    "kaiming_normal": "he_normal",
    "he_normal_fan_out": _HE_NORMAL_FAN_OUT,
    "kaiming_normal_fan_out": _HE_NORMAL_FAN_OUT,
    "he_uniform": "he_uniform",
    "kaiming_uniform": "he_uniform",
    "glorot_normal": "glorot_normal",
    "xavier_normal": "glorot_normal",
    "glorot_uniform": "glorot_uniform",
    "xavier_uniform": "glorot_uniform",
    # N(0, 1 / fan_in), truncated: the initialization SELU's fixed point needs (Klambauer et al.
    # arXiv 1706.02515 § "Initialization").
    "lecun_normal": "lecun_normal",
    # N(0, 10⁻²): VGG's initialization of the shallow configuration A (arXiv 1409.1556 §3.1)
    # and AlexNet's (Krizhevsky et al. 2012 §5).
    "normal_0.01": {"class_name": "RandomNormal", "config": {"mean": 0.0, "stddev": 0.01}},
}


def check_choice(value: str, choices: Sequence[str], what: str) -> str:
    """Returns `value` if it is one of `choices`, else raises a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")
    return value


def kernel_initializer(name: str) -> keras.initializers.Initializer:
    """Maps a switch value ("he_normal", "kaiming_normal", "xavier_uniform", ...) to Keras."""
    check_choice(name, tuple(KERNEL_INITIALIZERS), "kernel_initializer")
    return keras.initializers.get(KERNEL_INITIALIZERS[name])


def norm_kwargs(
    normalization: str | None, momentum: float, epsilon: float, initializer: str
) -> dict:
    """The normalization and kernel-initializer arguments a builder fixes once for all its
    convolutions (`conv_norm_act`, `depthwise_separable`, `inverted_residual`).

    Args:
      normalization: the builder's normalization switch (None: convolutions with biases).
      momentum: BN momentum of the family (its reference code's value).
      epsilon: BN epsilon of the family.
      initializer: the builder's kernel_initializer switch, see KERNEL_INITIALIZERS.

    Returns:
      {"normalization", "norm_momentum", "norm_epsilon", "kernel_initializer"} (the
      initializer resolved to a Keras initializer).
    """
    return dict(
        normalization=normalization,
        norm_momentum=momentum,
        norm_epsilon=epsilon,
        kernel_initializer=kernel_initializer(initializer),
    )


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Rounds a channel count to the nearest multiple of `divisor`, never more than 10% down.

    The rule of the MobileNet and EfficientNet reference code (TF-slim
    `mobilenet.py::_make_divisible`, tensorflow/tpu `efficientnet_model.py::round_filters`):
    hardware likes multiples of 8, and the 10% guard keeps narrow layers from collapsing.

    Args:
      value: the exact (scaled) channel count.
      divisor: the multiple to round to.
      min_value: lower bound; defaults to `divisor`.

    Returns:
      The rounded channel count.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


def activation_layer(kind: str, name: str, *, spatial: bool = True) -> keras.layers.Layer:
    """One activation layer by switch name; `swish` and `silu` are the same function.

    Args:
      kind: one of ACTIVATIONS.
      name: layer name.
      spatial: the input is a feature map (N, H, W, C); False for (N, C) vectors (PReLU then
        learns one slope per unit instead of sharing it over height and width).
    """
    check_choice(kind, ACTIVATIONS, "activation")
    if kind == "prelu":
        # One slope per channel, as in He et al. 2015 (arXiv 1502.01852 §2.1).
        return keras.layers.PReLU(shared_axes=[1, 2] if spatial else None, name=name)
    if kind == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=0.1, name=name)
    if kind == "lecun_tanh":
        return LeCunTanh(name=name)
    keras_name = {"swish": "silu", "hard_swish": "hard_silu"}.get(kind, kind)
    return keras.layers.Activation(keras_name, name=name)


def normalization_layer(
    kind: str,
    name: str,
    *,
    channels: int | None = None,
    momentum: float = 0.9,
    epsilon: float = 1e-5,
    zero_init: bool = False,
    scale: bool = True,
    groups: int = 32,
    spatial: bool = True,
) -> keras.layers.Layer:
    """A normalization layer over the channel axis.

    Args:
      kind: "batch", "sync_batch" (statistics all-reduced across replicas), "group", "layer"
        or "instance" (Ulyanov et al. arXiv 1607.08022 eq. 2: each sample's channel by its own
        mean and variance over height and width; a GroupNormalization with one channel per
        group, as Keras 3 has no instance normalization layer).
      name: layer name.
      channels: channels of the input; group normalization then uses the largest divisor of it
        that is at most `groups` (narrow MobileNet layers have 8 or 16 channels).
      momentum: moving-average momentum of batch statistics (batch kinds only).
      epsilon: variance epsilon.
      zero_init: initialise the scale (gamma) to zero, so a residual branch starts as identity
        (Goyal et al. arXiv 1706.02677 §5.1; Bag of Tricks arXiv 1812.01187 §3.1).
      scale: learn a scale (gamma); TF-slim's Inception leaves it out because a linear layer
        (the next convolution) follows every ReLU.
      groups: number of groups for group normalization (Wu & He arXiv 1803.08494 use 32).
      spatial: the input is a feature map (N, H, W, C); False for (N, C) vectors, which
        instance normalization would reduce to its offset (one value per statistic).

    Returns:
      The layer.
    """
    check_choice(kind, NORMALIZATIONS, "normalization")
    if kind == "instance" and not spatial:
        raise ValueError(
            f"instance normalization needs a feature map, not the vector of {name}: "
            "choose another normalization"
        )
    gamma = "zeros" if zero_init else "ones"
    if kind in ("batch", "sync_batch"):
        return keras.layers.BatchNormalization(
            momentum=momentum,
            epsilon=epsilon,
            scale=scale,
            gamma_initializer=gamma,
            synchronized=kind == "sync_batch",
            name=name,
        )
    if kind == "group":
        if channels is not None:
            groups = math.gcd(groups, channels)
        return keras.layers.GroupNormalization(
            groups=groups, epsilon=epsilon, scale=scale, gamma_initializer=gamma, name=name
        )
    if kind == "instance":
        # groups=-1: one group per channel, whatever the channel count (Keras' own convention).
        return keras.layers.GroupNormalization(
            groups=-1 if channels is None else channels,
            epsilon=epsilon,
            scale=scale,
            gamma_initializer=gamma,
            name=name,
        )
    return keras.layers.LayerNormalization(
        epsilon=epsilon, scale=scale, gamma_initializer=gamma, name=name
    )


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


# Values of every builder's `padding` switch, and the rule of `conv2d` / `pool2d` each selects:
# TensorFlow's SAME, or PyTorch's symmetric (k − 1)·d/2 on each side.
PADDINGS = ("tf", "torch")
_PADDING_RULES = {"tf": "same", "torch": "symmetric"}


def padding_rule(padding: str | None, reference: str) -> str:
    """The `conv2d` / `pool2d` padding rule a builder's `padding` switch selects.

    Args:
      padding: the switch: None (the family's reference), "tf" or "torch".
      reference: the family's own rule, returned for None.

    Returns:
      "same" for "tf", "symmetric" for "torch", else `reference`.
    """
    if padding is None:
        return reference
    return _PADDING_RULES[check_choice(padding, PADDINGS, "padding")]


def normalization_epsilon(norm_epsilon: float | None, reference: float) -> float:
    """The epsilon of every normalization layer a builder makes: its `norm_epsilon` switch, or
    the family's reference value for None.

    Checkpoints carry moving variances for the epsilon they were trained with (PyTorch's
    BatchNorm2d: 1e-5; TF-slim and Keras models: 1e-3); a port can fold the difference into the
    moving variance only where that variance exceeds it, so a model built for foreign weights
    takes the source's epsilon instead.
    """
    if norm_epsilon is None:
        return reference
    if not norm_epsilon > 0:
        raise ValueError(f"norm_epsilon must be positive, got {norm_epsilon}")
    return float(norm_epsilon)


def window_padding(x, kernel_size, strides: int, dilation_rate: int, padding: str, name: str):
    """Applies the padding rule shared by every convolution before a Keras layer.

    "symmetric" pads (k − 1)·d/2 zeros on each side when the stride is above 1 (a padding
    layer `name + "_pad"`) and uses Keras' "same" at stride 1, which is the same for odd
    kernels; "same" is Keras' (TensorFlow's) SAME; "valid" pads nothing.

    Returns:
      (x, the padding argument of the Keras layer that follows).
    """
    check_choice(padding, ("symmetric", "same", "valid"), "padding")
    if padding != "symmetric" or strides == 1:
        return x, "valid" if padding == "valid" else "same"
    totals = [(k - 1) * dilation_rate for k in _pair(kernel_size)]
    if any(totals):
        x = keras.layers.ZeroPadding2D(
            padding=tuple((t // 2, t - t // 2) for t in totals), name=name + "_pad"
        )(x)
    return x, "valid"


@keras.saving.register_keras_serializable(package="official")
class WindowPadding2D(keras.layers.Layer):
    """Pads height and width with a constant for a k×k window of stride s that follows with
    VALID padding.

    rule "same": TensorFlow's SAME amounts, total max((⌈n/s⌉ − 1)·s + k − n, 0) with the extra
    cell at the bottom/right, computed from the size seen at run time (so a model built for any
    size pads odd and even maps alike; keras.applications' `correct_pad` assumes even unknown
    sizes); rule "symmetric": (k − 1)/2 on each side, PyTorch's padding=k//2 for odd kernels.
    A value of −inf makes the padded cells lose every max (PyTorch's MaxPool2d); zeros are what
    keras.applications pads its poolings with.
    """

    def __init__(self, kernel_size, strides: int, rule: str = "same", value: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = _pair(kernel_size)
        self.strides = int(strides)
        self.rule = check_choice(rule, ("same", "symmetric"), "padding rule")
        self.value = float(value)

    def _amounts(self, size, kernel):
        """(before, after) for one axis; `size` an int or a scalar tensor."""
        if self.rule == "symmetric":
            return (kernel - 1) // 2, kernel - 1 - (kernel - 1) // 2
        outputs = (size + self.strides - 1) // self.strides
        if isinstance(size, int):
            total = max((outputs - 1) * self.strides + kernel - size, 0)
        else:
            total = keras.ops.maximum((outputs - 1) * self.strides + kernel - size, 0)
        return total // 2, total - total // 2

    def call(self, inputs):
        shape = keras.ops.shape(inputs)
        pads = [
            list(self._amounts(size, kernel))
            for size, kernel in zip((shape[1], shape[2]), self.kernel_size)
        ]
        return keras.ops.pad(inputs, [[0, 0], pads[0], pads[1], [0, 0]], constant_values=self.value)

    def compute_output_shape(self, input_shape):
        sizes = [
            None if size is None else size + sum(self._amounts(int(size), kernel))
            for size, kernel in zip(input_shape[1:3], self.kernel_size)
        ]
        return (input_shape[0], *sizes, input_shape[3])

    def get_config(self):
        return {
            **super().get_config(),
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "rule": self.rule,
            "value": self.value,
        }


def pool2d(
    x,
    kind: str,
    pool_size: int,
    *,
    strides: int,
    padding: str,
    name: str,
    pad_with_zeros: bool = False,
    pad_name: str | None = None,
):
    """Max or average pooling with the padding rules of `conv2d`, the one place every family
    pads a pooling.

    Args:
      x: input tensor.
      kind: "max" or "avg".
      pool_size: window size (odd where the rule pads).
      strides: stride.
      padding: "same": TensorFlow's SAME, whose padded cells take no part (max pooling never
        picks them, average pooling does not count them); "symmetric": PyTorch's
        MaxPool2d / AvgPool2d(k, s, padding=k//2), max pooling padded with −inf (padding never
        wins, also after a signed activation), average pooling with zeros that are counted
        (PyTorch's default count_include_pad=True); "valid": no padding.
      name: name of the pooling layer.
      pad_with_zeros: pad with zeros by the rule's amounts before a VALID pooling, as
        keras.applications does (ZeroPadding2D before ResNet's and DenseNet's stem pooling,
        `correct_pad` in NASNet's reduction cells): zeros can win a max pooling (after a ReLU
        never more than the −inf rule) and are counted by average pooling.
      pad_name: name of the padding layer, if any (default `name + "_pad"`).

    Returns:
      The output tensor.
    """
    check_choice(kind, ("max", "avg"), "pooling kind")
    check_choice(padding, ("symmetric", "same", "valid"), "padding")
    pooling = {"max": keras.layers.MaxPooling2D, "avg": keras.layers.AveragePooling2D}[kind]
    pad_name = pad_name or name + "_pad"
    keras_padding = "valid" if padding == "valid" else "same"
    if padding == "symmetric" and (pad_with_zeros or kind == "avg"):
        total = pool_size - 1
        x = keras.layers.ZeroPadding2D((total // 2, total - total // 2), name=pad_name)(x)
        keras_padding = "valid"
    elif padding == "symmetric" and strides > 1:
        x = WindowPadding2D(pool_size, strides, "symmetric", float("-inf"), name=pad_name)(x)
        keras_padding = "valid"
    elif padding == "same" and pad_with_zeros:
        x = WindowPadding2D(pool_size, strides, "same", 0.0, name=pad_name)(x)
        keras_padding = "valid"
    # Left: "valid"; TF SAME; symmetric max pooling at stride 1, which is SAME for odd windows.
    return pooling(pool_size, strides=strides, padding=keras_padding, name=name)(x)


def conv2d(
    x,
    filters: int,
    kernel_size: int | Sequence[int],
    *,
    strides: int = 1,
    dilation_rate: int = 1,
    groups: int = 1,
    use_bias: bool = False,
    padding: str = "symmetric",
    kernel_initializer: str | keras.initializers.Initializer = "he_normal",
    name: str,
):
    """A 2-D convolution with explicit padding rules.

    Args:
      x: input tensor.
      filters: output channels.
      kernel_size: square kernel size, or (height, width) (Inception's 1x7 and 7x1).
      strides: stride.
      dilation_rate: dilation (atrous) rate; keeps resolution without more parameters.
      groups: grouped convolution (ResNeXt / ShuffleNet).
      use_bias: add a bias; off before a normalization layer, which has its own shift.
      padding: "symmetric" pads (k-1)*d/2 on both sides before a VALID convolution when the
        stride is above 1, as tensorflow/tpu's `conv2d_fixed_padding` and PyTorch do, so the
        output does not depend on the input size being even; "same" is TensorFlow's SAME
        (extra row/column at the bottom/right; the padding of TF-slim, tensorflow/tpu
        EfficientNet and keras.applications' MobileNets); "valid" pads nothing. A builder's
        `padding` switch picks the first two: "torch" → "symmetric", "tf" → "same"
        (`padding_rule`). Both give ⌈n/s⌉ outputs for odd kernels; they differ on even sizes at
        stride 2, where SAME pads (k−1)/2 − 1 before and (k−1)/2 after.
      kernel_initializer: a Keras initializer or its name.
      name: layer name; a padding layer, when needed, is named `name + "_pad"`.

    Returns:
      The output tensor.
    """
    x, keras_padding = window_padding(x, kernel_size, strides, dilation_rate, padding, name)
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


def separable_conv2d(
    x,
    filters: int,
    kernel_size: int | Sequence[int],
    *,
    strides: int = 1,
    use_bias: bool = False,
    padding: str = "same",
    kernel_initializer: str | keras.initializers.Initializer = "he_normal",
    name: str,
):
    """A depthwise-separable convolution as ONE layer: a k×k filter per input channel, then a
    1x1 convolution, with nothing in between (keras SeparableConv2D, TF-slim
    separable_conv2d with depth multiplier 1).

    Xception and NASNet use this form: Chollet (arXiv 1610.02357 §4.7, Figure 10) finds that
    no non-linearity between the depthwise and the pointwise step trains faster and better.
    MobileNet's form, with normalization and activation after the depthwise step, is
    `depthwise_separable`. Multiply-adds per output position: k²·C_in + C_in·C_out.

    Args:
      x: input tensor.
      filters: output channels of the pointwise step.
      kernel_size: depthwise kernel size.
      strides: stride of the depthwise step.
      use_bias: add a bias (after the pointwise step).
      padding: see `conv2d`.
      kernel_initializer: initializer of both kernels.
      name: layer name; a padding layer, when needed, is named `name + "_pad"`.

    Returns:
      The output tensor.
    """
    x, keras_padding = window_padding(x, kernel_size, strides, 1, padding, name)
    return keras.layers.SeparableConv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=keras_padding,
        use_bias=use_bias,
        depthwise_initializer=kernel_initializer,
        pointwise_initializer=kernel_initializer,
        name=name,
    )(x)


def conv_norm_act(
    x,
    filters: int,
    kernel_size: int | Sequence[int],
    *,
    name: str,
    strides: int = 1,
    dilation_rate: int = 1,
    groups: int = 1,
    padding: str = "symmetric",
    activation: str | None = "relu",
    normalization: str | None = "batch",
    norm_momentum: float = 0.9,
    norm_epsilon: float = 1e-5,
    norm_scale: bool = True,
    zero_init: bool = False,
    use_bias: bool | None = None,
    kernel_initializer: str | keras.initializers.Initializer = "he_normal",
):
    """Convolution → normalization → optional activation, named `name_{conv,bn,relu}`.

    The naming follows keras.applications (`conv2_block1_1_conv`, `..._bn`), so weights can be
    ported layer by layer. Pass `activation=None` for a linear output (e.g. the last BN of a
    residual branch, before the addition), and `normalization=None` for the pre-BN networks
    (VGG, GoogLeNet), whose convolutions carry a bias instead.

    Args:
      use_bias: None: a bias only without normalization (a BN's shift makes it redundant);
        True keeps it anyway (torchvision's VGG-BN, whose parameter count we match).
      norm_scale: see `normalization_layer(scale=...)`.
      Others: as `conv2d` and `normalization_layer`.
    """
    x = conv2d(
        x,
        filters,
        kernel_size,
        strides=strides,
        dilation_rate=dilation_rate,
        groups=groups,
        padding=padding,
        use_bias=normalization is None if use_bias is None else use_bias,
        kernel_initializer=kernel_initializer,
        name=name + "_conv",
    )
    if normalization is not None:
        x = normalization_layer(
            normalization,
            name + "_bn",
            channels=filters,
            momentum=norm_momentum,
            epsilon=norm_epsilon,
            scale=norm_scale,
            zero_init=zero_init,
        )(x)
    if activation is not None:
        # keras.applications names these `..._relu`; the name stays when the activation changes.
        x = activation_layer(activation, name + "_relu")(x)
    return x


def dense_norm_act(
    x,
    units: int,
    *,
    name: str,
    activation: str | None = "relu",
    normalization: str | None = None,
    norm_momentum: float = 0.9,
    norm_epsilon: float = 1e-5,
    kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
):
    """Fully-connected layer → optional normalization → optional activation, named `name`,
    `name_bn`, `name_relu` (the hidden FC layers of the VGG-style heads).

    With a normalization the layer has no bias (the normalization's offset replaces it), as
    Ioffe & Szegedy put BN between the affine map and the nonlinearity (arXiv 1502.03167 §3.2).
    """
    x = keras.layers.Dense(
        units, use_bias=normalization is None, kernel_initializer=kernel_initializer, name=name
    )(x)
    if normalization is not None:
        x = normalization_layer(
            normalization,
            name + "_bn",
            channels=units,
            momentum=norm_momentum,
            epsilon=norm_epsilon,
            spatial=False,
        )(x)
    if activation is not None:
        x = activation_layer(activation, name + "_relu", spatial=False)(x)
    return x


def squeeze_excite(
    x,
    reduced_filters: int,
    *,
    name: str,
    activation: str = "relu",
    gate: str = "sigmoid",
    kernel_initializer: str | keras.initializers.Initializer = "he_normal",
):
    """Squeeze-and-excitation (Hu et al. arXiv 1709.01507 §3): channel weights from pooled
    features, x * gate(W2 act(W1 avgpool(x))).

    The two fully-connected layers are 1x1 convolutions with biases on the pooled (1x1) map, as
    in the EfficientNet and MobileNetV3 reference code, so their weights port as they are.

    Args:
      x: input feature map (N, H, W, C).
      reduced_filters: width of the bottleneck (C · ratio, rounded by the caller's rule).
      name: prefix: `name_squeeze`, `name_reduce`, `name_expand`, `name_excite`.
      activation: activation after the reduction (ReLU in SENet, swish in EfficientNet).
      gate: "sigmoid" (SENet, EfficientNet) or "hard_sigmoid" (MobileNetV3 §5.2).
      kernel_initializer: initializer of both convolutions.

    Returns:
      The re-weighted feature map.
    """
    check_choice(gate, ("sigmoid", "hard_sigmoid"), "squeeze-excitation gate")
    channels = x.shape[-1]
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=name + "_squeeze")(x)
    s = keras.layers.Conv2D(
        reduced_filters, 1, kernel_initializer=kernel_initializer, name=name + "_reduce"
    )(s)
    s = activation_layer(activation, name + "_relu")(s)
    s = keras.layers.Conv2D(
        channels, 1, kernel_initializer=kernel_initializer, name=name + "_expand"
    )(s)
    s = keras.layers.Activation(gate, name=name + "_gate")(s)
    return keras.layers.Multiply(name=name + "_excite")([x, s])


def depthwise_separable(
    x,
    filters: int,
    kernel_size: int = 3,
    *,
    name: str,
    pointwise_name: str | None = None,
    se_name: str | None = None,
    strides: int = 1,
    dilation_rate: int = 1,
    padding: str = "same",
    activation: str = "relu",
    pointwise_activation: str | None = "relu",
    se_filters: int = 0,
    se_activation: str | None = None,
    se_gate: str = "sigmoid",
    normalization: str = "batch",
    norm_momentum: float = 0.99,
    norm_epsilon: float = 1e-3,
    zero_init: bool = False,
    kernel_initializer: str | keras.initializers.Initializer = "he_normal",
):
    """Depthwise-separable convolution: depthwise k×k → norm → act → [SE] → 1x1 → norm → [act].

    A k×k convolution from M to N channels costs k²·M·N multiply-adds per pixel; splitting it
    into a per-channel k×k filter and a 1x1 mixing convolution costs k²·M + M·N, about k² (8-9×
    for 3x3) less compute and parameters (Howard et al. arXiv 1704.04861 §3.1, eq. 5). It is
    MobileNet v1's block, and with a preceding 1x1 expansion and a linear pointwise output
    (`pointwise_activation=None`) the core of the inverted residual blocks of MobileNetV2
    (arXiv 1801.04381 §3.3), MobileNetV3 and EfficientNet's MBConv (arXiv 1905.11946 §4).

    Args:
      x: input tensor.
      filters: output channels of the pointwise convolution.
      kernel_size: depthwise kernel size.
      name: prefix of the depthwise part (`name_conv`, `name_bn`, `name_relu`) and, unless
        `pointwise_name` is given, of the pointwise part (`name_pw_...`).
      pointwise_name: prefix of the pointwise part (e.g. EfficientNet's `block1a_project`).
      se_name: prefix of the squeeze-excitation layers (default `name_se`).
      strides: depthwise stride.
      dilation_rate: depthwise dilation.
      padding: see `conv2d`; "same" (TF SAME) is the padding of the reference MobileNets and
        EfficientNet.
      activation: activation after the depthwise convolution.
      pointwise_activation: activation after the pointwise convolution; None keeps the
        projection linear (MobileNetV2 §3.2: ReLU on a low-dimensional output destroys
        information).
      se_filters: > 0 adds squeeze-excitation with this bottleneck width between the depthwise
        and pointwise convolutions (MobileNetV3 §5.3, EfficientNet).
      se_activation: activation inside the SE block (default: `activation`).
      se_gate: "sigmoid" or "hard_sigmoid".
      normalization: see `normalization_layer`.
      norm_momentum: BN momentum.
      norm_epsilon: BN epsilon.
      zero_init: zero-init the last normalization's scale (residual blocks).
      kernel_initializer: initializer of all kernels.

    Returns:
      The output tensor.
    """
    pointwise_name = pointwise_name or name + "_pw"
    norm = dict(momentum=norm_momentum, epsilon=norm_epsilon)
    x, keras_padding = window_padding(x, kernel_size, strides, dilation_rate, padding, name)
    x = keras.layers.DepthwiseConv2D(
        kernel_size,
        strides=strides,
        padding=keras_padding,
        dilation_rate=dilation_rate,
        use_bias=False,
        depthwise_initializer=kernel_initializer,
        name=name + "_conv",
    )(x)
    x = normalization_layer(normalization, name + "_bn", channels=x.shape[-1], **norm)(x)
    x = activation_layer(activation, name + "_relu")(x)
    if se_filters > 0:
        x = squeeze_excite(
            x,
            se_filters,
            name=se_name or name + "_se",
            activation=se_activation or activation,
            gate=se_gate,
            kernel_initializer=kernel_initializer,
        )
    return conv_norm_act(
        x,
        filters,
        1,
        name=pointwise_name,
        activation=pointwise_activation,
        normalization=normalization,
        norm_momentum=norm_momentum,
        norm_epsilon=norm_epsilon,
        zero_init=zero_init,
        kernel_initializer=kernel_initializer,
    )


def inverted_residual(
    x,
    filters: int,
    *,
    expanded_filters: int,
    kernel_size: int,
    strides: int = 1,
    name: str,
    activation: str,
    se_filters: int = 0,
    se_activation: str | None = None,
    se_gate: str = "sigmoid",
    drop_rate: float = 0.0,
    zero_init: bool = False,
    padding: str = "same",
    normalization: str = "batch",
    norm_momentum: float = 0.99,
    norm_epsilon: float = 1e-3,
    kernel_initializer: str | keras.initializers.Initializer = "he_normal",
):
    """Inverted residual block (Sandler et al. arXiv 1801.04381 §3.3; EfficientNet's MBConv).

    1x1 expansion → depthwise-separable convolution with optional SE and a linear projection
    (`depthwise_separable`), plus an identity skip when the shapes match; the skip branch is
    dropped with `drop_rate` in training (stochastic depth). No expansion layer when
    `expanded_filters` equals the input channels, as in every reference implementation.

    Args:
      x: input tensor.
      filters: output channels.
      expanded_filters: channels after the 1x1 expansion (the family's rounding rule).
      kernel_size: depthwise kernel size.
      strides: depthwise stride.
      name: prefix: `name_expand_*`, `name_dw_*`, `name_se_*`, `name_project_*`, `name_add`.
      activation: activation after the expansion and the depthwise convolution.
      se_filters, se_activation, se_gate: squeeze-excitation, see `depthwise_separable`.
      drop_rate: stochastic-depth rate of the residual branch.
      zero_init: zero-init the projection's normalization scale when there is a skip.
      padding: padding rule of the depthwise convolution, see `conv2d` ("same": the reference
        MobileNets' and EfficientNet's).
      normalization, norm_momentum, norm_epsilon, kernel_initializer: as `conv_norm_act`.

    Returns:
      The output tensor.
    """
    norm = dict(
        normalization=normalization,
        norm_momentum=norm_momentum,
        norm_epsilon=norm_epsilon,
        kernel_initializer=kernel_initializer,
    )
    inputs = x
    if expanded_filters != x.shape[-1]:
        x = conv_norm_act(
            x, expanded_filters, 1, name=name + "_expand", activation=activation, **norm
        )
    skip = strides == 1 and inputs.shape[-1] == filters
    x = depthwise_separable(
        x,
        filters,
        kernel_size,
        strides=strides,
        name=name + "_dw",
        pointwise_name=name + "_project",
        se_name=name + "_se",
        activation=activation,
        pointwise_activation=None,
        se_filters=se_filters,
        se_activation=se_activation,
        se_gate=se_gate,
        zero_init=zero_init and skip,
        padding=padding,
        **norm,
    )
    if not skip:
        return x
    x = stochastic_depth(x, drop_rate, name=name + "_drop")
    return keras.layers.Add(name=name + "_add")([x, inputs])


def stochastic_depth(x, rate: float, name: str):
    """Drops the whole residual branch of a sample with probability `rate` in training.

    Huang et al. arXiv 1603.09382 §3; EfficientNet's "drop connect" (tensorflow/tpu
    `utils.drop_connect`). The kept branches are divided by 1 - rate, so inference needs no
    rescaling: a Dropout whose mask is shared over height, width and channels.
    """
    if rate <= 0:
        return x
    return keras.layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=name)(x)


@keras.saving.register_keras_serializable(package="official")
class LeCunTanh(keras.layers.Layer):
    """1.7159 · tanh(2x/3), LeNet-5's squashing function (LeCun et al. 1998, Appendix A): unit
    variance outputs for unit variance inputs, and f(±1) = ±1."""

    def call(self, inputs):
        return 1.7159 * keras.ops.tanh(inputs * (2.0 / 3.0))


@keras.saving.register_keras_serializable(package="official")
class LocalResponseNormalization(keras.layers.Layer):
    """Cross-channel local response normalization (Krizhevsky et al. 2012 §3.3).

    b_c = a_c / (k + alpha · Σ a_j²)^beta over the `size` channels centred on c. The defaults
    are AlexNet's (k=2, n=5, alpha=1e-4, beta=0.75), which VGG's A-LRN uses (arXiv 1409.1556
    §2.3). Written with keras.ops (Keras 3 has no LRN layer).
    """

    def __init__(self, size=5, k=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        self.size, self.k, self.alpha, self.beta = size, k, alpha, beta

    def call(self, inputs):
        channels = inputs.shape[-1]
        half = self.size // 2
        squares = keras.ops.pad(
            keras.ops.square(inputs), [[0, 0], [0, 0], [0, 0], [half, self.size - 1 - half]]
        )
        window = sum(squares[..., i : i + channels] for i in range(self.size))
        return inputs / keras.ops.power(self.k + self.alpha * window, self.beta)

    def get_config(self):
        return {
            **super().get_config(),
            "size": self.size,
            "k": self.k,
            "alpha": self.alpha,
            "beta": self.beta,
        }


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
