"""The evaluation modes: each turns (model, data source, split) into per-example posteriors.

  center       the model's reference eval preprocessing (`preprocess.eval_image`), exactly the
               pipeline of the training run's own evaluation
  multi_crop   ten-crop at the reference resize size, or VGG's 5×5 grid × flips at several
               test scales (arXiv 1409.1556 §3.2)
  dense        the fully-convolutional form on the whole rescaled image, score map averaged,
               flip averaged (arXiv 1409.1556 §3.2); with several scales: multi-scale (§4.2)

Every mode returns (probabilities (N, K), labels (N,)) in the split's order; `metrics.summarize`
turns them into the reported numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from official.data import pipeline, preprocess
from official.data.sources import DataError, Source
from official.evaluation import crops, dense
from official.models import heads
from official.progress import Progress


def probabilities_function(model, image_size: int | None = None) -> Callable:
    """images (N, H, W, 3) 0..255 → softmax of the model's logits, compiled once.

    The softmax runs in float64 (see `dense.softmax`).
    """
    signature = [tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name="images")]

    def probabilities(images):
        return dense.softmax(heads.split_outputs(model(images, training=False))[0])

    return tf.function(probabilities, input_signature=signature)


def num_examples(source: Source, split: str) -> int:
    return int(source.info.num_examples[split])


def encoded_examples(
    source: Source, split: str, indices: list[int] | None = None
) -> tf.data.Dataset:
    """(encoded image bytes, label) of a split in its evaluation order.

    Args:
      source: the data source.
      split: split name.
      indices: only these examples (positions in the evaluation order), e.g. to redraw a few;
        they are picked before anything is read (a folder source reads only their files).
    """
    examples = source.examples(split, shuffle=False, seed=0)
    if indices is not None:
        wanted = tf.constant(sorted(indices), tf.int64)
        examples = (
            examples.enumerate()
            .filter(lambda index, example: tf.reduce_any(tf.equal(index, wanted)))
            .map(lambda index, example: example)
        )
    return source.encoded(examples)


def decoded_examples(source, split: str) -> tf.data.Dataset:
    """(whole decoded uint8 image, label) of a split in its evaluation order."""
    return encoded_examples(source, split).map(
        lambda encoded, label: (preprocess.decode(encoded), label),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def _collect(batches, total: int, description: str, unit: str, predict: Callable):
    probabilities, labels = [], []
    progress = Progress(total, description, unit=unit)
    done = 0
    for inputs, batch_labels in batches:
        probabilities.append(np.asarray(predict(inputs)))
        labels.append(np.asarray(batch_labels))
        done += len(labels[-1])
        progress.update(done)
    progress.close()
    if not labels:
        raise DataError(f"{description}: the split has no examples")
    return np.concatenate(probabilities), np.concatenate(labels).astype(np.int64)


def center(
    probabilities: Callable,
    source: Source,
    split: str,
    *,
    batch_size: int,
    geometry: preprocess.Geometry,
    description: str = "evaluate center",
) -> tuple[np.ndarray, np.ndarray]:
    """The reference single-crop evaluation, through the training run's own eval pipeline.

    Args:
      probabilities: float32 images (N, S, S, 3) on 0..255 → class posteriors (N, K): a Keras
        model's `probabilities_function`, or a TFLite interpreter's.
    """
    dataset = pipeline.build_dataset(source, split=split, batch_size=batch_size, geometry=geometry)
    return _collect(
        ((tf.cast(images, tf.float32), labels) for images, labels in dataset),
        num_examples(source, split),
        description,
        "image",
        probabilities,
    )


def crops_function(kind: str, geometry: preprocess.Geometry, scales: tuple[int, ...]) -> Callable:
    """decoded image → uint8 (n, size, size, 3) test crops.

    Args:
      kind: "ten" (ten-crop at the reference resize size S) or "grid" (VGG's 5×5 grid and
        flips at each of `scales`).
      geometry: image size and interpolation.
      scales: test scales Q of the grid (ignored by "ten").
    """
    size, method = geometry.image_size, geometry.interpolation
    if kind == "ten":
        return lambda image: crops.ten_crop(
            crops.resize_shorter_side(image, geometry.resize_size, method), size
        )
    if kind == "grid":
        return lambda image: tf.concat(
            [
                crops.grid_crops(crops.resize_shorter_side(image, scale, method), size)
                for scale in scales
            ],
            axis=0,
        )
    raise ValueError(f"unknown crops {kind!r}; choose ten or grid")


def crops_per_image(kind: str, scales: tuple[int, ...]) -> int:
    return 10 if kind == "ten" else 2 * crops.VGG_GRID**2 * len(scales)


def multi_crop(
    model,
    source,
    split: str,
    *,
    batch_size: int,
    geometry: preprocess.Geometry,
    kind: str,
    scales: tuple[int, ...] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Posteriors averaged over the test crops of every image (softmax, then mean)."""
    make_crops = crops_function(kind, geometry, scales)
    per_image = crops_per_image(kind, scales)
    size = geometry.image_size
    images_per_batch = max(1, batch_size // per_image)
    dataset = (
        decoded_examples(source, split)
        .map(lambda image, label: (make_crops(image), label), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(images_per_batch)
        .prefetch(tf.data.AUTOTUNE)
    )
    probabilities = probabilities_function(model, size)

    def predict(batch_crops):
        flat = tf.reshape(tf.cast(batch_crops, tf.float32), [-1, size, size, 3])
        posteriors = probabilities(flat)
        return tf.reduce_mean(tf.reshape(posteriors, [-1, per_image, posteriors.shape[-1]]), 1)

    return _collect(
        dataset, num_examples(source, split), f"evaluate {kind} crops", "image", predict
    )


def dense_eval(
    model,
    source,
    split: str,
    *,
    geometry: preprocess.Geometry,
    scales: tuple[int, ...],
    flip: bool = True,
    fully_convolutional: Callable | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Dense evaluation at one or several test scales (one image at a time: sizes differ).

    `fully_convolutional` converts a model without a GAP head (see dense.family_converter).
    """
    score_map = dense.score_map_function(model, fully_convolutional)
    method = geometry.interpolation
    dataset = (
        decoded_examples(source, split)
        .map(
            lambda image, label: (dense.rescaled(image, scales, method), label),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .prefetch(tf.data.AUTOTUNE)
    )

    def predict(scaled_images):
        return dense.dense_probabilities(score_map, scaled_images, flip=flip)[None]

    return _collect(
        ((images, label[None]) for images, label in dataset),
        num_examples(source, split),
        "evaluate dense" if len(scales) == 1 else "evaluate multi-scale",
        "image",
        predict,
    )
