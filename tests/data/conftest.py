"""A small class-per-folder tree shared by the data tests."""

import numpy as np
import pytest
from helpers import encode


@pytest.fixture
def tree(tmp_path):
    """train: 3 classes x 4 images (JPEG/PNG, sizes vary); validation: 2 per class; junk."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("validation", 2)):
        for label, name in enumerate(("ant", "bee", "cat")):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                shape = (20 + 3 * i, 30 - 2 * i, 3)
                pixels = np.full(shape, 40 * label + 10 * i, np.uint8)
                pixels += rng.integers(0, 3, shape, dtype=np.uint8)
                fmt = "JPEG" if i % 2 == 0 else "PNG"
                (folder / f"{i}.{'jpg' if fmt == 'JPEG' else 'png'}").write_bytes(
                    encode(pixels, fmt)
                )
    junk = tmp_path / "train" / "bee"
    (junk / "notes.txt").write_text("not an image")
    (junk / "empty.jpg").write_bytes(b"")
    whole = encode(np.zeros((16, 16, 3), np.uint8), "JPEG")
    (junk / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    return tmp_path
