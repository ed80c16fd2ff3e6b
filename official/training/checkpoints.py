"""Checkpoints of the whole training state; the latest one is restored on restart.

Layout under model_dir/checkpoints:
  ckpt-<step>.{index,data-*}   the last K full states (model, optimizer(s), EMA, loss scale,
                               step, RNG and plateau state, and the input position)
  best/ckpt-<step>.*           the weights (model and EMA) of the best evaluation so far
  best/best.json               {"step", "top1", "top5", "loss"} of that evaluation
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import tensorflow as tf
from absl import logging

CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"
BEST_FILE = "best.json"
MODEL_KEY = "model"
EMA_KEY = "ema"
INPUT_KEY = "iterator"


def _saved_objects(path: str) -> set[str]:
    """Top-level names of the objects in a checkpoint ("model", "optimizer", ...)."""
    return {name.split("/", 1)[0] for name, _ in tf.train.list_variables(path)}


class Checkpointer:
    """Saves and restores the training state under model_dir/checkpoints.

    Every worker of a multi-worker run takes part in saving (TensorFlow expects it), but only the
    chief's files are kept: the others write into a temporary directory that is removed at once.
    Every worker restores from the chief's directory.

    Args:
      model_dir: the run's directory.
      is_chief: whether this process owns the run's files.
      keep: number of recent checkpoints to keep.
      trackables: objects to save, by name (model=..., optimizer=..., ema=..., iterator=...).
    """

    def __init__(self, model_dir: str, *, is_chief: bool = True, keep: int = 3, **trackables):
        self.directory = os.path.join(model_dir, CHECKPOINT_DIR)
        self.best_directory = os.path.join(self.directory, BEST_DIR)
        self.is_chief = is_chief
        self.trackables = {k: v for k, v in trackables.items() if v is not None}
        self.checkpoint = tf.train.Checkpoint(**self.trackables)
        self.keep = keep
        weights = {k: v for k, v in self.trackables.items() if k in (MODEL_KEY, EMA_KEY)}
        self._best_checkpoint = tf.train.Checkpoint(**weights)
        self._managers: dict[str, tf.train.CheckpointManager] = {}

    @property
    def latest(self) -> str | None:
        return tf.train.latest_checkpoint(self.directory)

    def restore_latest(self) -> str | None:
        """Restores the latest checkpoint if there is one; returns its path.

        Objects the checkpoint does not hold (e.g. the input position of a run saved with
        --config.runtime.checkpoint_input=false) keep their fresh state; everything the
        checkpoint holds must match.

        Raises:
          ValueError: the checkpoint belongs to a different model or configuration.
        """
        path = self.latest
        if not path:
            return None
        saved = _saved_objects(path)
        missing = sorted(set(self.trackables) - saved)
        if MODEL_KEY in missing:
            raise ValueError(f"{path} holds no model weights")
        if missing:
            logging.warning("%s has no %s; those start fresh", path, ", ".join(missing))
        present = {k: v for k, v in self.trackables.items() if k in saved}
        try:
            status = tf.train.Checkpoint(**present).restore(path)
            status.assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            message = str(e).strip().splitlines()[0][:300]
            raise ValueError(
                f"cannot resume from {path} (a different model or configuration?): {message}. "
                "Use a new --model_dir, or the configuration that wrote it."
            ) from None
        logging.info("restored %s", path)
        return path

    def _write(self, checkpoint: tf.train.Checkpoint, directory: str, step: int, keep: int) -> str:
        if self.is_chief:
            if directory not in self._managers:
                self._managers[directory] = tf.train.CheckpointManager(
                    checkpoint, directory, max_to_keep=keep
                )
            return self._managers[directory].save(checkpoint_number=step)
        scratch = tempfile.mkdtemp(prefix="worker-checkpoint-")
        try:
            checkpoint.write(os.path.join(scratch, "ckpt"))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return os.path.join(directory, f"ckpt-{step}")

    def save(self, step: int) -> str:
        """Writes `ckpt-<step>` (TensorFlow writes under a temporary name, then renames).

        An input pipeline that cannot be serialized (a py_function, a tf.data service job, ...)
        is left out from then on, with a warning: a resumed run then restarts its input.
        """
        try:
            return self._write(self.checkpoint, self.directory, step, self.keep)
        except tf.errors.OpError as e:
            if INPUT_KEY not in self.trackables:
                raise
            logging.warning(
                "checkpoints leave out the input pipeline, which cannot be saved (%s); a resumed "
                "run restarts its input",
                str(e).strip().splitlines()[0][:200],
            )
            del self.trackables[INPUT_KEY]
            self.checkpoint = tf.train.Checkpoint(**self.trackables)
            self._managers.pop(self.directory, None)
            return self._write(self.checkpoint, self.directory, step, self.keep)

    def save_best(self, step: int, metrics: dict) -> str:
        """Writes the weights of a new best evaluation to checkpoints/best (replacing the old)."""
        path = self._write(self._best_checkpoint, self.best_directory, step, 1)
        if self.is_chief:
            record = {"step": step, **{k: metrics[k] for k in ("top1", "top5", "loss")}}
            target = os.path.join(self.best_directory, BEST_FILE)
            with open(target + ".tmp", "w", encoding="utf-8") as f:
                json.dump(record, f, indent=2, sort_keys=True)
            os.replace(target + ".tmp", target)
        return path


def latest_checkpoint(model_dir: str) -> str | None:
    """Path prefix of the newest checkpoint of a run (`.../checkpoints/ckpt-<step>`), or None."""
    return tf.train.latest_checkpoint(os.path.join(model_dir, CHECKPOINT_DIR))


def best_checkpoint(model_dir: str) -> str | None:
    """Path prefix of the run's best-evaluation checkpoint, or None."""
    return tf.train.latest_checkpoint(os.path.join(model_dir, CHECKPOINT_DIR, BEST_DIR))


def has_ema(checkpoint_path: str) -> bool:
    """Whether a checkpoint holds EMA weights."""
    return EMA_KEY in _saved_objects(checkpoint_path)


def restore_weights(model, checkpoint_path: str, *, ema: bool = False) -> bool:
    """Loads only weights from a training checkpoint (no optimizer state).

    Args:
      model: a model of the checkpoint's architecture.
      checkpoint_path: a checkpoint path prefix.
      ema: load the exponential moving average of the weights if the checkpoint has one.

    Returns:
      True if the EMA weights were loaded.

    Raises:
      ValueError: the checkpoint holds no weights for this model (wrong model or file).
    """
    try:
        use_ema = ema and has_ema(checkpoint_path)
    except (tf.errors.OpError, ValueError) as e:
        raise ValueError(f"{checkpoint_path}: not a readable checkpoint ({e})") from None
    status = tf.train.Checkpoint(**{EMA_KEY if use_ema else MODEL_KEY: model}).read(checkpoint_path)
    status.expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError as e:
        raise ValueError(f"{checkpoint_path} does not match the model: {e}") from None
    return use_ema
