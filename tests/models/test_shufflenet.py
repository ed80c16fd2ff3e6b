import itertools

import keras
import numpy as np
import pytest

from official.models import count_flops, registry, shufflenet

# Trainable parameters at 224 px with 1,000 classes.
# v1 g=3 / g=8: megvii's definition (ShuffleNet-Series ShuffleNetV1/network.py @d8e4db13:
# classifier without bias), counted layer by layer in ../shared/reference/anchors-wave2.md §1b;
# the README rounds them to 0.7M/1.9M/3.4M/5.4M and 1.0M/2.4M/4.3M/6.5M. osmr/imgclsmob lists
# exactly 1,000 more (its classifier has a bias): x0.5 g=3 718,324, x1.0 g=3 1,865,728, x1.0 g=8
# 2,434,768, and for the other groups x1.0 g=1 1,531,936, g=2 1,733,848, g=4 1,968,344, x0.5
# g=1 534,484 (imgclsmob README, tensorflow2 table), which pin our g=1/2/4 rows below.
# v2: torchvision's `num_params` (shufflenetv2.py), whose classifier has a bias.
TRAINABLE_PARAMS = {
    "shufflenet_v1_g3_0.5": 717_324,
    "shufflenet_v1_g3_1.0": 1_864_728,
    "shufflenet_v1_g3_1.5": 3_441_168,
    "shufflenet_v1_g3_2.0": 5_449_776,
    "shufflenet_v1_g8_0.5": 1_010_448,
    "shufflenet_v1_g8_1.0": 2_433_768,
    "shufflenet_v1_g8_1.5": 4_268_952,
    "shufflenet_v1_g8_2.0": 6_521_232,
    "shufflenet_v1_g1_0.5": 534_484 - 1_000,
    "shufflenet_v1_g1_1.0": 1_531_936 - 1_000,
    "shufflenet_v1_g2_1.0": 1_733_848 - 1_000,
    "shufflenet_v1_g4_1.0": 1_968_344 - 1_000,
    "shufflenet_v2_0.5": 1_366_792,
    "shufflenet_v2_1.0": 2_278_604,
    "shufflenet_v2_1.5": 3_503_624,
    "shufflenet_v2_2.0": 7_393_996,
}
# Multiply-adds at 224 px, compared within 3%:
# * v1 g=3 / g=8: megvii's README FLOPs column (the paper's Table 2 puts every 0.5x model at
#   38 MFLOPs, but megvii's g=8 0.5x has a 16-channel stem and counts 40M: we build 40.5M).
# * v1 g=1, 2, 4: the paper, Table 1 "Complexity" at 1x (143/140/133M) and Table 2 at 0.5x
#   (38M). For 1.5x/2.0x of these groups no reference gives a number.
# * v2: torchvision's `_ops` (0.04/0.145/0.296/0.583 G); the paper's Table 8 (41/146/299/591M)
#   is checked too.
PUBLISHED_MACS = {
    "shufflenet_v1_g3_0.5": 38e6,
    "shufflenet_v1_g3_1.0": 138e6,
    "shufflenet_v1_g3_1.5": 292e6,
    "shufflenet_v1_g3_2.0": 524e6,
    "shufflenet_v1_g8_0.5": 40e6,
    "shufflenet_v1_g8_1.0": 138e6,
    "shufflenet_v1_g8_1.5": 290e6,
    "shufflenet_v1_g8_2.0": 522e6,
    "shufflenet_v1_g1_0.5": 38e6,
    "shufflenet_v1_g1_1.0": 143e6,
    "shufflenet_v1_g2_0.5": 38e6,
    "shufflenet_v1_g2_1.0": 140e6,
    "shufflenet_v1_g4_0.5": 38e6,
    "shufflenet_v1_g4_1.0": 133e6,
    "shufflenet_v2_0.5": 0.04e9,
    "shufflenet_v2_1.0": 0.145e9,
    "shufflenet_v2_1.5": 0.296e9,
    "shufflenet_v2_2.0": 0.583e9,
}
V2_PAPER_MACS = {0.5: 41e6, 1.0: 146e6, 1.5: 299e6, 2.0: 591e6}
# megvii's network.py channel tables: [stem, stage 2, stage 3, stage 4].
MEGVII_V1_TABLES = {
    (3, 0.5): [12, 120, 240, 480],
    (3, 1.0): [24, 240, 480, 960],
    (3, 1.5): [24, 360, 720, 1440],
    (3, 2.0): [48, 480, 960, 1920],
    (8, 0.5): [16, 192, 384, 768],
    (8, 1.0): [24, 384, 768, 1536],
    (8, 1.5): [24, 576, 1152, 2304],
    (8, 2.0): [48, 768, 1536, 3072],
}
# The one full-size build of the default suite (the smallest model); the rest are slow.
DEFAULT_FULL_SIZE = "shufflenet_v1_g3_0.5"
NAMES = [name for name in registry.names() if name.startswith("shufflenet")]


def images(size, count=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (count, size, size, 3)).astype("float32")


def test_registry_has_every_variant():
    v1 = [f"shufflenet_v1_g{g}_{w}" for g in (1, 2, 3, 4, 8) for w in ("0.5", "1.0", "1.5", "2.0")]
    v2 = [f"shufflenet_v2_{w}" for w in ("0.5", "1.0", "1.5", "2.0")]
    assert sorted(NAMES) == sorted(v1 + v2)


@pytest.mark.parametrize("groups, channels", [(2, 6), (3, 6), (3, 12), (4, 8), (3, 9)])
def test_channel_shuffle_matches_its_definition(groups, channels):
    per_group = channels // groups
    # Channel c holds the value c (plus a spatial pattern), so the output names its sources.
    x = np.arange(channels, dtype="float32") + 100 * np.arange(6, dtype="float32").reshape(
        1, 2, 3, 1
    )
    shuffled = np.asarray(shufflenet.ChannelShuffle(groups)(x))
    # arXiv 1707.01083 §3.1: reshape to (g, n), transpose, flatten; as index arithmetic,
    # output j·g + i is input i·n + j (group i's j-th channel).
    for i, j in itertools.product(range(groups), range(per_group)):
        np.testing.assert_array_equal(shuffled[..., j * groups + i], x[..., i * per_group + j])
    # torchvision's channel_shuffle, literally, on the NCHW layout.
    nchw = x.transpose(0, 3, 1, 2)
    torchvision = nchw.reshape(1, groups, per_group, 2, 3).swapaxes(1, 2).reshape(1, -1, 2, 3)
    np.testing.assert_array_equal(shuffled, torchvision.transpose(0, 2, 3, 1))
    # megvii's ShuffleNetV1 blocks.py: reshape to (n, g), permute, flatten: the inverse.
    megvii = nchw.reshape(1, per_group, groups, 2, 3).swapaxes(1, 2).reshape(1, -1, 2, 3)
    inverse = np.asarray(shufflenet.ChannelShuffle(groups, inverse=True)(x))
    np.testing.assert_array_equal(inverse, megvii.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(
        np.asarray(shufflenet.ChannelShuffle(groups, inverse=True)(shuffled)), x
    )
    # The two orders differ unless C = g² (a square transpose is its own inverse).
    assert np.array_equal(inverse, shuffled) == (channels == groups * groups)
    assert shufflenet.ChannelShuffle.from_config(
        shufflenet.ChannelShuffle(groups, inverse=True).get_config()
    ).inverse


def test_v1_channel_rule_reproduces_megvii_and_suits_every_group():
    for (groups, width), table in MEGVII_V1_TABLES.items():
        stem, stages = shufflenet.v1_channels(groups, width)
        assert [stem, *(out for out, _ in stages)] == table
        assert [bottleneck for _, bottleneck in stages] == [c // 4 for c in table[1:]]
    # The other groups: the paper's Table 1 times s; stem as megvii's (12/24/24/48).
    assert shufflenet.v1_channels(1, 1.5) == (24, ((216, 54), (432, 108), (864, 216)))
    assert shufflenet.v1_channels(4, 2.0) == (48, ((544, 136), (1088, 272), (2176, 544)))
    # Only where a quarter of the output does not divide by g is the bottleneck rounded.
    assert shufflenet.v1_channels(2, 0.5) == (12, ((100, 26), (200, 50), (400, 100)))
    assert shufflenet.v1_channels(4, 1.5) == (24, ((408, 104), (816, 204), (1632, 408)))
    for groups, width, multiplier in itertools.product(
        shufflenet.V1_STAGE_CHANNELS, shufflenet.V1_WIDTHS, (1.0, 0.25)
    ):
        stem, stages = shufflenet.v1_channels(groups, width, multiplier)
        previous = stem
        for out, bottleneck in stages:
            # The grouped 1x1s need the bottleneck and the branch outputs divisible by g.
            assert bottleneck % groups == 0 and out % groups == 0
            assert (out - previous) % groups == 0 and out > previous
            previous = out
    with pytest.raises(ValueError, match="unknown ShuffleNet v1 groups '5'"):
        shufflenet.v1_channels(5, 1.0)
    with pytest.raises(ValueError, match="unknown ShuffleNet v2 width '0.75'"):
        shufflenet.v2_channels(0.75)
    assert shufflenet.v2_channels(1.0, 0.25) == (6, 30, 58, 116, 256)


def _check_count_macs(name, trainable):
    model = registry.get(name).build(image_size=224)
    assert trainable(model) == TRAINABLE_PARAMS[name]
    assert count_flops(model) == pytest.approx(PUBLISHED_MACS[name], rel=0.03)
    return model


def test_smallest_count_macs_and_structure(trainable):
    model = _check_count_macs(DEFAULT_FULL_SIZE, trainable)
    # Keras also counts the BN moving statistics (anchors-wave2.md §1b: 729,564).
    assert model.count_params() == 729_564
    assert model.get_layer("predictions").bias is None  # megvii's classifier has no bias
    assert model.get_layer("conv1_conv").filters == 12
    # Table 1: ungrouped first 1x1 of stage 2, grouped (g=3) everywhere else.
    assert model.get_layer("stage2_unit1_expand_conv").groups == 1
    assert model.get_layer("stage2_unit2_expand_conv").groups == 3
    assert model.get_layer("stage3_unit1_project_conv").groups == 3
    # Strided units: the branch makes (out − in) channels, the pooled shortcut the rest.
    assert model.get_layer("stage2_unit1_project_conv").filters == 120 - 12
    assert model.get_layer("stage3_unit1_project_conv").filters == 240 - 120
    outputs = [model.get_layer(f"stage{s}_unit1_out").output.shape for s in (2, 3, 4)]
    assert outputs == [(None, 28, 28, 120), (None, 14, 14, 240), (None, 7, 7, 480)]
    assert len([layer for layer in model.layers if layer.name.endswith("_shuffle")]) == 16


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(TRAINABLE_PARAMS) - {DEFAULT_FULL_SIZE}))
def test_parameter_counts_and_macs(name, trainable):
    model = _check_count_macs(name, trainable)
    if name.startswith("shufflenet_v2"):
        width = float(name.rsplit("_", 1)[1])
        assert count_flops(model) == pytest.approx(V2_PAPER_MACS[width], rel=0.03)
        assert model.get_layer("predictions").bias is not None  # torchvision's has one


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(PUBLISHED_MACS) - set(TRAINABLE_PARAMS)))
def test_macs_of_the_paper_only_variants(name):
    # g=2 and g=4 at 0.5x: the paper's 38 MFLOPs (Table 2), with our rounded bottlenecks.
    model = registry.get(name).build(image_size=224)
    assert count_flops(model) == pytest.approx(PUBLISHED_MACS[name], rel=0.03)


@pytest.mark.parametrize("name", ["shufflenet_v1_g1_1.0", "shufflenet_v2_1.0"])
def test_features_heads_and_switches(name):
    spec = registry.get(name)
    features = spec.build(image_size=64, features_only=True, width_multiplier=0.25)
    sizes = [output.shape[1] for output in features.outputs]
    assert sizes == [32, 16, 8, 4, 2]  # strides 2, 4, 8, 16, 32
    if name.startswith("shufflenet_v1"):
        stem, stages = shufflenet.v1_channels(1, 1.0, 0.25)
        channels = [stem, stem, *(out for out, _ in stages)]
    else:
        stem, *stages, last = shufflenet.v2_channels(1.0, 0.25)
        channels = [stem, stem, *stages]
    assert [output.shape[-1] for output in features.outputs] == channels
    pooled = spec.build(image_size=None, include_top=False, pooling="max", width_multiplier=0.25)
    expected = channels[-1] if name.startswith("shufflenet_v1") else last  # v2: conv5 is head
    assert pooled.output_shape == (None, expected)
    assert pooled(images(40)).shape == (2, expected)  # any size, odd maps included
    model = spec.build(
        image_size=32,
        width_multiplier=0.25,
        num_classes=3,
        activation="prelu",
        normalization="group",
        kernel_initializer="xavier_uniform",
        dropout=0.2,
    )
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"PReLU", "GroupNormalization", "Dropout"} <= kinds
    assert "BatchNormalization" not in kinds
    conv = model.get_layer("conv1_conv")
    assert isinstance(conv.kernel_initializer, keras.initializers.GlorotUniform)
    assert np.all(np.isfinite(np.asarray(model(images(32), training=True))))
    unnormalized = spec.build(image_size=32, width_multiplier=0.25, normalization=None)
    assert unnormalized.get_layer("conv1_conv").use_bias
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        spec.build(image_size=32, width_multiplier=0.25, activation="gelu")


def test_megvii_shuffle_order_switch():
    model = registry.get("shufflenet_v1_g3_1.0").build(
        image_size=32, width_multiplier=0.25, shuffle_order="megvii"
    )
    shuffles = [layer for layer in model.layers if isinstance(layer, shufflenet.ChannelShuffle)]
    assert len(shuffles) == 16 and all(layer.inverse for layer in shuffles)
    with pytest.raises(ValueError, match="unknown channel shuffle order"):
        registry.get("shufflenet_v1_g3_1.0").build(image_size=32, shuffle_order="torch")


# NumPy references of one unit, written from the reference code (NHWC layout), to check the
# order of operations, the padding of the pooled shortcut and the concatenation order.
def _batch_norm(x, layer):
    scale = layer.gamma.numpy() / np.sqrt(layer.moving_variance.numpy() + layer.epsilon)
    return (x - layer.moving_mean.numpy()) * scale + layer.beta.numpy()


def _pointwise(x, layer):
    kernel = layer.kernel.numpy()[0, 0]  # (C_in / g, C_out)
    groups, (c_in, c_out) = layer.groups, (x.shape[-1], kernel.shape[-1])
    parts = [
        x[..., k * c_in // groups : (k + 1) * c_in // groups]
        @ kernel[:, k * c_out // groups : (k + 1) * c_out // groups]
        for k in range(groups)
    ]
    return np.concatenate(parts, axis=-1)


def _windows(x, stride):
    """The 3x3 windows of PyTorch's padding=1 (zeros), as (N, H', W', 3, 3, C)."""
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    size = (x.shape[1] - 1) // stride + 1
    rows = [
        [padded[:, i * stride : i * stride + 3, j * stride : j * stride + 3] for j in range(size)]
        for i in range(size)
    ]
    return np.array(rows).transpose(2, 0, 1, 3, 4, 5)


def _depthwise(x, layer, stride):
    return np.einsum("nhwabc,abc->nhwc", _windows(x, stride), layer.kernel.numpy()[..., 0])


def _randomize(model):
    rng = np.random.default_rng(3)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            layer.beta.assign(rng.normal(0, 0.3, n))
            layer.moving_mean.assign(rng.normal(0, 0.3, n))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, n))


def _v1_reference(x, model, name, stride):
    """megvii's ShuffleV1Block.forward with its own (inverse) shuffle order."""

    def layer(suffix):
        return model.get_layer(f"{name}_{suffix}")

    y = np.maximum(_batch_norm(_pointwise(x, layer("expand_conv")), layer("expand_bn")), 0)
    groups = layer("project_conv").groups
    n, h, w, c = y.shape
    y = y.reshape(n, h, w, c // groups, groups).swapaxes(3, 4).reshape(n, h, w, c)
    y = _batch_norm(_depthwise(y, layer("dw_conv"), stride), layer("dw_bn"))
    y = _batch_norm(_pointwise(y, layer("project_conv")), layer("project_bn"))
    if stride == 1:
        return np.maximum(x + y, 0)
    pooled = _windows(x, 2).sum(axis=(3, 4)) / 9  # AvgPool2d(3, 2, 1), count_include_pad
    return np.concatenate([pooled, np.maximum(y, 0)], axis=-1)


def _v2_reference(x, model, name, stride):
    """torchvision's InvertedResidual.forward."""

    def layer(suffix):
        return model.get_layer(f"{name}_{suffix}")

    def conv_bn(y, part, stride=None):
        conv, bn = layer(f"{part}_conv"), layer(f"{part}_bn")
        return _batch_norm(
            _pointwise(y, conv) if stride is None else _depthwise(y, conv, stride), bn
        )

    def branch2(y):
        y = np.maximum(conv_bn(y, "branch2_expand"), 0)
        y = conv_bn(y, "branch2_dw", stride)
        return np.maximum(conv_bn(y, "branch2_project"), 0)

    if stride == 1:
        half = x.shape[-1] // 2
        out = np.concatenate([x[..., :half], branch2(x[..., half:])], axis=-1)
    else:
        left = conv_bn(conv_bn(x, "branch1_dw", stride), "branch1_project")
        out = np.concatenate([np.maximum(left, 0), branch2(x)], axis=-1)
    n, h, w, c = out.shape  # channel_shuffle(out, 2)
    return out.reshape(n, h, w, 2, c // 2).swapaxes(3, 4).reshape(n, h, w, c)


@pytest.mark.parametrize(
    "name, units",
    [
        # (unit input layer, unit, stride): the ungrouped first unit, an identity unit, and a
        # later strided unit (grouped first 1x1).
        (
            "shufflenet_v1_g3_1.0",
            [
                ("pool1", "stage2_unit1", 2),
                ("stage2_unit1_out", "stage2_unit2", 1),
                ("stage2_unit4_out", "stage3_unit1", 2),
            ],
        ),
        (
            "shufflenet_v2_1.0",
            [
                ("stage2_unit1_shuffle", "stage2_unit2", 1),
                ("stage2_unit4_shuffle", "stage3_unit1", 2),
            ],
        ),
    ],
)
def test_units_match_the_reference_code(name, units):
    v1 = name.startswith("shufflenet_v1")
    model = registry.get(name).build(
        image_size=65, width_multiplier=0.25, **({"shuffle_order": "megvii"} if v1 else {})
    )
    _randomize(model)
    last = "out" if v1 else "shuffle"
    probes = [model.get_layer(source).output for source, _, _ in units]
    probes += [model.get_layer(f"{unit}_{last}").output for _, unit, _ in units]
    values = keras.Model(model.input, probes)(images(65), training=False)
    values = [np.asarray(v, dtype="float64") for v in values]
    reference = _v1_reference if v1 else _v2_reference
    for (_, unit, stride), x, got in zip(units, values, values[len(units) :]):
        expected = reference(x, model, unit, stride)
        assert expected.shape == got.shape
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


# Under mixed_bfloat16 every eager call compiles each grouped convolution with XLA again
# (Keras' TensorFlow backend runs grouped convolutions through XLA), 8-17 s per v1 model
# with g > 1 on 2 cores: one such model by default, every name in the slow suite.
BFLOAT16_DEFAULT = ("shufflenet_v1_g8_0.5", "shufflenet_v2_2.0")


@pytest.mark.parametrize(
    "name",
    [
        name if name in BFLOAT16_DEFAULT else pytest.param(name, marks=pytest.mark.slow)
        for name in NAMES
    ],
)
def test_runs_under_mixed_bfloat16_with_float32_outputs(name, mixed_bfloat16):
    model = registry.get(name).build(
        image_size=32, width_multiplier=0.25, num_classes=5, classifier_activation="softmax"
    )
    probabilities = model(images(32), training=True)
    assert probabilities.dtype == "float32"
    assert model.get_layer("stage3_unit1_concat").output.dtype == "bfloat16"
    np.testing.assert_allclose(np.asarray(probabilities).sum(axis=-1), 1.0, atol=1e-3)
