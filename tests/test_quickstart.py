"""The README's main job, end to end, as a user runs it (fewer epochs)."""

import json


def test_quickstart_trains_evaluates_and_writes_everything(run, tmp_path):
    model_dir = tmp_path / "quickstart"
    result = run(
        "official.train",
        "--flagfile=configs/quickstart.flags",
        f"--model_dir={model_dir}",
        "--config.train.epochs=6",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert set(metrics) >= {"top1", "top5", "loss", "epochs", "wall_seconds"}
    assert metrics["top1"] >= 0.9  # chance is 0.1
    assert metrics["top5"] >= metrics["top1"]
    assert metrics["epochs"] == 6
    assert metrics["eval_examples"] == 359
    # Progress: bar with loss, top-1, images/s and ETA.
    assert "train [" in result.stderr and "img_per_s" in result.stderr
    assert "ETA" in result.stderr and "top1" in result.stderr
    assert f"validation top-1 {metrics['top1']:.4f}" in result.stdout
    assert str(model_dir) in result.stdout
    # Checkpoints, TensorBoard events, resolved config.
    assert list((model_dir / "checkpoints").glob("ckpt-*.index"))
    assert list((model_dir / "train").glob("events.out.tfevents.*"))
    assert list((model_dir / "validation").glob("events.out.tfevents.*"))
    config = json.loads((model_dir / "config.json").read_text())
    assert config["config"]["model"]["num_classes"] == 10
    assert config["derived"]["steps_per_epoch"] == 1438 // 64
    assert config["derived"]["learning_rate"] == 0.4 * 64 / 256
    assert (model_dir / "labels.txt").read_text().split() == [str(d) for d in range(10)]

    # Running the same command again resumes from the last checkpoint: nothing to train,
    # the same final weights evaluate to the same numbers.
    again = run(
        "official.train",
        "--flagfile=configs/quickstart.flags",
        f"--model_dir={model_dir}",
        "--config.train.epochs=6",
    )
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = json.loads((model_dir / "metrics.json").read_text())
    assert resumed["top1"] == metrics["top1"] and resumed["loss"] == metrics["loss"]
