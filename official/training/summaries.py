"""TensorBoard: scalars per split, a grid of training images, the model graph, profiler traces.

Everything is written under the model dir, one directory per split (`train/`, `validation/`),
and only by the chief: on other workers every method is a no-op.
"""

from __future__ import annotations

import math
import os

import numpy as np
import tensorflow as tf
from absl import logging


def image_grid(images: np.ndarray, max_images: int = 16) -> np.ndarray:
    """Tiles up to `max_images` (N, H, W, C) images into one (1, rows·H, cols·W, C) uint8 image,
    in a square-ish grid with 2-pixel gaps."""
    images = np.asarray(images)[:max_images]
    if images.dtype != np.uint8:
        images = np.clip(images, 0, 255).astype(np.uint8)
    count, height, width, channels = images.shape
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    gap = 2
    grid = np.zeros(
        (rows * (height + gap) - gap, cols * (width + gap) - gap, channels), dtype=np.uint8
    )
    for index, image in enumerate(images):
        row, col = divmod(index, cols)
        top, left = row * (height + gap), col * (width + gap)
        grid[top : top + height, left : left + width] = image
    return grid[None]


class Summaries:
    """TensorBoard writers for "train" and "validation"; a no-op off the chief."""

    def __init__(self, model_dir: str, enabled: bool = True):
        self.directory = model_dir
        self.enabled = enabled
        self._writers: dict[str, tf.summary.SummaryWriter] = {}
        self._profiling = False

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

    def images(self, split: str, step: int, name: str, images, max_images: int = 16) -> None:
        """A grid of (N, H, W, 3) images on the 0..255 scale, as one TensorBoard image."""
        if not self.enabled or max_images <= 0:
            return
        with self.writer(split).as_default(step=step):
            tf.summary.image(name, image_grid(images, max_images), max_outputs=1)

    def graph(self, function: tf.types.experimental.ConcreteFunction) -> None:
        """The graph of a traced function (e.g. the model's forward pass), under train/."""
        if not self.enabled:
            return
        with self.writer("train").as_default():
            tf.summary.graph(function.graph)

    def start_profiler(self) -> None:
        """Starts a profiler trace written under train/plugins/profile."""
        if not self.enabled or self._profiling:
            return
        tf.profiler.experimental.start(os.path.join(self.directory, "train"))
        self._profiling = True
        logging.info("profiler started")

    def stop_profiler(self) -> None:
        if self._profiling:
            tf.profiler.experimental.stop()
            self._profiling = False
            logging.info("profiler trace written to %s", os.path.join(self.directory, "train"))

    def flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        self.stop_profiler()
        for writer in self._writers.values():
            writer.close()
