"""Data sources: where the examples of a split come from, behind one `Source` interface.

`--config.data.source` names one:
  folder:PATH       class-per-folder images, PATH/train/<class>/* and PATH/validation/<class>/*
  tfrecord:DIR      shards written by tools/imagenet_to_tfrecord.py (DIR/labels.json beside them);
  tfrecord:PATTERN  some of those shards, PATTERN containing {split}, e.g. DIR/{split}-0000*
  tfds:NAME         a TensorFlow Datasets image-classification dataset (optional extra
                    `pip install "cnn-repro[tfds]"`), e.g. tfds:imagenet2012 from its manual dir
  synthetic         random JPEG images (smoke tests and benchmarks without data)

A source lists a split, gives each input pipeline its own shard, and hands out (key, label)
pairs whose keys `encoded` turns into image bytes; what it knows without reading the data
(classes, counts) is its `info`. Everything after that — caching, re-sampling, shuffling,
decoding, augmenting, batching — is the same for every source (official/data/pipeline.py).
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import json
import os
import re
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from official.data import example_reader, imagefile, tfrecord
from official.data.catalog import TRAIN, VALIDATION
from official.errors import UserError, tensorflow_words

_VALIDATION_DIR_NAMES = ("validation", "val")
TFDS_INSTALL_HINT = 'pip install "cnn-repro[tfds]"'
_BROKEN_LINK = "symbolic link to nothing, or a loop"
# TFRecordDataset's read buffer for remote files (gs://...): few large reads. Local files
# are read unbuffered, straight into each record: the buffer's extra copy cost 35 µs of CPU
# per 79 KB record out of the reading's 125 (the pipeline's whole cost: ~1.5 ms per image).
_REMOTE_READ_BUFFER = 8 << 20


def _record_read_buffer(path: str) -> int:
    """The `buffer_size` of a tf.data.TFRecordDataset reading `path` (and files beside it)."""
    return _REMOTE_READ_BUFFER if "://" in path else 0


class DataError(UserError, ValueError):
    """A data source that cannot be read; the message names the path or value at fault."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What the rest of the system needs to know about a source.

    Attributes:
      num_classes: number of classes.
      class_names: one name per label.
      num_examples: split name → number of examples.
      name: the dataset's catalog name ("imagenet2012") when the source knows it, else "".
      class_counts: split name → examples per class, when known without reading the data.
    """

    num_classes: int
    class_names: tuple[str, ...]
    num_examples: dict
    name: str = ""
    class_counts: dict = dataclasses.field(default_factory=dict)


class Source(abc.ABC):
    """The interface every data source implements.

    Attributes:
      skipped: (where, why) of every example the source left out: files at listing, records
        while reading (reported at the end of training).
    """

    skipped: list[tuple[str, str]]

    def __init__(self):
        self.skipped = []

    @property
    @abc.abstractmethod
    def info(self) -> DatasetInfo:
        """Classes and counts, known without reading the examples."""

    @abc.abstractmethod
    def examples(
        self,
        split: str,
        *,
        shuffle: bool,
        seed: int,
        input_context: tf.distribute.InputContext | None = None,
        deterministic: bool = True,
        portable: bool = False,
    ) -> tf.data.Dataset:
        """One epoch of this input pipeline's shard of `split`, as (key, int32 label) pairs.

        Args:
          split: TRAIN or VALIDATION.
          shuffle: a fresh random order every epoch (training); else the split's fixed order.
          seed: seed of that order.
          input_context: this pipeline's place among all input pipelines; the shards of all
            pipelines are disjoint and cover the split.
          deterministic: keep a parallel reader's order reproducible.
          portable: the pipeline runs in other processes (tf.data service workers), which
            receive it as a graph: no Python function of this process may run in it.
        """

    def encoded(self, examples: tf.data.Dataset, *, deterministic: bool = True) -> tf.data.Dataset:
        """(key, label) pairs of `examples` → (encoded image bytes, label).

        Kept apart from `examples` so that caching, re-sampling and shuffling can act on cheap
        keys; the keys of most sources are the image bytes already.
        """
        del deterministic
        return examples

    def example_names(self, split: str) -> list[str] | None:
        """The file of every example of `split` in evaluation order, when the source has files."""
        del split
        return None

    def explain(self, error: Exception) -> DataError | None:
        """The one-line account of an error raised while reading this source's examples (a
        damaged file), or None when the error is not about the data."""
        del error
        return None


# The ops that decode images (official/data/preprocess.py), as named in TensorFlow's errors.
_DECODER_OPS = re.compile(r"\b(Decode(Jpeg|AndCropJpeg|Png|Gif|Bmp|Image)|ExtractJpegShape)\b")


@contextlib.contextmanager
def reading(source: Source):
    """Turns an error that reading `source` raised into the source's one-line account of it,
    or, for an image the decoder failed on, a line saying so."""
    try:
        yield
    except tf.errors.OpError as e:
        explained = source.explain(e)
        if explained is None and _DECODER_OPS.search(getattr(e, "message", "")):
            explained = DataError(
                f"an image of the data cannot be decoded ({tensorflow_words(e)}); training "
                "skips such images with --config.data.bad_records=skip, evaluation stops"
            )
        if explained is None:
            raise
        raise explained from None


def _shard(ds: tf.data.Dataset, input_context) -> tf.data.Dataset:
    if input_context is None or input_context.num_input_pipelines <= 1:
        return ds
    return ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)


def deterministic_options(deterministic: bool) -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = deterministic
    return options


def read_files(
    files: Sequence[str],
    open_file: Callable[[tf.Tensor], tf.data.Dataset],
    *,
    shuffle: bool,
    seed: int,
    input_context: tf.distribute.InputContext | None = None,
    deterministic: bool = True,
    cycle_length: int = 16,
) -> tf.data.Dataset:
    """One epoch of the records in `files` for this input pipeline (for file-based sources).

    Each input pipeline reads its own files (`files[i::n]`); with fewer files than pipelines
    every pipeline reads all files in the same order and keeps every n-th record, so the
    shards stay disjoint and complete either way. Training reads `cycle_length` files at once
    in a fresh random file order each epoch; evaluation reads them one after the other in
    sorted order.

    Args:
      files: the files of one split.
      open_file: file name → dataset of its records (e.g. tf.data.TFRecordDataset + parsing).
      shuffle: shuffle the file order (reshuffled every epoch) and interleave files.
      seed: seed of the file shuffle.
      input_context: this pipeline's place among all input pipelines.
      deterministic: keep the interleaved order reproducible.
      cycle_length: files read concurrently when shuffling.

    Returns:
      A dataset of whatever `open_file`'s datasets yield.
    """
    files = sorted(files)
    ds = tf.data.Dataset.from_tensor_slices(list(files))
    pipelines = input_context.num_input_pipelines if input_context else 1
    by_record = pipelines > len(files)
    if not by_record:
        ds = _shard(ds, input_context)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        open_file,
        cycle_length=min(cycle_length, len(files)) if shuffle else 1,
        num_parallel_calls=tf.data.AUTOTUNE,
        # Record sharding needs the same order in every pipeline.
        deterministic=deterministic or by_record or not shuffle,
    )
    return _shard(ds, input_context) if by_record else ds


@dataclasses.dataclass(frozen=True)
class FolderSplit:
    paths: tuple[str, ...]
    labels: tuple[int, ...]


class FolderSource(Source):
    """Images in PATH/<split>/<class>/<file>; labels are indices of the sorted class names.

    Files are listed once and checked by content (their first and last bytes and headers):
    empty, non-image, truncated files and images above `max_image_pixels` are skipped and
    reported by name. The keys are the file
    paths, read by `encoded`.
    """

    def __init__(self, root: str, max_image_pixels: int = imagefile.MAX_IMAGE_PIXELS):
        super().__init__()
        self.max_image_pixels = max_image_pixels
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
                if os.path.islink(class_dir) and not os.path.exists(class_dir):
                    self.skipped.append((class_dir, _BROKEN_LINK))
                continue
            if class_name not in index:
                raise DataError(
                    f"folder:{self.root}: class {class_name!r} in {split_dir} has no "
                    f"folder in {os.path.join(self.root, TRAIN)}"
                )
            for file_name in sorted(os.listdir(class_dir)):
                path = os.path.join(class_dir, file_name)
                if not os.path.isfile(path):
                    if os.path.islink(path) and not os.path.exists(path):
                        self.skipped.append((path, _BROKEN_LINK))
                    continue
                problem = imagefile.decoding_problem(
                    *imagefile.check_file(path, self.max_image_pixels)
                )
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
        num_classes = len(self.class_names)
        return DatasetInfo(
            num_classes=num_classes,
            class_names=self.class_names,
            num_examples={name: len(split.paths) for name, split in self.splits.items()},
            class_counts={
                name: tuple(np.bincount(split.labels, minlength=num_classes).tolist())
                for name, split in self.splits.items()
            },
        )

    def examples(
        self,
        split: str,
        *,
        shuffle: bool,
        seed: int,
        input_context: tf.distribute.InputContext | None = None,
        deterministic: bool = True,
        portable: bool = False,
    ) -> tf.data.Dataset:
        """(file path, label) pairs of this pipeline's shard; all paths shuffled if asked."""
        # The listing is in memory: its order is always reproducible; no Python runs in it.
        del deterministic, portable
        data = self.splits[split]
        ds = tf.data.Dataset.from_tensor_slices(
            (
                tf.constant([os.fsencode(path) for path in data.paths]),
                tf.constant(data.labels, dtype=tf.int32),
            )
        )
        ds = _shard(ds, input_context)
        if shuffle:
            ds = ds.shuffle(len(data.paths), seed=seed, reshuffle_each_iteration=True)
        return ds

    def encoded(self, examples: tf.data.Dataset, *, deterministic: bool = True) -> tf.data.Dataset:
        return examples.map(
            lambda path, label: (tf.io.read_file(path), label),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=deterministic,
        )

    def example_names(self, split: str) -> list[str]:
        return list(self.splits[split].paths)


def _read_json(path: str, what: str) -> dict:
    try:
        with tf.io.gfile.GFile(path) as f:
            return json.load(f)
    except (OSError, ValueError, tf.errors.OpError) as e:
        raise DataError(f"{path}: not a readable {what} ({str(e).splitlines()[0][:120]})") from None


class TFRecordSource(Source):
    """Sharded TFRecords in the format of official/data/tfrecord.py, as the converter writes them.

    The class list and the converter's label offset come from labels.json beside the shards,
    the record counts from its manifest.json; labels come out 0-based whatever the offset.
    Paths go through tf.io.gfile, so DIR may be a gs:// bucket too.

    Damaged data is named, never a crash: a local shard whose size differs from the manifest
    is refused when the source opens; records are read by official/data/example_reader.py,
    which skips (`bad_records="skip"`) or stops at ("fail") a record that is not a well-formed
    Example with an image and a label of a known class, naming its shard and index; a record
    whose framing checksum fails stops the reading, named by `explain`.
    """

    def __init__(
        self,
        location: str,
        bad_records: str = "fail",
        max_image_pixels: int = imagefile.MAX_IMAGE_PIXELS,
    ):
        super().__init__()
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
        labels = _read_json(labels_path, "labels file")
        manifest_path = os.path.join(directory, tfrecord.MANIFEST_FILE)
        shards = {}
        if tf.io.gfile.exists(manifest_path):
            shards = _read_json(manifest_path, "manifest").get("shards", {})
        try:
            self.label_offset = int(labels["label_offset"])
            self.name = labels.get("dataset", "")  # "imagenet2012" for a converted ImageNet
            self.class_names = tuple(c["synset"] for c in labels["classes"])
            self._list_shards(location, directory, labels, shards)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{labels_path}: not this converter's labels file ({e!r})") from None
        self.reader = example_reader.ExampleReader(
            f"tfrecord:{location}",
            image_key=tfrecord.ENCODED,
            label_key=tfrecord.LABEL,
            label_offset=self.label_offset,
            num_classes=len(self.class_names),
            bad_records=bad_records,
            max_image_pixels=max_image_pixels,
            skipped=self.skipped,
        )

    def _list_shards(self, location: str, directory: str, labels: dict, shards: dict) -> None:
        self.files, self.counts, self.class_counts = {}, {}, {}
        for split in (TRAIN, VALIDATION):
            if "{split}" in location:
                pattern = location.replace("{split}", split)
            else:  # Exactly the converter's shards of this split, e.g. train-*-of-01024.
                pattern = os.path.join(directory, labels["splits"][split]["pattern"])
            files = sorted(tf.io.gfile.glob(pattern))
            if not files:
                raise DataError(f"tfrecord:{location}: no {split} shards match {pattern}")
            self.files[split] = tuple(files)
            counts = []
            for path in files:
                entry = shards.get(os.path.basename(path))
                if entry is None:
                    counts.append(self._count(path))
                    continue
                # A truncated or replaced local shard (a stat each; remote ones are not checked).
                if "://" not in path and os.path.getsize(path) != entry["bytes"]:
                    raise DataError(
                        f"tfrecord:{location}: {os.path.basename(path)} has "
                        f"{os.path.getsize(path):,} bytes, {tfrecord.MANIFEST_FILE} says "
                        f"{entry['bytes']:,} (truncated or replaced); convert again, or check "
                        "the shards with the converter's --verify"
                    )
                counts.append(entry["records"])
            self.counts[split] = sum(counts)
            written = labels["splits"].get(split, {})
            # The converter's per-class counts hold for exactly its set of shards.
            if "class_counts" in written and len(files) == written.get("shards"):
                self.class_counts[split] = tuple(written["class_counts"])

    def _count(self, path: str) -> int:
        try:
            return int(tf.data.TFRecordDataset(path).reduce(0, lambda n, _: n + 1))
        except tf.errors.OpError as e:
            raise DataError(f"tfrecord:{self.location}: {path}: unreadable ({e.message})") from None

    @property
    def info(self) -> DatasetInfo:
        return DatasetInfo(
            num_classes=len(self.class_names),
            class_names=self.class_names,
            num_examples=dict(self.counts),
            name=self.name,
            class_counts=dict(self.class_counts),
        )

    def examples(
        self,
        split: str,
        *,
        shuffle: bool,
        seed: int,
        input_context: tf.distribute.InputContext | None = None,
        deterministic: bool = True,
        portable: bool = False,
    ) -> tf.data.Dataset:
        """(encoded image, 0-based label) pairs of this pipeline's shards (read_files), every
        record checked as it is read."""
        files = self.files[split]
        pipelines = input_context.num_input_pipelines if input_context else 1
        if pipelines > len(files):
            logging.warning(
                "tfrecord:%s: %d %s shards for %d input pipelines: each pipeline reads all of "
                "them and keeps every %d-th record (convert with more shards to avoid this)",
                self.location,
                len(files),
                split,
                pipelines,
                pipelines,
            )

        buffer = _record_read_buffer(files[0])

        def records(path):
            # (record, its shard, its index) to name a damaged one; zipped, not mapped: a map
            # call per record cost ~10 % of the reading.
            return tf.data.Dataset.zip(
                tf.data.TFRecordDataset(path, buffer_size=buffer),
                tf.data.Dataset.from_tensors(path).repeat(),
                tf.data.Dataset.range(tf.int64.max),
            )

        ds = read_files(
            files,
            records,
            shuffle=shuffle,
            seed=seed,
            input_context=input_context,
            deterministic=deterministic,
        )
        return self.reader.read(ds, deterministic=deterministic, portable=portable)

    def explain(self, error: Exception) -> DataError | None:
        damaged = example_reader.explain_damaged(error)
        if damaged is not None:
            return DataError(damaged)
        if isinstance(error, tf.errors.DataLossError):
            return DataError(f"tfrecord:{self.location}: {self._find_damage()}")
        return None

    def _find_damage(self) -> str:
        """The first shard and record whose framing is damaged (read on the host, after
        TensorFlow's reader stopped without saying which file)."""
        for split in (TRAIN, VALIDATION):
            for path in self.files[split]:
                try:
                    with tf.io.gfile.GFile(path, "rb") as f:
                        for _ in tfrecord.read_records(f):
                            pass
                except ValueError as e:
                    return (
                        f"{os.path.basename(path)}: {e}; convert that split again, or restore "
                        "the shard"
                    )
        return "a damaged record (TensorFlow: corrupted record); the converter's --verify finds it"


def _first_line(error: Exception) -> str:
    """The first line of an error message, without the colon that introduced what followed."""
    text = str(error).strip()
    return text.splitlines()[0].rstrip(" :") if text else type(error).__name__


def _manual_dir_hint(builder) -> str:
    """Which flag to set and, for datasets that need a manual download, what goes there
    (the first sentence of the builder's own instructions, on one line)."""
    hint = "set --config.data.tfds_manual_dir for datasets that need a manual download"
    instructions = " ".join((getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None) or "").split())
    if instructions:
        hint += f"; {builder.name}: {instructions.split('. ')[0].rstrip('.')}"
    return hint


class TfdsSource(Source):
    """A TensorFlow Datasets image-classification dataset, read as encoded image bytes.

    The dataset is prepared on first use like `tfds.load` does (ImageNet from the two tar
    files in its manual directory, see README "Data sources"). Its prepared TFRecord files are
    then read like the tfrecord: source's, by official/data/example_reader.py (TFDS's own
    reader parses them with TensorFlow's Example parser, which damaged records can crash), so
    images take the same fused decode-and-crop path as every other source and damaged records
    are skipped or named by `bad_records`. Input pipelines read disjoint record ranges
    (`tfds.even_splits`, resolved to TFDS's file instructions); the evaluation split is
    "validation", or "test" when the dataset has no validation split.
    """

    def __init__(
        self,
        name: str,
        *,
        data_dir: str = "",
        manual_dir: str = "",
        bad_records: str = "fail",
        max_image_pixels: int = imagefile.MAX_IMAGE_PIXELS,
    ):
        super().__init__()
        try:
            import tensorflow_datasets as tfds
        except ImportError as e:
            raise DataError(
                f"--config.data.source=tfds:{name} needs tensorflow-datasets: {TFDS_INSTALL_HINT}"
            ) from e
        self._tfds = tfds
        self.name = name
        try:
            self.builder = tfds.builder(name, data_dir=data_dir or None)
        except Exception as e:  # noqa: BLE001 - tfds raises several types for unknown names.
            raise DataError(f"--config.data.source=tfds:{name}: {str(e).splitlines()[0]}") from e
        if not self.builder.is_prepared():
            download_config = tfds.download.DownloadConfig(manual_dir=manual_dir or None)
            try:
                self.builder.download_and_prepare(download_config=download_config)
            except Exception as e:  # noqa: BLE001 - report any preparation failure on one line.
                raise DataError(
                    f"tfds:{name} is not prepared in {self.builder.data_dir} and preparing it "
                    f"failed: {_first_line(e)} ({_manual_dir_hint(self.builder)})"
                ) from e
        info = self.builder.info
        keys = info.supervised_keys
        if not keys or len(keys) != 2:
            raise DataError(f"tfds:{name} has no (image, label) supervised keys")
        self.image_key, self.label_key = keys
        label_feature = info.features[self.label_key]
        if not hasattr(label_feature, "names"):
            raise DataError(f"tfds:{name}: {self.label_key!r} is not a class label")
        self.class_names = tuple(label_feature.names)
        available = set(info.splits.keys())
        self.splits = {TRAIN: "train"}
        self.splits[VALIDATION] = "validation" if "validation" in available else "test"
        for ours, theirs in self.splits.items():
            if theirs not in available:
                raise DataError(
                    f"tfds:{name} has no {theirs!r} split for {ours} "
                    f"(splits: {', '.join(sorted(available))})"
                )
        self.counts = {
            ours: info.splits[theirs].num_examples for ours, theirs in self.splits.items()
        }
        file_format = info.file_format or tfds.core.FileFormat.TFRECORD
        if file_format != tfds.core.FileFormat.TFRECORD:
            raise DataError(
                f"tfds:{name} is prepared as {file_format.value} files in "
                f"{self.builder.data_dir}; only TFRecord files are read (prepare it again with "
                "TFDS's default file format)"
            )
        self.reader = example_reader.ExampleReader(
            f"tfds:{name}",
            image_key=self.image_key,
            label_key=self.label_key,
            label_offset=0,
            num_classes=len(self.class_names),
            bad_records=bad_records,
            max_image_pixels=max_image_pixels,
            skipped=self.skipped,
        )

    @property
    def info(self) -> DatasetInfo:
        return DatasetInfo(
            num_classes=len(self.class_names),
            class_names=self.class_names,
            num_examples=dict(self.counts),
            name=self.name,
        )

    def examples(
        self,
        split: str,
        *,
        shuffle: bool,
        seed: int,
        input_context: tf.distribute.InputContext | None = None,
        deterministic: bool = True,
        portable: bool = False,
    ) -> tf.data.Dataset:
        """(encoded image, label) pairs of this pipeline's share of the split's records: its
        files (and record ranges within them) in a fresh random order every epoch when
        shuffling, read 16 at a time, else one after the other in TFDS's order."""
        tfds_split = self.splits[split]
        if input_context is not None and input_context.num_input_pipelines > 1:
            tfds_split = self._tfds.even_splits(
                tfds_split, n=input_context.num_input_pipelines, drop_remainder=False
            )[input_context.input_pipeline_id]
        instructions = self.builder.info.splits[tfds_split].file_instructions
        files = tf.data.Dataset.from_tensor_slices(
            (
                [i.filename for i in instructions],
                tf.constant([i.skip for i in instructions], tf.int64),
                tf.constant([i.take for i in instructions], tf.int64),
            )
        )
        if shuffle:
            files = files.shuffle(len(instructions), seed=seed, reshuffle_each_iteration=True)
        buffer = _record_read_buffer(instructions[0].filename if instructions else "")

        def records(path, skip, take):  # (record, its file, its index in the file)
            return tf.data.Dataset.zip(
                tf.data.TFRecordDataset(path, buffer_size=buffer).skip(skip).take(take),
                tf.data.Dataset.from_tensors(path).repeat(),
                tf.data.Dataset.range(skip, tf.int64.max),
            )

        ds = files.interleave(
            records,
            cycle_length=min(16, len(instructions)) if shuffle else 1,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=deterministic or not shuffle,
        )
        return self.reader.read(ds, deterministic=deterministic or not shuffle, portable=portable)

    def explain(self, error: Exception) -> DataError | None:
        damaged = example_reader.explain_damaged(error)
        if damaged is not None:
            return DataError(damaged)
        if isinstance(error, tf.errors.DataLossError):
            return DataError(
                f"tfds:{self.name}: a damaged file in {self.builder.data_dir} "
                f"({_first_line(error)}); prepare the dataset again"
            )
        return None


class SyntheticSource(Source):
    """Random-noise JPEGs of IMAGE_SIZE² pixels with labels cycling through the classes.

    They take the same path as real images (decode, crop, augmentation), so a smoke test on
    them exercises the whole pipeline. Image i of a split is the same on every run and in
    every pipeline; nothing in it is learnable.
    """

    IMAGE_SIZE = 256
    JPEG_QUALITY = 90

    def __init__(self, num_classes: int, num_examples: int):
        super().__init__()
        self.num_classes = num_classes
        self.num_examples = num_examples

    @property
    def info(self) -> DatasetInfo:
        counts = tuple(
            np.bincount(np.arange(self.num_examples) % self.num_classes, minlength=self.num_classes)
        )
        return DatasetInfo(
            num_classes=self.num_classes,
            class_names=tuple(str(i) for i in range(self.num_classes)),
            num_examples={TRAIN: self.num_examples, VALIDATION: self.num_examples},
            class_counts={TRAIN: counts, VALIDATION: counts},
        )

    def examples(
        self,
        split: str,
        *,
        shuffle: bool,
        seed: int,
        input_context: tf.distribute.InputContext | None = None,
        deterministic: bool = True,
        portable: bool = False,
    ) -> tf.data.Dataset:
        """(JPEG bytes, label) of this pipeline's shard, generated from (split, index)."""
        del portable  # Graph ops only.
        split_seed = (TRAIN, VALIDATION).index(split)
        size, num_classes, quality = self.IMAGE_SIZE, self.num_classes, self.JPEG_QUALITY

        def make(index):
            pixels = tf.random.stateless_uniform(
                [size, size, 3], seed=[split_seed, index], minval=0, maxval=256, dtype=tf.int32
            )
            encoded = tf.io.encode_jpeg(tf.cast(pixels, tf.uint8), quality=quality)
            return encoded, tf.cast(index % num_classes, tf.int32)

        ds = _shard(tf.data.Dataset.range(self.num_examples), input_context)
        if shuffle:
            ds = ds.shuffle(self.num_examples, seed=seed, reshuffle_each_iteration=True)
        return ds.map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)


def open_source(
    source: str,
    *,
    num_classes: int = 0,
    synthetic_examples: int = 1024,
    tfds_data_dir: str = "",
    tfds_manual_dir: str = "",
    max_image_pixels: int = imagefile.MAX_IMAGE_PIXELS,
    bad_records: str = "fail",
) -> Source:
    """Parses a `--config.data.source` value into a source object.

    Args:
      source: "folder:PATH", "tfrecord:DIR", "tfrecord:PATTERN" (with {split}), "tfds:NAME"
        or "synthetic".
      num_classes: classes of the synthetic source (0: ImageNet's 1,000).
      synthetic_examples: examples per split of the synthetic source.
      tfds_data_dir: TFDS data directory ("" for TFDS's default, $TFDS_DATA_DIR or
        ~/tensorflow_datasets).
      tfds_manual_dir: where manually downloaded files are (ImageNet's tar files).
      max_image_pixels: larger images are damaged data: a folder source skips them at
        listing, TFRecord and TFDS sources as they read them (by `bad_records`).
      bad_records: what TFRecord and TFDS sources do with a damaged record: "skip" or "fail".

    Raises:
      DataError: an unknown kind of source, or one that cannot be read.
    """
    kind, _, argument = source.partition(":")
    if kind == "folder" and argument:
        return FolderSource(os.path.expanduser(argument), max_image_pixels)
    if kind == "tfrecord" and argument:
        location = argument if "://" in argument else os.path.expanduser(argument)
        return TFRecordSource(location, bad_records, max_image_pixels)
    if kind == "tfds" and argument:
        return TfdsSource(
            argument,
            data_dir=os.path.expanduser(tfds_data_dir) if tfds_data_dir else "",
            manual_dir=os.path.expanduser(tfds_manual_dir) if tfds_manual_dir else "",
            bad_records=bad_records,
            max_image_pixels=max_image_pixels,
        )
    if kind == "synthetic" and not argument:
        return SyntheticSource(num_classes or 1000, synthetic_examples)
    raise DataError(
        f"--config.data.source={source!r}: expected folder:PATH, tfrecord:DIR, tfds:NAME or "
        "synthetic"
    )
