"""BN folding for inference and the fused-kernel switch in training (models/batch_norm.py)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import randomize

from official.models import batch_norm, registry


def _bn(name, **kwargs):
    return keras.layers.BatchNormalization(name=name, **kwargs)


def patterns_model() -> keras.Model:
    """Every rule of `fold` once: foldable conv / grouped conv / depthwise (multiplier 2) /
    dense, and BN that must stay (after an add, after a conv with an activation, after a conv
    whose output also feeds another layer, after a layer called twice)."""
    inputs = keras.Input((8, 8, 4))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = _bn("bn_conv")(x)
    x = keras.layers.Conv2D(8, 1, groups=2, name="grouped")(x)  # with its own bias
    x = _bn("bn_grouped", epsilon=1e-5)(x)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    x = _bn("bn_dw", center=False, scale=False)(x)
    y = keras.layers.Conv2D(16, 1, activation="relu", name="conv_relu")(x)
    y = _bn("bn_after_activation")(y)
    branch = keras.layers.Conv2D(16, 1, name="branch")(x)
    shortcut = _bn("bn_branch_also_added")(branch)
    x = keras.layers.Add(name="add")([shortcut, branch, y])
    x = _bn("bn_after_add")(x)
    shared = keras.layers.Conv2D(16, 1, name="shared")
    x = _bn("bn_shared")(shared(shared(x)))
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(6, name="dense")(x)
    x = _bn("bn_dense")(x)
    return keras.Model(inputs, x)


def _rsqrt_ops(model, image_shape) -> int:
    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec((None, *image_shape), tf.float32)
    )
    return sum(op.type == "Rsqrt" for op in function.graph.get_operations())


def test_fold_patterns_weights_and_outputs():
    model = patterns_model()
    randomize(model, seed=3)
    folded = batch_norm.fold(model)
    assert set(folded.folded) == {"bn_conv", "bn_grouped", "bn_dw", "bn_dense"}
    assert set(folded.unfolded) == {
        "bn_after_activation",
        "bn_branch_also_added",
        "bn_after_add",
        "bn_shared",
    }
    x = np.random.default_rng(0).normal(0, 2, (3, 8, 8, 4)).astype(np.float32)
    expected = model(x, training=False).numpy()
    np.testing.assert_allclose(folded.model(x, training=False), expected, rtol=1e-4, atol=1e-5)
    # The formula, transcribed for the depthwise layer: output channel c·2 + m.
    dw, bn = model.get_layer("dw"), model.get_layer("bn_dw")
    scale = 1 / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)  # no γ, no β
    new = folded.model.get_layer("dw")
    kernel = dw.kernel.numpy()
    for c in range(kernel.shape[2]):
        for m in range(2):
            channel = 2 * c + m
            np.testing.assert_allclose(
                new.kernel.numpy()[:, :, c, m], kernel[:, :, c, m] * scale[channel], rtol=1e-6
            )
            np.testing.assert_allclose(
                new.bias.numpy()[channel],
                (dw.bias.numpy()[channel] - bn.moving_mean.numpy()[channel]) * scale[channel],
                rtol=1e-5,
                atol=1e-7,
            )
    # Unchanged layers are shared, not copied; the original model is untouched.
    assert folded.model.get_layer("add") is model.get_layer("add")
    assert not model.get_layer("conv").use_bias
    assert _rsqrt_ops(folded.model, (8, 8, 4)) == 4 < _rsqrt_ops(model, (8, 8, 4)) == 8


def _fold_parity(name: str, image_size: int = 32) -> batch_norm.Folded:
    """Folds the registry model at width 0.25 with random BN statistics; checks its outputs
    and that every BN layer is counted once."""
    model = registry.get(name).build(num_classes=10, image_size=image_size, width_multiplier=0.25)
    randomize(model, seed=1)
    x = np.random.default_rng(2).uniform(0, 255, (2, image_size, image_size, 3))
    x = x.astype(np.float32)
    folded = batch_norm.fold(model)
    expected = keras.tree.flatten(model(x, training=False))[0].numpy()
    actual = keras.tree.flatten(folded.model(x, training=False))[0].numpy()
    error = np.abs(actual - expected).max()
    assert error <= 1e-4 * np.abs(expected).max(), error
    bn_layers = [
        layer.name
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert sorted(folded.folded + folded.unfolded) == sorted(bn_layers)
    return folded


def test_fold_mobilenet_v2_depthwise_and_residuals():
    folded = _fold_parity("mobilenet_v2")
    assert (len(folded.folded), len(folded.unfolded)) == (52, 0)


# Every family, and within families each graph shape that differs for folding: binary
# convolutions (never folded), grouped and SE blocks, pre-activation dense blocks,
# concatenations, channel shuffles, separable convolutions, the LRN and BN VGGs.
SWEEP = (
    "alexnet",
    "bwn_alexnet",
    "xnor_resnet18",
    "birealnet18",
    "resnet50_d",
    "resnext50_32x4d",
    "se_resnet50",
    "densenet121",
    "efficientnet_b0",
    "efficientnet_lite0",
    "inception_v1_bn",
    "inception_v3",
    "inception_v4",
    "inception_resnet_v2",
    "lenet5",
    "mobilenet_v1",
    "mobilenet_v3_small",
    "nasnet_a_mobile",
    "shufflenet_v1_g3_1.0",
    "shufflenet_v2_1.0",
    "squeezenet1_1",
    "vgg11_bn",
    "xception",
)


@pytest.mark.slow
@pytest.mark.parametrize("name", SWEEP)
def test_fold_every_registry_model(name):
    try:
        _fold_parity(name, max(32, registry.get(name).min_resolution))
    except TypeError as e:  # A family without width_multiplier.
        if "width_multiplier" not in str(e):
            raise
        pytest.skip(f"{name}: no width_multiplier")


def _tiny_model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=False, name="conv")(inputs)
    x = _bn("bn", momentum=0.8, epsilon=1e-5)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Flatten()(x)
    x = _bn("bn_flat", momentum=0.7)(x)  # 2-D: Keras' own path under the switch too
    return keras.Model(inputs, keras.layers.Dense(2, name="dense")(x))


def _train_step(model, x):
    with tf.GradientTape() as tape:
        outputs = model(x, training=True)
        loss = tf.reduce_sum(tf.square(outputs))
    gradients = tape.gradient(loss, model.trainable_variables)
    return outputs.numpy(), [g.numpy() for g in gradients]


def test_fused_kernel_matches_keras_in_training_and_inference(tmp_path):
    x = np.random.default_rng(0).normal(1.0, 2.0, (5, 6, 6, 3)).astype(np.float32)
    keras_model, fused_model = _tiny_model(7), _tiny_model(7)
    for model in (keras_model, fused_model):
        randomize(model, seed=4)
    assert batch_norm.use_fused_kernel(fused_model) == 2
    assert type(fused_model.get_layer("bn")) is batch_norm.FusedBatchNormalization
    initial_variance = fused_model.get_layer("bn").moving_variance.numpy()
    expected, expected_gradients = _train_step(keras_model, x)
    outputs, gradients = _train_step(fused_model, x)
    np.testing.assert_allclose(outputs, expected, rtol=1e-4, atol=1e-5)
    for g, e in zip(gradients, expected_gradients, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)
    # Keras' update with the biased batch variance, transcribed: m·old + (1 − m)·σ²_biased.
    bn = fused_model.get_layer("bn")
    conv = keras_model.get_layer("conv")(x).numpy()
    np.testing.assert_allclose(
        bn.moving_variance.numpy(),
        0.8 * initial_variance + 0.2 * conv.var(axis=(0, 1, 2)),  # biased: ddof=0
        rtol=1e-5,
    )
    for name in ("bn", "bn_flat"):
        for stat in ("moving_mean", "moving_variance"):
            np.testing.assert_allclose(
                getattr(fused_model.get_layer(name), stat).numpy(),
                getattr(keras_model.get_layer(name), stat).numpy(),
                rtol=1e-5,
            )
    np.testing.assert_allclose(
        fused_model(x, training=False), keras_model(x, training=False), rtol=1e-4, atol=1e-5
    )
    # The same variables and checkpoint keys: a checkpoint written with the switch on
    # restores into a model with it off.
    tf.train.Checkpoint(model=fused_model).write(str(tmp_path / "fused"))
    plain = _tiny_model(11)
    tf.train.Checkpoint(model=plain).read(str(tmp_path / "fused")).assert_consumed()
    for restored, saved in zip(plain.variables, fused_model.variables, strict=True):
        assert restored.path == saved.path
        np.testing.assert_array_equal(restored.numpy(), saved.numpy())
    assert batch_norm.use_fused_kernel(fused_model, enabled=False) == 2
    assert type(fused_model.get_layer("bn")) is keras.layers.BatchNormalization


def test_fused_kernel_under_mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        keras_model, fused_model = _tiny_model(5), _tiny_model(5)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    batch_norm.use_fused_kernel(fused_model)
    x = np.random.default_rng(1).normal(0, 1, (4, 6, 6, 3)).astype(np.float32)
    expected, _ = _train_step(keras_model, x)
    outputs, _ = _train_step(fused_model, x)
    np.testing.assert_allclose(outputs, expected, rtol=0.05, atol=0.05)
    np.testing.assert_allclose(
        fused_model.get_layer("bn").moving_mean.numpy(),
        keras_model.get_layer("bn").moving_mean.numpy(),
        rtol=1e-2,
        atol=1e-3,
    )
