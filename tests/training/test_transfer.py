"""VGG's deeper configurations initialized from a trained configuration A (arXiv 1409.1556
§3.1): which layers are copied, by position in the network, and what is refused."""

import keras
import numpy as np
import pytest
from helpers import randomize

from official.models import registry
from official.training import transfer

TINY = dict(num_classes=5, image_size=32, width_multiplier=0.25)


def _weights(layer) -> list[np.ndarray]:
    return [np.asarray(w) for w in layer.get_weights()]


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(_weights(a), _weights(b)))


@pytest.fixture(scope="module")
def net_a():
    keras.utils.set_random_seed(3)
    model = registry.get("vgg11").build(**TINY)
    randomize(model, seed=3)  # Non-zero biases too, so a copied bias shows.
    return model


def test_vgg16_takes_a_first_four_convolutions_and_three_fc_layers_by_position(net_a):
    keras.utils.set_random_seed(4)
    target = registry.get("vgg16").build(**TINY)
    randomize(target, seed=4)
    convolutions = [layer for layer in net_a.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convolutions) == 8
    copied, kept = transfer.copy_from_vgg_net_a(net_a, target)

    # A: conv 64 | conv 128 | conv 256, 256 | ...; D (vgg16): conv 64, 64 | conv 128, 128 |
    # conv 256, 256, 256 | ... — A's first four go to the first of stages 1 and 2 and the
    # first two of stage 3.
    to_16 = {
        "block1_conv1_conv": "block1_conv1_conv",
        "block2_conv1_conv": "block2_conv1_conv",
        "block3_conv1_conv": "block3_conv1_conv",
        "block3_conv2_conv": "block3_conv2_conv",
        "fc1": "fc1",
        "fc2": "fc2",
        "predictions": "predictions",
    }
    assert copied == list(to_16.values())
    for a_name, name in to_16.items():
        assert _same(net_a.get_layer(a_name), target.get_layer(name)), name
    target_convolutions = [
        layer for layer in target.layers if isinstance(layer, keras.layers.Conv2D)
    ]
    assert len(target_convolutions) == 13
    others = [layer for layer in target_convolutions if layer.name not in copied]
    assert [layer.name for layer in others] == kept
    assert len(others) == 9
    # The rest keep their own random initialization, also where a layer of A has the same
    # shape (and name: block4_conv1, block5_conv2, ...).
    for layer in others:
        for a_layer in convolutions:
            if a_layer.kernel.shape == layer.kernel.shape:
                assert not np.array_equal(a_layer.kernel, layer.kernel), layer.name


def test_correspondence_is_by_position_not_name(net_a):
    """A copy of A under other layer names (and vgg13 as the deeper net) gives the same copy."""
    renamed = keras.models.clone_model(
        net_a,
        clone_function=lambda layer: layer.__class__.from_config(
            {**layer.get_config(), "name": "x_" + layer.name}
        ),
    )
    renamed.set_weights(net_a.get_weights())
    assert all(layer.name.startswith("x_") for layer in renamed.layers if layer.weights)
    target = registry.get("vgg13").build(**TINY)
    copied, _ = transfer.copy_from_vgg_net_a(renamed, target)
    assert copied[:4] == [
        "block1_conv1_conv",
        "block2_conv1_conv",
        "block3_conv1_conv",
        "block3_conv2_conv",
    ]
    for name in copied:
        assert _same(net_a.get_layer(name), target.get_layer(name)), name
    assert not _same(net_a.get_layer("block4_conv1_conv"), target.get_layer("block4_conv1_conv"))


def test_only_configuration_a_is_net_a(net_a):
    vgg13 = registry.get("vgg13").build(**TINY)
    vgg16 = registry.get("vgg16").build(**TINY)
    with pytest.raises(ValueError, match=r"'vgg13' is not a VGG-11-like net .* \(2, 2, 2, 2, 2\)"):
        transfer.copy_from_vgg_net_a(vgg13, vgg16)
    resnet = registry.get("resnet18").build(**TINY)
    with pytest.raises(ValueError, match="'resnet18' is not a VGG-11-like net") as error:
        transfer.copy_from_vgg_net_a(resnet, vgg16)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="'resnet18' is not a VGG net with at least"):
        transfer.copy_from_vgg_net_a(net_a, resnet)
    wider = registry.get("vgg16").build(num_classes=5, image_size=32, width_multiplier=0.5)
    with pytest.raises(ValueError, match="net A's block1_conv1_conv has weights"):
        transfer.copy_from_vgg_net_a(net_a, wider)
