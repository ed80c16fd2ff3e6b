"""Learning-rate schedules (as functions of the optimizer step)."""

from __future__ import annotations

import math

import keras
import tensorflow as tf


class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to the peak rate, then a decay over the remaining steps.

    Args:
      learning_rate: peak learning rate (after warmup).
      total_steps: length of the whole run in steps.
      warmup_steps: steps of linear warmup (Goyal et al. arXiv 1706.02677 §2.2).
      decay: "cosine" (Loshchilov & Hutter arXiv 1608.03983, without restarts; Bag of Tricks
        arXiv 1812.01187 §5.1) or "constant".
    """

    def __init__(
        self, learning_rate: float, total_steps: int, warmup_steps: int = 0, decay: str = "cosine"
    ):
        if decay not in ("cosine", "constant"):
            raise ValueError(f"unknown decay {decay!r}; choose cosine or constant")
        self.learning_rate = float(learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.decay = decay

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        peak = tf.constant(self.learning_rate, tf.float32)
        if self.decay == "cosine":
            span = float(max(1, self.total_steps - self.warmup_steps))
            progress = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
            rate = 0.5 * peak * (1.0 + tf.cos(math.pi * progress))
        else:
            rate = peak
        if self.warmup_steps > 0:
            rate = tf.where(step < self.warmup_steps, peak * step / self.warmup_steps, rate)
        return rate

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "decay": self.decay,
        }
