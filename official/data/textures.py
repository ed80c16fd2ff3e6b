"""A small real-photo dataset for the fine-tuning recipe: surface patches from scikit-image.

scikit-image's wheel ships a handful of photographs; six of them show one surface each and are
free to reuse: brick, grass and gravel (CC0: CC0Textures "Bricks25" and "Gravel04", a CC0
DeviantArt photo), the Moon's surface, the Hubble eXtreme Deep Field (NASA, public domain) and
an immunohistochemistry micrograph of colonic glands ("no known copyright restrictions"). Their
patches make a six-class texture-classification task in the manner of Brodatz / KTH-TIPS
(classes are materials, examples are patches of one photograph per class), small enough to
fine-tune on 2 CPU cores in minutes and hard enough that random weights do not solve it in the
same budget (README "Fine-tune on your own images").

Every photograph is turned grey (three of them are grey already, so colour would give the
class away), its shorter side scaled to `_SHORT_SIDE`, and its columns split once: patches of
the training split are cut from the left `train_fraction` of the photograph, those of the
validation split from the rest, so no validation pixel is ever seen in training. Patch sides
are drawn from `_PATCH_SIDES` and positions uniformly, with one seed: the same seed writes the
same bytes.
"""

from __future__ import annotations

import os
import pathlib
import shutil

import numpy as np

from official import atomic
from official.errors import UserError

# Class name -> the `skimage.data` function returning its photograph.
PHOTOGRAPHS = {
    "brick": "brick",
    "grass": "grass",
    "gravel": "gravel",
    "moon": "moon",
    "deep_field": "hubble_deep_field",
    "tissue": "immunohistochemistry",
}
_SHORT_SIDE = 512  # Every photograph but the deep field (872 x 1000) is 512 px already.
_PATCH_SIDES = (64, 160)  # Inclusive range of square patch sides, in pixels.


def _grey_photograph(function_name: str) -> np.ndarray:
    """The photograph as uint8 grey levels, shorter side `_SHORT_SIDE`."""
    import skimage.color
    import skimage.data
    import skimage.transform

    image = getattr(skimage.data, function_name)()
    if image.ndim == 3:
        image = skimage.color.rgb2gray(image[..., :3])  # float in [0, 1]
    else:
        image = image.astype(np.float64) / 255.0
    scale = _SHORT_SIDE / min(image.shape)
    if scale != 1.0:
        image = skimage.transform.rescale(image, scale, anti_aliasing=True)
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def cut_patches(
    photograph: np.ndarray,
    count: int,
    columns: tuple[int, int],
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """`count` square patches lying wholly inside `columns` [start, stop) of `photograph`."""
    start, stop = columns
    patches = []
    for _ in range(count):
        side = int(rng.integers(_PATCH_SIDES[0], min(_PATCH_SIDES[1], stop - start) + 1))
        top = int(rng.integers(0, photograph.shape[0] - side + 1))
        left = int(rng.integers(start, stop - side + 1))
        patches.append(photograph[top : top + side, left : left + side])
    return patches


def write_texture_dataset(
    output_dir: str | os.PathLike,
    train_per_class: int = 50,
    validation_per_class: int = 20,
    train_fraction: float = 0.65,
    seed: int = 0,
) -> dict[str, int]:
    """Writes `output_dir/{train,validation}/<class>/<index>.png` from scikit-image's photos.

    The directory is built under a temporary name next to `output_dir` and renamed when
    complete, so an interrupted run never leaves a half-written dataset behind.

    Args:
      output_dir: destination directory; replaced if it exists.
      train_per_class, validation_per_class: patches per class in each split.
      train_fraction: share of each photograph's columns (from the left) that training
        patches come from; validation patches come from the rest.
      seed: seed of patch sides and positions.

    Returns:
      Number of images written per split.
    """
    try:
        import skimage  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise UserError(
            "tools/make_texture_dataset.py needs scikit-image: pip install scikit-image"
        ) from e
    from PIL import Image

    if not 0.0 < train_fraction < 1.0:
        raise UserError(f"--train_fraction must be in (0, 1), got {train_fraction}")
    if train_per_class < 1 or validation_per_class < 1:
        raise UserError("--train_per_class and --validation_per_class must be at least 1")
    rng = np.random.default_rng(seed)
    output_dir = pathlib.Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    counts = {"train": 0, "validation": 0}
    with atomic.directory(str(output_dir)) as staging:
        for name, function_name in PHOTOGRAPHS.items():
            photograph = _grey_photograph(function_name)
            boundary = int(round(photograph.shape[1] * train_fraction))
            if min(boundary, photograph.shape[1] - boundary) < _PATCH_SIDES[0]:
                raise UserError(
                    f"--train_fraction={train_fraction} leaves less than {_PATCH_SIDES[0]} "
                    f"columns of {function_name} to one split"
                )
            splits = {
                "train": ((0, boundary), train_per_class),
                "validation": ((boundary, photograph.shape[1]), validation_per_class),
            }
            for split, (columns, count) in splits.items():
                class_dir = pathlib.Path(staging) / split / name
                class_dir.mkdir(parents=True)
                for index, patch in enumerate(cut_patches(photograph, count, columns, rng)):
                    Image.fromarray(patch, mode="L").save(class_dir / f"{index:03d}.png")
                counts[split] += count
        if output_dir.exists():  # The old copy goes only once the new one is complete.
            shutil.rmtree(output_dir)
    return counts
