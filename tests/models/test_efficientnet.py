import keras
import numpy as np
import pytest

from official.models import count_flops, efficientnet, layers, registry

# Trainable parameters at the reference resolution with 1,000 classes. B0-B7: keras.applications
# EfficientNetB0..B7(weights=None) (keras.io/api/applications lists 5.3M/7.9M/9.2M/12.3M/
# 19.5M/30.6M/43.3M/66.7M, the totals with BN statistics), the same counts timm lists for its
# efficientnet_b0..b7 (5.29/7.79/9.11/12.23/19.34/30.39/43.04/66.35M; exact values as printed
# in the README of FrancescoSaverioZuppichini/glasses, which ports timm's models). Lite0-4:
# timm's efficientnet_lite0..4 (same README), ports of tensorflow/tpu's Lite checkpoints
# (whose README rounds them to 4.7M/5.4M/6.1M/8.2M/13.0M).
TRAINABLE_PARAMS = {
    "efficientnet_b0": 5_288_548,
    "efficientnet_b1": 7_794_184,
    "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232,
    "efficientnet_b4": 19_341_616,
    "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704,
    "efficientnet_b7": 66_347_960,
    "efficientnet_lite0": 4_652_008,
    "efficientnet_lite1": 5_416_680,
    "efficientnet_lite2": 6_092_072,
    "efficientnet_lite3": 8_197_096,
    "efficientnet_lite4": 13_006_568,
}

# Stem / head filters, stage outputs and repeats derived from tensorflow/tpu's
# round_filters/round_repeats (../shared/reference/anchors.md §c).
DERIVED = {
    "b0": (32, 1280, [16, 24, 40, 80, 112, 192, 320], [1, 2, 2, 3, 3, 4, 1]),
    "b1": (32, 1280, [16, 24, 40, 80, 112, 192, 320], [2, 3, 3, 4, 4, 5, 2]),
    "b2": (32, 1408, [16, 24, 48, 88, 120, 208, 352], [2, 3, 3, 4, 4, 5, 2]),
    "b3": (40, 1536, [24, 32, 48, 96, 136, 232, 384], [2, 3, 3, 5, 5, 6, 2]),
    "b4": (48, 1792, [24, 32, 56, 112, 160, 272, 448], [2, 4, 4, 6, 6, 8, 2]),
    "b5": (48, 2048, [24, 40, 64, 128, 176, 304, 512], [3, 5, 5, 7, 7, 9, 3]),
    "b6": (56, 2304, [32, 40, 72, 144, 200, 344, 576], [3, 6, 6, 8, 8, 11, 3]),
    "b7": (64, 2560, [32, 48, 80, 160, 224, 384, 640], [4, 7, 7, 10, 10, 13, 4]),
}


@pytest.fixture(scope="module")
def b0():
    return registry.get("efficientnet_b0").build(image_size=224)


def test_scaling_table_is_the_reference():
    assert [(s.width, s.depth, s.resolution, s.dropout) for s in efficientnet.SCALING.values()] == [
        (1.0, 1.0, 224, 0.2),
        (1.0, 1.1, 240, 0.2),
        (1.1, 1.2, 260, 0.3),
        (1.2, 1.4, 300, 0.3),
        (1.4, 1.8, 380, 0.4),
        (1.6, 2.2, 456, 0.4),
        (1.8, 2.6, 528, 0.5),
        (2.0, 3.1, 600, 0.5),
    ]


@pytest.mark.parametrize("variant", sorted(DERIVED))
def test_round_filters_and_repeats_reproduce_the_reference(variant):
    scaling = efficientnet.SCALING[variant]
    stem, head, outputs, repeats = DERIVED[variant]
    assert efficientnet.round_filters(32, scaling.width) == stem
    assert efficientnet.round_filters(1280, scaling.width) == head
    blocks = efficientnet.B0_BLOCKS
    assert [efficientnet.round_filters(b.filters_out, scaling.width) for b in blocks] == outputs
    assert [efficientnet.round_repeats(b.repeats, scaling.depth) for b in blocks] == repeats


def test_round_filters_never_rounds_down_more_than_ten_percent():
    # 36 · 1.0 → int(36 + 4) // 8 · 8 = 40; 44 → 48; 11 → 16 (8 would lose 27%).
    assert efficientnet.round_filters(36, 1.0) == 40
    assert efficientnet.round_filters(11, 1.0) == 16
    assert efficientnet.round_filters(3, 1.0) == 8
    assert efficientnet.round_repeats(3, 1.1) == 4  # ceil(3.3)


def test_b0_parameter_count_flops_and_structure(b0, trainable):
    assert trainable(b0) == TRAINABLE_PARAMS["efficientnet_b0"]
    # Tan & Le arXiv 1905.11946 Table 2: B0 has 0.39B FLOPs (multiply-adds).
    assert count_flops(b0) == pytest.approx(0.39e9, rel=0.02)
    # MBConv: SE from the block's input channels · 0.25, swish, linear projection.
    assert b0.get_layer("block1a_se_reduce").filters == 8  # int(32 · 0.25)
    assert b0.get_layer("block2a_se_reduce").filters == 4  # int(16 · 0.25)
    assert b0.get_layer("block6b_se_expand").filters == 1152  # 192 · 6
    assert b0.get_layer("block2a_expand_relu").get_config()["activation"] == "silu"
    assert b0.get_layer("block2a_dw_conv").kernel_size == (3, 3)
    assert b0.get_layer("block3a_dw_conv").kernel_size == (5, 5)
    names = {layer.name for layer in b0.layers}
    assert "block2a_project_relu" not in names  # the projection is linear
    bns = [layer for layer in b0.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert {(bn.momentum, bn.epsilon) for bn in bns} == {(0.99, 1e-3)}
    # Identity skips exactly where input and output shapes match: 16 blocks, 7 stage starts.
    assert sum(isinstance(layer, keras.layers.Add) for layer in b0.layers) == 9
    assert b0.get_layer("top_dropout").rate == 0.2
    assert b0.get_layer("top_conv").filters == 1280


def test_stochastic_depth_grows_linearly_with_the_block_index(b0):
    names = {layer.name for layer in b0.layers}
    blocks = sorted({name.split("_")[0] for name in names if name.startswith("block")})
    assert len(blocks) == 16
    for index, block in enumerate(blocks):
        if f"{block}_add" in names:
            layer = b0.get_layer(f"{block}_drop")
            assert layer.rate == pytest.approx(0.2 * index / 16)
    # Each sample keeps or drops its whole branch, and a kept branch is rescaled by 1/(1-p).
    inputs = keras.Input((2, 2, 3))
    branch = keras.Model(inputs, layers.stochastic_depth(inputs, 0.5, name="drop"))
    y = np.asarray(branch(np.ones((256, 2, 2, 3), "float32"), training=True))
    per_sample = y.reshape(256, -1)
    assert np.all(per_sample == per_sample[:, :1])
    assert set(np.unique(y)) == {0.0, 2.0}
    assert 0.35 < (per_sample[:, 0] == 0).mean() < 0.65
    assert np.all(np.asarray(branch(np.ones((4, 2, 2, 3), "float32"), training=False)) == 1)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", [n for n in TRAINABLE_PARAMS if n not in ("efficientnet_b0", "efficientnet_lite0")]
)
def test_parameter_count(name, trainable):
    spec = registry.get(name)
    assert trainable(spec.build(image_size=spec.default_resolution)) == TRAINABLE_PARAMS[name]


def test_lite_parameter_count_and_switches(trainable):
    lite0 = registry.get("efficientnet_lite0").build(image_size=224)
    assert trainable(lite0) == TRAINABLE_PARAMS["efficientnet_lite0"]
    lite4 = registry.get("efficientnet_lite4").build(image_size=64)
    names = [layer.name for layer in lite4.layers]
    assert not any("_se_" in name for name in names)  # no squeeze-excitation
    assert lite4.get_layer("block2a_dw_relu").get_config()["activation"] == "relu6"
    # Stem, head and the first and last stages are not scaled (fix_head_stem).
    assert lite4.get_layer("stem_conv").filters == 32
    assert lite4.get_layer("top_conv").filters == 1280
    assert sum(n.startswith("block1") and n.endswith("_project_conv") for n in names) == 1
    assert sum(n.startswith("block7") and n.endswith("_project_conv") for n in names) == 1
    assert sum(n.startswith("block2") and n.endswith("_project_conv") for n in names) == 4
    spec = registry.get("efficientnet_lite4")
    assert spec.mean == (127.0,) * 3 and spec.std == (128.0,) * 3
    normalization = lite4.get_layer("input_normalization")
    assert normalization.input_mean == [127.0] * 3
    assert normalization.input_variance == [128.0**2] * 3


def test_registry_metadata_follows_the_reference_eval():
    spec = registry.get("efficientnet_b7")
    assert spec.default_resolution == 600 and spec.interpolation == "bicubic"
    # tensorflow/tpu: crop padding round(600 · (1/0.875 - 1)) = 86.
    assert spec.crop_fraction == pytest.approx(600 / 686)
    assert registry.get("efficientnet_b0").crop_fraction == 0.875


def test_phi_scaling_follows_the_compound_rule():
    assert efficientnet.phi_scaling(0) == efficientnet.Scaling(1.0, 1.0, 224, 0.2)
    scaling = efficientnet.phi_scaling(1.5)
    assert scaling.depth == pytest.approx(1.2**1.5)
    assert scaling.width == pytest.approx(1.1**1.5)
    assert scaling.resolution == 280  # 224 · 1.15^1.5 = 276.3 → nearest multiple of 8
    assert scaling.dropout == 0.2
    assert efficientnet.phi_scaling(-1).resolution == 192  # 194.8
    # The dropout rule reproduces the table for integer φ and is capped at 0.5.
    for phi, variant in enumerate(efficientnet.SCALING):
        assert efficientnet.phi_scaling(phi).dropout == efficientnet.SCALING[variant].dropout
    assert efficientnet.phi_scaling(12).dropout == 0.5
    for phi in (0.5, 1, 2.5, 4, 7):
        assert efficientnet.phi_scaling(phi).resolution % 8 == 0


def test_phi_zero_is_b0_and_flops_grow_by_at_least_the_compound_factor(b0, trainable):
    phi0 = efficientnet.efficientnet_phi(0)
    assert trainable(phi0) == TRAINABLE_PARAMS["efficientnet_b0"]
    assert phi0.input_shape == (None, 224, 224, 3)
    phi1 = efficientnet.efficientnet_phi(1)
    assert phi1.input_shape == (None, 256, 256, 3)
    # α·β²·γ² = 1.2 · 1.1² · 1.15² = 1.92 (arXiv 1905.11946 §3.3). The reference rounding
    # makes it more: ceil(1.2 · 1) = 2 doubles the one-block stages (1, 7), so we measure 2.23.
    ratio = count_flops(phi1) / count_flops(b0)
    assert 1.2 * 1.1**2 * 1.15**2 < ratio < 1.25 * 1.2 * 1.1**2 * 1.15**2


def test_phi_registry_names_resolve_for_any_phi():
    spec = registry.get("efficientnet_phi1.5")
    assert spec.default_resolution == 280 and spec.family == "efficientnet"
    assert spec.kwargs["depth"] == pytest.approx(1.2**1.5)
    assert "efficientnet_phi1.5" not in registry.names()
    model = spec.build(image_size=32, num_classes=3, width_multiplier=0.25)
    assert model(np.zeros((1, 32, 32, 3), "float32")).shape == (1, 3)
    assert registry.get("efficientnet_phi-0.5").default_resolution == 208  # 224 / 1.15^0.5
    with pytest.raises(registry.UnknownModelError, match="not a number"):
        registry.get("efficientnet_phix")
    with pytest.raises(registry.UnknownModelError, match="outside"):
        registry.get("efficientnet_phi100")
    with pytest.raises(registry.UnknownModelError) as error:
        registry.get("efficientnet_b9")
    assert "efficientnet_phi<...> (e.g. efficientnet_phi1.5)" in str(error.value)


def test_hand_picked_coefficients(trainable):
    model = efficientnet.efficientnet(width=1.2, depth=1.4, resolution=64, num_classes=10)
    assert model.input_shape == (None, 64, 64, 3)
    assert model.get_layer("stem_conv").filters == 40
    assert sum(n.name.endswith("_project_conv") for n in model.layers) == 26  # as B3
    with pytest.raises(ValueError, match="disagree"):
        efficientnet.efficientnet(resolution=64, image_size=96)


def test_features_only_returns_the_reduction_endpoints():
    model = registry.get("efficientnet_b0").build(image_size=64, features_only=True)
    assert [tuple(o.shape[1:]) for o in model.outputs] == [
        (32, 32, 16),
        (16, 16, 24),
        (8, 8, 40),
        (4, 4, 112),
        (2, 2, 320),
    ]


def test_parity_with_keras_applications_b0(parity):
    before, after, _ = parity("efficientnet_b0", 64)
    assert before > 1e-2
    assert after < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["b1", "b2", "b3", "b4", "b5", "b6", "b7"])
def test_parity_with_keras_applications(parity, variant):
    before, after, normalization = parity(f"efficientnet_{variant}", 64)
    assert before > 1e-2
    assert after < 1e-4
    assert normalization.mean == pytest.approx(registry.IMAGENET_MEAN, abs=1e-3)
    assert normalization.std == pytest.approx(registry.IMAGENET_STD, abs=1e-3)


def test_se_ratio_and_stochastic_depth_switches():
    # The first two B0 stages at width 1/4: blocks 1a (8 → 8 channels, no expansion), 2a and
    # 2b (8 channels in, 48 expanded). SE reduces a block's *input* channels by the ratio
    # (tensorflow/tpu), s = max(1, int(c_in · ratio)), and adds 2·E·s + s + E parameters.
    def build(**kwargs):
        # Instance normalization (no moving statistics) also shows that EfficientNet takes it.
        return efficientnet.efficientnet(
            width=0.25,
            blocks=efficientnet.B0_BLOCKS[:2],
            image_size=32,
            normalization="instance",
            **kwargs,
        )

    def se_parameters(ratio):
        inputs_and_expanded = [(8, 8), (8, 48), (8, 48)]
        return sum(
            2 * e * max(1, int(c * ratio)) + max(1, int(c * ratio)) + e
            for c, e in inputs_and_expanded
        )

    plain = build(se_ratio=0.0, stochastic_depth_rate=0.3)
    assert not [layer.name for layer in plain.layers if "_se_" in layer.name]
    assert plain.get_layer("block2b_drop").rate == pytest.approx(0.3 * 2 / 3)
    for ratio in (None, 0.5):
        model = build(se_ratio=ratio)
        expected = se_parameters(0.25 if ratio is None else ratio)
        assert model.count_params() - plain.count_params() == expected
    assert model.get_layer("block1a_se_reduce").filters == 4
    norms = [layer for layer in model.layers if "Normalization" in type(layer).__name__][1:]
    assert norms and all(type(n) is keras.layers.GroupNormalization for n in norms)
    assert all(n.groups == n.output.shape[-1] for n in norms)
    with pytest.raises(ValueError, match="Lite has no squeeze-excitation"):
        efficientnet.efficientnet(lite=True, se_ratio=0.25)
