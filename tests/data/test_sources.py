"""Data sources behind the one Source interface: folder, TFRecord (tests/data/test_convert.py),
TFDS and synthetic; sharding between input pipelines; and a source written against the
interface alone runs through the whole pipeline."""

import io
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from dataset_trees import make_tree
from helpers import images_and_labels

from official.data import convert, pipeline, preprocess, sources

GEOMETRY_8 = preprocess.Geometry(8, 0.875, "bilinear")
GEOMETRY_16 = preprocess.Geometry(16, 0.875, "bilinear")
TRAINING = pipeline.Training(preprocessing=preprocess.TrainPreprocessing(), shuffle_buffer=100)


def test_folder_source_lists_classes_and_skips_bad_files_by_name(tree):
    source = sources.open_source(f"folder:{tree}")
    info = source.info
    assert info.class_names == ("ant", "bee", "cat")
    assert info.num_examples == {"train": 12, "validation": 6}
    skipped = {path.split("/")[-1]: reason for path, reason in source.skipped}
    assert skipped == {
        "cut.jpg": "truncated JPEG (no end-of-image marker)",
        "empty.jpg": "empty file",
        "notes.txt": "not an image (unrecognised content)",
    }


def test_validation_class_unknown_to_train(tree):
    (tree / "validation" / "dog").mkdir()
    with pytest.raises(sources.DataError, match="class 'dog'"):
        sources.open_source(f"folder:{tree}")


def test_sharding_gives_disjoint_complete_coverage(tree):
    source = sources.open_source(f"folder:{tree}")
    seen = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=2
        )
        ds = pipeline.build_dataset(
            source, split="validation", batch_size=8, geometry=GEOMETRY_8, input_context=context
        )
        seen.append([int(x) for _, labels in ds.as_numpy_iterator() for x in labels])
    assert len(seen[0]) == len(seen[1]) == 3
    assert sorted(seen[0] + seen[1]) == [0, 0, 1, 1, 2, 2]


def test_training_shards_are_disjoint_and_complete(tree):
    source = sources.open_source(f"folder:{tree}")
    seen = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id)
        epoch = source.examples("train", shuffle=True, seed=1, input_context=context)
        seen.append([path.decode() for path, _ in epoch.as_numpy_iterator()])
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(source.splits["train"].paths)


@pytest.mark.parametrize("num_files", [5, 1])
def test_read_files_shards_by_file_or_by_record(tmp_path, num_files):
    records = [f"{f}-{r}" for f in range(num_files) for r in range(4)]
    for f in range(num_files):
        lines = [r for r in records if r.startswith(f"{f}-")]
        (tmp_path / f"part-{f}.txt").write_text("\n".join(lines) + "\n")
    files = [str(p) for p in sorted(tmp_path.glob("part-*.txt"))]
    for shuffle in (False, True):
        seen = []
        for pipeline_id in range(2):
            context = tf.distribute.InputContext(2, pipeline_id, 2)
            ds = sources.read_files(
                files, tf.data.TextLineDataset, shuffle=shuffle, seed=3, input_context=context
            )
            seen.append([line.decode() for line in ds.as_numpy_iterator()])
        assert not set(seen[0]) & set(seen[1])
        assert sorted(seen[0] + seen[1]) == sorted(records)
        if not shuffle and num_files > 1:  # evaluation order: whole files in sorted order
            assert seen[0] == [r for r in records if int(r.split("-")[0]) % 2 == 0]


def test_tfrecord_source_shards_by_file_and_selects_by_pattern(tmp_path):
    make_tree(tmp_path / "raw", per_class=2, validation="folders", val_per_class=3)
    out = tmp_path / "out"
    convert.convert(str(tmp_path / "raw"), str(out), num_workers=1, validation_shards=3)
    source = sources.open_source(f"tfrecord:{out}")
    seen = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=2
        )
        ds = source.examples("validation", shuffle=False, seed=0, input_context=context)
        seen.append(sorted(int(label) for _, label in ds.as_numpy_iterator()))
    # Three shards of one class each: pipeline 0 reads shards 0 and 2, pipeline 1 shard 1.
    assert seen == [[0, 0, 0, 2, 2, 2], [1, 1, 1]]
    # More pipelines than shards: every pipeline reads all shards and keeps its records.
    seen = []
    for pipeline_id in range(4):
        too_many = tf.distribute.InputContext(num_input_pipelines=4, input_pipeline_id=pipeline_id)
        ds = source.examples("validation", shuffle=True, seed=0, input_context=too_many)
        seen.append([int(label) for _, label in ds.as_numpy_iterator()])
    assert sorted(sum(seen, [])) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert sorted(len(s) for s in seen) == [2, 2, 2, 3]
    subset = sources.open_source(f"tfrecord:{out}/{{split}}-0000[01]-*")
    assert subset.info.num_examples == {"train": 2, "validation": 6}
    assert "validation" not in subset.info.class_counts  # Counts hold for all shards only.
    with pytest.raises(sources.DataError, match="no .*labels.json"):
        sources.open_source(f"tfrecord:{tmp_path / 'raw'}")


def test_synthetic_source_is_random_jpegs_the_same_on_every_run():
    source = sources.open_source("synthetic", num_classes=5, synthetic_examples=12)
    assert isinstance(source, sources.Source)
    assert source.info.num_examples == {"train": 12, "validation": 12}
    encoded = [
        e for e, _ in source.examples("validation", shuffle=False, seed=0).as_numpy_iterator()
    ]
    again = [e for e, _ in source.examples("validation", shuffle=True, seed=9).as_numpy_iterator()]
    assert sorted(encoded) == sorted(again) and encoded != again  # the same images, reordered
    train = [e for e, _ in source.examples("train", shuffle=False, seed=0).as_numpy_iterator()]
    assert not set(train) & set(encoded)  # the splits hold different images
    side = sources.SyntheticSource.IMAGE_SIZE
    assert tf.io.extract_jpeg_shape(encoded[0]).numpy().tolist() == [side, side, 3]
    ds = pipeline.build_dataset(source, split="validation", batch_size=5, geometry=GEOMETRY_8)
    labels = np.concatenate([labels for _, labels in ds.as_numpy_iterator()])
    assert labels.tolist() == [i % 5 for i in range(12)]
    # Training images take the same path as real ones: crop, flip, augmentation.
    augmenter = pipeline.Training(preprocessing=preprocess.TrainPreprocessing(), shuffle_buffer=12)
    images, _ = next(
        iter(
            pipeline.build_dataset(
                source, split="train", batch_size=4, geometry=GEOMETRY_8, training=augmenter
            )
        )
    )
    assert images.shape == (4, 8, 8, 3) and images.dtype == tf.uint8


class _ArraySource(sources.Source):
    """A source written against the interface alone: images kept in memory, keyed by index."""

    def __init__(self, images, labels):
        self.encoded_images = tf.constant([tf.io.encode_png(i).numpy() for i in images])
        self.labels = tf.constant(labels, tf.int32)

    @property
    def info(self):
        count = len(self.labels)
        return sources.DatasetInfo(2, ("a", "b"), {"train": count, "validation": count})

    def examples(
        self, split, *, shuffle, seed, input_context=None, deterministic=True, portable=False
    ):
        ds = tf.data.Dataset.range(len(self.labels))
        if shuffle:
            ds = ds.shuffle(len(self.labels), seed=seed)
        return ds.map(lambda index: (index, tf.gather(self.labels, index)))

    def encoded(self, examples, *, deterministic=True):
        return examples.map(lambda index, label: (tf.gather(self.encoded_images, index), label))


def test_any_source_with_the_interface_runs_through_the_pipeline():
    images = [np.full((10, 12, 3), 50 * i, np.uint8) for i in range(4)]
    source = _ArraySource(images, [0, 1, 0, 1])
    evaluation = pipeline.build_dataset(
        source, split="validation", batch_size=4, geometry=GEOMETRY_8
    )
    pixels, labels = next(iter(evaluation))
    assert labels.numpy().tolist() == [0, 1, 0, 1]
    assert [int(p[4, 4, 0]) for p in pixels.numpy()] == [0, 50, 100, 150]
    for cache in (False, True):
        training = pipeline.build_dataset(
            source, split="train", batch_size=3, geometry=GEOMETRY_8, training=TRAINING, cache=cache
        )
        assert next(iter(training))[0].shape == (3, 8, 8, 3)
    assert source.example_names("validation") is None


_TINY_BUILDER = '''
import numpy as np
import tensorflow_datasets as tfds


class TinyImages(tfds.core.GeneratorBasedBuilder):
    """12 training and 6 test JPEGs of 3 classes; image height = 20 + index."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                    "label": tfds.features.ClassLabel(names=["ant", "bee", "cat"]),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(12), "test": self._generate_examples(6)}

    def _generate_examples(self, count):
        for i in range(count):
            yield i, {"image": np.full((20 + i, 24, 3), 10 * i, np.uint8), "label": i % 3}
'''


@pytest.fixture(scope="module")
def tiny_tfds(tmp_path_factory):
    """A TFDS dataset built locally (no network): registers `tiny_images`."""
    pytest.importorskip("tensorflow_datasets")
    import importlib
    import sys

    root = tmp_path_factory.mktemp("tfds_builder")
    (root / "tinypkg").mkdir()
    (root / "tinypkg" / "__init__.py").write_text("")
    (root / "tinypkg" / "tiny_images.py").write_text(_TINY_BUILDER)
    sys.path.insert(0, str(root))
    try:
        importlib.import_module("tinypkg.tiny_images")
    finally:
        sys.path.remove(str(root))
    return str(tmp_path_factory.mktemp("tfds_data"))


def test_tfds_source_reads_encoded_images_and_shards_records(tiny_tfds):
    source = sources.open_source("tfds:tiny_images", tfds_data_dir=tiny_tfds)
    info = source.info
    assert info.class_names == ("ant", "bee", "cat") and info.name == "tiny_images"
    assert info.num_examples == {"train": 12, "validation": 6}  # "test" serves as validation
    ds = pipeline.build_dataset(source, split="validation", batch_size=4, geometry=GEOMETRY_16)
    images, labels = images_and_labels(ds)
    assert [len(x) for x in labels] == [4, 2] and images[0].dtype == np.uint8
    assert sorted(np.concatenate(labels).tolist()) == [0, 0, 1, 1, 2, 2]
    heights = []  # the image height identifies the example
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(2, pipeline_id, 2)
        epoch = source.examples("train", shuffle=True, seed=0, input_context=context)
        heights.append(
            [int(tf.io.extract_jpeg_shape(encoded)[0]) for encoded, _ in epoch.as_numpy_iterator()]
        )
    assert not set(heights[0]) & set(heights[1])
    assert sorted(heights[0] + heights[1]) == list(range(20, 32))
    train = pipeline.build_dataset(
        source, split="train", batch_size=5, geometry=GEOMETRY_16, training=TRAINING
    )
    assert next(iter(train))[0].shape == (5, 16, 16, 3)


def test_tfds_missing_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(sources.DataError, match=r'pip install "cnn-repro\[tfds\]"'):
        sources.open_source("tfds:imagenet2012")


def test_tfds_unknown_dataset_is_named(tiny_tfds):
    with pytest.raises(sources.DataError, match="tfds:no_such_dataset"):
        sources.open_source("tfds:no_such_dataset", tfds_data_dir=tiny_tfds)


def test_folder_source_skips_decompression_bombs_by_name(tree):
    from helpers import bomb_png

    (tree / "train" / "cat" / "bomb.png").write_bytes(bomb_png())
    skipped = dict(sources.open_source(f"folder:{tree}").skipped)
    assert skipped[str(tree / "train" / "cat" / "bomb.png")].startswith(
        "20000x20000 pixels, above the limit of 89,478,485"
    )
    allowed = sources.open_source(f"folder:{tree}", max_image_pixels=400_000_000)
    assert str(tree / "train" / "cat" / "bomb.png") not in dict(allowed.skipped)


_FUZZ = """
import io, json, os, random, sys
from dataset_trees import make_tree
from official.data import convert, imagefile, sources, tfrecord

root, seed, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
make_tree(__import__("pathlib").Path(root) / "raw", per_class=4, validation="folders")
out = os.path.join(root, "out")
convert.convert(os.path.join(root, "raw"), out, num_workers=1, train_shards=1, stream=io.StringIO())
shard = os.path.join(out, "train-00000-of-00001")
with open(shard, "rb") as f:
    good = list(tfrecord.read_records(f))
rng, records, damaged = random.Random(seed), [], 0
for i in range(count):
    record = bytearray(good[i % len(good)])
    for _ in range(rng.randint(1, 6)):
        record[rng.randrange(len(record))] = rng.randrange(256)
    if rng.random() < 0.3:
        cut = rng.randrange(len(record)); del record[cut:cut + rng.randint(1, 20)]
    records.append(bytes(record))
    try:  # Damaged: not an Example with one image and one label of a class, or a bad image.
        start, length, label = tfrecord.image_and_label(bytes(record))
        image = imagefile.check(bytes(record), start=start, end=start + length)
        damaged += imagefile.decoding_problem(*image) is not None or not 0 <= label < 3
    except ValueError:
        damaged += 1
with open(shard, "wb") as f:  # Valid framing around damaged Examples.
    f.write(b"".join(tfrecord.frame(r) for r in records))
manifest = json.load(open(os.path.join(out, "manifest.json")))
manifest["shards"]["train-00000-of-00001"].update(bytes=os.path.getsize(shard), records=count)
json.dump(manifest, open(os.path.join(out, "manifest.json"), "w"))
source = sources.open_source("tfrecord:" + out, bad_records="skip")
kept = list(source.examples("train", shuffle=False, seed=0).as_numpy_iterator())
print("skip", count, damaged, len(kept), len(source.skipped), source.skipped[0][0])
# The graph-only reader of tf.data service workers keeps the same records, and those that
# the host refused only for fields unknown to tf.train.Example or for their image bytes (which
# service workers do not check).
portable = list(source.examples("train", shuffle=False, seed=0, portable=True).as_numpy_iterator())
extra = [p for p in portable if p not in kept]
unknown = 0
for record in records:
    try:
        start, length, _ = tfrecord.image_and_label(record)
        image = imagefile.check(record, start=start, end=start + length)
        problem = imagefile.decoding_problem(*image) and "image"
    except ValueError as e:
        problem = str(e)
    unknown += problem is not None and problem.startswith(("unknown field", "image"))
print("portable", len(portable), all(k in portable for k in kept), len(extra), unknown)
failing = sources.open_source("tfrecord:" + out, bad_records="fail")
for portable in (False, True):
    try:
        with sources.reading(failing):
            for _ in failing.examples("train", shuffle=False, seed=0, portable=portable):
                pass
    except sources.DataError as e:
        print("fail" + "-portable" * portable, e)
"""


def test_damaged_records_are_skipped_or_named_and_never_kill_the_process(tmp_path):
    """Seeded byte mutations of real records, inside valid framing: the reading process never
    dies; every damaged Example is skipped and named, or stops the reading in one line."""
    tests = pathlib.Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", _FUZZ, str(tmp_path), "7", "300"],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONPATH": f"{tests.parent}:{tests}:{tests / 'data'}"},
    )
    assert result.returncode == 0, result.stderr[-3000:]  # Negative: killed by a signal.
    lines = {line.split()[0]: line.split(" ", 1)[1] for line in result.stdout.splitlines()}
    count, damaged, seen, skipped, *first = lines["skip"].split()
    assert int(damaged) > 100 and int(skipped) == int(damaged)
    assert int(seen) == int(count) - int(damaged) and first[:2] == [
        "train-00000-of-00001",
        "record",
    ]
    kept, subset, extra, unknown = lines["portable"].split()
    assert subset == "True" and int(kept) == int(seen) + int(extra) and int(extra) <= int(unknown)
    for fail in ("fail", "fail-portable"):
        named = r"tfrecord:.*: train-00000-of-00001 record \d+: [^]]*=skip skips such records\)$"
        assert re.match(named, lines[fail]), lines[fail]


def test_a_truncated_or_scrambled_shard_is_named(tmp_path):
    make_tree(tmp_path / "raw", per_class=2, validation="folders")
    out = tmp_path / "out"
    convert.convert(str(tmp_path / "raw"), str(out), num_workers=1, stream=io.StringIO())
    shard = out / "train-00001-of-00006"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(sources.DataError, match="train-00001-of-00006 has .* bytes, manifest"):
        sources.open_source(f"tfrecord:{out}")
    scrambled = bytearray(data)
    scrambled[len(data) // 2] ^= 0xFF  # Same size: only the checksum knows.
    shard.write_bytes(bytes(scrambled))
    source = sources.open_source(f"tfrecord:{out}")
    geometry = preprocess.Geometry(16, 0.875, "bilinear")
    named = pytest.raises(sources.DataError, match="train-00001-of-00006: record 0: data checksum")
    with named, sources.reading(source):
        for _ in pipeline.build_dataset(source, split="train", batch_size=4, geometry=geometry):
            pass


def test_folder_source_reads_non_utf8_names_and_skips_link_loops(tree):
    # Linux file names are bytes: a name that is not UTF-8 is legal and its image is read; a
    # link to itself or to nothing is named in `skipped` instead of stopping the listing.
    cat = tree / "train" / "cat"
    odd = os.fsencode(cat) + b"/caf\xe9.jpg"  # Latin-1, not UTF-8.
    with open(odd, "wb") as f:
        f.write((cat / "0.jpg").read_bytes())
    os.symlink("loop.jpg", cat / "loop.jpg")
    os.symlink("gone.jpg", cat / "dangling.jpg")
    os.symlink("dog", tree / "train" / "dog")  # A class folder that loops.
    source = sources.open_source(f"folder:{tree}")
    assert source.info.num_examples["train"] == 13
    skipped = {os.path.basename(path): reason for path, reason in source.skipped}
    loop = "symbolic link to nothing, or a loop"
    assert skipped["loop.jpg"] == skipped["dangling.jpg"] == skipped["dog"] == loop
    assert source.info.class_names == ("ant", "bee", "cat")
    dataset = pipeline.build_dataset(source, split="train", batch_size=13, geometry=GEOMETRY_16)
    _, labels = images_and_labels(dataset)
    assert sorted(labels[0].tolist()) == [0] * 4 + [1] * 4 + [2] * 5
