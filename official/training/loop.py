"""The training loop: one custom loop for every distribution strategy.

Keras 3 `fit` breaks under MultiWorkerMirroredStrategy (keras-team/keras#20585), so training
runs its own steps with `strategy.run`. Several steps run inside one `tf.function` call (a
`tf.while_loop`), so the host only wakes up at logging intervals.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from absl import logging

from official.progress import Progress
from official.training import losses, optimizers

# Order of the per-step statistics summed over replicas and steps.
_LOSS_SUM, _TOP1, _TOP5, _COUNT = range(4)


def _statistics(labels, logits, per_example_loss) -> tf.Tensor:
    """[sum of losses, top-1 hits, top-5 hits, examples] of one batch, in float32."""
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels, tf.int32)
    k = min(5, logits.shape[-1])
    top1 = tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, 1), tf.float32))
    topk = tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, k), tf.float32))
    count = tf.cast(tf.shape(labels)[0], tf.float32)
    return tf.stack([tf.reduce_sum(per_example_loss), top1, topk, count])


def summarize(totals: np.ndarray) -> dict[str, float]:
    """Turns summed statistics into {"loss", "top1", "top5"}."""
    count = max(float(totals[_COUNT]), 1.0)
    return {
        "loss": float(totals[_LOSS_SUM]) / count,
        "top1": float(totals[_TOP1]) / count,
        "top5": float(totals[_TOP5]) / count,
    }


class Trainer:
    """Compiled training and evaluation steps of one model under one strategy.

    Args:
      strategy: the distribution strategy the model and optimizer were built under.
      model: a Keras model taking 0..255 images and returning logits.
      optimizer: a Keras optimizer.
      num_classes: classifier outputs.
      global_batch_size: examples per step over all replicas (the loss is averaged over it).
      label_smoothing: see losses.cross_entropy.
      weight_decay: L2 penalty on kernels, see optimizers.add_weight_decay.
    """

    def __init__(
        self,
        *,
        strategy,
        model,
        optimizer,
        num_classes: int,
        global_batch_size: int,
        label_smoothing: float = 0.0,
        weight_decay: float = 0.0,
    ):
        self.strategy = strategy
        self.model = model
        self.optimizer = optimizer
        self.num_classes = num_classes
        self.global_batch_size = global_batch_size
        self.label_smoothing = label_smoothing
        self.weight_decay = weight_decay
        self._train_steps = tf.function(self._train_steps_fn)
        self._eval_step = tf.function(self._eval_step_fn)

    def _replica_train_step(self, images, labels):
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.model(tf.cast(images, tf.float32), training=True)
            per_example = losses.cross_entropy(
                labels,
                logits,
                num_classes=self.num_classes,
                label_smoothing=self.label_smoothing,
            )
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch_size)
        gradients = tape.gradient(loss, variables)
        gradients = optimizers.add_weight_decay(gradients, variables, self.weight_decay)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return _statistics(labels, logits, per_example)

    def _train_steps_fn(self, iterator, num_steps):
        totals = tf.zeros([4], tf.float32)
        for _ in tf.range(num_steps):
            per_replica = self.strategy.run(self._replica_train_step, args=next(iterator))
            totals += self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
        return totals

    def train_steps(self, iterator, num_steps: int) -> np.ndarray:
        """Runs `num_steps` steps; returns the summed [loss, top-1, top-5, count]."""
        return self._train_steps(iterator, tf.constant(num_steps, tf.int32)).numpy()

    def _replica_eval_step(self, images, labels):
        logits = self.model(tf.cast(images, tf.float32), training=False)
        per_example = losses.cross_entropy(labels, logits, num_classes=self.num_classes)
        return _statistics(labels, logits, per_example)

    def _eval_step_fn(self, batch):
        per_replica = self.strategy.run(self._replica_eval_step, args=batch)
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def evaluate(
        self, dataset, num_batches: int | None = None, description: str = "eval"
    ) -> dict[str, float]:
        """Evaluates on a distributed dataset that yields every example once."""
        totals = np.zeros(4)
        progress = Progress(num_batches or 1, description, unit="batch")
        for index, batch in enumerate(dataset):
            totals += self._eval_step(batch).numpy()
            progress.update(index + 1, **summarize(totals))
        progress.close()
        return {**summarize(totals), "examples": int(totals[_COUNT])}

    @property
    def step(self) -> int:
        return int(self.optimizer.iterations.numpy())


@dataclasses.dataclass
class Schedule:
    """When things happen, in optimizer steps."""

    total_steps: int
    steps_per_epoch: int
    log_every_steps: int
    checkpoint_every_steps: int = 0  # 0: at epoch ends only.
    eval_every_epochs: int = 1  # 0: only after the last step.


def fit(
    trainer: Trainer,
    *,
    train_iterator,
    schedule: Schedule,
    evaluate: Callable[[], dict],
    checkpointer,
    summaries,
    learning_rate: Callable[[int], float],
) -> dict:
    """Trains until `schedule.total_steps`, logging, checkpointing and evaluating on the way.

    Resumes from the optimizer's step count (restore the checkpoint before calling).

    Returns:
      The last evaluation's metrics.
    """
    step = trainer.step
    progress = Progress(schedule.total_steps, "train", unit="step")
    last_eval: dict = {}
    while step < schedule.total_steps:
        # Run up to the next log point, epoch end or checkpoint, whichever comes first.
        boundaries = [
            schedule.total_steps,
            (step // schedule.log_every_steps + 1) * schedule.log_every_steps,
            (step // schedule.steps_per_epoch + 1) * schedule.steps_per_epoch,
        ]
        if schedule.checkpoint_every_steps:
            boundaries.append(
                (step // schedule.checkpoint_every_steps + 1) * schedule.checkpoint_every_steps
            )
        num_steps = min(boundaries) - step
        start = time.monotonic()
        totals = trainer.train_steps(train_iterator, num_steps)
        seconds = time.monotonic() - start
        step = trainer.step
        metrics = summarize(totals)
        if not np.isfinite(metrics["loss"]):
            raise FloatingPointError(
                f"loss is {metrics['loss']} at step {step}; stopping (the last checkpoint, "
                f"{checkpointer.latest}, is kept)"
            )
        images_per_second = totals[_COUNT] / max(seconds, 1e-9)
        lr = float(learning_rate(step))
        summaries.scalars(
            "train", step, {**metrics, "learning_rate": lr, "images_per_second": images_per_second}
        )
        progress.update(
            step,
            loss=metrics["loss"],
            top1=metrics["top1"],
            img_per_s=round(images_per_second, 1),
            lr=lr,
        )
        epoch_end = step % schedule.steps_per_epoch == 0
        if (
            epoch_end
            or step == schedule.total_steps
            or (schedule.checkpoint_every_steps and step % schedule.checkpoint_every_steps == 0)
        ):
            checkpointer.save(step)
        epoch = step // schedule.steps_per_epoch
        if step == schedule.total_steps or (
            epoch_end and schedule.eval_every_epochs and epoch % schedule.eval_every_epochs == 0
        ):
            progress.close()
            last_eval = evaluate()
            summaries.scalars(
                "validation", step, {k: last_eval[k] for k in ("loss", "top1", "top5")}
            )
            logging.info(
                "step %d (epoch %.2f): validation top-1 %.4f top-5 %.4f loss %.4f",
                step,
                step / schedule.steps_per_epoch,
                last_eval["top1"],
                last_eval["top5"],
                last_eval["loss"],
            )
        summaries.flush()
    progress.close()
    if not last_eval:  # Resumed a finished run: evaluate the final weights again.
        last_eval = evaluate()
    return last_eval
