"""Exponential moving average of a model's weights, kept in a second copy of the model.

The average is itself a Keras model of the same architecture, so evaluation calls it directly
(no swapping of weights), and a checkpoint stores it under its own key (`ema`), from which
`runs.restore_weights(..., ema=True)` loads it into any model of that architecture.
"""

from __future__ import annotations

import tensorflow as tf


class ExponentialMovingAverage:
    """average ← d·average + (1 − d)·weight after every optimizer step.

    The decay ramps up as d = min(decay, (1 + n) / (10 + n)) after n updates, as
    tf.train.ExponentialMovingAverage with `num_updates` (used by the EfficientNet and
    MnasNet TPU recipes), so early averages are not dominated by the initialization. Every
    floating-point weight is averaged, batch-norm moving statistics included, as those recipes
    do; other weights are copied.

    Args:
      model: the trained model.
      average_model: a model of the same architecture holding the averages (build it under the
        same strategy scope).
      decay: the final decay, e.g. 0.9999.
      strategy: the distribution strategy of both models.
    """

    def __init__(self, model, average_model, *, decay: float, strategy: tf.distribute.Strategy):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        pairs = list(zip(average_model.weights, model.weights))
        if len(average_model.weights) != len(model.weights) or any(
            tuple(a.shape) != tuple(w.shape) for a, w in pairs
        ):
            raise ValueError("the average model does not have the model's architecture")
        self.model = model
        self.average_model = average_model
        self.decay = float(decay)
        self.strategy = strategy
        self._pairs = [(a.value, w.value) for a, w in pairs]

    def decay_at(self, num_updates) -> tf.Tensor:
        """The decay used for update number `num_updates` (0-based)."""
        n = tf.cast(num_updates, tf.float32)
        return tf.minimum(self.decay, (1.0 + n) / (10.0 + n))

    def update(self, num_updates) -> None:
        """Moves the averages towards the weights; call in cross-replica context."""
        decay = self.decay_at(num_updates)

        def move(average, weight):
            if average.dtype.is_floating:
                d = tf.cast(decay, average.dtype)
                average.assign(d * average + (1 - d) * weight)
            else:
                average.assign(weight)

        for average, weight in self._pairs:
            self.strategy.extended.update(average, move, args=(weight,), group=False)

    def reset(self) -> None:
        """Sets the averages to the current weights (at the start of a run)."""
        for average, weight in self._pairs:
            self.strategy.extended.update(
                average, lambda a, w: a.assign(w), args=(weight,), group=False
            )
