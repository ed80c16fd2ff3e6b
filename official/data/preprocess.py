"""Per-image preprocessing in TensorFlow ops (runs inside tf.data maps; no Python per image).

Images leave these functions as uint8 of shape (size, size, 3): normalization happens once per
batch in the model's first layer (official.models.layers.input_block).
"""

from __future__ import annotations

import tensorflow as tf

# Inception-style crop (Szegedy et al. arXiv 1409.4842 §6; tensorflow/tpu preprocessing.py):
# 8%-100% of the area, aspect ratio 3/4..4/3, 10 attempts, at least 10% of the image covered.
INCEPTION_AREA_RANGE = (0.08, 1.0)
INCEPTION_ASPECT_RANGE = (3.0 / 4.0, 4.0 / 3.0)
INCEPTION_MAX_ATTEMPTS = 10
INCEPTION_MIN_OBJECT_COVERED = 0.1


def image_shape(encoded: tf.Tensor) -> tf.Tensor:
    """(height, width, channels) of an encoded image, reading only the header for JPEG."""
    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.extract_jpeg_shape(encoded),
        lambda: tf.shape(decode(encoded)),
    )


def decode(encoded: tf.Tensor) -> tf.Tensor:
    """Decodes JPEG/PNG/GIF/BMP bytes to uint8 RGB (first frame of a GIF)."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def decode_crop(encoded: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """Decodes only `window` = [y, x, h, w] of the image.

    JPEGs use the fused `decode_and_crop_jpeg`, which skips the IDCT of blocks outside the
    window (1.24x faster than decode-then-crop on ImageNet-like files,
    ../shared/reference/perf-baseline.md §e); other formats are decoded and sliced.
    """

    def fused():
        return tf.image.decode_and_crop_jpeg(encoded, window, channels=3)

    def generic():
        return tf.slice(decode(encoded), [window[0], window[1], 0], [window[2], window[3], 3])

    image = tf.cond(tf.io.is_jpeg(encoded), fused, generic)
    image.set_shape([None, None, 3])
    return image


def center_crop_window(shape: tf.Tensor, crop_fraction: float) -> tf.Tensor:
    """[y, x, h, w] of the centered square of side crop_fraction × the shorter side."""
    height, width = shape[0], shape[1]
    side = tf.cast(
        tf.math.round(crop_fraction * tf.cast(tf.minimum(height, width), tf.float32)), tf.int32
    )
    side = tf.maximum(side, 1)
    return tf.stack([(height - side + 1) // 2, (width - side + 1) // 2, side, side])


def inception_crop_window(shape: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """[y, x, h, w] of a random Inception-style crop, falling back to a center crop.

    Args:
      shape: (height, width, channels) of the image.
      seed: shape-(2,) int seed of the stateless sampler.

    Returns:
      The crop window.
    """
    bbox = tf.constant([0.0, 0.0, 1.0, 1.0], dtype=tf.float32, shape=[1, 1, 4])
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape,
        bounding_boxes=bbox,
        seed=seed,
        min_object_covered=INCEPTION_MIN_OBJECT_COVERED,
        aspect_ratio_range=INCEPTION_ASPECT_RANGE,
        area_range=INCEPTION_AREA_RANGE,
        max_attempts=INCEPTION_MAX_ATTEMPTS,
        use_image_if_no_bounding_boxes=True,
    )
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    # When every attempt fails the op returns the whole image; tensorflow/tpu then takes a
    # center crop instead (its `_decode_and_random_crop`), which we follow.
    failed = tf.reduce_all(tf.equal(size[:2], shape[:2]))
    return tf.cond(failed, lambda: center_crop_window(shape, 0.875), lambda: window)


def resize_uint8(image: tf.Tensor, size: int, method: str = "bilinear") -> tf.Tensor:
    """Resizes to (size, size) and rounds back to uint8 (antialiased when shrinking)."""
    # Nearest-neighbour keeps the input dtype; the other methods return float32.
    resized = tf.cast(
        tf.image.resize(image, [size, size], method=method, antialias=True), tf.float32
    )
    return tf.cast(tf.clip_by_value(tf.math.round(resized), 0.0, 255.0), tf.uint8)


def train_image(
    encoded: tf.Tensor,
    seed: tf.Tensor,
    *,
    image_size: int,
    crop: str = "inception",
    random_flip: bool = True,
    interpolation: str = "bilinear",
) -> tf.Tensor:
    """Encoded bytes → augmented uint8 training image.

    Args:
      encoded: encoded image bytes (scalar string).
      seed: shape-(2,) int seed; the same seed gives the same crop and flip.
      image_size: output side.
      crop: "inception" (random area/aspect crop) or "resize" (the whole image).
      random_flip: flip left-right with probability 1/2.
      interpolation: resize method.

    Returns:
      uint8 image of shape (image_size, image_size, 3).
    """
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if crop == "inception":
        image = decode_crop(encoded, inception_crop_window(image_shape(encoded), crop_seed))
    elif crop == "resize":
        image = decode(encoded)
    else:
        raise ValueError(f"unknown training crop {crop!r}; choose inception or resize")
    image = resize_uint8(image, image_size, interpolation)
    if random_flip:
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    return image


def eval_image(
    encoded: tf.Tensor, *, image_size: int, crop_fraction: float, interpolation: str
) -> tf.Tensor:
    """Encoded bytes → center-cropped uint8 evaluation image.

    The centered square covering `crop_fraction` of the shorter side is decoded (fused for
    JPEG) and resized to `image_size`; this equals resizing the shorter side to
    image_size / crop_fraction and taking the central image_size crop (the 0.875 = 224/256
    convention of Krizhevsky et al. 2012 and every ImageNet reference).
    """
    window = center_crop_window(image_shape(encoded), crop_fraction)
    return resize_uint8(decode_crop(encoded, window), image_size, interpolation)
