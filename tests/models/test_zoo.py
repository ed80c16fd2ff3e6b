"""What every registered model and every family builder must do."""

import inspect

import keras
import numpy as np
import pytest

from official.models import __main__ as models_main
from official.models import layers, registry

# The keyword arguments every builder takes (the training, evaluation and CAM code rely on
# them), and the residual families that also take zero_gamma.
COMMON_ARGUMENTS = {
    "name",
    "num_classes",
    "image_size",
    "include_top",
    "pooling",
    "dropout",
    "classifier_activation",
    "features_only",
    "mean",
    "std",
    "width_multiplier",
    "activation",
    "normalization",
    "kernel_initializer",
    "padding",
    "norm_epsilon",
}
RESIDUAL_FAMILIES = ("resnet", "efficientnet", "mobilenet_v2", "mobilenet_v3")
# One variant per builder, with the switches it is tested with.
REPRESENTATIVES = {
    "resnet18": ("prelu", "group"),
    "efficientnet_b0": ("hard_swish", "layer"),
    "mobilenet_v1": ("prelu", "layer"),
    "mobilenet_v2": ("elu", "sync_batch"),
    "mobilenet_v3_small": ("swish", "group"),
    "vgg11_bn": ("leaky_relu", "group"),
    "inception_v1": ("silu", "batch"),
    "inception_v3": ("relu6", "layer"),
    "inception_v2": ("elu", "group"),
    "inception_resnet_v2": ("hard_swish", "group"),
    "densenet121": ("prelu", "layer"),
    "shufflenet_v1_g3_1.0": ("relu6", "batch"),
    "shufflenet_v2_1.0": ("silu", "group"),
    "xception": ("elu", "layer"),
    "nasnet_a_mobile": ("leaky_relu", "batch"),
}


def small(name: str, **overrides):
    """A narrow model at a small input size (the smallest the architecture takes)."""
    spec = registry.get(name)
    kwargs = {"num_classes": 5, "image_size": max(32, spec.min_resolution)}
    kwargs["width_multiplier"] = 0.125 if spec.family == "resnet" else 0.25
    kwargs.update(overrides)
    return spec.build(**kwargs)


def images(model, count=2):
    size = model.input_shape[1]
    return np.random.default_rng(0).uniform(0, 255, (count, size, size, 3)).astype("float32")


def _zoo_params():
    """Every registered name; in the default suite only one per builder (its representative,
    or its first name), the others in `slow`: they are rows of the same table (the zoo has
    about 160 names, 2-5 s each on 2 cores)."""
    default = set(REPRESENTATIVES)
    covered = {registry.get(name).builder for name in default}
    for name in registry.names():
        builder = registry.get(name).builder
        if builder not in covered:
            default.add(name)
            covered.add(builder)
    for name in registry.names():
        yield name if name in default else pytest.param(name, marks=pytest.mark.slow)


@pytest.mark.parametrize("name", _zoo_params())
def test_every_registered_model_runs_forward(name):
    model = small(name)
    logits = model(images(model), training=False)
    assert logits.shape == (2, 5) and logits.dtype == "float32"
    assert np.all(np.isfinite(np.asarray(logits)))
    keras.backend.clear_session()


@pytest.mark.slow
@pytest.mark.parametrize("name", registry.names())
def test_every_registered_model_trains_a_step_under_mixed_bfloat16(name, mixed_bfloat16):
    """A forward pass in training mode (BN batch statistics, dropout) in bfloat16 compute:
    float32 logits without NaN or Inf."""
    model = small(name)
    logits = model(images(model), training=True)
    assert logits.shape == (2, 5) and logits.dtype == "float32"
    assert np.all(np.isfinite(np.asarray(logits)))
    keras.backend.clear_session()


def test_builders_take_the_shared_switches():
    # Tests elsewhere may register their own tiny models: only the zoo's families count here.
    builders = {
        spec.builder
        for spec in map(registry.get, registry.names())
        if spec.builder.__module__.startswith("official.models.")
    }
    assert len(builders) == 18
    for builder in builders:
        parameters = set(inspect.signature(builder).parameters)
        assert parameters >= COMMON_ARGUMENTS, builder.__name__
        residual = builder.__name__.startswith(RESIDUAL_FAMILIES)
        assert ("zero_gamma" in parameters) == residual, builder.__name__
    assert "aux_head" in inspect.signature(registry.get("inception_v3").builder).parameters


# The representatives that take 20-30 s per test on 2 cores: their switch and head checks run
# in the slow suite (they still run forward in the default one).
HEAVY_REPRESENTATIVES = {"nasnet_a_mobile", "inception_resnet_v2", "densenet121"}


def _representatives():
    for name in sorted(REPRESENTATIVES):
        marks = [pytest.mark.slow] if name in HEAVY_REPRESENTATIVES else []
        yield pytest.param(name, marks=marks)


@pytest.mark.parametrize("name", _representatives())
def test_activation_normalization_and_initializer_switches(name):
    activation, normalization = REPRESENTATIVES[name]
    model = small(
        name,
        activation=activation,
        normalization=normalization,
        kernel_initializer="xavier_uniform",
    )
    kinds = {type(layer).__name__ for layer in model.layers}
    activations = {
        layer.get_config().get("activation")
        for layer in model.layers
        if isinstance(layer, keras.layers.Activation)
    }
    expected_activation = {
        "prelu": "PReLU",
        "leaky_relu": "LeakyReLU",
        "hard_swish": "hard_silu",
        "swish": "silu",
    }.get(activation, activation)
    assert expected_activation in kinds | activations
    expected_norm = {
        "group": "GroupNormalization",
        "layer": "LayerNormalization",
        "batch": "BatchNormalization",
        "sync_batch": "BatchNormalization",
    }[normalization]
    assert expected_norm in kinds
    if normalization == "sync_batch":
        assert any(getattr(layer, "synchronized", False) for layer in model.layers)
    conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    assert isinstance(conv.kernel_initializer, keras.initializers.GlorotUniform)
    assert np.all(np.isfinite(np.asarray(model(images(model), training=True))))
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        small(name, activation="gelu")


# What each builder's padding=None is (see its module docstring): "tf" (TensorFlow's SAME) or
# "torch" (PyTorch's symmetric padding), which then builds the same model; None, neither (the
# Caffe references' convolutions and ceil-mode pooling: GoogLeNet, BN-Inception;
# keras.applications' zero-padded pooling: NASNet); "both": nothing that pads differs, so all
# three build the same model. AlexNet and SqueezeNet refuse "tf". One representative per family
# in the default suite (NASNet's takes 20 s: slow), the other builders in `slow`.
PADDING_REFERENCES = {
    "resnet18": "torch",
    "densenet121": "torch",
    "shufflenet_v2_1.0": "torch",
    "alexnet": "torch",
    "squeezenet1_1": "torch",
    "efficientnet_b0": "tf",
    "mobilenet_v2": "tf",
    "xception": "tf",
    "inception_v1": None,
    "vgg11_bn": "both",
    "lenet5": "both",
}
SLOW_PADDING_REFERENCES = {
    "shufflenet_v1_g3_1.0": "torch",
    "mobilenet_v1": "tf",
    "mobilenet_v3_small": "tf",
    "inception_v3": "tf",
    "inception_resnet_v2": "tf",
    "inception_v2": None,
    "nasnet_a_mobile": None,
}


def _padding_params():
    yield from PADDING_REFERENCES.items()
    for name, reference in SLOW_PADDING_REFERENCES.items():
        yield pytest.param(name, reference, marks=pytest.mark.slow)


def _relative_difference(first, second) -> float:
    """The largest |difference| of two models' feature maps, relative to each map's scale."""
    return max(
        float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)) for a, b in zip(first, second)
    )


@pytest.mark.parametrize("name, reference", _padding_params())
def test_padding_and_norm_epsilon_switches(name, reference):
    spec = registry.get(name)
    # An even size; 34 px where an unpadded stem would leave odd maps (where "tf" and "torch"
    # pad alike) at 32. For time, NASNet with one normal cell per stack instead of four and
    # DenseNet without its bottleneck convolutions (their padding is all in other layers).
    size = 34 if spec.family in ("xception", "nasnet") else max(32, spec.min_resolution)
    smaller = {"nasnet": {"cells": 1}, "densenet": {"bottleneck": False}}
    options = dict(
        image_size=size,
        width_multiplier=0.25,
        features_only=True,
        normalization="batch",  # also where the family has none by default
        norm_epsilon=1e-5,
        **smaller.get(spec.family, {}),
    )
    models = {}
    for padding in (None, "tf", "torch"):
        if padding == "tf" and spec.family in ("alexnet", "squeezenet"):
            with pytest.raises(ValueError, match="padding must be None or 'torch'"):
                spec.build(padding=padding, **options)
            continue
        models[padding] = spec.build(padding=padding, **options)
    with pytest.raises(ValueError, match="unknown padding 'same'"):
        spec.build(padding="same", **options)
    # norm_epsilon reaches every normalization layer (by default 1e-3 in EfficientNet,
    # MobileNet, Inception v1/v3/v4, Xception and NASNet).
    norms = [
        layer for layer in models[None].layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert norms and all(layer.epsilon == 1e-5 for layer in norms)
    # The same weights (matched by name: the padding layers have none) in every model.
    base = models[None]
    for model in models.values():
        for layer in base.layers:
            if layer.weights:
                model.get_layer(layer.name).set_weights(layer.get_weights())
    x = images(base, count=1)
    outputs = {
        padding: [np.asarray(o, "float64") for o in model(x, training=False)]
        for padding, model in models.items()
    }
    differences = {
        (a, b): _relative_difference(outputs[a], outputs[b])
        for a, b in ((None, "tf"), (None, "torch"), ("tf", "torch"))
        if a in outputs and b in outputs
    }
    equal = {
        "tf": {(None, "tf")},
        "torch": {(None, "torch")},
        None: set(),
        "both": set(differences),
    }[reference]
    for pair, difference in differences.items():
        # Equal to float32 rounding, or changed well beyond it (the windows move by a pixel).
        if pair in equal:
            assert difference < 1e-5, (pair, difference)
        else:
            assert difference > 1e-2, (pair, difference)
    keras.backend.clear_session()


@pytest.mark.parametrize("name", _representatives())
def test_heads_features_and_float32_outputs(name, mixed_bfloat16):
    # Unpadded stems (TF-slim's Inception, Xception, NASNet) do not halve the size exactly;
    # Inception v3 and Inception-ResNet-v2 need 75 px at least.
    unpadded = name in ("inception_v3", "inception_resnet_v2", "xception", "nasnet_a_mobile")
    size = 96 if registry.get(name).min_resolution > 64 else 64
    model = small(name, image_size=size, classifier_activation="softmax")
    probabilities = np.asarray(model(images(model)))
    assert model.output.dtype == "float32"
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=1e-3)
    names = {layer.name for layer in model.layers}
    if "avg_pool" in names:
        # CAM (arXiv 1512.04150) reads the input of `avg_pool` and the kernel of `predictions`.
        feature_map = model.get_layer("avg_pool").input
        assert model.get_layer("predictions").kernel.shape[0] == feature_map.shape[-1]
    else:  # VGG's fully-connected top; MobileNetV3's hidden head layer (Grad-CAM for both)
        assert name.startswith(("vgg", "mobilenet_v3"))
    pooled = small(name, image_size=size, include_top=False, pooling="max")
    assert len(pooled.output_shape) == 2
    features = small(name, image_size=size, features_only=True)
    sizes = [output.shape[1] for output in features.outputs]
    assert len(sizes) == 5
    if not unpadded:  # (Inception v3 at 96 px: 45, 20, 9, 4, 1)
        assert sizes == [size // 2, size // 4, size // 8, size // 16, size // 32]
    else:
        assert sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize(
    "name",
    ["inception_v1", "inception_v3", pytest.param("inception_resnet_v2", marks=pytest.mark.slow)],
)
def test_auxiliary_heads_are_float32_under_mixed_precision(name, mixed_bfloat16):
    model = small(name, image_size=224 if name == "inception_v1" else 96, aux_head=True)
    outputs = model(images(model, count=1))
    assert outputs["logits"].dtype == "float32" and outputs["aux_logits"].dtype == "float32"


def test_registry_passes_each_variants_input_statistics():
    model = registry.get("inception_v3").build(image_size=75, width_multiplier=0.25)
    assert model.get_layer("input_normalization").input_mean == [127.5] * 3
    model = registry.get("vgg11").build(image_size=32, include_top=False, width_multiplier=0.25)
    assert model.get_layer("input_normalization").input_variance == [1.0] * 3
    assert layers.ACTIVATIONS == (
        "relu",
        "relu6",
        "leaky_relu",
        "prelu",
        "elu",
        "swish",
        "silu",
        "hard_swish",
        "tanh",
        "lecun_tanh",
        "selu",
    )


def test_model_table_command(run, capsys):
    result = run("official.models", "resnet18", "efficientnet_phi0.5", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    header = ["name", "family", "params", "binary", "GMACs", "resolution", "eval", "crop"]
    assert lines[0].split() == header
    resnet18 = lines[1].split()
    assert resnet18[:6] == ["resnet18", "resnet", "11,689,512", "0", "1.814", "224"]
    assert "0.875 (256→224, bilinear)" in lines[1]
    assert lines[2].startswith("efficientnet_phi0.5") and "bicubic" in lines[2]
    with pytest.raises(SystemExit) as exit_status:
        models_main.main(["official.models", "resnet18", "resnet51"])
    assert exit_status.value.code == 2
    captured = capsys.readouterr()
    assert "unknown model 'resnet51'. Did you mean resnet50" in captured.err
    assert captured.out == ""  # nothing is built before every name is checked
