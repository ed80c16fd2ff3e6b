"""Binary layers and networks (official/models/binary.py): the quantizers' forward values and
surrogate gradients against NumPy transcriptions of the papers' formulas, the layers against a
NumPy binary convolution, mixed precision, serialization, and the registered models' exact
parameter counts with their binary/real split."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import randomize

from official.models import binary, registry

# Points where the surrogate gradients change: |x| = 1 belongs to the pass band (<= 1).
POINTS = np.array([-2.0, -1.0, -0.75, -0.25, 0.0, 0.25, 0.75, 1.0, 1.5], np.float32)


def _np_sign(x):
    return np.where(x >= 0, 1.0, -1.0).astype(np.float32)


def _gradient(function, x, upstream):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = function(x)
    return y.numpy(), tape.gradient(y, x, output_gradients=tf.constant(upstream)).numpy()


def test_ste_sign_and_approx_sign_match_the_papers_gradients():
    upstream = np.linspace(0.5, 2.0, POINTS.size).astype(np.float32)
    value, gradient = _gradient(binary.ste_sign, POINTS, upstream)
    np.testing.assert_array_equal(value, _np_sign(POINTS))
    # Hubara et al. arXiv 1602.02830 §1.3: g_r = g_q 1{|r| <= 1}.
    np.testing.assert_array_equal(gradient, upstream * (np.abs(POINTS) <= 1))
    value, gradient = _gradient(binary.approx_sign, POINTS, upstream)
    np.testing.assert_array_equal(value, _np_sign(POINTS))
    # Bi-Real arXiv 1808.00278 eq. 5: dF/dx = 2 − 2|x| on |x| <= 1, else 0.
    expected = upstream * np.where(np.abs(POINTS) <= 1, 2 - 2 * np.abs(POINTS), 0)
    np.testing.assert_allclose(gradient, expected, rtol=1e-6, atol=0)


def test_sign_is_exactly_plus_minus_one_in_bfloat16():
    x = tf.constant(np.random.default_rng(0).normal(0, 0.3, 1000), tf.bfloat16)
    for quantizer in (binary.ste_sign, binary.approx_sign):
        values = quantizer(x).numpy().astype(np.float32)
        np.testing.assert_array_equal(values, _np_sign(x.numpy().astype(np.float32)))


def test_kernel_scale_is_the_mean_magnitude_per_output_channel_and_exact_on_packed_kernels():
    kernel = np.random.default_rng(1).normal(0, 0.1, (3, 3, 4, 6)).astype(np.float32)
    alpha = binary.kernel_scale(tf.constant(kernel)).numpy()
    np.testing.assert_allclose(alpha, np.abs(kernel).mean(axis=(0, 1, 2)), rtol=1e-6)
    signs = _np_sign(kernel)
    packed = signs * alpha  # what a packed export loads back
    np.testing.assert_array_equal(binary.kernel_scale(tf.constant(packed)).numpy(), alpha)
    np.testing.assert_array_equal(binary.binarize_kernel(tf.constant(packed)).numpy(), packed)
    # The binary kernel α·sign(W) is the least-squares optimum of ||W − αB|| (XNOR-Net eq. 6).
    binary_kernel = binary.binarize_kernel(tf.constant(kernel)).numpy()
    np.testing.assert_allclose(binary_kernel, packed, rtol=1e-6)


@pytest.mark.parametrize("quantizer", ["xnor", "magnitude_aware"])
def test_kernel_gradients_match_numpy(quantizer):
    rng = np.random.default_rng(2)
    kernel = rng.normal(0, 0.6, (2, 2, 3, 4)).astype(np.float32)  # some |W| > 1
    upstream = rng.normal(0, 1, kernel.shape).astype(np.float32)
    _, gradient = _gradient(lambda w: binary.binarize_kernel(w, quantizer), kernel, upstream)
    n = kernel[..., 0].size
    alpha = np.abs(kernel).mean(axis=(0, 1, 2))
    signs = _np_sign(kernel)
    expected = upstream * alpha * (np.abs(kernel) <= 1)  # Bi-Real §3.3, magnitude-aware
    if quantizer == "xnor":
        # The chain rule through α = mean|W| too (XNOR-Net eq. 7; the reference code's
        # m + m_add): + sign(W_i)/n · Σ_j ĝ_j sign(W_j) over the output channel.
        expected = expected + signs / n * (upstream * signs).sum(axis=(0, 1, 2))
    np.testing.assert_allclose(gradient, expected, rtol=1e-5, atol=1e-6)


def _np_binary_conv(inputs, kernel, stride, pad, scaled):
    """XNOR-Net's binary convolution (arXiv 1603.05279 §3.2): (sign(I) ⊛ sign(W)) ⊙ Kα with
    zero padding after the sign, as loops."""
    k, _, _, out = kernel.shape
    alpha = np.abs(kernel).mean(axis=(0, 1, 2))
    signs_in = np.pad(_np_sign(inputs), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    magnitude = np.pad(np.abs(inputs).mean(-1), ((0, 0), (pad, pad), (pad, pad)))
    size = (signs_in.shape[1] - k) // stride + 1
    result = np.zeros((inputs.shape[0], size, size, out), np.float64)
    for i in range(size):
        for j in range(size):
            rows, cols = slice(i * stride, i * stride + k), slice(j * stride, j * stride + k)
            window = signs_in[:, rows, cols, :]
            result[:, i, j, :] = np.einsum("nhwc,hwco->no", window, _np_sign(kernel)) * alpha
            if scaled:
                result[:, i, j, :] *= magnitude[:, rows, cols].mean(axis=(1, 2))[:, None]
    return result


@pytest.mark.parametrize("scaled", [False, True])
def test_binary_conv_and_dense_match_numpy(scaled):
    rng = np.random.default_rng(3)
    inputs = rng.normal(0, 1, (2, 6, 6, 3)).astype(np.float32)
    layer = binary.BinaryConv2D(
        4, 3, strides=2, padding="symmetric", input_quantizer="ste_sign", input_scaling=scaled
    )
    outputs = np.asarray(layer(inputs))
    expected = _np_binary_conv(inputs, layer.kernel.numpy(), stride=2, pad=1, scaled=scaled)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)
    dense = binary.BinaryDense(5, input_quantizer="approx_sign", input_scaling=scaled)
    vectors = inputs.reshape(2, -1)
    dense.build(vectors.shape)
    kernel = dense.kernel.numpy()
    expected = _np_sign(vectors) @ (_np_sign(kernel) * np.abs(kernel).mean(axis=0))
    if scaled:
        expected = expected * np.abs(vectors).mean(axis=1, keepdims=True)
    np.testing.assert_allclose(np.asarray(dense(vectors)), expected, rtol=1e-5, atol=1e-5)


def test_bwn_keeps_real_inputs():
    inputs = np.random.default_rng(4).normal(0, 1, (1, 4, 4, 2)).astype(np.float32)
    layer = binary.BinaryConv2D(3, 1)  # no input quantizer: BWN
    kernel_outputs = np.asarray(layer(inputs))
    kernel = layer.kernel.numpy()[0, 0]
    expected = inputs @ (_np_sign(kernel) * np.abs(kernel).mean(axis=0))
    np.testing.assert_allclose(kernel_outputs, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="input_scaling"):
        binary.BinaryConv2D(3, 1, input_scaling=True)


def test_mixed_bfloat16_computes_in_bfloat16_from_float32_weights(mixed_bfloat16):
    inputs = np.random.default_rng(5).normal(0, 1, (2, 8, 8, 3)).astype(np.float32)
    layer = binary.BinaryConv2D(
        8, 3, padding="same", input_quantizer="ste_sign", input_scaling=True
    )
    with tf.GradientTape() as tape:
        outputs = layer(inputs)
        loss = tf.reduce_sum(tf.cast(outputs, tf.float32) ** 2)
    gradient = tape.gradient(loss, layer.kernel.value)
    assert outputs.dtype == "bfloat16" and layer.kernel.dtype == "float32"
    assert gradient.dtype == tf.float32 and np.all(np.isfinite(gradient.numpy()))
    # bfloat16 rounds α, K and the sums (8-bit mantissa): within 1-2 % of the float64 result.
    expected = _np_binary_conv(inputs, layer.kernel.numpy(), stride=1, pad=1, scaled=True)
    scale = np.abs(expected).max()
    relative = outputs.numpy().astype(np.float32) / scale
    np.testing.assert_allclose(relative, expected / scale, atol=0.02)


@pytest.mark.parametrize(
    "name", ["birealnet18", pytest.param("xnor_alexnet", marks=pytest.mark.slow)]
)
def test_binary_models_save_load_and_rebuild(name, tmp_path):
    size = 64 if "alexnet" in name else 32
    model = registry.get(name).build(num_classes=3, image_size=size, width_multiplier=0.125)
    randomize(model)
    images = np.random.default_rng(6).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    expected = np.asarray(model(images, training=False))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert {type(layer).__name__ for layer in loaded.layers} >= {"BinaryConv2D"}
    np.testing.assert_array_equal(np.asarray(loaded(images, training=False)), expected)
    # The run's way: rebuild from the registry, load the weights.
    rebuilt = registry.get(name).build(num_classes=3, image_size=size, width_multiplier=0.125)
    model.save_weights(tmp_path / "model.weights.h5")
    rebuilt.load_weights(tmp_path / "model.weights.h5")
    np.testing.assert_array_equal(np.asarray(rebuilt(images, training=False)), expected)


# Exact counts at 1,000 classes: (Keras count_params total, binary, real trainable,
# non-trainable BN statistics). Bi-Real-18's total and its 4.03 MiB (1 bit per binary weight,
# 32 per other number) are larq zoo's BiRealNet docstring (11,699,112 parameters, 4.03 MB).
PARAMETERS = {
    "bwn_resnet18": (11_699_112, 10_985_472, 704_040, 9_600),
    "xnor_resnet18": (11_697_320, 10_985_472, 703_144, 8_704),
    "birealnet18": (11_699_112, 10_985_472, 704_040, 9_600),
    "xnor_alexnet": (62_426_888, 58_236_928, 4_160_904, 29_056),
    "bwn_alexnet": (62_407_048, 58_236_928, 4_150_984, 19_136),
}


def _parameter_params():
    for name, counts in PARAMETERS.items():
        marks = [pytest.mark.slow] if name.endswith("alexnet") or name == "bwn_resnet18" else []
        yield pytest.param(name, counts, marks=marks)


@pytest.mark.parametrize("name, counts", _parameter_params())
def test_parameter_counts_and_binary_split(name, counts):
    spec = registry.get(name)
    size = 64 if spec.family == "alexnet" else 32  # the counts do not depend on the size
    model = spec.build(num_classes=1000, image_size=size)
    split = binary.parameter_split(model)
    assert (split.total, split.binary, split.real, split.non_trainable) == counts
    assert split.total == model.count_params()
    # The binary weights are the 3x3 kernels of the residual branches (16 layers) or AlexNet's
    # conv2..5, fc6, fc7.
    assert len(binary.binary_layers(model)) == (6 if spec.family == "alexnet" else 16)
    if name == "birealnet18":
        assert round(split.memory_bytes / 2**20, 2) == 4.03
    keras.backend.clear_session()


def test_binary_switch_errors():
    with pytest.raises(ValueError, match="basic blocks"):
        registry.get("resnet50").build(image_size=32, width_multiplier=0.125, binary="xnor")
    with pytest.raises(ValueError, match="unknown binary mode 'ternary'"):
        registry.get("resnet18").build(image_size=32, width_multiplier=0.125, binary="ternary")
    small = dict(width_multiplier=0.125)
    with pytest.raises(ValueError, match="need a normalization"):
        registry.get("xnor_alexnet").build(image_size=64, normalization=None, **small)
    with pytest.raises(ValueError, match="zero_gamma"):
        registry.get("xnor_resnet18").build(image_size=32, zero_gamma=True, **small)
