"""Metrics against hand-computed values."""

import numpy as np
import pytest

from official.evaluation import metrics


def test_top_k_counts_ties_for_the_label_like_in_top_k():
    probabilities = np.array(
        [
            [0.7, 0.2, 0.1],  # label 0: top-1 hit
            [0.4, 0.4, 0.2],  # label 1 tied with class 0: a hit, as tf.math.in_top_k counts it
            [0.5, 0.3, 0.2],  # label 2: rank 2, a top-3 hit only
        ]
    )
    labels = np.array([0, 1, 2])
    assert metrics.rank_of_label(probabilities, labels).tolist() == [0, 0, 2]
    assert metrics.top_k_accuracy(probabilities, labels, 1) == pytest.approx(2 / 3)
    assert metrics.top_k_accuracy(probabilities, labels, 2) == pytest.approx(2 / 3)
    assert metrics.top_k_accuracy(probabilities, labels, 3) == 1.0


def test_expected_calibration_error_by_hand():
    # Confidences 0.95 (right), 0.95 (wrong), 0.55 (right), 0.35 (wrong) in 10 bins:
    # bin (0.9, 1]: 2 examples, accuracy 0.5, confidence 0.95 → 2/4 · 0.45
    # bin (0.5, 0.6]: accuracy 1, confidence 0.55 → 1/4 · 0.45
    # bin (0.3, 0.4]: accuracy 0, confidence 0.35 → 1/4 · 0.35
    probabilities = np.array(
        [
            [0.95, 0.05, 0.0],
            [0.05, 0.95, 0.0],
            [0.55, 0.25, 0.20],
            [0.30, 0.35, 0.35 - 1e-9],
        ]
    )
    labels = np.array([0, 0, 0, 0])
    expected = 0.5 * 0.45 + 0.25 * 0.45 + 0.25 * 0.35
    assert metrics.expected_calibration_error(probabilities, labels, num_bins=10) == (
        pytest.approx(expected)
    )
    # Perfectly calibrated: one-hot and right.
    assert metrics.expected_calibration_error(np.eye(3), np.arange(3)) == 0.0


def test_summary_confusion_matrix_and_per_class_accuracy():
    probabilities = np.array(
        [[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0], [0.1, 0.9, 0.0], [0.3, 0.7, 0.0]]
    )
    labels = np.array([0, 1, 1, 1, 0])
    summary = metrics.summarize(probabilities, labels, ["ant", "bee", "cat"])
    assert summary["confusion_matrix"].tolist() == [[1, 1, 0], [1, 2, 0], [0, 0, 0]]
    assert summary["top1"] == pytest.approx(3 / 5)
    assert summary["top1_error"] == pytest.approx(2 / 5)
    assert summary["top5"] == 1.0  # k = min(5, 3 classes)
    assert summary["per_class_accuracy"] == {"ant": 0.5, "bee": pytest.approx(2 / 3), "cat": None}
    assert summary["mean_per_class_accuracy"] == pytest.approx((0.5 + 2 / 3) / 2)
    nll = -np.mean(np.log([0.9, 0.8, 0.4, 0.9, 0.3]))
    assert summary["nll"] == pytest.approx(nll)
    with pytest.raises(ValueError, match="2 class names for 3 model outputs"):
        metrics.summarize(probabilities, labels, ["ant", "bee"])


def test_confusion_csv():
    matrix = np.array([[3, 1], [0, 4]])
    assert metrics.confusion_csv(matrix, ["a", "b"]) == "true \\ predicted,a,b\na,3,1\nb,0,4\n"
