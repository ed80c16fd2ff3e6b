"""Crop geometry against numpy slicing of an image whose pixels name their position."""

import numpy as np
import pytest
import tensorflow as tf

from official.evaluation import crops


def _position_image(height: int, width: int) -> np.ndarray:
    """uint8 image whose channel 0 is the row and channel 1 the column of each pixel."""
    rows, columns = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([rows, columns, np.zeros_like(rows)], axis=-1).astype(np.uint8)


def test_ten_crop_is_corners_center_then_mirrors():
    image = _position_image(7, 10)
    out = crops.ten_crop(tf.constant(image), 4).numpy()
    assert out.shape == (10, 4, 4, 3)
    # (top, left) of top-left, top-right, bottom-left, bottom-right, center (offsets round up).
    origins = [(0, 0), (0, 6), (3, 0), (3, 6), (2, 3)]
    for index, (top, left) in enumerate(origins):
        expected = image[top : top + 4, left : left + 4]
        np.testing.assert_array_equal(out[index], expected)
        np.testing.assert_array_equal(out[index + 5], expected[:, ::-1])


def test_grid_crops_span_the_image_evenly():
    image = _position_image(9, 13)
    out = crops.grid_crops(tf.constant(image), 5, grid=3).numpy()
    assert out.shape == (18, 5, 5, 3)
    tops, lefts = [0, 2, 4], [0, 4, 8]  # linspace(0, 9 - 5, 3) and linspace(0, 13 - 5, 3)
    origins = [(t, s) for t in tops for s in lefts]
    for index, (top, left) in enumerate(origins):
        expected = image[top : top + 5, left : left + 5]
        np.testing.assert_array_equal(out[index], expected)
        np.testing.assert_array_equal(out[index + 9], expected[:, ::-1])
    # VGG's default: 5 × 5 crops and their flips.
    assert crops.grid_crops(tf.constant(image), 5).shape == (50, 5, 5, 3)


@pytest.mark.parametrize(
    "shape, side, expected", [((40, 60), 20, (20, 30)), ((75, 50), 64, (96, 64))]
)
def test_resize_shorter_side_keeps_the_aspect_ratio(shape, side, expected):
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    out = crops.resize_shorter_side(tf.constant(image), side, "bilinear").numpy()
    assert out.shape == (*expected, 3) and out.dtype == np.uint8
    reference = tf.image.resize(image, expected, method="bilinear").numpy()  # as center crops
    np.testing.assert_array_equal(out, np.floor(reference + 0.5).astype(np.uint8))
