"""Every mistake a user can make on the command line: one line, naming it, non-zero exit, and
nothing changed."""

import json
import os
import re
import shutil
import socket

import pytest
from helpers import REPO

QUICK = ["--config.train.epochs=0.01"]


def _error_line(result) -> str:
    assert result.returncode != 0, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--modeldir=x"], "Unknown command line flag 'modeldir'. Did you mean: model_dir"),
        # Each case is a TensorFlow process (~10 s): the rest run in the slow suite (the same
        # messages are checked in-process by test_config.py).
        pytest.param(
            ["--config.train.batchsize=3"],
            "--config.train.batchsize: unknown config field. Did you mean --config.train.batch_",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["--config.train.batch_size=abc"],
            "flag --config.train.batch_size=abc",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["--flagfile=configs/does_not_exist.flags"],
            "does_not_exist.flags",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["--config.data.random_flip=maybe"], "random_flip=maybe", marks=pytest.mark.slow
        ),
    ],
)
def test_flag_errors(run, args, expected):
    line = _error_line(run("official.train", *args))
    assert expected in line


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["--config.data.source=folder:/no/such/dir"],
            "--config.data.source=folder:/no/such/dir: no such directory",
        ),
        pytest.param(
            ["--config.data.source=imagenet"],
            "--config.data.source='imagenet': expected",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["--config.model.name=resnet51"], "unknown model 'resnet51'", marks=pytest.mark.slow
        ),
        pytest.param(
            ["--config.train.optimizer=nadam"],
            "--config.train.optimizer='nadam'",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["--config.model.name=resnet18", "--config.data.image_size=8"],
            "--config.data.image_size=8: resnet18 needs at least 32",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_config_and_data_errors(run, tmp_path, args, expected):
    result = run("official.train", f"--model_dir={tmp_path}/run", *args, *QUICK)
    assert expected in _error_line(result)
    assert not (tmp_path / "run").exists()  # Nothing half-written.


def test_folder_without_splits(run, tmp_path):
    (tmp_path / "cats").mkdir()
    result = run("official.train", f"--config.data.source=folder:{tmp_path}", *QUICK)
    assert f"expected {tmp_path}/train/<class>/ and {tmp_path}/validation/<class>/" in (
        _error_line(result)
    )


@pytest.mark.parametrize(
    "command, args, expected",
    [
        pytest.param(
            "official.train",
            ["configs/quickstart.flags"],
            "unexpected arguments: configs/quick",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "official.evaluate",
            ["--model_dir=x", "extra"],
            "unexpected arguments: extra",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "official.export",
            ["--model_dir=x", "--export_dir=y", "z"],
            "unexpected arguments: z",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "official.export",
            ["--model_dir=x", "--export_dir=y", "--warmup_batch_sizes=8,many"],
            "--warmup_batch_sizes=8,many: expected integers",
            marks=pytest.mark.slow,
        ),
        ("official.predict", ["--export_dir=x"], "give one or more image files: python -m"),
        pytest.param(
            "official.cam",
            ["--model_dir=x"],
            "give one or more image files: python -m",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_usage_errors_are_one_line_not_a_usage_dump(run, command, args, expected):
    result = run(command, *args)
    assert result.returncode == 2
    assert expected in _error_line(result)
    # TensorFlow's C++ start-up lines (absl logging before Python runs) are not ours.
    ours = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and not re.match(r"WARNING: All log messages before|[IWEF]\d{4} ", line)
    ]
    assert len(ours) <= 2, result.stderr


def _snapshot(directory) -> dict:
    """Every file under `directory` with its bytes and modification time."""
    return {
        str(path.relative_to(directory)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


@pytest.mark.slow  # Three command processes: the default suite's budget.
def test_a_refused_train_changes_nothing_and_the_run_still_evaluates(
    run, trained_run, trained_metrics, tmp_path
):
    """A resume with flags the checkpoint does not fit, and a second trainer on a run that a
    live process holds, both refuse with one line; the run is untouched and evaluates."""
    model_dir = tmp_path / "run"
    shutil.copytree(trained_run, model_dir)
    before = _snapshot(model_dir)
    quickstart = ["--flagfile=configs/quickstart.flags", f"--model_dir={model_dir}"]
    wider = run("official.train", *quickstart, "--config.model.width_multiplier=0.25")
    assert "cannot resume from" in _error_line(wider) and wider.returncode == 2
    assert _snapshot(model_dir) == before
    # A live trainer (this test process, as far as the lock says) holds the run.
    lock = {"host": socket.gethostname(), "pid": os.getpid(), "since": "now"}
    (model_dir / "train.lock").write_text(json.dumps(lock))
    busy = run("official.train", *quickstart, "--config.model.width_multiplier=0.125")
    assert f"process {os.getpid()} on {socket.gethostname()}" in _error_line(busy)
    (model_dir / "train.lock").unlink()
    assert _snapshot(model_dir) == before
    evaluated = run(
        "official.evaluate", f"--model_dir={model_dir}", f"--output_dir={tmp_path / 'eval'}"
    )
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert f"top-1 {trained_metrics['top1']:.4f}" in evaluated.stdout


@pytest.mark.parametrize(
    "command, args",
    [
        ("official.train", ["--flagfile=configs/quickstart.flags", "--model_dir={file}/run"]),
        pytest.param(
            "official.evaluate",
            ["--model_dir={run}", "--output_dir={file}/out"],
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "official.export",
            ["--model_dir={run}", "--export_dir={file}/out"],
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "official.cam",
            ["--model_dir={run}", "--output_dir={file}/out", "{image}"],
            marks=pytest.mark.slow,
        ),
    ],
)
def test_an_output_directory_that_cannot_be_written_is_one_line(
    run, trained_run, tmp_path, repo, command, args
):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    image = repo / "datasets/digits/validation/7/0017.png"
    values = {"file": blocker, "run": trained_run, "image": image}
    result = run(command, *(arg.format(**values) for arg in args))
    line = _error_line(result)
    assert result.returncode == 2 and "a file is in the way" in line and str(blocker) in line


def test_one_class_is_refused(run, tmp_path):
    for split in ("train", "validation"):
        (tmp_path / "data" / split / "cat").mkdir(parents=True)
        (tmp_path / "data" / split / "cat" / "a.png").write_bytes(
            (REPO / "datasets/digits/train/0").glob("*.png").__next__().read_bytes()
        )
    result = run(
        "official.train",
        f"--config.data.source=folder:{tmp_path / 'data'}",
        f"--model_dir={tmp_path / 'run'}",
        *QUICK,
    )
    assert "1 class (cat); a classifier needs at least 2" in _error_line(result)
    assert not (tmp_path / "run").exists()
