"""1×1 convolutions whose bfloat16 weight gradient is one matrix product (training hot path).

A 1×1 convolution's weight gradient is the matrix product xᵀ·dy over all N·H·W positions
(x sampled at the stride). TensorFlow 2.21 computes it with oneDNN 3.7's backward-weights
convolution, which on an AMX CPU in bfloat16 took 2.6-4.5× as long as TensorFlow's own
bfloat16 MatMul of the same operands (e.g. 32×14×14, 256 → 1024 channels: 9.9 vs 3.0 ms;
32×14×14, 1024 → 2048 at stride 2: 38.9 vs 8.7 ms), and 1.5-2.6× as long as the same primitive
in PyTorch's newer oneDNN 3.12 (README "Speed"). In float32 the two are level, so only
bfloat16 calls take the matmul. The forward pass and the input gradient stay TensorFlow's
convolution kernels.

`use_matmul_gradient(model)` switches every plain Keras Conv2D with a 1×1 kernel (any stride,
no groups or dilation, channels last) to `MatmulGradientConv2D`, which only overrides
`convolution_op`: variables, names, configs and checkpoints stay Keras' own
(graph.switch_class), as with batch_norm.use_fused_kernel.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from official.models import graph


def _pointwise_with_matmul_gradient(inputs: tf.Tensor, kernel: tf.Tensor, strides: int, padding):
    """conv2d(inputs, kernel) for a [1, 1, C_in, C_out] kernel, its kernel gradient a MatMul."""

    @tf.custom_gradient
    def convolve(x, k):
        y = tf.nn.conv2d(x, k, strides, padding)

        def gradient(dy):
            dx = tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x),
                filter=k,
                out_backprop=dy,
                strides=[1, strides, strides, 1],
                padding=padding,
            )
            sampled = x
            if strides > 1:
                # The positions the kernel saw (a 1×1 kernel reads no padding). extract_patches
                # gathers them 1.7-3× faster than a strided slice in bfloat16 (measured).
                sampled = tf.image.extract_patches(
                    x, [1, 1, 1, 1], [1, strides, strides, 1], [1, 1, 1, 1], "VALID"
                )
            channels_in, channels_out = k.shape[2], k.shape[3]
            dk = tf.matmul(
                tf.reshape(sampled, [-1, channels_in]),
                tf.reshape(dy, [-1, channels_out]),
                transpose_a=True,
            )
            return dx, tf.reshape(dk, tf.shape(k))

        return y, gradient

    return convolve(inputs, kernel)


class MatmulGradientConv2D(keras.layers.Conv2D):
    """Keras' Conv2D whose bfloat16 1×1 calls take their kernel gradient from one MatMul."""

    def _takes_matmul(self, inputs) -> bool:
        return (
            inputs.dtype == tf.bfloat16
            and tuple(self.kernel_size) == (1, 1)
            and self.groups == 1
            and tuple(self.dilation_rate) == (1, 1)
            and self.data_format == "channels_last"
            and len(inputs.shape) == 4
            and self.strides[0] == self.strides[1]
        )

    def convolution_op(self, inputs, kernel):
        if not self._takes_matmul(inputs):
            return super().convolution_op(inputs, kernel)
        kernel = tf.cast(keras.ops.convert_to_tensor(kernel), inputs.dtype)
        # For a 1×1 kernel SAME and VALID sample the same positions (no padding is needed).
        return _pointwise_with_matmul_gradient(inputs, kernel, int(self.strides[0]), "VALID")


def use_matmul_gradient(model: keras.Model, enabled: bool = True) -> int:
    """Switches every plain Keras Conv2D of `model` with a 1×1 kernel to
    `MatmulGradientConv2D` (or back) with graph.switch_class. Call before the step functions
    are traced.

    Returns:
      The number of layers switched.
    """
    classes = (keras.layers.Conv2D, MatmulGradientConv2D)
    source, target = classes if enabled else classes[::-1]
    return graph.switch_class(
        model, source, target, where=lambda layer: tuple(layer.kernel_size) == (1, 1)
    )
