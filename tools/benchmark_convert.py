#!/usr/bin/env python
"""Benchmarks the TFRecord converter: worker processes against one process, in the same run.

  python tools/benchmark_convert.py [--train_images=4800] [--rounds=3] [--work_dir=/tmp/x]

Generates an ImageNet-like tree once (JPEGs of 500x375 at quality 90 from smoothed noise and
gradients, about 110 KB each, fixed seed; ImageNet's average is about 400x350 and 110 KB), then
alternates conversions of it with `--num_workers` processes and with one process
(official/data/convert.py, every image checked by a draft-mode decode in both), and reports
wall-clock images/s of each and their ratio per round. The files are read once before timing
so both runs see a warm page cache. Shards hold about 150 images (ImageNet's hold 1,252), so
the fixed cost of starting the workers counts for more here than on ImageNet.

Other processes on the machine move both figures; compare the ratio, not absolute numbers. Each
round first measures the same ratio for a pure-Python spin loop (the ceiling the machine allows
at that moment: about the number of workers when it is idle), and CPU milliseconds per image
(workers included) show that both runs do the same work.
"""

import io
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import tempfile
import time

import numpy as np
from absl import app, flags
from PIL import Image

from official import atomic
from official.data import convert

_TRAIN_IMAGES = flags.DEFINE_integer("train_images", 4800, "Training images to generate.")
_VALIDATION_IMAGES = flags.DEFINE_integer("validation_images", 600, "Validation images.")
_CLASSES = flags.DEFINE_integer("classes", 24, "Class folders (synset-like names).")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds (parallel and single each).")
_NUM_WORKERS = flags.DEFINE_integer("num_workers", 0, "Workers of the parallel run; 0: cores.")
_WORK_DIR = flags.DEFINE_string(
    "work_dir", "", "Keeps the generated tree here between runs (default: a temporary dir)."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the generated images.")

WIDTH, HEIGHT, QUALITY = 500, 375, 90
IMAGES_PER_SHARD = 150


def photo_like(rng: np.random.Generator) -> bytes:
    """A JPEG with the statistics of a photo: smooth regions, a gradient, fine texture."""
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    medium = Image.fromarray(rng.integers(0, 256, (94, 125, 3), dtype=np.uint8))
    size = (WIDTH, HEIGHT)
    pixels = 0.5 * np.asarray(coarse.resize(size, Image.BICUBIC), np.float32)
    pixels += 0.3 * np.asarray(medium.resize(size, Image.BICUBIC), np.float32)
    pixels += np.linspace(0, 50, WIDTH, dtype=np.float32)[None, :, None]
    pixels += rng.normal(0, 12, pixels.shape).astype(np.float32)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=QUALITY)
    return buffer.getvalue()


def make_tree(root: str, train_images: int, validation_images: int, classes: int, seed: int):
    """The tensorflow/tpu layout: train/<synset>/*.JPEG, validation/*.JPEG, synset_labels.txt."""
    marker = os.path.join(root, "complete.json")
    spec = {
        "train": train_images,
        "validation": validation_images,
        "classes": classes,
        "seed": seed,
        "size": [WIDTH, HEIGHT, QUALITY],
    }
    if os.path.isfile(marker):
        with open(marker) as f:
            if json.load(f) == spec:
                return
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    synsets = [f"n{10000000 + 7919 * i:08d}" for i in range(classes)]
    for i in range(train_images):
        synset = synsets[i % classes]
        folder = os.path.join(root, "train", synset)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{synset}_{i}.JPEG"), "wb") as f:
            f.write(photo_like(rng))
    os.makedirs(os.path.join(root, "validation"), exist_ok=True)
    labels = []
    for i in range(validation_images):
        with open(os.path.join(root, "validation", f"ILSVRC2012_val_{i + 1:08d}.JPEG"), "wb") as f:
            f.write(photo_like(rng))
        labels.append(synsets[int(rng.integers(classes))])
    with open(os.path.join(root, "synset_labels.txt"), "w") as f:
        f.write("\n".join(labels) + "\n")
    atomic.write_json(marker, spec)  # Written last: the data is complete.


def _spin(seconds: float) -> int:
    count, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        count += 1
    return count


def available_parallelism(workers: int, seconds: float = 0.5) -> float:
    """How many times more pure-Python work `workers` processes do than one, right now.

    The ceiling of the converter's ratio on this machine at this moment: about `workers` on an
    idle machine, lower when other processes hold the cores.
    """
    one = _spin(seconds)
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(_spin, [0.0] * workers)  # Start-up outside the measurement.
        many = sum(pool.map(_spin, [seconds] * workers))
    return many / max(one, 1)


def warm_cache(root: str) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                total += len(f.read())
    return total


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the workers)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed_conversion(raw: str, output_dir: str, num_workers: int) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, records) of one conversion from scratch."""
    shutil.rmtree(output_dir, ignore_errors=True)
    train_images, validation_images = _TRAIN_IMAGES.value, _VALIDATION_IMAGES.value
    with open(os.devnull, "w") as quiet:
        start, cpu = time.monotonic(), cpu_seconds()
        summary = convert.convert(
            raw,
            output_dir,
            num_workers=num_workers,
            train_shards=max(1, train_images // IMAGES_PER_SHARD),
            validation_shards=max(1, validation_images // IMAGES_PER_SHARD),
            stream=quiet,
        )
        seconds, cpu = time.monotonic() - start, cpu_seconds() - cpu
    shutil.rmtree(output_dir)
    return seconds, cpu, sum(summary.records.values())


def main(argv):
    del argv
    workers = _NUM_WORKERS.value or convert.default_num_workers()
    work_dir = _WORK_DIR.value or tempfile.mkdtemp(prefix="benchmark_convert_")
    raw, output_dir = os.path.join(work_dir, "raw"), os.path.join(work_dir, "out")
    start = time.monotonic()
    make_tree(raw, _TRAIN_IMAGES.value, _VALIDATION_IMAGES.value, _CLASSES.value, _SEED.value)
    size = warm_cache(raw)
    images = _TRAIN_IMAGES.value + _VALIDATION_IMAGES.value
    print(
        f"fixture: {images} JPEGs {WIDTH}x{HEIGHT} q{QUALITY}, {size / images / 1e3:.0f} KB "
        f"average, in {raw} (ready in {time.monotonic() - start:.0f} s)"
    )
    rates = {"parallel": [], "single": []}
    cpu_ms = {"parallel": [], "single": []}
    ratios, ceilings = [], []
    for round_index in range(_ROUNDS.value):
        ceilings.append(available_parallelism(workers))
        order = [("parallel", workers), ("single", 1)]
        if round_index % 2:
            order.reverse()
        this_round = {}
        for name, num_workers in order:
            seconds, cpu, records = timed_conversion(raw, output_dir, num_workers)
            assert records == images, f"{records} records for {images} images"
            this_round[name] = images / seconds
            rates[name].append(this_round[name])
            cpu_ms[name].append(1e3 * cpu / images)
        ratios.append(this_round["parallel"] / this_round["single"])
        print(
            f"round {round_index + 1}: {workers} workers {this_round['parallel']:.0f} images/s, "
            f"1 process {this_round['single']:.0f} images/s, ratio {ratios[-1]:.2f} "
            f"(a spin loop's ratio just before: {ceilings[-1]:.2f}; load average "
            f"{os.getloadavg()[0]:.1f})"
        )
    result = {
        "workers": workers,
        "cores": os.cpu_count(),
        "images": images,
        "parallel_images_per_s": statistics.median(rates["parallel"]),
        "single_images_per_s": statistics.median(rates["single"]),
        "ratio_median": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
        "spin_loop_ratio_median": statistics.median(ceilings),
        # The same work either way: CPU milliseconds per image (workers included).
        "parallel_cpu_ms_per_image": statistics.median(cpu_ms["parallel"]),
        "single_cpu_ms_per_image": statistics.median(cpu_ms["single"]),
        "load_average": os.getloadavg()[0],
    }
    print(json.dumps(result))
    if not _WORK_DIR.value:
        shutil.rmtree(work_dir)


if __name__ == "__main__":
    app.run(main)
