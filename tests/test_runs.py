"""The run directory: config, labels and metrics round-trip; locating runs, checkpoints and
ensemble members; load_trained_model reproduces the run's own evaluation."""

import json

import numpy as np
import pytest

from official import config as config_lib
from official import runs
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
