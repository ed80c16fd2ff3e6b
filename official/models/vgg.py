"""VGG (Simonyan & Zisserman arXiv 1409.1556): configurations A-E of Table 1 as one table and
one builder, and the conversion between the fully-connected form (training, single crops) and
the fully-convolutional form (dense evaluation, §3.2).

Every convolution is 3x3 with stride 1 and padding 1 (1x1 in configuration C), followed by
ReLU; five 2x2/2 max-pooling layers; then FC-4096, FC-4096 (each followed by 50% dropout, §3.1)
and FC-1000. Configuration A-LRN adds local response normalization after the first layer
(§2.3). Inputs are only mean-subtracted (§2.1). The `_bn` variants insert batch normalization
after every convolution and keep its bias, as the reference implementation of those variants
(torchvision's vgg*_bn) does, so the parameter counts match it. Kernels use Glorot
initialization, which the paper's footnote found to work without pre-training.

Padding (the `padding` switch): the 3x3 convolutions pad one pixel at stride 1 and the 2x2/2
poolings pad nothing, the same arithmetic in TensorFlow and PyTorch, so "tf", "torch" and None
build the same model (torchvision's and keras.applications' weights alike).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras

from official.models import graph, heads, layers, registry

# The first FC layer of the 224 px model sees block5_pool's 7x7 map.
FC_GRID = 7
FC_FILTERS = 4096
# Inputs are only mean-subtracted (arXiv 1409.1556 §2.1).
STD = (1.0, 1.0, 1.0)
# torchvision BatchNorm2d defaults (momentum 0.1 in PyTorch's convention, eps 1e-5).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


@dataclasses.dataclass(frozen=True)
class VGGConfig:
    """A column of arXiv 1409.1556 Table 1: the kernel sizes of each of the five stages."""

    stages: tuple[tuple[int, ...], ...]
    lrn: bool = False


STAGE_FILTERS = (64, 128, 256, 512, 512)
CONFIGS = {
    "A": VGGConfig(((3,), (3,), (3, 3), (3, 3), (3, 3))),
    "A-LRN": VGGConfig(((3,), (3,), (3, 3), (3, 3), (3, 3)), lrn=True),
    "B": VGGConfig(((3, 3), (3, 3), (3, 3), (3, 3), (3, 3))),
    "C": VGGConfig(((3, 3), (3, 3), (3, 3, 1), (3, 3, 1), (3, 3, 1))),
    "D": VGGConfig(((3, 3), (3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))),
    "E": VGGConfig(((3, 3), (3, 3), (3, 3, 3, 3), (3, 3, 3, 3), (3, 3, 3, 3))),
}
# Registry names of the configurations (the `_bn` variants are registered for all but A-LRN).
NAMES = {
    "vgg11": "A",
    "vgg11_lrn": "A-LRN",
    "vgg13": "B",
    "vgg16_c": "C",
    "vgg16": "D",
    "vgg19": "E",
}
_FC_LAYERS = ("fc1", "fc2", "predictions")


def vgg(
    *,
    config: str,
    name: str = "vgg",
    num_classes: int = 1000,
    image_size: int | None = None,
    include_top: bool = True,
    pooling: str | None = None,
    dropout: float = 0.5,
    classifier_activation: str | None = None,
    features_only: bool = False,
    width_multiplier: float = 1.0,
    activation: str = "relu",
    normalization: str | None = None,
    head_batch_norm: bool = False,
    kernel_initializer: str = "glorot_uniform",
    padding: str | None = None,
    norm_epsilon: float | None = None,
    mean: Sequence[float] | None = registry.IMAGENET_MEAN,
    std: Sequence[float] | None = STD,
) -> keras.Model:
    """Builds a VGG network in its fully-connected form.

    Args:
      config: a key of CONFIGS ("A", "A-LRN", "B", "C", "D", "E").
      name: model name.
      num_classes: classifier outputs.
      image_size: square input size (>= 32). With the top it defaults to 224: the first FC
        layer's weights depend on the input size (7x7x512 inputs at 224); other sizes build
        a model whose fc1 has another shape. Without the top, None accepts any size.
      include_top: add the three FC layers.
      pooling: without the top, global "avg" or "max" pooling of block5_pool, or None.
      dropout: dropout after fc1 and fc2 (50%, §3.1).
      classifier_activation: None for logits, "softmax" for probabilities.
      features_only: return block1_pool..block5_pool (strides 2..32).
      width_multiplier: scales every layer's channels, including the FC layers (not in the
        paper; for small runs).
      activation: activation switch, see layers.ACTIVATIONS.
      normalization: None (the paper) or a normalization switch (the `_bn` variants).
      head_batch_norm: batch normalization between fc1 and fc2 and their activations (not in
        the paper or torchvision's `_bn` variants, whose heads have none; see
        layers.dense_norm_act).
      kernel_initializer: see layers.KERNEL_INITIALIZERS.
      padding: None, "tf" or "torch": the same model (nothing strided pads).
      norm_epsilon: epsilon of the normalization layers when `normalization` is given (None:
        BN_EPSILON, 1e-5, torchvision's vgg*_bn).
      mean: input mean on the 0..255 scale, or None for no input normalization.
      std: input standard deviation on the 0..255 scale (1: mean subtraction only).

    Returns:
      A keras.Model.
    """
    layers.check_choice(config, tuple(CONFIGS), "VGG configuration")
    if include_top and pooling is not None:
        raise ValueError("VGG's top flattens the 7x7 map: pooling only applies without the top")
    if include_top and image_size is None:
        image_size = 32 * FC_GRID
    table = CONFIGS[config]
    rule = layers.padding_rule(padding, "symmetric")
    epsilon = layers.normalization_epsilon(norm_epsilon, BN_EPSILON)
    norm = layers.norm_kwargs(normalization, BN_MOMENTUM, epsilon, kernel_initializer)
    initializer = norm["kernel_initializer"]  # Also the FC layers'.

    def width(filters: int) -> int:
        return max(8, int(round(filters * width_multiplier)))

    inputs, x = layers.input_block(image_size, mean, std)
    features = []
    for stage, kernels in enumerate(table.stages, start=1):
        for index, kernel in enumerate(kernels, start=1):
            x = layers.conv_norm_act(
                x,
                width(STAGE_FILTERS[stage - 1]),
                kernel,
                name=f"block{stage}_conv{index}",
                activation=activation,
                use_bias=True,
                padding=rule,
                **norm,
            )
            if table.lrn and stage == 1 and index == 1:
                x = layers.LocalResponseNormalization(name="block1_lrn")(x)
        x = layers.pool2d(x, "max", 2, strides=2, padding="valid", name=f"block{stage}_pool")
        features.append(x)
    if features_only:
        return keras.Model(inputs, features, name=name)
    if not include_top:
        return keras.Model(inputs, heads.pool(x, pooling), name=name)
    x = keras.layers.Flatten(name="flatten")(x)
    for fc in ("fc1", "fc2"):
        x = layers.dense_norm_act(
            x,
            width(FC_FILTERS),
            name=fc,
            activation=activation,
            normalization=layers.head_batch_normalization(normalization, head_batch_norm),
            norm_momentum=BN_MOMENTUM,
            norm_epsilon=epsilon,
            kernel_initializer=initializer,
        )
        x = keras.layers.Dropout(dropout, name=fc + "_dropout")(x)
    x = keras.layers.Dense(num_classes, kernel_initializer=initializer, name="predictions")(x)
    return keras.Model(inputs, heads.output(x, classifier_activation), name=name)


def _split(model: keras.Model):
    """The calls of a VGG model up to block5_pool, its head layers by name, and the output
    activation ("linear" or "softmax")."""
    calls = list(graph.calls(model))
    names = [call.layer.name for call in calls]
    if "block5_pool" not in names or not all(n in names for n in _FC_LAYERS):
        raise ValueError(
            f"{model.name!r} is not a VGG model with its top (needs block5_pool, fc1, fc2, "
            "predictions)"
        )
    cut = names.index("block5_pool") + 1
    head = {call.layer.name: call.layer for call in calls[cut:]}
    return calls[:cut], head, calls[-1].layer.get_config()["activation"]


def _rebuild_trunk(trunk_calls, image_size: int | None):
    """Re-applies the convolutional layers (shared: same variables) to a new input."""
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    tensors = {id(trunk_calls[0].inputs[0]): inputs}
    x = inputs
    for call in trunk_calls:
        x = call.layer(*[tensors[id(t)] for t in call.inputs])
        tensors[id(call.outputs[0])] = x
    return inputs, x


def _convert_head(x, head: dict, activation: str, to_convolution: bool, grid: int):
    """Applies fc1, fc2 and predictions as convolutions or dense layers, copying the weights;
    fc1 sees a grid x grid map of block5_pool."""
    for fc in _FC_LAYERS:
        source = head[fc]
        kernel, *bias = source.get_weights()  # No bias before a head BN (`head_batch_norm`).
        units = kernel.shape[-1]
        if to_convolution:
            size = grid if fc == "fc1" else 1
            target = keras.layers.Conv2D(units, size, use_bias=bool(bias), name=fc)
            kernel = kernel.reshape(size, size, -1, units)
        else:
            target = keras.layers.Dense(units, use_bias=bool(bias), name=fc)
            kernel = kernel.reshape(-1, units)
        x = target(x)
        target.set_weights([kernel, *bias])
        if fc == "predictions":
            break
        if fc + "_bn" in head:  # Normalizes the last axis: the same layer for maps and vectors.
            norm = head[fc + "_bn"]
            copy = type(norm).from_config(norm.get_config())
            x = copy(x)
            copy.set_weights(norm.get_weights())
        for suffix in ("_relu", "_dropout"):
            layer = head[fc + suffix]
            if layer.weights:
                raise ValueError(
                    f"{layer.name} has weights ({type(layer).__name__}): only parameter-free "
                    "activations in the FC head can be converted"
                )
            x = type(layer).from_config(layer.get_config())(x)
    return heads.output(x, None if activation == "linear" else activation)


def to_fully_convolutional(model: keras.Model) -> keras.Model:
    """The fully-convolutional form of a VGG model, for dense evaluation (arXiv 1409.1556 §3.2).

    fc1 becomes a 7x7 convolution and fc2 and the classifier 1x1 convolutions, so the network
    takes images of any size (>= 224) and returns a class-score map: (N, H/32 - 6, W/32 - 6,
    classes), one score vector per 224x224 window with a stride of 32 px; average it over
    space (and flips) for the image's scores. At 224 px the map is 1x1 and equals the
    fully-connected model's output. A model built for another size s (fc1 then sees an
    s/32 x s/32 map) gets an s/32 x s/32 fc1 convolution: one window of its own size.

    The convolutional layers are *shared* with `model` (the same variables: training one
    trains the other); the three head layers are copied, their kernels reshaped (the Flatten
    of the FC form is row-major over (7, 7, 512), the layout of a 7x7 kernel).

    Args:
      model: a VGG model with its top (from `vgg` or a registry name `vgg*`).

    Returns:
      A keras.Model with input (None, None, None, 3) and a float32 score map output.
    """
    trunk, head, activation = _split(model)
    grid = trunk[-1].outputs[0].shape[1]
    if grid is None:
        raise ValueError(f"{model.name!r} takes any input size: fc1's window is unknown")
    inputs, x = _rebuild_trunk(trunk, None)
    outputs = _convert_head(x, head, activation, to_convolution=True, grid=grid)
    return keras.Model(inputs, outputs, name=model.name + "_dense")


def to_fully_connected(model: keras.Model, image_size: int | None = None) -> keras.Model:
    """The fully-connected form of a fully-convolutional VGG model (the inverse of
    `to_fully_convolutional`), sharing its convolutional layers.

    Args:
      model: a model returned by `to_fully_convolutional`.
      image_size: input size of the result; fc1 needs the map its kernel covers, so 32 times
        its kernel size (224 for the 7x7 fc1 of a 224 model; the default).

    Returns:
      A keras.Model.
    """
    trunk, head, activation = _split(model)
    grid = head["fc1"].kernel.shape[0]
    image_size = image_size or 32 * grid
    inputs, x = _rebuild_trunk(trunk, image_size)
    if tuple(x.shape[1:3]) != (grid, grid):
        raise ValueError(
            f"fc1 is a {grid}x{grid} convolution: image_size must be {32 * grid}, got {image_size}"
        )
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = _convert_head(x, head, activation, to_convolution=False, grid=grid)
    return keras.Model(inputs, outputs, name=model.name.removesuffix("_dense"))


for _name, _config in NAMES.items():
    for _suffix, _normalization in (("", None), ("_bn", "batch")):
        if _config == "A-LRN" and _normalization:
            continue  # BN replaces LRN (Ioffe & Szegedy arXiv 1502.03167 §4.2.1).
        registry.register(
            _name + _suffix,
            vgg,
            family="vgg",
            default_resolution=224,
            # Trained with scale jittering, S in [256, 512] (arXiv 1409.1556 §3.1).
            train_crop="scale_jitter",
            std=STD,
            fixed_size=True,
            kwargs={"config": _config, "normalization": _normalization},
        )
