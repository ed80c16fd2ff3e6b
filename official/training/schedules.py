"""Learning-rate schedules as functions of the optimizer step, and reduce-on-plateau state."""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import tensorflow as tf

SCHEDULES = ("cosine", "constant", "step", "exponential", "polynomial", "plateau")
# Each schedule's own decay factor (`--config.train.lr_decay_rate=0`): ×0.1 steps as ResNet
# (He et al. arXiv 1512.03385 §3.4) and VGG; 0.97 every 2.4 epochs as EfficientNet (arXiv
# 1905.11946 §5).
DEFAULT_DECAY_RATE = {"step": 0.1, "plateau": 0.1, "exponential": 0.97}


class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to the peak rate, then a decay.

    Args:
      learning_rate: peak learning rate (after warmup).
      total_steps: length of the schedule in steps.
      warmup_steps: steps of linear warmup (Goyal et al. arXiv 1706.02677 §2.2); the decay
        below overrides nothing during warmup.
      decay: after warmup,
        "cosine": half a cosine from the peak to `end_learning_rate` over the remaining steps
          (Loshchilov & Hutter arXiv 1608.03983, without restarts; Bag of Tricks §5.1);
        "constant" and "plateau": the peak (plateau's reductions are a separate multiplier,
          see ReduceOnPlateau);
        "step": × `decay_rate` at each of `boundaries` (absolute steps, e.g. epochs 30/60/80 of
          the ResNet recipe, He et al. arXiv 1512.03385 §3.4);
        "exponential": × `decay_rate` every `decay_steps` steps counted from step 0, in whole
          intervals when `staircase` (EfficientNet: 0.97 every 2.4 epochs);
        "polynomial": (peak − end) · (1 − progress)^power + end over the remaining steps.
      boundaries: "step" boundaries.
      decay_rate: "step" and "exponential" factor.
      decay_steps: "exponential" interval.
      staircase: "exponential" in whole intervals.
      power: "polynomial" power.
      end_learning_rate: final rate of "cosine" and "polynomial".
    """

    def __init__(
        self,
        learning_rate: float,
        total_steps: int,
        warmup_steps: int = 0,
        decay: str = "cosine",
        *,
        boundaries: Sequence[int] = (),
        decay_rate: float = 0.1,
        decay_steps: float = 1.0,
        staircase: bool = True,
        power: float = 1.0,
        end_learning_rate: float = 0.0,
    ):
        if decay not in SCHEDULES:
            raise ValueError(f"unknown decay {decay!r}; choose one of {', '.join(SCHEDULES)}")
        self.learning_rate = float(learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.decay = decay
        self.boundaries = tuple(int(b) for b in boundaries)
        self.decay_rate = float(decay_rate)
        self.decay_steps = float(decay_steps)
        self.staircase = bool(staircase)
        self.power = float(power)
        self.end_learning_rate = float(end_learning_rate)

    def _decayed(self, step, peak):
        end = tf.constant(self.end_learning_rate, tf.float32)
        span = float(max(1, self.total_steps - self.warmup_steps))
        progress = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
        if self.decay == "cosine":
            return end + 0.5 * (peak - end) * (1.0 + tf.cos(math.pi * progress))
        if self.decay == "polynomial":
            return end + (peak - end) * tf.pow(1.0 - progress, self.power)
        if self.decay == "step":
            passed = tf.add_n([tf.cast(step >= b, tf.float32) for b in self.boundaries] or [0.0])
            return peak * tf.pow(self.decay_rate, passed)
        if self.decay == "exponential":
            intervals = step / self.decay_steps
            if self.staircase:
                intervals = tf.floor(intervals)
            return peak * tf.pow(self.decay_rate, intervals)
        return peak

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        peak = tf.constant(self.learning_rate, tf.float32)
        rate = self._decayed(step, peak)
        if self.warmup_steps > 0:
            rate = tf.where(step < self.warmup_steps, peak * step / self.warmup_steps, rate)
        return rate

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "decay": self.decay,
            "boundaries": self.boundaries,
            "decay_rate": self.decay_rate,
            "decay_steps": self.decay_steps,
            "staircase": self.staircase,
            "power": self.power,
            "end_learning_rate": self.end_learning_rate,
        }


class ReduceOnPlateau(tf.Module):
    """Multiplies the learning rate by `factor` when the validation metric stops improving.

    VGG's recipe: "decreased by a factor of 10 when the validation set accuracy stopped
    improving" (Simonyan & Zisserman arXiv 1409.1556 §3.1). Its state lives in variables so it is
    checkpointed and survives a restart.

    Args:
      factor: multiplier applied at each reduction.
      patience: evaluations without improvement before a reduction.
      min_delta: smallest gain of the metric that counts as an improvement.
      min_scale: the multiplier never goes below this.
    """

    def __init__(
        self, factor: float = 0.1, patience: int = 2, min_delta: float = 1e-3, min_scale=0.0
    ):
        super().__init__(name="reduce_on_plateau")
        self.factor = float(factor)
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.min_scale = float(min_scale)
        self.scale = tf.Variable(1.0, trainable=False, dtype=tf.float32, name="scale")
        self.best = tf.Variable(-math.inf, trainable=False, dtype=tf.float32, name="best")
        self.wait = tf.Variable(0, trainable=False, dtype=tf.int64, name="wait")

    def update(self, metric: float) -> bool:
        """Records one evaluation (higher is better); returns True if the rate was reduced."""
        if metric > float(self.best.numpy()) + self.min_delta:
            self.best.assign(metric)
            self.wait.assign(0)
            return False
        self.wait.assign_add(1)
        if int(self.wait.numpy()) < self.patience:
            return False
        self.wait.assign(0)
        self.scale.assign(max(float(self.scale.numpy()) * self.factor, self.min_scale))
        return True
