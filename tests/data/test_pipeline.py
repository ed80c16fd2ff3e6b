"""The input pipeline: evaluation order, training batches, reproducibility, augmentation of
rare classes, re-sampling, caching (the sources are in test_sources.py)."""

import numpy as np
import pytest
from helpers import encode, images_and_labels

from official.data import augment, imagefile, mixing, pipeline, preprocess, sources

GEOMETRY_16 = preprocess.Geometry(16, 0.875, "bilinear")


def test_eval_sees_every_example_once_in_order(tree):
    source = sources.open_source(f"folder:{tree}")
    ds = pipeline.build_dataset(
        source,
        split="validation",
        batch_size=4,
        geometry=preprocess.Geometry(16, 0.875, "bilinear"),
    )
    batches = list(ds.as_numpy_iterator())
    assert [len(labels) for _, labels in batches] == [4, 2]
    labels = np.concatenate([labels for _, labels in batches])
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert batches[0][0].dtype == np.uint8 and batches[0][0].shape == (4, 16, 16, 3)


def test_training_batches_repeat_and_drop_remainder(tree):
    source = sources.open_source(f"folder:{tree}")
    ds = pipeline.build_dataset(
        source,
        split="train",
        batch_size=5,
        geometry=preprocess.Geometry(24, 0.875, "bilinear"),
        training=pipeline.Training(
            preprocessing=preprocess.TrainPreprocessing(), shuffle_buffer=100
        ),
        seed=3,
    )
    batches = list(ds.take(6).as_numpy_iterator())  # 30 examples > 12: it repeats
    assert all(images.shape == (5, 24, 24, 3) for images, _ in batches)
    assert all(images.dtype == np.uint8 for images, _ in batches)
    labels = np.concatenate([labels for _, labels in batches])
    assert set(labels.tolist()) == {0, 1, 2}


def test_deterministic_switch_gives_the_same_batches_on_every_run(tree):
    def batches():
        source = sources.open_source(f"folder:{tree}")
        training = pipeline.Training(
            preprocessing=preprocess.TrainPreprocessing(color_jitter=0.4, pca_lighting=0.1),
            shuffle_buffer=100,
            augmenter=augment.build(
                ["rotation", "random_erasing"],
                {"rotation_degrees": 10.0, "erasing_probability": 0.5},
                seed=0,
            ),
            mixer=mixing.Mixer(num_classes=3, mixup_alpha=0.2, cutmix_alpha=1.0),
        )
        ds = pipeline.build_dataset(
            source,
            split="train",
            batch_size=4,
            geometry=preprocess.Geometry(16, 0.875, "bilinear"),
            training=training,
            seed=5,
            deterministic=True,
        )
        return images_and_labels(ds.take(6))

    first, second = batches(), batches()
    for a, b in zip(first[0] + first[1], second[0] + second[1]):
        np.testing.assert_array_equal(a, b)
    labels = np.concatenate(first[1])
    assert labels.shape == (24, 3) and labels.dtype == np.float32  # mixed soft labels
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-6)


def test_rare_class_augmentation_and_oversampling(tree):
    source = sources.open_source(f"folder:{tree}")
    counts = source.info.class_counts["train"]
    assert counts == (4, 4, 4)
    training = pipeline.Training(
        preprocessing=preprocess.TrainPreprocessing(train_crop="resize", random_flip=False),
        shuffle_buffer=100,
        augmenter=augment.build(["cutout"], {"cutout_fraction": 3.0}, seed=0),
        rare_classes=[1],
        resampling_rates=[1.0, 3.0, 1.0],
    )
    ds = pipeline.build_dataset(
        source,
        split="train",
        batch_size=30,
        geometry=preprocess.Geometry(8, 0.875, "bilinear"),
        training=training,
        seed=2,
    )
    images, labels = next(iter(ds.unbatch().take(300).batch(300)))
    images, labels = images.numpy(), labels.numpy()
    grey = np.all(images == augment.FILL, axis=(1, 2, 3))
    np.testing.assert_array_equal(grey, labels == 1)  # only the rare class is cut out
    frequencies = np.bincount(labels, minlength=3) / len(labels)
    np.testing.assert_allclose(frequencies, [0.2, 0.6, 0.2], atol=0.1)


def test_eval_with_cache_sees_every_example_once(tree):
    source = sources.open_source(f"folder:{tree}")
    ds = pipeline.build_dataset(
        source,
        split="validation",
        batch_size=4,
        geometry=preprocess.Geometry(8, 0.875, "bilinear"),
        cache=True,
    )
    for _ in range(2):  # the second pass reads from the cache
        labels = np.concatenate([labels for _, labels in ds.as_numpy_iterator()])
        assert labels.tolist() == [0, 0, 1, 1, 2, 2]


def _undecodable_jpeg() -> bytes:
    """A JPEG whose header passes every check short of decoding (format, size, end marker),
    with a Huffman table no decoder accepts."""
    jpeg = bytearray(encode(np.full((20, 20, 3), 128, np.uint8), "JPEG"))
    table = jpeg.index(b"\xff\xc4")
    jpeg[table + 5 : table + 21] = b"\xff" * 16  # 16 code-length counts that overflow
    return bytes(jpeg)


def test_undecodable_images_are_skipped_in_training_and_named_in_evaluation(tree):
    broken = _undecodable_jpeg()
    assert imagefile.check(broken) == ("jpeg", None)
    (tree / "train" / "bee" / "broken.jpg").write_bytes(broken)
    (tree / "validation" / "bee" / "broken.jpg").write_bytes(broken)
    source = sources.open_source(f"folder:{tree}")
    assert source.info.num_examples == {"train": 13, "validation": 7}

    def first_batch(skip_undecodable):
        training = pipeline.Training(
            preprocessing=preprocess.TrainPreprocessing(),
            shuffle_buffer=1,  # the files' order is shuffled, epochs stay apart
            skip_undecodable=skip_undecodable,
        )
        ds = pipeline.build_dataset(
            source,
            split="train",
            batch_size=12,
            geometry=GEOMETRY_16,
            training=training,
            seed=1,
            deterministic=True,
        )
        return list(ds.take(2))[0]  # two batches: 24 > 13 files, the broken one is read

    images, labels = first_batch(skip_undecodable=True)  # the first epoch without it
    assert sorted(labels.numpy().tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    np.testing.assert_array_equal(first_batch(skip_undecodable=True)[0], images)
    undecodable = pytest.raises(
        sources.DataError, match=r"^an image of the data cannot be decoded \("
    )
    with undecodable, sources.reading(source):
        first_batch(skip_undecodable=False)
    evaluation = pipeline.build_dataset(
        source, split="validation", batch_size=4, geometry=GEOMETRY_16
    )
    with undecodable, sources.reading(source):
        list(evaluation)
