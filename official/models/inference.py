"""The inference form of a trained model: what `export` writes and the benchmark times.

Three rewrites, each computing the function the trained model computes, on fewer and faster ops:

* BN folded into the convolution or dense layer before it (`batch_norm.fold`).
* Swish written out as x·σ(x) (`plain_swish`). Keras' silu is TensorFlow's `tf.nn.silu`, whose
  custom gradient (it recomputes σ in the backward pass to save training memory) wraps the op
  in IdentityN nodes. Those hide the pattern from Grappler's remapper, so each swish ran as an
  oneDNN element-wise op of its own (`_MklSwish`, 0.1-0.2 ms per call at batch 1 on a 2-core
  CPU). Written out, a swish after a convolution with its bias becomes that convolution's
  post-op (`_FusedConv2D` with fused ops BiasAdd, _MklSwish): EfficientNet-B0 keeps 16 of 49
  (the ones after depthwise convolutions, which oneDNN's fused depthwise kernel does not take).
  Inference only: the written-out form's gradient keeps σ(x) alive through the backward pass.
* Float32 depthwise convolutions as grouped convolutions (`grouped_depthwise`): the same kernel
  run by TensorFlow's Conv2D with one group per channel, which oneDNN runs faster than
  TensorFlow's DepthwiseConv2dNative and which Grappler's remapper fuses bias and swish into,
  so the 16 standalone swishes above go too. EfficientNet-B0's serving form took 14.6 against
  16.1 ms at batch 1 and 155 against 149 images/s at batch 32 (README "Speed"). In bfloat16
  the depthwise op was as fast or faster in the model (MobileNetV2 at batch 32: 509 against
  472 images/s), so bfloat16 layers keep it. SavedModel only: the TFLite export keeps the
  depthwise op, which every TFLite delegate has (`inference_form(grouped=False)`).
"""

from __future__ import annotations

import dataclasses

import keras
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


@dataclasses.dataclass(frozen=True)
class InferenceForm:
    """The rewritten model and what changed: BN folded and kept (names), swish layers written
    out and depthwise layers made grouped convolutions (counts)."""

    model: keras.Model
    folded: tuple[str, ...]
    unfolded: tuple[str, ...]
    plain_swish: int
    grouped_depthwise: int = 0


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
            grouped = GroupedDepthwiseConv2D.from_config(layer.get_config())
            grouped.build(call.inputs[0].shape)
            for target, source in zip(grouped.weights, layer.weights, strict=True):
                target.assign(source)
            replace[id(layer)] = grouped
    if not replace:
        return model, 0
    return graph.rebuild(model, replace), len(replace)


def grouped_count(model: keras.Model) -> int:
    """How many of `model`'s layers run as grouped convolutions, with their dtypes as they are."""
    return sum(
        isinstance(layer, GroupedDepthwiseConv2D) and layer.grouped
        for layer in model._flatten_layers(include_self=False)
    )


def inference_form(
    model: keras.Model, fold_batch_norm: bool = True, grouped: bool = True
) -> InferenceForm:
    """`model` as inference runs it fastest: BN folded (unless `fold_batch_norm` is False),
    swish written out, depthwise convolutions grouped (unless `grouped` is False: TFLite).
    Outputs equal the model's in inference within float rounding."""
    folded = batch_norm.fold(model) if fold_batch_norm else None
    rewritten, swish_count = plain_swish(folded.model if folded else model)
    rewritten, grouped_count = grouped_depthwise(rewritten) if grouped else (rewritten, 0)
    return InferenceForm(
        model=rewritten,
        folded=folded.folded if folded else (),
        unfolded=folded.unfolded if folded else (),
        plain_swish=swish_count,
        grouped_depthwise=grouped_count,
    )
