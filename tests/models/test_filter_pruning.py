"""Filter pruning (Li et al. arXiv 1608.08710): which convolutions lose filters in VGG and in
basic and bottleneck ResNets, exact parameter counts after pruning, and removing filters that
are exactly zero leaves the outputs unchanged."""

import keras
import numpy as np
import pytest
from helpers import randomize

from official import runs
from official.models import count_flops, filter_pruning, registry


def _build(name, **kwargs):
    keras.utils.set_random_seed(0)
    return registry.get(name).build(num_classes=10, image_size=32, **kwargs)


def _zero_filters(model, fraction):
    """Sets the `fraction` of filters of every prunable convolution with the lowest indices to
    exactly zero (kernel, bias, and the following BN's shift and mean, so the channel carries
    0), every other filter keeping L1 norm > 0; returns the zeroed indices by layer."""
    zeroed = {}
    for layer in filter_pruning.prunable_convolutions(model):
        count = round(fraction * layer.filters)
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        kernel[..., :count] = 0
        layer.kernel.assign(kernel)
        if layer.use_bias:
            bias = keras.ops.convert_to_numpy(layer.bias)
            bias[:count] = 0
            layer.bias.assign(bias)
        bn_name = layer.name.removesuffix("_conv") + "_bn"
        if bn_name in [candidate.name for candidate in model.layers]:
            bn = model.get_layer(bn_name)
            # Instance normalization has no moving mean; its shift alone makes the channel 0.
            for variable in (bn.beta, getattr(bn, "moving_mean", bn.beta)):
                values = keras.ops.convert_to_numpy(variable)
                values[:count] = 0
                variable.assign(values)
        zeroed[layer.name] = np.arange(count, layer.filters)
    return zeroed


@pytest.mark.parametrize(
    "name, kwargs, fraction",
    [
        ("vgg11", {"width_multiplier": 0.125}, 0.5),
        # Instance normalization is channel-wise too: its channels are sliced like BN's.
        pytest.param(
            "vgg11",
            {"width_multiplier": 0.125, "normalization": "instance"},
            0.5,
            marks=pytest.mark.slow,
        ),
        # ~10-25 s each: the residual families in the slow suite.
        pytest.param("resnet18", {"width_multiplier": 0.25}, 0.5, marks=pytest.mark.slow),
        pytest.param("resnet50", {"width_multiplier": 0.125}, 0.25, marks=pytest.mark.slow),
    ],
)
def test_removing_zero_filters_leaves_the_outputs_unchanged(name, kwargs, fraction):
    model = _build(name, **kwargs)
    randomize(model)
    survivors = _zero_filters(model, fraction)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    pruned = filter_pruning.prune_filters(model, (fraction,))
    assert pruned.kept.keys() == survivors.keys()
    for layer_name, kept in pruned.kept.items():
        np.testing.assert_array_equal(kept, survivors[layer_name])
        assert pruned.model.get_layer(layer_name).filters == len(kept)
    np.testing.assert_allclose(
        pruned.model(images, training=False), model(images, training=False), rtol=1e-4, atol=1e-4
    )
    assert count_flops(pruned.model) < count_flops(model)


@pytest.fixture(scope="module")
def resnet18():
    return _build("resnet18", width_multiplier=0.25)  # Stage widths 16, 32, 64, 128.


def test_basic_blocks_lose_filters_only_in_their_first_convolution(resnet18):
    names = [layer.name for layer in filter_pruning.prunable_convolutions(resnet18)]
    # The second 3×3 of a block meets the shortcut in the Add, so it keeps its filters.
    assert names == [f"conv{s}_block{b}_1_conv" for s in range(2, 6) for b in (1, 2)]


@pytest.mark.slow  # ResNet-50 takes ~15 s to build and walk.
def test_bottlenecks_lose_filters_in_their_first_two_convolutions():
    resnet50 = _build("resnet50", width_multiplier=0.125)
    names = [layer.name for layer in filter_pruning.prunable_convolutions(resnet50)]
    # Bottlenecks: the 1×1 and the 3×3, not the last 1×1 nor the projection shortcut; the stem
    # feeds only convolutions (the first block's 1×1 and its projection) and is prunable too.
    assert names[:5] == [
        "conv1_conv",
        "conv2_block1_1_conv",
        "conv2_block1_2_conv",
        "conv2_block2_1_conv",
        "conv2_block2_2_conv",
    ]
    assert len(names) == 1 + 2 * (3 + 4 + 6 + 3)
    with pytest.raises(ValueError, match=r"3 fractions for the 5 stages .*conv1, conv2"):
        filter_pruning.prune_filters(resnet50, (0.5, 0.2, 0.1))


def test_parameter_counts_shrink_by_the_removed_filters_and_their_consumers(resnet18):
    model = resnet18
    pruned = filter_pruning.prune_filters(model, (0.5, 0.5, 0.25, 0.0))

    def removed(c_in, c, r):
        # conv1 3×3 loses r filters (9·c_in each) and its BN 4·r; conv2 3×3 loses r inputs.
        return 9 * c_in * r + 4 * r + 9 * r * c

    expected = (
        2 * removed(16, 16, 8)
        + removed(16, 32, 16)
        + removed(32, 32, 16)
        + removed(32, 64, 16)
        + removed(64, 64, 16)
    )
    assert model.count_params() - pruned.model.count_params() == expected == 53_312
    assert pruned.stages == {"conv2": 0.5, "conv3": 0.5, "conv4": 0.25, "conv5": 0.0}
    assert "conv5_block1_1_conv" not in pruned.kept  # Nothing removed there.


@pytest.mark.slow  # ~1 min: prunes the session's trained run and fine-tunes it for one epoch.
def test_prune_filters_command_and_fine_tuning_inherit_the_fractions(trained_run, tmp_path, run):
    pruned = tmp_path / "pruned"
    result = run(
        "official.prune_filters",
        f"--model_dir={trained_run}",
        f"--out={pruned}",
        "--fractions=0.5",
        "--latency_runs=2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "params:" in result.stdout and f"written:      {pruned}" in result.stdout
    pruned_config, _ = runs.load_config(str(pruned))
    assert pruned_config.model.filter_prune_fractions == (0.5,)
    pruned_model = runs.load_trained_model(str(pruned)).model
    original = runs.load_trained_model(str(trained_run)).model
    expected = filter_pruning.prune_filters(original, (0.5,)).model
    assert pruned_model.count_params() == expected.count_params() < original.count_params()

    # Fine-tuning needs only --config.model.init_weights: the fractions come with the weights.
    common = (
        "--flagfile=configs/quickstart.flags",
        "--config.model.width_multiplier=0.125",
        "--config.train.epochs=1",
        f"--config.model.init_weights={pruned}",
    )
    tuned = tmp_path / "tuned"
    result = run("official.train", *common, f"--model_dir={tuned}")
    assert result.returncode == 0, result.stderr[-3000:]
    tuned_config, _ = runs.load_config(str(tuned))
    assert tuned_config.model.filter_prune_fractions == (0.5,)
    assert runs.load_trained_model(str(tuned)).model.count_params() == pruned_model.count_params()

    # Other fractions than the weights' are refused in one line, before anything is written.
    clash = tmp_path / "clash"
    result = run(
        "official.train",
        *common,
        "--config.model.filter_prune_fractions=0.3",
        f"--model_dir={clash}",
    )
    assert result.returncode != 0
    assert "filter_prune_fractions=0.3: the initial weights" in result.stderr.splitlines()[-1]
    assert not clash.exists()
