"""Exact resume of the real entry point: SIGTERM writes a checkpoint and exits 143, SIGKILL at an
arbitrary step loses only the steps since the last checkpoint, and the rerun finishes with the
weights of an uninterrupted run."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tiny

from official import runs

TESTS = pathlib.Path(__file__).resolve().parents[1]
REPO = TESTS.parent

# Deterministic: ops, data order and augmentation; dropout and EMA exercise the RNG and EMA state.
FLAGS = [
    "--config.model.name=tiny_cnn",
    "--config.model.num_classes=4",
    "--config.model.dropout=0.3",
    "--config.data.source=synthetic",
    "--config.data.synthetic_examples=96",
    "--config.data.image_size=16",
    "--config.train.batch_size=8",  # 12 steps per epoch
    "--config.train.epochs=2",
    "--config.train.base_learning_rate=0.05",
    "--config.train.warmup_epochs=1",
    "--config.train.ema_decay=0.9",
    "--config.runtime.distribution_strategy=one_device",
    "--config.runtime.deterministic=true",
    "--config.runtime.checkpoint_every_steps=3",
    "--config.runtime.log_every_steps=1",
    "--config.runtime.summary_images=0",
]
TOTAL_STEPS = 24
# The optimizers whose slots must survive the interruptions. AMSBound (slow suite) adds its own
# state: the running maximum of v, and bounds that depend on the restored step count (γ = 0.5
# narrows them within these 24 steps).
OPTIMIZERS = {
    "adam": ["--config.train.optimizer=adam"],
    "amsbound": ["--config.train.optimizer=amsbound", "--config.train.bound_gamma=0.5"],
}


def _start(model_dir: pathlib.Path, optimizer: str) -> subprocess.Popen:
    flags = [*FLAGS, *OPTIMIZERS[optimizer]]
    return subprocess.Popen(
        [sys.executable, str(TESTS / "tiny.py"), f"--model_dir={model_dir}", *flags],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_checkpoint_after(process, model_dir: pathlib.Path, step: int, timeout=180) -> int:
    """Waits until the run's latest checkpoint is past `step`; returns its step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        latest = runs.latest_checkpoint(str(model_dir))
        if latest and int(latest.rsplit("-", 1)[1]) > step:
            return int(latest.rsplit("-", 1)[1])
        if process.poll() is not None:
            raise AssertionError(
                f"exited early ({process.returncode}): {process.stderr.read()[-2000:]}"
            )
        time.sleep(0.02)
    process.kill()
    raise AssertionError("no checkpoint in time")


def _finish(process, timeout=240):
    try:
        return process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _weights(model_dir: pathlib.Path, ema: bool):
    model = tiny.tiny_cnn(num_classes=4, image_size=16, dropout=0.3)
    runs.restore_weights(model, runs.latest_checkpoint(str(model_dir)), ema=ema)
    return model.get_weights()


@pytest.mark.parametrize("optimizer", ["adam", pytest.param("amsbound", marks=pytest.mark.slow)])
def test_sigterm_then_sigkill_then_rerun_equals_an_uninterrupted_run(tmp_path, optimizer):
    reference_dir, interrupted_dir = tmp_path / "reference", tmp_path / "interrupted"
    reference = _start(reference_dir, optimizer)  # Runs alongside the interrupted sequence.
    try:
        # 1. SIGTERM (preemption) once the first periodic checkpoint exists.
        first = _start(interrupted_dir, optimizer)
        _wait_for_checkpoint_after(first, interrupted_dir, 0)
        first.send_signal(signal.SIGTERM)
        _, err = _finish(first)
        assert first.returncode == 143, err[-2000:]
        stopped = int(err.split("stopped by SIGTERM at step ")[1].split(";")[0])
        assert 3 <= stopped < TOTAL_STEPS
        assert runs.latest_checkpoint(str(interrupted_dir)).endswith(f"ckpt-{stopped}")

        # 2. Rerun; SIGKILL as soon as it has written a checkpoint of its own.
        second = _start(interrupted_dir, optimizer)
        killed_after = _wait_for_checkpoint_after(second, interrupted_dir, stopped)
        second.send_signal(signal.SIGKILL)
        _, err = _finish(second)
        assert second.returncode == -signal.SIGKILL
        assert f"restored {interrupted_dir}/checkpoints/ckpt-{stopped}" in err

        # 3. Rerun to the end.
        third = _start(interrupted_dir, optimizer)
        _, err = _finish(third)
        assert third.returncode == 0, err[-3000:]
        resumed_from = int(err.split(f"restored {interrupted_dir}/checkpoints/ckpt-")[1].split()[0])
        assert resumed_from >= killed_after
        _, reference_err = _finish(reference)
        assert reference.returncode == 0, reference_err[-3000:]
    finally:
        for process in (reference,):
            if process.poll() is None:
                process.kill()
                process.wait()

    for ema in (False, True):
        for got, want in zip(_weights(interrupted_dir, ema), _weights(reference_dir, ema)):
            np.testing.assert_allclose(got, want, atol=1e-6)
    metrics = json.loads((interrupted_dir / "metrics.json").read_text())
    expected = json.loads((reference_dir / "metrics.json").read_text())
    assert metrics["steps"] == expected["steps"] == TOTAL_STEPS
    assert metrics["weights_fingerprint"] == expected["weights_fingerprint"]
    assert metrics["top1"] == expected["top1"] and metrics["loss"] == expected["loss"]
