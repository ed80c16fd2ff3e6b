"""A tiny registered model for training-engine tests, fast to trace.

Importing this module registers `tiny_cnn` (two conv-BN-ReLU blocks and the shared classifier
head, optionally an auxiliary head) and `tiny_xnor_cnn` (its second block an XNOR-Net binary
convolution, official/models/binary.py). Run as a script, it is `python -m official.train` with that
model available: `python tests/tiny.py --model_dir=... --config.model.name=tiny_cnn`.
"""

import functools
import os
import sys

import keras

from official.models import binary as binary_lib
from official.models import heads, layers, registry

NAME = "tiny_cnn"
BINARY_NAME = "tiny_xnor_cnn"


def tiny_cnn(
    *,
    name: str = NAME,
    num_classes: int = 10,
    image_size: int | None = 32,
    include_top: bool = True,
    pooling: str | None = "avg",
    dropout: float = 0.0,
    width_multiplier: float = 1.0,
    zero_gamma: bool = False,
    normalization: str = "batch",
    activation: str = "relu",
    aux_head: bool = False,
    binary: str | None = None,
    mean=registry.IMAGENET_MEAN,
    std=registry.IMAGENET_STD,
):
    """conv 3x3/2 → BN → ReLU → conv 3x3/2 → BN (zero_gamma) → ReLU → head [+ aux head];
    `binary` makes the second block a binary one (binary.conv_norm_act)."""
    width = max(4, int(8 * width_multiplier))
    inputs, x = layers.input_block(image_size, mean, std)
    common = dict(
        normalization=normalization, activation=activation, kernel_initializer="he_normal"
    )
    x = layers.conv_norm_act(x, width, 3, strides=2, name="block1", **common)
    features = x
    conv = functools.partial(binary_lib.conv_norm_act, binary=binary) if binary else None
    x = (conv or layers.conv_norm_act)(
        x, 2 * width, 3, strides=2, zero_init=zero_gamma, name="block2", **common
    )
    logits = heads.classifier_head(
        x, num_classes=num_classes, include_top=include_top, pooling=pooling, dropout=dropout
    )
    if not aux_head:
        return keras.Model(inputs, logits, name=name)
    aux = keras.layers.GlobalAveragePooling2D(name="aux_pool")(features)
    aux = keras.layers.Dense(num_classes, name="aux_predictions")(aux)
    aux = keras.layers.Activation("linear", dtype="float32", name="aux_logits")(aux)
    return keras.Model(inputs, {"logits": logits, "aux_logits": aux}, name=name)


if NAME not in registry.names():
    registry.register(NAME, tiny_cnn, family="tiny", default_resolution=32, min_resolution=8)
    registry.register(
        BINARY_NAME,
        tiny_cnn,
        family="tiny",
        default_resolution=32,
        min_resolution=8,
        kwargs={"binary": "xnor"},
    )


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.argv[0] = "official.train"
    from official import train

    train.run()


def dense_model(num_classes: int = 3, image_size: int = 4, name: str = "dense"):
    """No BN, no randomness: a kernel → ReLU → classifier, for exact comparisons."""
    inputs, x = layers.input_block(image_size, (127.5,) * 3, (127.5,) * 3)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(6, activation="relu", name="hidden")(x)
    x = keras.layers.Dense(num_classes, name="predictions")(x)
    return keras.Model(inputs, x, name=name)


def batches(num_examples: int = 32, image_size: int = 4, num_classes: int = 3, seed: int = 0):
    """Fixed random uint8 images and int labels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (num_examples, image_size, image_size, 3), dtype=np.uint8)
    labels = rng.integers(0, num_classes, (num_examples,), dtype=np.int32)
    return images, labels


def make_trainer(
    strategy,
    build,
    images,
    labels,
    *,
    batch_size,
    optimizer="sgd",
    rate=0.1,
    initial_weights=None,
    optimizer_kwargs=None,
    objective=None,
    **trainer_kwargs,
):
    """A loop.Trainer over `images`/`labels` (repeated, in order) for `build()`'s model;
    `objective` defaults to plain cross-entropy over the model's classes."""
    import tensorflow as tf

    from official.training import loop, optimizers

    def dataset_fn(context):
        return (
            tf.data.Dataset.from_tensor_slices((images, labels))
            .repeat()
            .batch(context.get_per_replica_batch_size(batch_size))
        )

    inputs = loop.DistributedInput(strategy, dataset_fn)
    with strategy.scope():
        model = build()
        if initial_weights is not None:
            model.set_weights(initial_weights)
        opt = optimizers.create_optimizer(optimizer, **(optimizer_kwargs or {}))
        opt.build(model.trainable_variables)
        learning_rate = rate if callable(rate) else (lambda step: tf.constant(rate, tf.float32))
        stage = loop.Stage(opt, learning_rate, optimizers.DECAY_RULES[optimizer])
        num_classes = int(heads.split_outputs(model.output)[0].shape[-1])
        trainer = loop.Trainer(
            strategy=strategy,
            model=model,
            inputs=inputs,
            stages=[stage],
            global_batch_size=batch_size,
            objective=objective or loop.Objective(num_classes=num_classes),
            **trainer_kwargs,
        )
    return trainer
