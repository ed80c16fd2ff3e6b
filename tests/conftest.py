"""Shared test setup: quiet TensorFlow, the repository root, and a subprocess runner."""

import os
import pathlib
import subprocess
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def repo() -> pathlib.Path:
    return REPO


def run_module(module: str, *args: str, cwd=REPO, timeout: float = 600, env=None):
    """Runs `python -m module args...` like a user would; returns the CompletedProcess."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )


@pytest.fixture
def run():
    return run_module
