"""Ensembles: the average of several models' (or checkpoints') class posteriors.

Simonyan & Zisserman (arXiv 1409.1556 §4.4, "ConvNet fusion"): "we combine the outputs of
several models by averaging their soft-max class posteriors".
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from official import config as config_lib
from official.training import checkpoints


class EnsembleError(ValueError):
    """Members that cannot be averaged (different examples or classes)."""


@dataclasses.dataclass(frozen=True)
class Member:
    """One ensemble member: a training run and which of its checkpoints (None: the latest)."""

    model_dir: str
    checkpoint: str | None = None

    @property
    def name(self) -> str:
        return self.checkpoint or self.model_dir


def parse_members(value: str) -> list[Member]:
    """Parses `--ensemble=DIR1,DIR2,...`; an entry may also be a checkpoint path prefix
    (`DIR/checkpoints/ckpt-1000`) to ensemble several checkpoints of one run.

    Raises:
      ConfigError: an entry that is neither a run directory nor a checkpoint, or fewer than
        two members.
    """
    members = []
    for entry in (item.strip() for item in value.split(",")):
        if not entry:
            continue
        if os.path.isfile(os.path.join(entry, config_lib.CONFIG_FILE)):
            members.append(Member(entry))
        elif os.path.isfile(entry + ".index"):
            directory = os.path.dirname(os.path.abspath(entry))
            if os.path.basename(directory) != checkpoints.CHECKPOINT_DIR:
                raise config_lib.ConfigError(
                    f"--ensemble: {entry} is not inside a run's "
                    f"{checkpoints.CHECKPOINT_DIR}/ directory"
                )
            members.append(Member(os.path.dirname(directory), entry))
        else:
            raise config_lib.ConfigError(
                f"--ensemble: {entry} is neither a training run directory (with "
                f"{config_lib.CONFIG_FILE}) nor a checkpoint (no {entry}.index)"
            )
    if len(members) < 2:
        raise config_lib.ConfigError(
            f"--ensemble={value!r}: expected at least two comma-separated runs or checkpoints"
        )
    return members


def average(probabilities: list[np.ndarray], labels: list[np.ndarray]) -> np.ndarray:
    """The mean posterior of the members, after checking they saw the same examples.

    Raises:
      EnsembleError: the members' example counts, labels or class counts differ.
    """
    first = labels[0]
    for index, (member_probabilities, member_labels) in enumerate(zip(probabilities, labels)):
        if member_probabilities.shape != probabilities[0].shape or not np.array_equal(
            member_labels, first
        ):
            raise EnsembleError(
                f"ensemble member {index} saw different examples or classes than member 0 "
                f"({member_probabilities.shape} vs {probabilities[0].shape})"
            )
    return np.mean(np.stack(probabilities), axis=0)
