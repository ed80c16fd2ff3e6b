"""Helpers of the evaluation tests (a module, so tests can import them; fixtures are in
conftest.py)."""

import dataclasses
import io
import os
import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image

from official import config as config_lib

REPO = pathlib.Path(__file__).resolve().parents[2]
DIGITS = REPO / "datasets" / "digits"


def run_module(module: str, *args: str, timeout: float = 300):
    """`python -m module args...` from the repository root, as a user runs it."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )


def encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def digit_pixels(label: int, index: int = 0, size: tuple[int, int] = (24, 30)) -> np.ndarray:
    """A validation digit of the bundled dataset, enlarged to `size` (height, width) RGB."""
    files = sorted((DIGITS / "validation" / str(label)).iterdir())
    image = Image.open(files[index]).convert("RGB").resize(size[::-1], Image.BILINEAR)
    return np.asarray(image)


def has_ema() -> bool:
    """Whether the training engine keeps an exponential moving average of the weights."""
    return "ema_decay" in {f.name for f in dataclasses.fields(config_lib.TrainConfig)}
