import numpy as np
import pytest

from official import registry
from official.models import resnet

# Trainable parameters at 224 px with 1,000 classes: torchvision's resnet18/34/50/101/152
# (docs.pytorch.org/vision/stable/models, "Params" column: 11.7M, 21.8M, 25.6M, 44.5M, 60.2M;
# exact counts from sum(p.numel())), which have no conv biases, like the paper's ResNet.
TRAINABLE_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}


def _trainable(model) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_parameter_count(name):
    assert _trainable(registry.get(name).build(image_size=224)) == TRAINABLE_PARAMS[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet34", "resnet101", "resnet152"])
def test_parameter_count_deep(name):
    assert _trainable(registry.get(name).build(image_size=224)) == TRAINABLE_PARAMS[name]


@pytest.mark.parametrize("depth", sorted(resnet.DEPTHS))
def test_forward_small(depth):
    model = registry.get(f"resnet{depth}").build(
        image_size=32, num_classes=7, width_multiplier=0.125
    )
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    logits = model(images, training=False)
    assert logits.shape == (2, 7)
    assert logits.dtype == "float32"
    assert np.all(np.isfinite(logits))


def test_zero_gamma_makes_residual_branches_start_as_identity():
    model = resnet.resnet(depth=18, image_size=32, zero_gamma=True, num_classes=3)
    last_bns = [layer for layer in model.layers if layer.name.endswith("_2_bn")]
    assert len(last_bns) == 8
    for layer in last_bns:
        assert np.all(layer.gamma.numpy() == 0)
    assert np.all(model.get_layer("conv2_block1_1_bn").gamma.numpy() == 1)


def test_no_conv_bias():
    model = resnet.resnet(depth=50, image_size=64, num_classes=3)
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
