"""TensorBoard summaries: one writer per split under the model dir."""

from __future__ import annotations

import os

import tensorflow as tf


class Summaries:
    """Scalar summaries for "train" and "validation"; a no-op off the chief."""

    def __init__(self, model_dir: str, enabled: bool = True):
        self.directory = model_dir
        self.enabled = enabled
        self._writers: dict[str, tf.summary.SummaryWriter] = {}

    def writer(self, split: str) -> tf.summary.SummaryWriter:
        if split not in self._writers:
            self._writers[split] = tf.summary.create_file_writer(
                os.path.join(self.directory, split)
            )
        return self._writers[split]

    def scalars(self, split: str, step: int, values: dict) -> None:
        if not self.enabled:
            return
        with self.writer(split).as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)

    def flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()
