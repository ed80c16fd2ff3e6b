"""The padding rules behind every builder's `padding` switch ("tf": TensorFlow's SAME, "torch":
PyTorch's symmetric padding), checked against NumPy transcriptions of both frameworks'
arithmetic; and the `norm_epsilon` switch."""

import keras
import numpy as np
import pytest

from official.models import layers, registry


def _pads(size: int, kernel: int, strides: int, rule: str) -> tuple[int, int]:
    """(before, after) padding of one axis. "same": TensorFlow's SAME (output ⌈n/s⌉, the total
    max((out − 1)·s + k − n, 0), the odd cell after); "symmetric": PyTorch's padding=k//2 on
    each side for an odd kernel."""
    if rule == "symmetric":
        return kernel // 2, kernel // 2
    out = -(-size // strides)
    total = max((out - 1) * strides + kernel - size, 0)
    return total // 2, total - total // 2


def _padded(x: np.ndarray, kernel: int, strides: int, rule: str, fill: float) -> np.ndarray:
    (top, bottom), (left, right) = (_pads(n, kernel, strides, rule) for n in x.shape[1:3])
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=fill)


def _windows(padded: np.ndarray, kernel: int, strides: int) -> np.ndarray:
    """(N, H', W', k, k, C): the windows of a VALID k×k pass with this stride, as PyTorch's
    output size floor((n_padded − k) / s) + 1."""
    rows = (padded.shape[1] - kernel) // strides + 1
    cols = (padded.shape[2] - kernel) // strides + 1
    return np.stack(
        [
            np.stack(
                [
                    padded[
                        :, i * strides : i * strides + kernel, j * strides : j * strides + kernel
                    ]
                    for j in range(cols)
                ],
                axis=1,
            )
            for i in range(rows)
        ],
        axis=1,
    )


def _pool_reference(x, kind: str, kernel: int, strides: int, rule: str) -> np.ndarray:
    """PyTorch's MaxPool2d / AvgPool2d(k, s, padding=k//2) for "symmetric" (implicit −inf for
    max; average over k² cells, the padded zeros counted: count_include_pad=True); TensorFlow's
    SAME pooling for "same" (padded cells take no part: excluded from max and from the count)."""
    windows = _windows(
        _padded(x.astype(np.float64), kernel, strides, rule, np.nan), kernel, strides
    )
    if kind == "max":
        return np.nanmax(windows, axis=(3, 4))
    total = np.nansum(windows, axis=(3, 4))
    if rule == "symmetric":
        return total / kernel**2
    return total / np.sum(~np.isnan(windows), axis=(3, 4))


def _conv_reference(x, kernel: np.ndarray, strides: int, rule: str, depthwise=False):
    """A cross-correlation in float64 over the padded input (PyTorch's Conv2d(stride=s,
    padding=k//2) for "symmetric"; TensorFlow's SAME for "same"); Keras kernel layout
    (k, k, C_in, C_out), or (k, k, C, 1) for a depthwise convolution."""
    size = kernel.shape[0]
    windows = _windows(_padded(x.astype(np.float64), size, strides, rule, 0.0), size, strides)
    kernel = kernel.astype(np.float64)
    if depthwise:
        return np.einsum("nhwabc,abc->nhwc", windows, kernel[..., 0])
    return np.einsum("nhwabc,abco->nhwo", windows, kernel)


# Height 6 (even) and width 7 (odd): at stride 2 the rules differ on the even axis only, where
# SAME pads (0, 1) and PyTorch (1, 1).
SHAPE = (2, 6, 7, 3)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("strides", [1, 2])
def test_pooling_follows_pytorch_and_tensorflow(kind, strides):
    assert _pads(6, 3, 2, "same") == (0, 1) and _pads(7, 3, 2, "same") == (1, 1)
    # Negative inputs: a zero in the padding would win every border max.
    x = -np.random.default_rng(0).uniform(1, 2, SHAPE).astype("float32")
    inputs = keras.Input(SHAPE[1:])
    rules = ("symmetric", "same")
    outputs = [
        layers.pool2d(inputs, kind, 3, strides=strides, padding=rule, name=rule) for rule in rules
    ]
    got = keras.Model(inputs, outputs)(x)
    for rule, value in zip(rules, got):
        expected = _pool_reference(x, kind, 3, strides, rule)
        np.testing.assert_allclose(np.asarray(value), expected, rtol=1e-6)
    torch, tf = (np.asarray(value) for value in got)
    if kind == "max" and strides == 1:
        np.testing.assert_array_equal(torch, tf)  # both ignore the one-pixel border
    else:  # the windows or the averages' counts differ
        assert np.abs(torch - tf).max() > 0.1


def test_torch_max_pooling_pads_with_minus_infinity_not_zeros():
    # PyTorch's MaxPool2d(k, s, padding=k//2) on negative inputs, for k = 3 and 5.
    x = -np.random.default_rng(1).uniform(1, 2, SHAPE).astype("float32")
    inputs = keras.Input(SHAPE[1:])
    for kernel in (3, 5):
        name = f"pool{kernel}"
        pooled = layers.pool2d(inputs, "max", kernel, strides=2, padding="symmetric", name=name)
        model = keras.Model(inputs, pooled)
        assert isinstance(model.get_layer(name + "_pad"), layers.WindowPadding2D)
        expected = _pool_reference(x, "max", kernel, 2, "symmetric")
        assert expected.shape == (2, 3, 4, 3) and expected.max() < 0
        np.testing.assert_array_equal(np.asarray(model(x)), expected.astype("float32"))
    # keras.applications' zero padding (padding=None of ResNet, DenseNet, ShuffleNet): the
    # border maxima become 0.
    zeros = layers.pool2d(
        inputs, "max", 3, strides=2, padding="symmetric", pad_with_zeros=True, name="zeros"
    )
    pooled = np.asarray(keras.Model(inputs, zeros)(x))
    border = np.ones(pooled.shape, bool)
    border[:, 1:, 1:-1] = False  # the windows that touch the first row or a padded column
    assert np.all(pooled[border] == 0) and np.all(pooled[~border] < 0)
    with pytest.raises(ValueError, match="unknown pooling kind 'min'"):
        layers.pool2d(inputs, "min", 3, strides=2, padding="same", name="min")


@pytest.mark.parametrize("depthwise", [False, True])
def test_stride_2_convolutions_follow_pytorch_and_tensorflow(depthwise):
    x = np.random.default_rng(2).normal(size=SHAPE).astype("float32")
    inputs = keras.Input(SHAPE[1:])
    outputs = {}
    for rule in ("symmetric", "same"):
        if depthwise:
            padded, keras_padding = layers.window_padding(inputs, 3, 2, 1, rule, rule)
            layer = keras.layers.DepthwiseConv2D(3, 2, padding=keras_padding, name=rule + "_conv")
            outputs[rule] = layer(padded)
        else:
            outputs[rule] = layers.conv2d(
                inputs, 4, 3, strides=2, padding=rule, name=rule + "_conv"
            )
    model = keras.Model(inputs, outputs)
    got = model(x)
    for rule in ("symmetric", "same"):
        kernel = model.get_layer(rule + "_conv").get_weights()[0]
        expected = _conv_reference(x, kernel, 2, rule, depthwise)
        assert got[rule].shape == expected.shape == (2, 3, 4, expected.shape[-1])
        np.testing.assert_allclose(np.asarray(got[rule]), expected, rtol=1e-4, atol=1e-5)
    # The same weights under both rules: the even axis is padded differently.
    model.get_layer("same_conv").set_weights(model.get_layer("symmetric_conv").get_weights())
    got = model(x)
    assert np.abs(np.asarray(got["symmetric"]) - np.asarray(got["same"])).max() > 0.1


def test_mobilenet_v2_with_torch_padding_computes_pytorch_convolutions():
    # The stem (3x3/2 convolution) and the first strided depthwise convolution of a
    # MobileNetV2 built for PyTorch weights, against PyTorch's arithmetic in float64.
    model = registry.get("mobilenet_v2").build(
        image_size=32, width_multiplier=0.25, padding="torch", norm_epsilon=1e-5
    )
    names = ("input_normalization", "stem_conv", "block1_expand_relu", "block1_dw_conv")
    probe = keras.Model(model.input, [model.get_layer(name).output for name in names])
    images = np.random.default_rng(3).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    stem_in, stem_out, dw_in, dw_out = (np.asarray(v) for v in probe(images, training=False))
    stem = model.get_layer("stem_conv").get_weights()[0]
    depthwise = model.get_layer("block1_dw_conv").get_weights()[0]
    for x, got, kernel, dw in ((stem_in, stem_out, stem, False), (dw_in, dw_out, depthwise, True)):
        expected = _conv_reference(x, kernel, 2, "symmetric", depthwise=dw)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * scale)
        tensorflow = _conv_reference(x, kernel, 2, "same", depthwise=dw)
        assert np.abs(got - tensorflow).max() > 0.01 * scale  # the test can tell them apart
    epsilons = {
        layer.epsilon
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    }
    assert epsilons == {1e-5}


def test_switch_values_are_checked():
    assert layers.padding_rule(None, "symmetric") == "symmetric"
    assert layers.padding_rule("tf", "symmetric") == "same"
    assert layers.padding_rule("torch", "same") == "symmetric"
    with pytest.raises(ValueError, match="unknown padding 'same'; choose one of: tf, torch"):
        layers.padding_rule("same", "symmetric")
    assert layers.normalization_epsilon(None, 1e-3) == 1e-3
    assert layers.normalization_epsilon(1e-5, 1e-3) == 1e-5
    with pytest.raises(ValueError, match="norm_epsilon must be positive"):
        layers.normalization_epsilon(0.0, 1e-3)
