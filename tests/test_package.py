"""What importing the package sets before TensorFlow starts (official/__init__.py)."""

import os
import subprocess
import sys

import pytest

PROBE = (
    "import os, official, tensorflow\n"
    "from tensorflow.python.util import _pywrap_util_port as port\n"
    "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], port.IsMklEnabled())\n"
)


@pytest.mark.parametrize("chosen, expected", [(None, "1 True"), ("0", "0 False")])
def test_onednn_kernels_are_on_unless_the_user_chose(repo, chosen, expected):
    """On by default, whatever the CPU (TensorFlow itself enables them only with AVX-512
    VNNI/BF16 or AMX); a user's TF_ENABLE_ONEDNN_OPTS wins."""
    environment = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if chosen is not None:
        environment["TF_ENABLE_ONEDNN_OPTS"] = chosen
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
        env={**environment, "PYTHONPATH": str(repo), "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == expected


def test_weight_cache_only_where_asked_and_never_over_the_users_choice():
    """oneDNN's weight cache (official.assume_frozen_weights) would keep a trained model on its
    first weights: importing the package must not turn it on, asking turns it on, and a user's
    own setting wins. (No TensorFlow op runs here, so this process's kernels never see it.)"""
    import official

    name = official.FROZEN_WEIGHTS_ENV
    assert name not in os.environ
    try:
        official.assume_frozen_weights()
        assert os.environ[name] == "1"
        os.environ[name] = "0"
        official.assume_frozen_weights()
        assert os.environ[name] == "0"
    finally:
        os.environ.pop(name, None)
