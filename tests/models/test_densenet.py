import keras
import numpy as np
import pytest

from official.models import count_flops, densenet, registry

# Trainable parameters at 224 px with 1,000 classes: torchvision's densenet121/169/201/161
# `num_params` (torchvision/models/densenet.py weight metadata), which count what Keras
# calls trainable (no conv biases; BN scale and shift). Keras' totals add the BN moving mean
# and variance: keras.applications DenseNet121 8,062,504 and DenseNet169 14,307,880
# (model.count_params()), DenseNet201 20,242,984 (its summary, keras.io/api/applications
# "20.2M"); DenseNet-161 has no keras.applications counterpart.
TRAINABLE_PARAMS = {
    "densenet121": 7_978_856,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
    "densenet161": 28_681_000,
}
KERAS_TOTAL_PARAMS = {
    "densenet121": 8_062_504,
    "densenet169": 14_307_880,
    "densenet201": 20_242_984,
}
# Multiply-adds at 224 px. The paper gives no FLOPs table (arXiv 1608.06993 only plots error
# against FLOPs, Figure 3 right), so the reference is torchvision's `_ops` ("GFLOPS", which
# count multiply-adds): 2.834 / 3.36 / 4.291 / 7.728.
GMACS = {"densenet121": 2.834, "densenet169": 3.36, "densenet201": 4.291, "densenet161": 7.728}
# Channels after the last dense block: the stem's 2k, halved by each transition, plus k per
# layer (Table 1; 161: k = 48 from 96).
FINAL_CHANNELS = {
    "densenet121": 1024,
    "densenet169": 1664,
    "densenet201": 1920,
    "densenet161": 2208,
}


def _check_full_size(name, trainable):
    model = registry.get(name).build(image_size=224)
    assert trainable(model) == TRAINABLE_PARAMS[name]
    if name in KERAS_TOTAL_PARAMS:
        assert model.count_params() == KERAS_TOTAL_PARAMS[name]
    assert count_flops(model) / 1e9 == pytest.approx(GMACS[name], rel=0.01)
    assert model.get_layer("avg_pool").input.shape[-1] == FINAL_CHANNELS[name]
    return model


def test_densenet121_parameters_macs_and_layout(trainable):
    model = _check_full_size("densenet121", trainable)
    # Table 1's output sizes: 112 (conv), 56 (pool and block 1), then 28, 14, 7.
    assert model.get_layer("conv1_relu").output.shape[1] == 112
    sizes = [model.get_layer(f"conv{i}_block1_concat").output.shape[1] for i in (2, 3, 4, 5)]
    assert sizes == [56, 28, 14, 7]
    # Block 1 ends with 64 + 6·32 = 256 channels; compression θ = 0.5 keeps 128, and so on.
    assert model.get_layer("conv2_block6_concat").output.shape[-1] == 256
    transitions = [model.get_layer(f"pool{i}_conv").filters for i in (2, 3, 4)]
    assert transitions == [128, 256, 512]
    # Bottleneck: 1x1 to 4k = 128 channels, then 3x3 to k = 32.
    assert model.get_layer("conv3_block5_1_conv").kernel.shape == (1, 1, 128 + 4 * 32, 128)
    assert model.get_layer("conv3_block5_2_conv").kernel.shape == (3, 3, 128, 32)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 1 + 2 * 58 + 3  # stem, 58 bottleneck layers, 3 transitions
    assert not any(layer.use_bias for layer in convs)
    # Pre-activation: each layer of a block starts from the concatenation with BN → ReLU.
    bn = model.get_layer("conv4_block3_0_bn")
    assert bn.input.name == model.get_layer("conv4_block2_concat").output.name
    assert bn.epsilon == densenet.BN_EPSILON


@pytest.mark.slow
@pytest.mark.parametrize("name", ["densenet169", "densenet201", "densenet161"])
def test_parameters_and_macs_deep(name, trainable):
    model = _check_full_size(name, trainable)
    if name == "densenet161":
        # k = 48 throughout: the bottleneck is 4k = 192 wide, the stem 96.
        assert model.get_layer("conv1_conv").filters == 96
        assert model.get_layer("conv5_block1_1_conv").filters == 192
        assert model.get_layer("conv5_block1_2_conv").filters == 48


@pytest.mark.slow  # A whole run in a subprocess or a full-size build: the default suite's budget.
def test_parity_with_keras_applications_densenet121(parity):
    before, after, normalization = parity("densenet121", 64)
    assert before > 1e-1 and after < 1e-4
    # keras' "torch" preprocessing, x / 255 then (x − mean) / std, is the registry's default
    # normalization: ported weights need no other statistics.
    spec = registry.get("densenet121")
    assert normalization.mean == pytest.approx(spec.mean) == registry.IMAGENET_MEAN
    assert normalization.std == pytest.approx(spec.std) == registry.IMAGENET_STD


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, image_size, include_top",
    [
        ("densenet121", 224, True),
        ("densenet121", 64, False),
        ("densenet169", 64, True),
        ("densenet201", 64, True),
    ],
)
def test_parity_with_keras_applications_slow(parity, name, image_size, include_top):
    before, after, _ = parity(name, image_size, include_top, None if include_top else "avg")
    assert before > 1e-1 and after < 1e-4


def test_switches_bottleneck_compression_and_layers():
    # DenseNet without B and C (§4.3): one BN → ReLU → 3x3 per layer, transitions keep all
    # channels. Width 0.25: k = 8, stem 16; blocks end with 16 + 6·8 = 64, 64 + 12·8 = 160,
    # 160 + 24·8 = 352 and 352 + 16·8 = 480 channels.
    model = registry.get("densenet121").build(
        image_size=32,
        width_multiplier=0.25,
        bottleneck=False,
        compression=1.0,
        include_top=False,
        pooling="max",
        activation="prelu",
        normalization="group",
        kernel_initializer="xavier_uniform",
    )
    assert model.output_shape == (None, 480)
    assert [model.get_layer(f"pool{i}_conv").filters for i in (2, 3, 4)] == [64, 160, 352]
    names = {layer.name for layer in model.layers}
    assert "conv2_block1_1_conv" in names and "conv2_block1_2_conv" not in names
    assert model.get_layer("conv2_block1_1_conv").kernel_size == (3, 3)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"PReLU", "GroupNormalization"} <= kinds and "BatchNormalization" not in kinds
    assert isinstance(
        model.get_layer("pool2_conv").kernel_initializer, keras.initializers.GlorotUniform
    )
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    assert np.all(np.isfinite(np.asarray(model(images, training=True))))
    with pytest.raises(ValueError, match="compression"):
        densenet.densenet(depth=121, compression=0.0)
    with pytest.raises(ValueError, match="unknown DenseNet depth 264"):
        densenet.densenet(depth=264)


def test_features_only_and_no_normalization():
    model = registry.get("densenet169").build(
        image_size=64, width_multiplier=0.25, features_only=True, normalization=None
    )
    # Strides 2..32: the stem, dense blocks 1-3 before their transitions, the final ReLU.
    shapes = [tuple(output.shape[1:]) for output in model.outputs]
    assert shapes == [(32, 32, 16), (16, 16, 64), (8, 8, 128), (4, 4, 320), (2, 2, 416)]
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    assert model.get_layer("conv2_block1_2_conv").use_bias  # no BN shift to replace the bias
    images = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    assert all(np.all(np.isfinite(np.asarray(f))) for f in model(images))


# DenseNet-121 by default; the deeper ones (the same blocks, more of them) in the slow suite.
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=[pytest.mark.slow] if name != "densenet121" else [])
        for name in sorted(TRAINABLE_PARAMS)
    ],
)
def test_runs_under_mixed_bfloat16_with_float32_outputs(name, mixed_bfloat16):
    spec = registry.get(name)
    model = spec.build(
        image_size=spec.min_resolution,
        width_multiplier=0.25,
        num_classes=5,
        classifier_activation="softmax",
    )
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    probabilities = model(images, training=True)
    assert probabilities.dtype == "float32"
    assert model.get_layer("conv2_block1_concat").output.dtype == "bfloat16"
    np.testing.assert_allclose(np.asarray(probabilities).sum(axis=-1), 1.0, atol=1e-3)
