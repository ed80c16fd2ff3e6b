"""LeNet-5 (LeCun, Bottou, Bengio & Haffner, Proc. IEEE 1998, §II.B): the paper's network and
the common modern layout, as one table and one builder, for 32x32 images.

The paper's LeNet-5 ("lenet5_1998", 60,840 parameters): C1 6@5x5 → S2 trainable subsampling
(each map: the sum of 2x2 inputs times a learned coefficient plus a learned bias) → C3 16@5x5
connected to S2's maps by Table I (60 of the 96 map pairs, 1,516 parameters) → S4 (as S2) →
C5 120@5x5 → F6 84 → 10 Euclidean RBF units, y_i = Σ_j (x_j − w_ij)², the output the loss
reads as logits −y. Units squash with 1.7159·tanh(2a/3) (Appendix A). The RBF weights were
hand-drawn ±1 bitmaps "kept fixed (at least initially)"; here they start as random ±1 and are
trained, and counted.

The modern layout ("lenet5", 61,706 parameters): 6@5x5 → 2x2 max pooling → 16@5x5 (all maps
connected) → 2x2 max pooling → FC 120 → FC 84 → FC classes, ReLU.

Both read one grey channel, as the paper's 32x32 digits: the model turns its RGB input into
luma (ITU-R BT.601 weights, no parameters), so it fits the RGB input pipeline and keeps the
paper's parameter count.

Padding (the `padding` switch): no layer pads (valid 5x5 convolutions, 2x2/2 subsampling and
pooling, in the paper and in the common PyTorch and Keras layouts alike), so "tf", "torch" and
None build the same model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
import numpy as np

from official.models import heads, layers, registry

# Pixels scaled to [-1, 1]: near the paper's zero-mean, unit-variance input (§II.A).
MEAN = (127.5, 127.5, 127.5)
STD = (127.5, 127.5, 127.5)
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601
# Table I of the paper: the S2 maps each C3 map is connected to.
C3_TABLE = (
    (0, 1, 2),
    (1, 2, 3),
    (2, 3, 4),
    (3, 4, 5),
    (4, 5, 0),
    (5, 0, 1),
    (0, 1, 2, 3),
    (1, 2, 3, 4),
    (2, 3, 4, 5),
    (3, 4, 5, 0),
    (4, 5, 0, 1),
    (5, 0, 1, 2),
    (0, 1, 3, 4),
    (1, 2, 4, 5),
    (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


@dataclasses.dataclass(frozen=True)
class LeNetConfig:
    paper: bool  # the 1998 layers (sparse C3, trainable subsampling, C5, RBF output)
    activation: str  # the configuration's default activation


CONFIGS = {
    "1998": LeNetConfig(paper=True, activation="lecun_tanh"),
    "modern": LeNetConfig(paper=False, activation="relu"),
}


class Grayscale(keras.layers.Layer):
    """RGB → one luma channel (ITU-R BT.601), without parameters."""

    def call(self, inputs):
        weights = keras.ops.convert_to_tensor(LUMA, dtype=inputs.dtype)
        return keras.ops.sum(inputs * weights, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 1)


class TrainableSubsampling(keras.layers.Layer):
    """LeNet-5's S2/S4: per map, (sum of a 2x2 window) · coefficient + bias (§II.B)."""

    def build(self, input_shape):
        channels = input_shape[-1]
        self.coefficient = self.add_weight(shape=(channels,), initializer="ones", name="coef")
        self.bias = self.add_weight(shape=(channels,), initializer="zeros", name="bias")

    def call(self, inputs):
        sums = 4.0 * keras.ops.average_pool(inputs, 2, strides=2, padding="valid")
        return sums * self.coefficient + self.bias

    def compute_output_shape(self, input_shape):
        height, width = (None if d is None else d // 2 for d in input_shape[1:3])
        return (input_shape[0], height, width, input_shape[3])


class SparseConv2D(keras.layers.Layer):
    """A valid convolution whose output maps see only some input maps (LeNet-5's C3, Table I).

    Only the connected kernel slices are parameters (`connections`: for each output map, the
    input maps it reads), packed in one variable and spread into a full kernel by a constant
    0/1 tensor at each call.
    """

    def __init__(
        self, connections, kernel_size: int, kernel_initializer="glorot_uniform", **kwargs
    ):
        super().__init__(**kwargs)
        self.connections = tuple(tuple(int(c) for c in inputs) for inputs in connections)
        self.kernel_size = kernel_size
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        channels, filters = input_shape[-1], len(self.connections)
        pairs = [(c, j) for j, inputs in enumerate(self.connections) for c in inputs]
        spread = np.zeros((len(pairs), channels, filters), np.float32)
        for k, (c, j) in enumerate(pairs):
            spread[k, c, j] = 1.0
        self.spread = spread
        size = self.kernel_size
        self.kernel = self.add_weight(
            shape=(size, size, len(pairs)), initializer=self.kernel_initializer, name="kernel"
        )
        self.bias = self.add_weight(shape=(filters,), initializer="zeros", name="bias")

    def call(self, inputs):
        spread = keras.ops.convert_to_tensor(self.spread, dtype=self.kernel.dtype)
        kernel = keras.ops.einsum("hwk,kcj->hwcj", self.kernel, spread)
        kernel = keras.ops.cast(kernel, inputs.dtype)
        outputs = keras.ops.conv(inputs, kernel, strides=1, padding="valid")
        return outputs + keras.ops.cast(self.bias, inputs.dtype)

    def multiply_adds(self, output_shape) -> int:
        """Per image: one per connected kernel weight per output position (flops.py)."""
        height, width, _ = output_shape
        return height * width * int(np.prod(self.kernel.shape))

    def compute_output_shape(self, input_shape):
        height, width = (None if d is None else d - self.kernel_size + 1 for d in input_shape[1:3])
        return (input_shape[0], height, width, len(self.connections))

    def get_config(self):
        return {
            **super().get_config(),
            "connections": self.connections,
            "kernel_size": self.kernel_size,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }


def _random_signs(shape, dtype=None):
    """±1 with equal odds: the paper's RBF centres were ±1 bitmaps."""
    return keras.ops.sign(keras.random.uniform(shape, -1.0, 1.0, dtype=dtype or "float32"))


class EuclideanRBF(keras.layers.Layer):
    """LeNet-5's output: y_i = Σ_j (x_j − w_ij)² per class; returns −y, the logits."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.centres = self.add_weight(
            shape=(input_shape[-1], self.units),
            initializer=_random_signs,
            name="centres",
        )

    def call(self, inputs):
        centres = keras.ops.cast(self.centres, inputs.dtype)
        distances = keras.ops.sum(
            keras.ops.square(inputs[:, :, None] - centres[None, :, :]), axis=1
        )
        return -distances

    def multiply_adds(self, output_shape) -> int:
        """Per image: one (subtract, square, add) per centre weight."""
        return int(np.prod(self.centres.shape))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def lenet5(
    *,
    config: str,
    name: str = "lenet5",
    num_classes: int = 10,
    image_size: int | None = None,
    include_top: bool = True,
    pooling: str | None = None,
    dropout: float = 0.0,
    classifier_activation: str | None = None,
    features_only: bool = False,
    width_multiplier: float = 1.0,
    activation: str | None = None,
    normalization: str | None = None,
    kernel_initializer: str = "glorot_uniform",
    padding: str | None = None,
    norm_epsilon: float | None = None,
    mean: Sequence[float] | None = MEAN,
    std: Sequence[float] | None = STD,
) -> keras.Model:
    """Builds a LeNet-5.

    Args:
      config: "1998" (the paper) or "modern".
      name: model name.
      num_classes: classifier outputs (10 digits).
      image_size: square input size (>= 32); with the top it defaults to 32, and the first
        fully-connected layer's weights depend on it. Without the top, None accepts any size.
      include_top: add the fully-connected layers and the output.
      pooling: without the top, global "avg" or "max" pooling of the last feature map.
      dropout: dropout before the output layer (none in the paper).
      classifier_activation: None for logits, "softmax" for probabilities.
      features_only: return the maps at strides 1, 2 and 4 (C1, S2, S4 / conv1, pool1, pool2).
      width_multiplier: scales the 120- and 84-unit layers (C1 and C3 keep 6 and 16 maps, for
        which Table I is defined); not in the paper.
      activation: activation switch, see layers.ACTIVATIONS (None: the configuration's,
        lecun_tanh for 1998, relu for modern).
      normalization: None (the paper) or a normalization switch after each convolution.
      kernel_initializer: see layers.KERNEL_INITIALIZERS.
      padding: None, "tf" or "torch": the same model (no layer pads).
      norm_epsilon: epsilon of the normalization layers when `normalization` is given (None:
        BN_EPSILON, 1e-5).
      mean: input mean on the 0..255 scale, or None for no input normalization.
      std: input standard deviation on the 0..255 scale.

    Returns:
      A keras.Model.
    """
    layers.check_choice(config, tuple(CONFIGS), "LeNet-5 configuration")
    layers.padding_rule(padding, "valid")  # checks the value; nothing pads
    epsilon = layers.normalization_epsilon(norm_epsilon, BN_EPSILON)
    if include_top and pooling is not None:
        raise ValueError("LeNet-5's top flattens the last map: pooling only applies without it")
    table = CONFIGS[config]
    activation = activation or table.activation
    if include_top and image_size is None:
        image_size = 32
    initializer = layers.kernel_initializer(kernel_initializer)

    def width(units: int) -> int:
        return max(4, int(round(units * width_multiplier)))

    def normalize_and_squash(x, name):
        if normalization is not None:
            x = layers.normalization_layer(
                normalization,
                name + "_bn",
                channels=x.shape[-1],
                momentum=BN_MOMENTUM,
                epsilon=epsilon,
            )(x)
        return layers.activation_layer(activation, name + "_act")(x)

    def conv(x, filters, name):
        x = keras.layers.Conv2D(
            filters, 5, use_bias=normalization is None, kernel_initializer=initializer, name=name
        )(x)
        return normalize_and_squash(x, name)

    inputs, x = layers.input_block(image_size, mean, std)
    x = Grayscale(name="grayscale")(x)
    features = [conv(x, 6, "c1")]
    if table.paper:
        x = normalize_and_squash(TrainableSubsampling(name="s2")(features[0]), "s2")
        features.append(x)
        x = SparseConv2D(C3_TABLE, 5, kernel_initializer=initializer, name="c3")(x)
        x = normalize_and_squash(x, "c3")
        x = normalize_and_squash(TrainableSubsampling(name="s4")(x), "s4")
    else:
        x = keras.layers.MaxPooling2D(2, name="pool1")(features[0])
        features.append(x)
        x = keras.layers.MaxPooling2D(2, name="pool2")(conv(x, 16, "c3"))
    features.append(x)
    if features_only:
        return keras.Model(inputs, features, name=name)
    if table.paper:
        x = conv(x, width(120), "c5")
    if not include_top:
        return keras.Model(inputs, heads.pool(x, pooling), name=name)
    x = keras.layers.Flatten(name="flatten")(x)
    if not table.paper:
        x = keras.layers.Dense(width(120), kernel_initializer=initializer, name="f5")(x)
        x = layers.activation_layer(activation, "f5_act", spatial=False)(x)
    x = keras.layers.Dense(width(84), kernel_initializer=initializer, name="f6")(x)
    x = layers.activation_layer(activation, "f6_act", spatial=False)(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="predictions_dropout")(x)
    if table.paper:
        x = EuclideanRBF(num_classes, name="predictions")(x)
    else:
        x = keras.layers.Dense(num_classes, kernel_initializer=initializer, name="predictions")(x)
    return keras.Model(inputs, heads.output(x, classifier_activation), name=name)


for _name, _config in (("lenet5", "modern"), ("lenet5_1998", "1998")):
    registry.register(
        _name,
        lenet5,
        family="lenet",
        default_resolution=32,
        crop_fraction=1.0,
        train_crop="resize",  # digits: no random crop (the paper trains on whole 32x32 images)
        mean=MEAN,
        std=STD,
        fixed_size=True,
        kwargs={"config": _config},
    )
