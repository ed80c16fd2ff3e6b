import warnings

import keras
import numpy as np
import pytest

from official.models import port, port_keras_applications_weights, registry
from official.models.port import InputNormalization


def test_unsupported_source_names_the_supported_ones():
    inputs = keras.Input((32, 32, 3))
    other = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="c")(inputs), name="mine")
    target = registry.get("resnet18").build(image_size=32)
    with pytest.raises(ValueError, match="'mine' is not a keras.applications model") as error:
        port_keras_applications_weights(other, target)
    assert "ResNet50/101/152" in str(error.value) and "MobileNetV2" in str(error.value)


def test_mismatched_architectures_fail_naming_the_layers():
    source = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35)
    mismatch = "layer mismatch: block_1_project .* does not fit block1_project_conv"
    with pytest.raises(ValueError, match=mismatch):
        port_keras_applications_weights(
            source, registry.get("mobilenet_v2").build(image_size=32, width_multiplier=0.5)
        )
    with pytest.raises(ValueError, match="weighted layers"):
        port_keras_applications_weights(source, registry.get("mobilenet_v1").build(image_size=32))


def test_ported_normalization_belongs_to_the_weights():
    keras.utils.set_random_seed(0)  # keras.applications draws its random weights unseeded
    source = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), include_top=False)
    target = registry.get("vgg16").build(image_size=32, include_top=False)
    normalization = port_keras_applications_weights(source, target)
    assert isinstance(normalization, InputNormalization)
    # keras' "caffe" mode: BGR minus (103.939, 116.779, 123.68), i.e. this mean in RGB order.
    assert normalization == ((123.68, 116.779, 103.939), (1.0, 1.0, 1.0))
    layer = target.get_layer("input_normalization")
    assert layer.input_mean == pytest.approx(list(normalization.mean))
    assert layer.input_variance == pytest.approx([s**2 for s in normalization.std])
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    ported = np.asarray(target.predict(images, verbose=0))  # traced after the port
    # A model rebuilt with the returned statistics and the ported weights is the same model;
    # one rebuilt with the registry's default statistics (torchvision's ImageNet mean, at most
    # 0.5 away from caffe's) is not: its outputs move by 0.15-0.35 % of their scale with
    # random weights (measured over seeds 0-5), the same model's by nothing.
    scale = np.abs(ported).max()
    for statistics, same in ((normalization, True), (registry.get("vgg16"), False)):
        rebuilt = registry.get("vgg16").build(
            image_size=32, include_top=False, mean=statistics.mean, std=statistics.std
        )
        rebuilt.set_weights(target.get_weights())
        difference = np.abs(np.asarray(rebuilt(images)) - ported).max() / scale
        assert (difference < 1e-6) if same else (difference > 2e-4)


def test_efficientnet_variance_quirk_is_reproduced_and_reported():
    # keras' EfficientNet .h5 files store the ImageNet std as the Normalization variance; only
    # weights="imagenet" adds the 1/sqrt(std) rescaling that fixes it (tensorflow#49930).
    source = keras.applications.EfficientNetB0(
        weights=None, input_shape=(32, 32, 3), include_top=False
    )
    normalization_layer = next(
        layer for layer in source.layers if isinstance(layer, keras.layers.Normalization)
    )
    normalization_layer.adapt_mean.assign([0.485, 0.456, 0.406])
    normalization_layer.adapt_variance.assign([0.229, 0.224, 0.225])
    normalization_layer.finalize_state()
    target = registry.get("efficientnet_b0").build(image_size=32, include_top=False, pooling=None)
    with pytest.warns(UserWarning, match="tensorflow/tensorflow#49930"):
        normalization = port_keras_applications_weights(source, target)
    # What the source computes: (x/255 - mean) / sqrt(std), i.e. std' = 255 · sqrt(std).
    assert normalization.std == pytest.approx(tuple(255 * np.sqrt([0.229, 0.224, 0.225])))
    images = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    assert np.abs(np.asarray(source(images)) - np.asarray(target(images))).max() < 1e-4
    # With the reference statistics (variance = std²) nothing is reported.
    normalization_layer.adapt_variance.assign(np.square([0.229, 0.224, 0.225]))
    normalization_layer.finalize_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        port_keras_applications_weights(source, target)


def test_separable_kernels_copy_with_reordered_input_channels():
    # A SeparableConv2D first layer of a BGR source: the depthwise filters and the pointwise
    # rows of each input channel (depth multiplier 2: two depthwise outputs per channel) move
    # together, so the RGB copy on RGB input computes the source on BGR input.
    inputs = keras.Input((8, 8, 3))
    source = keras.layers.SeparableConv2D(4, 3, depth_multiplier=2, use_bias=False)
    target = keras.layers.SeparableConv2D(4, 3, depth_multiplier=2, use_bias=False)
    source(inputs), target(inputs)
    rng = np.random.default_rng(0)
    source.depthwise_kernel.assign(rng.normal(size=source.depthwise_kernel.shape))
    source.pointwise_kernel.assign(rng.normal(size=source.pointwise_kernel.shape))
    bgr_to_rgb = np.array([2, 1, 0])
    port._copy_kernels(source, target, bgr_to_rgb)
    rgb = rng.normal(size=(1, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(target(rgb), source(rgb[..., ::-1]), atol=1e-5)
    plain = keras.layers.Conv2D(4, 3)
    plain(inputs)
    with pytest.raises(ValueError, match="has 2 kernels"):
        port._copy_kernels(source, plain, None)
