"""The inference form of a trained model: what `export` writes and the benchmark times.

Five rewrites, each computing the function the trained model computes, on fewer and faster ops:

* BN folded into the convolution or dense layer before it (`batch_norm.fold`).
* Swish written out as x·σ(x) (`plain_swish`). Keras' silu is TensorFlow's `tf.nn.silu`, whose
  custom gradient (it recomputes σ in the backward pass to save training memory) wraps the op
  in IdentityN nodes. Those hide the pattern from Grappler's remapper, so each swish ran as an
  oneDNN element-wise op of its own (`_MklSwish`, 0.1-0.2 ms per call at batch 1 on a 2-core
  CPU). Written out, a swish after a convolution with its bias becomes that convolution's
  post-op (`_FusedConv2D` with fused ops BiasAdd, _MklSwish): 33 of EfficientNet-B0's 49. The
  16 after depthwise convolutions stay standalone (oneDNN's fused depthwise kernel takes no
  swish) until the third rewrite.
  Inference only: the written-out form's gradient keeps σ(x) alive through the backward pass.
* Float32 depthwise convolutions as grouped convolutions (`grouped_depthwise`): the same kernel
  run by TensorFlow's Conv2D with one group per channel. Alone the two kernels take the same
  time (batch 32, EfficientNet-B0's 12 depthwise shapes: 26.9 against 27.3 ms), but Grappler's
  remapper fuses bias and swish into the grouped one, so the 16 standalone swishes above go,
  and its bias post-op is cheaper than the depthwise op's (with bias and swish: 39.0 against
  49.6 ms). EfficientNet-B0's serving form took 14.6-14.7 against 16.4-16.7 ms at batch 1
  (README "Speed"). In bfloat16 the depthwise op was as fast or faster in the model
  (MobileNetV2 at batch 32: 509 against 472 images/s), so bfloat16 layers keep it.
* 1×1 convolutions on 1×1 maps (squeeze-excite's two products on the pooled vector) as matrix
  products, and the swish after one as x / (1 + e^−x) (`vector_products`). On a vector
  oneDNN's convolution and swish ops cost their per-call set-up (EfficientNet-B0's 32 SE
  convolutions took 59 µs each at batch 1, 1.9 ms in all), where MatMul and Eigen's
  element-wise ops take a few µs. At batch 1 the serving form of EfficientNet-B0 took 13.1-13.3
  against 13.6-14.1 ms, MobileNetV3-Large's 8.2-8.3 against 9.0-9.2 ms (3 alternating
  processes each).

* The input normalization (x − mean) / std as x·scale + offset in one 1×1 depthwise
  convolution with bias (`scaled_input`): Keras' Normalization layer is a broadcast
  subtraction and division over 3 channels, which Eigen runs slowly (224 px, one op call
  each: 8.6 against 1.3 ms at batch 32, 0.67 against 0.36 ms at batch 1).

The last three rewrites are for TensorFlow's CPU kernels (`TENSORFLOW_REWRITES`): the
SavedModel has them, the TFLite export keeps the ops that every TFLite delegate has
(`inference_form(skip=TENSORFLOW_REWRITES)`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

import keras
import numpy as np
import tensorflow as tf

from official.models import batch_norm, graph


@keras.saving.register_keras_serializable(package="cnn_repro")
def swish(x):
    """x·σ(x) (Ramachandran et al. arXiv 1710.05941; Elfwing et al. 1702.03118 "SiLU"), the
    same function as keras.activations.silu without its custom gradient."""
    return x * keras.ops.sigmoid(x)


class GroupedDepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """A channels-last, undilated DepthwiseConv2D computed, in float32, by TensorFlow's Conv2D
    with one group per input channel (other compute dtypes: Keras' call). The depthwise kernel
    (kh, kw, C, m) is, in memory, the grouped kernel (kh, kw, 1, C·m) whose group c makes
    output channels c·m … c·m + m − 1: a reshape, no copy. Only `call` differs from Keras'
    layer (weights, config and dtype policy are its own). Keras' own grouped path would
    compile the op with XLA on CPU, hence tf.nn.conv2d."""

    @property
    def grouped(self) -> bool:
        """Whether calls run as a grouped convolution (the layer computes in float32)."""
        return self.compute_dtype == "float32"

    def call(self, inputs):
        if not self.grouped:
            return super().call(inputs)
        height, width, channels, multiplier = self.kernel.shape
        kernel = tf.reshape(self.kernel, (height, width, 1, channels * multiplier))
        outputs = tf.nn.conv2d(inputs, kernel, self.strides, self.padding.upper())
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias)
        return outputs if self.activation is None else self.activation(outputs)


@keras.saving.register_keras_serializable(package="cnn_repro")
def vector_swish(x):
    """Swish as x / (1 + e^−x): the same function as `swish` in four element-wise ops, which
    Grappler leaves as they are (x·σ(x) becomes one oneDNN swish op, slow on a vector)."""
    return x / (1.0 + keras.ops.exp(-x))


class VectorConv2D(keras.layers.Conv2D):
    """A 1×1 Conv2D (stride 1, one group, channels last) on (N, 1, 1, C) inputs computed as the
    matrix product (N, C) × (C, filters). Only `call` differs from Keras' layer."""

    def call(self, inputs):
        channels = inputs.shape[-1]
        kernel = tf.reshape(self.kernel, (channels, self.filters))
        outputs = tf.matmul(tf.reshape(inputs, (-1, channels)), kernel)
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return tf.reshape(outputs, (-1, 1, 1, self.filters))


@dataclasses.dataclass(frozen=True)
class InferenceForm:
    """The rewritten model and what changed: BN folded and kept (names), swish layers written
    out, depthwise layers made grouped convolutions, layers made vector products and input
    normalizations made a scale and offset (counts)."""

    model: keras.Model
    folded: tuple[str, ...]
    unfolded: tuple[str, ...]
    plain_swish: int
    grouped_depthwise: int = 0
    vector_products: int = 0
    scaled_input: int = 0


def plain_swish(model: keras.Model) -> tuple[keras.Model, int]:
    """(`model` rebuilt with every silu Activation layer replaced by one computing `swish`,
    how many). Each replacement has the replaced layer's name and dtype policy; every other
    layer is shared with `model`."""
    replace: dict[int, keras.layers.Layer | None] = {}
    for call in graph.calls(model):
        layer = call.layer
        if isinstance(layer, keras.layers.Activation) and layer.activation is (
            keras.activations.silu
        ):
            replace[id(layer)] = keras.layers.Activation(
                swish, name=layer.name, dtype=layer.dtype_policy
            )
    if not replace:
        return model, 0
    return graph.rebuild(model, replace), len(replace)


def _every_call(calls: list[graph.Call], accepts) -> set[int]:
    """ids of the layers whose every call in `calls` `accepts(call)`."""
    verdicts: dict[int, bool] = {}
    for call in calls:
        verdicts[id(call.layer)] = verdicts.get(id(call.layer), True) and accepts(call)
    return {key for key, accepted in verdicts.items() if accepted}


def _retyped(call: graph.Call, layer_class: type) -> keras.layers.Layer:
    """A new `layer_class` layer with the config of the call's layer, built for its input and
    holding a copy of its weights."""
    layer = layer_class.from_config(call.layer.get_config())
    layer.build(call.inputs[0].shape)
    for target, source in zip(layer.weights, call.layer.weights, strict=True):
        target.assign(source)
    return layer


def grouped_depthwise(model: keras.Model) -> tuple[keras.Model, int]:
    """(`model` rebuilt with every channels-last, undilated DepthwiseConv2D (exact type)
    replaced by a `GroupedDepthwiseConv2D` with its config and a copy of its weights, how
    many). Every other layer is shared with `model`."""
    replace: dict[int, keras.layers.Layer | None] = {}
    for call in graph.calls(model):
        layer = call.layer
        if (
            type(layer) is keras.layers.DepthwiseConv2D
            and layer.data_format == "channels_last"
            and tuple(layer.dilation_rate) == (1, 1)
            and id(layer) not in replace
        ):
            replace[id(layer)] = _retyped(call, GroupedDepthwiseConv2D)
    if not replace:
        return model, 0
    return graph.rebuild(model, replace), len(replace)


def _is_vector_conv(call: graph.Call) -> bool:
    layer = call.layer
    return (
        type(layer) is keras.layers.Conv2D
        and layer.data_format == "channels_last"
        and tuple(layer.kernel_size) == (1, 1)
        and tuple(layer.strides) == (1, 1)
        and tuple(layer.dilation_rate) == (1, 1)
        and layer.groups == 1
        and tuple(call.inputs[0].shape[1:3]) == (1, 1)
    )


def vector_products(model: keras.Model) -> tuple[keras.Model, int]:
    """(`model` rebuilt with every 1×1 Conv2D on 1×1 maps (exact type; every call of it) replaced
    by a `VectorConv2D` with its config and a copy of its weights, and every `swish` Activation
    fed only by one of those by a `vector_swish` one; how many layers). Every other layer is
    shared with `model`."""
    calls = list(graph.calls(model))
    vector_convs = _every_call(calls, _is_vector_conv)
    replace: dict[int, keras.layers.Layer | None] = {}
    vector_outputs: set[int] = set()
    for call in calls:
        if id(call.layer) in vector_convs:
            vector_outputs.update(id(t) for t in call.outputs)
            if id(call.layer) not in replace:
                replace[id(call.layer)] = _retyped(call, VectorConv2D)
    for call in calls:
        layer = call.layer
        if (
            isinstance(layer, keras.layers.Activation)
            and layer.activation is swish
            and all(id(t) in vector_outputs for t in call.inputs)
        ):
            replace[id(layer)] = keras.layers.Activation(
                vector_swish, name=layer.name, dtype=layer.dtype_policy
            )
    if not replace:
        return model, 0
    return graph.rebuild(model, replace), len(replace)


class ChannelScale(keras.layers.Layer):
    """x·scale + offset per channel (channels last), as a 1×1 depthwise convolution with bias:
    one oneDNN kernel, where Keras' Normalization runs a broadcast subtraction and division."""

    def __init__(self, scale, offset, **kwargs):
        super().__init__(**kwargs)
        self.scale = tuple(float(v) for v in scale)
        self.offset = tuple(float(v) for v in offset)

    def call(self, inputs):
        inputs = tf.cast(inputs, self.compute_dtype)  # Integer pixels too, as Keras' layer.
        kernel = tf.reshape(tf.constant(self.scale, inputs.dtype), (1, 1, len(self.scale), 1))
        outputs = tf.nn.depthwise_conv2d(inputs, kernel, (1, 1, 1, 1), "VALID")
        return tf.nn.bias_add(outputs, tf.constant(self.offset, inputs.dtype))

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


def scaled_input(model: keras.Model) -> tuple[keras.Model, int]:
    """(`model` rebuilt with every Keras Normalization on 4-D channels-last inputs (exact type,
    not inverted, every call) replaced by a `ChannelScale` computing (x − mean) /
    max(√variance, ε) as x·scale + offset, how many). Every other layer is shared with `model`."""
    calls = list(graph.calls(model))
    image_normalizations = _every_call(
        calls,
        lambda call: (
            type(call.layer) is keras.layers.Normalization
            and not call.layer.invert
            and len(call.inputs[0].shape) == 4
            and tuple(call.layer.axis) in ((-1,), (3,))
        ),
    )
    replace: dict[int, keras.layers.Layer | None] = {}
    for call in calls:
        layer = call.layer
        if id(layer) in image_normalizations and id(layer) not in replace:
            mean = np.asarray(keras.ops.convert_to_numpy(layer.mean), np.float64).reshape(-1)
            variance = np.asarray(keras.ops.convert_to_numpy(layer.variance), np.float64)
            scale = 1.0 / np.maximum(np.sqrt(variance.reshape(-1)), keras.backend.epsilon())
            replace[id(layer)] = ChannelScale(
                scale, -mean * scale, name=layer.name, dtype=layer.dtype_policy
            )
    if not replace:
        return model, 0
    return graph.rebuild(model, replace), len(replace)


def grouped_count(model: keras.Model) -> int:
    """How many of `model`'s layers run as grouped convolutions, with their dtypes as they are."""
    return sum(
        isinstance(layer, GroupedDepthwiseConv2D) and layer.grouped
        for layer in model._flatten_layers(include_self=False)
    )


# The rewrites for TensorFlow's CPU kernels, in the order they are applied (`inference_form`'s
# `skip` names any of them; the TFLite export skips them all).
TENSORFLOW_REWRITES = {
    "grouped_depthwise": grouped_depthwise,
    "vector_products": vector_products,
    "scaled_input": scaled_input,
}


def inference_form(
    model: keras.Model, fold_batch_norm: bool = True, skip: Collection[str] = ()
) -> InferenceForm:
    """`model` as inference runs it fastest: BN folded (unless `fold_batch_norm` is False),
    swish written out, and the `TENSORFLOW_REWRITES` not named in `skip`. Outputs equal the
    model's in inference within float rounding."""
    unknown = set(skip) - set(TENSORFLOW_REWRITES)
    if unknown:
        raise ValueError(f"unknown rewrites {sorted(unknown)}: choose from {TENSORFLOW_REWRITES}")
    folded = batch_norm.fold(model) if fold_batch_norm else None
    rewritten, swish_count = plain_swish(folded.model if folded else model)
    counts = dict.fromkeys(TENSORFLOW_REWRITES, 0)
    for name, rewrite in TENSORFLOW_REWRITES.items():
        if name not in skip:
            rewritten, counts[name] = rewrite(rewritten)
    return InferenceForm(
        model=rewritten,
        folded=folded.folded if folded else (),
        unfolded=folded.unfolded if folded else (),
        plain_swish=swish_count,
        **counts,
    )
