"""Re-reading a conversion: every shard against manifest.json and labels.json.

Checks each shard's size and sha256, its record framing (CRCs) and count, every label against
labels.json, and that every image is a decodable RGB JPEG of the recorded size (`convert
--verify`). Runs in the converter's worker processes (official/data/shards.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os

from PIL import Image

from official.data import imagefile, shards, tfrecord
from official.data.catalog import SPLITS
from official.data.layout import ConversionError
from official.progress import Progress


def _read_json(path: str) -> dict | None:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


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
    manifest = _read_json(os.path.join(output_dir, tfrecord.MANIFEST_FILE))
    labels = _read_json(os.path.join(output_dir, tfrecord.LABELS_FILE))
    if manifest is None:
        raise ConversionError(f"{output_dir}: no {tfrecord.MANIFEST_FILE}; nothing to verify")
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
    strays = sorted(
        name
        for name in os.listdir(output_dir)
        if tfrecord.SHARD_NAME.match(name) and name not in entries
    )
    problems += [f"{name}: not in {tfrecord.MANIFEST_FILE}" for name in strays]
    if labels is not None:
        for split in SPLITS:
            counted = sum(e["records"] for e in entries.values() if e["split"] == split)
            written = labels["splits"][split]["records"]
            if written != counted:
                problems.append(
                    f"{tfrecord.LABELS_FILE}: {split} has {written} records, the shards {counted}"
                )
    total = sum(entry["records"] for entry in entries.values())
    progress = Progress(total, "verify", "record", stream=stream)
    checked = 0

    def on_result(task: VerifyTask, shard_problems: list[str]) -> None:
        nonlocal checked
        problems.extend(shard_problems)
        checked += task.records
        progress.update(checked, problems=len(problems))

    workers = num_workers or shards.default_num_workers()
    shards.run_tasks(verify_shard, tasks, workers, on_result)
    progress.close()
    return problems
