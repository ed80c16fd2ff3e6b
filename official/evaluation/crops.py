"""Test-time crops: rescaling to a test scale Q, ten-crop and VGG's grid of crops (TF ops).

Everything here runs inside tf.data maps on one decoded uint8 image (H, W, 3) and returns
uint8 images: the models normalize their own input, as in training.
"""

from __future__ import annotations

import tensorflow as tf

from official.data import preprocess

# VGG's multi-crop evaluation takes a regular 5×5 grid of crops at each test scale, plus their
# horizontal flips: 50 crops per scale, 150 over three scales (Simonyan & Zisserman arXiv
# 1409.1556 §3.2 and §4.3).
VGG_GRID = 5


def scaled_shape(height: tf.Tensor, width: tf.Tensor, shorter_side: int) -> tf.Tensor:
    """(height, width) after an isotropic rescale that makes the shorter side `shorter_side`."""
    height_f, width_f = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    factor = shorter_side / tf.minimum(height_f, width_f)
    new_height = tf.cast(tf.math.round(height_f * factor), tf.int32)
    new_width = tf.cast(tf.math.round(width_f * factor), tf.int32)
    return tf.stack([tf.maximum(new_height, shorter_side), tf.maximum(new_width, shorter_side)])


def resize_shorter_side(image: tf.Tensor, shorter_side: int, method: str) -> tf.Tensor:
    """Isotropically rescales so that the shorter side is `shorter_side` ("test scale Q").

    The resampling of the center-crop pipeline (`preprocess.resize_uint8`), keeping the aspect
    ratio instead of squashing to a square.
    """
    shape = tf.shape(image)
    return preprocess.resize_uint8(image, scaled_shape(shape[0], shape[1], shorter_side), method)


def _crop(image: tf.Tensor, top: tf.Tensor, left: tf.Tensor, size: int) -> tf.Tensor:
    return tf.slice(image, tf.stack([top, left, 0]), [size, size, 3])


def _with_flips(crops: list[tf.Tensor]) -> tf.Tensor:
    stacked = tf.stack(crops)
    return tf.concat([stacked, tf.reverse(stacked, axis=[2])], axis=0)


def ten_crop(image: tf.Tensor, crop_size: int) -> tf.Tensor:
    """The four corner crops and the center crop, then the same five flipped left-right.

    Krizhevsky et al. 2012 §4.1 ("five 224×224 patches (the four corner patches and the center
    patch) as well as their horizontal reflections (hence ten patches in all)"). The center
    offset rounds up, like `preprocess.center_crop_window`.

    Args:
      image: uint8 (H, W, 3) with H, W >= crop_size.
      crop_size: side of every crop.

    Returns:
      uint8 (10, crop_size, crop_size, 3): top-left, top-right, bottom-left, bottom-right,
      center, then their mirror images in the same order.
    """
    shape = tf.shape(image)
    bottom, right = shape[0] - crop_size, shape[1] - crop_size
    zero = tf.constant(0)
    corners = [(zero, zero), (zero, right), (bottom, zero), (bottom, right)]
    center = ((bottom + 1) // 2, (right + 1) // 2)
    return _with_flips([_crop(image, y, x, crop_size) for y, x in [*corners, center]])


def grid_offsets(length: tf.Tensor, crop_size: int, count: int) -> tf.Tensor:
    """`count` evenly spaced crop offsets from 0 to length - crop_size (rounded)."""
    last = tf.cast(length - crop_size, tf.float32)
    return tf.cast(tf.math.round(tf.linspace(0.0, last, count)), tf.int32)


def grid_crops(image: tf.Tensor, crop_size: int, grid: int = VGG_GRID) -> tf.Tensor:
    """A grid × grid lattice of crops spanning the image, then all of them flipped.

    Args:
      image: uint8 (H, W, 3) with H, W >= crop_size.
      crop_size: side of every crop.
      grid: crops along each axis (VGG: 5).

    Returns:
      uint8 (2 · grid², crop_size, crop_size, 3), row-major crops then their mirror images.
    """
    shape = tf.shape(image)
    rows = grid_offsets(shape[0], crop_size, grid)
    columns = grid_offsets(shape[1], crop_size, grid)
    return _with_flips(
        [_crop(image, rows[i], columns[j], crop_size) for i in range(grid) for j in range(grid)]
    )
