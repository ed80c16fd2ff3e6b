"""Facts about well-known datasets: classes, split sizes, channel statistics.

Used to check that a converted or downloaded copy of a dataset is complete, to take a
non-ImageNet dataset's own mean/std for input normalization, and for the ImageNet colour PCA
of AlexNet's lighting noise. Pure Python (no TensorFlow), so the configuration code may import it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

# The splits every source and the converter know.
TRAIN = "train"
VALIDATION = "validation"
SPLITS = (TRAIN, VALIDATION)

# Principal components of ImageNet RGB pixel values for AlexNet's lighting noise (Krizhevsky
# et al. 2012 §4.1). The numbers are those of fb.resnet.torch and GluonCV (eigenvalues of the
# 0..1 covariance, scaled here to 0..255); column j of the matrix is eigenvector j, row i its
# R, G or B component.
IMAGENET_PCA_EIGENVALUES = (0.2175 * 255, 0.0188 * 255, 0.0045 * 255)
IMAGENET_PCA_EIGENVECTORS = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


@dataclasses.dataclass(frozen=True)
class DatasetFacts:
    """What is known about a dataset before reading it.

    Attributes:
      name: the TFDS name ("imagenet2012").
      num_classes: number of classes.
      num_examples: split name ("train", "validation") → number of examples.
      mean: per-channel mean on 0..255, or None when the models' default should be used
        (ImageNet: the defaults are the models' reference ImageNet normalization).
      std: per-channel standard deviation on 0..255, or None.
    """

    name: str
    num_classes: int
    num_examples: Mapping[str, int]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


def _scaled(*values: float) -> tuple[float, ...]:
    """Statistics on the 0..1 scale → the 0..255 scale of our images."""
    return tuple(round(v * 255, 4) for v in values)


_CATALOG = {
    facts.name: facts
    for facts in (
        # ILSVRC 2012 (Russakovsky et al. arXiv 1409.0575 Table 2): 1,281,167 training and
        # 50,000 validation images of 1,000 classes.
        # No mean/std: every model's default normalization is the one its reference used on
        # ImageNet (e.g. caffe's mean with std 1 for VGG, [-1, 1] for Inception-v3), so a
        # recipe trains the same whether it reads tfds:imagenet2012 or converted TFRecords.
        DatasetFacts("imagenet2012", 1000, {"train": 1_281_167, "validation": 50_000}),
        # Channel statistics of the training images, the values torchvision-based CIFAR and
        # MNIST recipes normalize with (0..1 scale × 255).
        DatasetFacts(
            "cifar10",
            10,
            {"train": 50_000, "validation": 10_000},
            _scaled(0.4914, 0.4822, 0.4465),
            _scaled(0.2470, 0.2435, 0.2616),
        ),
        DatasetFacts(
            "cifar100",
            100,
            {"train": 50_000, "validation": 10_000},
            _scaled(0.5071, 0.4865, 0.4409),
            _scaled(0.2673, 0.2564, 0.2762),
        ),
        # Grey images, decoded to three equal channels.
        DatasetFacts(
            "mnist",
            10,
            {"train": 60_000, "validation": 10_000},
            _scaled(0.1307, 0.1307, 0.1307),
            _scaled(0.3081, 0.3081, 0.3081),
        ),
    )
}


def lookup(name: str) -> DatasetFacts | None:
    """The facts of a dataset by name (a TFDS name, optionally with /config or :version)."""
    base = name.split(":")[0].split("/")[0]
    return _CATALOG.get(base)


def names() -> list[str]:
    """Datasets the catalog knows, sorted."""
    return sorted(_CATALOG)


def count_mismatches(name: str, num_classes: int, num_examples: Mapping[str, int]) -> list[str]:
    """Differences between a dataset as read and its catalog entry (empty when they agree).

    A converted ImageNet that lost images, or a validation split labelled as training, shows up
    here before hours of training are spent on it.
    """
    facts = lookup(name)
    if facts is None:
        return []
    problems = []
    if num_classes != facts.num_classes:
        problems.append(f"{name}: {num_classes} classes, expected {facts.num_classes}")
    for split, expected in facts.num_examples.items():
        found = num_examples.get(split)
        if found is not None and found != expected:
            problems.append(f"{name}: {found:,} {split} examples, expected {expected:,}")
    return problems
