"""One image, one shard: checking and fixing image bytes, writing a TFRecord shard, and running
such tasks in worker processes.

Workers import only this module (NumPy, Pillow, CRC32C; no TensorFlow), so they start in about a
second. Every image is checked by content: a JPEG is decoded in libjpeg's DCT-domain 1/8 scale
("draft" mode, the check that catches truncated and corrupt files at a fraction of a full
decode's cost); PNG or any other non-JPEG content, CMYK and grayscale JPEGs are re-encoded as RGB
JPEG; a valid RGB JPEG is stored byte for byte.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import io
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable

import numpy as np
from PIL import Image

from official import atomic
from official.data import imagefile, tfrecord

# Quality of re-encoded images (non-JPEG content, CMYK, grayscale), as in the reference.
REENCODE_QUALITY = 100


class ImageError(ValueError):
    """An input file that cannot become a record; the message is the reason."""


def _decode_rgb(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        if image.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grayscale PNG/TIFF.
            pixels = np.asarray(image).astype(np.int64) >> 8
            return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert("RGB")
        return image.convert("RGB")


def prepare_image(
    data: bytes, max_pixels: int = imagefile.MAX_IMAGE_PIXELS
) -> tuple[bytes, int, int, str | None]:
    """Checks one file's bytes and makes them an RGB JPEG.

    Returns:
      (JPEG bytes, height, width, what was fixed or None when the bytes are stored as read).

    Raises:
      ImageError: empty, not an image, above `max_pixels`, truncated or corrupt; the message
        says which (a missing end marker is judged by decoding, which names the damage).
    """
    fmt, problem = imagefile.check(data, max_pixels)
    if fmt is None or (problem is not None and not problem.startswith("truncated")):
        raise ImageError(problem)
    try:
        if fmt == "jpeg":
            height, width, components = imagefile.jpeg_header(data)
            if components == 3:
                with Image.open(io.BytesIO(data)) as image:
                    # DCT-domain 1/8-scale decode: every entropy-coded block is still read, so
                    # truncation and corrupt data fail here, at a fraction of a full decode.
                    image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                    image.load()
                return data, height, width, None
            fixed = {1: "grayscale JPEG", 4: "CMYK JPEG"}.get(
                components, f"{components}-component JPEG"
            )
        else:
            fixed = f"{fmt.upper()} content"
        rgb = _decode_rgb(data)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageError(f"unreadable {fmt.upper()} ({e})") from e
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=REENCODE_QUALITY)
    return out.getvalue(), rgb.height, rgb.width, f"{fixed} re-encoded as RGB JPEG"


@dataclasses.dataclass(frozen=True)
class ShardTask:
    """One shard to write: its examples as (path relative to root, label, synset, text)."""

    name: str
    root: str
    output_dir: str
    examples: tuple[tuple[str, int, str, str], ...]
    max_pixels: int = imagefile.MAX_IMAGE_PIXELS


@dataclasses.dataclass(frozen=True)
class ShardResult:
    name: str
    records: int
    bytes: int
    sha256: str
    skipped: tuple[tuple[str, str], ...]
    reencoded: tuple[tuple[str, str], ...]


def write_shard(task: ShardTask) -> ShardResult:
    """Writes one shard under a temporary name and renames it when complete.

    The temporary name is private to this process, so a worker orphaned by a killed run can
    never write into the file of the rerun's worker (each renames complete, identical bytes).
    """
    digest = hashlib.sha256()
    records = size = 0
    skipped, reencoded = [], []
    with atomic.open_file(os.path.join(task.output_dir, task.name), "wb", fsync=True) as f:
        for path, label, synset, text in task.examples:
            try:
                with open(os.path.join(task.root, path), "rb") as image_file:
                    data = image_file.read()
                encoded, height, width, fixed = prepare_image(data, task.max_pixels)
            except ImageError as e:
                skipped.append((path, str(e)))
                continue
            except OSError as e:
                skipped.append((path, f"cannot read ({e.strerror or e})"))
                continue
            if fixed:
                reencoded.append((path, fixed))
            record = tfrecord.frame(
                tfrecord.encode(
                    tfrecord.ImageRecord(
                        encoded=encoded,
                        label=label,
                        synset=synset,
                        text=text,
                        height=height,
                        width=width,
                        filename=os.path.basename(path),
                    )
                )
            )
            f.write(record)
            digest.update(record)
            records += 1
            size += len(record)
    return ShardResult(
        task.name, records, size, digest.hexdigest(), tuple(skipped), tuple(reencoded)
    )


def default_num_workers() -> int:
    """Every core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _die_with_parent() -> None:
    """Worker initializer: on Linux the kernel SIGKILLs the worker when the converter dies
    (PR_SET_PDEATHSIG), so a killed run leaves no worker behind still writing shards."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG (linux/prctl.h)


def run_tasks(function: Callable, tasks: list, num_workers: int, on_result: Callable) -> None:
    """Calls on_result(task, function(task)) for every task, in worker processes when > 1.

    Workers are spawned (not forked), so they never inherit a parent's TensorFlow runtime or
    threads; they import only this module (NumPy, Pillow, CRC32C), about a second to start.
    """
    if num_workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            on_result(task, function(task))
        return
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=min(num_workers, len(tasks)),
        mp_context=context,
        initializer=_die_with_parent,
    ) as pool:
        futures = {pool.submit(function, task): task for task in tasks}
        try:
            for future in concurrent.futures.as_completed(futures):
                on_result(futures[future], future.result())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
