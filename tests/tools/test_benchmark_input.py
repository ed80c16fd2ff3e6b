"""tools/benchmark_input.py runs end to end (tiny settings; the real numbers are in README)."""

import json
import subprocess
import sys

import pytest
from PIL import Image


@pytest.mark.slow  # Converts and times every pipeline in a subprocess: the default suite's budget.
def test_benchmark_input_measures_every_pipeline(repo, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "tools/benchmark_input.py",
            f"--dir={tmp_path}",
            "--images=20",
            "--rounds=1",
            "--warmup=1",
            "--batches=2",
            "--batch_size=4",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for clock in ("wall", "cpu"):
        assert set(report[clock]["median"]) == {
            "decode", "keras", "train", "eval", "train_folder", "eval_folder"
        }  # fmt: skip
        assert all(rate > 0 for rate in report[clock]["median"].values())
        assert {"train/decode", "train/keras", "eval/keras"} <= set(report[clock]["ratios"])
    # ImageNet-like files: about 500x375, quality-90 JPEGs of about 0.4 bytes per pixel.
    assert 0.3 < report["fixture"]["bytes_per_pixel"] < 0.6
    assert list((tmp_path / "tfrecord").glob("train-*-of-*"))
    sample = next((tmp_path / "jpeg" / "train").glob("*/*.jpg"))
    with Image.open(sample) as image:
        assert image.format == "JPEG" and sorted(image.size) == [375, 500]
