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

import dataclasses
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from official.data import pipeline, preprocess
from official.evaluation import crops, dense
from official.progress import Progress


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """A run's evaluation preprocessing (config.data after resolve())."""

    image_size: int
    crop_fraction: float
    interpolation: str

    @property
    def resize_size(self) -> int:
        """Shorter side before the center crop (256 for 224 at 0.875): the reference test
        scale S."""
        return int(round(self.image_size / self.crop_fraction))


def probabilities_function(model, image_size: int | None = None) -> Callable:
    """images (N, H, W, 3) 0..255 → softmax of the model's logits, compiled once.

    The softmax runs in float64 (see `dense.softmax`).
    """
    signature = [tf.TensorSpec([None, image_size, image_size, 3], tf.float32, name="images")]

    def probabilities(images):
        return dense.softmax(dense.logits_of(model(images, training=False)))

    return tf.function(probabilities, input_signature=signature)


def num_examples(source, split: str) -> int:
    return int(source.info.num_examples[split])


def example_names(source, split: str) -> list[str] | None:
    """File paths of a split in evaluation order, when the source has files."""
    if isinstance(source, pipeline.FolderSource):
        return list(source.splits[split].paths)
    return None


def encoded_examples(source, split: str, indices: list[int] | None = None) -> tf.data.Dataset:
    """(encoded image bytes, label) of a split in its evaluation order.

    Args:
      source: a FolderSource, TFRecordSource or TfdsSource.
      split: split name.
      indices: only these examples (positions in the evaluation order), e.g. to redraw a few;
        a folder source then reads only their files.

    Raises:
      DataError: the source has no encoded images (the synthetic source).
    """
    if isinstance(source, pipeline.FolderSource | pipeline.TFRecordSource | pipeline.TfdsSource):
        # Folders give (path, label): select before reading files.
        examples = source.examples(split, shuffle=False, seed=0)
    else:
        raise pipeline.DataError(
            f"{type(source).__name__}: this evaluation needs encoded images "
            "(--source=folder:PATH or tfrecord:DIR), not a synthetic source"
        )
    if indices is not None:
        wanted = tf.constant(sorted(indices), tf.int64)
        examples = (
            examples.enumerate()
            .filter(lambda index, example: tf.reduce_any(tf.equal(index, wanted)))
            .map(lambda index, example: example)
        )
    if isinstance(source, pipeline.FolderSource):
        examples = examples.map(source.read, num_parallel_calls=tf.data.AUTOTUNE)
    return examples


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
        raise pipeline.DataError(f"{description}: the split has no examples")
    return np.concatenate(probabilities), np.concatenate(labels).astype(np.int64)


def center(
    model, source, split: str, *, batch_size: int, preprocessing: Preprocessing
) -> tuple[np.ndarray, np.ndarray]:
    """The reference single-crop evaluation, through the training run's own eval pipeline."""
    dataset = pipeline.build_dataset(
        source,
        split=split,
        is_training=False,
        batch_size=batch_size,
        image_size=preprocessing.image_size,
        crop_fraction=preprocessing.crop_fraction,
        interpolation=preprocessing.interpolation,
    )
    predict = probabilities_function(model, preprocessing.image_size)
    return _collect(
        ((tf.cast(images, tf.float32), labels) for images, labels in dataset),
        num_examples(source, split),
        "evaluate center",
        "image",
        predict,
    )


def crops_function(kind: str, preprocessing: Preprocessing, scales: tuple[int, ...]) -> Callable:
    """decoded image → uint8 (n, size, size, 3) test crops.

    Args:
      kind: "ten" (ten-crop at the reference resize size S) or "grid" (VGG's 5×5 grid and
        flips at each of `scales`).
      preprocessing: image size and interpolation.
      scales: test scales Q of the grid (ignored by "ten").
    """
    size, method = preprocessing.image_size, preprocessing.interpolation
    if kind == "ten":
        return lambda image: crops.ten_crop(
            crops.resize_shorter_side(image, preprocessing.resize_size, method), size
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
    preprocessing: Preprocessing,
    kind: str,
    scales: tuple[int, ...] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Posteriors averaged over the test crops of every image (softmax, then mean)."""
    make_crops = crops_function(kind, preprocessing, scales)
    per_image = crops_per_image(kind, scales)
    size = preprocessing.image_size
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
    preprocessing: Preprocessing,
    scales: tuple[int, ...],
    flip: bool = True,
    fully_convolutional: Callable | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Dense evaluation at one or several test scales (one image at a time: sizes differ).

    `fully_convolutional` converts a model without a GAP head (see dense.family_converter).
    """
    score_map = dense.score_map_function(model, fully_convolutional)
    method = preprocessing.interpolation
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
