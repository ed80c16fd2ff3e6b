"""bfloat16 ReLUs after residual additions as an integer maximum: exactly TensorFlow's ReLU
(zeros, infinities, NaNs from the addition), the same gradients, only the ReLUs after an
addition switched, float32 untouched, variables and checkpoints unchanged."""

import keras
import numpy as np
import tensorflow as tf
from helpers import build_under_policy, training_pass

from official.models import batch_norm, residual_relu


def _bits(values) -> np.ndarray:
    return tf.bitcast(tf.constant(np.array(values, np.int16)), tf.bfloat16)


def test_integer_max_is_relu_after_an_addition():
    rng = np.random.default_rng(0)
    every = _bits(np.arange(-32768, 32768))  # every bfloat16 bit pattern
    addend = tf.cast(tf.constant(rng.normal(size=65536), tf.float32), tf.bfloat16)
    # What an addition gives (TensorFlow flushes subnormals to zero and rounds NaNs to the
    # canonical positive one): ReLU exactly, NaNs kept.
    for x in (tf.add(every, addend), tf.add(every, tf.zeros_like(every))):
        expected = tf.nn.relu(x).numpy().astype(np.float32)
        got = residual_relu.integer_max_relu(x).numpy().astype(np.float32)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_array_equal(got, expected)  # -0 and +0 compare equal
    # Any bit pattern: the same but for NaNs with the sign bit set (oneDNN's 0·inf), which
    # turn into 0, and positive subnormals, which TensorFlow's ReLU flushes to zero.
    expected = tf.nn.relu(every).numpy().astype(np.float32)
    got = residual_relu.integer_max_relu(every).numpy().astype(np.float32)
    bits = np.arange(-32768, 32768)
    differ = ~((got == expected) | (np.isnan(got) & np.isnan(expected)))
    assert set(bits[differ]) == set(range(1, 128)) | set(range(-127, 0))
    assert np.all(got[(bits >= -127) & (bits < 0)] == 0)


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
    initial = [v.numpy() for v in model.variables]
    names = [v.path for v in model.variables]
    plain_logits, plain, plain_ops = training_pass(model, images, labels)
    for variable, value in zip(model.variables, initial, strict=True):
        variable.assign(value)  # The pass moved the BN statistics.

    assert residual_relu.use_integer_max(model) == 16  # one per bottleneck block
    switched = [
        layer.name
        for layer in model._flatten_layers(include_self=False)
        if type(layer) is residual_relu.IntegerMaxReLU
    ]
    assert all(name.endswith("_out") for name in switched), switched
    assert [v.path for v in model.variables] == names
    logits, gradients, ops = training_pass(model, images, labels)
    assert ops.count("Relu") == plain_ops.count("Relu") - 16
    assert ops.count("Maximum") >= plain_ops.count("Maximum") + 16
    # The same function and gradient: equal up to the order the bfloat16 graph ran in.
    np.testing.assert_array_equal(logits, plain_logits)
    for got, want in zip(gradients, plain, strict=True):
        np.testing.assert_array_equal(got, want)

    assert residual_relu.use_integer_max(model, enabled=False) == 16
    assert not any(
        type(layer) is residual_relu.IntegerMaxReLU
        for layer in model._flatten_layers(include_self=False)
    )


def test_float32_layers_keep_tensorflows_relu():
    model = _resnet("float32")
    assert residual_relu.use_integer_max(model) == 16
    x = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    ops = [
        op.type
        for op in tf.function(lambda x: model(x, training=False))
        .get_concrete_function(tf.TensorSpec((None, 32, 32, 3), tf.float32))
        .graph.get_operations()
    ]
    assert "Bitcast" not in ops
    assert model(x, training=False).shape == (2, 5)
