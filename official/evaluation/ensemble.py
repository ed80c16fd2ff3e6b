"""Ensembles: the average of several models' (or checkpoints') class posteriors.

Simonyan & Zisserman (arXiv 1409.1556 §4.4, "ConvNet fusion"): "we combine the outputs of
several models by averaging their soft-max class posteriors". The members are runs or
checkpoints (`runs.parse_members`), each evaluated with its own preprocessing.
"""

from __future__ import annotations

import numpy as np

from official.errors import UserError


class EnsembleError(UserError, ValueError):
    """Members that cannot be averaged (different examples or classes)."""


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
