"""The augmentation registry: every augmentation by name, with its parameters from the config.

`--config.data.augment=randaugment,random_erasing` selects augmentations; `build` turns the
names and their parameters into an `Augmenter` that the input pipeline applies after the
reference crop and flip (official/data/preprocess.py):

  autoaugment     the ImageNet policy of AutoAugment (Cubuk et al. arXiv 1805.09501)
  randaugment     RandAugment(N, M) (Cubuk et al. arXiv 1909.13719)
  rotation        a uniform random rotation in [-degrees, degrees]
  cutout          a square patch set to grey (DeVries & Taylor arXiv 1708.04552)
  random_erasing  a random rectangle filled with noise (Zhong et al. arXiv 1708.04896)
  augmix          AugMix (Hendrycks et al. arXiv 1912.02781) as the Keras 3 layer

They run in that order whatever order they are named in. Every per-image augmentation takes
uint8 (H, W, 3) and a shape-(2,) seed and returns uint8 (H, W, 3), using stateless random ops
only, so it gives the same result eagerly, inside `tf.data.Dataset.map` and on every run.

The image operations follow PIL's definitions (ImageOps/ImageEnhance), which the AutoAugment
and RandAugment reference code (tensorflow/tpu autoaugment.py, timm auto_augment.py) either
calls or re-implements; tests/data/test_augment.py compares each with PIL.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from official.data import preprocess

# Grey level of pixels uncovered by geometric operations and of cutout patches; the value
# tensorflow/tpu's AutoAugment/RandAugment use (the ImageNet mean is (124, 116, 104)).
FILL = 128


# ----------------------------------------------------------------------------------------
# Image operations: uint8 (H, W, 3) in, uint8 (H, W, 3) out.


def _to_uint8(pixels: tf.Tensor) -> tf.Tensor:
    """Clips to 0..255 and truncates, as PIL's Image.blend does."""
    return tf.cast(tf.clip_by_value(pixels, 0.0, 255.0), tf.uint8)


def _blend(degenerate: tf.Tensor, image: tf.Tensor, factor) -> tf.Tensor:
    """PIL ImageEnhance: degenerate + factor × (image - degenerate), clipped and truncated."""
    degenerate = tf.cast(degenerate, tf.float32)
    return _to_uint8(degenerate + factor * (tf.cast(image, tf.float32) - degenerate))


def _luma(image: tf.Tensor) -> tf.Tensor:
    """PIL's RGB → "L" conversion in its fixed-point form, as int32 (H, W)."""
    rgb = tf.cast(image, tf.int32)
    weighted = rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000
    return tf.bitwise.right_shift(weighted, 16)


def identity(image: tf.Tensor) -> tf.Tensor:
    return image


def invert(image: tf.Tensor) -> tf.Tensor:
    return 255 - image


def auto_contrast(image: tf.Tensor) -> tf.Tensor:
    """Stretches each channel so its darkest pixel becomes 0 and its lightest 255."""
    pixels = tf.cast(image, tf.float64)  # float64: PIL computes its lookup table in Python.
    low = tf.reduce_min(pixels, axis=[0, 1])
    high = tf.reduce_max(pixels, axis=[0, 1])
    scale = 255.0 / tf.maximum(high - low, 1.0)
    stretched = tf.clip_by_value(tf.math.floor(pixels * scale - low * scale), 0.0, 255.0)
    return tf.where(high > low, tf.cast(stretched, tf.uint8), image)


def equalize(image: tf.Tensor) -> tf.Tensor:
    """Histogram equalization of each channel, with PIL ImageOps.equalize's lookup table."""
    channel_offsets = tf.range(3) * 256
    values = tf.cast(image, tf.int32) + channel_offsets
    histogram = tf.reshape(
        tf.math.bincount(tf.reshape(values, [-1]), minlength=768, maxlength=768), [3, 256]
    )
    levels = tf.range(256)
    last_level = tf.reduce_max(tf.where(histogram > 0, levels, -1), axis=1)
    last_count = tf.gather(histogram, last_level, batch_dims=1)
    step = (tf.reduce_sum(histogram, axis=1) - last_count) // 255
    safe_step = tf.maximum(step, 1)[:, None]
    cumulative = tf.cumsum(histogram, axis=1, exclusive=True)
    table = tf.minimum((safe_step // 2 + cumulative) // safe_step, 255)
    table = tf.where(step[:, None] > 0, table, levels)  # flat or single-valued channel
    return tf.cast(tf.gather(tf.reshape(table, [-1]), values), tf.uint8)


def solarize(image: tf.Tensor, threshold) -> tf.Tensor:
    """Inverts every pixel value at or above `threshold` (0..256)."""
    return tf.where(tf.cast(image, tf.int32) >= tf.cast(threshold, tf.int32), 255 - image, image)


def posterize(image: tf.Tensor, bits) -> tf.Tensor:
    """Keeps the `bits` (0..8) most significant bits of every value."""
    shift = 8 - tf.cast(bits, tf.int32)
    mask = tf.bitwise.left_shift(tf.bitwise.right_shift(255, shift), shift)
    return tf.bitwise.bitwise_and(image, tf.cast(mask, tf.uint8))


def color(image: tf.Tensor, factor) -> tf.Tensor:
    """PIL ImageEnhance.Color: 0 gives the grey image, 1 the original."""
    grey = tf.tile(_luma(image)[:, :, None], [1, 1, 3])
    return _blend(grey, image, factor)


def contrast(image: tf.Tensor, factor) -> tf.Tensor:
    """PIL ImageEnhance.Contrast: blends with the image's mean grey level."""
    mean = tf.math.floor(tf.reduce_mean(tf.cast(_luma(image), tf.float32)) + 0.5)
    return _blend(tf.fill(tf.shape(image), mean), image, factor)


def brightness(image: tf.Tensor, factor) -> tf.Tensor:
    """PIL ImageEnhance.Brightness: blends with black."""
    return _blend(tf.zeros_like(image), image, factor)


def sharpness(image: tf.Tensor, factor) -> tf.Tensor:
    """PIL ImageEnhance.Sharpness: blends with the SMOOTH-filtered image (border kept)."""
    kernel = tf.constant([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    pixels = tf.cast(image, tf.float32)
    smooth = tf.nn.depthwise_conv2d(pixels[None], kernel, [1, 1, 1, 1], padding="VALID")[0]
    smooth = tf.math.floor(tf.clip_by_value(smooth, 0.0, 255.0) + 0.5)
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    interior = tf.pad(tf.ones([height - 2, width - 2], tf.bool), [[1, 1], [1, 1]])
    degenerate = tf.where(interior[..., None], tf.pad(smooth, [[1, 1], [1, 1], [0, 0]]), pixels)
    return _blend(degenerate, image, factor)


def affine(image: tf.Tensor, matrix: Sequence, fill: int = FILL) -> tf.Tensor:
    """PIL's Image.transform(AFFINE, matrix, NEAREST): output pixel (x, y) samples the input
    at (a x + b y + c, d x + e y + f) for matrix (a, b, c, d, e, f), in PIL's convention of
    pixel centres at half-integers; uncovered pixels get `fill`."""
    a, b, c, d, e, f = (tf.cast(v, tf.float32) for v in matrix)
    # TensorFlow puts pixel centres at integers and rounds to the nearest one where PIL
    # floors: shift by half a pixel, less a little so that ties round up as floor() does.
    shift = 0.5 - 1.0 / 1024
    transform = tf.stack([a, b, c + 0.5 * (a + b) - shift, d, e, f + 0.5 * (d + e) - shift, 0, 0])
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform[None],
        output_shape=tf.shape(image)[:2],
        fill_value=float(fill),
        interpolation="NEAREST",
        fill_mode="CONSTANT",
    )[0]


def rotate(image: tf.Tensor, degrees, fill: int = FILL) -> tf.Tensor:
    """Rotates counter-clockwise about the image centre (PIL Image.rotate)."""
    angle = tf.cast(degrees, tf.float32) * (math.pi / 180.0)
    cos, sin = tf.cos(angle), tf.sin(angle)
    center_x = tf.cast(tf.shape(image)[1], tf.float32) / 2.0
    center_y = tf.cast(tf.shape(image)[0], tf.float32) / 2.0
    # Inverse map: input = R(-angle) (output - centre) + centre, in PIL's y-down coordinates.
    matrix = (
        cos,
        -sin,
        center_x - cos * center_x + sin * center_y,
        sin,
        cos,
        center_y - sin * center_x - cos * center_y,
    )
    return affine(image, matrix, fill)


def shear_x(image: tf.Tensor, factor, fill: int = FILL) -> tf.Tensor:
    return affine(image, (1.0, factor, 0.0, 0.0, 1.0, 0.0), fill)


def shear_y(image: tf.Tensor, factor, fill: int = FILL) -> tf.Tensor:
    return affine(image, (1.0, 0.0, 0.0, factor, 1.0, 0.0), fill)


def translate_x(image: tf.Tensor, pixels, fill: int = FILL) -> tf.Tensor:
    return affine(image, (1.0, 0.0, pixels, 0.0, 1.0, 0.0), fill)


def translate_y(image: tf.Tensor, pixels, fill: int = FILL) -> tf.Tensor:
    return affine(image, (1.0, 0.0, 0.0, 0.0, 1.0, pixels), fill)


# ----------------------------------------------------------------------------------------
# AutoAugment and RandAugment.

# Magnitude ranges of AutoAugment's search space (arXiv 1805.09501 Table 1 / Appendix): a
# magnitude fraction f in [0, 1] maps linearly onto [low, high]. Translation is given as a
# fraction of the image side: the paper's ±150 px at its 331 px ImageNet resolution (0.45,
# timm's value; tensorflow/tpu's RandAugment uses 100 px at 224 ≈ 0.45).
_RANGES = {
    "ShearX": (0.0, 0.3),
    "ShearY": (0.0, 0.3),
    "TranslateX": (0.0, 0.45),
    "TranslateY": (0.0, 0.45),
    "Rotate": (0.0, 30.0),
    "Solarize": (0.0, 256.0),
    "Posterize": (4.0, 8.0),
    "Color": (0.1, 1.9),
    "Contrast": (0.1, 1.9),
    "Brightness": (0.1, 1.9),
    "Sharpness": (0.1, 1.9),
}
# Operations whose magnitude is applied with a random sign (±shear, ±translation, ±angle).
_SIGNED = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")


def apply_op(name: str, image: tf.Tensor, fraction, negate) -> tf.Tensor:
    """One AutoAugment/RandAugment operation at magnitude fraction f (1.0 = top of range).

    Args:
      name: an operation name ("Rotate", "Equalize", ...).
      image: uint8 (H, W, 3).
      fraction: magnitude as a fraction of the range; above 1 extrapolates (RandAugment's
        M > 10), with arguments clipped to what the operation accepts.
      negate: bool tensor; flips the sign of a signed operation.

    Returns:
      uint8 (H, W, 3).
    """
    if name in ("Identity", "AutoContrast", "Equalize", "Invert"):
        return {"Identity": identity, "AutoContrast": auto_contrast, "Equalize": equalize}.get(
            name, invert
        )(image)
    low, high = _RANGES[name]
    value = low + (high - low) * tf.cast(fraction, tf.float32)
    if name in _SIGNED:
        value = tf.where(negate, -value, value)
    if name == "Rotate":
        return rotate(image, value)
    if name in ("ShearX", "ShearY"):
        return (shear_x if name == "ShearX" else shear_y)(image, value)
    if name in ("TranslateX", "TranslateY"):
        axis = 1 if name == "TranslateX" else 0
        side = tf.cast(tf.shape(image)[axis], tf.float32)
        pixels = tf.clip_by_value(value, -1.0, 1.0) * side
        return (translate_x if name == "TranslateX" else translate_y)(image, pixels)
    if name == "Solarize":
        return solarize(image, tf.clip_by_value(value, 0.0, 256.0))
    if name == "Posterize":
        return posterize(image, tf.clip_by_value(tf.math.floor(value), 0.0, 8.0))
    enhance = {"Color": color, "Contrast": contrast, "Brightness": brightness}.get(name, sharpness)
    return enhance(image, tf.maximum(value, 0.0))


# The ImageNet policy of AutoAugment (arXiv 1805.09501, Appendix, "policy found on reduced
# ImageNet"): 25 sub-policies of two (operation, probability, magnitude 0..9) steps. The same
# 25 rows are timm's `auto_augment_policy_original` and torchvision's
# AutoAugmentPolicy.IMAGENET; the magnitude of AutoContrast/Equalize/Invert is unused.
AUTOAUGMENT_IMAGENET_POLICY = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
    (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
    (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, 4), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, 7)),
    (("Posterize", 0.8, 5), ("Equalize", 1.0, 2)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, 8), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, 2)),
    (("Equalize", 0.0, 7), ("Equalize", 0.8, 8)),
    (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, 8)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, 9)),
    (("Color", 0.4, 0), ("Equalize", 0.6, 3)),
    (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
    (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
)
# The paper discretizes each range into 10 uniformly spaced values: magnitude m → m / 9.
# (timm divides by 10 instead; torchvision uses m / 9 but reverses Posterize and Solarize.)
_AUTOAUGMENT_LEVELS = 9.0

# RandAugment's 14 transformations (arXiv 1909.13719 §3), chosen uniformly, each applied with
# the shared magnitude M on tensorflow/tpu's scale: M / 10 of the range, M = 9 for ResNet-50
# and up to 28 for EfficientNet-B7 (the paper's Table 4 / Figure 3 values), extrapolating
# linearly above 10 as the reference does. tensorflow/tpu's implementation also offers
# Invert, Cutout and SolarizeAdd and skips each chosen op with probability 0.2-0.8; the paper
# (and this code) always applies it, with Identity among the choices.
RANDAUGMENT_OPS = (
    "Identity",
    "AutoContrast",
    "Equalize",
    "Rotate",
    "Solarize",
    "Color",
    "Posterize",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
)
RANDAUGMENT_MAX_LEVEL = 10.0


def _apply_one_of(names: Sequence[str], index, image: tf.Tensor, fraction, negate) -> tf.Tensor:
    """apply_op(names[index], ...): one flat switch over the operations."""
    image = tf.switch_case(
        index,
        [(lambda name=name: apply_op(name, image, fraction, negate)) for name in names],
    )
    image.set_shape([None, None, 3])
    return image


# The policy as tensors over one table of operations: a sub-policy is two switch_case
# lookups, not 25 nested branches (8x faster to build and to run inside tf.data here).
_AUTOAUGMENT_OPS = ("Identity",) + tuple(
    sorted({name for steps in AUTOAUGMENT_IMAGENET_POLICY for name, _, _ in steps})
)
_AUTOAUGMENT_TABLE = np.array(
    [
        [(_AUTOAUGMENT_OPS.index(name), probability, level) for name, probability, level in steps]
        for steps in AUTOAUGMENT_IMAGENET_POLICY
    ],
    dtype=np.float32,
)  # [sub-policy, step, (operation, probability, magnitude)]


def autoaugment(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Applies one uniformly chosen sub-policy of the AutoAugment ImageNet policy: each of its
    two steps runs with its probability and magnitude."""
    choice_seed, step_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    index = tf.random.stateless_uniform(
        [], choice_seed, maxval=len(AUTOAUGMENT_IMAGENET_POLICY), dtype=tf.int32
    )
    steps = tf.gather(tf.constant(_AUTOAUGMENT_TABLE), index)
    draws = tf.random.stateless_uniform([2, 2], step_seed)  # [step, (apply?, sign)]
    for step in range(2):
        applied = draws[step, 0] < steps[step, 1]
        operation = tf.where(applied, tf.cast(steps[step, 0], tf.int32), 0)  # 0: Identity
        fraction = steps[step, 2] / _AUTOAUGMENT_LEVELS
        image = _apply_one_of(_AUTOAUGMENT_OPS, operation, image, fraction, draws[step, 1] < 0.5)
    return image


def randaugment(
    image: tf.Tensor, seed: tf.Tensor, *, randaugment_num_ops: int, randaugment_magnitude: float
) -> tf.Tensor:
    """RandAugment: N = `randaugment_num_ops` operations, each chosen uniformly, at magnitude
    M = `randaugment_magnitude` (tensorflow/tpu's scale, 10 = the top of each range)."""
    num_ops = randaugment_num_ops
    choice_seed, sign_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    choices = tf.random.stateless_uniform(
        [num_ops], choice_seed, maxval=len(RANDAUGMENT_OPS), dtype=tf.int32
    )
    negate = tf.random.stateless_uniform([num_ops], sign_seed) < 0.5
    fraction = randaugment_magnitude / RANDAUGMENT_MAX_LEVEL
    for layer in range(num_ops):
        image = _apply_one_of(RANDAUGMENT_OPS, choices[layer], image, fraction, negate[layer])
    return image


# ----------------------------------------------------------------------------------------
# Occlusion and rotation.

# Random erasing (arXiv 1708.04896 §3.1): probability p = 0.5, erased area 2%-40% of the
# image, aspect ratio in [0.3, 1/0.3], pixels replaced by random values (the paper's best).
ERASING_AREA_RANGE = (0.02, 0.4)
ERASING_ASPECT_RANGE = (0.3, 1.0 / 0.3)
ERASING_ATTEMPTS = 10


def _box_mask(height, width, top, left, box_height, box_width) -> tf.Tensor:
    """bool (H, W, 1): True inside the box (clipped to the image)."""
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    inside = (rows >= top) & (rows < top + box_height) & (cols >= left) & (cols < left + box_width)
    return inside[..., None]


def cutout(image: tf.Tensor, seed: tf.Tensor, *, cutout_fraction: float) -> tf.Tensor:
    """Greys out a square of side cutout_fraction × the shorter side, centred anywhere.

    DeVries & Taylor (arXiv 1708.04552 §3) centre the square uniformly over the image and let
    it be clipped at the borders; their CIFAR-10 patch is 16 px of 32 (0.5). Its value is the
    zero of the normalized input, i.e. the mean: grey 128 here.
    """
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    side = tf.cast(
        tf.math.round(cutout_fraction * tf.cast(tf.minimum(height, width), tf.float32)), tf.int32
    )
    y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    center_y = tf.random.stateless_uniform([], y_seed, maxval=height, dtype=tf.int32)
    center_x = tf.random.stateless_uniform([], x_seed, maxval=width, dtype=tf.int32)
    mask = _box_mask(height, width, center_y - side // 2, center_x - side // 2, side, side)
    return tf.where(mask, tf.constant(FILL, tf.uint8), image)


def random_erasing(image: tf.Tensor, seed: tf.Tensor, *, erasing_probability: float) -> tf.Tensor:
    """With `erasing_probability` (the paper's p), replaces a random rectangle by uniform
    noise (arXiv 1708.04896).

    Of ERASING_ATTEMPTS candidate rectangles, the first that fits inside the image is used;
    when none fits, the image is left unchanged.
    """
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    area_seed, aspect_seed, position_seed, noise_seed, apply_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 5)
    )
    area = tf.cast(height * width, tf.float32) * tf.random.stateless_uniform(
        [ERASING_ATTEMPTS], area_seed, *ERASING_AREA_RANGE
    )
    aspect = tf.random.stateless_uniform([ERASING_ATTEMPTS], aspect_seed, *ERASING_ASPECT_RANGE)
    box_heights = tf.cast(tf.math.round(tf.sqrt(area * aspect)), tf.int32)
    box_widths = tf.cast(tf.math.round(tf.sqrt(area / aspect)), tf.int32)
    fits = (box_heights < height) & (box_widths < width)
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
    box_height, box_width = box_heights[first], box_widths[first]
    position = tf.random.stateless_uniform([2], position_seed)
    top = tf.cast(position[0] * tf.cast(height - box_height + 1, tf.float32), tf.int32)
    left = tf.cast(position[1] * tf.cast(width - box_width + 1, tf.float32), tf.int32)
    top = tf.minimum(top, height - box_height)
    left = tf.minimum(left, width - box_width)
    chosen = tf.random.stateless_uniform([], apply_seed) < erasing_probability
    apply = tf.reduce_any(fits) & chosen
    mask = _box_mask(height, width, top, left, box_height, box_width) & apply
    noise = tf.random.stateless_uniform(tf.shape(image), noise_seed, maxval=256, dtype=tf.int32)
    return tf.where(mask, tf.cast(noise, tf.uint8), image)


def random_rotation(image: tf.Tensor, seed: tf.Tensor, *, rotation_degrees: float):
    """Rotates by an angle drawn uniformly from [-rotation_degrees, rotation_degrees]."""
    angle = tf.random.stateless_uniform([], seed, -rotation_degrees, rotation_degrees)
    return rotate(image, angle)


# ----------------------------------------------------------------------------------------
# The registry.


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """One augmentation, ready to apply.

    Attributes:
      name: its registry name.
      apply: per image: (uint8 (H, W, 3), seed (2,)) → uint8 image; when `batched`,
        uint8 (B, H, W, 3) → uint8 (B, H, W, 3) (seeded at construction).
      batched: runs on whole batches after `batch()` (Keras preprocessing layers).
      stateful: keeps its random state in a variable (Keras layers): reproducible only when
        batches are processed one at a time.
    """

    name: str
    apply: Callable[..., tf.Tensor]
    batched: bool = False
    stateful: bool = False


def _keras_augmix(seed: int) -> Augmentation:
    # Keras 3's AugMix layer (defaults as in the paper's ImageNet code: 3 chains, depth 1-3,
    # Dirichlet/Beta α = 1). Keras draws seeds from a SeedGenerator variable, not per example.
    layer = keras.layers.AugMix(value_range=(0, 255), seed=seed)

    def apply(images):
        mixed = layer(tf.cast(images, tf.float32), training=True)
        return preprocess.to_uint8(mixed)

    return Augmentation("augmix", apply, batched=True, stateful=True)


# Per-image augmentations by name: (uint8 image, seed, **parameters) → uint8 image. Their
# keyword arguments are the `--config.data.*` fields of the same names (`parameter_names`).
_PER_IMAGE: dict[str, Callable[..., tf.Tensor]] = {
    "autoaugment": autoaugment,
    "randaugment": randaugment,
    "rotation": random_rotation,
    "cutout": cutout,
    "random_erasing": random_erasing,
}
# Batch-level augmentations by name: seed → Augmentation.
_PER_BATCH: dict[str, Callable[[int], Augmentation]] = {"augmix": _keras_augmix}
# The order the augmentations run in, whatever order they are named in.
_ORDER = (*_PER_IMAGE, *_PER_BATCH)


def _parameters(function: Callable) -> list[str]:
    names = inspect.signature(function).parameters
    return [name for name in names if name not in ("image", "seed")]


def parameter_names() -> tuple[str, ...]:
    """Every augmentation parameter (each one a `--config.data.*` field of that name)."""
    return tuple(name for function in _PER_IMAGE.values() for name in _parameters(function))


def names() -> tuple[str, ...]:
    """Registered augmentation names, in the order they run."""
    return _ORDER


def parse_names(values: Sequence[str]) -> tuple[str, ...]:
    """("randaugment,cutout",) or ("randaugment", "cutout") → ("randaugment", "cutout").

    Raises:
      ValueError: an unknown name (the message lists the known ones).
    """
    parsed = tuple(name.strip() for value in values for name in value.split(",") if name.strip())
    for name in parsed:
        if name not in _ORDER:
            raise ValueError(f"unknown augmentation {name!r}; choose from {', '.join(names())}")
    return parsed


@dataclasses.dataclass(frozen=True)
class Augmenter:
    """The selected augmentations, split into per-image and per-batch stages."""

    per_image: tuple[Augmentation, ...] = ()
    per_batch: tuple[Augmentation, ...] = ()

    @property
    def stateful(self) -> bool:
        return any(a.stateful for a in self.per_image + self.per_batch)

    def __bool__(self) -> bool:
        return bool(self.per_image or self.per_batch)

    def apply_image(self, image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """Runs the per-image augmentations on uint8 (H, W, 3), each with its own seed."""
        if not self.per_image:
            return image
        seeds = tf.random.experimental.stateless_split(seed, len(self.per_image))
        for index, augmentation in enumerate(self.per_image):
            image = augmentation.apply(image, seeds[index])
        return image

    def apply_batch(self, images: tf.Tensor) -> tf.Tensor:
        """Runs the per-batch augmentations on uint8 (B, H, W, 3)."""
        for augmentation in self.per_batch:
            images = augmentation.apply(images)
        return images


def build(selected: Sequence[str], parameters: Mapping[str, Any], *, seed: int) -> Augmenter:
    """The Augmenter for `selected` names (any order; duplicates ignored).

    Args:
      selected: augmentation names, or comma-separated lists of them.
      parameters: the value of every parameter the selected augmentations take, by name
        (`parameter_names`).
      seed: seed of the stateful (Keras layer) augmentations; the others are seeded per image.

    Raises:
      ValueError: an unknown name or a missing parameter.
    """
    wanted = set(parse_names(selected))
    per_image, per_batch = [], []
    for name in _ORDER:
        if name not in wanted:
            continue
        if name in _PER_BATCH:
            per_batch.append(_PER_BATCH[name](seed))
            continue
        function = _PER_IMAGE[name]
        missing = [p for p in _parameters(function) if p not in parameters]
        if missing:
            raise ValueError(f"augmentation {name!r} needs {', '.join(missing)}")
        bound = {p: parameters[p] for p in _parameters(function)}
        per_image.append(Augmentation(name, functools.partial(function, **bound)))
    return Augmenter(per_image=tuple(per_image), per_batch=tuple(per_batch))
