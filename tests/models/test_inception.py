import re

import keras
import numpy as np
import pytest

from official.models import count_flops, flops, graph, layers, registry

# Inception v3: 23,817,352 trainable parameters, keras.applications InceptionV3 and TF-slim
# (BN without a learned scale; 1,000 classes, no auxiliary head). With the auxiliary head:
# torchvision's inception_v3(aux_logits=True) has 27,161,264 parameters, of which 18,112 are
# the BN scales TF-slim does not have (17,216 in the main network, the non-trainable count of
# keras' InceptionV3 / 2, and 896 in the auxiliary head).
INCEPTION_V3_PARAMS = 23_817_352
INCEPTION_V3_AUX_PARAMS = 27_161_264 - 18_112
# GoogLeNet: 6,998,552, the Caffe reference model bvlc_googlenet (as listed, e.g., in the model
# table of HewlettPackard/dlcookbook-dlbs), which follows arXiv 1409.4842 Table 1 with biases.
INCEPTION_V1_PARAMS = 6_998_552
# torchvision's GoogLeNet and Inception3 without their auxiliary heads (sum(p.numel()) of
# googlenet / inception_v3(aux_logits=False)): BN after every convolution (no conv biases),
# 3x3 kernels in GoogLeNet's "5x5" branch; Inception3's BN scales are the 17,216 TF-slim lacks.
TORCHVISION_PARAMS = {
    "inception_v1_torchvision": 6_624_904,
    "inception_v3_torchvision": INCEPTION_V3_PARAMS + 17_216,
}
# arXiv 1409.4842 Table 1, "ops" column (millions of multiply-adds at 224 px).
GOOGLENET_OPS = {
    "conv2": 360e6,
    "inception_3a": 128e6,
    "inception_3b": 304e6,
    "inception_4a": 73e6,
    "inception_4b": 88e6,
    "inception_4c": 100e6,
    "inception_4d": 119e6,
    "inception_4e": 170e6,
    "inception_5b": 71e6,
}


@pytest.fixture(scope="module")
def v3():
    return registry.get("inception_v3").build(image_size=299)


@pytest.fixture(scope="module")
def googlenet():
    return registry.get("inception_v1").build(image_size=224)


def test_inception_v3_parameter_count_flops_and_bn(v3, trainable):
    assert trainable(v3) == INCEPTION_V3_PARAMS
    # 5.7 G multiply-adds at 299 px (torchvision lists 5.71 GFLOPS for inception_v3).
    assert count_flops(v3) == pytest.approx(5.7e9, rel=0.02)
    bns = [layer for layer in v3.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 94 and not any(bn.scale for bn in bns)
    assert {bn.epsilon for bn in bns} == {1e-3}
    assert v3.get_layer("top_dropout").rate == 0.2
    assert v3.get_layer("mixed10").output.shape[1:] == (8, 8, 2048)


@pytest.mark.slow
def test_inception_v3_auxiliary_head_parameter_count(trainable):
    model = registry.get("inception_v3").build(image_size=299, aux_head=True)
    assert trainable(model) == INCEPTION_V3_AUX_PARAMS


def test_inception_v3_auxiliary_head_switch():
    model = registry.get("inception_v3").build(image_size=96, aux_head=True, num_classes=7)
    outputs = model(np.zeros((2, 96, 96, 3), "float32"))
    assert set(outputs) == {"logits", "aux_logits"}
    assert outputs["logits"].shape == (2, 7) and outputs["aux_logits"].shape == (2, 7)
    # At 299 px the auxiliary 5x5 conv covers the whole 5x5 grid; at 96 px the grid is 1x1.
    assert model.get_layer("aux_conv_conv").kernel_size == (1, 1)
    assert model.get_layer("aux_pool").input.name == model.get_layer("mixed7").output.name
    with pytest.raises(ValueError, match="include_top"):
        registry.get("inception_v3").build(aux_head=True, include_top=False)


def test_googlenet_follows_table_1(googlenet, trainable):
    assert trainable(googlenet) == INCEPTION_V1_PARAMS
    calls = list(graph.calls(googlenet))
    for prefix, published in GOOGLENET_OPS.items():
        ops = sum(flops.layer_flops(c) for c in calls if c.layer.name.startswith(prefix))
        assert ops == pytest.approx(published, rel=0.01), prefix
    # Table 1's conv1 (2.7K params, 34M ops) and inception 5a (1072K, 54M) do not match their
    # own widths (7x7x3x64 = 9.4K; 5a's widths give 1018K, 51M); we follow the widths.
    assert googlenet.get_layer("inception_5a").output.shape[-1] == 832
    assert googlenet.get_layer("inception_5b").output.shape[1:] == (7, 7, 1024)
    assert googlenet.get_layer("inception_3a_5x5_conv").kernel_size == (5, 5)
    assert googlenet.get_layer("top_dropout").rate == 0.4
    lrn = [layer for layer in googlenet.layers if "lrn" in layer.name]
    assert [layer.name for layer in lrn] == ["pool1_lrn", "conv2_lrn"]
    assert (lrn[0].k, lrn[0].alpha, lrn[0].beta) == (1.0, 2e-5, 0.75)  # Caffe's bvlc_googlenet
    assert googlenet.get_layer("conv1_conv").use_bias


def test_googlenet_bn_variant():
    plain = registry.get("inception_v1").build(image_size=32)
    bn = registry.get("inception_v1_bn").build(image_size=32)
    names = {layer.name for layer in bn.layers}
    assert "pool1_lrn" not in names and "conv1_bn" in names
    assert not bn.get_layer("conv1_conv").use_bias
    # BN replaces each convolution bias by a scale and an offset: +1 per conv channel.
    channels = sum(
        layer.filters for layer in plain.layers if isinstance(layer, keras.layers.Conv2D)
    )
    count = sum(int(np.prod(v.shape)) for v in bn.trainable_weights)
    assert count == INCEPTION_V1_PARAMS + channels


def test_googlenet_auxiliary_classifiers():
    model = registry.get("inception_v1").build(image_size=224, aux_head=True, num_classes=10)
    outputs = model(np.zeros((1, 224, 224, 3), "float32"))
    assert set(outputs) == {"logits", "aux_logits", "aux_logits_2"}
    assert all(o.shape == (1, 10) and o.dtype == "float32" for o in outputs.values())
    # §5: on 4a and 4d, 5x5/3 average pooling to 4x4, 128 1x1 filters, FC 1024, dropout 70%.
    assert model.get_layer("aux1_pool").input.name == model.get_layer("inception_4a").output.name
    assert model.get_layer("aux2_pool").input.name == model.get_layer("inception_4d").output.name
    assert model.get_layer("aux1_pool").output.shape[1:3] == (4, 4)
    assert model.get_layer("aux1_fc").units == 1024
    assert model.get_layer("aux1_dropout").rate == 0.7


def test_parity_with_keras_applications_inception_v3(parity):
    # Into a model with the auxiliary head (which keras' model lacks): the main classifier's
    # weights are ported, the auxiliary head keeps its initialization.
    before, after, normalization = parity("inception_v3", 96, build_kwargs={"aux_head": True})
    assert before > 1e-2 and after < 1e-4
    assert normalization.mean == (127.5,) * 3 and normalization.std == (127.5,) * 3


# BN-Inception: 11,295,240 parameters in the reference Caffe model as converted by Cadene's
# pretrainedmodels and imgclsmob (`bninception`), whose convolutions carry biases in front of
# every BN; ours has none (the BN's shift makes them redundant), one per BN channel. MACs:
# imgclsmob lists 2,048.06 M (the paper gives none).
INCEPTION_V2_CAFFE_PARAMS = 11_295_240
# Inception v4: 42,679,816 in timm / Cadene / imgclsmob, whose BNs learn a scale that TF-slim's
# (and ours) do not: one per BN channel. timm lists 12.3 GMACs at 299 px.
INCEPTION_V4_AFFINE_PARAMS = 42_679_816
# Inception-ResNet-v2: keras.applications InceptionResNetV2 (keras.io table: 55.9 M; its
# count_params() is 55,873,736 with BN moving statistics), timm 13.2 GMACs.
INCEPTION_RESNET_V2_PARAMS = 55_813_192
INCEPTION_RESNET_V2_TOTAL = 55_873_736


def _bn_channels(model):
    return sum(
        layer.moving_mean.shape[0]
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )


def test_inception_v2_follows_figure_5(trainable):
    model = registry.get("inception_v2").build(image_size=224)
    assert trainable(model) + _bn_channels(model) == INCEPTION_V2_CAFFE_PARAMS
    assert count_flops(model) == pytest.approx(2.048e9, rel=0.01)
    # Figure 5's output sizes: 28x28x256, 320, then 3c reduces to 14x14x576, 4e to 7x7x1024.
    shapes = {n: model.get_layer(n).output.shape[1:] for n in ("inception_3a", "inception_3b")}
    assert shapes == {"inception_3a": (28, 28, 256), "inception_3b": (28, 28, 320)}
    assert model.get_layer("inception_3c").output.shape[1:] == (14, 14, 576)
    assert model.get_layer("inception_4d").output.shape[1:] == (14, 14, 608)
    assert model.get_layer("inception_4e").output.shape[1:] == (7, 7, 1056)
    assert model.get_layer("inception_5b").output.shape[1:] == (7, 7, 1024)
    names = {layer.name for layer in model.layers}
    # 5x5 convolutions replaced by two 3x3; no LRN, no dropout; pass-through in 3c and 4e.
    assert not any(isinstance(layer, layers.LocalResponseNormalization) for layer in model.layers)
    assert "top_dropout" not in names and "inception_3c_1x1_conv" not in names
    assert model.get_layer("inception_3c_double_3x3_2_conv").strides == (2, 2)
    assert isinstance(model.get_layer("inception_5b_pool"), keras.layers.MaxPooling2D)
    assert isinstance(model.get_layer("inception_5a_pool"), keras.layers.AveragePooling2D)


@pytest.mark.slow
def test_inception_v4_parameter_count_and_macs(trainable):
    model = registry.get("inception_v4").build(image_size=299)
    assert trainable(model) + _bn_channels(model) == INCEPTION_V4_AFFINE_PARAMS
    assert count_flops(model) == pytest.approx(12.3e9, rel=0.01)
    # Figure 9: 35x35x384 after the stem and Inception-A, 17x17x1024, 8x8x1536.
    assert model.get_layer("mixed_5a").output.shape[1:] == (35, 35, 384)
    assert model.get_layer("mixed_5e").output.shape[1:] == (35, 35, 384)
    assert model.get_layer("mixed_6h").output.shape[1:] == (17, 17, 1024)
    assert model.get_layer("mixed_7d").output.shape[1:] == (8, 8, 1536)
    assert not any(
        bn.scale for bn in model.layers if isinstance(bn, keras.layers.BatchNormalization)
    )


def test_inception_v4_modules_and_auxiliary_head():
    model = registry.get("inception_v4").build(
        image_size=75, width_multiplier=0.25, aux_head=True, num_classes=4
    )
    modules = [
        layer.name for layer in model.layers if re.fullmatch(r"mixed_[567][b-h]", layer.name)
    ]
    counts = {
        stage: sum(name.startswith(stage) for name in modules)
        for stage in ("mixed_5", "mixed_6", "mixed_7")
    }
    # 4 x A, 7 x B, 3 x C (Figure 9).
    assert counts["mixed_5"] == 4 and counts["mixed_6"] == 7 and counts["mixed_7"] == 3
    assert model.get_layer("aux_pool").input.name == model.get_layer("mixed_6h").output.name
    outputs = model(np.zeros((1, 75, 75, 3), "float32"))
    assert outputs["logits"].shape == (1, 4) and outputs["aux_logits"].shape == (1, 4)


@pytest.mark.slow  # A whole run in a subprocess or a full-size build: the default suite's budget.
def test_inception_resnet_v2_parity_with_keras_applications(parity):
    before, after, normalization = parity("inception_resnet_v2", 75)
    assert before > 1e-2 and after < 1e-4
    assert normalization.mean == (127.5,) * 3 and normalization.std == (127.5,) * 3


@pytest.mark.slow
def test_inception_resnet_v2_count_macs_and_blocks(trainable):
    model = registry.get("inception_resnet_v2").build(image_size=299)
    assert trainable(model) == INCEPTION_RESNET_V2_PARAMS
    assert model.count_params() == INCEPTION_RESNET_V2_TOTAL
    assert count_flops(model) == pytest.approx(13.2e9, rel=0.01)
    source = keras.applications.InceptionResNetV2(weights=None)
    assert trainable(source) == INCEPTION_RESNET_V2_PARAMS
    scales = {
        kind: {
            layer.scale
            for layer in model.layers
            if layer.name.startswith(kind + "_") and isinstance(layer, keras.layers.Rescaling)
        }
        for kind in ("block35", "block17", "block8")
    }
    # §3.3: residuals scaled by 0.17, 0.1, 0.2 (TF-slim); the last block8 is unscaled and linear.
    assert scales == {"block35": {0.17}, "block17": {0.1}, "block8": {0.2}}
    names = {layer.name for layer in model.layers}
    assert {"block35_10", "block17_20", "block8_10"} <= names
    assert "block8_10_scale" not in names and "block8_10_ac" not in names
    up = model.get_layer("block17_1_conv")
    assert up.use_bias and up.filters == model.get_layer("mixed_6a").output.shape[-1]
    assert model.get_layer("conv_7b_conv").filters == 1536


@pytest.mark.parametrize(
    "name",
    [
        "inception_v1_torchvision",
        pytest.param("inception_v3_torchvision", marks=pytest.mark.slow),
    ],
)
def test_torchvision_rows_parameter_counts(name, trainable):
    spec = registry.get(name)
    model = spec.build(image_size=spec.default_resolution)
    assert trainable(model) == TORCHVISION_PARAMS[name]
