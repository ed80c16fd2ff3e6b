import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from official.data import pipeline, preprocess


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
