"""bfloat16 ReLUs after residual additions as an integer select: TensorFlow's ReLU bit for bit
after an addition (zeros, infinities, NaNs of either sign), the same gradients, only the ReLUs
after an addition switched, float32 untouched, variables and checkpoints unchanged."""

import keras
import numpy as np
import tensorflow as tf
from helpers import build_under_policy, training_pass

from official.models import batch_norm, residual_relu


def _bits(values) -> tf.Tensor:
    return tf.bitcast(tf.constant(np.array(values, np.int16)), tf.bfloat16)


def _same(got: tf.Tensor, expected: tf.Tensor) -> None:
    got, expected = got.numpy().astype(np.float32), expected.numpy().astype(np.float32)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(got, expected)  # -0 and +0 compare equal, NaNs as NaNs


def test_integer_select_is_relu_after_an_addition():
    rng = np.random.default_rng(0)
    every = _bits(np.arange(-32768, 32768))  # every bfloat16 bit pattern
    addend = tf.cast(tf.constant(rng.normal(size=65536), tf.float32), tf.bfloat16)
    # What an addition gives (TensorFlow flushes subnormals to zero): ReLU exactly.
    for x in (tf.add(every, addend), tf.add(every, tf.zeros_like(every))):
        _same(residual_relu.integer_select_relu(x), tf.nn.relu(x))
    # NaNs the addition makes: inf − inf is a NaN with the sign bit set in Eigen's vectorized
    # loop and a positive one in its scalar tail (odd sizes reach both); ReLU keeps them.
    for size in (3, 17, 4101):
        infinities = tf.fill([size], tf.constant(np.inf, tf.bfloat16))
        x = tf.add(infinities, -infinities)
        assert np.all(np.isnan(residual_relu.integer_select_relu(x).numpy().astype(np.float32)))
    # Any bit pattern: the same but for positive subnormals, which TensorFlow's ReLU flushes
    # to zero (no addition's output is one).
    got = residual_relu.integer_select_relu(every).numpy().astype(np.float32)
    expected = tf.nn.relu(every).numpy().astype(np.float32)
    differ = ~((got == expected) | (np.isnan(got) & np.isnan(expected)))
    assert set(np.arange(-32768, 32768)[differ]) == set(range(1, 128))


def _resnet(policy: str) -> keras.Model:
    return build_under_policy(
        policy, "resnet50", num_classes=5, image_size=32, width_multiplier=0.125
    )


def test_resnet_switch_same_step_and_only_residual_relus():
    model = _resnet("mixed_bfloat16")
    batch_norm.use_fused_kernel(model)
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 5, 4)
    names = [v.path for v in model.variables]
    plain_logits, plain, plain_ops = training_pass(model, images, labels, restore=True)

    assert residual_relu.use_integer_select(model) == 16  # one per bottleneck block
    switched = [
        layer.name
        for layer in model._flatten_layers(include_self=False)
        if type(layer) is residual_relu.IntegerSelectReLU
    ]
    assert all(name.endswith("_out") for name in switched), switched
    assert [v.path for v in model.variables] == names
    logits, gradients, ops = training_pass(model, images, labels)
    assert ops.count("Relu") == plain_ops.count("Relu") - 16
    assert ops.count("SelectV2") >= plain_ops.count("SelectV2") + 16
    # The same function and gradient: equal up to the order the bfloat16 graph ran in.
    np.testing.assert_array_equal(logits, plain_logits)
    for got, want in zip(gradients, plain, strict=True):
        np.testing.assert_array_equal(got, want)

    assert residual_relu.use_integer_select(model, enabled=False) == 16
    assert not any(
        type(layer) is residual_relu.IntegerSelectReLU
        for layer in model._flatten_layers(include_self=False)
    )


def test_float32_layers_keep_tensorflows_relu():
    model = _resnet("float32")
    assert residual_relu.use_integer_select(model) == 16
    x = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    ops = [
        op.type
        for op in tf.function(lambda x: model(x, training=False))
        .get_concrete_function(tf.TensorSpec((None, 32, 32, 3), tf.float32))
        .graph.get_operations()
    ]
    assert "Bitcast" not in ops
    assert model(x, training=False).shape == (2, 5)
