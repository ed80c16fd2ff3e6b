import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from official.data import augment, mixing, pipeline, preprocess


def _image_bytes(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def tree(tmp_path):
    """train: 3 classes x 4 images (JPEG/PNG, sizes vary); validation: 2 per class; junk."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("validation", 2)):
        for label, name in enumerate(("ant", "bee", "cat")):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                shape = (20 + 3 * i, 30 - 2 * i, 3)
                pixels = np.full(shape, 40 * label + 10 * i, np.uint8)
                pixels += rng.integers(0, 3, shape, dtype=np.uint8)
                fmt = "JPEG" if i % 2 == 0 else "PNG"
                (folder / f"{i}.{'jpg' if fmt == 'JPEG' else 'png'}").write_bytes(
                    _image_bytes(pixels, fmt)
                )
    junk = tmp_path / "train" / "bee"
    (junk / "notes.txt").write_text("not an image")
    (junk / "empty.jpg").write_bytes(b"")
    whole = _image_bytes(np.zeros((16, 16, 3), np.uint8), "JPEG")
    (junk / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    return tmp_path


def test_folder_source_lists_classes_and_skips_bad_files_by_name(tree):
    source = pipeline.open_source(f"folder:{tree}")
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
    with pytest.raises(pipeline.DataError, match="class 'dog'"):
        pipeline.open_source(f"folder:{tree}")


def test_eval_sees_every_example_once_in_order(tree):
    source = pipeline.open_source(f"folder:{tree}")
    ds = pipeline.build_dataset(
        source, split="validation", is_training=False, batch_size=4, image_size=16
    )
    batches = list(ds.as_numpy_iterator())
    assert [len(labels) for _, labels in batches] == [4, 2]
    labels = np.concatenate([labels for _, labels in batches])
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert batches[0][0].dtype == np.uint8 and batches[0][0].shape == (4, 16, 16, 3)


def test_training_batches_repeat_and_drop_remainder(tree):
    source = pipeline.open_source(f"folder:{tree}")
    ds = pipeline.build_dataset(
        source, split="train", is_training=True, batch_size=5, image_size=24, seed=3
    )
    batches = list(ds.take(6).as_numpy_iterator())  # 30 examples > 12: it repeats
    assert all(images.shape == (5, 24, 24, 3) for images, _ in batches)
    assert all(images.dtype == np.uint8 for images, _ in batches)
    labels = np.concatenate([labels for _, labels in batches])
    assert set(labels.tolist()) == {0, 1, 2}


def test_sharding_gives_disjoint_complete_coverage(tree):
    source = pipeline.open_source(f"folder:{tree}")
    seen = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=2
        )
        ds = pipeline.build_dataset(
            source,
            split="validation",
            is_training=False,
            batch_size=8,
            image_size=8,
            input_context=context,
        )
        seen.append([int(x) for _, labels in ds.as_numpy_iterator() for x in labels])
    assert len(seen[0]) == len(seen[1]) == 3
    assert sorted(seen[0] + seen[1]) == [0, 0, 1, 1, 2, 2]


def test_center_crop_window_is_centered_square():
    window = preprocess.center_crop_window(tf.constant([100, 60, 3]), 0.5).numpy()
    assert window.tolist() == [35, 15, 30, 30]


def test_eval_image_equals_hand_computed_center_crop():
    image = np.arange(40 * 40 * 3, dtype=np.uint8).reshape(40, 40, 3)
    encoded = _image_bytes(image, "PNG")
    out = preprocess.eval_image(
        tf.constant(encoded), image_size=20, crop_fraction=0.5, interpolation="nearest"
    ).numpy()
    np.testing.assert_array_equal(out, image[10:30, 10:30])


def test_inception_crop_window_stays_inside_and_is_reproducible():
    shape = tf.constant([300, 400, 3])
    windows = [
        preprocess.inception_crop_window(shape, tf.constant([7, i])).numpy() for i in range(50)
    ]
    for y, x, h, w in windows:
        assert min(y, x) >= 0 and y + h <= 300 and x + w <= 400
        assert h * w >= 0.08 * 300 * 400 * 0.99
    again = preprocess.inception_crop_window(shape, tf.constant([7, 3])).numpy()
    np.testing.assert_array_equal(again, windows[3])


def test_train_image_jpeg_and_png_give_same_shape():
    pixels = np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    for fmt in ("JPEG", "PNG"):
        out = preprocess.train_image(
            tf.constant(_image_bytes(pixels, fmt)), tf.constant([1, 2]), image_size=32
        )
        assert out.shape == (32, 32, 3) and out.dtype == tf.uint8


def test_synthetic_source():
    source = pipeline.open_source("synthetic", num_classes=5, synthetic_examples=12, image_size=8)
    ds = pipeline.build_dataset(
        source, split="validation", is_training=False, batch_size=5, image_size=8
    )
    labels = np.concatenate([labels for _, labels in ds.as_numpy_iterator()])
    assert labels.tolist() == [i % 5 for i in range(12)]


def _labels_and_pixels(ds):
    batches = list(ds.as_numpy_iterator())
    return [b[0] for b in batches], [b[1] for b in batches]


def test_deterministic_switch_gives_the_same_batches_on_every_run(tree):
    def batches():
        source = pipeline.open_source(f"folder:{tree}")
        ds = pipeline.build_dataset(
            source,
            split="train",
            is_training=True,
            batch_size=4,
            image_size=16,
            preprocessing=pipeline.TrainPreprocessing(color_jitter=0.4, lighting=0.1),
            augmenter=augment.build(["rotation", "random_erasing"]),
            mixer=mixing.Mixer(num_classes=3, mixup_alpha=0.2, cutmix_alpha=1.0),
            seed=5,
            deterministic=True,
        )
        return _labels_and_pixels(ds.take(6))

    first, second = batches(), batches()
    for a, b in zip(first[0] + first[1], second[0] + second[1]):
        np.testing.assert_array_equal(a, b)
    labels = np.concatenate(first[1])
    assert labels.shape == (24, 3) and labels.dtype == np.float32  # mixed soft labels
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-6)


def test_training_shards_are_disjoint_and_complete(tree):
    source = pipeline.open_source(f"folder:{tree}")
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
            ds = pipeline.read_files(
                files, tf.data.TextLineDataset, shuffle=shuffle, seed=3, input_context=context
            )
            seen.append([line.decode() for line in ds.as_numpy_iterator()])
        assert not set(seen[0]) & set(seen[1])
        assert sorted(seen[0] + seen[1]) == sorted(records)
        if not shuffle and num_files > 1:  # evaluation order: whole files in sorted order
            assert seen[0] == [r for r in records if int(r.split("-")[0]) % 2 == 0]


def test_rare_class_augmentation_and_oversampling(tree):
    source = pipeline.open_source(f"folder:{tree}")
    counts = source.info.class_counts["train"]
    assert counts == (4, 4, 4)
    ds = pipeline.build_dataset(
        source,
        split="train",
        is_training=True,
        batch_size=30,
        image_size=8,
        preprocessing=pipeline.TrainPreprocessing(crop="resize", random_flip=False),
        augmenter=augment.build(["cutout"], augment.Parameters(cutout_fraction=3.0)),
        rare_classes=[1],
        resampling_rates=[1.0, 3.0, 1.0],
        seed=2,
    )
    images, labels = next(iter(ds.unbatch().take(300).batch(300)))
    images, labels = images.numpy(), labels.numpy()
    grey = np.all(images == augment.FILL, axis=(1, 2, 3))
    np.testing.assert_array_equal(grey, labels == 1)  # only the rare class is cut out
    frequencies = np.bincount(labels, minlength=3) / len(labels)
    np.testing.assert_allclose(frequencies, [0.2, 0.6, 0.2], atol=0.1)


def test_eval_with_cache_sees_every_example_once(tree):
    source = pipeline.open_source(f"folder:{tree}")
    ds = pipeline.build_dataset(
        source, split="validation", is_training=False, batch_size=4, image_size=8, cache=True
    )
    for _ in range(2):  # the second pass reads from the cache
        labels = np.concatenate([labels for _, labels in ds.as_numpy_iterator()])
        assert labels.tolist() == [0, 0, 1, 1, 2, 2]


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
    source = pipeline.open_source("tfds:tiny_images", tfds_data_dir=tiny_tfds)
    info = source.info
    assert info.class_names == ("ant", "bee", "cat") and info.name == "tiny_images"
    assert info.num_examples == {"train": 12, "validation": 6}  # "test" serves as validation
    ds = pipeline.build_dataset(
        source, split="validation", is_training=False, batch_size=4, image_size=16
    )
    images, labels = _labels_and_pixels(ds)
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
        source, split="train", is_training=True, batch_size=5, image_size=16
    )
    assert next(iter(train))[0].shape == (5, 16, 16, 3)


def test_tfds_missing_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(pipeline.DataError, match=r'pip install "cnn-repro\[tfds\]"'):
        pipeline.open_source("tfds:imagenet2012")


def test_tfds_unknown_dataset_is_named(tiny_tfds):
    with pytest.raises(pipeline.DataError, match="tfds:no_such_dataset"):
        pipeline.open_source("tfds:no_such_dataset", tfds_data_dir=tiny_tfds)
