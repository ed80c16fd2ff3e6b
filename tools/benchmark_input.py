#!/usr/bin/env python
"""Images/s of our training and evaluation input pipelines next to two peers, in one run.

Generates ImageNet-like JPEGs (about 500x375, quality 90, ~0.43 bytes/pixel like real photos)
once into --dir/jpeg and converts them into TFRecords in --dir/tfrecord (official/data/
convert.py, the bytes stored unchanged), then measures on all cores, in interleaved rounds
(A B C D, A B C D, ...):

  decode       the pure JPEG decode rate: read + tf.io.decode_jpeg in a parallel map
  keras        keras.utils.image_dataset_from_directory(image_size=(224, 224)): decode and
               squash-resize to float32, no augmentation
  train        a training build_dataset on the TFRecords: fused Inception crop + resize
               + flip, batched uint8, ready for the model (plus --augment / --mixup_alpha)
  eval         an evaluation build_dataset on the TFRecords: fused centre crop + resize,
               batched uint8
  *_folder     the same two reading the JPEG files (folder: source) instead of TFRecords

Each figure is the median over rounds after a warm-up, in images per wall-clock second and
in images per CPU-second of the process (robust when other jobs load the machine); ratios
are taken against the peers measured in the same round. Targets (2 cores): train >= 0.75x
decode and >= 1.0x keras, eval >= 1.0x keras.

  python tools/benchmark_input.py --images=600 --rounds=5 --batches=40
"""

import io
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

_DIR = flags.DEFINE_string("dir", "/tmp/cnn_repro_benchmark_input", "Where the JPEGs go.")
_IMAGES = flags.DEFINE_integer("images", 600, "JPEGs to generate (split over 10 classes).")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Interleaved measurement rounds.")
_BATCHES = flags.DEFINE_integer("batches", 40, "Timed batches per pipeline and round.")
_WARMUP = flags.DEFINE_integer("warmup", 5, "Untimed batches before each measurement.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per batch.")
_AUGMENT = flags.DEFINE_list("augment", [], "Augmentations added to the training pipeline.")
_MIXUP = flags.DEFINE_float("mixup_alpha", 0.0, "Mixup α added to the training pipeline.")
_CLASSES = 10
_SIZE = 224
_CROP_FRACTION = 0.875  # The ImageNet reference: 224 of 256.


def photo_like(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Smooth colour fields at three scales, shapes with edges, and sensor-like noise: JPEG
    sizes (~0.43 bytes/px at quality 90) and decode costs like real photos."""
    pixels = np.full((height, width, 3), 128.0, np.float32)
    for cells, amplitude in ((4, 90.0), (16, 40.0), (64, 20.0)):
        coarse = rng.integers(0, 256, (max(2, cells * height // width), cells, 3), np.uint8)
        layer = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
        pixels += amplitude * (np.asarray(layer, np.float32) / 127.5 - 1.0)
    pixels += rng.normal(0.0, 10.0, pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        box = [x, y, x + int(rng.integers(20, 200)), y + int(rng.integers(20, 200))]
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    noisy = np.asarray(image, np.float32) + rng.normal(0.0, 10.0, pixels.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def write_fixture(root: str, count: int) -> dict:
    """root/jpeg/{train,validation}/class_<k>/<i>.jpg (the same files in both splits) and
    their TFRecords in root/tfrecord; reused when a previous run wrote the same count."""
    from official import atomic
    from official.data import convert

    marker = os.path.join(root, "fixture.json")
    if os.path.exists(marker):
        with open(marker, encoding="utf-8") as f:
            stats = json.load(f)
        if stats["images"] == count:
            return stats
    rng = np.random.default_rng(1234)
    total_bytes = total_pixels = 0
    for index in range(count):
        width, height = (500, 375) if rng.random() < 0.78 else (375, 500)  # ~22% portrait
        buffer = io.BytesIO()
        photo_like(rng, width, height).save(buffer, format="JPEG", quality=90)
        for split in ("train", "validation"):
            folder = os.path.join(root, "jpeg", split, f"class_{index % _CLASSES}")
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, f"{index:05d}.jpg"), "wb") as f:
                f.write(buffer.getvalue())
        total_bytes += buffer.tell()
        total_pixels += width * height
    stats = {"images": count, "kb_per_image": total_bytes / count / 1e3}
    stats["bytes_per_pixel"] = total_bytes / total_pixels
    shards = max(1, min(16, count // 32))
    convert.convert(
        os.path.join(root, "jpeg"),
        os.path.join(root, "tfrecord"),
        train_shards=shards,
        validation_shards=shards,
        stream=io.StringIO(),
    )
    atomic.write_json(marker, stats)  # Written last: the data is complete.
    return stats


def pipelines(root: str) -> dict:
    import keras
    import tensorflow as tf

    from official import config as config_lib
    from official.data import augment, mixing, pipeline, preprocess, sources

    paths = tf.io.gfile.glob(os.path.join(root, "jpeg", "train", "*", "*.jpg"))
    batch = _BATCH_SIZE.value

    def decode():
        ds = tf.data.Dataset.from_tensor_slices(paths).repeat()
        ds = ds.map(
            lambda path: tf.shape(tf.io.decode_jpeg(tf.io.read_file(path), channels=3)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        return ds.batch(batch).prefetch(tf.data.AUTOTUNE)

    def keras_peer():
        ds = keras.utils.image_dataset_from_directory(
            os.path.join(root, "jpeg", "train"),
            image_size=(_SIZE, _SIZE),
            batch_size=batch,
            verbose=False,
        )
        return ds.repeat()

    mixer = mixing.Mixer(_CLASSES, mixup_alpha=_MIXUP.value) if _MIXUP.value else None
    defaults = config_lib.DataConfig()  # The flags' defaults for the augmentation parameters.
    training = pipeline.Training(
        preprocessing=preprocess.TrainPreprocessing(),
        shuffle_buffer=defaults.shuffle_buffer,
        augmenter=augment.build(
            _AUGMENT.value,
            {name: getattr(defaults, name) for name in augment.parameter_names()},
            seed=0,
        ),
        mixer=mixer,
        skip_undecodable=defaults.bad_records == "skip",  # as training does by default
    )
    geometry = preprocess.Geometry(_SIZE, _CROP_FRACTION, "bilinear")
    readers = {
        "": sources.open_source(f"tfrecord:{os.path.join(root, 'tfrecord')}"),
        "_folder": sources.open_source(f"folder:{os.path.join(root, 'jpeg')}"),
    }
    makers = {"decode": decode, "keras": keras_peer}
    for suffix, source in readers.items():
        makers["train" + suffix] = lambda source=source: pipeline.build_dataset(
            source, split="train", batch_size=batch, geometry=geometry, training=training
        )
        makers["eval" + suffix] = lambda source=source: pipeline.build_dataset(
            source, split="validation", batch_size=batch, geometry=geometry
        ).repeat()
    return makers


def measure(make_dataset) -> tuple[float, float]:
    """A fresh iterator, warm-up batches, then (images per wall-clock second, images per
    CPU-second of this process) over the timed batches. The second figure hardly moves when
    other processes load the machine, so its ratios are the ones to trust on a shared host."""
    iterator = iter(make_dataset())
    for _ in range(_WARMUP.value):
        next(iterator)
    images, start, cpu_start = 0, time.perf_counter(), time.process_time()
    for _ in range(_BATCHES.value):
        element = next(iterator)
        first = element[0] if isinstance(element, tuple) else element
        images += int(first.shape[0])
    return images / (time.perf_counter() - start), images / (time.process_time() - cpu_start)


_TARGETS = {("train", "decode"): 0.75, ("train", "keras"): 1.0, ("eval", "keras"): 1.0}
# The same pipelines reading the JPEG files instead of the TFRecords (for comparison).
_FOLDER_RATIOS = (("train_folder", "decode"), ("train_folder", "keras"), ("eval_folder", "keras"))


def main(argv):
    del argv
    fixture = write_fixture(_DIR.value, _IMAGES.value)
    print(
        f"fixture: {fixture['images']} JPEGs and their TFRecords in {_DIR.value}, "
        f"{fixture['kb_per_image']:.0f} KB, {fixture['bytes_per_pixel']:.2f} bytes/px; "
        f"{os.cpu_count()} cores"
    )
    makers = pipelines(_DIR.value)
    wall = {name: [] for name in makers}
    cpu = {name: [] for name in makers}
    for index in range(_ROUNDS.value):
        for name, make in makers.items():
            rate, cpu_rate = measure(make)
            wall[name].append(rate)
            cpu[name].append(cpu_rate)
        print(f"round {index + 1}: " + "  ".join(f"{n} {r[-1]:.0f}" for n, r in wall.items()))
    result = {"fixture": fixture}
    for label, rounds in (("images/s", wall), ("images per CPU-second", cpu)):
        print(f"\n{label} (median of {_ROUNDS.value} rounds, min-max):")
        for name, values in rounds.items():
            low, high = min(values), max(values)
            print(f"  {name:12s} {statistics.median(values):7.0f}  ({low:.0f}-{high:.0f})")
        print("  ratios (median of per-round ratios):")
        ratios = {}
        for a, b in list(_TARGETS) + list(_FOLDER_RATIOS):
            value = statistics.median(x / y for x, y in zip(rounds[a], rounds[b]))
            ratios[f"{a}/{b}"] = value
            target = _TARGETS.get((a, b))
            verdict = ""
            if target is not None:
                verdict = f"  (target >= {target:.2f}: {'ok' if value >= target else 'BELOW'})"
            print(f"    {a + '/' + b:20s} {value:5.2f}{verdict}")
        key = "wall" if rounds is wall else "cpu"
        result[key] = {
            "median": {n: statistics.median(v) for n, v in rounds.items()},
            "ratios": ratios,
        }
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
