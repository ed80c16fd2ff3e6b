import keras
import numpy as np
import pytest

from official.models import count_flops, registry, resnet

# Trainable parameters at 224 px with 1,000 classes: torchvision's resnet18/34/50/101/152
# (docs.pytorch.org/vision/stable/models, "Params" column: 11.7M, 21.8M, 25.6M, 44.5M, 60.2M;
# exact counts from sum(p.numel())), which have no conv biases, like the paper's ResNet.
# ResNet-200: timm's resnet200. ResNet-D: timm's resnet18d..152d (the same counts fast.ai's
# xresnet and imgclsmob's ResNet(A)-xxb list; resnet200d = resnet200 + the deep stem's
# 19,232); keras-hub's resnet_vd_50 preset lists 25,629,512 with its BN statistics, as our
# total. SE-ResNet (r = 16): 28,088,024 / 49,326,872 / 66,821,848, the counts of
# FrancescoSaverioZuppichini/glasses' cse_resnet50/101/152 (channel SE of arXiv 1709.01507);
# the paper's Table 2 rounds them to 28.1M / 49.3M / 66.8M.
TRAINABLE_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnet200": 64_673_832,
    "resnet18_d": 11_708_744,
    "resnet34_d": 21_816_904,
    "resnet50_d": 25_576_264,
    "resnet101_d": 44_568_392,
    "resnet152_d": 60_212_040,
    "resnet200_d": 64_693_064,
    "se_resnet50": 28_088_024,
    "se_resnet101": 49_326_872,
    "se_resnet152": 66_821_848,
    # timm's seresnet50 (the same SE modules on its ResNet-B: only the stride moves).
    "se_resnet50_b": 28_088_024,
    # ResNeXt: torchvision's resnext50_32x4d / resnext101_32x8d / resnext101_64x4d; 101_32x4d
    # as imgclsmob's resnext101_32x4d and Cadene's pretrainedmodels. SE-ResNeXt and SENet-154:
    # Cadene's pretrainedmodels (the SENet authors' Caffe models converted; its README lists
    # these n_params), the reference implementation of arXiv 1709.01507.
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x4d": 44_177_704,
    "resnext101_32x8d": 88_791_336,
    "resnext101_64x4d": 83_455_272,
    "se_resnext50_32x4d": 27_559_896,
    "se_resnext101_32x4d": 48_955_416,
    "se_resnext101_64x4d": 88_232_984,
    "senet154": 115_088_984,
}
DEFAULT_SUITE_COUNTS = ("resnet18", "resnet50", "resnet50_d", "se_resnet50", "resnext50_32x4d")


def _trainable(model) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


_FULL_SIZE = {}


def _full_size(name):
    """One 224 px build per name for the parameter and FLOPs tests of this module."""
    if name not in _FULL_SIZE:
        _FULL_SIZE[name] = registry.get(name).build(image_size=224)
    return _FULL_SIZE[name]


@pytest.mark.parametrize("name", DEFAULT_SUITE_COUNTS)
def test_parameter_count(name):
    assert _trainable(_full_size(name)) == TRAINABLE_PARAMS[name]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [n for n in TRAINABLE_PARAMS if n not in DEFAULT_SUITE_COUNTS],
)
def test_parameter_count_deep(name):
    assert _trainable(registry.get(name).build(image_size=224)) == TRAINABLE_PARAMS[name]


@pytest.mark.parametrize(
    "name, published",
    [
        # He et al. arXiv 1512.03385 Table 1: 1.8, 3.6, 3.8, 7.6, 11.3 x 10^9 FLOPs.
        ("resnet18", 1.8e9),
        ("resnet50", 3.8e9),
        # Bag of Tricks arXiv 1812.01187 Table 5: ResNet-50-B 4.1 G, -C 4.3 G, -D 4.3 G.
        # torchvision's resnet50 is ResNet-B ("v1.5"): 4.09 GFLOPS, the "ResNet-50 ≈ 4.1 G"
        # usually quoted.
        ("resnet50_b", 4.1e9),
        ("resnet50_d", 4.3e9),
        # ResNeXt arXiv 1611.05431 Table 1: ResNeXt-50 (32x4d) 4.2 x 10^9 FLOPs.
        ("resnext50_32x4d", 4.2e9),
    ],
)
def test_flops_match_the_papers(name, published):
    model = _full_size(name)
    assert count_flops(model) == pytest.approx(published, rel=0.02)
    # B only moves a stride and D adds a parameter-free pooling (C's deep stem costs 19,232).
    expected = {"resnet50_b": "resnet50", "resnet50_d": "resnet50_d"}.get(name, name)
    assert _trainable(model) == TRAINABLE_PARAMS[expected]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, published",
    [
        ("resnet34", 3.6e9),
        ("resnet101", 7.6e9),
        ("resnet152", 11.3e9),
        ("resnet50_c", 4.3e9),
        # ResNeXt arXiv 1611.05431 Table 5: 101 (32x4d) 7.8 G, 101 (64x4d) 15.6 G; the 7.97 G we
        # count for 32x4d is the 7.8 G of the paper within 2.2%. torchvision lists 16.41
        # GFLOPS for resnext101_32x8d.
        ("resnext101_32x4d", 7.8e9),
        ("resnext101_64x4d", 15.6e9),
        ("resnext101_32x8d", 16.41e9),
        # SENet arXiv 1709.01507 Table 2: SE-ResNeXt-50 4.25 GFLOPs, SE-ResNeXt-101 8.00. The
        # paper gives no FLOPs for SENet-154; timm's legacy_senet154 lists 20.77 GMACs.
        ("se_resnext50_32x4d", 4.25e9),
        ("se_resnext101_32x4d", 8.0e9),
        ("senet154", 20.77e9),
    ],
)
def test_flops_match_the_papers_deep(name, published):
    model = registry.get(name).build(image_size=224)
    assert count_flops(model) == pytest.approx(published, rel=0.025)
    if name == "resnet50_c":
        assert _trainable(model) == TRAINABLE_PARAMS["resnet50_d"]


def _strides(model, name):
    return model.get_layer(name).strides


def test_resnet_b_moves_the_stride_to_the_3x3():
    a = resnet.resnet(depth=50, image_size=64, width_multiplier=0.125)
    b = resnet.resnet(depth=50, variant="b", image_size=64, width_multiplier=0.125)
    assert _strides(a, "conv3_block1_1_conv") == (2, 2)
    assert _strides(a, "conv3_block1_2_conv") == (1, 1)
    assert _strides(b, "conv3_block1_1_conv") == (1, 1)
    assert _strides(b, "conv3_block1_2_conv") == (2, 2)
    assert a.output_shape == b.output_shape


def test_resnet_c_stem_and_resnet_d_shortcut():
    c = resnet.resnet(depth=50, variant="c", image_size=64, width_multiplier=0.5)
    stem = [c.get_layer(f"conv1{k}_conv") for k in "abc"]
    assert [layer.filters for layer in stem] == [16, 16, 32]  # 32, 32, 64 at full width
    assert [layer.kernel_size for layer in stem] == [(3, 3)] * 3
    assert [layer.strides for layer in stem] == [(2, 2), (1, 1), (1, 1)]
    assert "conv3_block1_0_pool" not in {layer.name for layer in c.layers}
    d = resnet.resnet(depth=50, variant="d", image_size=64, width_multiplier=0.5)
    pool = d.get_layer("conv3_block1_0_pool")
    assert isinstance(pool, keras.layers.AveragePooling2D) and pool.strides == (2, 2)
    assert _strides(d, "conv3_block1_0_conv") == (1, 1)
    assert _strides(d, "conv3_block1_2_conv") == (2, 2)  # D includes B
    # The stage without down-sampling keeps a plain projection.
    assert "conv2_block1_0_pool" not in {layer.name for layer in d.layers}


def test_squeeze_excitation_on_the_residual_branch():
    model = _full_size("se_resnet50")
    assert model.get_layer("conv2_block1_se_reduce").filters == 16  # 256 / 16
    assert model.get_layer("conv5_block3_se_expand").filters == 2048
    add = model.get_layer("conv2_block1_add")
    assert add.input[1].name == model.get_layer("conv2_block1_se_excite").output.name


def test_resnext_groups_the_3x3_convolution():
    model = _full_size("resnext50_32x4d")
    for stage, width in zip(range(2, 6), (128, 256, 512, 1024)):
        conv = model.get_layer(f"conv{stage}_block1_2_conv")
        assert (conv.groups, conv.filters) == (32, width)  # C = 32 groups of d = 4 · 2^stage
        assert conv.kernel.shape == (3, 3, width // 32, width)
        assert model.get_layer(f"conv{stage}_block1_1_conv").filters == width
        # 4x expansion of the stage's 64·2^k filters: twice the 32x4d grouped width.
        assert model.get_layer(f"conv{stage}_block1_3_conv").filters == 2 * width
    assert _strides(model, "conv3_block1_2_conv") == (2, 2)  # the stride in the 3x3
    assert model.get_layer("conv5_block3_out").output.shape[-1] == 2048


def test_senet154_layout():
    model = resnet.resnet(
        depth=50,
        image_size=64,
        **{k: v for k, v in registry.get("senet154").kwargs.items() if k != "depth"},
    )
    stem = [model.get_layer(f"conv1{k}_conv").filters for k in "abc"]
    assert stem == [64, 64, 128]
    # The first 1x1 halves the grouped width (planes·2 vs planes·4 in the reference code).
    assert model.get_layer("conv2_block1_1_conv").filters == 128
    grouped = model.get_layer("conv2_block1_2_conv")
    assert (grouped.groups, grouped.filters, grouped.kernel.shape[2]) == (64, 256, 2)
    # Projections are 3x3 where they down-sample, 1x1 in the first stage.
    assert model.get_layer("conv2_block1_0_conv").kernel_size == (1, 1)
    assert model.get_layer("conv3_block1_0_conv").kernel_size == (3, 3)
    assert _strides(model, "conv3_block1_0_conv") == (2, 2)
    assert model.get_layer("conv2_block1_se_reduce").filters == 16  # 256 / 16
    assert model.get_layer("top_dropout").rate == 0.2
    with pytest.raises(ValueError, match="basic blocks"):
        resnet.resnet(depth=18, cardinality=32)


@pytest.mark.parametrize("depth, output_stride", [(18, 8), (18, 16), (50, 8)])
def test_dilation_keeps_resolution_and_parameters(depth, output_stride):
    plain = resnet.resnet(depth=depth, image_size=64, width_multiplier=0.125, features_only=True)
    dilated = resnet.resnet(
        depth=depth,
        image_size=64,
        width_multiplier=0.125,
        features_only=True,
        output_stride=output_stride,
    )
    assert _trainable(dilated) == _trainable(plain)
    assert tuple(dilated.outputs[-1].shape[1:3]) == (64 // output_stride,) * 2
    conv = "_2_conv" if depth == 50 else "_1_conv"
    # torchvision: a dilated stage's first block keeps the previous dilation.
    expected = {8: {"conv4_block1": 1, "conv4_block2": 2, "conv5_block1": 2, "conv5_block2": 4}}
    expected[16] = {"conv4_block1": 1, "conv4_block2": 1, "conv5_block1": 1, "conv5_block2": 2}
    for block, rate in expected[output_stride].items():
        assert dilated.get_layer(block + conv).dilation_rate == (rate, rate)
    with pytest.raises(ValueError, match="output_stride"):
        resnet.resnet(depth=18, output_stride=4)


def test_parity_with_keras_applications_resnet50(parity):
    before, after, normalization = parity("resnet50", 64)
    assert before > 1e-2 and after < 1e-4
    # keras' caffe preprocessing: BGR mean subtraction, no scaling.
    assert normalization.mean == pytest.approx((123.68, 116.779, 103.939))
    assert normalization.std == (1.0, 1.0, 1.0)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet101", "resnet152"])
def test_parity_with_keras_applications_deep(parity, name):
    before, after, _ = parity(name, 64)
    assert before > 1e-2 and after < 1e-4


def test_zero_gamma_makes_residual_branches_start_as_identity():
    model = resnet.resnet(depth=18, image_size=32, zero_gamma=True, num_classes=3)
    last_bns = [layer for layer in model.layers if layer.name.endswith("_2_bn")]
    assert len(last_bns) == 8
    for layer in last_bns:
        assert np.all(layer.gamma.numpy() == 0)
    assert np.all(model.get_layer("conv2_block1_1_bn").gamma.numpy() == 1)


def test_no_conv_bias():
    model = _full_size("resnet50")
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert convs and all(not layer.use_bias for layer in convs)


def test_features_only_returns_stage_outputs():
    model = resnet.resnet(depth=18, image_size=64, features_only=True)
    shapes = [tuple(output.shape[1:3]) for output in model.outputs]
    assert shapes == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]


def test_softmax_switch():
    model = resnet.resnet(
        depth=18,
        image_size=32,
        num_classes=4,
        classifier_activation="softmax",
        width_multiplier=0.25,
    )
    probabilities = model(np.zeros((1, 32, 32, 3), "float32")).numpy()
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
