import keras
import numpy as np
import pytest

from official.models import count_flops, registry, vgg
from official.models.layers import LocalResponseNormalization

# Trainable parameters at 224 px with 1,000 classes: torchvision's vgg11/13/16/19 and their
# _bn variants (docs.pytorch.org/vision/stable/models: 132.9M, 133.0M, 138.4M, 143.7M; exact
# counts as keras.applications VGG16/19 report for 16/19, 138,357,544 and 143,667,240). A-LRN
# has A's parameters (LRN has none). C (no reference implementation) is D with the third
# convolution of stages 3-5 as 1x1: D - 8·(256² + 2·512²) = 133,638,952, "134M" in arXiv
# 1409.1556 Table 2 (which gives 133 / 133 / 134 / 138 / 144 M for A / B / C / D / E).
TRAINABLE_PARAMS = {
    "vgg11": 132_863_336,
    "vgg11_lrn": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16_c": 133_638_952,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840,
    "vgg13_bn": 133_053_736,
    "vgg16_c_bn": 133_647_400,
    "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248,
}


@pytest.fixture(scope="module")
def vgg16():
    return registry.get("vgg16").build(image_size=224)


def test_vgg16_parameter_count_and_flops(vgg16, trainable):
    assert trainable(vgg16) == TRAINABLE_PARAMS["vgg16"]
    # 15.5 G multiply-adds at 224 px (torchvision lists 15.47 GFLOPS for vgg16).
    assert count_flops(vgg16) == pytest.approx(15.5e9, rel=0.02)
    assert vgg16.get_layer("fc1").units == 4096
    assert vgg16.get_layer("fc1_dropout").rate == 0.5  # §3.1


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in TRAINABLE_PARAMS if n != "vgg16"])
def test_parameter_count(name, trainable):
    model = registry.get(name).build(image_size=224)
    assert trainable(model) == TRAINABLE_PARAMS[name]
    if name == "vgg19":
        # 19.6 G multiply-adds (torchvision: 19.63 GFLOPS).
        assert count_flops(model) == pytest.approx(19.6e9, rel=0.02)


@pytest.mark.parametrize(
    "name, weight_layers, kernels_1x1",
    [
        ("vgg11", 11, 0),
        ("vgg11_lrn", 11, 0),
        ("vgg13", 13, 0),
        ("vgg16_c", 16, 3),
        ("vgg16", 16, 0),
        ("vgg19", 19, 0),
    ],
)
def test_configurations_follow_table_1(name, weight_layers, kernels_1x1):
    model = registry.get(name).build(include_top=False, image_size=32, width_multiplier=0.125)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) + 3 == weight_layers  # plus the three FC layers
    assert sum(conv.kernel_size == (1, 1) for conv in convs) == kernels_1x1
    assert all(conv.use_bias for conv in convs)
    lrn = [layer.name for layer in model.layers if isinstance(layer, LocalResponseNormalization)]
    assert lrn == (["block1_lrn"] if name == "vgg11_lrn" else [])
    assert model.output_shape == (None, 1, 1, 64)


def test_bn_variants_keep_the_conv_bias_like_torchvision():
    model = registry.get("vgg13_bn").build(include_top=False, image_size=32, width_multiplier=0.125)
    assert model.get_layer("block1_conv1_conv").use_bias
    assert isinstance(model.get_layer("block1_conv1_bn"), keras.layers.BatchNormalization)


def _narrow(**kwargs):
    # A narrow VGG-16 at the reference size: fc1 still sees a 7x7 map.
    return registry.get("vgg16").build(image_size=224, width_multiplier=1 / 16, **kwargs)


@pytest.mark.parametrize("classifier_activation", [None, "softmax"])
def test_fully_convolutional_form_gives_the_same_scores(classifier_activation):
    fc = _narrow(num_classes=10, classifier_activation=classifier_activation)
    for layer in fc.layers:  # non-trivial biases
        if getattr(layer, "use_bias", False):
            layer.bias.assign(np.random.default_rng(0).normal(0, 0.1, layer.bias.shape))
    dense = vgg.to_fully_convolutional(fc)
    images = np.random.default_rng(1).uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    scores = np.asarray(fc(images))
    score_map = np.asarray(dense(images))
    assert score_map.shape == (2, 1, 1, 10) and score_map.dtype == np.float32
    np.testing.assert_allclose(score_map[:, 0, 0], scores, atol=1e-5)
    assert np.abs(scores).max() > 1e-2
    # Larger images give a score map: one 224 window per 32 px step (arXiv 1409.1556 §3.2).
    assert dense(np.zeros((1, 288, 320, 3), "float32")).shape == (1, 3, 4, 10)
    # The convolutions are shared, not copied.
    assert dense.get_layer("block3_conv1_conv") is fc.get_layer("block3_conv1_conv")
    back = vgg.to_fully_connected(dense)
    np.testing.assert_allclose(np.asarray(back(images)), scores, atol=1e-5)
    assert back.get_layer("fc1").kernel.shape == fc.get_layer("fc1").kernel.shape
    with pytest.raises(ValueError, match="image_size must be 224"):
        vgg.to_fully_connected(dense, image_size=256)
    with pytest.raises(ValueError, match="not a VGG model"):
        vgg.to_fully_convolutional(registry.get("resnet18").build(image_size=32))


def test_fully_convolutional_form_of_a_small_model_takes_its_own_window():
    """A VGG trained at 32 px (fc1 on a 1x1 block5_pool map) converts too: fc1 becomes a 1x1
    convolution, one score vector per 32 px window (dense evaluation of small runs)."""
    fc = registry.get("vgg11").build(num_classes=4, image_size=32, width_multiplier=0.25)
    dense = vgg.to_fully_convolutional(fc)
    assert dense.get_layer("fc1").kernel.shape[:2] == (1, 1)
    images = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(dense(images))[:, 0, 0], fc(images), atol=1e-5)
    assert dense(np.zeros((1, 64, 96, 3), "float32")).shape == (1, 2, 3, 4)
    back = vgg.to_fully_connected(dense)
    assert back.input.shape[1] == 32
    np.testing.assert_allclose(np.asarray(back(images)), fc(images), atol=1e-5)


def test_parity_with_keras_applications_vgg16_features(parity):
    before, after, normalization = parity("vgg16", 64, include_top=False)
    assert before > 1e-2 and after < 1e-4
    assert normalization.std == (1.0, 1.0, 1.0)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg16", "vgg19"])
def test_parity_with_keras_applications(parity, name):
    before, after, _ = parity(name, 224)
    assert before > 1e-2 and after < 1e-4


def test_head_batch_norm_sits_between_each_hidden_fc_and_its_activation():
    # vgg11 at width 1/4: fc1 and fc2 have 1024 units; each BN adds 4 × 1024 parameters (γ, β
    # trainable; moving mean and variance not) and takes the place of its Dense layer's bias.
    spec, units = registry.get("vgg11"), 1024
    plain = spec.build(image_size=32, width_multiplier=0.25, num_classes=10)
    normed = spec.build(image_size=32, width_multiplier=0.25, num_classes=10, head_batch_norm=True)
    assert normed.count_params() - plain.count_params() == 2 * (4 * units - units)
    trainable = [sum(int(np.prod(w.shape)) for w in m.trainable_weights) for m in (plain, normed)]
    assert trainable[1] - trainable[0] == 2 * (2 * units - units)
    names = [layer.name for layer in normed.layers]
    assert names[names.index("fc1") : names.index("fc1") + 4] == [
        "fc1",
        "fc1_bn",
        "fc1_relu",
        "fc1_dropout",
    ]
    assert isinstance(normed.get_layer("fc2_bn"), keras.layers.BatchNormalization)
    assert normed(np.zeros((2, 32, 32, 3), "float32"), training=True).shape == (2, 10)


def test_fully_convolutional_form_keeps_the_head_batch_norm():
    fc = _narrow(num_classes=10, head_batch_norm=True)
    rng = np.random.default_rng(0)
    for name in ("fc1_bn", "fc2_bn"):  # non-trivial statistics
        bn = fc.get_layer(name)
        bn.set_weights([rng.uniform(0.5, 2, w.shape) for w in bn.get_weights()])
    dense = vgg.to_fully_convolutional(fc)
    images = rng.uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(dense(images))[:, 0, 0], np.asarray(fc(images)), rtol=1e-4, atol=1e-5
    )
