"""Binary networks in Keras 3: sign quantizers with surrogate gradients, binarized convolution
and dense layers that keep latent real-valued weights, and the binary blocks the ResNet and
AlexNet builders switch to (their `binary` argument).

Larq, the usual Keras library for this, subclasses `tf.keras` layers and needs legacy Keras 2
(TF_USE_LEGACY_KERAS=1, larq/larq#887, #909): everything here is `keras.ops` only.

Quantizers (forward exactly ±1, sign(0) = +1 as larq's `ste_sign`, so 1 bit holds every value):
  * "ste_sign": the straight-through estimator of Hubara et al. (arXiv 1602.02830 §1.3): the
    gradient passes where |x| <= 1 and is cancelled elsewhere, g_in = g_out · 1{|x| <= 1}.
  * "approx_sign": Bi-Real Net's ApproxSign (Liu et al. arXiv 1808.00278 §3.2, eq. 4-5): the
    derivative of the piecewise quadratic F(x) = 2x − x|x| on [−1, 1] (±1 outside),
    g_in = g_out · (2 − 2|x|) · 1{|x| <= 1}, closer to the sign than the STE's box.
Both are written as stop_gradient(sign(x)) + (F(x) − stop_gradient(F(x))): the second term is
exactly zero in any floating-point type, so the forward value is exactly ±1 (also in bfloat16),
and its gradient is F'(x).

Weights: per output channel, W_b = α · sign(W) with α = mean|W| over the channel's kernel
(XNOR-Net, Rastegari et al. arXiv 1603.05279 §3.1, eq. 6; the optimum of ||W − αB||²).
  * kernel quantizer "xnor": α is differentiated too, the exact chain rule of α·sign(W) under
    the STE, g_i = α·1{|W_i| <= 1}·ĝ_i + sign(W_i)/n · Σ_j ĝ_j sign(W_j) (XNOR-Net eq. 7 and
    the "m + m_add" of the reference code, jiecaoyu/XNOR-Net-PyTorch `updateBinaryGradWeight`).
  * kernel quantizer "magnitude_aware": α is a constant in the backward pass, g_i = α ·
    1{|W_i| <= 1} · ĝ_i (Bi-Real's magnitude-aware gradient, arXiv 1808.00278 §3.3).
α is computed as m + mean(|W| − m) with m = max|W| (a constant): the same number as mean|W| up
to rounding, and bit-exact for a kernel of ±α entries, which is what a packed export
(official/serving/packed.py) loads back; a float32 mean of n equal values rounds.

Activations: an input quantizer binarizes the layer's input (None: real inputs, the
Binary-Weight-Network, BWN). XNOR-Net's scaling K (§3.2, Figure 2) multiplies the output of a
binary convolution by the mean over channels of |I| averaged over each window (the convolution
of A = Σ|I_c|/c with a k×k box filter of 1/k², same stride, padding and dilation).

Padding: a binary convolution zero-pads AFTER binarizing its input (the "same" and "symmetric"
rules, layers.conv2d's), as larq's default pad value 0 and the Torch reference; a ZeroPadding2D
in front would be binarized to +1 borders.

The layers compute α and sign(W) in float32 (they do not autocast their kernel) and cast the
binary kernel to the compute dtype, so mixed_bfloat16 runs the same binary weights up to the
rounding of α.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import keras
from keras import ops

from official.models import layers

INPUT_QUANTIZERS = ("ste_sign", "approx_sign")
KERNEL_QUANTIZERS = ("xnor", "magnitude_aware")
CONV_PADDINGS = ("valid", "same", "symmetric")


def sign(x):
    """+1 where x >= 0, −1 elsewhere, in x's dtype (no gradient)."""
    return ops.cast(ops.where(x >= 0, 1, -1), x.dtype)


def _straight_through(x, surrogate):
    """sign(x) forward, d surrogate / dx backward."""
    return ops.stop_gradient(sign(x)) + (surrogate - ops.stop_gradient(surrogate))


def ste_sign(x):
    """sign(x) with the straight-through gradient 1{|x| <= 1} (arXiv 1602.02830 §1.3)."""
    return _straight_through(x, ops.clip(x, -1.0, 1.0))


def approx_sign(x):
    """sign(x) with Bi-Real's ApproxSign gradient 2 − 2|x| on |x| <= 1 (arXiv 1808.00278 eq. 5)."""
    clipped = ops.clip(x, -1.0, 1.0)
    return _straight_through(x, 2.0 * clipped - clipped * ops.abs(clipped))


def quantize_input(x, quantizer: str | None):
    """The input quantizer by name; None leaves x real (BWN)."""
    if quantizer is None:
        return x
    return {"ste_sign": ste_sign, "approx_sign": approx_sign}[quantizer](x)


def kernel_scale(kernel):
    """α per output channel (the last axis): mean|W| over the other axes (arXiv 1603.05279
    eq. 6), computed as m + mean(|W| − m) with m = max|W| held constant, so that a kernel of ±α
    entries gives α back bit for bit (see the module docstring); the gradient is sign(W)/n."""
    axes = tuple(range(len(kernel.shape) - 1))
    magnitude = ops.abs(kernel)
    peak = ops.stop_gradient(ops.max(magnitude, axis=axes))
    return peak + ops.mean(magnitude - peak, axis=axes)


def binarize_kernel(kernel, quantizer: str = "xnor"):
    """α · sign(W) per output channel; see KERNEL_QUANTIZERS in the module docstring."""
    layers.check_choice(quantizer, KERNEL_QUANTIZERS, "kernel quantizer")
    alpha = kernel_scale(kernel)
    if quantizer == "magnitude_aware":
        alpha = ops.stop_gradient(alpha)
    return alpha * ste_sign(kernel)


@keras.saving.register_keras_serializable(package="official")
class LatentWeightClip(keras.constraints.Constraint):
    """Clips latent weights to [−limit, limit] after every update (Hubara et al. arXiv
    1602.02830 Algorithm 1, larq's `weight_clip`): where |W| > 1 the STE cancels W's gradient,
    so an unclipped weight that leaves [−1, 1] would never come back."""

    def __init__(self, limit: float = 1.0):
        self.limit = float(limit)

    def __call__(self, w):
        return ops.clip(w, -self.limit, self.limit)

    def get_config(self):
        return {"limit": self.limit}


class _Binarized:
    """What BinaryConv2D and BinaryDense share: the quantizer settings and their config."""

    def _init_binary(self, input_quantizer, kernel_quantizer, input_scaling):
        if input_quantizer is not None:
            layers.check_choice(input_quantizer, INPUT_QUANTIZERS, "input quantizer")
        layers.check_choice(kernel_quantizer, KERNEL_QUANTIZERS, "kernel quantizer")
        if input_scaling and input_quantizer is None:
            raise ValueError("input_scaling (XNOR-Net's K) needs an input quantizer")
        self.input_quantizer = input_quantizer
        self.kernel_quantizer = kernel_quantizer
        self.input_scaling = bool(input_scaling)

    def binary_kernel(self):
        """The kernel the layer computes with, α · sign(W), in float32."""
        return binarize_kernel(ops.convert_to_tensor(self.kernel), self.kernel_quantizer)

    def _finish(self, outputs):
        if self.use_bias:
            outputs = outputs + ops.cast(self.bias, outputs.dtype)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def _binary_config(self) -> dict:
        return {
            "input_quantizer": self.input_quantizer,
            "kernel_quantizer": self.kernel_quantizer,
            "input_scaling": self.input_scaling,
        }


@keras.saving.register_keras_serializable(package="official")
class BinaryConv2D(_Binarized, keras.layers.Conv2D):
    """A Conv2D whose kernel (and optionally input) is binarized in the forward pass.

    The latent real-valued kernel is the trained variable (its gradient comes through the
    quantizers' surrogate gradients); `binary_kernel()` is what the forward pass uses.

    Args:
      input_quantizer: "ste_sign", "approx_sign" or None (real inputs: BWN).
      kernel_quantizer: "xnor" or "magnitude_aware" (how α takes part in the gradient).
      input_scaling: multiply by XNOR-Net's K (§3.2); needs an input quantizer.
      padding: "valid", "same" (TensorFlow's SAME) or "symmetric" ((k − 1)·d/2 zeros on each
        side, PyTorch's), applied after the input is binarized.
      Others: as keras.layers.Conv2D.
    """

    def __init__(
        self,
        *args,
        input_quantizer: str | None = None,
        kernel_quantizer: str = "xnor",
        input_scaling: bool = False,
        padding: str = "valid",
        **kwargs,
    ):
        layers.check_choice(padding, CONV_PADDINGS, "padding")
        # The kernel is read in float32 (α and sign(W) from the latent weights, not from their
        # bfloat16 rounding); call() casts the inputs and the binary kernel to the compute dtype.
        kwargs.setdefault("autocast", False)
        kwargs.setdefault("kernel_constraint", LatentWeightClip())
        super().__init__(*args, padding="valid" if padding == "symmetric" else padding, **kwargs)
        self.binary_padding = padding
        self._init_binary(input_quantizer, kernel_quantizer, input_scaling)

    def _pad(self, x):
        if self.binary_padding != "symmetric":
            return x
        pads = [
            ((k - 1) * d // 2, (k - 1) * d - (k - 1) * d // 2)
            for k, d in zip(self.kernel_size, self.dilation_rate)
        ]
        return ops.pad(x, [(0, 0), *pads, (0, 0)])

    def _input_scale(self, inputs):
        """XNOR-Net's K: mean_c |I| averaged over each k×k window (arXiv 1603.05279 §3.2)."""
        magnitude = self._pad(ops.mean(ops.abs(inputs), axis=-1, keepdims=True))
        box = ops.ones((*self.kernel_size, 1, 1), magnitude.dtype) / math.prod(self.kernel_size)
        return ops.conv(
            magnitude,
            box,
            strides=list(self.strides),
            padding=self.padding,
            dilation_rate=self.dilation_rate,
        )

    def call(self, inputs):
        inputs = ops.cast(inputs, self.compute_dtype)  # Not autocast: see __init__.
        x = self._pad(quantize_input(inputs, self.input_quantizer))
        outputs = self.convolution_op(x, ops.cast(self.binary_kernel(), x.dtype))
        if self.input_scaling:
            outputs = outputs * self._input_scale(inputs)
        return self._finish(outputs)

    def compute_output_shape(self, input_shape):
        if self.binary_padding != "symmetric":
            return super().compute_output_shape(input_shape)
        padded = list(input_shape)
        for axis, (k, d) in enumerate(zip(self.kernel_size, self.dilation_rate), start=1):
            if padded[axis] is not None:
                padded[axis] += (k - 1) * d
        return super().compute_output_shape(tuple(padded))

    def get_config(self):
        return {**super().get_config(), "padding": self.binary_padding, **self._binary_config()}


@keras.saving.register_keras_serializable(package="official")
class BinaryDense(_Binarized, keras.layers.Dense):
    """A Dense layer whose kernel (and optionally input) is binarized in the forward pass.

    Args:
      input_quantizer, kernel_quantizer: as BinaryConv2D.
      input_scaling: multiply by K = mean|x| of each example's input (XNOR-Net's K of a
        window covering the whole input).
      Others: as keras.layers.Dense.
    """

    def __init__(
        self,
        *args,
        input_quantizer: str | None = None,
        kernel_quantizer: str = "xnor",
        input_scaling: bool = False,
        **kwargs,
    ):
        kwargs.setdefault("autocast", False)
        kwargs.setdefault("kernel_constraint", LatentWeightClip())
        super().__init__(*args, **kwargs)
        self._init_binary(input_quantizer, kernel_quantizer, input_scaling)

    def call(self, inputs, training=None):
        inputs = ops.cast(inputs, self.compute_dtype)  # Not autocast: see __init__.
        x = quantize_input(inputs, self.input_quantizer)
        outputs = ops.matmul(x, ops.cast(self.binary_kernel(), x.dtype))
        if self.input_scaling:
            outputs = outputs * ops.mean(ops.abs(inputs), axis=-1, keepdims=True)
        return self._finish(outputs)

    def get_config(self):
        return {**super().get_config(), **self._binary_config()}


BINARY_LAYERS = (BinaryConv2D, BinaryDense)


@dataclasses.dataclass(frozen=True)
class BinaryMode:
    """How a network binarizes its inner layers (the builders' `binary` switch).

    Attributes:
      input_quantizer: see INPUT_QUANTIZERS; None: real activations.
      kernel_quantizer: see KERNEL_QUANTIZERS.
      input_scaling: XNOR-Net's K.
      norm_first: normalization → binarization → binary layer → activation (XNOR-Net Figure 3:
        the normalization centres what the sign sees); otherwise the real network's order,
        binary layer → normalization → activation.
      shortcut_per_conv: a real-valued identity shortcut around every binary convolution
        (Bi-Real Net §3.1, Figure 1), not every two.
      activations: the real network's activations (ReLU); Bi-Real Net has none but the sign.
    """

    input_quantizer: str | None
    kernel_quantizer: str
    input_scaling: bool
    norm_first: bool
    shortcut_per_conv: bool = False
    activations: bool = True


MODES = {
    # Binary-Weight-Network (arXiv 1603.05279 §3.1): binary weights, real activations.
    "bwn": BinaryMode(None, "xnor", input_scaling=False, norm_first=False),
    # XNOR-Net (arXiv 1603.05279 §3.2, Figure 3): binary weights and inputs, K scaling.
    "xnor": BinaryMode("ste_sign", "xnor", input_scaling=True, norm_first=True),
    # Bi-Real Net (arXiv 1808.00278 §3): ApproxSign, magnitude-aware weights, a shortcut per
    # convolution, no ReLU (larq zoo `birealnet.py`, the authors' PyTorch code).
    "bireal": BinaryMode(
        "approx_sign",
        "magnitude_aware",
        input_scaling=False,
        norm_first=False,
        shortcut_per_conv=True,
        activations=False,
    ),
}


def mode(name: str) -> BinaryMode:
    """The BinaryMode of a builder's `binary` switch value."""
    return MODES[layers.check_choice(name, tuple(MODES), "binary mode")]


def _binary_kwargs(binary: BinaryMode) -> dict:
    return dict(
        input_quantizer=binary.input_quantizer,
        kernel_quantizer=binary.kernel_quantizer,
        input_scaling=binary.input_scaling,
    )


def _norm_act(
    x,
    binary: BinaryMode,
    name: str,
    *,
    position: str,
    activation: str | None,
    normalization: str | None,
    norm_momentum: float,
    norm_epsilon: float,
    zero_init: bool,
    spatial: bool = True,
):
    """The normalization (at `position` "before"/"after" the binary layer, as the mode
    orders it) and, after the layer, the activation."""
    if position == ("before" if binary.norm_first else "after"):
        if normalization is None:
            raise ValueError(
                "binary layers need a normalization (the sign of a ReLU output is always +1)"
            )
        if zero_init and binary.norm_first:
            raise ValueError("zero_gamma would zero what the sign sees: not with binary='xnor'")
        x = layers.normalization_layer(
            normalization,
            name + "_bn",
            channels=x.shape[-1],
            momentum=norm_momentum,
            epsilon=norm_epsilon,
            zero_init=zero_init,
            spatial=spatial,
        )(x)
    if position == "after" and activation is not None and binary.activations:
        x = layers.activation_layer(activation, name + "_relu", spatial=spatial)(x)
    return x


def _wrapped(x, binary_layer, binary: BinaryMode, name: str, **norm_act):
    """`binary_layer` between the normalization and activation its mode puts before and after
    it (`_norm_act`'s keyword arguments)."""
    x = _norm_act(x, binary, name, position="before", **norm_act)
    return _norm_act(binary_layer(x), binary, name, position="after", **norm_act)


def conv_norm_act(
    x,
    filters: int,
    kernel_size: int,
    *,
    binary: str,
    name: str,
    strides: int = 1,
    dilation_rate: int = 1,
    groups: int = 1,
    padding: str = "symmetric",
    activation: str | None = "relu",
    normalization: str | None = "batch",
    norm_momentum: float = 0.9,
    norm_epsilon: float = 1e-5,
    zero_init: bool = False,
    kernel_initializer: str | keras.initializers.Initializer = "he_normal",
):
    """layers.conv_norm_act with a binary convolution, in the order of the `binary` mode
    (MODES); the same layer names (`name_conv`, `name_bn`, `name_relu`)."""
    mode_ = mode(binary)
    convolution = BinaryConv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        dilation_rate=dilation_rate,
        groups=groups,
        use_bias=False,
        kernel_initializer=kernel_initializer,
        name=name + "_conv",
        **_binary_kwargs(mode_),
    )
    return _wrapped(
        x,
        convolution,
        mode_,
        name,
        activation=activation,
        normalization=normalization,
        norm_momentum=norm_momentum,
        norm_epsilon=norm_epsilon,
        zero_init=zero_init,
    )


def dense_norm_act(
    x,
    units: int,
    *,
    binary: str,
    name: str,
    activation: str | None = "relu",
    normalization: str = "batch",
    norm_momentum: float = 0.9,
    norm_epsilon: float = 1e-5,
    kernel_initializer: str | keras.initializers.Initializer = "he_normal",
):
    """A binary fully-connected layer with its normalization and activation in the mode's
    order; layers `name` (the dense layer, as the real networks name it), `name_bn`,
    `name_relu`."""
    mode_ = mode(binary)
    dense = BinaryDense(
        units,
        use_bias=False,
        kernel_initializer=kernel_initializer,
        name=name,
        **_binary_kwargs(mode_),
    )
    return _wrapped(
        x,
        dense,
        mode_,
        name,
        activation=activation,
        normalization=normalization,
        norm_momentum=norm_momentum,
        norm_epsilon=norm_epsilon,
        zero_init=False,
        spatial=False,
    )


class ParameterSplit(NamedTuple):
    """A model's parameters by storage: 1-bit kernels of binary layers, real trainable
    parameters, and non-trainable statistics (BN moving mean/variance)."""

    binary: int
    real: int
    non_trainable: int

    @property
    def trainable(self) -> int:
        return self.binary + self.real

    @property
    def total(self) -> int:
        """What keras' count_params() reports."""
        return self.binary + self.real + self.non_trainable

    @property
    def memory_bytes(self) -> float:
        """Storage with 1 bit per binary weight and 32 per other number (larq's memory
        column; α is derived from the latent kernel and not counted)."""
        return self.binary / 8 + 4 * (self.real + self.non_trainable)


def parameter_split(model: keras.Model) -> ParameterSplit:
    """Counts a model's binary and real parameters."""
    binary_kernels = {
        id(layer.kernel) for layer in _layers(model) if isinstance(layer, BINARY_LAYERS)
    }

    def count(variables, binary: bool) -> int:
        return sum(math.prod(v.shape) for v in variables if (id(v) in binary_kernels) == binary)

    return ParameterSplit(
        binary=count(model.trainable_weights, True),
        real=count(model.trainable_weights, False),
        non_trainable=sum(math.prod(v.shape) for v in model.non_trainable_weights),
    )


def _layers(model):
    """Every layer, nested models included."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer


def binary_layers(model: keras.Model) -> list:
    """The model's BinaryConv2D and BinaryDense layers."""
    return [layer for layer in _layers(model) if isinstance(layer, BINARY_LAYERS)]
