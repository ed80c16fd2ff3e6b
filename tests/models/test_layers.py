import keras
import numpy as np
import pytest

from official.models import count_flops, layers


def test_make_divisible_is_the_reference_rounding():
    # TF-slim _make_divisible / tensorflow/tpu round_filters.
    assert layers.make_divisible(35.2) == 32  # 32 · 1.1
    assert layers.make_divisible(1408) == 1408  # 1280 · 1.1
    assert layers.make_divisible(18) == 24  # 16 would lose more than 10%
    assert layers.make_divisible(3) == 8
    assert layers.make_divisible(100, divisor=16) == 96


def test_depthwise_separable_saves_what_the_paper_says():
    # Howard et al. arXiv 1704.04861 eq. 5: cost ratio 1/N + 1/k² against a full convolution.
    m, n, k, size = 64, 128, 3, 16
    inputs = keras.Input((size, size, m))
    separable = keras.Model(
        inputs,
        layers.depthwise_separable(inputs, n, k, name="sep", normalization="batch"),
    )
    full = keras.Model(inputs, layers.conv2d(inputs, n, k, name="full"))
    assert count_flops(separable) / count_flops(full) == pytest.approx(1 / n + 1 / k**2)
    kernels = sum(int(np.prod(w.shape)) for w in separable.weights if "kernel" in w.path)
    assert kernels == k * k * m + m * n
    names = [layer.name for layer in separable.layers]
    assert names[1:4] == ["sep_conv", "sep_bn", "sep_relu"]
    assert names[4:] == ["sep_pw_conv", "sep_pw_bn", "sep_pw_relu"]
    assert separable.output_shape == (None, size, size, n)


def test_squeeze_excite_rescales_channels_by_a_gate():
    inputs = keras.Input((4, 4, 8))
    model = keras.Model(inputs, layers.squeeze_excite(inputs, 2, name="se"))
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 8)).astype("float32")
    w1, b1 = model.get_layer("se_reduce").get_weights()
    w2, b2 = model.get_layer("se_expand").get_weights()
    pooled = x.mean(axis=(1, 2))
    gate = 1 / (1 + np.exp(-(np.maximum(pooled @ w1[0, 0] + b1, 0) @ w2[0, 0] + b2)))
    np.testing.assert_allclose(np.asarray(model(x)), x * gate[:, None, None], atol=1e-5)


def test_local_response_normalization_matches_the_formula():
    x = np.random.default_rng(0).normal(size=(1, 2, 2, 7)).astype("float32") * 30
    y = np.asarray(layers.LocalResponseNormalization()(x))
    expected = np.empty_like(x)
    for c in range(7):
        window = (x[..., max(0, c - 2) : c + 3] ** 2).sum(-1)
        expected[..., c] = x[..., c] / (2 + 1e-4 * window) ** 0.75
    np.testing.assert_allclose(y, expected, rtol=1e-5)
    config = layers.LocalResponseNormalization(size=3).get_config()
    assert layers.LocalResponseNormalization.from_config(config).size == 3


def test_he_normal_fan_out_initializer():
    kernel = layers.kernel_initializer("kaiming_normal_fan_out")((3, 3, 64, 256))
    # N(0, 2 / fan_out), fan_out = 3·3·256.
    assert float(np.std(np.asarray(kernel))) == pytest.approx(np.sqrt(2 / (9 * 256)), rel=0.02)
    with pytest.raises(ValueError, match="unknown kernel_initializer 'lecun'.*xavier_uniform"):
        layers.kernel_initializer("lecun")


def test_padding_rules_and_rectangular_kernels():
    inputs = keras.Input((17, 17, 3))
    symmetric = layers.conv2d(inputs, 4, (1, 7), strides=2, name="a")
    same = layers.conv2d(inputs, 4, 3, strides=2, padding="same", name="b")
    valid = layers.conv2d(inputs, 4, 3, strides=2, padding="valid", name="c")
    assert symmetric.shape[1:3] == (9, 9)
    assert same.shape[1:3] == (9, 9)
    assert valid.shape[1:3] == (8, 8)


def test_group_normalization_adapts_groups_to_narrow_layers():
    layer = layers.normalization_layer("group", "gn", channels=24)
    assert layer.groups == 8
    assert layers.normalization_layer("group", "gn", channels=64).groups == 32
