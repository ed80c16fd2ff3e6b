"""Helpers the tests import (fixtures are in conftest.py): running a command as a user would,
and image files of the bundled digits."""

import io
import os
import pathlib
import subprocess
import sys
import zlib

import numpy as np
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
DIGITS = REPO / "datasets" / "digits"


def run_module(module: str, *args: str, cwd=REPO, timeout: float = 600, env=None):
    """Runs `python -m module args...` from the repository root, like a user would; returns the
    CompletedProcess."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
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


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A tiny PNG whose header claims width × height pixels (a decompression bomb's header:
    signature, IHDR, a one-byte IDAT, IEND), for the decoders' pixel limits."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00"))
        + chunk(b"IEND", b"")
    )


def images_and_labels(dataset) -> tuple[list, list]:
    """The (images, labels) batches of a finite dataset, as NumPy arrays."""
    batches = list(dataset.as_numpy_iterator())
    return [b[0] for b in batches], [b[1] for b in batches]
