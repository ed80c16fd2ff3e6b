import keras
import numpy as np
import pytest

from official.models import count_flops, flops, graph, registry

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
