"""Helpers shared by the model tests: parameter counting and keras.applications parity."""

import keras
import numpy as np
import pytest
from helpers import randomize

from official.models import port_keras_applications_weights, registry

# Pairs of (our registry name) -> (keras.applications constructor, its preprocess_input).
APPLICATIONS = {
    "efficientnet_b0": (keras.applications.EfficientNetB0, None),
    "efficientnet_b1": (keras.applications.EfficientNetB1, None),
    "efficientnet_b2": (keras.applications.EfficientNetB2, None),
    "efficientnet_b3": (keras.applications.EfficientNetB3, None),
    "efficientnet_b4": (keras.applications.EfficientNetB4, None),
    "efficientnet_b5": (keras.applications.EfficientNetB5, None),
    "efficientnet_b6": (keras.applications.EfficientNetB6, None),
    "efficientnet_b7": (keras.applications.EfficientNetB7, None),
    "resnet50": (keras.applications.ResNet50, keras.applications.resnet.preprocess_input),
    "resnet101": (keras.applications.ResNet101, keras.applications.resnet.preprocess_input),
    "resnet152": (keras.applications.ResNet152, keras.applications.resnet.preprocess_input),
    "vgg16": (keras.applications.VGG16, keras.applications.vgg16.preprocess_input),
    "vgg19": (keras.applications.VGG19, keras.applications.vgg19.preprocess_input),
    "inception_v3": (
        keras.applications.InceptionV3,
        keras.applications.inception_v3.preprocess_input,
    ),
    "inception_resnet_v2": (
        keras.applications.InceptionResNetV2,
        keras.applications.inception_resnet_v2.preprocess_input,
    ),
    "mobilenet_v1": (keras.applications.MobileNet, keras.applications.mobilenet.preprocess_input),
    "mobilenet_v2": (
        keras.applications.MobileNetV2,
        keras.applications.mobilenet_v2.preprocess_input,
    ),
    "mobilenet_v3_small": (keras.applications.MobileNetV3Small, None),
    "mobilenet_v3_large": (keras.applications.MobileNetV3Large, None),
    "densenet121": (keras.applications.DenseNet121, keras.applications.densenet.preprocess_input),
    "densenet169": (keras.applications.DenseNet169, keras.applications.densenet.preprocess_input),
    "densenet201": (keras.applications.DenseNet201, keras.applications.densenet.preprocess_input),
    "xception": (keras.applications.Xception, keras.applications.xception.preprocess_input),
    "nasnet_a_mobile": (
        keras.applications.NASNetMobile,
        keras.applications.nasnet.preprocess_input,
    ),
    "nasnet_a_large": (keras.applications.NASNetLarge, keras.applications.nasnet.preprocess_input),
}


def count_trainable(model) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


@pytest.fixture
def trainable():
    return count_trainable


def keras_parity(
    name: str,
    image_size: int,
    include_top: bool = True,
    pooling=None,
    app_kwargs=None,
    build_kwargs=None,
):
    """Ports a randomized keras.applications model into ours; returns (max |difference|
    before the port, after it, the port's InputNormalization) on random 0..255 RGB images."""
    constructor, preprocess = APPLICATIONS[name]
    app_kwargs = dict(app_kwargs or {})
    if include_top:
        app_kwargs.update(classifier_activation=None)
    else:
        app_kwargs.update(pooling=pooling)
    source = constructor(
        weights=None, input_shape=(image_size, image_size, 3), include_top=include_top, **app_kwargs
    )
    randomize(source)
    build_kwargs = dict(build_kwargs or {})
    if not include_top:
        build_kwargs.update(pooling=pooling)
    target = registry.get(name).build(
        image_size=image_size, include_top=include_top, **build_kwargs
    )
    images = np.random.default_rng(1).uniform(0, 255, (2, image_size, image_size, 3))
    images = images.astype("float32")
    expected = np.asarray(
        source(images if preprocess is None else preprocess(images.copy()), training=False)
    )

    def main_output(x):
        outputs = target(x, training=False)
        return np.asarray(outputs["logits"] if isinstance(outputs, dict) else outputs)

    before = np.abs(main_output(images) - expected).max()
    normalization = port_keras_applications_weights(source, target)
    after = np.abs(main_output(images) - expected).max()
    return before, after, normalization


@pytest.fixture
def parity():
    return keras_parity


@pytest.fixture
def mixed_bfloat16():
    """Runs the test under Keras' mixed_bfloat16 policy, restoring the previous one after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    yield
    keras.config.set_dtype_policy(previous)
