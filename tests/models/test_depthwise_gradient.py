"""Depthwise convolutions with their kernel gradient in strips of ≤ 3 columns: the same outputs,
the gradients of float64 NumPy, one backward-weights op per strip, only float32 and bfloat16
stride-1 layers wider than three columns affected, and the switch leaves variables and
checkpoints alone."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import NO_BFLOAT16_BOUND, build_under_policy, op_types, training_pass

from official.models import depthwise_gradient
from official.training import precision


def _expected(x, kernel, bias, dy, padding):
    """Float64 NumPy: outputs (before the activation) and the input, kernel and bias gradients
    of a stride-1 depthwise convolution."""
    rows, columns = kernel.shape[:2]
    if padding == "same":
        pads = [(0, 0), ((rows - 1) // 2, rows // 2), ((columns - 1) // 2, columns // 2), (0, 0)]
    else:
        pads = [(0, 0)] * 4
    padded = np.pad(x, pads)
    height, width = dy.shape[1:3]
    y = np.zeros(dy.shape)
    dpadded = np.zeros(padded.shape)
    dkernel = np.zeros(kernel.shape[:3])
    for i in range(rows):
        for j in range(columns):
            window = padded[:, i : i + height, j : j + width, :]
            y += window * kernel[i, j, :, 0]
            dkernel[i, j] = np.einsum("nhwc,nhwc->c", window, dy)
            dpadded[:, i : i + height, j : j + width, :] += dy * kernel[i, j, :, 0]
    unpadded = tuple(slice(start, size - end) for (start, end), size in zip(pads, padded.shape))
    return y + bias, dpadded[unpadded], dkernel[..., None], dy.sum(axis=(0, 1, 2))


def _backward_filter_ops(layer, inputs) -> int:
    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            y = layer(x)
        return tape.gradient(y, layer.trainable_variables)

    ops = op_types(step.get_concrete_function(inputs).graph)
    return ops.count("DepthwiseConv2dNativeBackpropFilter")


@pytest.mark.parametrize(
    "kernel_size, padding, strips",
    [((5, 5), "same", 2), ((7, 7), "same", 3), ((3, 4), "same", 2), ((1, 7), "valid", 3)],
)
def test_one_layer_matches_numpy_with_one_backward_op_per_strip(kernel_size, padding, strips):
    rng = np.random.default_rng(sum(kernel_size))
    x = rng.normal(size=(2, 9, 11, 6))
    layer = depthwise_gradient.StripGradientDepthwiseConv2D(
        kernel_size, padding=padding, use_bias=True, activation="relu"
    )
    layer.build(x.shape)
    kernel = rng.normal(size=layer.kernel.shape)
    bias = rng.normal(size=6)
    layer.kernel.assign(kernel.astype("float32"))
    layer.bias.assign(bias.astype("float32"))
    inputs = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        y = layer(inputs)
    dy = rng.normal(size=y.shape)
    dx, dkernel, dbias = tape.gradient(
        y, [inputs, layer.kernel, layer.bias], output_gradients=tf.constant(dy, tf.float32)
    )
    pre_activation, *expected = _expected(x, kernel, bias, dy * (y.numpy() > 0), padding)
    np.testing.assert_allclose(y, np.maximum(pre_activation, 0), rtol=1e-5, atol=1e-5)
    for got, want in zip((dx, dkernel, dbias), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    assert _backward_filter_ops(layer, inputs) == strips


@pytest.mark.parametrize(
    "options, policy, ops",
    [
        ({"strides": 2}, "float32", 1),
        ({"dilation_rate": 2}, "float32", 1),
        ({}, "mixed_float16", 1),
        ({}, "mixed_bfloat16", 2),
    ],
)
def test_only_stride_one_float32_and_bfloat16_calls_take_strips(options, policy, ops):
    layer = depthwise_gradient.StripGradientDepthwiseConv2D(
        5, padding="same", dtype=policy, **options
    )
    inputs = tf.random.normal([2, 12, 12, 4], dtype=keras.DTypePolicy(policy).compute_dtype)
    assert _backward_filter_ops(layer, inputs) == ops


@pytest.mark.skipif(not precision.cpu_has_bfloat16(), reason=NO_BFLOAT16_BOUND)
def test_bfloat16_kernel_gradient_within_bfloat16_rounding():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 9, 11, 6))
    layer = depthwise_gradient.StripGradientDepthwiseConv2D(
        5, padding="same", use_bias=False, dtype="mixed_bfloat16"
    )
    layer.build(x.shape)
    kernel = rng.normal(size=layer.kernel.shape)
    layer.kernel.assign(kernel.astype("float32"))
    inputs = tf.constant(x, tf.bfloat16)
    with tf.GradientTape() as tape:
        y = layer(inputs)
    dy = rng.normal(size=y.shape)
    dkernel = tape.gradient(y, layer.kernel, output_gradients=tf.constant(dy, tf.bfloat16))
    # Against float64 NumPy on the bfloat16-rounded operands: within one bfloat16 rounding
    # (2^-8) of the largest value (measured: 0.14 %).
    rounded = lambda a: tf.cast(tf.cast(a, tf.bfloat16), tf.float64).numpy()  # noqa: E731
    _, _, want, _ = _expected(rounded(x), rounded(kernel), 0.0, rounded(dy), "same")
    got = tf.cast(dkernel, tf.float64).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=2.0**-8 * np.abs(want).max())


def _wide_depthwise(model) -> list:
    return [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.DepthwiseConv2D) and layer.kernel_size[1] > 3
    ]


def test_efficientnet_switch_same_pass_same_gradients_checkpoint_unchanged(tmp_path):
    model = build_under_policy(
        "float32",
        "efficientnet_b0",
        num_classes=5,
        image_size=64,
        dropout=0.0,
        stochastic_depth_rate=0.0,
    )
    rng = np.random.default_rng(2)
    images = rng.uniform(0, 255, (4, 64, 64, 3)).astype("float32")
    labels = rng.integers(0, 5, 4)
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "before"))
    names = [v.path for v in model.variables]
    plain_logits, plain, plain_ops = training_pass(model, images, labels, restore=True)
    wide = _wide_depthwise(model)
    stride_one = [layer for layer in wide if tuple(layer.strides) == (1, 1)]
    # The 5×5 MBConv blocks of stages 3, 5 and 6 (Tan & Le arXiv 1905.11946, Table 1); the
    # first of stages 3 and 6 strides.
    assert (len(wide), len(stride_one)) == (9, 7)

    assert depthwise_gradient.wide_layers(model) == wide
    assert depthwise_gradient.use_strip_gradient(model) == 9
    assert [v.path for v in model.variables] == names
    tf.train.Checkpoint(model=model).read(path).assert_existing_objects_matched()
    logits, gradients, ops = training_pass(model, images, labels)
    np.testing.assert_array_equal(logits, plain_logits)  # the same forward pass
    # Two strips (3 + 2 columns) for each stride-1 5×5 layer.
    count = "DepthwiseConv2dNativeBackpropFilter"
    assert ops.count(count) == plain_ops.count(count) + 7
    paths = [v.path for v in model.trainable_variables]
    for path, got, want in zip(paths, gradients, plain, strict=True):
        # Only the depthwise kernels' gradients change, by float32 rounding (2.8e-7 of the
        # largest at most here).
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max(), err_msg=path)

    assert depthwise_gradient.use_strip_gradient(model, enabled=False) == 9
    assert {type(layer) for layer in _wide_depthwise(model)} == {keras.layers.DepthwiseConv2D}


def test_models_with_narrow_depthwise_kernels_are_untouched():
    model = build_under_policy(
        "float32", "mobilenet_v2", num_classes=5, image_size=32, width_multiplier=0.35
    )
    assert depthwise_gradient.wide_layers(model) == []
    assert depthwise_gradient.use_strip_gradient(model) == 0


@pytest.mark.parametrize(
    "flags, strips",
    [({"avx2", "avx512f", "avx512_bf16"}, True), ({"avx2", "amx_bf16", "avx512f"}, True),
     ({"avx2", "fma"}, False)],
)  # fmt: skip
def test_training_takes_strips_only_on_cpus_with_avx512(flags, strips, monkeypatch, caplog):
    """Training's hot path (train_lib._hot_path): strips where oneDNN's wide depthwise kernel
    gradient is its slow AVX-512 one; on an AVX2-only CPU the whole kernel is the faster
    (official/models/depthwise_gradient.py), kept with a log line for models that have wide
    kernels (none for a 3×3 one); the switch off keeps it everywhere."""
    from absl import logging

    from official import config as config_lib
    from official import train_lib

    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    for kernel_size, switch in itertools.product((5, 3), (True, False)):
        inputs = keras.Input((8, 8, 4))
        layer = keras.layers.DepthwiseConv2D(kernel_size, name="dw")
        model = keras.Model(inputs, layer(inputs))
        wide = kernel_size > depthwise_gradient.STRIP_COLUMNS
        config = config_lib.Config()
        config.runtime.strip_depthwise_gradient = switch
        logging.set_verbosity(logging.INFO)
        caplog.clear()
        with caplog.at_level("INFO"):
            train_lib._hot_path(model, config, precision.Precision("float32"), replicas=1)
        switched = isinstance(
            model.get_layer("dw"), depthwise_gradient.StripGradientDepthwiseConv2D
        )
        assert switched == (switch and strips and wide)
        logged = "not strips (no AVX-512" in caplog.text
        assert logged == (switch and not strips and wide), (kernel_size, switch)
