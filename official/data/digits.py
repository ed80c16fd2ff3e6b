"""The bundled quickstart dataset: UCI handwritten digits as class-per-folder PNG files.

The 1,797 8x8 images are the copy of the UCI "Optical Recognition of Handwritten Digits" test
set that scikit-learn ships as `sklearn.datasets.load_digits` (Alpaydin & Kaynak, 1998,
doi:10.24432/C50P49, CC BY 4.0). They are written once by `tools/make_digits_dataset.py` and
committed under `datasets/digits/`, so training on them needs neither scikit-learn nor a network.
"""

from __future__ import annotations

import os
import pathlib
import shutil

import numpy as np

from official import atomic
from official.errors import UserError

# Pixel values in load_digits are counts of "on" pixels in 4x4 blocks, 0..16.
_MAX_COUNT = 16


def stratified_split(labels: np.ndarray, validation_fraction: float, seed: int) -> np.ndarray:
    """Returns a boolean mask of validation examples, the same fraction drawn from every class.

    Args:
      labels: integer class label per example.
      validation_fraction: share of each class that goes to validation, in (0, 1).
      seed: seed of the permutation inside each class; the same seed gives the same split.

    Returns:
      A boolean array, True where the example belongs to the validation split.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    rng = np.random.default_rng(seed)
    is_validation = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = int(round(len(members) * validation_fraction))
        is_validation[rng.permutation(members)[:count]] = True
    return is_validation


def digits_to_uint8(images: np.ndarray) -> np.ndarray:
    """Maps load_digits counts 0..16 to 0..255 grey levels (ink is bright)."""
    return np.round(images.astype(np.float64) * (255.0 / _MAX_COUNT)).astype(np.uint8)


def write_digits_dataset(
    output_dir: str | os.PathLike, validation_fraction: float = 0.2, seed: int = 0
) -> dict[str, int]:
    """Writes `output_dir/{train,validation}/<digit>/<index>.png` from scikit-learn's digits.

    The directory is built under a temporary name next to `output_dir` and renamed when
    complete, so an interrupted run never leaves a half-written dataset behind.

    Args:
      output_dir: destination directory; replaced if it exists.
      validation_fraction: share of each class held out for validation.
      seed: seed of the stratified split.

    Returns:
      Number of images written per split.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise UserError(
            "tools/make_digits_dataset.py needs scikit-learn: pip install scikit-learn"
        ) from e
    from PIL import Image

    digits = load_digits()
    images = digits_to_uint8(digits.images)
    labels = digits.target.astype(np.int64)
    is_validation = stratified_split(labels, validation_fraction, seed)

    output_dir = pathlib.Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    counts = {"train": 0, "validation": 0}
    with atomic.directory(str(output_dir)) as staging:
        for index, (image, label, held_out) in enumerate(zip(images, labels, is_validation)):
            split = "validation" if held_out else "train"
            class_dir = pathlib.Path(staging) / split / str(label)
            class_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image, mode="L").save(class_dir / f"{index:04d}.png", optimize=True)
            counts[split] += 1
        if output_dir.exists():  # The old copy goes only once the new one is complete.
            shutil.rmtree(output_dir)
    return counts
