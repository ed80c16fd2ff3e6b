"""The fine-tuning recipe's dataset: patches of scikit-image's surface photographs, training
and validation cut from disjoint column ranges, the same bytes for the same seed."""

import collections

import numpy as np
import pytest
from PIL import Image

from official.data import textures

pytest.importorskip("skimage")


def test_patches_stay_inside_their_columns():
    # Pixel value = column index, so a patch's values tell which columns it came from.
    photograph = np.tile(np.arange(512), (300, 1))
    rng = np.random.default_rng(0)
    train = textures.cut_patches(photograph, 40, (0, 333), rng)
    validation = textures.cut_patches(photograph, 40, (333, 512), rng)
    assert max(int(p.max()) for p in train) < 333 <= min(int(p.min()) for p in validation)
    sides = [p.shape for p in train + validation]
    assert all(h == w and 64 <= h <= 160 for h, w in sides)
    assert len(set(sides)) > 10  # the sides vary


def test_dataset_has_six_balanced_classes_and_is_reproducible(tmp_path):
    counts = textures.write_texture_dataset(
        tmp_path / "a", train_per_class=4, validation_per_class=2, seed=3
    )
    assert counts == {"train": 24, "validation": 12}
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    per_class = collections.Counter((f.parts[0], f.parts[1]) for f in files)
    assert set(name for _, name in per_class) == set(textures.PHOTOGRAPHS)
    assert set(per_class.values()) == {4, 2}
    image = Image.open(tmp_path / "a" / files[0])
    assert image.mode == "L" and 64 <= image.size[0] == image.size[1] <= 160
    textures.write_texture_dataset(
        tmp_path / "b", train_per_class=4, validation_per_class=2, seed=3
    )
    for relative in files:
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_bad_arguments_are_refused_before_writing(tmp_path):
    with pytest.raises(textures.UserError, match="train_fraction"):
        textures.write_texture_dataset(tmp_path / "x", train_fraction=0.05)
    with pytest.raises(textures.UserError, match="train_fraction must be in"):
        textures.write_texture_dataset(tmp_path / "x", train_fraction=1.5)
    assert not list(tmp_path.iterdir())
