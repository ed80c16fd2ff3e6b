"""Checkpoints of the model and optimizer state; the latest one is restored on restart."""

from __future__ import annotations

import os
import tempfile

import tensorflow as tf
from absl import logging

CHECKPOINT_DIR = "checkpoints"


class Checkpointer:
    """Saves and restores model + optimizer (+ any extra trackables) under model_dir.

    Only the chief's files are kept: other workers of a multi-worker run take part in the
    (collective) save but write into a temporary directory that is discarded.

    Args:
      model_dir: the run's directory; checkpoints go to model_dir/checkpoints.
      is_chief: whether this process owns the run's files.
      keep: number of checkpoints to keep.
      trackables: objects to save (model=..., optimizer=..., ...).
    """

    def __init__(self, model_dir: str, *, is_chief: bool = True, keep: int = 3, **trackables):
        self.directory = os.path.join(model_dir, CHECKPOINT_DIR)
        if not is_chief:
            self.directory = tempfile.mkdtemp(prefix="worker-checkpoints-")
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=keep)

    @property
    def latest(self) -> str | None:
        return self.manager.latest_checkpoint

    def restore_latest(self) -> str | None:
        """Restores the latest checkpoint if there is one; returns its path."""
        path = self.manager.latest_checkpoint
        if path:
            self.checkpoint.restore(path).assert_existing_objects_matched()
            logging.info("restored %s", path)
        return path

    def save(self, step: int) -> str:
        """Writes checkpoint `ckpt-<step>` (TensorFlow writes it under a temporary name and
        renames it when complete)."""
        return self.manager.save(checkpoint_number=step)


def latest_checkpoint(model_dir: str) -> str | None:
    """Path prefix of the newest checkpoint of a run (`.../checkpoints/ckpt-<step>`), or None."""
    return tf.train.latest_checkpoint(os.path.join(model_dir, CHECKPOINT_DIR))


def restore_weights(model, checkpoint_path: str) -> None:
    """Loads only the model's weights from a training checkpoint (no optimizer state).

    Raises:
      ValueError: the checkpoint holds no weights for this model (wrong model or file).
    """
    status = tf.train.Checkpoint(model=model).read(checkpoint_path)
    status.expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError as e:
        raise ValueError(f"{checkpoint_path} does not match the model: {e}") from None
