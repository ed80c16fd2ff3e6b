"""The bundled quickstart dataset: complete, stratified, and exactly what the tool writes."""

import collections

import numpy as np
import pytest
from PIL import Image

from official.data import digits

# sklearn.datasets.load_digits: 1,797 images, per-class counts 178, 182, 177, 183, 181, 182,
# 181, 179, 174, 180.
CLASS_COUNTS = (178, 182, 177, 183, 181, 182, 181, 179, 174, 180)


def _files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*.png"))


def test_bundled_files_are_complete_and_stratified(repo):
    root = repo / "datasets" / "digits"
    files = _files(root)
    assert len(files) == 1797
    per_split = collections.Counter((f.parts[0], int(f.parts[1])) for f in files)
    for label, total in enumerate(CLASS_COUNTS):
        validation = per_split[("validation", label)]
        assert per_split[("train", label)] + validation == total
        assert validation == round(total * 0.2)  # the same 20% of every class
    image = Image.open(root / files[0])
    assert image.mode == "L" and image.size == (8, 8)


def test_stratified_split_is_deterministic_and_exact():
    labels = np.repeat(np.arange(3), [10, 20, 30])
    mask = digits.stratified_split(labels, 0.2, seed=1)
    assert [int(mask[labels == c].sum()) for c in range(3)] == [2, 4, 6]
    assert np.array_equal(mask, digits.stratified_split(labels, 0.2, seed=1))
    assert not np.array_equal(mask, digits.stratified_split(labels, 0.2, seed=2))


def test_tool_regenerates_the_bundled_pixels(repo, tmp_path):
    pytest.importorskip("sklearn")
    counts = digits.write_digits_dataset(tmp_path / "digits")
    assert counts == {"train": 1438, "validation": 359}
    bundled = repo / "datasets" / "digits"
    files = _files(bundled)
    assert files == _files(tmp_path / "digits")
    for relative in files[::17]:
        assert np.array_equal(
            np.asarray(Image.open(bundled / relative)),
            np.asarray(Image.open(tmp_path / "digits" / relative)),
        )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_pixel_scale():
    assert digits.digits_to_uint8(np.array([0, 8, 16])).tolist() == [0, 128, 255]
