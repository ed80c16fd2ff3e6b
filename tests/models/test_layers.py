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


@pytest.mark.parametrize("channels", [6, None])
def test_instance_normalization_is_per_sample_per_channel(channels):
    # Ulyanov et al. arXiv 1607.08022 eq. 2: y = γ (x − μ_nc) / √(σ²_nc + ε) + β, with μ_nc and
    # σ²_nc over the height and width of sample n, channel c.
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(2, 5, 7, 6)).astype("float32")
    layer = layers.normalization_layer("instance", "in", channels=channels, epsilon=1e-3)
    layer.build(x.shape)
    gamma, beta = rng.normal(size=(2, 6)).astype("float32")
    layer.set_weights([gamma, beta])
    mean = x.mean(axis=(1, 2), keepdims=True)
    variance = x.var(axis=(1, 2), keepdims=True)
    expected = (x - mean) / np.sqrt(variance + 1e-3) * gamma + beta
    np.testing.assert_allclose(np.asarray(layer(x, training=False)), expected, atol=1e-4)
    # No moving statistics: training and inference agree, and only γ and β are weights.
    np.testing.assert_allclose(np.asarray(layer(x, training=True)), expected, atol=1e-4)
    assert layer.count_params() == 2 * 6 and not layer.non_trainable_weights


def test_instance_normalization_refuses_a_vector():
    inputs = keras.Input((16,))
    with pytest.raises(ValueError, match="instance normalization needs a feature map.*fc1"):
        layers.dense_norm_act(inputs, 8, name="fc1", normalization="instance")


def test_dense_norm_act_puts_batch_norm_between_the_affine_map_and_the_activation():
    inputs = keras.Input((16,))
    model = keras.Model(inputs, layers.dense_norm_act(inputs, 8, name="fc", normalization="batch"))
    assert [layer.name for layer in model.layers[1:]] == ["fc", "fc_bn", "fc_relu"]
    assert not model.get_layer("fc").use_bias  # BN's β replaces it.
    bn = model.get_layer("fc_bn")
    assert bn.count_params() == 4 * 8
    assert sum(int(np.prod(w.shape)) for w in bn.trainable_weights) == 2 * 8
    plain = layers.dense_norm_act(inputs, 8, name="plain")
    assert plain.shape == (None, 8)


def test_selu_is_the_papers_function_and_self_normalizes_with_lecun_normal():
    # Klambauer et al. arXiv 1706.02515 eq. 2 with λ ≈ 1.0507, α ≈ 1.6733.
    x = np.linspace(-4, 4, 81, dtype="float32")
    lam, alpha = 1.0507009873554805, 1.6732632423543772
    expected = lam * np.where(x > 0, x, alpha * (np.exp(x) - 1))
    selu = layers.activation_layer("selu", "act")
    np.testing.assert_allclose(np.asarray(selu(x)), expected, rtol=1e-5, atol=1e-6)
    # § "Initialization": with N(0, 1/n) weights, unit-variance inputs keep mean 0 and variance
    # 1 through many layers (the fixed point), while ReLU halves the second moment per layer.
    keras.utils.set_random_seed(0)
    h = {"selu": np.random.default_rng(1).normal(size=(256, 128)).astype("float32")}
    h["relu"] = h["selu"]
    for depth in range(10):
        for kind in ("selu", "relu"):
            dense = keras.layers.Dense(
                128, use_bias=False, kernel_initializer=layers.kernel_initializer("lecun_normal")
            )
            h[kind] = np.asarray(layers.activation_layer(kind, f"{kind}{depth}")(dense(h[kind])))
    assert abs(h["selu"].mean()) < 0.1 and 0.8 < h["selu"].var() < 1.2
    assert (h["relu"] ** 2).mean() < 5e-3  # 2⁻¹⁰ ≈ 1e-3


def test_lecun_normal_and_vggs_fixed_normal_initializers():
    # lecun_normal: truncated N(0, 1/fan_in); normal_0.01: N(0, 10⁻²) (arXiv 1409.1556 §3.1).
    lecun = np.asarray(layers.kernel_initializer("lecun_normal")((3, 3, 64, 64)))
    assert float(lecun.std()) == pytest.approx(np.sqrt(1 / (9 * 64)), rel=0.03)
    fixed = np.asarray(layers.kernel_initializer("normal_0.01")((3, 3, 256, 64)))
    assert float(fixed.std()) == pytest.approx(0.01, rel=0.02)
    assert abs(float(fixed.mean())) < 5e-4


@pytest.mark.parametrize(
    "name",
    [
        "resnet18",
        "vgg11_bn",
        "mobilenet_v1",
        pytest.param("efficientnet_b0", marks=pytest.mark.slow),
        pytest.param("mobilenet_v3_small", marks=pytest.mark.slow),
    ],
)
def test_families_build_with_instance_normalization(name):
    from official.models import registry

    spec = registry.get(name)
    zero_gamma = {"zero_gamma": True} if name == "resnet18" else {}
    model = spec.build(
        image_size=32, width_multiplier=0.25, num_classes=5, normalization="instance", **zero_gamma
    )
    norms = [layer for layer in model.layers if "Normalization" in type(layer).__name__][1:]
    assert norms and all(type(n) is keras.layers.GroupNormalization for n in norms), name
    assert all(n.groups == n.output.shape[-1] for n in norms)  # one channel per group
    assert not model.non_trainable_weights  # no moving statistics anywhere
    if zero_gamma:  # the last normalization of each residual branch starts at γ = 0
        assert not np.any(np.asarray(model.get_layer("conv2_block1_2_bn").gamma))
        assert np.all(np.asarray(model.get_layer("conv2_block1_1_bn").gamma) == 1)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    logits = np.asarray(model(images, training=True))
    assert logits.shape == (2, 5) and np.all(np.isfinite(logits))
