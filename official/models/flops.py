"""Multiply-adds of a model from its layer shapes.

The convention of the papers' "FLOPs"/"mult-adds" columns (He et al. arXiv 1512.03385 Table 1,
Howard et al. arXiv 1704.04861 Table 2, Tan & Le arXiv 1905.11946 Table 2): one multiply-add
per kernel weight per output position of every convolution and fully-connected layer, per
image. Normalization, activations, pooling, additions, biases and the squeeze-excitation
multiply are not counted (they are a fraction of a percent).
"""

from __future__ import annotations

import math

import keras

from official.models import graph


def _static(shape, layer) -> tuple[int, ...]:
    dims = tuple(shape[1:])
    if any(d is None for d in dims):
        raise ValueError(
            f"count_flops needs static shapes, but {layer.name} has shape {tuple(shape)}: "
            "build the model with a fixed image_size"
        )
    return dims


def layer_flops(call: graph.Call) -> int:
    """Multiply-adds of one layer call (0 for layers without a kernel)."""
    layer = call.layer
    if hasattr(layer, "multiply_adds"):  # a model family's own layer (LeNet-5's C3, RBF)
        return layer.multiply_adds(_static(call.outputs[0].shape, layer))
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        # Every output channel is one input channel convolved with a k×k filter.
        out = _static(call.outputs[0].shape, layer)
        return math.prod(out) * math.prod(layer.kernel_size)
    if isinstance(layer, keras.layers.SeparableConv2D):
        inp = _static(call.inputs[0].shape, layer)
        out = _static(call.outputs[0].shape, layer)
        depthwise = math.prod(out[:-1]) * inp[-1] * layer.depth_multiplier
        return depthwise * math.prod(layer.kernel_size) + depthwise * out[-1]
    if isinstance(layer, keras.layers.Conv2D):
        inp = _static(call.inputs[0].shape, layer)
        out = _static(call.outputs[0].shape, layer)
        return math.prod(out) * math.prod(layer.kernel_size) * inp[-1] // layer.groups
    if isinstance(layer, keras.layers.Dense):
        inp = _static(call.inputs[0].shape, layer)
        out = _static(call.outputs[0].shape, layer)
        return math.prod(out) * inp[-1]
    return 0


def count_flops(model: keras.Model) -> int:
    """Multiply-adds (MACs) of one forward pass of one image through `model`.

    Args:
      model: a functional model built with a fixed input size.

    Returns:
      The number of multiply-adds; auxiliary heads, if the model has them, are included.

    Raises:
      ValueError: the model has dynamic spatial dimensions.
    """
    return sum(layer_flops(call) for call in graph.calls(model))
