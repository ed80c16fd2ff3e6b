"""Optimizers by name, and the weight-decay rule."""

from __future__ import annotations

import keras
import tensorflow as tf

OPTIMIZERS = ("sgd", "adam")


def create_optimizer(
    name: str, learning_rate, *, momentum: float = 0.9, nesterov: bool = False
) -> keras.optimizers.Optimizer:
    """An optimizer by name; `learning_rate` may be a float or a schedule."""
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=momentum, nesterov=nesterov)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")


def is_decayed(variable) -> bool:
    """Weight decay applies to kernels only: biases and normalization scales/shifts (1-D) are
    excluded ("no bias decay", Bag of Tricks arXiv 1812.01187 §3.1)."""
    return len(variable.shape) > 1


def add_weight_decay(gradients, variables, weight_decay: float):
    """Adds the gradient of the L2 penalty (weight_decay / 2) · ||w||² to each kernel's gradient.

    This is the coupled decay of the ResNet references (TF Model Garden's l2 loss, torchvision's
    SGD `weight_decay`): the penalty goes through momentum like the data gradient.
    """
    if weight_decay <= 0:
        return gradients
    return [
        g + tf.cast(weight_decay, g.dtype) * tf.cast(v, g.dtype)
        if g is not None and is_decayed(v)
        else g
        for g, v in zip(gradients, variables)
    ]
