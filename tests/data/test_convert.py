"""The ImageNet → TFRecord converter on small trees of real JPEG/PNG bytes made in the test."""

import contextlib
import dataclasses
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
from dataset_trees import (
    NAMES,
    SYNSETS,
    digests,
    encode,
    make_tree,
    quirk_files,
    read_output,
    smooth_pixels,
)
from PIL import Image

from official.data import (
    balance,
    convert,
    imagefile,
    pipeline,
    preprocess,
    sources,
    tfrecord,
    verify,
)


def test_reference_layout_quirks_by_content_and_byte_for_byte_passthrough(tmp_path):
    files = make_tree(tmp_path / "raw", quirks=True)
    out = tmp_path / "out"
    summary = convert.convert(
        str(tmp_path / "raw"), str(out), num_workers=1, train_shards=4, validation_shards=100
    )
    expected_quirks = quirk_files(np.random.default_rng(0))
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
    assert verify.verify_output(str(out), num_workers=1) == []


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
    source = sources.open_source(f"tfrecord:{out}")
    assert source.info.num_classes == 3 and source.info.class_names == SYNSETS
    assert source.info.num_examples == {"train": 18, "validation": 6}
    # Class counts come from labels.json, offset removed, and agree with reading the labels.
    assert source.info.class_counts == {"train": (6, 6, 6), "validation": (2, 2, 2)}
    counted = balance.class_counts(_Uncounted(source), "validation")
    np.testing.assert_array_equal(counted, source.info.class_counts["validation"])
    ds = pipeline.build_dataset(
        source,
        split="validation",
        batch_size=4,
        geometry=preprocess.Geometry(16, 0.875, "bilinear"),
    )
    batches = list(ds.as_numpy_iterator())
    labels_seen = np.concatenate([labels for _, labels in batches])
    assert sorted(labels_seen.tolist()) == [0, 0, 1, 1, 2, 2]
    assert batches[0][0].shape == (4, 16, 16, 3) and batches[0][0].dtype == np.uint8


@pytest.mark.slow  # A whole run in a subprocess or a full-size build: the default suite's budget.
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
        encode(smooth_pixels(np.random.default_rng(5)))
    )
    with pytest.raises(convert.ConversionError, match="input files changed"):
        convert.convert(raw, str(out), num_workers=1, train_shards=3)
    assert digests(out) == before  # Refusals touch nothing.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "train-00000-of-01024").write_bytes(b"")
    with pytest.raises(convert.ConversionError, match="no manifest.json"):
        convert.convert(raw, str(foreign), num_workers=1)


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


def test_decompression_bombs_are_skipped_from_their_header(tmp_path):
    from helpers import bomb_png

    make_tree(tmp_path / "raw", per_class=2)
    (tmp_path / "raw" / "train" / SYNSETS[0] / "bomb.png").write_bytes(bomb_png())
    summary = convert.convert(str(tmp_path / "raw"), str(tmp_path / "out"), num_workers=1)
    skipped = dict(summary.skipped)
    assert skipped[f"train/{SYNSETS[0]}/bomb.png"].startswith("20000x20000 pixels, above the limit")
    assert summary.records["train"] == 6


def test_a_full_disk_leaves_no_partial_shard_and_the_rerun_resumes(tmp_path, monkeypatch):
    import errno

    from official.data import shards

    make_tree(tmp_path / "raw", per_class=2)
    out = tmp_path / "out"
    frame, written = tfrecord.frame, []

    def fill_the_disk(data):
        if len(written) == 8:  # Two shards complete, the third one fills the disk.
            raise OSError(errno.ENOSPC, "No space left on device", str(out / ".tmp-x"))
        written.append(data)
        return frame(data)

    monkeypatch.setattr(shards.tfrecord, "frame", fill_the_disk)
    with pytest.raises(convert.ConversionIOError, match="the disk is full; the finished shards"):
        convert.convert(str(tmp_path / "raw"), str(out), num_workers=1, train_shards=2)
    assert not [name for name in os.listdir(out) if name.startswith(".tmp-")]
    monkeypatch.setattr(shards.tfrecord, "frame", frame)
    summary = convert.convert(str(tmp_path / "raw"), str(out), num_workers=1, train_shards=2)
    assert summary.shards_reused >= 1 and summary.records == {"train": 6, "validation": 6}
    whole = tmp_path / "uninterrupted"
    convert.convert(str(tmp_path / "raw"), str(whole), num_workers=1, train_shards=2)
    shard_digests = {k: v for k, v in digests(out).items() if k != "manifest.json"}
    assert shard_digests == {k: v for k, v in digests(whole).items() if k != "manifest.json"}


def test_the_reference_converters_own_command_works_as_written(tmp_path, repo):
    """tensorflow/tpu imagenet_to_gcs.py's documented local command, unchanged: the same
    labels (1..K), one flat directory; an upload is refused in one line."""
    make_tree(tmp_path / "raw", per_class=2)
    raw, out = tmp_path / "raw", tmp_path / "scratch"
    result = _cli(f"--raw_data_dir={raw}", f"--local_scratch_dir={out}", "--nogcs_upload", cwd=repo)
    assert result.returncode == 0, result.stderr[-2000:]
    labels = json.loads((out / "labels.json").read_text())
    assert labels["label_offset"] == 1
    assert sorted({r.label for r in read_output(out)["train"]}) == [1, 2, 3]
    for upload in (["--gcs_upload", "--project=p"], ["--gcs_output_path=gs://bucket/imagenet"]):
        refused = _cli(f"--raw_data_dir={raw}", f"--local_scratch_dir={out}", *upload, cwd=repo)
        errors = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
        assert refused.returncode == 2 and len(errors) == 1 and "writes locally" in errors[0]


@pytest.mark.slow  # A whole run in a subprocess or a full-size build: the default suite's budget.
def test_a_damaged_record_is_skipped_in_training_and_stops_an_evaluation(tmp_path, run):
    make_tree(tmp_path / "raw", per_class=4, validation="folders")
    out, model_dir = tmp_path / "out", tmp_path / "model"
    convert.convert(
        str(tmp_path / "raw"), str(out), num_workers=1, train_shards=1, validation_shards=1
    )
    for shard in ("train-00000-of-00001", "validation-00000-of-00001"):
        with open(out / shard, "rb") as f:
            records = list(tfrecord.read_records(f))
        records[1] = records[1][:20] + b"\xff" * 4 + records[1][24:]  # A damaged Example.
        (out / shard).write_bytes(b"".join(tfrecord.frame(r) for r in records))
    common = [
        f"--model_dir={model_dir}",
        f"--config.data.source=tfrecord:{out}",
        "--config.model.name=resnet18",
        "--config.model.width_multiplier=0.125",
        "--config.data.image_size=32",
        "--config.train.batch_size=4",
        "--config.train.epochs=2",
    ]
    trained = run("official.train", *common, timeout=300)
    assert trained.returncode == 0, trained.stderr[-3000:]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["skipped_examples"] == 2 and metrics["eval_examples"] == 5
    assert "skipped:      2 examples (first: " in trained.stdout
    evaluated = run("official.evaluate", f"--model_dir={model_dir}")
    errors = [line for line in evaluated.stderr.splitlines() if line.startswith("error: ")]
    assert evaluated.returncode == 2 and len(errors) == 1, evaluated.stderr[-3000:]
    assert "validation-00000-of-00001 record 1: " in errors[0]


def test_non_utf8_names_are_converted_and_link_loops_skipped(tmp_path, repo):
    # Linux names are bytes: a Latin-1 name is legal, converted, and its record keeps the very
    # bytes of the name; links to themselves or to nothing are reported, the scan goes on.
    make_tree(tmp_path / "raw", per_class=2)
    train = tmp_path / "raw" / "train" / SYNSETS[0]
    odd = os.fsencode(train) + b"/caf\xe9.JPEG"
    with open(odd, "wb") as f:
        f.write((train / f"{SYNSETS[0]}_0.JPEG").read_bytes())
    loop = os.fsencode(train) + b"/l\xe9.JPEG"  # A link to itself, with a Latin-1 name.
    os.symlink(loop, loop)
    os.symlink("gone.JPEG", train / "dangling.JPEG")
    os.symlink("loop", tmp_path / "raw" / "train" / "loop")  # A class folder that loops.
    summary = convert.convert(str(tmp_path / "raw"), str(tmp_path / "out"), num_workers=1)
    assert summary.records["train"] == 7
    skipped = {os.path.basename(path) for path, _ in summary.skipped}
    assert skipped == {"l\udce9.JPEG", "dangling.JPEG", "loop"}
    names = [r.filename for r in read_output(tmp_path / "out")["train"]]
    assert os.fsencode(names[names.index("caf\udce9.JPEG")]) == b"caf\xe9.JPEG"
    report = convert.report(summary)
    assert "train/loop: Too many levels of symbolic links" in report
    assert f"train/{SYNSETS[0]}/dangling.JPEG: symbolic link to nothing" in report
    # The command prints such a name as its bytes, even under a strict UTF-8 locale.
    command = subprocess.run(
        [sys.executable, "tools/imagenet_to_tfrecord.py", f"--raw_data_dir={tmp_path / 'raw'}"]
        + [f"--output_dir={tmp_path / 'out'}"],
        cwd=repo,
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        timeout=120,
    )
    assert command.returncode == 0, command.stderr[-2000:]
    assert b"shards written this run: 0, reused from a previous run: 13" in command.stdout
    assert b"/l\xe9.JPEG: Too many levels of symbolic links" in command.stdout
