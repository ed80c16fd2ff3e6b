"""Swish with its gradient in one XLA-fused pass: tf.nn.silu's values and gradients (within a
few roundings of each dtype), one compiled kernel per layer instead of TensorFlow's element-wise
ops in the traced training pass, only silu layers switched, variables and checkpoints
unchanged, and the switch undone."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import XLA_CALL, build_under_policy, training_pass

from official.models import swish_gradient


@pytest.mark.parametrize(
    "dtype, epsilon", [(tf.float64, 2.0**-52), (tf.float32, 2.0**-23), (tf.bfloat16, 2.0**-7)]
)
def test_silu_is_tensorflows_with_an_as_exact_gradient(dtype, epsilon):
    rng = np.random.default_rng(0)
    # Wide enough for both saturated ends of the sigmoid, and exact zeros.
    values = np.concatenate([rng.normal(0, 6, 4093), [0.0, -0.0, 40.0, -40.0, 1e-30]])
    x = tf.cast(tf.constant(values), dtype)
    upstream = tf.cast(tf.constant(rng.normal(size=values.size)), dtype)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours, theirs = swish_gradient.silu(x), tf.nn.silu(x)
    got = tape.gradient(ours, x, output_gradients=upstream)
    want = tape.gradient(theirs, x, output_gradients=upstream)
    as64 = lambda t: t.numpy().astype(np.float64)  # noqa: E731
    np.testing.assert_array_equal(as64(ours), as64(theirs))
    # Both against the exact derivative of the rounded inputs, σ + x·σ·(1 − σ), in float64.
    x64, dy64 = as64(x), as64(upstream)
    sigmoid = 1 / (1 + np.exp(-x64))
    exact = dy64 * (sigmoid + x64 * sigmoid * (1 - sigmoid))
    scale = np.maximum(np.abs(dy64), np.abs(exact))
    ours_error = np.abs(as64(got) - exact) / scale
    theirs_error = np.abs(as64(want) - exact) / scale
    # Both a few roundings of the dtype at most, under one on average. Measured: ours 1.6 /
    # 7.7 / 2.0 at most and 0.02 / 0.53 / 0.19 on average in float64 / float32 / bfloat16
    # (XLA's float32 sigmoid is a polynomial a few roundings off), TensorFlow's 9.1 / 5.3 / 3.3
    # and 0.53 / 0.35 / 0.23.
    for error in (ours_error, theirs_error):
        assert error.max() <= 16 * epsilon
        assert error.mean() <= epsilon


def test_efficientnet_switch_same_pass_fewer_ops_and_only_silu_layers():
    # In float64 and without dropout or stochastic depth, so that two passes differ by
    # rounding only (at this size batch norm over 2×1×1 values amplifies float32 rounding
    # into gradients that are zero in exact arithmetic).
    model = build_under_policy(
        "float64",
        "efficientnet_b0",
        num_classes=5,
        image_size=32,
        dropout=0.0,
        stochastic_depth_rate=0.0,
    )
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (2, 32, 32, 3))
    labels = rng.integers(0, 5, 2)
    names = [v.path for v in model.variables]
    silu_layers = [
        layer.name
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.Activation) and layer.activation is keras.activations.silu
    ]
    plain_logits, plain, plain_ops = training_pass(model, images, labels, restore=True)

    assert swish_gradient.use_short_gradient(model) == len(silu_layers) == 49
    assert [v.path for v in model.variables] == names
    logits, gradients, ops = training_pass(model, images, labels)
    # Per swish: one compiled kernel instead of TensorFlow's recomputed sigmoid, subtraction,
    # addition and three multiplications.
    assert ops.count(XLA_CALL) == plain_ops.count(XLA_CALL) + 49
    assert ops.count("Sigmoid") == plain_ops.count("Sigmoid") - 49
    assert ops.count("Sub") <= plain_ops.count("Sub") - 49
    assert ops.count("Mul") <= plain_ops.count("Mul") - 3 * 49
    np.testing.assert_array_equal(logits, plain_logits)  # the same forward pass
    largest = max(np.abs(g).max() for g in plain)
    for got, want in zip(gradients, plain, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-13 * largest)

    assert swish_gradient.use_short_gradient(model, enabled=False) == 49
    assert not any(
        type(layer) is swish_gradient.ShortGradientSiLU
        for layer in model._flatten_layers(include_self=False)
    )


def test_models_without_swish_are_untouched():
    model = build_under_policy(
        "float32", "mobilenet_v2", num_classes=5, image_size=32, width_multiplier=0.35
    )
    assert swish_gradient.use_short_gradient(model) == 0
