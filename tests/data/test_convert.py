"""The ImageNet → TFRecord converter on small trees of real JPEG/PNG bytes made in the test."""

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from official.data import balance, catalog, convert, imagefile, pipeline, tfrecord

# Real ImageNet synsets, so the bundled names apply: tench, goldfish, great white shark.
SYNSETS = ("n01440764", "n01443537", "n01484850")
NAMES = (
    "tench, Tinca tinca",
    "goldfish, Carassius auratus",
    "great white shark, white shark, man-eater, man-eating shark, Carcharodon carcharias",
)


def _pixels(rng, height=30, width=40, tint=None) -> np.ndarray:
    """Smooth colour content (upsampled noise), like a photo rather than white noise; `tint`
    (a channel index) makes that channel dominate, so that classes are learnable."""
    low = rng.integers(0, 256, (max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    if tint is not None:
        low = low // 4
        low[..., tint] += 160
    return np.asarray(Image.fromarray(low).resize((width, height), Image.BICUBIC))


def _encode(pixels: np.ndarray, fmt: str = "JPEG", mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format=fmt, quality=90)
    return buffer.getvalue()


# Files in train/ whose content the converter must fix or skip: name → (content, expected).
def _quirks(rng) -> dict:
    whole = _encode(_pixels(rng, tint=0))
    return {
        f"{SYNSETS[0]}/{SYNSETS[0]}_png.JPEG": (
            _encode(_pixels(rng, tint=0), "PNG"),
            "PNG content",
        ),
        f"{SYNSETS[1]}/{SYNSETS[1]}_cmyk.JPEG": (
            _encode(_pixels(rng, tint=1), mode="CMYK"),
            "CMYK JPEG",
        ),
        f"{SYNSETS[2]}/{SYNSETS[2]}_gray.JPEG": (
            _encode(_pixels(rng, tint=2), mode="L"),
            "grayscale JPEG",
        ),
        f"{SYNSETS[0]}/{SYNSETS[0]}_pic.bmp": (_encode(_pixels(rng, tint=0), "BMP"), "BMP content"),
        f"{SYNSETS[1]}/{SYNSETS[1]}_anim.GIF": (
            _encode(_pixels(rng, tint=1), "GIF"),
            "GIF content",
        ),
        f"{SYNSETS[2]}/{SYNSETS[2]}_pic.webp": (
            _encode(_pixels(rng, tint=2), "WEBP"),
            "WEBP content",
        ),
        f"{SYNSETS[0]}/{SYNSETS[0]}_cut.JPEG": (whole[: len(whole) // 2], "skip:unreadable JPEG"),
        f"{SYNSETS[1]}/{SYNSETS[1]}_empty.JPEG": (b"", "skip:empty file"),
        f"{SYNSETS[2]}/{SYNSETS[2]}_notes.JPEG": (b"not an image", "skip:not an image"),
    }


def make_tree(
    root,
    *,
    per_class=6,
    val_per_class=2,
    validation="flat",
    quirks=False,
    size=(30, 40),
    seed=0,
) -> dict:
    """Writes a dataset tree; returns {relative path: bytes} of every file written.

    validation: "flat" (ILSVRC2012_val_*.JPEG + synset_labels.txt, the reference layout),
    "folders" (validation/<synset>/*) or "none".
    """
    rng = np.random.default_rng(seed)
    files = {}
    for c, synset in enumerate(SYNSETS):
        for i in range(per_class):
            ext = (".JPEG", ".jpg", ".JpEg")[i % 3]  # Extensions match in any case.
            files[f"train/{synset}/{synset}_{i}{ext}"] = _encode(_pixels(rng, *size, tint=c))
        if validation == "folders":
            for i in range(val_per_class):
                pixels = _pixels(rng, *size, tint=c)
                files[f"validation/{synset}/val_{c}_{i}.JPEG"] = _encode(pixels)
    if validation == "flat":
        labels = []
        for i in range(val_per_class * len(SYNSETS)):
            c = (i * 2) % len(SYNSETS)
            pixels = _pixels(rng, *size, tint=c)
            files[f"validation/ILSVRC2012_val_{i + 1:08d}.JPEG"] = _encode(pixels)
            labels.append(SYNSETS[c])
        files["synset_labels.txt"] = ("\n".join(labels) + "\n").encode()
    if quirks:
        files.update({f"train/{name}": content for name, (content, _) in _quirks(rng).items()})
    files[f"train/{SYNSETS[0]}/README.txt"] = b"ignored: not an image extension"
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return files


def read_output(output_dir) -> dict:
    """{split: [ImageRecord, ...]} in shard order, read with our reader."""
    records = {"train": [], "validation": []}
    for name in sorted(os.listdir(output_dir)):
        if name.startswith(("train-", "validation-")):
            with open(os.path.join(output_dir, name), "rb") as f:
                records[name.split("-")[0]] += [
                    tfrecord.decode(r) for r in tfrecord.read_records(f)
                ]
    return records


def digests(directory) -> dict:
    return {
        name: hashlib.sha256((directory / name).read_bytes()).hexdigest()
        for name in sorted(os.listdir(directory))
    }


def test_reference_layout_quirks_by_content_and_byte_for_byte_passthrough(tmp_path):
    files = make_tree(tmp_path / "raw", quirks=True)
    out = tmp_path / "out"
    summary = convert.convert(
        str(tmp_path / "raw"), str(out), num_workers=1, train_shards=4, validation_shards=100
    )
    expected_quirks = _quirks(np.random.default_rng(0))
    skipped = {path: reason for path, reason in summary.skipped}
    assert set(skipped) == {
        f"train/{n}" for n, (_, e) in expected_quirks.items() if e.startswith("skip:")
    }
    for name, (_, expected) in expected_quirks.items():
        if expected.startswith("skip:"):
            assert skipped[f"train/{name}"].startswith(expected[5:])
    assert dict(summary.reencoded) == {
        f"train/{n}": f"{e} re-encoded as RGB JPEG"
        for n, (_, e) in expected_quirks.items()
        if not e.startswith("skip:")
    }
    # 18 plain + 6 fixed in train (3 skipped); 6 in validation; README.txt is not listed.
    assert summary.records == {"train": 24, "validation": 6}
    # Shards are capped at the number of images: 6 validation images → 6 shards, none empty.
    assert summary.shards == {"train": 4, "validation": 6}
    assert sorted(os.listdir(out)) == sorted(
        ["labels.json", "manifest.json"]
        + [f"train-{i:05d}-of-00004" for i in range(4)]
        + [f"validation-{i:05d}-of-00006" for i in range(6)]
    )

    records = read_output(out)
    by_name = {r.filename: r for split in records.values() for r in split}
    assert len(by_name) == 30
    for record in by_name.values():
        label = SYNSETS.index(record.synset)
        assert record.label == label and record.text == NAMES[label]
        assert (record.format, record.colorspace, record.channels) == ("JPEG", "RGB", 3)
        # What tensorflow/tpu and Model Garden readers do with the bytes: fused decode-and-crop.
        assert imagefile.jpeg_header(record.encoded) == (record.height, record.width, 3)
        crop = tf.image.decode_and_crop_jpeg(record.encoded, [0, 0, 8, 8], channels=3)
        assert crop.shape == (8, 8, 3)
    for path, content in files.items():
        name = os.path.basename(path)
        if name in by_name and imagefile.sniff(content[:16]) == "jpeg":
            header = imagefile.jpeg_header(content)
            if header[2] == 3:  # A valid RGB JPEG is stored exactly as read.
                assert by_name[name].encoded == content, name
    # Fixed files hold the same picture (re-encoded at quality 100).
    png_name = f"{SYNSETS[0]}_png.JPEG"
    original = np.asarray(Image.open(io.BytesIO(files[f"train/{SYNSETS[0]}/{png_name}"])))
    stored = tf.io.decode_jpeg(by_name[png_name].encoded).numpy()
    assert np.abs(stored.astype(int) - original).mean() < 2
    gray = tf.io.decode_jpeg(by_name[f"{SYNSETS[2]}_gray.JPEG"].encoded).numpy().astype(int)
    assert np.abs(gray[..., 0] - gray[..., 2]).max() <= 2

    # Validation: sorted file order, labels from synset_labels.txt line by line.
    lines = files["synset_labels.txt"].decode().split()
    assert [r.filename for r in records["validation"]] == [
        f"ILSVRC2012_val_{i + 1:08d}.JPEG" for i in range(6)
    ]
    assert [r.synset for r in records["validation"]] == lines
    # Training files were shuffled once before sharding: shards mix classes.
    manifest = json.loads((out / "manifest.json").read_text())
    first = [
        r.synset for r in records["train"][: manifest["shards"]["train-00000-of-00004"]["records"]]
    ]
    assert len(set(first)) > 1
    assert [e["images"] for n, e in sorted(manifest["shards"].items()) if n[0] == "t"] == [
        6,
        7,
        7,
        7,
    ]  # Balanced: 27 listed train images in 4 shards.
    assert manifest["complete"] and manifest["records"] == {"train": 24, "validation": 6}
    labels = json.loads((out / "labels.json").read_text())
    assert labels["label_offset"] == 0 and labels["num_classes"] == 3
    assert labels["classes"][0] == {"label": 0, "synset": SYNSETS[0], "name": NAMES[0]}
    assert labels["splits"]["validation"] == {
        "records": 6,
        "shards": 6,
        "pattern": "validation-*-of-00006",
        "class_counts": [sum(r.synset == s for r in records["validation"]) for s in SYNSETS],
    }
    # Per-class counts of what was written: the skipped files are not counted.
    train_counts = [sum(r.synset == s for r in records["train"]) for s in SYNSETS]
    assert labels["splits"]["train"]["class_counts"] == train_counts and sum(train_counts) == 24
    assert convert.verify_output(str(out), num_workers=1) == []


def test_parallel_workers_write_the_same_bytes_as_one_process(tmp_path):
    make_tree(tmp_path / "raw", quirks=True)
    one = convert.convert(str(tmp_path / "raw"), str(tmp_path / "one"), num_workers=1)
    two = convert.convert(str(tmp_path / "raw"), str(tmp_path / "two"), num_workers=2)
    assert one.records == two.records
    assert digests(tmp_path / "one") == digests(tmp_path / "two")


class _Uncounted:
    """A source that hides its known class counts, so balance.class_counts reads labels."""

    def __init__(self, source):
        self.source = source
        self.info = dataclasses.replace(source.info, class_counts={})

    def examples(self, *args, **kwargs):
        return self.source.examples(*args, **kwargs)


def test_validation_class_folders_and_label_offset(tmp_path):
    make_tree(tmp_path / "raw", validation="folders")
    out = tmp_path / "out"
    summary = convert.convert(str(tmp_path / "raw"), str(out), num_workers=1, label_offset=1)
    assert summary.layout == "validation/<class>/ folders"
    records = read_output(out)
    assert sorted({(r.synset, r.label) for r in records["train"]}) == [
        (s, i + 1) for i, s in enumerate(SYNSETS)
    ]
    assert [(r.synset, r.label) for r in records["validation"]] == [
        (s, i + 1) for i, s in enumerate(SYNSETS) for _ in range(2)
    ]
    labels = json.loads((out / "labels.json").read_text())
    assert labels["label_offset"] == 1 and labels["classes"][2]["label"] == 3
    assert labels["dataset"] == ""  # Three classes: not ImageNet.

    # The input pipeline subtracts the offset: labels are 0-based for training.
    source = pipeline.open_source(f"tfrecord:{out}")
    assert source.info.num_classes == 3 and source.info.class_names == SYNSETS
    assert source.info.num_examples == {"train": 18, "validation": 6}
    # Class counts come from labels.json, offset removed, and agree with reading the labels.
    assert source.info.class_counts == {"train": (6, 6, 6), "validation": (2, 2, 2)}
    counted = balance.class_counts(_Uncounted(source), "validation")
    np.testing.assert_array_equal(counted, source.info.class_counts["validation"])
    ds = pipeline.build_dataset(
        source, split="validation", is_training=False, batch_size=4, image_size=16
    )
    batches = list(ds.as_numpy_iterator())
    labels_seen = np.concatenate([labels for _, labels in batches])
    assert sorted(labels_seen.tolist()) == [0, 0, 1, 1, 2, 2]
    assert batches[0][0].shape == (4, 16, 16, 3) and batches[0][0].dtype == np.uint8


def test_tfrecord_source_shards_by_file_and_selects_by_pattern(tmp_path):
    make_tree(tmp_path / "raw", per_class=2, validation="folders", val_per_class=3)
    out = tmp_path / "out"
    convert.convert(str(tmp_path / "raw"), str(out), num_workers=1, validation_shards=3)
    source = pipeline.open_source(f"tfrecord:{out}")
    seen = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=2
        )
        ds = source.examples("validation", shuffle=False, seed=0, input_context=context)
        seen.append(sorted(int(label) for _, label in ds.as_numpy_iterator()))
    # Three shards of one class each: pipeline 0 reads shards 0 and 2, pipeline 1 shard 1.
    assert seen == [[0, 0, 0, 2, 2, 2], [1, 1, 1]]
    # More pipelines than shards: every pipeline reads all shards and keeps its records.
    seen = []
    for pipeline_id in range(4):
        too_many = tf.distribute.InputContext(num_input_pipelines=4, input_pipeline_id=pipeline_id)
        ds = source.examples("validation", shuffle=True, seed=0, input_context=too_many)
        seen.append([int(label) for _, label in ds.as_numpy_iterator()])
    assert sorted(sum(seen, [])) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert sorted(len(s) for s in seen) == [2, 2, 2, 3]
    subset = pipeline.open_source(f"tfrecord:{out}/{{split}}-0000[01]-*")
    assert subset.info.num_examples == {"train": 2, "validation": 6}
    assert "validation" not in subset.info.class_counts  # Counts hold for all shards only.
    with pytest.raises(pipeline.DataError, match="no .*labels.json"):
        pipeline.open_source(f"tfrecord:{tmp_path / 'raw'}")


def test_training_reads_the_converted_records(tmp_path, run):
    make_tree(tmp_path / "raw", per_class=8, quirks=True)
    out, model_dir = tmp_path / "out", tmp_path / "model"
    # Labels 1..3 on disk: training fails unless the pipeline makes them 0-based.
    summary = convert.convert(str(tmp_path / "raw"), str(out), num_workers=1, label_offset=1)
    result = run(
        "official.train",
        f"--model_dir={model_dir}",
        f"--config.data.source=tfrecord:{out}",
        "--config.model.name=resnet18",
        "--config.model.width_multiplier=0.125",
        "--config.data.image_size=32",
        "--config.train.batch_size=8",
        "--config.train.epochs=16",
        "--config.train.optimizer=adam",
        "--config.train.base_learning_rate=0.3",  # Adam at 0.3 x 8 / 256 = 0.009.
        "--config.data.random_flip=false",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    config = json.loads((model_dir / "config.json").read_text())
    assert summary.records == {"train": 30, "validation": 6}
    assert config["derived"]["steps_per_epoch"] == 30 // 8
    assert metrics["steps"] == 16 * (30 // 8) and metrics["eval_examples"] == 6
    # Classes differ by colour; a label off by one would make one class unlearnable (<= 4/6).
    assert metrics["top1"] >= 5 / 6
    assert (model_dir / "labels.txt").read_text().split() == list(SYNSETS)


def test_one_tree_stratified_split(tmp_path):
    make_tree(tmp_path / "raw", per_class=8, validation="none")
    tree = tmp_path / "raw" / "train"  # Class folders directly under the root.
    plans = [convert.discover(str(tree), validation_fraction=0.25, seed=seed) for seed in (0, 0, 1)]
    validation = [[p for p, _ in plan.splits["validation"]] for plan in plans]
    assert [label for _, label in plans[0].splits["validation"]] == [0, 0, 1, 1, 2, 2]
    assert len(plans[0].splits["train"]) == 18
    assert validation[0] == validation[1] != validation[2]
    summary = convert.convert(
        str(tmp_path / "raw"), str(tmp_path / "out"), num_workers=1, validation_fraction=0.25
    )
    assert summary.records == {"train": 18, "validation": 6}


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda raw: (raw / "train").rename(raw / "training"), "expected .*/train/<class>/"),
        (
            lambda raw: [p.unlink() for p in (raw / "train").rglob("*.*")],
            "no image files in the class folders",
        ),
        (
            lambda raw: (raw / "synset_labels.txt").write_text("n01440764\n"),
            r"synset_labels.txt: 1 labels for 6 images",
        ),
        (
            lambda raw: (raw / "synset_labels.txt").write_text("n01440764\nn99\n" * 3),
            r"line 2: synset 'n99' has no folder in",
        ),
        (
            lambda raw: (raw / "synset_labels.txt").unlink(),
            "no class folders, and there is no .*synset_labels.txt",
        ),
        (
            lambda raw: (raw / "validation" / "n99").mkdir(),
            "holds both class folders and loose images",
        ),
    ],
)
def test_wrong_layouts_name_the_problem(tmp_path, damage, message):
    make_tree(tmp_path / "raw", per_class=2)
    damage(tmp_path / "raw")
    with pytest.raises(convert.ConversionError, match=message):
        convert.convert(str(tmp_path / "raw"), str(tmp_path / "out"), num_workers=1)
    assert not (tmp_path / "out").exists()  # Nothing half-written.


def test_unknown_validation_class_and_missing_validation(tmp_path):
    make_tree(tmp_path / "raw", per_class=2, validation="folders")
    (tmp_path / "raw" / "validation" / "n99999999").mkdir()
    with pytest.raises(convert.ConversionError, match="class 'n99999999' has no folder in"):
        convert.discover(str(tmp_path / "raw"))
    make_tree(tmp_path / "bare", per_class=2, validation="none")
    with pytest.raises(convert.ConversionError, match="pass --validation_fraction"):
        convert.discover(str(tmp_path / "bare"))


def test_rerun_resumes_refuses_other_flags_and_foreign_dirs(tmp_path):
    make_tree(tmp_path / "raw")
    raw, out = str(tmp_path / "raw"), tmp_path / "out"
    convert.convert(raw, str(out), num_workers=1, train_shards=3)
    before = digests(out)
    # A truncated and a deleted shard are rewritten; the others are reused.
    shard = out / "train-00001-of-00003"
    shard.write_bytes(shard.read_bytes()[:-10])
    (out / "validation-00002-of-00006").unlink()
    again = convert.convert(raw, str(out), num_workers=1, train_shards=3)
    assert (again.shards_written, again.shards_reused) == (2, 7)
    assert digests(out) == before
    with pytest.raises(convert.ConversionError, match="--train_shards=3, not 4"):
        convert.convert(raw, str(out), num_workers=1, train_shards=4)
    with pytest.raises(convert.ConversionError, match="--label_offset=0, not 1"):
        convert.convert(raw, str(out), num_workers=1, train_shards=3, label_offset=1)
    (tmp_path / "raw" / "train" / SYNSETS[0] / "new.JPEG").write_bytes(
        _encode(_pixels(np.random.default_rng(5)))
    )
    with pytest.raises(convert.ConversionError, match="input files changed"):
        convert.convert(raw, str(out), num_workers=1, train_shards=3)
    assert digests(out) == before  # Refusals touch nothing.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "train-00000-of-01024").write_bytes(b"")
    with pytest.raises(convert.ConversionError, match="no manifest.json"):
        convert.convert(raw, str(foreign), num_workers=1)


def test_verify_catches_a_tampered_shard(tmp_path):
    make_tree(tmp_path / "raw")
    out = tmp_path / "out"
    convert.convert(str(tmp_path / "raw"), str(out), num_workers=1, train_shards=2)
    shard = out / "train-00001-of-00002"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x40  # Same size: only the checksums can tell.
    shard.write_bytes(bytes(data))
    problems = convert.verify_output(str(out), num_workers=1)
    assert problems[0] == "train-00001-of-00002: sha256 differs from the manifest"
    assert any("checksum mismatch" in p or "record" in p for p in problems[1:])
    assert all(p.startswith("train-00001-of-00002") for p in problems)


def _cli(*args, cwd, timeout=120):
    return subprocess.run(
        [sys.executable, "tools/imagenet_to_tfrecord.py", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_exit_codes(tmp_path, repo):
    make_tree(tmp_path / "raw", per_class=2)
    raw, out = tmp_path / "raw", tmp_path / "out"
    ok = _cli(f"--raw_data_dir={raw}", f"--output_dir={out}", "--verify", cwd=repo)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "wrote 6 train records in 6 shards and 6 validation records" in ok.stdout
    assert "verify: 0 problems in 12 records" in ok.stdout
    assert "convert [" in ok.stderr and "img_per_s" in ok.stderr  # The progress bar.

    shard = out / "validation-00003-of-00006"
    data = bytearray(shard.read_bytes())
    data[-30] ^= 1
    shard.write_bytes(bytes(data))
    tampered = _cli(f"--raw_data_dir={raw}", f"--output_dir={out}", "--verify", cwd=repo)
    assert tampered.returncode == 1
    assert "validation-00003-of-00006: sha256 differs from the manifest" in tampered.stdout

    wrong = _cli(f"--raw_data_dir={tmp_path / 'nowhere'}", f"--output_dir={out}", cwd=repo)
    assert wrong.returncode == 2
    assert wrong.stderr.strip().splitlines() == [
        f"error: --raw_data_dir={tmp_path / 'nowhere'}: no such directory"
    ]

    for path in raw.rglob("*.*"):  # Nothing convertible: every image is garbage.
        if path.suffix.lower() in imagefile.IMAGE_EXTENSIONS:
            path.write_bytes(b"garbage")
    nothing = _cli(f"--raw_data_dir={raw}", f"--output_dir={tmp_path / 'empty'}", cwd=repo)
    assert nothing.returncode == 1
    assert "no image could be converted" in nothing.stdout
    assert "skipped (not converted): 12 files" in nothing.stdout


def test_sigkill_mid_run_then_rerun_gives_identical_files(tmp_path, repo):
    make_tree(tmp_path / "raw", per_class=200, val_per_class=10, size=(240, 320))
    raw, out = tmp_path / "raw", tmp_path / "out"
    flags = [f"--raw_data_dir={raw}", f"--output_dir={out}", "--train_shards=45"]
    reference = tmp_path / "reference"
    convert.convert(str(raw), str(reference), num_workers=1, train_shards=45)

    command = [sys.executable, "tools/imagenet_to_tfrecord.py", *flags, "--num_workers=2"]
    process = subprocess.Popen(
        command,
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if out.is_dir() and any(n.startswith("train-") for n in os.listdir(out)):
                process.send_signal(signal.SIGKILL)  # The converter itself, mid-run.
                break
            time.sleep(0.002)
        process.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):  # Only the group this test started.
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL, "the converter finished before the kill"
    assert not (out / "labels.json").exists()  # Killed mid-run, before the end.
    finished = [n for n in os.listdir(out) if n.startswith(("train-", "validation-"))]
    assert 0 < len(finished) < 51, finished

    rerun = _cli(*flags, cwd=repo)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert digests(out) == digests(reference)  # Shards, labels.json and manifest.json.


def test_bundled_imagenet_files():
    synsets = convert.read_synset_names(convert.IMAGENET_SYNSETS)
    assert len(synsets) == 1000 and sorted(synsets) == list(synsets)
    assert [synsets[s] for s in SYNSETS] == list(NAMES)
    assert synsets["n15075141"] == "toilet tissue, toilet paper, bathroom tissue"
    data = convert.IMAGENET_VALIDATION_SYNSETS.read_bytes()
    lines = data.decode().splitlines()
    assert len(lines) == 50_000 and set(lines) == set(synsets)
    assert all(lines.count(s) == 50 for s in SYNSETS)  # 50 validation images per class.
    # ILSVRC2012_val_00000001 is a sea snake, val_00050000 a llama (tensorflow/models' list).
    assert (lines[0], lines[-1]) == ("n01751748", "n02437616")
    assert hashlib.sha256(data).hexdigest() == (
        "313fc3f23c864dde9183c9a368809065765dd1b657a6904fded44e3e46d34604"
    )


def test_flat_imagenet_validation_uses_the_bundled_labels(tmp_path):
    (tmp_path / "validation").mkdir()
    path = convert._flat_validation_labels(
        str(tmp_path), str(tmp_path / "validation"), 50_000, labels_file=""
    )
    assert path == str(convert.IMAGENET_VALIDATION_SYNSETS)
    with pytest.raises(convert.ConversionError, match="holds 49999 images but no class"):
        convert._flat_validation_labels(
            str(tmp_path), str(tmp_path / "validation"), 49_999, labels_file=""
        )


def test_a_converted_imagenet_is_named_for_the_catalog(tmp_path, repo):
    synsets = [line.split("\t")[0] for line in (repo / "datasets/imagenet2012/synsets.txt").open()]
    assert convert.dataset_name(tuple(synsets)) == "imagenet2012"
    assert convert.dataset_name(tuple(reversed(synsets))) == "imagenet2012"  # any order
    assert convert.dataset_name(tuple(synsets[:-1]) + ("n99999999",)) == ""
    assert convert.dataset_name(tuple(synsets[:999])) == ""

    # The tfrecord: source reports the name, so its size is checked against the catalog.
    make_tree(tmp_path / "raw", validation="folders")
    out = tmp_path / "out"
    convert.convert(str(tmp_path / "raw"), str(out), num_workers=1)
    assert pipeline.open_source(f"tfrecord:{out}").info.name == ""
    labels = json.loads((out / "labels.json").read_text())
    (out / "labels.json").write_text(json.dumps({**labels, "dataset": "imagenet2012"}))
    info = pipeline.open_source(f"tfrecord:{out}").info
    assert info.name == "imagenet2012"
    assert catalog.count_mismatches(info.name, info.num_classes, info.num_examples) == [
        "imagenet2012: 3 classes, expected 1000",
        "imagenet2012: 18 train examples, expected 1,281,167",
        "imagenet2012: 6 validation examples, expected 50,000",
    ]
