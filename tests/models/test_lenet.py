import numpy as np
import pytest

from official.models import count_flops, layers, lenet, registry

# LeNet-5 as published (LeCun et al. 1998 §II.B: C1 156, S2 12, C3 1,516, S4 32, C5 48,120,
# F6 10,164, RBF output 840 = 60,840; the paper: "about 60,000") and the common modern layout
# (all C3 maps connected 2,416, parameter-free pooling, FC 120-84-10: 61,706).
LAYER_PARAMS = {
    "lenet5_1998": {
        "c1": 156,
        "s2": 12,
        "c3": 1_516,
        "s4": 32,
        "c5": 48_120,
        "f6": 10_164,
        "predictions": 840,
    },
    "lenet5": {"c1": 156, "c3": 2_416, "f5": 48_120, "f6": 10_164, "predictions": 850},
}
# Multiply-adds (flops.py convention, no biases); the paper counts 340,908 "connections" for
# LeNet-5, biases and subsampling included.
MACS = {"lenet5_1998": 326_520, "lenet5": 416_520}


@pytest.mark.parametrize("name", sorted(LAYER_PARAMS))
def test_parameter_counts_per_layer_and_macs(name, trainable):
    model = registry.get(name).build()
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 10)
    counts = {
        layer.name: sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
        for layer in model.layers
        if layer.trainable_weights
    }
    assert counts == LAYER_PARAMS[name]
    assert trainable(model) == {"lenet5_1998": 60_840, "lenet5": 61_706}[name]
    assert count_flops(model) == MACS[name]


def test_c3_connects_the_maps_of_table_1():
    layer = lenet.SparseConv2D(lenet.C3_TABLE, 5, kernel_initializer="ones")
    for source in range(6):
        x = np.zeros((1, 14, 14, 6), "float32")
        x[..., source] = 1.0
        reached = np.abs(np.asarray(layer(x))).sum(axis=(0, 1, 2)) > 0
        expected = [source in inputs for inputs in lenet.C3_TABLE]
        assert reached.tolist() == expected
    # Each of S2's maps feeds 10 of the 16 C3 maps (Table I: 60 connections).
    assert sum(len(inputs) for inputs in lenet.C3_TABLE) == 60


def test_subsampling_rbf_grayscale_and_squashing():
    x = np.random.default_rng(0).normal(size=(2, 4, 6, 3)).astype("float32")
    s2 = lenet.TrainableSubsampling()
    s2.build(x.shape)
    s2.coefficient.assign([0.5, -1.0, 2.0])
    s2.bias.assign([0.1, 0.2, 0.3])
    sums = x.reshape(2, 2, 2, 3, 2, 3).sum(axis=(2, 4))
    np.testing.assert_allclose(s2(x), sums * [0.5, -1.0, 2.0] + [0.1, 0.2, 0.3], rtol=1e-5)

    rbf = lenet.EuclideanRBF(4)
    features = np.random.default_rng(1).normal(size=(3, 5)).astype("float32")
    logits = np.asarray(rbf(features))
    centres = np.asarray(rbf.centres)
    assert set(np.unique(centres)) <= {-1.0, 1.0}
    expected = -((features[:, :, None] - centres[None]) ** 2).sum(axis=1)
    np.testing.assert_allclose(logits, expected, rtol=1e-5)

    rgb = np.array([[[[255.0, 0.0, 0.0], [10.0, 20.0, 30.0]]]], "float32")
    np.testing.assert_allclose(
        lenet.Grayscale()(rgb)[..., 0], [[[76.245, 0.299 * 10 + 0.587 * 20 + 0.114 * 30]]]
    )
    squash = layers.activation_layer("lecun_tanh", "act")
    np.testing.assert_allclose(squash(np.array([1.0, -1.0], "float32")), [1.0, -1.0], atol=1e-4)


@pytest.mark.parametrize("name", sorted(LAYER_PARAMS))
def test_switches_and_features(name):
    spec = registry.get(name)
    model = spec.build(num_classes=5, normalization="batch", activation="relu", dropout=0.3)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert "BatchNormalization" in kinds and "LeCunTanh" not in kinds
    assert model.get_layer("predictions_dropout").rate == 0.3
    default = {type(layer).__name__ for layer in spec.build().layers}
    assert ("LeCunTanh" in default) == (name == "lenet5_1998")
    features = spec.build(features_only=True, image_size=32)
    assert [tuple(o.shape[1:]) for o in features.outputs] == [(28, 28, 6), (14, 14, 6), (5, 5, 16)]
    pooled = spec.build(include_top=False, pooling="max", image_size=None)
    assert pooled.output_shape == (None, 120 if name == "lenet5_1998" else 16)


@pytest.mark.parametrize("name", sorted(LAYER_PARAMS))
def test_runs_under_mixed_bfloat16_with_float32_outputs(name, mixed_bfloat16):
    spec = registry.get(name)
    wide = spec.build(image_size=48, width_multiplier=0.5, classifier_activation="softmax")
    images = np.random.default_rng(0).uniform(0, 255, (2, 48, 48, 3)).astype("float32")
    probabilities = wide(images, training=True)
    assert probabilities.dtype == "float32"
    np.testing.assert_allclose(np.asarray(probabilities).sum(axis=-1), 1.0, atol=1e-3)
    assert wide.get_layer("f6").units == 42
