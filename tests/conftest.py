"""Shared test setup: quiet TensorFlow, the repository root, a subprocess runner, and one
small trained run per session (with its SavedModel export and image files) for the tests of
everything that starts from a run: evaluation, export, serving, prediction, CAM."""

import json
import os
import pathlib

import pytest
from helpers import REPO, digit_pixels, encode, run_module

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The package's TensorFlow environment (oneDNN on) in this process too, before any test module
# imports TensorFlow: results computed here then match the commands run as subprocesses.
import official  # noqa: E402, F401


@pytest.fixture
def repo() -> pathlib.Path:
    return REPO


@pytest.fixture
def run():
    return run_module


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """The quickstart recipe, narrower and shorter: 2 epochs of a ResNet-18 × 0.125 on the
    digits (about 10 s); checkpoints after epoch 1 and 2, and EMA weights, so evaluation and
    export are tested on what a run evaluates with."""
    model_dir = tmp_path_factory.mktemp("eval") / "run"
    result = run_module(
        "official.train",
        "--flagfile=configs/quickstart.flags",
        f"--model_dir={model_dir}",
        "--config.train.epochs=2",
        "--config.model.width_multiplier=0.125",
        "--config.train.ema_decay=0.9",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return model_dir


@pytest.fixture(scope="session")
def trained_metrics(trained_run):
    return json.loads((trained_run / "metrics.json").read_text())


@pytest.fixture(scope="session")
def saved_model(trained_run, tmp_path_factory):
    """`python -m official.export` of the trained run, with warm-up requests of 3 images
    besides single ones: (export base dir, CompletedProcess)."""
    export_dir = tmp_path_factory.mktemp("export") / "serving"
    result = run_module(
        "official.export",
        f"--model_dir={trained_run}",
        f"--export_dir={export_dir}",
        "--warmup_batch_sizes=3",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return export_dir, result


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """A folder source with the digits' ten classes and validation files in every format the
    export decodes (JPEG, PNG, GIF, BMP), of different sizes and aspect ratios."""
    root = tmp_path_factory.mktemp("images")
    formats = [("JPEG", "jpg"), ("PNG", "png"), ("GIF", "gif"), ("BMP", "bmp")]
    sizes = [(24, 30), (40, 28), (33, 33), (50, 37)]
    for label in range(10):
        (root / "train" / str(label)).mkdir(parents=True)
        (root / "validation" / str(label)).mkdir(parents=True)
        (root / "train" / str(label) / "a.png").write_bytes(encode(digit_pixels(label), "PNG"))
    files = []
    for i, label in enumerate((3, 7, 0, 8, 5, 1)):
        fmt, extension = formats[i % len(formats)]
        path = root / "validation" / str(label) / f"{i}.{extension}"
        path.write_bytes(encode(digit_pixels(label, i, sizes[i % len(sizes)]), fmt))
        files.append(path)
    return root, files
