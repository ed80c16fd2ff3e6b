"""The inference form of a trained model: what `export` writes and the benchmark times.

Two rewrites, each computing the function the trained model computes, on fewer and faster ops:

* BN folded into the convolution or dense layer before it (`batch_norm.fold`).
* Swish written out as x·σ(x) (`plain_swish`). Keras' silu is TensorFlow's `tf.nn.silu`, whose
  custom gradient (it recomputes σ in the backward pass to save training memory) wraps the op
  in IdentityN nodes. Those hide the pattern from Grappler's remapper, so each swish ran as an
  oneDNN element-wise op of its own (`_MklSwish`, 0.1-0.2 ms per call at batch 1 on a 2-core
  CPU). Written out, a swish after a convolution with its bias becomes that convolution's
  post-op (`_FusedConv2D` with fused ops BiasAdd, _MklSwish): EfficientNet-B0 keeps 16 of 49
  (the ones after depthwise convolutions, which oneDNN's fused depthwise kernel does not take).
  Inference only: the written-out form's gradient keeps σ(x) alive through the backward pass.
"""

from __future__ import annotations

import dataclasses

import keras

from official.models import batch_norm, graph


@keras.saving.register_keras_serializable(package="cnn_repro")
def swish(x):
    """x·σ(x) (Ramachandran et al. arXiv 1710.05941; Elfwing et al. 1702.03118 "SiLU"), the
    same function as keras.activations.silu without its custom gradient."""
    return x * keras.ops.sigmoid(x)


@dataclasses.dataclass(frozen=True)
class InferenceForm:
    """The rewritten model and what changed: BN folded and kept (names), swish layers written
    out (count)."""

    model: keras.Model
    folded: tuple[str, ...]
    unfolded: tuple[str, ...]
    plain_swish: int


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


def inference_form(model: keras.Model, fold_batch_norm: bool = True) -> InferenceForm:
    """`model` as inference runs it fastest: BN folded (unless `fold_batch_norm` is False),
    swish written out. Outputs equal the model's in inference within float rounding."""
    folded = batch_norm.fold(model) if fold_batch_norm else None
    rewritten, swish_count = plain_swish(folded.model if folded else model)
    return InferenceForm(
        model=rewritten,
        folded=folded.folded if folded else (),
        unfolded=folded.unfolded if folded else (),
        plain_swish=swish_count,
    )
