"""bfloat16 1×1 convolutions with a MatMul kernel gradient: same outputs, same gradients within
bfloat16 rounding, the MatMul really replaces oneDNN's backward-weights convolution, float32
layers untouched, and the switch leaves variables and checkpoints alone."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import NO_BFLOAT16_BOUND, build_under_policy, training_pass

from official.models import batch_norm, pointwise
from official.training import precision


def _resnet50(policy: str) -> keras.Model:
    # 36 px: the stride-2 1×1 projections meet odd sides (9 → 5 → 3 → 2).
    return build_under_policy(
        policy, "resnet50", num_classes=7, image_size=36, width_multiplier=0.125
    )


def _pointwise_layers(model) -> list:
    return [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.Conv2D) and tuple(layer.kernel_size) == (1, 1)
    ]


def test_bfloat16_kernel_gradients_come_from_matmuls_and_agree():
    model = _resnet50("mixed_bfloat16")
    batch_norm.use_fused_kernel(model)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (4, 36, 36, 3)).astype("float32")
    labels = rng.integers(0, 7, 4)
    plain_logits, plain, plain_ops = training_pass(model, images, labels, restore=True)
    layers = _pointwise_layers(model)
    strided = [layer for layer in layers if tuple(layer.strides) == (2, 2)]
    # Every bottleneck's two 1×1s and 4 projections; ResNet v1 (as keras.applications) strides
    # the first 1×1 and the projection of each downsampling block.
    assert len(layers) == 36 and len(strided) == 6
    assert pointwise.use_matmul_gradient(model) == 36
    logits, gradients, ops = training_pass(model, images, labels)
    # The forward pass is the same convolution: the same logits.
    np.testing.assert_array_equal(logits, plain_logits)
    # oneDNN's backward-weights convolution remains for the 17 other convolutions only.
    assert plain_ops.count("Conv2DBackpropFilter") == 53
    assert ops.count("Conv2DBackpropFilter") == 53 - 36
    assert ops.count("MatMul") >= plain_ops.count("MatMul") + 36
    if not precision.cpu_has_bfloat16():
        pytest.skip(NO_BFLOAT16_BOUND)
    # Every gradient agrees within bfloat16 rounding (8-bit mantissa, sums over positions).
    names = [v.path for v in model.trainable_variables]
    for name, expected, actual in zip(names, plain, gradients, strict=True):
        scale = np.abs(expected).max() + 1e-12
        assert np.abs(actual - expected).max() <= 0.03 * scale, name


def test_float32_layers_keep_the_convolution_gradient_and_the_switch_is_reversible(tmp_path):
    model = _resnet50("float32")
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (2, 36, 36, 3)).astype("float32")
    labels = rng.integers(0, 7, 2)
    checkpoint = tf.train.Checkpoint(model=model)
    path = checkpoint.write(str(tmp_path / "before"))
    names = [v.path for v in model.variables]
    assert pointwise.use_matmul_gradient(model) == 36
    assert {type(layer) for layer in _pointwise_layers(model)} == {pointwise.MatmulGradientConv2D}
    _, _, ops = training_pass(model, images, labels)
    assert ops.count("Conv2DBackpropFilter") == 53  # float32: oneDNN's kernel is as fast.
    assert [v.path for v in model.variables] == names
    tf.train.Checkpoint(model=model).read(path).assert_existing_objects_matched()
    assert pointwise.use_matmul_gradient(model, enabled=False) == 36
    assert {type(layer) for layer in _pointwise_layers(model)} == {keras.layers.Conv2D}


@pytest.mark.parametrize("strides, side", [(1, 6), (2, 7), (3, 8)])
def test_one_layer_matches_the_convolution_gradient(strides, side):
    """Against float64 NumPy: y = x·k at every stride-th position; dk = Σ xᵀ·dy, dx scattered."""
    rng = np.random.default_rng(strides)
    x = rng.normal(size=(2, side, side, 5))
    k = rng.normal(size=(1, 1, 5, 3))
    dy_shape = (2, -(-side // strides), -(-side // strides), 3)
    dy = rng.normal(size=dy_shape)
    layer = pointwise.MatmulGradientConv2D(
        3, 1, strides=strides, padding="same", use_bias=False, dtype="mixed_bfloat16"
    )
    layer.build((None, side, side, 5))
    layer.kernel.assign(k.astype("float32"))
    inputs = tf.constant(x, tf.bfloat16)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        y = layer(inputs)
    dx, dk = tape.gradient(y, [inputs, layer.kernel], output_gradients=tf.constant(dy, tf.bfloat16))
    sampled = x[:, ::strides, ::strides, :]
    np.testing.assert_allclose(y.numpy().astype("float64"), sampled @ k[0, 0], rtol=0.03, atol=0.05)
    expected_dk = np.einsum("nhwc,nhwd->cd", sampled, dy)
    np.testing.assert_allclose(dk.numpy()[0, 0], expected_dk, rtol=0.03, atol=0.1)
    expected_dx = np.zeros_like(x)
    expected_dx[:, ::strides, ::strides, :] = dy @ k[0, 0].T
    np.testing.assert_allclose(dx.numpy().astype("float64"), expected_dx, rtol=0.03, atol=0.05)
