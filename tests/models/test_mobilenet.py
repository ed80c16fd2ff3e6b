import keras
import pytest

from official.models import count_flops, layers, mobilenet, registry

# Trainable parameters at 224 px with 1,000 classes, as keras.applications MobileNet,
# MobileNetV2, MobileNetV3Small/Large (weights=None) count them; MobileNetV2 3,504,872 and
# MobileNetV3 2,542,856 / 5,483,032 are also torchvision's counts (mobilenet_v2,
# mobilenet_v3_small/large). The papers round them: v1 4.2M (arXiv 1704.04861 Table 8), v2
# 3.4M (arXiv 1801.04381 Table 4), v3 2.5M / 5.4M (arXiv 1905.02244 Table 3).
TRAINABLE_PARAMS = {
    "mobilenet_v1": 4_231_976,
    "mobilenet_v2": 3_504_872,
    "mobilenet_v3_small": 2_542_856,
    "mobilenet_v3_large": 5_483_032,
}
# Multiply-adds at 224 px: v1 569M (arXiv 1704.04861 Table 8), v2 300M (arXiv 1801.04381
# Table 4), v3 Large 219M and Small 56M (arXiv 1905.02244 Table 3).
PUBLISHED_MACS = {
    "mobilenet_v1": 569e6,
    "mobilenet_v2": 300e6,
    "mobilenet_v3_small": 56e6,
    "mobilenet_v3_large": 219e6,
}


@pytest.mark.parametrize("name", sorted(TRAINABLE_PARAMS))
def test_parameter_count_and_flops(name, trainable):
    model = registry.get(name).build(image_size=224)
    assert trainable(model) == TRAINABLE_PARAMS[name]
    assert count_flops(model) == pytest.approx(PUBLISHED_MACS[name], rel=0.02)


def test_v1_is_depthwise_separable_throughout():
    model = registry.get("mobilenet_v1").build(image_size=64, width_multiplier=0.25)
    depthwise = [layer for layer in model.layers if isinstance(layer, keras.layers.DepthwiseConv2D)]
    pointwise = [layer for layer in model.layers if layer.name.startswith("conv_pw_")]
    assert len(depthwise) == 13 and len({layer.name for layer in pointwise}) >= 13
    assert model.get_layer("conv_pw_13_conv").filters == 256  # int(1024 · 0.25)
    assert model.get_layer("conv1_conv").filters == 8  # int(32 · 0.25)
    assert model.get_layer("conv_dw_1_relu").get_config()["activation"] == "relu6"


def test_v1_resolution_multiplier():
    # ρ of arXiv 1704.04861 §3.3: 160 = 224 · 0.714.
    model = registry.get("mobilenet_v1").build(resolution_multiplier=160 / 224)
    assert model.input_shape == (None, 160, 160, 3)
    with pytest.raises(ValueError, match="pass one of them"):
        mobilenet.mobilenet_v1(resolution_multiplier=0.5, image_size=224)


def test_v1_width_multiplier_matches_the_paper_table(trainable):
    # arXiv 1704.04861 Table 6: 0.75 MobileNet-224 2.6M, 0.5 1.3M, 0.25 0.5M parameters.
    for alpha, published in ((0.75, 2.6e6), (0.5, 1.3e6), (0.25, 0.5e6)):
        model = mobilenet.mobilenet_v1(image_size=32, width_multiplier=alpha)
        assert trainable(model) == pytest.approx(published, abs=0.05e6)  # rounded to 0.1M


def test_v2_inverted_residuals():
    model = registry.get("mobilenet_v2").build(image_size=64)
    # Table 2: 17 bottlenecks; residuals where stride 1 and channels match (10 of them).
    assert sum(layer.name.endswith("_project_conv") for layer in model.layers) == 17
    assert sum(isinstance(layer, keras.layers.Add) for layer in model.layers) == 10
    assert model.get_layer("block1_expand_conv").filters == 96  # 16 · 6
    assert "block0_expand_conv" not in {layer.name for layer in model.layers}  # t = 1
    names = {layer.name for layer in model.layers}
    assert "block1_project_relu" not in names  # linear bottleneck (§3.2)
    assert model.get_layer("top_conv").filters == 1280


def test_v2_width_multiplier_rounds_to_multiples_of_eight():
    model = registry.get("mobilenet_v2").build(image_size=32, width_multiplier=0.35)
    assert model.get_layer("stem_conv").filters == 16  # make_divisible(32 · 0.35) = 16
    assert model.get_layer("block1_project_conv").filters == 8  # 24 · 0.35 = 8.4
    assert model.get_layer("top_conv").filters == 1280  # kept for α < 1
    wide = registry.get("mobilenet_v2").build(image_size=32, width_multiplier=1.4)
    assert wide.get_layer("top_conv").filters == 1792


def test_v3_blocks_follow_tables_1_and_2():
    large = registry.get("mobilenet_v3_large").build(image_size=64)
    assert large.get_layer("stem_relu").get_config()["activation"] == "hard_silu"
    assert large.get_layer("block3_dw_relu").get_config()["activation"] == "relu"
    assert large.get_layer("block6_dw_relu").get_config()["activation"] == "hard_silu"
    # Expanded 24 · 3 = 72 channels; SE 72 / 4 = 18 → make_divisible → 24.
    assert large.get_layer("block3_se_reduce").filters == 24
    assert large.get_layer("block3_se_gate").get_config()["activation"] == "hard_sigmoid"
    assert large.get_layer("top_conv").filters == 960
    assert large.get_layer("head_dense").units == 1280
    small = registry.get("mobilenet_v3_small").build(image_size=64)
    assert small.get_layer("block0_se_reduce").filters == 8
    assert small.get_layer("top_conv").filters == 576
    assert small.get_layer("head_dense").units == 1024


@pytest.mark.parametrize("name", sorted(TRAINABLE_PARAMS))
def test_parity_with_keras_applications(parity, name):
    before, after, normalization = parity(name, 64)
    assert before > 1e-2 and after < 1e-4
    assert normalization.mean == pytest.approx((127.5,) * 3)
    assert normalization.std == pytest.approx((127.5,) * 3)


@pytest.mark.parametrize("name, alpha", [("mobilenet_v1", 0.5), ("mobilenet_v2", 0.35)])
def test_parity_of_narrow_models(parity, name, alpha):
    before, after, _ = parity(
        name, 64, app_kwargs={"alpha": alpha}, build_kwargs={"width_multiplier": alpha}
    )
    assert before > 1e-2 and after < 1e-4


@pytest.mark.slow  # ~7-9 s: two MobileNetV3 builds (EfficientNet's se_ratio test is the fast one).
def test_v3_se_ratio_switch_resizes_or_removes_the_squeeze_excitation():
    # SE of a block with E expanded channels and s = make_divisible(E · ratio): a 1x1 E→s and a
    # 1x1 s→E convolution with biases, 2·E·s + s + E parameters (arXiv 1905.02244 §5.3).
    spec, alpha = registry.get("mobilenet_v3_small"), 0.25
    counts = {
        ratio: spec.build(image_size=32, width_multiplier=alpha, se_ratio=ratio).count_params()
        for ratio in (0.0, 0.5)
    }
    for ratio in (0.5,):
        expected, channels = 0, mobilenet.V3_STEM_FILTERS
        for block in mobilenet.V3_SMALL:
            expanded = layers.make_divisible(channels * block.expansion)
            if block.se:
                reduced = layers.make_divisible(expanded * ratio)
                expected += 2 * expanded * reduced + reduced + expanded
            channels = layers.make_divisible(block.filters * alpha)
        assert counts[ratio] - counts[0.0] == expected
    with pytest.raises(ValueError, match="se_ratio must be in"):
        spec.build(image_size=32, se_ratio=2.0)
