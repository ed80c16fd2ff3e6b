"""Walking a functional Keras model's graph in a canonical order (for weight ports and FLOPs),
rebuilding it with some layers replaced (`rebuild`: BN folding, inference activations), and
switching its layers to a subclass that computes the same thing faster (`switch_class`).

`model.layers` of a Keras 3 functional model is ordered by graph depth, which depends on
construction details (two Inception branches of different lengths interleave), and layers
shared between models (VGG's dense form reuses the convolutions of its fully-connected form)
carry nodes of both models. Walking the graph from the outputs, inputs of every call in
argument order, visits each call of *this* model once, in an order fixed by the graph alone:
two models with the same architecture give the same sequence whatever their layer names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import keras


@dataclasses.dataclass(frozen=True)
class Call:
    """One call of a layer in a model: the layer, the tensors it consumed and produced, and
    its arguments (`arguments.fill_in({id(tensor): value})` gives the args and kwargs to
    repeat the call on other tensors)."""

    layer: keras.layers.Layer
    inputs: tuple
    outputs: tuple
    arguments: object


def flat_outputs(outputs) -> list:
    """The tensors of a model's output structure, the main output first."""
    if isinstance(outputs, dict):
        # The main output first: "logits" before "aux_logits" (dict order is insertion order).
        return [outputs[key] for key in outputs]
    if isinstance(outputs, list | tuple):
        return [t for item in outputs for t in flat_outputs(item)]
    return [outputs]


def calls(model: keras.Model, outputs=None) -> Iterator[Call]:
    """Yields the layer calls of `model` in post-order (every input before its consumer).

    Args:
      model: a functional keras.Model (no nested models).
      outputs: start from these output tensors instead of all of the model's outputs (a port
        walks only the main classifier of a model with auxiliary heads).

    Yields:
      Call records; input layers are skipped.
    """
    seen: set[tuple[int, int]] = set()
    roots = flat_outputs(model.output if outputs is None else outputs)
    stack = [(t, False) for t in reversed(roots)]
    while stack:
        tensor, expanded = stack.pop()
        layer, node_index, _ = tensor._keras_history
        key = (id(layer), node_index)
        if key in seen:
            continue
        node = layer._inbound_nodes[node_index]
        if node.is_input:
            seen.add(key)
            continue
        if expanded:
            seen.add(key)
            if isinstance(layer, keras.Model):
                raise ValueError(f"nested model {layer.name!r} in {model.name!r}: flatten it first")
            yield Call(layer, tuple(node.input_tensors), tuple(node.output_tensors), node.arguments)
            continue
        stack.append((tensor, True))
        for parent in reversed(node.input_tensors):
            stack.append((parent, False))


def rebuild(model: keras.Model, replace: dict[int, keras.layers.Layer | None]) -> keras.Model:
    """A new functional model computing `model`'s graph with some layers' calls changed.

    Args:
      model: a built functional Keras model (no nested models).
      replace: id(layer) → the layer to call in its place with the same arguments (at every
        call of the layer), or None to drop the call and pass its (single) input through, as
        when a layer was folded into the one before it.

    Returns:
      The new model, same inputs and output structure and name; every layer not in `replace`
      is shared with `model` (the same object and variables).
    """
    values = {id(t): t for t in keras.tree.flatten(model.input)}
    for call in calls(model):
        if id(call.layer) in replace and replace[id(call.layer)] is None:
            values[id(call.outputs[0])] = values[id(call.inputs[0])]
            continue
        args, kwargs = call.arguments.fill_in(values)
        outputs = replace.get(id(call.layer), call.layer)(*args, **kwargs)
        for old, new in zip(call.outputs, keras.tree.flatten(outputs), strict=True):
            values[id(old)] = new
    outputs = keras.tree.map_structure(lambda t: values[id(t)], model.output)
    return keras.Model(model.input, outputs, name=model.name)


def switch_class(
    model: keras.Model,
    source: type,
    target: type,
    where: Callable[[keras.layers.Layer], bool] = lambda layer: True,
) -> int:
    """Gives every layer of `model` whose type is exactly `source` (and that `where` accepts)
    the class `target`, in place; returns how many. For subclasses that only change how a
    layer computes (batch_norm.FusedBatchNormalization, pointwise.MatmulGradientConv2D): the
    layer objects stay, so variables, names, tracking and checkpoints are unchanged and the
    switch can be undone by switching back. Call before the model's step functions are
    traced."""
    switched = layers_of(model, source, where)
    for layer in switched:
        layer.__class__ = target
    return len(switched)


def layers_of(
    model: keras.Model,
    source: type,
    where: Callable[[keras.layers.Layer], bool] = lambda layer: True,
) -> list[keras.layers.Layer]:
    """The layers of `model` whose type is exactly `source` and that `where` accepts: those
    `switch_class` switches."""
    return [
        layer
        for layer in model._flatten_layers(include_self=False)
        if type(layer) is source and where(layer)
    ]
