"""The run directory: config, labels and metrics round-trip; locating runs, checkpoints and
ensemble members; load_trained_model reproduces the run's own evaluation."""

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from official import atomic, runs
from official import config as config_lib
from official.data import pipeline, sources
from official.models import registry


def _resolved():
    config = config_lib.Config()
    config.data.mean = (1.0, 2.0, 3.0)
    config.model.name = "resnet18"
    return config_lib.resolve(
        config,
        spec=registry.get("resnet18"),
        num_classes=10,
        num_train_examples=1000,
        num_eval_examples=200,
    )


def test_config_labels_and_metrics_round_trip(tmp_path):
    resolved, derived = _resolved()
    path = runs.save_config(str(tmp_path), resolved, derived)
    payload = json.loads((tmp_path / "config.json").read_text())
    assert path == str(tmp_path / "config.json")
    assert payload["derived"]["steps_per_epoch"] == derived.steps_per_epoch
    assert payload["config"]["data"]["mean"] == [1.0, 2.0, 3.0]
    loaded, loaded_derived = runs.load_config(str(tmp_path))
    assert loaded == resolved and loaded_derived == derived
    runs.save_labels(str(tmp_path), ["cat", "dog"])
    assert runs.read_labels(str(tmp_path)) == ["cat", "dog"]
    runs.save_metrics(str(tmp_path), {"top1": 0.5})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"top1": 0.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json",
        "labels.txt",
        "metrics.json",
    ]  # No temporary file left behind.


def test_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(config_lib.ConfigError, match="no config.json"):
        runs.load_config(str(tmp_path))
    with pytest.raises(config_lib.ConfigError, match="no config.json"):
        runs.load_trained_model(str(tmp_path))
    with pytest.raises(config_lib.ConfigError, match="labels.txt"):
        runs.read_labels(str(tmp_path))
    resolved, derived = _resolved()
    runs.save_config(str(tmp_path), resolved, derived)
    with pytest.raises(config_lib.ConfigError, match="no checkpoint in"):
        runs.load_trained_model(str(tmp_path))


def test_locate_runs_checkpoints_and_ensemble_members(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "best").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    for path in ("checkpoints/ckpt-5.index", "checkpoints/best/ckpt-3.index"):
        (run / path).write_bytes(b"")
    assert runs.locate(str(run)) == (str(run), None)
    latest, best = f"{run}/checkpoints/ckpt-5", f"{run}/checkpoints/best/ckpt-3"
    assert runs.locate(latest) == (str(run), latest)
    assert runs.locate(best) == (str(run), best)
    assert runs.locate(str(tmp_path / "elsewhere" / "ckpt-1")) == (
        None,
        str(tmp_path / "elsewhere" / "ckpt-1"),
    )
    members = runs.parse_members(f"{run}, {latest},{best}")
    assert members == [
        runs.Member(str(run)),
        runs.Member(str(run), latest),
        runs.Member(str(run), best),
    ]
    assert [m.name for m in members] == [str(run), latest, best]
    with pytest.raises(config_lib.ConfigError, match="at least two"):
        runs.parse_members(str(run))
    with pytest.raises(config_lib.ConfigError, match="nope is neither a training run"):
        runs.parse_members(f"{run},{tmp_path}/nope")
    (tmp_path / "loose.index").write_bytes(b"")
    with pytest.raises(config_lib.ConfigError, match="not inside a run's checkpoints/"):
        runs.parse_members(f"{run},{tmp_path}/loose")


def test_load_trained_model_reproduces_the_run_metrics(trained_run, trained_metrics, repo):
    """The EMA weights of the run's last checkpoint, through the run's own evaluation
    pipeline, give exactly the top-1 of its metrics.json; the raw weights differ."""
    model, config, derived, path = runs.load_trained_model(str(trained_run))
    assert path.endswith(f"ckpt-{derived.total_steps}") and config.train.ema_decay == 0.9
    source = sources.open_source(f"folder:{repo}/datasets/digits")
    dataset = pipeline.build_dataset(
        source, split="validation", batch_size=128, geometry=runs.geometry(config)
    )
    correct = total = 0
    raw = runs.load_trained_model(str(trained_run), ema=False).model
    moved = 0.0
    for images, labels in dataset.as_numpy_iterator():
        logits = model(images.astype("float32"), training=False).numpy()
        correct += int((logits.argmax(-1) == labels).sum())
        total += len(labels)
        moved = max(moved, float(np.abs(raw(images.astype("float32")).numpy() - logits).max()))
    assert total == trained_metrics["eval_examples"] == 359
    assert correct / total == pytest.approx(trained_metrics["top1"], abs=1e-9)
    assert np.isfinite(logits).all() and moved > 1e-3


def test_one_trainer_per_run_directory(tmp_path, caplog):
    run = tmp_path / "run"
    lock_file = run / "train.lock"
    with runs.RunLock(str(run)):
        held = json.loads(lock_file.read_text())
        assert (held["host"], held["pid"]) == (socket.gethostname(), os.getpid())
        with (
            pytest.raises(runs.RunBusyError, match=f"process {os.getpid()} on "),
            runs.RunLock(str(run)),
        ):
            pass
    assert not lock_file.exists()  # Released.
    # A lock left by a process that no longer runs is taken over, with a warning.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock_file.write_text(
        json.dumps({"host": socket.gethostname(), "pid": gone.pid, "process_start": "1"})
    )
    with caplog.at_level("WARNING", logger="absl"), runs.RunLock(str(run)):
        assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    assert "taking over" in caplog.text and not lock_file.exists()
    # A process on another host cannot be checked: refused, with what to do.
    lock_file.write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": "noon"}))
    busy = pytest.raises(runs.RunBusyError, match="on elsewhere .*delete .*train.lock")
    with busy, runs.RunLock(str(run)):
        pass
    (tmp_path / "file").write_text("x")
    in_the_way = pytest.raises(atomic.OutputError, match="file is in the way")
    with in_the_way, runs.RunLock(str(tmp_path / "file" / "run")):
        pass


@pytest.mark.parametrize(
    "content, expected",
    [(b"", "JSONDecodeError"), (b"\xff\xfe garbage", "UnicodeDecodeError"), (b"[1, 2]", "Type")],
)
def test_a_damaged_config_json_is_one_line(tmp_path, content, expected):
    (tmp_path / "config.json").write_bytes(content)
    with pytest.raises(
        config_lib.ConfigError, match=f"config.json: not a run configuration .*{expected}"
    ):
        runs.load_config(str(tmp_path))


def test_an_unreadable_checkpoint_falls_back_to_the_one_before(trained_run, tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    latest = runs.latest_checkpoint(str(run))
    step = int(latest.rsplit("-", 1)[1])
    (data,) = (run / "checkpoints").glob(f"ckpt-{step}.data-*")
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size // 2)
    with caplog.at_level("WARNING", logger="absl"):
        trained = runs.load_trained_model(str(run))
    assert trained.checkpoint != latest and trained.checkpoint.endswith("ckpt-" + str(step // 2))
    assert "not a readable checkpoint" in caplog.text
    with pytest.raises(config_lib.ConfigError, match="--checkpoint: .*not a readable checkpoint"):
        runs.load_trained_model(str(run), checkpoint=latest)


def test_a_full_disk_while_checkpointing_says_so_and_keeps_the_last_checkpoint(
    tmp_path, monkeypatch
):
    import tensorflow as tf
    import tiny

    checkpointer = runs.Checkpointer(str(tmp_path), model=tiny.dense_model())
    first = checkpointer.save(1)

    def disk_full(self, checkpoint_number=None):
        raise tf.errors.ResourceExhaustedError(None, None, "write failed: No space left on device")

    monkeypatch.setattr(tf.train.CheckpointManager, "save", disk_full)
    with pytest.raises(atomic.OutputError, match=f"disk is full .*step 2.*{first}, is intact"):
        checkpointer.save(2)
    with pytest.raises(atomic.OutputError, match="disk is full"):
        checkpointer.save_best(2, {"top1": 1.0, "top5": 1.0, "loss": 0.0})
    assert runs.latest_checkpoint(str(tmp_path)) == first


def test_resume_passes_over_a_truncated_checkpoint(tmp_path, caplog):
    import tiny

    model = tiny.dense_model()
    checkpointer = runs.Checkpointer(str(tmp_path), model=model)
    checkpointer.save(1)
    at_step_1 = model.get_weights()
    trained = [w * 0 + 3 for w in at_step_1]
    model.set_weights(trained)
    second = checkpointer.save(2)
    with open(second + ".index", "r+b") as f:
        f.truncate(20)
    restored = tiny.dense_model()
    with caplog.at_level("WARNING", logger="absl"):
        path = runs.Checkpointer(str(tmp_path), model=restored).restore_latest()
    assert path.endswith("ckpt-1") and "ckpt-2 cannot be read" in caplog.text
    for got, want in zip(restored.get_weights(), at_step_1):
        np.testing.assert_array_equal(got, want)


def test_geometry_takes_the_models_reference_for_what_a_converted_run_leaves_unset():
    """A converted run (weights_lib.convert) records only the resolution; its evaluation crop
    and resize method are the model's."""
    config = config_lib.Config()
    config.model.name = "efficientnet_lite0"
    config.data.image_size = 240
    spec = registry.get("efficientnet_lite0")
    geometry = runs.geometry(config)
    assert (geometry.image_size, geometry.crop_fraction, geometry.interpolation) == (
        240,
        spec.crop_fraction,
        spec.interpolation,
    )
    config.data.crop_fraction, config.data.interpolation = 1.0, "area"
    assert runs.geometry(config).crop_fraction == 1.0
    assert runs.geometry(config).interpolation == "area"
