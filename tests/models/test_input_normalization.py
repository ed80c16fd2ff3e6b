"""The input normalization in one XLA-compiled pass: Keras' values bit for bit (float32 and
uint8 images, under float32 and mixed_bfloat16 policies), one compiled kernel instead of the
subtraction and division in the traced training pass, the same gradients, only Normalization
layers switched, and the switch undone."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import XLA_CALL, build_under_policy, training_pass

from official.models import input_normalization, registry


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_layer_gives_keras_values_bit_for_bit(dtype):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 17, 19, 3)).astype(dtype)
    std = registry.IMAGENET_STD
    layer = keras.layers.Normalization(
        mean=list(registry.IMAGENET_MEAN), variance=[s * s for s in std], dtype="float32"
    )
    want = layer(images).numpy()
    assert input_normalization.use_fused_kernel(keras.Sequential([layer])) == 1
    got = layer(images).numpy()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    # Not a constant: the values follow the images (the ImageNet mean maps to 0).
    assert np.ptp(got) > 3


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_model_switch_same_pass_one_kernel_and_undone(policy):
    model = build_under_policy(
        policy, "mobilenet_v2", num_classes=5, image_size=32, width_multiplier=0.35
    )
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, 5, 2)
    plain_logits, plain, plain_ops = training_pass(model, images, labels, restore=True)

    assert input_normalization.use_fused_kernel(model) == 1
    logits, gradients, ops = training_pass(model, images, labels, restore=True)
    assert ops.count(XLA_CALL) == plain_ops.count(XLA_CALL) + 1
    assert ops.count("RealDiv") == plain_ops.count("RealDiv") - 1
    assert ops.count("Sub") == plain_ops.count("Sub") - 1
    np.testing.assert_array_equal(logits, plain_logits)
    for got, want in zip(gradients, plain, strict=True):
        np.testing.assert_array_equal(got, want)

    assert input_normalization.use_fused_kernel(model, enabled=False) == 1
    assert not any(
        isinstance(layer, input_normalization.FusedInputNormalization)
        for layer in model._flatten_layers(include_self=False)
    )


def test_an_inverting_layer_keeps_keras_computation():
    layer = keras.layers.Normalization(mean=[1.0, 2.0], variance=[4.0, 9.0], invert=True)
    inputs = tf.constant([[0.5, -1.0]])
    want = layer(inputs).numpy()
    input_normalization.use_fused_kernel(keras.Sequential([layer]))
    np.testing.assert_array_equal(layer(inputs).numpy(), want)  # mean + x * std
    np.testing.assert_allclose(want, [[2.0, -1.0]])
