"""Copying keras.applications weights into our models, so training can start from the
official ImageNet weights (loaded by keras.applications from the user's local .h5 file).

Weights are matched by position, not by name: both models' graphs are walked from the output
in the same canonical order (`graph.calls`), and the i-th weighted layer of one receives the
i-th of the other, after a shape check. Where the two implementations differ, the port
converts exactly (the outputs then agree to float32 rounding):

  * Input preprocessing. Our models take 0..255 RGB pixels and normalize them in their first
    layer; keras.applications models expect their family's `preprocess_input` outside the
    model (ResNet, VGG: "caffe", BGR channel order minus the ImageNet mean; InceptionV3,
    Xception, NASNet, MobileNet, MobileNetV2: "tf", x / 127.5 - 1; DenseNet: "torch", x / 255
    minus the ImageNet mean, divided by its standard deviation) or do it inside (EfficientNet:
    Rescaling + Normalization (+ the 1/sqrt(std) Rescaling of tensorflow/tensorflow#49930 when
    built with weights="imagenet"); MobileNetV3: Rescaling to [-1, 1]). The port composes both
    into one per-channel affine map, sets our input normalization's mean and std to it, and
    permutes the first convolution's input channels for BGR models. The ported model then
    computes exactly keras' `preprocess_input` + model on the same raw RGB image.
  * Convolution biases before BN (keras ResNets): BN(conv(x) + b) with moving mean m equals
    BN(conv(x)) with moving mean m - b, so the bias is folded into the BN.
  * BN epsilon (keras ResNets and DenseNets use 1.001e-5, ours 1e-5): the moving variance is
    shifted so that variance + epsilon is unchanged.
  * 1x1 convolutions on a pooled 1x1 map (MobileNet classifiers) become dense kernels.

A separable convolution (keras SeparableConv2D: Xception, NASNet) is one weighted layer with
two kernels, depthwise then pointwise, copied in that order into the same kind of layer.

The normalization constants the port sets are returned: they belong to the weights, so a
training run that starts from ported weights must record them (as `--config.data.mean/std`)
for every later rebuild of the model.
"""

from __future__ import annotations

import typing
import warnings

import keras
import numpy as np

from official.models import graph, heads

# keras.applications `imagenet_utils.preprocess_input` modes, as (channel permutation of the
# RGB input, scale, offset) per model-input channel: model_input[i] = x[perm[i]]·a[i] + b[i].
_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])
_IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
_IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)
_EXTERNAL_MODES = {
    "caffe": ((2, 1, 0), np.ones(3), -_CAFFE_MEAN_BGR),
    "tf": ((0, 1, 2), np.full(3, 1 / 127.5), np.full(3, -1.0)),
    # (x / 255 - mean) / std with the ImageNet statistics on the 0..1 scale.
    "torch": (
        (0, 1, 2),
        1 / (255 * np.array(_IMAGENET_STDDEV_RGB)),
        -np.array(_IMAGENET_MEAN_RGB) / np.array(_IMAGENET_STDDEV_RGB),
    ),
    "none": ((0, 1, 2), np.ones(3), np.zeros(3)),
}
# Which keras.applications architecture a model is, by layer names its code fixes; and the
# preprocessing its `preprocess_input` applies outside the model. ResNet and DenseNet share
# their stem and block names (conv1_conv, conv2_block1_1_conv): each signature holds a name
# only its own architecture has (ResNet's residual `_add`, DenseNet's `_concat` and
# transitions), so no model matches both.
_APPLICATIONS = (
    ("EfficientNetB0-B7", ("stem_conv", "block1a_dwconv", "top_conv"), "none"),
    ("ResNet50/101/152", ("conv1_conv", "conv2_block1_1_conv", "conv2_block1_add"), "caffe"),
    ("DenseNet121/169/201", ("conv1_conv", "conv2_block1_concat", "pool2_conv"), "torch"),
    ("VGG16/19", ("block1_conv1", "block5_pool"), "caffe"),
    ("InceptionV3", ("mixed0", "mixed10"), "tf"),
    ("InceptionResNetV2", ("mixed_5b", "block35_1_conv", "conv_7b"), "tf"),
    ("Xception", ("block1_conv1", "block14_sepconv2"), "tf"),
    ("NASNetMobile/Large", ("stem_conv1", "reduction_conv_1_stem_1"), "tf"),
    ("MobileNet", ("conv_dw_1", "conv_pw_13"), "tf"),
    ("MobileNetV2", ("block_1_expand", "Conv_1"), "tf"),
    # MobileNetV3 rescales inside unless built with include_preprocessing=False.
    ("MobileNetV3Small/Large", ("expanded_conv_1_expand", "conv_1"), "tf"),
)
# The keras.applications constructor of each registry model the port supports.
KERAS_APPLICATIONS = {
    **{f"efficientnet_b{i}": f"EfficientNetB{i}" for i in range(8)},
    **{f"resnet{depth}": f"ResNet{depth}" for depth in (50, 101, 152)},
    **{f"densenet{depth}": f"DenseNet{depth}" for depth in (121, 169, 201)},
    "vgg16": "VGG16",
    "vgg19": "VGG19",
    "inception_v3": "InceptionV3",
    "inception_resnet_v2": "InceptionResNetV2",
    "xception": "Xception",
    "nasnet_a_mobile": "NASNetMobile",
    "nasnet_a_large": "NASNetLarge",
    "mobilenet_v1": "MobileNet",
    "mobilenet_v2": "MobileNetV2",
    "mobilenet_v3_small": "MobileNetV3Small",
    "mobilenet_v3_large": "MobileNetV3Large",
}
# Pre-activation ResNets and EfficientNetV2 share layer names with the above but not the
# architecture: refuse them instead of failing later on a shape.
_UNSUPPORTED = ("post_bn",)
_WEIGHTED = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
    keras.layers.Dense,
    keras.layers.BatchNormalization,
)


class InputNormalization(typing.NamedTuple):
    """Per-channel mean and std on the 0..255 RGB scale that a ported model normalizes with."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def _application(model: keras.Model) -> tuple[str, str]:
    names = {layer.name for layer in model.layers}
    if not any(name in names for name in _UNSUPPORTED):
        for application, signature, mode in _APPLICATIONS:
            if all(name in names for name in signature):
                return application, mode
    supported = ", ".join(application for application, _, _ in _APPLICATIONS)
    raise ValueError(
        f"{model.name!r} is not a keras.applications model this port knows; supported: {supported}"
    )


def _numpy(value) -> np.ndarray:
    """A variable, tensor, list or number as a float64 array."""
    if hasattr(value, "numpy"):  # keras.Variable, eager tensor
        value = value.numpy()
    return np.asarray(value, dtype=np.float64)


def _channels(value) -> np.ndarray:
    """A scalar or per-channel constant as 3 per-channel values."""
    return np.broadcast_to(_numpy(value).reshape(-1), 3)


def _affine(layer, scale: np.ndarray, offset: np.ndarray):
    """Composes an in-model preprocessing layer after the map x·scale + offset."""
    if isinstance(layer, keras.layers.Rescaling):
        factor, shift = _channels(layer.scale), _channels(layer.offset)
        return scale * factor, offset * factor + shift
    mean = _channels(layer.mean)
    deviation = np.maximum(np.sqrt(_channels(layer.variance)), keras.backend.epsilon())
    return scale / deviation, (offset - mean) / deviation


def _input_transform(model: keras.Model, mode: str, calls: list):
    """(perm, scale, offset) of everything between the raw RGB image and the first weight."""
    perm, scale, offset = _EXTERNAL_MODES[mode]
    scale, offset = scale.astype(np.float64), offset.astype(np.float64)
    preprocessing = []
    for call in calls:
        if isinstance(call.layer, _WEIGHTED):
            break
        if isinstance(call.layer, keras.layers.Rescaling | keras.layers.Normalization):
            preprocessing.append(call.layer)
    if preprocessing:
        # The model rescales its own input: `preprocess_input` is a pass-through for it.
        perm, scale, offset = _EXTERNAL_MODES["none"]
    for layer in preprocessing:
        scale, offset = _affine(layer, scale, offset)
    kinds = [type(layer).__name__ for layer in preprocessing]
    if "Normalization" in kinds and kinds[-1] == "Normalization":
        variance = _channels(preprocessing[kinds.index("Normalization")].variance)
        if np.allclose(variance, _IMAGENET_STDDEV_RGB, atol=1e-4):
            warnings.warn(
                f"{model.name}: its Normalization layer holds the ImageNet standard deviations "
                "as variances without the 1/sqrt(std) correction that keras adds for "
                'weights="imagenet" (tensorflow/tensorflow#49930): the source model, and so '
                "the ported one, normalizes with sqrt(std). Build the keras model with "
                'weights="imagenet" (the .h5 file in ~/.keras/models/) to get the '
                "normalization the weights were trained with.",
                stacklevel=3,
            )
    return perm, scale, offset


def set_input_normalization(model: keras.Model, mean: np.ndarray, std: np.ndarray) -> None:
    """Sets the model's input normalization layer to (x - mean) / std on the 0..255 scale."""
    layer = next(
        (layer for layer in model.layers if isinstance(layer, keras.layers.Normalization)), None
    )
    if layer is None:
        if np.allclose(mean, 0) and np.allclose(std, 1):
            return
        raise ValueError(
            f"{model.name!r} has no input normalization layer to take the source's "
            "preprocessing: build it with mean and std (any values)"
        )
    # A Normalization layer given mean/variance stores them as constants made in build().
    layer.input_mean = [float(v) for v in mean]
    layer.input_variance = [float(v) ** 2 for v in std]
    layer.build(layer._build_input_shape)
    # Functions traced before the port captured the old constants.
    model.train_function = model.test_function = model.predict_function = None


def _weighted(calls: list) -> list:
    return [call for call in calls if isinstance(call.layer, _WEIGHTED)]


def _describe(call) -> str:
    shapes = [tuple(weight.shape) for weight in call.layer.weights]
    return f"{call.layer.name} ({type(call.layer).__name__}, {shapes})"


def _kernels(layer) -> list:
    """A weighted layer's kernels in a fixed order: a separable convolution has two (its
    depthwise k×k filters, then its 1x1 pointwise kernel), every other layer one."""
    if isinstance(layer, keras.layers.SeparableConv2D):
        return [layer.depthwise_kernel, layer.pointwise_kernel]
    return [layer.kernel]


def _reorder_inputs(kernels: list, order: np.ndarray) -> list:
    """The kernels of the model's first layer with its input channels permuted (BGR → RGB).

    Every kernel has its input channels on axis 2; a separable convolution's pointwise kernel
    sees the depthwise outputs, channel c's `depth_multiplier` of them side by side, which
    move with c.
    """
    first, *rest = kernels
    reordered = [first[:, :, order, :]]
    if rest:
        (pointwise,) = rest
        blocks = pointwise.reshape(1, 1, len(order), -1, pointwise.shape[-1])
        reordered.append(blocks[:, :, order].reshape(pointwise.shape))
    return reordered


def _copy_kernels(source, target, input_order: np.ndarray | None) -> None:
    kernels = [_numpy(kernel) for kernel in _kernels(source)]
    if input_order is not None:
        kernels = _reorder_inputs(kernels, input_order)
    variables = _kernels(target)
    if len(kernels) != len(variables):
        raise ValueError(
            f"{source.name} has {len(kernels)} kernels, {target.name} {len(variables)}"
        )
    for kernel, variable in zip(kernels, variables):
        shape = tuple(variable.shape)
        if kernel.size != int(np.prod(shape)) or (
            kernel.ndim == len(shape) and kernel.shape != shape
        ):
            raise ValueError(
                f"kernel of {source.name} {kernel.shape} does not fit {target.name} {shape}"
            )
        variable.assign(kernel.reshape(shape))


def set_batch_norm(
    target,
    *,
    source_name: str,
    mean: np.ndarray,
    variance: np.ndarray,
    epsilon: float,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    bias: np.ndarray | None = None,
) -> None:
    """Sets a BN layer to compute exactly what a source BN with these values computes.

    A bias of the convolution before the source BN is folded into the moving mean; a different
    epsilon into the moving variance (so that variance + epsilon is unchanged). Shared by the
    keras.applications port and the PyTorch port (official/models/torch_port.py).

    Args:
      target: our keras BatchNormalization layer.
      source_name: the source layer's name, for messages.
      mean, variance: the source's moving statistics.
      epsilon: the source's epsilon.
      gamma, beta: the source's scale and offset; None when it has none (ones, zeros).
      bias: the bias of the convolution feeding the source BN, or None.

    Raises:
      ValueError: the statistics cannot be represented exactly (a variance below the epsilon
        difference, a scale or offset the target does not learn).
    """
    variance = variance + epsilon - target.epsilon
    if bias is not None:
        mean = mean - bias
    if np.any(variance < 0):
        raise ValueError(
            f"{source_name}: moving variance below the epsilon difference "
            f"{epsilon - target.epsilon:g}; cannot port exactly (build the model with "
            f"norm_epsilon={epsilon:g})"
        )
    gamma = np.ones_like(mean) if gamma is None else gamma
    if target.scale:
        target.gamma.assign(gamma)
    elif not np.allclose(gamma, 1):
        raise ValueError(f"{target.name} has no scale (gamma) to take {source_name}'s")
    if target.center:
        target.beta.assign(np.zeros_like(mean) if beta is None else beta)
    elif beta is not None and not np.allclose(beta, 0):
        raise ValueError(f"{target.name} has no offset (beta) to take {source_name}'s")
    target.moving_mean.assign(mean)
    target.moving_variance.assign(variance)


def port_keras_applications_weights(src: keras.Model, dst: keras.Model) -> InputNormalization:
    """Copies a keras.applications model's weights into the same architecture built here.

    Supported pairs (source → registry name): EfficientNetB0..B7 → efficientnet_b0..b7;
    ResNet50/101/152 → resnet50/101/152; VGG16/19 → vgg16/19; InceptionV3 → inception_v3;
    InceptionResNetV2 → inception_resnet_v2; Xception → xception; NASNetMobile/Large →
    nasnet_a_mobile/large; MobileNet → mobilenet_v1; MobileNetV2 → mobilenet_v2;
    MobileNetV3Small/Large → mobilenet_v3_small/large; DenseNet121/169/201 →
    densenet121/169/201. Both need the same class count and `include_top`; alpha and input
    size of the MobileNets must match their `width_multiplier` and `image_size`.

    Example:
      src = keras.applications.ResNet50(weights="resnet50_weights.h5")  # or "imagenet"
      dst = registry.get("resnet50").build(image_size=224)
      normalization = port_keras_applications_weights(src, dst)
      # dst(rgb_uint8_images) == src(keras.applications.resnet.preprocess_input(images))

    Args:
      src: the keras.applications model (any weights).
      dst: our model, built with an input normalization layer (the default).

    Returns:
      The input normalization (0..255 scale, RGB) now set in `dst`: record it with the
      weights (e.g. `--config.data.mean/std`) so a rebuilt model normalizes the same way.

    Raises:
      ValueError: an unsupported source, or architectures that do not match layer by layer
        (the message names the first mismatching pair).
    """
    _, mode = _application(src)
    src_calls = list(graph.calls(src))
    dst_calls = list(graph.calls(dst, outputs=heads.split_outputs(dst.output)[0]))
    perm, scale, offset = _input_transform(src, mode, src_calls)
    if np.any(scale <= 0):
        raise ValueError(f"{src.name}: its input scaling {scale} is not positive")
    # Our normalization works in RGB order: channel perm[i] of ours feeds the source's i.
    order = np.argsort(perm)
    mean = np.empty(3)
    std = np.empty(3)
    mean[list(perm)] = -offset / scale
    std[list(perm)] = 1 / scale

    sources = _weighted(src_calls)
    targets = _weighted(dst_calls)
    if len(sources) != len(targets):
        raise ValueError(
            f"{src.name} has {len(sources)} weighted layers, {dst.name} {len(targets)}: "
            "not the same architecture"
        )
    produced_by = {id(t): call for call in dst_calls for t in call.outputs}
    pending_bias, first_kernel = None, True
    for source_call, target_call in zip(sources, targets):
        source, target = source_call.layer, target_call.layer
        kinds = (type(source), type(target))
        mismatch = ValueError(
            f"layer mismatch: {_describe(source_call)} vs {_describe(target_call)}"
        )
        if pending_bias is not None and not isinstance(target, keras.layers.BatchNormalization):
            raise mismatch
        if isinstance(source, keras.layers.BatchNormalization):
            if not isinstance(target, keras.layers.BatchNormalization):
                raise mismatch
            if pending_bias is not None:
                conv = produced_by.get(id(target_call.inputs[0]))
                if conv is None or conv.layer is not pending_bias[0]:
                    raise ValueError(f"cannot fold the bias of {source.name}: no BN follows")
            set_batch_norm(
                target,
                source_name=source.name,
                mean=_numpy(source.moving_mean),
                variance=_numpy(source.moving_variance),
                epsilon=source.epsilon,
                gamma=_numpy(source.gamma) if source.scale else None,
                beta=_numpy(source.beta) if source.center else None,
                bias=None if pending_bias is None else pending_bias[1],
            )
            pending_bias = None
            continue
        if kinds[0] is not kinds[1] and kinds != (keras.layers.Conv2D, keras.layers.Dense):
            raise mismatch
        # The first kernel sees the input channels: reorder them for BGR sources.
        input_order = order if first_kernel else None
        first_kernel = False
        try:
            _copy_kernels(source, target, input_order)
        except ValueError as e:
            raise ValueError(f"{mismatch} ({e})") from None
        bias = _numpy(source.bias) if source.use_bias else None
        if target.use_bias:
            target.bias.assign(bias if bias is not None else np.zeros(target.bias.shape))
        elif bias is not None:
            pending_bias = (target, bias)
    if pending_bias is not None:
        raise ValueError(f"the bias of {pending_bias[0].name} has no BN to fold into")
    set_input_normalization(dst, mean, std)
    return InputNormalization(tuple(float(v) for v in mean), tuple(float(v) for v in std))
