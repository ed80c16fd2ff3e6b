"""Filter pruning (Li et al., "Pruning Filters for Efficient ConvNets", arXiv 1608.08710):
a physically smaller model with the surviving weights.

In each pruned convolution the filters with the smallest L1 norm Σ|W| (§3.1) are removed,
together with the matching channels of everything that reads them: the batch-norm statistics,
the next convolution's input kernels, and the rows of a dense layer behind a Flatten. Layers
are pruned independently (§3.2 "independent pruning"), a fraction per stage.

Which convolutions can lose filters is read from the graph, so the model code stays as it is:
a plain Conv2D whose output reaches only other plain convolutions or dense layers, through
layers that act channel by channel (normalization, activations, pooling, padding, dropout,
Flatten). A convolution whose output meets an Add (a residual block's last one, the
shortcut's) keeps its filters, so residual shapes are unchanged: in a ResNet basic block the
first 3×3 is pruned (as Li et al. §4.2), in a bottleneck the 1×1 and the 3×3; in VGG every
convolution. The stage of a layer is its name's prefix before the first "_" (the
keras.applications names both families use: "block3_conv2", "conv4_block1_1_conv").

The architecture depends only on the fractions (how many filters survive), not on which ones,
so `prune_filters` of a fresh model with the same fractions (runs.build_model with
`--config.model.filter_prune_fractions`) rebuilds a pruned run's architecture.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
import numpy as np

from official.models import graph

# Layers whose output channel c depends only on their input channel c (their per-channel
# weights, if any, are sliced with the channels).
_CHANNELWISE = (
    keras.layers.BatchNormalization,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
    keras.layers.Dropout,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.ZeroPadding2D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
)


def _is_plain_conv(layer) -> bool:
    return (
        isinstance(layer, keras.layers.Conv2D)
        and not isinstance(layer, keras.layers.Conv2DTranspose)
        and layer.groups == 1
    )


def _is_instance_norm(layer) -> bool:
    """A GroupNormalization with one channel per group: instance normalization
    (layers.normalization_layer "instance"), which normalizes each channel by itself."""
    return isinstance(layer, keras.layers.GroupNormalization) and layer.groups in (
        -1,
        layer.input.shape[-1],
    )


def _is_channelwise(layer) -> bool:
    return (
        isinstance(layer, _CHANNELWISE)
        or type(layer).__name__ == "WindowPadding2D"
        or _is_instance_norm(layer)
    )


def stage_of(layer) -> str:
    """ "block3_conv2" → "block3", "conv4_block1_1_conv" → "conv4"."""
    return layer.name.split("_", 1)[0]


def prunable_convolutions(model: keras.Model) -> list:
    """The convolutions whose filters can be removed without changing any other layer's
    output shape (see the module docstring), in graph order."""
    calls = list(graph.calls(model))
    consumers: dict[int, list] = {}
    for call in calls:
        for tensor in call.inputs:
            consumers.setdefault(id(tensor), []).append(call)
    outputs = {id(t) for t in graph.flat_outputs(model.output)}

    def reaches_only_kernels(tensor) -> bool:
        if id(tensor) in outputs or id(tensor) not in consumers:
            return False
        for call in consumers[id(tensor)]:
            layer = call.layer
            if _is_plain_conv(layer) or isinstance(layer, keras.layers.Dense):
                continue
            if _is_channelwise(layer) or isinstance(layer, keras.layers.Flatten):
                if not reaches_only_kernels(call.outputs[0]):
                    return False
                continue
            return False
        return True

    return [
        call.layer
        for call in calls
        if _is_plain_conv(call.layer) and reaches_only_kernels(call.outputs[0])
    ]


def surviving_filters(kernel: np.ndarray, fraction: float) -> np.ndarray:
    """Indices (ascending) of the filters kept when `fraction` of them, those of smallest L1
    norm (Li et al. §3.1), are removed; at least one survives; ties go by index."""
    norms = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)
    count = kernel.shape[-1]
    removed = min(int(round(fraction * count)), count - 1)
    order = np.argsort(norms, kind="stable")
    return np.sort(order[removed:])


@dataclasses.dataclass(frozen=True)
class Pruned:
    """A filter-pruned model and what was removed.

    Attributes:
      model: the smaller model, holding the surviving weights.
      kept: {convolution name: indices of its surviving filters in the original}.
      stages: stage name → fraction removed, in graph order.
    """

    model: keras.Model
    kept: dict[str, np.ndarray]
    stages: dict[str, float]


def stage_fractions(model: keras.Model, fractions: Sequence[float]) -> dict[str, float]:
    """{stage: fraction} for the stages that have prunable convolutions, in graph order.

    Raises:
      ValueError: not one fraction for all stages nor one per stage, or one outside [0, 1).
    """
    stages = list(dict.fromkeys(stage_of(layer) for layer in prunable_convolutions(model)))
    if not stages:
        raise ValueError(f"{model.name} has no convolution whose filters can be removed")
    if len(fractions) not in (1, len(stages)):
        raise ValueError(
            f"{len(fractions)} fractions for the {len(stages)} stages of {model.name} "
            f"({', '.join(stages)}): give one for every stage, or one for all"
        )
    if not all(0 <= f < 1 for f in fractions):
        raise ValueError(f"fractions {tuple(fractions)}: each must be in [0, 1)")
    values = list(fractions) * len(stages) if len(fractions) == 1 else list(fractions)
    return dict(zip(stages, values))


def prune_filters(model: keras.Model, fractions: Sequence[float]) -> Pruned:
    """Removes `fractions` (one per stage, or one for all) of the filters of every prunable
    convolution of `model` by L1 norm; returns the smaller model with the surviving weights.

    Raises:
      ValueError: see `stage_fractions`; or a layer that mixes channels (a grouped or
        depthwise convolution, a concatenation, LRN) reading pruned channels.
    """
    stages = stage_fractions(model, fractions)
    kept = {
        layer.name: surviving_filters(
            keras.ops.convert_to_numpy(layer.kernel), stages[stage_of(layer)]
        )
        for layer in prunable_convolutions(model)
    }
    kept = {name: k for name, k in kept.items() if len(k) < model.get_layer(name).filters}

    def clone(layer):
        config = layer.get_config()
        if layer.name in kept:
            config["filters"] = len(kept[layer.name])
        if _is_instance_norm(layer):
            config["groups"] = -1  # One group per surviving channel.
        return layer.__class__.from_config(config)

    smaller = keras.models.clone_model(model, clone_function=clone)
    _copy_surviving_weights(model, smaller, kept)
    return Pruned(smaller, kept, stages)


def _copy_surviving_weights(model, smaller, kept: dict[str, np.ndarray]) -> None:
    """Follows which channels of every tensor survive through the graph and copies each
    layer's weights sliced to them."""
    channels: dict[int, np.ndarray | None] = {}  # Tensor id → surviving channel indices.
    for call in graph.calls(model):
        layer = call.layer
        inputs = [channels.get(id(t)) for t in call.inputs]
        weights = [keras.ops.convert_to_numpy(w) for w in layer.weights]
        incoming = inputs[0] if inputs else None
        out = None
        if _is_plain_conv(layer) or isinstance(layer, keras.layers.Dense):
            out = kept.get(layer.name)
            kernel = weights[0]
            if incoming is not None:
                kernel = np.take(kernel, incoming, axis=-2)
            if out is not None:
                kernel = kernel[..., out]
            weights = [kernel] + [w if out is None else w[out] for w in weights[1:]]
        elif incoming is not None and _is_channelwise(layer):
            out = incoming
            weights = [np.take(w, incoming, axis=-1) for w in weights]
        elif incoming is not None and isinstance(layer, keras.layers.Flatten):
            height_width = int(np.prod(call.inputs[0].shape[1:-1]))
            depth = call.inputs[0].shape[-1]
            out = (np.arange(height_width)[:, None] * depth + incoming[None, :]).ravel()
        elif any(c is not None for c in inputs):
            raise ValueError(f"{layer.name} ({type(layer).__name__}) mixes pruned channels")
        for tensor in call.outputs:
            channels[id(tensor)] = out
        if weights:
            smaller.get_layer(layer.name).set_weights(weights)


def latency_ms(model: keras.Model, image_size: int, runs: int = 20) -> float:
    """Median milliseconds of one compiled forward pass of a single image (after warm-up)."""
    import time

    import tensorflow as tf

    forward = tf.function(lambda x: model(x, training=False))
    image = tf.random.uniform([1, image_size, image_size, 3], 0, 255)
    for _ in range(3):
        forward(image)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        keras.ops.convert_to_numpy(forward(image))
        times.append(1000 * (time.perf_counter() - start))
    return float(np.median(times))
