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


class DynamicLossScale(tf.Module):
    """Dynamic loss scaling for float16 training (Micikevicius et al. arXiv 1710.03740 §3.2).

    The loss is multiplied by `scale` before differentiation so small float16 gradients do not
    flush to zero; the loop divides the all-reduced gradients by it again. A step whose
    gradients are not finite is skipped and halves the scale; `growth_interval` finite steps in a
    row double it. Defaults are Keras' LossScaleOptimizer's. Keras' wrapper is not used because
    the loop applies gradients itself (after its own all-reduce, so every replica sees the same
    finiteness and skips the same steps).
    """

    def __init__(self, initial_scale: float = 2.0**15, growth_interval: int = 2000):
        super().__init__(name="loss_scale")
        self.growth_interval = int(growth_interval)
        self.scale = tf.Variable(initial_scale, trainable=False, dtype=tf.float32, name="scale")
        self.good_steps = tf.Variable(0, trainable=False, dtype=tf.int64, name="good_steps")

    def update(self, finite: tf.Tensor) -> None:
        """Adjusts the scale after a step; call in cross-replica context."""

        def on_finite():
            grow = self.good_steps + 1 >= self.growth_interval
            self.scale.assign(tf.where(grow, self.scale * 2.0, self.scale))
            self.good_steps.assign(tf.where(grow, tf.constant(0, tf.int64), self.good_steps + 1))

        def on_overflow():
            self.scale.assign(tf.maximum(self.scale * 0.5, 1.0))
            self.good_steps.assign(0)

        tf.cond(finite, on_finite, on_overflow)
