import keras
import numpy as np
import pytest

from official.models import count_flops, nasnet, registry

# Trainable parameters: keras.applications NASNetMobile / NASNetLarge and osmr/imgclsmob's
# nasnet_4a1056 / nasnet_6a4032 (the paper rounds them to 5.3M / 88.9M); keras' totals add the
# BN moving statistics.
TRAINABLE_PARAMS = {"nasnet_a_mobile": 5_289_978, "nasnet_a_large": 88_753_150}
KERAS_TOTAL_PARAMS = {"nasnet_a_mobile": 5_326_716, "nasnet_a_large": 88_949_818}
# arXiv 1707.07012 mult-adds: NASNet-A (4 @ 1056) 564M at 224 px (Table 3), (6 @ 4032) 23.8B at
# 331 px (Table 2); TF-slim's README repeats them as "Million MACs" 564 and 23800. count_flops
# gives 563.64M and 23,783.4M: the papers' numbers are exactly the multiply-adds of the
# convolutions, separable convolutions and the classifier. osmr/imgclsmob lists 584.90M and
# 23,976.44M instead; both are reproduced to the last digit by imgclsmob's own convention,
# half of a FLOP count that also charges 4 per BN output element (+9.10M for Mobile), 1 per
# ReLU input element (+4.55M), k² per pooling output (+4.87M) and the global pooling (+0.03M),
# counts a bias-free convolution as 2·k²·HW·Cin·Cout − Cin·Cout FLOPs (−1.96M), and runs its
# PyTorch port's stride-2 reduction cells on one extra row and column that it crops away
# afterwards ("extra_padding", +4.68M). So we test against the paper.
PAPER_MACS = {"nasnet_a_mobile": 564e6, "nasnet_a_large": 23.8e9}


def small(cells=1, **overrides):
    """A narrow NASNet with one normal cell per stack (7 cells instead of 3N + 4)."""
    arguments = dict(
        cells=cells,
        penultimate_filters=1056,
        stem_filters=32,
        skip_reduction=False,
        width_multiplier=0.25,
        num_classes=5,
    )
    return nasnet.nasnet(**{**arguments, **overrides})


def images(size, count=2):
    return np.random.default_rng(0).uniform(0, 255, (count, size, size, 3)).astype("float32")


def check_size_and_cells(model, name, trainable):
    config = nasnet.CONFIGS[name]
    size = config.default_resolution
    assert trainable(model) == TRAINABLE_PARAMS[name]
    assert model.count_params() == KERAS_TOTAL_PARAMS[name]
    assert count_flops(model) == pytest.approx(PAPER_MACS[name], rel=0.003)
    # 3N normal cells of 6 states and 2 + 2 reduction cells of 4; 24F channels at the end.
    concats = [layer for layer in model.layers if layer.name.endswith("_concat")]
    normal = [
        layer for layer in concats if layer.name.startswith("cell_") and "stem" not in layer.name
    ]
    assert len(normal) == 3 * config.cells and all(len(layer.input) == 6 for layer in normal)
    reductions = [layer for layer in concats if layer not in normal]
    assert len(reductions) == 4 and all(len(layer.input) == 4 for layer in reductions)
    stem = (size - 3) // 2 + 1  # unpadded, then four halvings rounding up
    last = -(-stem // 16)
    assert model.get_layer("final_relu").output.shape[1:] == (
        last,
        last,
        config.penultimate_filters,
    )
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert {(bn.epsilon, bn.momentum) for bn in bns} == {(1e-3, 0.9997)}
    assert model.get_layer("top_dropout").rate == 0.5  # TF-slim dense_dropout_keep_prob


def test_mobile_parameter_count_macs_and_cells(trainable):
    model = registry.get("nasnet_a_mobile").build(image_size=224)
    check_size_and_cells(model, "nasnet_a_mobile", trainable)
    # Without skip_reduction the normal cell after a reduction reduces the reduction's input.
    p = model.get_layer("cell_4_prev_relu").input
    assert p._keras_history.operation.name == "cell_3_concat"


@pytest.mark.slow
def test_large_parameter_count_macs_and_cells(trainable):
    model = registry.get("nasnet_a_large").build(image_size=331)
    check_size_and_cells(model, "nasnet_a_large", trainable)


@pytest.mark.slow  # A whole run in a subprocess or a full-size build: the default suite's budget.
def test_parity_with_keras_applications_mobile(parity):
    before, after, normalization = parity("nasnet_a_mobile", 64)
    assert before > 1e-2 and after < 1e-4
    assert normalization.mean == pytest.approx((127.5,) * 3)
    assert normalization.std == pytest.approx((127.5,) * 3)


@pytest.mark.slow
def test_parity_with_keras_applications_odd_size_and_large(parity):
    # 99 px: every cell sees an odd size (49, 25, 13, 7), padded differently from even ones
    # (keras' correct_pad); Large adds the skip-reduction wiring and the 96-filter stem.
    before, after, _ = parity("nasnet_a_mobile", 99, include_top=False, pooling="avg")
    assert before > 1e-2 and after < 1e-4
    before, after, _ = parity("nasnet_a_large", 64)
    assert before > 1e-2 and after < 1e-4


def test_skip_reduction_feeds_the_cell_before_the_reduction_input():
    # N = 2: cell_0, cell_1, reduction_cell_0, then cell_2, whose p is reduced from cell_0
    # with skip_reduction (NASNet-A Large; without it, cell_1: see the Mobile test).
    model = small(cells=2, skip_reduction=True, image_size=32, include_top=False)
    p = model.get_layer("cell_2_prev_relu").input
    assert p._keras_history.operation.name == "cell_0_concat"
    # A factorized reduction to the stack's 2F = 24 filters: two 1x1 paths of 12, the
    # second on the input shifted by one pixel.
    assert model.get_layer("cell_2_path1_conv").filters == 12
    assert model.get_layer("cell_2_path2_conv").filters == 12
    assert isinstance(model.get_layer("cell_2_path2_shift"), keras.layers.Cropping2D)


@pytest.mark.slow  # A whole run in a subprocess or a full-size build: the default suite's budget.
def test_features_switches_and_any_input_size():
    features = small(image_size=64, features_only=True)
    # Stem 31 (unpadded), then each reduction halves rounding up; F = 12 at width 0.25.
    assert [tuple(o.shape[1:]) for o in features.outputs] == [
        (31, 31, 8),
        (16, 16, 12),
        (8, 8, 72),
        (4, 4, 144),
        (2, 2, 288),
    ]
    # Built for any size, the model computes what a fixed-size build computes, also when the
    # cells see odd sizes (35 px: 17, 9, 5, 3): the stride-2 cells pad by TensorFlow's SAME
    # rule from the size seen at run time (keras' correct_pad assumes even unknown sizes).
    dynamic = small(image_size=None, activation="prelu", normalization=None)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in dynamic.layers)
    assert dynamic.get_layer("cell_0_beginning_conv").use_bias
    assert isinstance(dynamic.get_layer("cell_0_beginning_relu"), keras.layers.PReLU)
    fixed = small(image_size=35, activation="prelu", normalization=None)
    fixed.set_weights(dynamic.get_weights())
    np.testing.assert_allclose(dynamic(images(35)), fixed(images(35)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of 96"):
        small(penultimate_filters=1000)


def test_reduction_pooling_counts_the_zero_padding_as_keras_does():
    # keras.applications pads before its stride-2 poolings (TF-slim pools with SAME padding):
    # on negative inputs the last row and column see the padded zeros.
    x = -np.ones((1, 6, 7, 1), "float32")
    padded = nasnet.SameZeroPadding2D(3, 2)(x)
    assert padded.shape == (1, 7, 9, 1)  # SAME: 1 extra for even 6 (bottom), 2 for odd 7
    pooled = np.asarray(keras.layers.MaxPooling2D(3, 2)(padded))[0, :, :, 0]
    expected = -np.ones((3, 4))
    expected[-1, :] = expected[:, 0] = expected[:, -1] = 0
    np.testing.assert_array_equal(pooled, expected)


def test_smallest_input_and_mixed_bfloat16(mixed_bfloat16):
    assert registry.get("nasnet_a_mobile").min_resolution == 3
    with pytest.raises(ValueError, match="at least 3 px"):
        registry.get("nasnet_a_mobile").build(image_size=2)
    model = small(image_size=3, classifier_activation="softmax")
    assert model.get_layer("stem_bn").output.shape[1:3] == (1, 1)
    probabilities = model(images(3), training=True)
    assert probabilities.dtype == "float32"
    np.testing.assert_allclose(np.asarray(probabilities).sum(axis=-1), 1.0, atol=1e-3)
