"""The reference per-image preprocessing, in TensorFlow ops (no Python runs per image).

Training: a random crop decoded straight from the JPEG bytes (Inception-style or VGG scale
jittering), resize, horizontal flip, and optionally vertical flip, colour jitter, hue jitter and
AlexNet PCA lighting.
Evaluation: the centre crop. Images leave these functions as uint8 (size, size, 3): the
per-image float normalization costs about 40 % of the pipeline's throughput on this machine
(../shared/reference/perf-baseline.md §e), so it happens once per batch in the model's first
layer (official.models.layers.input_block) instead.

Every random choice takes an explicit shape-(2,) seed and uses stateless random ops, so the
same seed gives the same image eagerly, inside `tf.data.Dataset.map`, and on every run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from official.data import catalog

# Inception-style crop (Szegedy et al. arXiv 1409.4842 §6; tensorflow/tpu preprocessing.py):
# 8%-100% of the area, aspect ratio 3/4..4/3, 10 attempts, at least 10% of the image covered.
INCEPTION_AREA_RANGE = (0.08, 1.0)
INCEPTION_ASPECT_RANGE = (3.0 / 4.0, 4.0 / 3.0)
INCEPTION_MAX_ATTEMPTS = 10
INCEPTION_MIN_OBJECT_COVERED = 0.1
# When all attempts fail, tensorflow/tpu takes the centre crop of the evaluation pipeline
# (224/256 of the shorter side at 224 px).
FALLBACK_CROP_FRACTION = 0.875

# VGG scale jittering (Simonyan & Zisserman arXiv 1409.1556 §3.1): the shorter side is
# rescaled to S drawn uniformly from [256, 512], then a random 224x224 crop is taken. Other
# output sizes scale the range by image_size / 224.
SCALE_JITTER_RANGE = (256, 512)
_SCALE_JITTER_REFERENCE_SIZE = 224

TRAIN_CROPS = ("inception", "scale_jitter", "resize")
# tf.image.resize methods a model's reference pipeline may name (`--config.data.interpolation`).
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "area")

# ITU-R BT.601 luma weights, as in PIL's "L" conversion and tf.image.rgb_to_grayscale.
_LUMA = (0.299, 0.587, 0.114)
# RGB → YIQ (NTSC): luma Y and the two chroma axes I, Q. The chroma rows to 4 decimals, which
# sum to 0 (grey has no chroma); MXNet's HueJitterAug rounds them to 3, which do not.
_RGB_TO_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.5959, -0.2746, -0.3213], [0.2115, -0.5227, 0.3112]], np.float64
)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


@dataclasses.dataclass(frozen=True)
class Geometry:
    """The model's input geometry: the images it sees and how they are cut out.

    Attributes:
      image_size: side of the square images the model takes (training and evaluation).
      crop_fraction: evaluation center crop, as image_size / resize size (0.875 = 224/256).
      interpolation: resize method, one of INTERPOLATIONS.
    """

    image_size: int
    crop_fraction: float
    interpolation: str

    @property
    def resize_size(self) -> int:
        """Shorter side before the center crop (256 for 224 at 0.875): the reference test
        scale S."""
        return int(round(self.image_size / self.crop_fraction))


@dataclasses.dataclass(frozen=True)
class TrainPreprocessing:
    """The reference training preprocessing of `train_image`; each field is the
    `--config.data.*` field of the same name.

    Attributes:
      train_crop: "inception" (random area and aspect), "scale_jitter" (VGG) or "resize" (the
        whole image, for tiny images such as digits).
      scale_jitter: shorter-side range (S_min, S_max) of scale_jitter for a 224 output.
      random_flip: flip left-right with probability 1/2.
      random_vertical_flip: flip upside down with probability 1/2 (independently).
      color_jitter: strength s of `color_jitter`; 0 disables it.
      hue_jitter: strength h of `hue_jitter`; 0 disables it.
      pca_lighting: σ of `pca_lighting`; 0 disables it.
    """

    train_crop: str = "inception"
    scale_jitter: tuple[int, int] = SCALE_JITTER_RANGE
    random_flip: bool = True
    random_vertical_flip: bool = False
    color_jitter: float = 0.0
    hue_jitter: float = 0.0
    pca_lighting: float = 0.0


def _little_endian(encoded: tf.Tensor, offset: int, size: int) -> tf.Tensor:
    """The unsigned little-endian integer of `size` bytes at `offset`, as int64 (0 past the
    end)."""
    raw = tf.io.decode_raw(tf.strings.substr(encoded, offset, size), tf.uint8)
    raw = tf.cast(tf.pad(raw, [[0, size - tf.shape(raw)[0]]]), tf.int64)
    return tf.reduce_sum(raw * tf.constant([256**i for i in range(size)], tf.int64))


def header_pixels(encoded: tf.Tensor) -> tf.Tensor:
    """Pixels (height × width, int64) an encoded image claims in its header, without decoding:
    JPEG (its frame header), PNG, GIF, BMP; 0 for other bytes (the decoders reject them).
    The same sizes as official.data.imagefile reads on the host."""
    head = tf.strings.substr(encoded, 0, 8)

    def big_endian_32(offset):
        return tf.reduce_sum(
            tf.cast(tf.io.decode_raw(tf.strings.substr(encoded, offset, 4), tf.uint8), tf.int64)
            * tf.constant([2**24, 2**16, 2**8, 1], tf.int64)
        )

    def jpeg():
        shape = tf.cast(tf.io.extract_jpeg_shape(encoded), tf.int64)
        return shape[0] * shape[1]

    def png():
        return big_endian_32(16) * big_endian_32(20)

    def gif():
        return _little_endian(encoded, 6, 2) * _little_endian(encoded, 8, 2)

    def bmp():
        def magnitude(offset):
            value = _little_endian(encoded, offset, 4)
            return tf.where(value >= 2**31, 2**32 - value, value)  # Signed: top-down BMPs.

        return magnitude(18) * magnitude(22)

    long_enough = tf.strings.length(encoded) >= 26
    return tf.case(
        [
            (tf.io.is_jpeg(encoded), jpeg),
            (long_enough & tf.equal(head, b"\x89PNG\r\n\x1a\n"), png),
            (
                long_enough
                & tf.reduce_any(tf.equal(tf.strings.substr(head, 0, 6), [b"GIF87a", b"GIF89a"])),
                gif,
            ),
            (long_enough & tf.equal(tf.strings.substr(head, 0, 2), b"BM"), bmp),
        ],
        default=lambda: tf.constant(0, tf.int64),
        exclusive=False,
    )


def decode(encoded: tf.Tensor) -> tf.Tensor:
    """Decodes JPEG/PNG/GIF/BMP bytes to uint8 RGB (first frame of a GIF)."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def decode_window(encoded: tf.Tensor, window_fn: Callable[[tf.Tensor], tf.Tensor]) -> tf.Tensor:
    """Decodes only the window [y, x, h, w] = window_fn((height, width, channels)).

    JPEGs take their shape from the header and use the fused `decode_and_crop_jpeg`, which
    skips the IDCT of blocks outside the window (1.24x faster than decode-then-crop on
    ImageNet-like files, ../shared/reference/perf-baseline.md §e); other formats are decoded
    whole and sliced. One branch per image, whatever the format.
    """

    def fused():
        window = window_fn(tf.io.extract_jpeg_shape(encoded))
        return tf.image.decode_and_crop_jpeg(encoded, window, channels=3)

    def generic():
        image = decode(encoded)
        window = window_fn(tf.shape(image))
        return tf.slice(image, [window[0], window[1], 0], [window[2], window[3], 3])

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
    return tf.where(failed, center_crop_window(shape, FALLBACK_CROP_FRACTION), window)


def scale_jitter_window(
    shape: tf.Tensor,
    seed: tf.Tensor,
    *,
    image_size: int,
    scale_range: tuple[int, int] = SCALE_JITTER_RANGE,
) -> tf.Tensor:
    """[y, x, h, w] of VGG's "rescale the shorter side to S, then crop image_size" window.

    Rescaling the whole image to shorter side S and cutting an image_size square equals
    cutting a square of side shorter_side × image_size / S from the original and resizing it
    to image_size, which lets the crop be decoded directly (fused) from the JPEG.

    Args:
      shape: (height, width, channels) of the image.
      seed: shape-(2,) int seed.
      image_size: output side.
      scale_range: [S_min, S_max] for a 224 output; scaled by image_size / 224.

    Returns:
      The crop window.
    """
    scale_seed, y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    factor = image_size / _SCALE_JITTER_REFERENCE_SIZE
    shorter_side = tf.random.stateless_uniform(
        [], scale_seed, minval=scale_range[0] * factor, maxval=scale_range[1] * factor
    )
    height, width = shape[0], shape[1]
    side = tf.cast(tf.minimum(height, width), tf.float32) * image_size / shorter_side
    side = tf.clip_by_value(tf.cast(tf.math.round(side), tf.int32), 1, tf.minimum(height, width))
    y = tf.random.stateless_uniform([], y_seed, maxval=height - side + 1, dtype=tf.int32)
    x = tf.random.stateless_uniform([], x_seed, maxval=width - side + 1, dtype=tf.int32)
    return tf.stack([y, x, side, side])


def to_uint8(pixels: tf.Tensor, *, clip: bool = True) -> tf.Tensor:
    """Rounds float pixels to uint8 (half up); `clip=False` when they are known to lie in
    0..255. Cheaper than round + saturate_cast, which cost 20 % of the eval pipeline here."""
    pixels = pixels + 0.5
    if clip:
        pixels = tf.clip_by_value(pixels, 0.0, 255.0)
    return tf.cast(pixels, tf.uint8)


def resize_uint8(image: tf.Tensor, size, method: str = "bilinear") -> tf.Tensor:
    """Resizes to (size, size), or to size = (height, width), and rounds back to uint8.

    No antialiasing, like tensorflow/tpu, tf-models and keras image_dataset_from_directory:
    the antialiased kernel took 2.2x as long as the decode-sized resize here and would have
    cost a quarter of the pipeline's throughput.
    """
    size = [size, size] if isinstance(size, int) else size
    if method != "nearest":
        # The same numbers either way (the kernels convert every pixel to float32 first), but
        # TensorFlow's float32 kernels are faster than its uint8 ones: bilinear from a 328x328
        # crop to 224x224 took 165 µs instead of 230 µs on one core here, cast included, and
        # bicubic 370 instead of 470 µs; for a whole 500x375 image the cast eats the gain
        # (245 vs 250 µs). tests/data/test_preprocess.py checks that the pixels are equal.
        image = tf.cast(image, tf.float32)
    resized = tf.image.resize(image, size, method=method)
    if resized.dtype == tf.uint8:  # nearest-neighbour keeps the input dtype
        return resized
    # Bilinear and area outputs are convex combinations of input pixels: no clipping needed.
    return to_uint8(resized, clip=method not in ("bilinear", "area"))


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """degenerate + factor × (image - degenerate): factor 0 gives degenerate, 1 the image."""
    return degenerate + factor * (image - degenerate)


def _grayscale(image: tf.Tensor) -> tf.Tensor:
    """Luma of a float (..., 3) image, keeping a size-1 channel axis."""
    return tf.tensordot(image, tf.constant(_LUMA, image.dtype), axes=[[-1], [0]])[..., None]


def color_jitter(image: tf.Tensor, seed: tf.Tensor, strength: float) -> tf.Tensor:
    """Scales brightness, contrast and saturation by factors drawn from [1-s, 1+s].

    Bag of Tricks (He et al. arXiv 1812.01187 §2.1) draws the coefficients from [0.6, 1.4]
    (strength 0.4), as GluonCV's ColorJitter does. Brightness multiplies the pixels, contrast
    blends with the image's mean luma, saturation with the per-pixel luma; applied in that
    fixed order.

    Args:
      image: float32 (H, W, 3) on 0..255.
      seed: shape-(2,) int seed.
      strength: s in [0, 1).

    Returns:
      float32 (H, W, 3), not clipped.
    """
    factors = tf.random.stateless_uniform([3], seed, minval=1.0 - strength, maxval=1.0 + strength)
    image = image * factors[0]
    image = _blend(tf.reduce_mean(_grayscale(image)), image, factors[1])
    return _blend(_grayscale(image), image, factors[2])


def hue_jitter(image: tf.Tensor, seed: tf.Tensor, strength: float) -> tf.Tensor:
    """Turns the hue by α · 180°, α drawn from [-h, h]: a rotation of the chroma plane (I, Q)
    of YIQ that keeps the luma Y.

    The "approximate linear transformation" of MXNet's HueJitterAug (mx.image), except that
    its YIQ coefficients are rounded less (4 decimals, the chroma rows summing to 0) and YIQ →
    RGB is the exact inverse of RGB → YIQ rather than a rounding of it, so α = 0 is the
    identity and grey stays grey (MXNet turns grey 100 into (100.03, 100.04, 99.72) at α = 0).

    Bag of Tricks (arXiv 1812.01187 §2.1) scales "hue, saturation, and brightness with
    coefficients uniformly drawn from [0.6, 1.4]". An angle has no scale; MXNet, the authors'
    framework, takes one parameter h per property in CreateAugmenter, giving factors 1 ± h for
    brightness/contrast/saturation and α ∈ [-h, h] for hue, so hue_jitter = 0.4 (with
    color_jitter = 0.4) is that reading. GluonCV's ImageNet script (train_imagenet.py) jitters
    brightness, contrast and saturation only: hue_jitter = 0. Applied after `color_jitter` and
    before `pca_lighting`, as in CreateAugmenter.

    Args:
      image: float32 (H, W, 3) on 0..255.
      seed: shape-(2,) int seed.
      strength: h in [0, 1].

    Returns:
      float32 (H, W, 3), not clipped.
    """
    alpha = tf.random.stateless_uniform([], seed, minval=-strength, maxval=strength)
    to_yiq = tf.constant(_RGB_TO_YIQ, tf.float32)
    to_rgb = tf.constant(_YIQ_TO_RGB, tf.float32)
    cos, sin = tf.cos(alpha * np.pi), tf.sin(alpha * np.pi)
    rotation = tf.stack(
        [tf.stack([1.0, 0.0, 0.0]), tf.stack([0.0, cos, -sin]), tf.stack([0.0, sin, cos])]
    )
    matrix = to_rgb @ rotation @ to_yiq
    return tf.tensordot(image, matrix, axes=[[-1], [1]])


def pca_lighting(image: tf.Tensor, seed: tf.Tensor, sigma: float) -> tf.Tensor:
    """AlexNet lighting noise: adds Σ_j α_j λ_j v_j to every pixel, α_j ~ N(0, σ).

    Krizhevsky et al. 2012 §4.1 (σ = 0.1) with ImageNet's RGB principal components
    (catalog.IMAGENET_PCA_*).

    Args:
      image: float32 (H, W, 3) on 0..255.
      seed: shape-(2,) int seed.
      sigma: standard deviation of α.

    Returns:
      float32 (H, W, 3), not clipped.
    """
    alpha = tf.random.stateless_normal([3], seed, stddev=sigma)
    eigenvalues = tf.constant(catalog.IMAGENET_PCA_EIGENVALUES, tf.float32)
    eigenvectors = tf.constant(catalog.IMAGENET_PCA_EIGENVECTORS, tf.float32)
    return image + tf.linalg.matvec(eigenvectors, alpha * eigenvalues)


def train_image(
    encoded: tf.Tensor,
    seed: tf.Tensor,
    *,
    geometry: Geometry,
    preprocessing: TrainPreprocessing,
) -> tf.Tensor:
    """Encoded bytes → augmented uint8 training image.

    Args:
      encoded: encoded image bytes (scalar string).
      seed: shape-(2,) int seed; the same seed gives the same image.
      geometry: output side and resize method (the crop fraction is evaluation's).
      preprocessing: crop, flip, colour jitter and lighting.

    Returns:
      uint8 image of shape (image_size, image_size, 3).
    """
    crop_seed, flip_seed, color_seed, lighting_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 4)
    )
    crop, image_size = preprocessing.train_crop, geometry.image_size
    if crop == "inception":
        image = decode_window(encoded, lambda shape: inception_crop_window(shape, crop_seed))
    elif crop == "scale_jitter":
        image = decode_window(
            encoded,
            lambda shape: scale_jitter_window(
                shape, crop_seed, image_size=image_size, scale_range=preprocessing.scale_jitter
            ),
        )
    elif crop == "resize":
        image = decode(encoded)
    else:
        raise ValueError(f"unknown training crop {crop!r}; choose one of {', '.join(TRAIN_CROPS)}")
    image = resize_uint8(image, image_size, geometry.interpolation)
    if preprocessing.random_flip:
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    if preprocessing.random_vertical_flip:
        # Its own seed folded from the flip's, so the seeds of the other choices stay as they were.
        image = tf.image.stateless_random_flip_up_down(
            image, tf.random.experimental.stateless_fold_in(flip_seed, 1)
        )
    if preprocessing.color_jitter or preprocessing.hue_jitter or preprocessing.pca_lighting:
        # One float pass for all, rounded back to uint8 once.
        pixels = tf.cast(image, tf.float32)
        if preprocessing.color_jitter:
            pixels = color_jitter(pixels, color_seed, preprocessing.color_jitter)
        if preprocessing.hue_jitter:
            hue_seed = tf.random.experimental.stateless_fold_in(color_seed, 1)
            pixels = hue_jitter(pixels, hue_seed, preprocessing.hue_jitter)
        if preprocessing.pca_lighting:
            pixels = pca_lighting(pixels, lighting_seed, preprocessing.pca_lighting)
        image = to_uint8(pixels)
    return image


def eval_image(encoded: tf.Tensor, geometry: Geometry) -> tf.Tensor:
    """Encoded bytes → center-cropped uint8 evaluation image.

    The centered square covering `geometry.crop_fraction` of the shorter side is decoded
    (fused for JPEG) and resized to `geometry.image_size`; this equals resizing the shorter
    side to image_size / crop_fraction and taking the central image_size crop (the 0.875 =
    224/256 convention of Krizhevsky et al. 2012 and every ImageNet reference).
    """
    image = decode_window(encoded, lambda shape: center_crop_window(shape, geometry.crop_fraction))
    return resize_uint8(image, geometry.image_size, geometry.interpolation)
