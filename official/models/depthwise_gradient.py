"""Depthwise convolutions wider than three columns with their kernel gradient in strips of at
most three columns (training hot path).

TensorFlow 2.21 computes a depthwise kernel gradient with oneDNN 3.7's backward-weights
depthwise convolution, which on a 2-core AMX CPU is fast only for kernels at most three
columns wide. At batch 32, 28×28×240 (EfficientNet-B0's stage 3), on the zero-padded input, in
float32: a 5×3 kernel took 2.7 ms, 5×1 2.2 ms, but 3×5 17.2 ms, 4×4 19.8 ms and 5×5 26.5 ms;
a 5×5 gradient took 8-10× its forward pass (README "Speed"). In bfloat16 the 5×5 gradient
took 115.6 ms.

Column j of a k_h×k_w kernel's gradient sums the padded input shifted by j columns times the
output gradient, so the k_w columns split into strips of ≤ 3: each strip's gradient is the
gradient of a k_h×(≤ 3) depthwise convolution (VALID) over the padded input's columns from the
strip's first on. The strips together are the same sums, added up in another order. For
EfficientNet-B0's stride-1 5×5 layers this took the gradient from 12-23 ms to 4-11 ms (2.1-3×
faster, each strip's input slice included), and the model trained 1.02-1.04× faster; in
bfloat16 115.6 → 9.9 ms (28×28×240), 88.0 → 6.8 (14×14×672), 52.5 → 3.9 (7×7×1152). At
stride 2 the slices of the larger inputs cost what the strips save (56×56×144, float32: 21.2
against 19.1 ms), so stride-2 layers keep TensorFlow's gradient. The forward pass and the
input gradient are TensorFlow's own kernels; float16 layers (not measured) keep TensorFlow's
gradient.

The slow wide kernels are oneDNN's AVX-512 ones: measured on an Intel CPU with AMX and an AMD
one with AVX-512 BF16. On an AVX2-only CPU (AMD EPYC Zen 2) the whole 5×5 kernel gradient costs
what its input gradient does, and the strips are the slower (float32, batch 32, kernel gradient
alone: 28×28×240 14.9 against 22.6 ms, 14×14×480 7.9 against 13.9, 14×14×672 10.7 against
19.6, 7×7×1152 7.0 against 10.6), so training takes strips only where `pays_off`.

`use_strip_gradient(model)` switches every Keras DepthwiseConv2D with a kernel wider than three
columns to `StripGradientDepthwiseConv2D`, which only overrides `call`: variables, names,
configs and checkpoints stay Keras' own (graph.switch_class), as with
pointwise.use_matmul_gradient.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from official.models import graph

# The widest kernel oneDNN's backward-weights depthwise convolution handles fast (measured
# above).
STRIP_COLUMNS = 3


def _depthwise_with_strip_gradient(inputs: tf.Tensor, kernel: tf.Tensor, padding: str):
    """depthwise_conv2d(inputs, kernel) at stride 1 for a [k_h, k_w, C, 1] kernel, its kernel
    gradient computed in strips of at most STRIP_COLUMNS columns."""

    @tf.custom_gradient
    def convolve(x, k):
        y = tf.nn.depthwise_conv2d(x, k, [1, 1, 1, 1], padding)

        def gradient(dy):
            dx = tf.raw_ops.DepthwiseConv2dNativeBackpropInput(
                input_sizes=tf.shape(x),
                filter=k,
                out_backprop=dy,
                strides=[1, 1, 1, 1],
                padding=padding,
            )
            rows, columns, channels = k.shape[0], k.shape[1], k.shape[2]
            firsts = range(0, columns, STRIP_COLUMNS)
            widths = [min(STRIP_COLUMNS, columns - first) for first in firsts]
            output_width = tf.shape(dy)[2]
            # The padded copy and its slices once dy exists: they need only x, and made as soon
            # as x is (in the forward pass) they would all be held through the step.
            with tf.control_dependencies([dy]):
                padded = x
                if padding == "SAME":  # At stride 1: (k - 1) // 2 before, the rest after.
                    rows_pad = [(rows - 1) // 2, rows // 2]
                    columns_pad = [(columns - 1) // 2, columns // 2]
                    padded = tf.pad(x, [[0, 0], rows_pad, columns_pad, [0, 0]])
                inputs = [
                    padded[:, :, first : first + output_width + width - 1, :]
                    for first, width in zip(firsts, widths, strict=True)
                ]
            strips = [
                tf.raw_ops.DepthwiseConv2dNativeBackpropFilter(
                    input=strip_input,
                    filter_sizes=[rows, width, channels, 1],
                    out_backprop=dy,
                    strides=[1, 1, 1, 1],
                    padding="VALID",
                )
                for strip_input, width in zip(inputs, widths, strict=True)
            ]
            return dx, tf.concat(strips, axis=1)

        return y, gradient

    return convolve(inputs, kernel)


class StripGradientDepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """Keras' DepthwiseConv2D whose float32 and bfloat16 stride-1 calls take their kernel
    gradient in strips."""

    def _takes_strips(self, inputs) -> bool:
        return (
            inputs.dtype in (tf.float32, tf.bfloat16)
            and self.kernel_size[1] > STRIP_COLUMNS
            and self.depth_multiplier == 1
            and tuple(self.strides) == (1, 1)
            and tuple(self.dilation_rate) == (1, 1)
            and self.data_format == "channels_last"
            and len(inputs.shape) == 4
        )

    def call(self, inputs):
        if not self._takes_strips(inputs):
            return super().call(inputs)
        kernel = tf.cast(keras.ops.convert_to_tensor(self.kernel), inputs.dtype)
        outputs = _depthwise_with_strip_gradient(inputs, kernel, self.padding.upper())
        if self.use_bias:
            outputs = outputs + tf.cast(self.bias, outputs.dtype)
        return self.activation(outputs)


def pays_off(cpu_flags: set[str]) -> bool:
    """Whether strips are faster than oneDNN's whole-kernel gradient on a CPU with these
    instruction-set flags (precision.cpu_flags()): where oneDNN runs its AVX-512 kernels."""
    return "avx512f" in cpu_flags


def _wide(layer: keras.layers.Layer) -> bool:
    return layer.kernel_size[1] > STRIP_COLUMNS


def wide_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The Keras DepthwiseConv2D layers of `model` that `use_strip_gradient` switches."""
    return graph.layers_of(model, keras.layers.DepthwiseConv2D, where=_wide)


def use_strip_gradient(model: keras.Model, enabled: bool = True) -> int:
    """Switches every Keras DepthwiseConv2D of `model` with a kernel wider than STRIP_COLUMNS
    to `StripGradientDepthwiseConv2D` (or back) with graph.switch_class. Call before the step
    functions are traced.

    Returns:
      The number of layers switched.
    """
    classes = (keras.layers.DepthwiseConv2D, StripGradientDepthwiseConv2D)
    source, target = classes if enabled else classes[::-1]
    return graph.switch_class(model, source, target, where=_wide)
