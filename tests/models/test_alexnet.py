import keras
import numpy as np
import pytest

from official.models import alexnet, count_flops, registry
from official.models.layers import LocalResponseNormalization

# Trainable parameters at the reference size with 1,000 classes: torchvision's alexnet
# (docs.pytorch.org/vision/stable/models: 61,100,840) and the 2012 two-tower network
# (conv2/4/5 grouped; per-layer count 34,944 + 307,456 + 885,120 + 663,936 + 442,624 +
# 37,752,832 + 16,781,312 + 4,097,000 = 60,965,224; the paper says "60 million").
TRAINABLE_PARAMS = {"alexnet": 61_100_840, "alexnet_2012": 60_965_224}


@pytest.mark.parametrize("name", sorted(TRAINABLE_PARAMS))
def test_parameter_counts_and_structure(name, trainable):
    model = registry.get(name).build()
    assert trainable(model) == TRAINABLE_PARAMS[name]
    assert model.get_layer("pool5").output.shape[1:] == (6, 6, 256)
    convs = [model.get_layer(f"conv{i}_conv") for i in range(1, 6)]
    lrns = [layer.name for layer in model.layers if isinstance(layer, LocalResponseNormalization)]
    dropouts = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert all(layer.rate == 0.5 for layer in model.layers if layer.name in dropouts)
    if name == "alexnet_2012":
        assert model.input_shape == (None, 227, 227, 3)
        assert [c.filters for c in convs] == [96, 256, 384, 384, 256]
        assert [c.groups for c in convs] == [1, 2, 1, 2, 2]  # the two GPUs' towers
        assert lrns == ["conv1_lrn", "conv2_lrn"]
        assert dropouts == ["fc7_dropout", "predictions_dropout"]  # after fc6 and fc7
        # Grouped convolutions halve conv2/4/5's multiply-adds against one tower (1,132 M).
        assert count_flops(model) == 724_406_816
    else:
        assert model.input_shape == (None, 224, 224, 3)
        assert [c.filters for c in convs] == [64, 192, 384, 256, 256]
        assert {c.groups for c in convs} == {1} and not lrns
        assert dropouts == ["fc6_dropout", "fc7_dropout"]
        assert count_flops(model) == pytest.approx(714.83e6, rel=0.002)  # torchvision: 0.71 G


def test_adaptive_pooling_uses_pytorchs_bins():
    # PyTorch's AdaptiveAvgPool2d(6) on a 8x9 map: bins [floor(i·L/6), ceil((i+1)·L/6)).
    x = np.random.default_rng(0).normal(size=(2, 8, 9, 3)).astype("float32")

    def bins(length):
        return [(i * length // 6, -(-(i + 1) * length // 6)) for i in range(6)]

    expected = np.stack(
        [
            np.stack([x[:, t:b, a:c].mean(axis=(1, 2)) for a, c in bins(9)], axis=1)
            for t, b in bins(8)
        ],
        axis=1,
    )
    assert bins(8)[1] == (1, 3)  # overlapping bins, as PyTorch's
    got = np.asarray(alexnet.AdaptiveAveragePooling2D(6)(x))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    same = np.random.default_rng(1).normal(size=(1, 6, 6, 4)).astype("float32")
    np.testing.assert_array_equal(np.asarray(alexnet.AdaptiveAveragePooling2D(6)(same)), same)


def test_any_size_above_the_minimum_shares_the_fc_weights():
    spec = registry.get("alexnet_2012")
    small = spec.build(image_size=67, width_multiplier=0.125, num_classes=5)
    large = spec.build(image_size=300, width_multiplier=0.125, num_classes=5)
    assert [w.shape for w in small.weights] == [w.shape for w in large.weights]
    large.set_weights(small.get_weights())
    out = large(np.zeros((1, 300, 300, 3), "float32"))
    assert out.shape == (1, 5) and np.all(np.isfinite(out))
    with pytest.raises(ValueError, match="at least 67 px"):
        spec.build(image_size=66)
    with pytest.raises(ValueError, match="at least 63 px"):
        registry.get("alexnet").build(image_size=62)


def test_switches_features_and_heads():
    spec = registry.get("alexnet_2012")
    model = spec.build(
        image_size=96,
        width_multiplier=0.25,
        num_classes=7,
        normalization="batch",
        activation="elu",
        kernel_initializer="xavier_uniform",
        classifier_activation="softmax",
        dropout=0.2,
    )
    kinds = {type(layer).__name__ for layer in model.layers}
    assert "BatchNormalization" in kinds and "LocalResponseNormalization" not in kinds
    assert model.get_layer("conv2_conv").groups == 2 and model.get_layer("fc7").units == 1024
    assert model.get_layer("fc7_dropout").rate == 0.2
    probabilities = np.asarray(model(np.zeros((2, 96, 96, 3), "float32")))
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=1e-5)
    features = spec.build(image_size=227, features_only=True, width_multiplier=0.25)
    assert [o.shape[1] for o in features.outputs] == [55, 27, 13, 6]  # strides 4, 8, 16, 32
    pooled = spec.build(image_size=None, include_top=False, pooling="avg", width_multiplier=0.25)
    assert pooled.output_shape == (None, 64)
    with pytest.raises(ValueError, match="pooling only applies without"):
        spec.build(pooling="avg")


@pytest.mark.parametrize("name", sorted(TRAINABLE_PARAMS))
def test_runs_under_mixed_bfloat16_with_float32_outputs(name, mixed_bfloat16):
    spec = registry.get(name)
    model = spec.build(image_size=spec.min_resolution, width_multiplier=0.25, num_classes=5)
    images = np.random.default_rng(0).uniform(0, 255, (2, *model.input_shape[1:]))
    logits = model(images.astype("float32"), training=True)
    assert logits.dtype == "float32" and np.all(np.isfinite(np.asarray(logits)))


def test_head_batch_norm_sits_between_fc6_fc7_and_their_activations():
    # At width 1/4 fc6 and fc7 have 1024 units; each BN adds 4 × 1024 parameters (2 × 1024
    # trainable) and replaces its Dense layer's 1024 biases.
    spec, units = registry.get("alexnet"), 1024
    plain = spec.build(image_size=63, width_multiplier=0.25, num_classes=5)
    normed = spec.build(image_size=63, width_multiplier=0.25, num_classes=5, head_batch_norm=True)
    assert normed.count_params() - plain.count_params() == 2 * (4 * units - units)
    trainable = [sum(int(np.prod(w.shape)) for w in m.trainable_weights) for m in (plain, normed)]
    assert trainable[1] - trainable[0] == 2 * (2 * units - units)
    assert not normed.get_layer("fc6").use_bias
    assert normed.get_layer("fc7_bn").output.name == normed.get_layer("fc7_relu").input.name
    assert normed(np.zeros((2, 63, 63, 3), "float32"), training=True).shape == (2, 5)
