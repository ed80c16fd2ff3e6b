"""Classification metrics computed from per-example class probabilities (numpy only).

Every evaluation mode (center, multi-crop, dense, ensemble, TFLite) ends in an (N, K) array of
class posteriors; everything reported about a run is derived here from that array and the
labels, so the modes cannot disagree on what "top-5" or "ECE" means.
"""

from __future__ import annotations

import csv
import io

import numpy as np

# Equal-width confidence bins of the expected calibration error (Guo et al. arXiv 1706.04599
# §2 "Expected Calibration Error" and §5 use M = 15).
ECE_BINS = 15


def rank_of_label(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """How many classes score strictly higher than the true class (0 = top-1 hit).

    Ties count in the label's favour, like `tf.math.in_top_k`, which the training loop's
    evaluation uses; so center evaluation reproduces the training run's numbers.
    """
    true_scores = probabilities[np.arange(len(labels)), labels]
    return (probabilities > true_scores[:, None]).sum(axis=1)


def top_k_accuracy(probabilities: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of examples whose label is among the k highest-scoring classes."""
    if len(labels) == 0:
        return 0.0
    return float(np.mean(rank_of_label(probabilities, labels) < k))


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts; rows are true classes, columns predictions."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Recall of every class (NaN for a class without examples)."""
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / np.maximum(totals, 1), np.nan)


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, num_bins: int = ECE_BINS
) -> float:
    """ECE = Σ_m |B_m|/N · |accuracy(B_m) − confidence(B_m)| over equal-width confidence bins.

    Confidence is the top-1 probability (Guo et al. arXiv 1706.04599 eq. 3); bin m holds the
    confidences in ((m−1)/M, m/M], the first bin also holds 0.
    """
    if len(labels) == 0:
        return 0.0
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    bins = np.clip(np.ceil(confidence * num_bins).astype(np.int64) - 1, 0, num_bins - 1)
    error = 0.0
    for m in range(num_bins):
        members = bins == m
        if members.any():
            gap = abs(correct[members].mean() - confidence[members].mean())
            error += members.mean() * gap
    return float(error)


def worst_mistakes(probabilities: np.ndarray, labels: np.ndarray, count: int) -> list[int]:
    """Indices of the `count` wrong top-1 predictions made with the highest confidence."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    return [int(i) for i in wrong[np.argsort(-confidence, kind="stable")][:count]]


def summarize(
    probabilities: np.ndarray, labels: np.ndarray, class_names: list[str] | tuple[str, ...]
) -> dict:
    """Every reported number of one evaluation.

    Args:
      probabilities: (N, K) class posteriors (rows sum to 1).
      labels: (N,) true class indices.
      class_names: K names, in label order.

    Returns:
      {"examples", "top1", "top5", "top1_error", "top5_error", "ece", "nll",
       "mean_per_class_accuracy", "per_class_accuracy": {name: accuracy}}, and the confusion
      matrix under "confusion_matrix" (a numpy array, not JSON).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = probabilities.shape[1]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} model outputs")
    k = min(5, num_classes)
    matrix = confusion_matrix(probabilities.argmax(axis=1), labels, num_classes)
    recalls = per_class_accuracy(matrix)
    true_probability = probabilities[np.arange(len(labels)), labels]
    top1, top5 = top_k_accuracy(probabilities, labels, 1), top_k_accuracy(probabilities, labels, k)
    return {
        "examples": int(len(labels)),
        "top1": top1,
        "top5": top5,
        "top1_error": 1.0 - top1,
        "top5_error": 1.0 - top5,
        "ece": expected_calibration_error(probabilities, labels),
        # Negative log-likelihood (the evaluation loss). Posteriors are float64, so this is
        # exact up to logit gaps of ~700; the floor only keeps an infinite mistake finite.
        "nll": float(-np.mean(np.log(np.maximum(true_probability, np.finfo(np.float64).tiny))))
        if len(labels)
        else 0.0,
        "mean_per_class_accuracy": float(np.nanmean(recalls)) if len(labels) else 0.0,
        "per_class_accuracy": {
            name: (None if np.isnan(value) else float(value))
            for name, value in zip(class_names, recalls)
        },
        "confusion_matrix": matrix,
    }


def confusion_csv(matrix: np.ndarray, class_names: list[str] | tuple[str, ...]) -> str:
    """The confusion matrix as CSV: a header of predicted names, one row per true class."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["true \\ predicted", *class_names])
    for name, row in zip(class_names, matrix):
        writer.writerow([name, *(int(v) for v in row)])
    return buffer.getvalue()
