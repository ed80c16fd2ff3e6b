import keras
import numpy as np
import pytest

from official.models import count_flops, registry, squeezenet

# torchvision's squeezenet1_0 / squeezenet1_1 (docs.pytorch.org/vision/stable/models:
# 1,248,424 / 1,235,496 parameters, 0.82 / 0.35 GFLOPS, i.e. multiply-adds).
TRAINABLE_PARAMS = {"squeezenet1_0": 1_248_424, "squeezenet1_1": 1_235_496}
GMACS = {"squeezenet1_0": 0.82, "squeezenet1_1": 0.35}


@pytest.mark.parametrize("name", sorted(TRAINABLE_PARAMS))
def test_parameter_counts_macs_and_shapes(name, trainable):
    model = registry.get(name).build(image_size=224)
    assert trainable(model) == TRAINABLE_PARAMS[name]
    assert count_flops(model) / 1e9 == pytest.approx(GMACS[name], rel=0.01)
    # torchvision's map sizes at 224 px (ceil-mode pooling): 54/55, 27, 13.
    pools = [model.get_layer(f"pool{i}").output.shape[1] for i in (1, 2, 3)]
    assert pools == ([54, 27, 13] if name == "squeezenet1_0" else [55, 27, 13])
    fires = [layer for layer in model.layers if layer.name.endswith("_concat")]
    assert [layer.name for layer in fires] == [f"fire{i}_concat" for i in range(2, 10)]
    assert fires[-1].output.shape[-1] == 512  # expand 256 + 256
    # No fully-connected layer: the classifier is a 1x1 convolution, ReLU, average pooling.
    assert not any(isinstance(layer, keras.layers.Dense) for layer in model.layers)
    assert model.get_layer("predictions").kernel.shape == (1, 1, 512, 1000)


def test_ceil_mode_pooling_matches_pytorchs():
    rng = np.random.default_rng(0)
    for size in (6, 7, 13):
        x = rng.normal(size=(1, size, size + 1, 2)).astype("float32")

        def windows(length):  # ceil mode: every window that starts inside the input
            count = -(-(length - 3) // 2) + 1
            return [(2 * i, min(2 * i + 3, length)) for i in range(count)]

        expected = np.array(
            [
                [
                    [x[0, t:b, a:c].max(axis=(0, 1)) for a, c in windows(size + 1)]
                    for t, b in windows(size)
                ]
            ]
        )
        got = np.asarray(squeezenet.CeilMaxPooling2D()(x))
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", sorted(TRAINABLE_PARAMS))
def test_switches_and_features(name):
    spec = registry.get(name)
    features = spec.build(image_size=64, features_only=True, width_multiplier=0.25)
    # PyTorch's sizes: conv1 (64 − k) // 2 + 1, then ceil((n − 3) / 2) + 1 per pooling.
    expected = [29, 14, 7, 3] if name == "squeezenet1_0" else [31, 15, 7, 3]
    assert [o.shape[1] for o in features.outputs] == expected
    pooled = spec.build(image_size=None, include_top=False, pooling="avg", width_multiplier=0.25)
    assert pooled.output_shape == (None, 128)
    model = spec.build(image_size=64, width_multiplier=0.25, num_classes=3, normalization="batch")
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)


@pytest.mark.parametrize("name", sorted(TRAINABLE_PARAMS))
def test_runs_under_mixed_bfloat16_with_float32_outputs(name, mixed_bfloat16):
    model = registry.get(name).build(
        image_size=64, width_multiplier=0.25, classifier_activation="softmax"
    )
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    probabilities = model(images, training=True)
    assert probabilities.dtype == "float32"
    np.testing.assert_allclose(np.asarray(probabilities).sum(axis=-1), 1.0, atol=1e-3)
