"""`build_dataset`: every data source → a batched tf.data.Dataset of (uint8 images, labels).

Sources are named by `--config.data.source`:
  folder:PATH       class-per-folder images, PATH/train/<class>/* and PATH/validation/<class>/*
  tfrecord:DIR      shards written by tools/imagenet_to_tfrecord.py (DIR/labels.json beside them);
  tfrecord:PATTERN  some of those shards, PATTERN containing {split}, e.g. DIR/{split}-0000*
  synthetic         random images (benchmarks and smoke tests)
"""

from __future__ import annotations

import dataclasses
import json
import os

import tensorflow as tf
from absl import logging

from official.data import imagefile, preprocess, tfrecord

TRAIN = "train"
VALIDATION = "validation"
_VALIDATION_DIR_NAMES = ("validation", "val")


class DataError(ValueError):
    """A data source that cannot be read; the message names the path or value at fault."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the rest of the system needs to know about a source."""

    num_classes: int
    class_names: tuple[str, ...]
    num_examples: dict  # split name → number of examples


@dataclasses.dataclass(frozen=True)
class FolderSplit:
    paths: tuple[str, ...]
    labels: tuple[int, ...]


class FolderSource:
    """Images in PATH/<split>/<class>/<file>; labels are indices of the sorted class names.

    Files are listed once and checked by content (first and last bytes only): empty,
    non-image and truncated files are skipped and reported by name.
    """

    def __init__(self, root: str):
        if not os.path.isdir(root):
            raise DataError(f"--config.data.source=folder:{root}: no such directory")
        self.root = root
        split_dirs = {TRAIN: os.path.join(root, TRAIN)}
        for name in _VALIDATION_DIR_NAMES:
            if os.path.isdir(os.path.join(root, name)):
                split_dirs[VALIDATION] = os.path.join(root, name)
                break
        if not os.path.isdir(split_dirs[TRAIN]) or VALIDATION not in split_dirs:
            raise DataError(
                f"--config.data.source=folder:{root}: expected {root}/train/<class>/ and "
                f"{root}/validation/<class>/ folders of images"
            )
        class_names = sorted(
            d
            for d in os.listdir(split_dirs[TRAIN])
            if os.path.isdir(os.path.join(split_dirs[TRAIN], d))
        )
        if not class_names:
            raise DataError(f"folder:{root}: {split_dirs[TRAIN]} has no class folders")
        self.class_names = tuple(class_names)
        self.skipped: list[tuple[str, str]] = []
        self.splits = {name: self._list(name, path) for name, path in split_dirs.items()}
        if self.skipped:
            shown = "\n".join(f"  {path}: {reason}" for path, reason in self.skipped[:20])
            more = f"\n  ... and {len(self.skipped) - 20} more" if len(self.skipped) > 20 else ""
            logging.warning("skipped %d unreadable files:\n%s%s", len(self.skipped), shown, more)

    def _list(self, split: str, split_dir: str) -> FolderSplit:
        index = {name: i for i, name in enumerate(self.class_names)}
        paths, labels = [], []
        for class_name in sorted(os.listdir(split_dir)):
            class_dir = os.path.join(split_dir, class_name)
            if not os.path.isdir(class_dir):
                continue
            if class_name not in index:
                raise DataError(
                    f"folder:{self.root}: class {class_name!r} in {split_dir} has no "
                    f"folder in {os.path.join(self.root, TRAIN)}"
                )
            for file_name in sorted(os.listdir(class_dir)):
                path = os.path.join(class_dir, file_name)
                if not os.path.isfile(path):
                    continue
                fmt, problem = imagefile.check_file(path)
                if problem is None and fmt not in imagefile.DECODABLE_FORMATS:
                    problem = f"{fmt} images are not supported"
                if problem is not None:
                    self.skipped.append((path, problem))
                    continue
                paths.append(path)
                labels.append(index[class_name])
        if not paths:
            raise DataError(f"folder:{self.root}: no readable images in {split_dir}")
        return FolderSplit(tuple(paths), tuple(labels))

    @property
    def info(self) -> DatasetInfo:
        return DatasetInfo(
            num_classes=len(self.class_names),
            class_names=self.class_names,
            num_examples={name: len(split.paths) for name, split in self.splits.items()},
        )

    def encoded(self, split: str) -> tf.data.Dataset:
        """(file path, label) pairs in sorted order; `read` turns a path into bytes."""
        data = self.splits[split]
        return tf.data.Dataset.from_tensor_slices(
            (tf.constant(data.paths), tf.constant(data.labels, dtype=tf.int32))
        )

    @staticmethod
    def read(path: tf.Tensor, label: tf.Tensor):
        return tf.io.read_file(path), label


class TFRecordSource:
    """Sharded TFRecords in the format of official/data/tfrecord.py, as the converter writes them.

    The class list and the converter's label offset come from labels.json beside the shards,
    the record counts from its manifest.json; labels come out 0-based whatever the offset.
    Paths go through tf.io.gfile, so DIR may be a gs:// bucket too.
    """

    def __init__(self, location: str):
        self.location = location
        if "{split}" in location:
            directory = os.path.dirname(location)
        elif tf.io.gfile.isdir(location):
            directory = location
        else:
            raise DataError(
                f"--config.data.source=tfrecord:{location}: not a directory, and not a pattern "
                "with {split} in it (e.g. DIR/{split}-*)"
            )
        labels_path = os.path.join(directory, tfrecord.LABELS_FILE)
        if not tf.io.gfile.exists(labels_path):
            raise DataError(
                f"tfrecord:{location}: no {labels_path}; point at a directory written by "
                "tools/imagenet_to_tfrecord.py (rerun it if it was interrupted)"
            )
        with tf.io.gfile.GFile(labels_path) as f:
            labels = json.load(f)
        self.label_offset = int(labels["label_offset"])
        self.class_names = tuple(c["synset"] for c in labels["classes"])
        manifest_path = os.path.join(directory, tfrecord.MANIFEST_FILE)
        shards = {}
        if tf.io.gfile.exists(manifest_path):
            with tf.io.gfile.GFile(manifest_path) as f:
                shards = json.load(f).get("shards", {})
        self.files, self.counts = {}, {}
        for split in (TRAIN, VALIDATION):
            if "{split}" in location:
                pattern = location.replace("{split}", split)
            else:  # Exactly the converter's shards of this split, e.g. train-*-of-01024.
                pattern = os.path.join(directory, labels["splits"][split]["pattern"])
            files = sorted(tf.io.gfile.glob(pattern))
            if not files:
                raise DataError(f"tfrecord:{location}: no {split} shards match {pattern}")
            self.files[split] = tuple(files)
            self.counts[split] = sum(
                shards[os.path.basename(f)]["records"]
                if os.path.basename(f) in shards
                else int(tf.data.TFRecordDataset(f).reduce(0, lambda n, _: n + 1))
                for f in files
            )

    @property
    def info(self) -> DatasetInfo:
        return DatasetInfo(
            num_classes=len(self.class_names),
            class_names=self.class_names,
            num_examples=dict(self.counts),
        )

    def examples(
        self,
        split: str,
        *,
        is_training: bool,
        shuffle_buffer: int,
        cache: bool,
        seed: int,
        input_context: tf.distribute.InputContext | None,
    ) -> tf.data.Dataset:
        """(encoded image, 0-based label) pairs: sharded by file across input pipelines, read
        with parallel interleave, shuffled in a bounded buffer and repeated when training."""
        files = self.files[split]
        ds = tf.data.Dataset.from_tensor_slices(list(files))
        if input_context is not None and input_context.num_input_pipelines > 1:
            if len(files) < input_context.num_input_pipelines:
                raise DataError(
                    f"tfrecord:{self.location}: {len(files)} {split} shards cannot feed "
                    f"{input_context.num_input_pipelines} input pipelines; convert with more "
                    "shards"
                )
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        if is_training and not cache:
            ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        ds = ds.interleave(
            lambda path: tf.data.TFRecordDataset(path, buffer_size=8 << 20),
            cycle_length=min(16, len(files)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=not is_training,
        )
        offset = self.label_offset
        ds = ds.map(
            lambda serialized: tfrecord.parse(serialized, offset),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=not is_training,
        )
        if cache:
            ds = ds.cache()
        if is_training:
            buffer = min(shuffle_buffer, self.counts[split])
            ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).repeat()
        return ds


class SyntheticSource:
    """Random uint8 images with labels cycling through the classes."""

    def __init__(self, num_classes: int, num_examples: int, image_size: int):
        self.num_classes = num_classes
        self.num_examples = num_examples
        self.image_size = image_size

    @property
    def info(self) -> DatasetInfo:
        return DatasetInfo(
            num_classes=self.num_classes,
            class_names=tuple(str(i) for i in range(self.num_classes)),
            num_examples={TRAIN: self.num_examples, VALIDATION: self.num_examples},
        )

    def images(self, seed: int) -> tf.data.Dataset:
        size, num_classes = self.image_size, self.num_classes

        def make(index):
            image = tf.random.stateless_uniform(
                [size, size, 3], seed=[seed, index], minval=0, maxval=256, dtype=tf.int32
            )
            return tf.cast(image, tf.uint8), tf.cast(index % num_classes, tf.int32)

        return tf.data.Dataset.range(self.num_examples).map(
            make, num_parallel_calls=tf.data.AUTOTUNE
        )


def open_source(
    source: str, *, num_classes: int = 1000, synthetic_examples: int = 1024, image_size: int = 224
):
    """Parses a `--config.data.source` value into a source object.

    Args:
      source: "folder:PATH", "tfrecord:DIR", "tfrecord:PATTERN" (with {split}) or "synthetic".
      num_classes: classes of the synthetic source.
      synthetic_examples: examples per epoch of the synthetic source.
      image_size: side of the synthetic images.

    Returns:
      A FolderSource, TFRecordSource or SyntheticSource.
    """
    kind, _, argument = source.partition(":")
    if kind == "folder" and argument:
        return FolderSource(os.path.expanduser(argument))
    if kind == "tfrecord" and argument:
        return TFRecordSource(argument if "://" in argument else os.path.expanduser(argument))
    if kind == "synthetic" and not argument:
        return SyntheticSource(num_classes or 1000, synthetic_examples, image_size)
    raise DataError(
        f"--config.data.source={source!r}: expected folder:PATH, tfrecord:DIR or synthetic"
    )


def build_dataset(
    source,
    *,
    split: str,
    is_training: bool,
    batch_size: int,
    image_size: int,
    train_crop: str = "inception",
    random_flip: bool = True,
    crop_fraction: float = 0.875,
    interpolation: str = "bilinear",
    shuffle_buffer: int = 10_000,
    cache: bool = False,
    seed: int = 0,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Builds the input pipeline of one split.

    Training pipelines shuffle, repeat forever and drop the last partial batch; evaluation
    pipelines see every example exactly once, in order.

    Args:
      source: an object from `open_source`.
      split: "train" or "validation".
      is_training: augment, shuffle and repeat.
      batch_size: batch size of this input pipeline (per replica group, see input_context).
      image_size: output side.
      train_crop: "inception" or "resize" (see preprocess.train_image).
      random_flip: random horizontal flips in training.
      crop_fraction: eval center-crop fraction.
      interpolation: resize method.
      shuffle_buffer: examples in the shuffle buffer (training).
      cache: keep the encoded examples in memory after the first epoch.
      seed: seed of shuffling and augmentation.
      input_context: when set, this pipeline reads only its shard of the examples.

    Returns:
      A dataset of (uint8 images (B, size, size, 3), int32 labels (B,)).
    """
    if isinstance(source, SyntheticSource):
        ds = source.images(seed if split == TRAIN else seed + 1)
        if input_context is not None:
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        ds = ds.cache()
        if is_training:
            ds = ds.repeat()
        return ds.batch(batch_size, drop_remainder=is_training).prefetch(tf.data.AUTOTUNE)

    if isinstance(source, TFRecordSource):
        ds = source.examples(
            split,
            is_training=is_training,
            shuffle_buffer=shuffle_buffer,
            cache=cache,
            seed=seed,
            input_context=input_context,
        )
    else:
        ds = source.encoded(split)
        if input_context is not None:
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        if cache:
            ds = ds.map(source.read, num_parallel_calls=tf.data.AUTOTUNE).cache()
        if is_training:
            num_examples = source.info.num_examples[split]
            ds = ds.shuffle(
                min(shuffle_buffer, num_examples) if cache else num_examples,
                seed=seed,
                reshuffle_each_iteration=True,
            )
            ds = ds.repeat()
        if not cache:
            ds = ds.map(
                source.read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not is_training
            )

    if is_training:
        # One stateless seed per example: augmentation is reproducible given the seed.
        seeds = tf.data.Dataset.random(seed=seed).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds))

        def prepare(example, example_seed):
            encoded, label = example
            image = preprocess.train_image(
                encoded,
                example_seed,
                image_size=image_size,
                crop=train_crop,
                random_flip=random_flip,
                interpolation=interpolation,
            )
            return image, label
    else:

        def prepare(encoded, label):
            image = preprocess.eval_image(
                encoded,
                image_size=image_size,
                crop_fraction=crop_fraction,
                interpolation=interpolation,
            )
            return image, label

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not is_training)
    ds = ds.batch(batch_size, drop_remainder=is_training)
    options = tf.data.Options()
    options.experimental_optimization.map_parallelization = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
