"""ImageNet (or any class-per-folder tree) → sharded TFRecords: parallel, resumable, verified.

A drop-in replacement for tensorflow/tpu `tools/datasets/imagenet_to_gcs.py`: same input layout
(`train/<synset>/*.JPEG`, flat `validation/*.JPEG` + `synset_labels.txt`), same record format
(official/data/tfrecord.py), same shard names and default counts (`train-00000-of-01024`,
`validation-00000-of-00128`), training files shuffled once with a fixed seed. What differs:

- Worker processes write whole shards in parallel (no TensorFlow in the workers).
- Every image is checked by content and fixed where it can be (official/data/shards.py); the
  reference fixes two hard-coded lists of file names instead and stores an unlisted PNG as PNG
  bytes labelled JPEG.
- Broken files are skipped and reported instead of stopping the run.
- Labels are 0-based by default (`label_offset=1` gives the reference's 1..1000).
- Shards never come out empty: a split has min(requested, images) shards of balanced sizes (the
  reference fills ceil(n/shards)-sized chunks and leaves the tail shards empty on small data).
- Each shard is written to a temporary name and renamed when complete; `manifest.json` records
  the settings, the input listing's checksum and every finished shard (records, bytes, sha256),
  so a rerun (after a crash or SIGKILL) skips finished shards and rewrites the rest into exactly
  the same bytes, and `verify` re-checks everything.

`convert` runs four phases: discover (official/data/layout.py: the images and their labels),
write (the shards still missing, in worker processes, then labels.json), verify
(official/data/verify.py, with --verify) and report (`report`, for the command's output).

Output, in one flat directory (the layout tensorflow/tpu and TF Model Garden readers glob):
`train-*-of-*`, `validation-*-of-*`, `labels.json` (label → synset, name) and `manifest.json`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import random
import time
from collections.abc import Iterable

from official import atomic
from official.data import imagefile, layout, shards, tfrecord
from official.data.catalog import SPLITS, TRAIN, VALIDATION
from official.data.layout import ConversionError
from official.data.verify import verify_output
from official.progress import Progress

# tensorflow/tpu imagenet_to_gcs.py: TRAINING_SHARDS, VALIDATION_SHARDS.
DEFAULT_TRAIN_SHARDS = 1024
DEFAULT_VALIDATION_SHARDS = 128

MANIFEST_FILE = tfrecord.MANIFEST_FILE
LABELS_FILE = tfrecord.LABELS_FILE
FORMAT_VERSION = 1
_MANIFEST_WRITE_INTERVAL = 1.0  # Seconds; a killed run redoes at most this much finished work.
_SETTING_DEFAULTS = {"max_image_pixels": imagefile.MAX_IMAGE_PIXELS}


class ConversionIOError(ConversionError):
    """Reading the input or writing the output failed (disk full, permissions); rerunning
    resumes."""

    exit_status = 1


def training_order(examples: Iterable, seed: int) -> list:
    """Examples shuffled once with a fixed seed, so that every training shard mixes classes."""
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    return shuffled


def shard_bounds(count: int, num_shards: int) -> list[tuple[int, int]]:
    """[start, end) of each shard: min(num_shards, count) shards whose sizes differ by <= 1."""
    num_shards = max(1, min(num_shards, count))
    return [(i * count // num_shards, (i + 1) * count // num_shards) for i in range(num_shards)]


def read_json(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _listing_digest(examples: Iterable[tuple[str, int]]) -> str:
    digest = hashlib.sha256()
    for path, label in examples:
        digest.update(f"{path}\t{label}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _check_output_dir(output_dir: str, manifest: dict | None, settings: dict, inputs: dict):
    """Refuses to mix two conversions in one directory."""
    if manifest is None:
        foreign = sorted(
            name
            for name in os.listdir(output_dir)
            if tfrecord.SHARD_NAME.match(name) or name == LABELS_FILE
        )
        if foreign:
            raise ConversionError(
                f"--output_dir={output_dir}: holds {foreign[0]} but no {MANIFEST_FILE} (not "
                "written by this converter, or its manifest was deleted); use an empty directory"
            )
        return
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ConversionError(
            f"--output_dir={output_dir}: holds a conversion in format version "
            f"{manifest.get('format_version')}, not {FORMAT_VERSION}; use another --output_dir"
        )
    # Settings added after a conversion was written take their default for it.
    old = {**_SETTING_DEFAULTS, **manifest.get("settings", {})}
    for key in sorted(set(old) | set(settings)):
        if old.get(key) != settings.get(key):
            raise ConversionError(
                f"--output_dir={output_dir}: holds a conversion made with --{key}="
                f"{old.get(key)!r}, not {settings.get(key)!r}; rerun with the same flags to "
                "resume it, or use another --output_dir"
            )
    if manifest.get("inputs") != inputs:
        then = {s: manifest.get("inputs", {}).get(s, {}).get("images") for s in SPLITS}
        now = {s: inputs[s]["images"] for s in SPLITS}
        raise ConversionError(
            f"--raw_data_dir={settings['raw_data_dir']}: the input files changed since the "
            f"conversion in {output_dir} began (train/validation images then {then[TRAIN]}/"
            f"{then[VALIDATION]}, now {now[TRAIN]}/{now[VALIDATION]}); use another --output_dir"
        )


@dataclasses.dataclass
class Summary:
    """What a conversion did."""

    output_dir: str
    layout: str
    num_classes: int
    records: dict[str, int]
    shards: dict[str, int]
    shards_written: int
    shards_reused: int
    skipped: list[tuple[str, str]]
    reencoded: list[tuple[str, str]]
    images_converted: int  # Images read in this run (0 when every shard was reused).
    seconds: float
    verified: bool = False  # Whether `verify_output` ran; its findings are in `problems`.
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.images_converted / self.seconds if self.seconds > 0 else 0.0


def convert(
    raw_data_dir: str,
    output_dir: str,
    *,
    num_workers: int = 0,
    train_shards: int = DEFAULT_TRAIN_SHARDS,
    validation_shards: int = DEFAULT_VALIDATION_SHARDS,
    label_offset: int = 0,
    validation_fraction: float = 0.0,
    seed: int = 0,
    validation_labels: str = "",
    max_image_pixels: int = imagefile.MAX_IMAGE_PIXELS,
    verify: bool = False,
    stream=None,
) -> Summary:
    """Converts a dataset tree into sharded TFRecords in output_dir, resuming a previous run.

    Args:
      raw_data_dir: the dataset root (see `layout.discover` for the layouts).
      output_dir: where shards, labels.json and manifest.json go (created if missing).
      num_workers: worker processes; 0 means every core, 1 converts in this process.
      train_shards: requested training shards (fewer when there are fewer images).
      validation_shards: requested validation shards (likewise).
      label_offset: added to the 0-based class index (1 reproduces tensorflow/tpu's labels).
      validation_fraction: share of every class held out when there is no validation folder.
      seed: seed of the training-order shuffle and of that split.
      validation_labels: labels file of a flat validation folder (see `layout.discover`).
      max_image_pixels: images with more pixels are skipped (decompression bombs), from
        their header, before any decoding.
      verify: re-read every shard afterwards (`verify_output`); findings go to Summary.problems.
      stream: progress output (stderr by default).

    Returns:
      A Summary of the run.

    Raises:
      ConversionError: wrong layout, flags or output directory (nothing is written).
      ConversionIOError: reading or writing failed (rerunning resumes).

    Worker processes are spawned, so a script that calls this with num_workers != 1 needs the
    usual `if __name__ == "__main__":` guard around its top-level code.
    """
    for flag, value in (("train_shards", train_shards), ("validation_shards", validation_shards)):
        if value < 1:
            raise ConversionError(f"--{flag}={value}: must be at least 1")
    if label_offset < 0:
        raise ConversionError(f"--label_offset={label_offset}: must be >= 0")
    if num_workers < 0:
        raise ConversionError(f"--num_workers={num_workers}: must be >= 0 (0: one per core)")
    if max_image_pixels < 1:
        raise ConversionError(f"--max_image_pixels={max_image_pixels}: must be >= 1")
    output_dir = os.path.abspath(os.path.expanduser(output_dir))
    try:
        plan = layout.discover(
            raw_data_dir,
            validation_fraction=validation_fraction,
            seed=seed,
            validation_labels=validation_labels,
        )
        settings = {
            "raw_data_dir": plan.root,
            "train_shards": train_shards,
            "validation_shards": validation_shards,
            "label_offset": label_offset,
            "validation_fraction": validation_fraction,
            "seed": seed,
            "validation_labels": os.path.abspath(validation_labels) if validation_labels else "",
            "max_image_pixels": max_image_pixels,
        }
        workers = num_workers or shards.default_num_workers()
        summary = _write(plan, output_dir, settings, workers, stream)
        if verify:
            summary.problems = verify_output(output_dir, num_workers=num_workers, stream=stream)
            summary.verified = True
    except OSError as e:  # Disk full, permissions, a vanished input.
        _remove_temporaries(output_dir)
        where = e.filename or output_dir
        reason = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise ConversionIOError(
            f"{where}: {reason}; the finished shards are kept: fix it and rerun the same "
            "command to resume"
        ) from e
    return summary


def _remove_temporaries(output_dir: str) -> None:
    """Removes the partial shards and manifests of an interrupted run (they hold space)."""
    if os.path.isdir(output_dir):
        for name in os.listdir(output_dir):
            if name.startswith(atomic.TEMPORARY_PREFIX):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(output_dir, name))


def _shard_tasks(plan: layout.Plan, output_dir: str, settings: dict) -> list[tuple]:
    """(ShardTask, split, images) of every shard of the conversion."""
    ordered = {
        TRAIN: training_order(plan.splits[TRAIN], settings["seed"]),
        VALIDATION: list(plan.splits[VALIDATION]),
    }
    offset = settings["label_offset"]
    tasks = []
    for split in SPLITS:
        bounds = shard_bounds(len(ordered[split]), settings[f"{split}_shards"])
        for index, (begin, end) in enumerate(bounds):
            examples = tuple(
                (path, label + offset, plan.classes[label], plan.names[label])
                for path, label in ordered[split][begin:end]
            )
            name = tfrecord.shard_name(split, index, len(bounds))
            tasks.append(
                (
                    shards.ShardTask(
                        name, plan.root, output_dir, examples, settings["max_image_pixels"]
                    ),
                    split,
                    end - begin,
                )
            )
    return tasks


def _write(plan: layout.Plan, output_dir: str, settings: dict, num_workers: int, stream) -> Summary:
    """Writes the shards a previous run did not finish, then labels.json; manifest.json records
    every finished shard as it comes, so that a killed run resumes from there."""
    inputs = {
        split: {"images": len(items), "listing_sha256": _listing_digest(items)}
        for split, items in plan.splits.items()
    }
    atomic.ensure_directory(output_dir, "--output_dir")
    manifest_path = os.path.join(output_dir, MANIFEST_FILE)
    previous = read_json(manifest_path)
    _check_output_dir(output_dir, previous, settings, inputs)
    _remove_temporaries(output_dir)  # Leftovers of a killed run.
    tasks = _shard_tasks(plan, output_dir, settings)
    images_of = {task.name: images for task, _, images in tasks}
    done = {}
    for name, entry in (previous or {}).get("shards", {}).items():
        path = os.path.join(output_dir, name)
        if name in images_of and os.path.isfile(path) and os.path.getsize(path) == entry["bytes"]:
            done[name] = entry
    manifest = {
        "format_version": FORMAT_VERSION,
        "settings": settings,
        "inputs": inputs,
        "shards": done,
        "complete": False,
    }
    atomic.write_json(manifest_path, manifest, indent=1)

    pending = [(task, split) for task, split, _ in tasks if task.name not in done]
    total_images = sum(images_of.values())
    finished = total_images - sum(images_of[task.name] for task, _ in pending)
    progress = Progress(total_images, "convert", "image", stream=stream)
    progress.update(finished, force=True)
    split_of = {task.name: split for task, split in pending}
    run_start, converted, last_write = time.monotonic(), 0, time.monotonic()

    def on_result(task: shards.ShardTask, result: shards.ShardResult) -> None:
        nonlocal finished, converted, last_write
        done[result.name] = {
            "split": split_of[result.name],
            "images": images_of[result.name],
            "records": result.records,
            "bytes": result.bytes,
            "sha256": result.sha256,
            "skipped": [list(item) for item in result.skipped],
            "reencoded": [list(item) for item in result.reencoded],
        }
        finished += images_of[result.name]
        converted += images_of[result.name]
        now = time.monotonic()
        if now - last_write >= _MANIFEST_WRITE_INTERVAL:
            atomic.write_json(manifest_path, manifest, indent=1)
            last_write = now
        progress.update(finished, img_per_s=converted / max(now - run_start, 1e-9))

    try:
        shards.run_tasks(shards.write_shard, [task for task, _ in pending], num_workers, on_result)
    except BaseException:  # Keep what finished, so that the rerun resumes from there.
        with contextlib.suppress(OSError):
            atomic.write_json(manifest_path, manifest, indent=1)
        raise
    finally:
        progress.close()
    seconds = time.monotonic() - run_start
    summary = _write_labels(
        plan, output_dir, settings, [(task, done[task.name]) for task, _, _ in tasks]
    )
    manifest["records"] = summary.records
    manifest["complete"] = True
    atomic.write_json(manifest_path, manifest, indent=1)
    summary.shards_written = len(pending)
    summary.shards_reused = len(tasks) - len(pending)
    summary.images_converted = converted
    summary.seconds = seconds
    return summary


def _write_labels(plan: layout.Plan, output_dir: str, settings: dict, written: list) -> Summary:
    """labels.json from the finished shards (their records, skipped files and class counts);
    returns the Summary of what the shards hold."""
    offset = settings["label_offset"]
    records = {split: 0 for split in SPLITS}
    shard_count = {split: 0 for split in SPLITS}
    # Examples per class as written (skipped files excluded), so that class weights and
    # re-sampling never have to read a split to count its labels (official/data/balance.py).
    class_counts = {split: [0] * len(plan.classes) for split in SPLITS}
    skipped, reencoded = [], []
    for task, entry in written:
        records[entry["split"]] += entry["records"]
        shard_count[entry["split"]] += 1
        skipped += [tuple(item) for item in entry["skipped"]]
        reencoded += [tuple(item) for item in entry["reencoded"]]
        not_written = {path for path, _ in entry["skipped"]}
        for path, label, _, _ in task.examples:
            if path not in not_written:
                class_counts[entry["split"]][label - offset] += 1
    labels = {
        "format_version": FORMAT_VERSION,
        "label_offset": offset,
        "dataset": layout.dataset_name(plan.classes),
        "num_classes": len(plan.classes),
        "classes": [
            {"label": i + offset, "synset": synset, "name": name}
            for i, (synset, name) in enumerate(zip(plan.classes, plan.names))
        ],
        "splits": {
            split: {
                "records": records[split],
                "shards": shard_count[split],
                "pattern": f"{split}-*-of-{shard_count[split]:05d}",
                "class_counts": class_counts[split],
            }
            for split in SPLITS
        },
    }
    atomic.write_json(os.path.join(output_dir, LABELS_FILE), labels, indent=1)
    return Summary(
        output_dir=output_dir,
        layout=plan.layout,
        num_classes=len(plan.classes),
        records=records,
        shards=shard_count,
        shards_written=0,
        shards_reused=0,
        skipped=sorted(skipped + list(plan.unreadable)),
        reencoded=sorted(reencoded),
        images_converted=0,
        seconds=0.0,
    )


def report(summary: Summary, limit: int = 20) -> str:
    """A human-readable account of a conversion, for the end of the command's output."""
    lines = [
        f"wrote {summary.records[TRAIN]} train records in {summary.shards[TRAIN]} shards and "
        f"{summary.records[VALIDATION]} validation records in {summary.shards[VALIDATION]} "
        f"shards, {summary.num_classes} classes ({summary.layout})",
        f"shards written this run: {summary.shards_written}, reused from a previous run: "
        f"{summary.shards_reused}; {summary.images_converted} images in "
        f"{summary.seconds:.1f} s ({summary.images_per_second:.0f} images/s)",
    ]
    for title, items in (
        ("re-encoded (stored as RGB JPEG)", summary.reencoded),
        ("skipped (not converted)", summary.skipped),
    ):
        if items:
            lines.append(f"{title}: {len(items)} files")
            lines += [f"  {path}: {reason}" for path, reason in items[:limit]]
            if len(items) > limit:
                lines.append(f"  ... and {len(items) - limit} more (see {MANIFEST_FILE})")
    lines.append(f"output: {summary.output_dir}  ({LABELS_FILE}, {MANIFEST_FILE})")
    if summary.verified:
        checked = sum(summary.records.values())
        lines.append(f"verify: {len(summary.problems)} problems in {checked} records")
        lines += [f"  {p}" for p in summary.problems[:limit]]
    return "\n".join(lines)


def main_exit_code(summary: Summary) -> int:
    """0 unless nothing could be converted or verification found a problem."""
    if sum(summary.records.values()) == 0 or summary.problems:
        return 1
    return 0
