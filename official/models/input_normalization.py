"""The model's input normalization in one XLA-compiled pass (training hot path).

Every model normalizes its 0..255 input with a Keras Normalization layer, (x − mean) / std
(layers.input_block). TensorFlow runs that as two passes over the whole batch of images, a
subtraction and a division (32×224×224×3 float32: 8.0 and 11.7 ms of EfficientNet-B0's
float32 training step on a 2-core AVX2 CPU, README "Speed"). Here the same two operations are
one small function that XLA compiles (`jit_compile`, as the swish gradient,
swish_gradient.py): one pass reading the images and writing the result, with the same values
bit for bit (XLA keeps the subtraction and the division, in that order). The input needs no
gradient, so nothing else changes.

The inference form export writes has its own rewrite (models/inference.py: x·scale + offset as
one 1×1 depthwise convolution, which TF Serving and TFLite run without XLA); this switch is for
training and evaluation in the training process only.

`use_fused_kernel(model)` switches the model's Normalization layers to
`FusedInputNormalization`, which only overrides `call`: the layer keeps its mean, variance,
name and config (graph.switch_class), as with batch_norm.use_fused_kernel.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from official.models import graph


@tf.function(jit_compile=True)
def _normalize(x: tf.Tensor, mean: tf.Tensor, variance: tf.Tensor) -> tf.Tensor:
    """(x − mean) / max(√variance, ε), Keras' Normalization, in one pass."""
    return (x - mean) / tf.maximum(tf.sqrt(variance), keras.backend.epsilon())


class FusedInputNormalization(keras.layers.Normalization):
    """Keras' Normalization layer computing the same values with one compiled kernel."""

    def call(self, inputs):
        if self.invert or self.mean is None:
            return super().call(inputs)
        inputs = tf.cast(inputs, self.compute_dtype)
        mean = tf.cast(self.mean, self.compute_dtype)
        variance = tf.cast(self.variance, self.compute_dtype)
        return _normalize(inputs, mean, variance)


def use_fused_kernel(model: keras.Model, enabled: bool = True) -> int:
    """Switches every Keras Normalization layer of `model` to `FusedInputNormalization` (or
    back) with graph.switch_class. Call before the step functions are traced.

    Returns:
      The number of layers switched.
    """
    classes = (keras.layers.Normalization, FusedInputNormalization)
    source, target = classes if enabled else classes[::-1]
    return graph.switch_class(model, source, target)
