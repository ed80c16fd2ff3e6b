"""Training throughput of our loop next to a peer, in the same run: keras.applications +
`model.fit`, or our loop with BatchNormalization on the fused kernel.

  python tools/benchmark_train.py --model=resnet50 --batch_size=32 --image_size=224
  python tools/benchmark_train.py --peer=fused_batch_norm --precision=mixed_bfloat16

Both train the same architecture on the same in-memory batch of random images with SGD +
momentum in float32: ours is the registry model under `official.training.loop.Trainer` (one
device, several steps per compiled call), the peer is `keras.applications.<Name>(weights=None)`
compiled with the same optimizer and trained by `fit` (Keras' defaults: one step per call, XLA
off on CPU). Rounds alternate (ours, Keras, ours, Keras, ...) and each figure is the median over
rounds of steady-state images/s (the first steps, which trace, are excluded), next to the best
round and to images per CPU-second (steadier when other processes share the machine). Prints
one JSON line per model with the ratios ours / Keras.

--peer=fused_batch_norm compares our loop as it is with our loop under
--config.runtime.fused_batch_norm (official/models/batch_norm.py), the ratios then being
ours / fused. --precision sets the Keras policy both sides build under.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

_MODELS = flags.DEFINE_list("model", ["resnet50"], "Registry names to benchmark.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Global batch size.")
_SIZE = flags.DEFINE_integer("image_size", 224, "Image side.")
_CLASSES = flags.DEFINE_integer("num_classes", 1000, "Classifier outputs.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per round.")
_WARMUP = flags.DEFINE_integer("warmup_steps", 2, "Untimed steps first (tracing).")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds per side.")
_PEER = flags.DEFINE_enum(
    "peer",
    "keras",
    ["keras", "fused_batch_norm"],
    "keras: keras.applications + fit; fused_batch_norm: our loop with fused BN kernels.",
)
_PRECISION = flags.DEFINE_enum(
    "precision", "float32", ["float32", "mixed_bfloat16"], "Keras dtype policy of both sides."
)
_STRATEGY = flags.DEFINE_enum(
    "strategy", "one_device", ["one_device", "mirrored"], "Our loop's distribution strategy."
)

# Registry name → keras.applications constructor of the same architecture.
KERAS_APPLICATIONS = {
    "resnet50": "ResNet50",
    "resnet101": "ResNet101",
    "resnet152": "ResNet152",
    "vgg16": "VGG16",
    "vgg19": "VGG19",
    "inception_v3": "InceptionV3",
    "mobilenet_v1": "MobileNet",
    "mobilenet_v2": "MobileNetV2",
    **{f"efficientnet_b{i}": f"EfficientNetB{i}" for i in range(8)},
}


def _data(batch_size: int, image_size: int, num_classes: int):
    import tensorflow as tf

    images = tf.random.uniform([batch_size, image_size, image_size, 3], 0, 256, tf.int32, seed=1)
    labels = tf.random.uniform([batch_size], 0, num_classes, tf.int32, seed=2)
    return tf.cast(images, tf.uint8), labels


def _ours(name: str, images, labels, strategy, fused_batch_norm: bool = False):
    import tensorflow as tf

    from official.models import batch_norm, registry
    from official.training import loop, optimizers

    def dataset_fn(context):
        batch = context.get_per_replica_batch_size(_BATCH.value)
        return tf.data.Dataset.from_tensors((images[:batch], labels[:batch])).repeat()

    inputs = loop.DistributedInput(strategy, dataset_fn)
    with strategy.scope():
        model = registry.get(name).build(num_classes=_CLASSES.value, image_size=_SIZE.value)
        if fused_batch_norm:
            batch_norm.use_fused_kernel(model)
        optimizer = optimizers.create_optimizer("sgd", momentum=0.9)
        optimizer.build(model.trainable_variables)
        trainer = loop.Trainer(
            strategy=strategy,
            model=model,
            inputs=inputs,
            stages=[loop.Stage(optimizer, lambda step: tf.constant(0.01, tf.float32))],
            global_batch_size=_BATCH.value,
            objective=loop.Objective(num_classes=_CLASSES.value),
        )
    trainer.train_steps(_WARMUP.value)

    def round_() -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        trainer.train_steps(_STEPS.value)
        images = _BATCH.value * _STEPS.value
        return images / (time.perf_counter() - start), images / (time.process_time() - cpu)

    return round_


def _keras(name: str, images, labels):
    import keras
    import tensorflow as tf

    constructor = getattr(keras.applications, KERAS_APPLICATIONS[name])
    model = constructor(
        weights=None,
        input_shape=(_SIZE.value, _SIZE.value, 3),
        classes=_CLASSES.value,
        classifier_activation=None,
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    dataset = tf.data.Dataset.from_tensors((tf.cast(images, tf.float32), labels)).repeat()
    model.fit(dataset, steps_per_epoch=_WARMUP.value, epochs=1, verbose=0, shuffle=False)
    times: list[tuple[float, float]] = []
    timer = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: times.append(
            (time.perf_counter(), time.process_time())
        )
    )

    def round_() -> tuple[float, float]:
        times.clear()
        model.fit(
            dataset,
            steps_per_epoch=_STEPS.value + 1,
            epochs=1,
            verbose=0,
            shuffle=False,
            callbacks=[timer],
        )
        # Steady state: from the first batch's end to the last's (fit's set-up excluded).
        images = _BATCH.value * (len(times) - 1)
        return images / (times[-1][0] - times[0][0]), images / (times[-1][1] - times[0][1])

    return round_


def main(argv):
    del argv
    import keras
    import tensorflow as tf

    from official.training import strategy as strategy_lib

    strategy = (
        tf.distribute.OneDeviceStrategy("/cpu:0")
        if _STRATEGY.value == "one_device" and not tf.config.list_physical_devices("GPU")
        else strategy_lib.create_strategy(_STRATEGY.value)
    )
    keras.mixed_precision.set_global_policy(_PRECISION.value)
    images, labels = _data(_BATCH.value, _SIZE.value, _CLASSES.value)
    peer = _PEER.value
    for name in _MODELS.value:
        if peer == "keras" and name not in KERAS_APPLICATIONS:
            known = ", ".join(sorted(KERAS_APPLICATIONS))
            sys.exit(f"error: no keras.applications peer for {name!r}; known: {known}")
        ours = _ours(name, images, labels, strategy)
        theirs = (
            _keras(name, images, labels)
            if peer == "keras"
            else _ours(name, images, labels, strategy, fused_batch_norm=True)
        )
        rounds = {"ours": [], peer: []}
        for _ in range(_ROUNDS.value):
            rounds["ours"].append(ours())
            rounds[peer].append(theirs())
        result = {
            "model": name,
            "peer": KERAS_APPLICATIONS[name] if peer == "keras" else peer,
            "batch_size": _BATCH.value,
            "image_size": _SIZE.value,
            "precision": _PRECISION.value,
            "strategy": _STRATEGY.value,
            "load_average": os.getloadavg()[0],
        }
        for side, values in rounds.items():
            wall = [v[0] for v in values]
            result[f"{side}_images_per_second"] = statistics.median(wall)
            result[f"{side}_best_images_per_second"] = max(wall)
            # On a shared machine, images per CPU-second tracks the work per image better.
            result[f"{side}_images_per_cpu_second"] = statistics.median(v[1] for v in values)
            result[f"{side}_rounds"] = [round(w, 2) for w in wall]
        for key, kind in [("ratio", ""), ("ratio_best", "best_"), ("ratio_cpu", "")]:
            suffix = "images_per_cpu_second" if key == "ratio_cpu" else "images_per_second"
            result[key] = result[f"ours_{kind}{suffix}"] / result[f"{peer}_{kind}{suffix}"]
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    app.run(main)
