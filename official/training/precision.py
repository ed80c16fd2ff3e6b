"""Mixed-precision policy by name, including "auto" detection."""

from __future__ import annotations

import keras
import tensorflow as tf
from absl import logging

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16", "auto")


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def auto_precision() -> tuple[str, str]:
    """Picks the fastest safe policy for this machine; returns (policy, reason)."""
    if tf.config.list_logical_devices("TPU"):
        return "mixed_bfloat16", "TPU: bfloat16 matrix units"
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get(
            "compute_capability", (0, 0)
        )
        if capability >= (7, 0):
            return "mixed_float16", f"GPU compute capability {capability} has float16 tensor cores"
        return "float32", f"GPU compute capability {capability} < 7.0: no fast float16"
    flags = _cpu_flags()
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        return "mixed_bfloat16", "CPU has AVX512_BF16/AMX: bfloat16 convolutions are faster"
    return "float32", "CPU without bfloat16 instructions"


def set_policy(precision: str) -> str:
    """Sets the global Keras dtype policy; returns the policy actually used."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    if precision == "auto":
        precision, reason = auto_precision()
        logging.info("precision auto → %s (%s)", precision, reason)
    keras.mixed_precision.set_global_policy(precision)
    return precision
