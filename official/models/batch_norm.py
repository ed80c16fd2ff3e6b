"""Batch normalization on TensorFlow's fastest kernels, as switches applied to a built model.

Keras 3's BatchNormalization on the TensorFlow backend computes moments and the affine
transform from separate element-wise ops, and keeps them in inference: two cheaper forms
exist, and the model code (which keeps its keras.layers) does not change for either.

* Inference and export: `fold` rebuilds a functional model with every BN that directly
  follows a Conv2D / DepthwiseConv2D / Dense (whose output feeds only that BN) folded into
  it, as inference frameworks do (Jacob et al. arXiv 1712.05877 §3.2, "batch normalization
  folding"; TFLite's converter folds the same pattern). With s = γ/√(σ²+ε) per output channel:
  W' = W·s, b' = β + (b − μ)·s. Every other BN is kept as it was and counted.
* Training: `use_fused_kernel` makes BN layers call FusedBatchNormV3 on 4-D channels-last
  inputs, the kernel tf.keras 2 used (`fused=True`), with Keras 3's update of the moving
  statistics (see FusedBatchNormalization).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from official.models import graph

# Layers a following BN folds into: exact types, so a subclass that transforms its kernel
# before use (binary.py's binarized convolutions) is never folded.
FOLDABLE = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


@dataclasses.dataclass(frozen=True)
class Folded:
    """The result of `fold`: the folded model and the BN layers folded and kept, by name."""

    model: keras.Model
    folded: tuple[str, ...]
    unfolded: tuple[str, ...]


def _channels_last(layer: keras.layers.Layer, rank: int) -> bool:
    """Whether `layer` works on the last axis (BN's axis, a convolution's data format)."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return layer.axis % rank == rank - 1
    return getattr(layer, "data_format", "channels_last") == "channels_last"


def _foldable(producer: keras.layers.Layer, bn: keras.layers.BatchNormalization, rank: int):
    return (
        type(producer) in FOLDABLE
        and producer.activation in (None, keras.activations.linear)
        and _channels_last(producer, rank)
        and _channels_last(bn, rank)
        and not bn.renorm
    )


def folded_weights(producer: keras.layers.Layer, bn: keras.layers.BatchNormalization):
    """(kernel, bias) of `producer` with `bn` applied after it, computed in float64.

    The output channel is the kernel's last axis for Conv2D and Dense; a DepthwiseConv2D's
    kernel is (kh, kw, in, multiplier) and its output channel c·multiplier + m, so the scale
    is laid out as (in, multiplier).
    """
    kernel = np.asarray(producer.kernel.numpy(), np.float64)
    channels = bn.moving_mean.shape[0]
    bias = (
        np.asarray(producer.bias.numpy(), np.float64)
        if producer.use_bias
        else np.zeros(channels, np.float64)
    )
    gamma = np.asarray(bn.gamma.numpy(), np.float64) if bn.scale else np.ones(channels)
    beta = np.asarray(bn.beta.numpy(), np.float64) if bn.center else np.zeros(channels)
    mean = np.asarray(bn.moving_mean.numpy(), np.float64)
    variance = np.asarray(bn.moving_variance.numpy(), np.float64)
    scale = gamma / np.sqrt(variance + bn.epsilon)
    if isinstance(producer, keras.layers.DepthwiseConv2D):
        kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:
        kernel = kernel * scale
    return kernel, beta + (bias - mean) * scale


def _folded_layer(call: graph.Call, bn: keras.layers.BatchNormalization):
    """A new layer like the call's (same config and dtype policy, with a bias) computing it
    followed by `bn` in inference."""
    producer = call.layer
    layer = type(producer).from_config({**producer.get_config(), "use_bias": True})
    layer.build(call.inputs[0].shape)
    kernel, bias = folded_weights(producer, bn)
    layer.kernel.assign(kernel.astype(layer.kernel.dtype))
    layer.bias.assign(bias.astype(layer.bias.dtype))
    return layer


def fold(model: keras.Model) -> Folded:
    """An inference copy of `model` with its BN folded into the layers before them.

    A BN is folded when the tensor it normalizes is the only output of a single call of a
    Conv2D / DepthwiseConv2D / Dense (exact types, linear activation, channels last), that
    tensor feeds nothing else, and neither layer is called elsewhere in the model. Every other
    layer is shared with `model` (its weights are the same variables); each folded pair becomes
    one new layer with the producer's name, config and dtype policy, its weights computed in
    float64 from the float32 variables. Use the copy for inference only: it has no BN to train.

    Args:
      model: a built functional Keras model (no nested models).

    Returns:
      Folded(model, folded BN names, unfolded BN names).
    """
    calls = list(graph.calls(model))
    call_count: dict[int, int] = {}
    consumers: dict[int, int] = {}
    for call in calls:
        call_count[id(call.layer)] = call_count.get(id(call.layer), 0) + 1
        for tensor in call.inputs:
            consumers[id(tensor)] = consumers.get(id(tensor), 0) + 1
    for tensor in graph.flat_outputs(model.output):
        consumers[id(tensor)] = consumers.get(id(tensor), 0) + 1
    producer_of = {id(t): call for call in calls for t in call.outputs}

    replace: dict[int, keras.layers.Layer | None] = {}  # producer → folded layer, BN → None
    folded, unfolded = [], []
    for call in calls:
        bn = call.layer
        if not isinstance(bn, keras.layers.BatchNormalization):
            continue
        source = producer_of.get(id(call.inputs[0])) if len(call.inputs) == 1 else None
        if (
            source is not None
            and len(source.outputs) == 1
            and consumers[id(call.inputs[0])] == 1
            and call_count[id(bn)] == 1
            and call_count[id(source.layer)] == 1
            and _foldable(source.layer, bn, len(call.inputs[0].shape))
        ):
            replace[id(source.layer)] = _folded_layer(source, bn)
            replace[id(bn)] = None
            folded.append(bn.name)
        else:
            unfolded.append(bn.name)
    rebuilt = graph.rebuild(model, replace)
    return Folded(rebuilt, tuple(folded), tuple(unfolded))


class FusedBatchNormalization(keras.layers.BatchNormalization):
    """Keras' BatchNormalization computed by TensorFlow's FusedBatchNormV3 on 4-D NHWC inputs.

    One kernel computes the moments and the normalization (and one its gradient) where Keras
    3 runs a chain of element-wise ops. Other inputs (2-D, channels first, masks, renorm) take
    Keras' own path. Only `call` differs: variables, names and checkpoints are Keras' own.

    Statistics follow Keras 3 exactly: FusedBatchNormV3 returns the batch variance with
    Bessel's correction (n/(n−1), n = N·H·W: what tf.keras 2's fused path averaged), while
    Keras 3 averages the biased variance it normalizes with; the update undoes the correction,
    so moving_variance ← m·moving_variance + (1−m)·σ²_biased as in Keras. The op's epsilon is
    the layer's own (tf.compat.v1.nn.fused_batch_norm would raise it to 1.001e-5, a cuDNN
    limit, which would change models using PyTorch's 1e-5). tf.raw_ops inside a layer: the
    fused kernel has no keras.ops form.
    """

    def _fusable(self, inputs, mask) -> bool:
        return (
            mask is None
            and not self.renorm
            and len(inputs.shape) == 4
            and self.axis % 4 == 3
            and not self.synchronized
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        gamma = self.gamma if self.scale else tf.ones([channels], tf.float32)
        beta = self.beta if self.center else tf.zeros([channels], tf.float32)
        # FusedBatchNormV3 takes float16/bfloat16 or float32 inputs with float32 statistics
        # and computes in float32, as Keras' layer does after its upcast.
        x = inputs if inputs.dtype in (tf.float16, tf.bfloat16) else tf.cast(inputs, tf.float32)
        training = bool(training) and self.trainable
        if training:
            outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
                x=x,
                scale=tf.cast(gamma, tf.float32),
                offset=tf.cast(beta, tf.float32),
                mean=tf.zeros([0], tf.float32),
                variance=tf.zeros([0], tf.float32),
                epsilon=self.epsilon,
                data_format="NHWC",
                is_training=True,
            )
            shape = tf.shape(x)
            count = tf.cast(shape[0] * shape[1] * shape[2], tf.float32)
            variance = variance * ((count - 1.0) / tf.maximum(count, 1.0))
            momentum = self.momentum
            self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
            self.moving_variance.assign(
                self.moving_variance * momentum + variance * (1.0 - momentum)
            )
        else:
            outputs, *_ = tf.raw_ops.FusedBatchNormV3(
                x=x,
                scale=tf.cast(gamma, tf.float32),
                offset=tf.cast(beta, tf.float32),
                mean=tf.cast(self.moving_mean, tf.float32),
                variance=tf.cast(self.moving_variance, tf.float32),
                epsilon=self.epsilon,
                data_format="NHWC",
                is_training=False,
            )
        return tf.cast(outputs, self.compute_dtype)


def use_fused_kernel(model: keras.Model, enabled: bool = True) -> int:
    """Switches every BatchNormalization layer of `model` to the fused kernel (or back) with
    graph.switch_class: variables, names and checkpoints are unchanged, and a checkpoint
    written with the switch on restores with it off and back. Call before the model's step
    functions are traced.

    Returns:
      The number of layers switched.
    """
    classes = (keras.layers.BatchNormalization, FusedBatchNormalization)
    return graph.switch_class(model, *(classes if enabled else classes[::-1]))
