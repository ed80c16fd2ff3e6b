import keras
import numpy as np
import pytest

from official.models import count_flops, registry, xception

# arXiv 1610.02357 Table 3 (1,000 classes): 22,855,952 parameters; keras.applications
# Xception has the same trainable count and 22,910,480 with the BN moving statistics.
TRAINABLE_PARAMS = 22_855_952
KERAS_TOTAL_PARAMS = 22_910_480
# The paper gives no FLOPs. timm's legacy_xception (the same network) lists 8.4 GMACs at
# 299 px. (osmr/imgclsmob lists 8,403.63M: half of its FLOP count, which adds BN, ReLU and
# pooling operations to the 8.36 G multiply-adds of the convolutions and the classifier.)
GMACS_299 = 8.4


@pytest.fixture(scope="module")
def model():
    return registry.get("xception").build(image_size=299)


def test_parameter_count_macs_and_figure_5_layout(model, trainable):
    assert trainable(model) == TRAINABLE_PARAMS
    assert model.count_params() == KERAS_TOTAL_PARAMS
    assert count_flops(model) / 1e9 == pytest.approx(GMACS_299, rel=0.01)
    # §3: 36 convolutional layers (the 1x1 shortcut projections aside) in 14 modules, all
    # separable but the two of the stem; residual connections around modules 2 to 13.
    kinds = [type(layer) for layer in model.layers]
    shortcuts = [layer for layer in model.layers if layer.name.endswith("_shortcut_conv")]
    assert kinds.count(keras.layers.SeparableConv2D) == 34
    assert kinds.count(keras.layers.Conv2D) - len(shortcuts) == 2 and len(shortcuts) == 4
    adds = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert adds == [f"block{n}_add" for n in range(2, 14)]
    middle = [model.get_layer(f"block{n}_sepconv{i}") for n in range(5, 13) for i in (1, 2, 3)]
    assert len(middle) == 24 and {layer.filters for layer in middle} == {728}
    assert all(layer.depth_multiplier == 1 and not layer.use_bias for layer in middle)
    assert model.get_layer("block14_sepconv2_act").output.shape[1:] == (10, 10, 2048)
    assert model.get_layer("top_dropout").rate == 0.5  # §4.3
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 40 and {bn.epsilon for bn in bns} == {1e-3}


def test_parity_with_keras_applications(parity):
    # keras' smallest Xception input is 71 px.
    before, after, normalization = parity("xception", 71)
    assert before > 1e-2 and after < 1e-4
    assert normalization.mean == pytest.approx((127.5,) * 3)
    assert normalization.std == pytest.approx((127.5,) * 3)


def test_features_pooling_and_switches():
    spec = registry.get("xception")
    features = spec.build(image_size=64, features_only=True, width_multiplier=0.25)
    # Unpadded stem: (64 − 3) // 2 + 1 = 31, then 29; every module halves it, rounding up.
    assert [tuple(o.shape[1:]) for o in features.outputs] == [
        (29, 29, 16),
        (15, 15, 32),
        (8, 8, 64),
        (4, 4, 182),
        (2, 2, 512),
    ]
    pooled = spec.build(image_size=None, include_top=False, pooling="max", width_multiplier=0.25)
    assert pooled.output_shape == (None, 512)
    plain = spec.build(
        image_size=32,
        width_multiplier=0.25,
        normalization=None,
        activation="prelu",
        kernel_initializer="he_normal",
        num_classes=3,
    )
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in plain.layers)
    separable = plain.get_layer("block5_sepconv1")
    assert separable.use_bias and isinstance(
        separable.pointwise_initializer, keras.initializers.HeNormal
    )
    assert isinstance(plain.get_layer("block5_sepconv1_act"), keras.layers.PReLU)
    grouped = spec.build(image_size=32, width_multiplier=0.25, normalization="group")
    assert isinstance(grouped.get_layer("block5_sepconv1_bn"), keras.layers.GroupNormalization)


def test_smallest_input_the_unpadded_stem_takes():
    spec = registry.get("xception")
    assert spec.min_resolution == 7
    model = spec.build(image_size=7, width_multiplier=0.25, num_classes=3)
    assert model.get_layer("block1_2_relu").output.shape[1:3] == (1, 1)
    with pytest.raises(ValueError, match="at least 7 px"):
        spec.build(image_size=6)
    with pytest.raises(ValueError):  # the builder itself: no 3x3 map for the second conv
        xception.xception(image_size=6, width_multiplier=0.25)


def test_runs_under_mixed_bfloat16_with_float32_outputs(mixed_bfloat16):
    model = registry.get("xception").build(
        image_size=32, width_multiplier=0.25, num_classes=5, classifier_activation="softmax"
    )
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    probabilities = model(images, training=True)
    assert probabilities.dtype == "float32"
    np.testing.assert_allclose(np.asarray(probabilities).sum(axis=-1), 1.0, atol=1e-3)
