"""ImageNet (or any class-per-folder tree) → sharded TFRecords: parallel, resumable, verified.

A drop-in replacement for tensorflow/tpu `tools/datasets/imagenet_to_gcs.py`: same input layout
(`train/<synset>/*.JPEG`, flat `validation/*.JPEG` + `synset_labels.txt`), same record format
(official/data/tfrecord.py), same shard names and default counts (`train-00000-of-01024`,
`validation-00000-of-00128`), training files shuffled once with a fixed seed. What differs:

- Worker processes write whole shards in parallel (no TensorFlow in the workers).
- Every image is checked by content: a JPEG is decoded in libjpeg's DCT-domain 1/8 scale
  ("draft" mode, the check that catches truncated and corrupt files at a fraction of a full
  decode's cost); PNG or any other non-JPEG content, CMYK and grayscale JPEGs are re-encoded as
  RGB JPEG; a valid RGB JPEG is stored byte for byte. The reference fixes two hard-coded lists of
  file names instead and stores an unlisted PNG as PNG bytes labelled JPEG.
- Broken files are skipped and reported instead of stopping the run.
- Labels are 0-based by default (`label_offset=1` gives the reference's 1..1000).
- Shards never come out empty: a split has min(requested, images) shards of balanced sizes (the
  reference fills ceil(n/shards)-sized chunks and leaves the tail shards empty on small data).
- Each shard is written to a temporary name and renamed when complete; `manifest.json` records
  the settings, the input listing's checksum and every finished shard (records, bytes, sha256),
  so a rerun (after a crash or SIGKILL) skips finished shards and rewrites the rest into exactly
  the same bytes, and `verify` re-checks everything.

Output, in one flat directory (the layout tensorflow/tpu and TF Model Garden readers glob):
`train-*-of-*`, `validation-*-of-*`, `labels.json` (label → synset, name) and `manifest.json`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import io
import json
import multiprocessing
import os
import pathlib
import random
import re
import signal
import sys
import time
from collections.abc import Callable, Iterable

import numpy as np
from PIL import Image

from official.data import imagefile, tfrecord
from official.data.digits import stratified_split
from official.progress import Progress

TRAIN = "train"
VALIDATION = "validation"
SPLITS = (TRAIN, VALIDATION)

# tensorflow/tpu imagenet_to_gcs.py: TRAINING_SHARDS, VALIDATION_SHARDS.
DEFAULT_TRAIN_SHARDS = 1024
DEFAULT_VALIDATION_SHARDS = 128

MANIFEST_FILE = tfrecord.MANIFEST_FILE
LABELS_FILE = tfrecord.LABELS_FILE
FORMAT_VERSION = 1
# The reference's validation labels file: one synset per validation image, in sorted file order.
REFERENCE_LABELS_FILE = "synset_labels.txt"

# Bundled ImageNet facts (datasets/README.md says where they come from).
IMAGENET_DIR = pathlib.Path(__file__).resolve().parents[2] / "datasets" / "imagenet2012"
IMAGENET_SYNSETS = IMAGENET_DIR / "synsets.txt"
IMAGENET_NAME = "imagenet2012"  # The TFDS and catalog name.
IMAGENET_VALIDATION_SYNSETS = IMAGENET_DIR / "validation_synsets.txt"
IMAGENET_VALIDATION_IMAGES = 50_000

# Quality of re-encoded images (non-JPEG content, CMYK, grayscale), as in the reference.
REENCODE_QUALITY = 100

_TMP_PREFIX = ".tmp-"
_VALIDATION_DIR_NAMES = ("validation", "val")
_SHARD_NAME = re.compile(r"^(train|validation)-(\d{5})-of-(\d{5})$")
_MANIFEST_WRITE_INTERVAL = 1.0  # Seconds; a killed run redoes at most this much finished work.


class ConversionError(ValueError):
    """A wrong layout, flag or output directory; the message names the culprit and the fix."""


class ImageError(ValueError):
    """An input file that cannot become a record; the message is the reason."""


# --- Input layout ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to convert: class names and, per split, (path relative to root, class index)."""

    root: str
    layout: str
    classes: tuple[str, ...]
    names: tuple[str, ...]
    splits: dict[str, tuple[tuple[str, int], ...]]


def _subdirs(directory: str) -> list[str]:
    return sorted(e.name for e in os.scandir(directory) if e.is_dir() and e.name[0] != ".")


def _image_files(directory: str) -> list[str]:
    """Sorted names of the files in `directory` whose extension may hold an image."""
    return sorted(
        e.name
        for e in os.scandir(directory)
        if e.is_file() and os.path.splitext(e.name)[1].lower() in imagefile.IMAGE_EXTENSIONS
    )


def dataset_name(classes: tuple[str, ...]) -> str:
    """ "imagenet2012" when the classes are exactly ILSVRC 2012's 1,000 synsets, else "".

    Written into labels.json, so that the input pipeline checks a converted ImageNet's size
    against the catalog (official/data/catalog.py) like a TFDS one.
    """
    if len(classes) != 1000 or not IMAGENET_SYNSETS.is_file():
        return ""
    return IMAGENET_NAME if set(classes) == set(read_synset_names(IMAGENET_SYNSETS)) else ""


def read_synset_names(path: str | os.PathLike) -> dict[str, str]:
    """`synset<TAB>name` lines (datasets/imagenet2012/synsets.txt) → {synset: name}."""
    names = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            synset, _, name = line.rstrip("\n").partition("\t")
            if synset:
                names[synset] = name
    return names


def _flat_validation_labels(root: str, val_dir: str, count: int, labels_file: str) -> str:
    """The validation labels file of a flat validation folder (reference layout)."""
    if labels_file:
        if not os.path.isfile(labels_file):
            raise ConversionError(f"--validation_labels={labels_file}: no such file")
        return labels_file
    candidate = os.path.join(root, REFERENCE_LABELS_FILE)
    if os.path.isfile(candidate):
        return candidate
    if count == IMAGENET_VALIDATION_IMAGES and IMAGENET_VALIDATION_SYNSETS.is_file():
        return str(IMAGENET_VALIDATION_SYNSETS)
    raise ConversionError(
        f"{val_dir} holds {count} images but no class folders, and there is no "
        f"{candidate} (one synset per image, in sorted file-name order); pass "
        "--validation_labels=FILE or use validation/<class>/ folders"
    )


def discover(
    raw_data_dir: str,
    *,
    validation_fraction: float = 0.0,
    seed: int = 0,
    validation_labels: str = "",
    synset_names: str | os.PathLike = IMAGENET_SYNSETS,
) -> Plan:
    """Lists the images of a dataset tree and decides every label; reads no image.

    Layouts: (a) `train/<class>/*` + flat `validation/*` + `synset_labels.txt` (tensorflow/tpu);
    (b) `train/<class>/*` + `validation/<class>/*` (or `val/`); (c) one class-per-folder tree
    (`train/<class>/*` or `<class>/*` directly under raw_data_dir) split with
    `validation_fraction`. Extensions are matched case-insensitively; contents are checked
    later, per image.

    Args:
      raw_data_dir: the dataset root.
      validation_fraction: share of every class held out when there is no validation folder.
      seed: seed of that stratified split.
      validation_labels: labels file of a flat validation folder (default: synset_labels.txt
        under raw_data_dir, or the bundled ImageNet list when there are 50,000 images).
      synset_names: `synset<TAB>name` file giving human-readable class names (class folders not
        in it are named after the folder).

    Returns:
      The Plan: classes are the sorted folder names of the training tree.

    Raises:
      ConversionError: a layout that cannot be converted; the message names the problem.
    """
    root = os.path.abspath(os.path.expanduser(raw_data_dir))
    if not os.path.isdir(root):
        raise ConversionError(f"--raw_data_dir={raw_data_dir}: no such directory")
    if not 0.0 <= validation_fraction < 1.0:
        raise ConversionError(f"--validation_fraction={validation_fraction}: must be in [0, 1)")
    val_dir = next(
        (
            os.path.join(root, name)
            for name in _VALIDATION_DIR_NAMES
            if os.path.isdir(os.path.join(root, name))
        ),
        None,
    )
    tree = os.path.join(root, TRAIN)
    if not os.path.isdir(tree):
        if val_dir is None and validation_fraction > 0 and _subdirs(root):
            tree = root
        else:
            raise ConversionError(
                f"--raw_data_dir={raw_data_dir}: expected {root}/train/<class>/ folders of "
                "images (or class folders directly under it with --validation_fraction)"
            )
    classes = tuple(_subdirs(tree))
    if not classes:
        raise ConversionError(f"{tree}: no class folders (expected {tree}/<class>/<image>)")
    index = {name: i for i, name in enumerate(classes)}

    def listing(directory: str, class_name: str) -> list[tuple[str, int]]:
        folder = os.path.join(directory, class_name)
        return [
            (os.path.relpath(os.path.join(folder, f), root), index[class_name])
            for f in _image_files(folder)
        ]

    train = [item for name in classes for item in listing(tree, name)]
    if not train:
        raise ConversionError(
            f"{tree}: no image files in the class folders "
            f"(extensions {' '.join(imagefile.IMAGE_EXTENSIONS)}, any case)"
        )

    if val_dir is not None:
        if validation_fraction > 0:
            raise ConversionError(
                f"--validation_fraction={validation_fraction}: {val_dir} exists; the fraction "
                "applies only to trees without a validation folder"
            )
        val_classes = _subdirs(val_dir)
        flat_files = _image_files(val_dir)
        if val_classes and flat_files:
            raise ConversionError(
                f"{val_dir}: holds both class folders and loose images ({flat_files[0]}); "
                "use one layout"
            )
        if val_classes:
            layout = "validation/<class>/ folders"
            unknown = [name for name in val_classes if name not in index]
            if unknown:
                more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
                raise ConversionError(
                    f"{os.path.join(val_dir, unknown[0])}: class {unknown[0]!r} has no folder "
                    f"in {tree}{more}"
                )
            validation = [item for name in val_classes for item in listing(val_dir, name)]
        else:
            layout = "flat validation/ + labels file"
            labels_path = _flat_validation_labels(root, val_dir, len(flat_files), validation_labels)
            with open(labels_path, encoding="utf-8") as f:
                synsets = [line.strip() for line in f if line.strip()]
            if len(synsets) != len(flat_files):
                raise ConversionError(
                    f"{labels_path}: {len(synsets)} labels for {len(flat_files)} images in "
                    f"{val_dir} (one synset per image, in sorted file-name order)"
                )
            for line, synset in enumerate(synsets, 1):
                if synset not in index:
                    raise ConversionError(
                        f"{labels_path}: line {line}: synset {synset!r} has no folder in {tree}"
                    )
            validation = [
                (os.path.relpath(os.path.join(val_dir, f), root), index[s])
                for f, s in zip(flat_files, synsets)
            ]
        if not validation:
            raise ConversionError(f"{val_dir}: no image files")
    elif validation_fraction > 0:
        layout = f"one tree, {validation_fraction:g} of every class held out (seed {seed})"
        labels = np.array([label for _, label in train])
        held_out = stratified_split(labels, validation_fraction, seed)
        validation = [item for item, out in zip(train, held_out) if out]
        train = [item for item, out in zip(train, held_out) if not out]
        if not validation:
            raise ConversionError(
                f"--validation_fraction={validation_fraction}: holds out no image of {tree}"
            )
    else:
        raise ConversionError(
            f"--raw_data_dir={raw_data_dir}: no validation/ folder; pass "
            "--validation_fraction to hold out a share of every class"
        )
    known = read_synset_names(synset_names) if os.path.isfile(synset_names) else {}
    return Plan(
        root=root,
        layout=layout,
        classes=classes,
        names=tuple(known.get(name, name) for name in classes),
        splits={TRAIN: tuple(train), VALIDATION: tuple(validation)},
    )


def training_order(examples: Iterable, seed: int) -> list:
    """Examples shuffled once with a fixed seed, so that every training shard mixes classes."""
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    return shuffled


def shard_bounds(count: int, num_shards: int) -> list[tuple[int, int]]:
    """[start, end) of each shard: min(num_shards, count) shards whose sizes differ by <= 1."""
    num_shards = max(1, min(num_shards, count))
    return [(i * count // num_shards, (i + 1) * count // num_shards) for i in range(num_shards)]


def shard_name(split: str, index: int, num_shards: int) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}"


# --- One image, one shard (runs in the worker processes) ----------------------------------------


def _decode_rgb(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        if image.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grayscale PNG/TIFF.
            pixels = np.asarray(image).astype(np.int64) >> 8
            return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert("RGB")
        return image.convert("RGB")


def prepare_image(data: bytes) -> tuple[bytes, int, int, str | None]:
    """Checks one file's bytes and makes them an RGB JPEG.

    Returns:
      (JPEG bytes, height, width, what was fixed or None when the bytes are stored as read).

    Raises:
      ImageError: empty, not an image, truncated or corrupt; the message says which.
    """
    fmt, problem = imagefile.check(data[:16], data[-64:], len(data))
    if fmt is None:
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
    final = os.path.join(task.output_dir, task.name)
    temporary = os.path.join(task.output_dir, f"{_TMP_PREFIX}{task.name}.{os.getpid()}")
    digest = hashlib.sha256()
    records = size = 0
    skipped, reencoded = [], []
    with open(temporary, "wb") as f:
        for path, label, synset, text in task.examples:
            try:
                with open(os.path.join(task.root, path), "rb") as image_file:
                    data = image_file.read()
                encoded, height, width, fixed = prepare_image(data)
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
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, final)
    return ShardResult(
        task.name, records, size, digest.hexdigest(), tuple(skipped), tuple(reencoded)
    )


# --- Running shards in worker processes ---------------------------------------------------------


def default_num_workers() -> int:
    """Every core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _die_with_parent() -> None:
    """Worker initializer: on Linux the kernel SIGKILLs the worker when the converter dies
    (PR_SET_PDEATHSIG), so a killed run leaves no worker behind still writing shards."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG (linux/prctl.h)


def _run(function: Callable, tasks: list, num_workers: int, on_result: Callable) -> None:
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


# --- The manifest ---------------------------------------------------------------------------------


def _write_json(path: str, payload: dict) -> None:
    """Writes JSON under a temporary name and renames it: readers never see half a file."""
    temporary = os.path.join(os.path.dirname(path), _TMP_PREFIX + os.path.basename(path))
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(temporary, path)


def read_json(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _listing_digest(examples: Iterable[tuple[str, int]]) -> str:
    digest = hashlib.sha256()
    for path, label in examples:
        digest.update(f"{path}\t{label}\n".encode())
    return digest.hexdigest()


def _check_output_dir(output_dir: str, manifest: dict | None, settings: dict, inputs: dict):
    """Refuses to mix two conversions in one directory."""
    if manifest is None:
        foreign = sorted(
            name
            for name in os.listdir(output_dir)
            if _SHARD_NAME.match(name) or name == LABELS_FILE
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
    old = manifest.get("settings", {})
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


# --- Converting ---------------------------------------------------------------------------------


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
    verify: bool = False,
    stream=None,
) -> Summary:
    """Converts a dataset tree into sharded TFRecords in output_dir, resuming a previous run.

    Args:
      raw_data_dir: the dataset root (see `discover` for the layouts).
      output_dir: where shards, labels.json and manifest.json go (created if missing).
      num_workers: worker processes; 0 means every core, 1 converts in this process.
      train_shards: requested training shards (fewer when there are fewer images).
      validation_shards: requested validation shards (likewise).
      label_offset: added to the 0-based class index (1 reproduces tensorflow/tpu's labels).
      validation_fraction: share of every class held out when there is no validation folder.
      seed: seed of the training-order shuffle and of that split.
      validation_labels: labels file of a flat validation folder (see `discover`).
      verify: re-read every shard afterwards (`verify_output`); findings go to Summary.problems.
      stream: progress output (stderr by default).

    Returns:
      A Summary of the run.

    Raises:
      ConversionError: wrong layout, flags or output directory (nothing is written).

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
    plan = discover(
        raw_data_dir,
        validation_fraction=validation_fraction,
        seed=seed,
        validation_labels=validation_labels,
    )
    output_dir = os.path.abspath(os.path.expanduser(output_dir))
    settings = {
        "raw_data_dir": plan.root,
        "train_shards": train_shards,
        "validation_shards": validation_shards,
        "label_offset": label_offset,
        "validation_fraction": validation_fraction,
        "seed": seed,
        "validation_labels": os.path.abspath(validation_labels) if validation_labels else "",
    }
    inputs = {
        split: {"images": len(items), "listing_sha256": _listing_digest(items)}
        for split, items in plan.splits.items()
    }
    os.makedirs(output_dir, exist_ok=True)
    manifest_path = os.path.join(output_dir, MANIFEST_FILE)
    previous = read_json(manifest_path)
    _check_output_dir(output_dir, previous, settings, inputs)
    for name in os.listdir(output_dir):  # Leftovers of a killed run.
        if name.startswith(_TMP_PREFIX):
            os.remove(os.path.join(output_dir, name))

    ordered = {
        TRAIN: training_order(plan.splits[TRAIN], seed),
        VALIDATION: list(plan.splits[VALIDATION]),
    }
    requested = {TRAIN: train_shards, VALIDATION: validation_shards}
    tasks, split_of, images_of = [], {}, {}
    for split in SPLITS:
        bounds = shard_bounds(len(ordered[split]), requested[split])
        for index, (begin, end) in enumerate(bounds):
            name = shard_name(split, index, len(bounds))
            examples = tuple(
                (path, label + label_offset, plan.classes[label], plan.names[label])
                for path, label in ordered[split][begin:end]
            )
            tasks.append(ShardTask(name, plan.root, output_dir, examples))
            split_of[name], images_of[name] = split, end - begin

    done = {}
    for name, entry in (previous or {}).get("shards", {}).items():
        path = os.path.join(output_dir, name)
        if name in split_of and os.path.isfile(path) and os.path.getsize(path) == entry["bytes"]:
            done[name] = entry
    manifest = {
        "format_version": FORMAT_VERSION,
        "settings": settings,
        "inputs": inputs,
        "shards": done,
        "complete": False,
    }
    _write_json(manifest_path, manifest)

    pending = [task for task in tasks if task.name not in done]
    total_images = sum(images_of.values())
    finished = total_images - sum(images_of[task.name] for task in pending)
    progress = Progress(total_images, "convert", "image", stream=stream)
    progress.update(finished, force=True)
    run_start, converted, last_write = time.monotonic(), 0, time.monotonic()

    def on_result(task: ShardTask, result: ShardResult) -> None:
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
            _write_json(manifest_path, manifest)
            last_write = now
        progress.update(finished, img_per_s=converted / max(now - run_start, 1e-9))

    _run(write_shard, pending, num_workers or default_num_workers(), on_result)
    progress.close()
    convert_seconds = time.monotonic() - run_start

    records = {split: 0 for split in SPLITS}
    shards = {split: 0 for split in SPLITS}
    # Examples per class as written (skipped files excluded), so that class weights and
    # re-sampling never have to read a split to count its labels (official/data/balance.py).
    class_counts = {split: [0] * len(plan.classes) for split in SPLITS}
    skipped, reencoded = [], []
    for task in tasks:
        entry = done[task.name]
        records[entry["split"]] += entry["records"]
        shards[entry["split"]] += 1
        skipped += [tuple(item) for item in entry["skipped"]]
        reencoded += [tuple(item) for item in entry["reencoded"]]
        not_written = {path for path, _ in entry["skipped"]}
        for path, label, _, _ in task.examples:
            if path not in not_written:
                class_counts[entry["split"]][label - label_offset] += 1
    manifest["records"] = records
    manifest["complete"] = True
    _write_json(
        os.path.join(output_dir, LABELS_FILE),
        {
            "format_version": FORMAT_VERSION,
            "label_offset": label_offset,
            "dataset": dataset_name(plan.classes),
            "num_classes": len(plan.classes),
            "classes": [
                {"label": i + label_offset, "synset": synset, "name": name}
                for i, (synset, name) in enumerate(zip(plan.classes, plan.names))
            ],
            "splits": {
                split: {
                    "records": records[split],
                    "shards": shards[split],
                    "pattern": f"{split}-*-of-{shards[split]:05d}",
                    "class_counts": class_counts[split],
                }
                for split in SPLITS
            },
        },
    )
    _write_json(manifest_path, manifest)
    summary = Summary(
        output_dir=output_dir,
        layout=plan.layout,
        num_classes=len(plan.classes),
        records=records,
        shards=shards,
        shards_written=len(pending),
        shards_reused=len(tasks) - len(pending),
        skipped=sorted(skipped),
        reencoded=sorted(reencoded),
        images_converted=converted,
        seconds=convert_seconds,
    )
    if verify:
        summary.problems = verify_output(output_dir, num_workers=num_workers, stream=stream)
        summary.verified = True
    return summary


# --- Verifying ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VerifyTask:
    path: str
    records: int
    bytes: int
    sha256: str
    labels: dict  # synset → label, from labels.json


def verify_shard(task: VerifyTask) -> list[str]:
    """Problems found in one shard: checksum, record count, labels, decodability."""
    name = os.path.basename(task.path)
    if not os.path.isfile(task.path):
        return [f"{name}: missing"]
    with open(task.path, "rb") as f:
        data = f.read()
    problems = []
    if len(data) != task.bytes:
        problems.append(f"{name}: {len(data)} bytes, manifest says {task.bytes}")
    if hashlib.sha256(data).hexdigest() != task.sha256:
        problems.append(f"{name}: sha256 differs from the manifest")
    count = 0
    try:
        for serialized in tfrecord.read_records(io.BytesIO(data)):
            where = f"{name}: record {count}"
            count += 1
            try:
                record = tfrecord.decode(serialized)
            except ValueError as e:
                problems.append(f"{where}: {e}")
                continue
            expected = task.labels.get(record.synset)
            if expected is None or record.label != expected:
                problems.append(
                    f"{where} ({record.filename}): label {record.label} for synset "
                    f"{record.synset!r}, labels.json says {expected}"
                )
            try:
                height, width, components = imagefile.jpeg_header(record.encoded)
                if (height, width, components) != (record.height, record.width, 3):
                    raise ValueError(
                        f"JPEG is {width}x{height}x{components}, record says "
                        f"{record.width}x{record.height}x3"
                    )
                with Image.open(io.BytesIO(record.encoded)) as image:
                    image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                    image.load()
            except (OSError, SyntaxError, ValueError) as e:
                problems.append(f"{where} ({record.filename}): not a decodable RGB JPEG ({e})")
    except ValueError as e:
        problems.append(f"{name}: {e}")
    if count != task.records:
        problems.append(f"{name}: {count} records, manifest says {task.records}")
    return problems


def verify_output(output_dir: str, *, num_workers: int = 0, stream=None) -> list[str]:
    """Re-reads every shard of a conversion and checks it against manifest.json and labels.json.

    Returns:
      One line per problem (an empty list means everything checks out).

    Raises:
      ConversionError: output_dir holds no conversion.
    """
    output_dir = os.path.abspath(output_dir)
    manifest = read_json(os.path.join(output_dir, MANIFEST_FILE))
    labels = read_json(os.path.join(output_dir, LABELS_FILE))
    if manifest is None:
        raise ConversionError(f"{output_dir}: no {MANIFEST_FILE}; nothing to verify")
    problems = []
    if not manifest.get("complete") or labels is None:
        problems.append(f"{output_dir}: the conversion is incomplete; rerun the converter")
    synset_labels = {c["synset"]: c["label"] for c in (labels or {}).get("classes", [])}
    entries = manifest.get("shards", {})
    tasks = [
        VerifyTask(
            os.path.join(output_dir, name),
            entry["records"],
            entry["bytes"],
            entry["sha256"],
            synset_labels,
        )
        for name, entry in sorted(entries.items())
    ]
    strays = sorted(n for n in os.listdir(output_dir) if _SHARD_NAME.match(n) and n not in entries)
    problems += [f"{name}: not in {MANIFEST_FILE}" for name in strays]
    if labels is not None:
        for split in SPLITS:
            counted = sum(e["records"] for e in entries.values() if e["split"] == split)
            if labels["splits"][split]["records"] != counted:
                problems.append(
                    f"{LABELS_FILE}: {split} has {labels['splits'][split]['records']} records, "
                    f"the shards {counted}"
                )
    total = sum(entry["records"] for entry in entries.values())
    progress = Progress(total, "verify", "record", stream=stream)
    checked = 0

    def on_result(task: VerifyTask, shard_problems: list[str]) -> None:
        nonlocal checked
        problems.extend(shard_problems)
        checked += task.records
        progress.update(checked, problems=len(problems))

    _run(verify_shard, tasks, num_workers or default_num_workers(), on_result)
    progress.close()
    return problems


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
