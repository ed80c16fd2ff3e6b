"""`--config.runtime.precision=auto`: the choice per device, and the reason logged."""

import pytest
import tensorflow as tf

from official.training import precision


@pytest.fixture
def devices(monkeypatch):
    """Pretends the machine has the given accelerators and CPU flags."""

    def set_up(*, gpus=(), tpu=False, cpu_flags=()):
        physical = tf.config.list_physical_devices
        logical = tf.config.list_logical_devices
        monkeypatch.setattr(
            tf.config,
            "list_physical_devices",
            lambda kind=None: (
                [f"GPU:{i}" for i in range(len(gpus))] if kind == "GPU" else physical(kind)
            ),
        )
        monkeypatch.setattr(
            tf.config,
            "list_logical_devices",
            lambda kind=None: (
                ["TPU:0"] if kind == "TPU" and tpu else ([] if kind == "TPU" else logical(kind))
            ),
        )
        monkeypatch.setattr(
            tf.config.experimental,
            "get_device_details",
            lambda device: {"compute_capability": gpus[int(device.split(":")[1])]},
        )
        monkeypatch.setattr(precision, "_cpu_flags", lambda: set(cpu_flags))

    return set_up


@pytest.mark.parametrize(
    "machine, expected",
    [
        ({"tpu": True}, "mixed_bfloat16"),
        ({"gpus": [(8, 0)]}, "mixed_float16"),
        ({"gpus": [(7, 0)]}, "mixed_float16"),
        ({"gpus": [(6, 1)]}, "float32"),
        ({"cpu_flags": ["avx512f", "avx512_bf16"]}, "mixed_bfloat16"),
        ({"cpu_flags": ["amx_bf16"]}, "mixed_bfloat16"),
        ({"cpu_flags": ["avx2"]}, "float32"),
    ],
)
def test_auto_precision_per_device(devices, machine, expected):
    devices(**machine)
    policy, reason = precision.auto_precision()
    assert policy == expected
    assert reason  # Logged with the choice.


def test_set_policy_logs_the_auto_choice(devices, caplog):
    import keras
    from absl import logging

    devices(cpu_flags=["avx2"])
    logging.set_verbosity(logging.INFO)
    try:
        with caplog.at_level("INFO"):
            assert precision.set_policy("auto") == "float32"
        assert "precision auto → float32 (CPU without bfloat16 instructions)" in caplog.text
    finally:
        keras.mixed_precision.set_global_policy("float32")
