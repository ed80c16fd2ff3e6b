"""Classification losses, computed in float32 whatever the compute dtype."""

from __future__ import annotations

import tensorflow as tf

# How label smoothing spreads ε (`--config.train.label_smoothing_formula`); see cross_entropy.
LABEL_SMOOTHING_FORMULAS = ("all_classes", "wrong_classes")


def cross_entropy(
    labels: tf.Tensor,
    logits: tf.Tensor,
    *,
    num_classes: int,
    label_smoothing: float = 0.0,
    label_smoothing_formula: str = "all_classes",
    class_weights=None,
) -> tf.Tensor:
    """Per-example softmax cross-entropy with label smoothing and class weights.

    Args:
      labels: int class indices (B,) or soft targets (B, num_classes) that sum to 1.
      logits: (B, num_classes).
      num_classes: number of classes.
      label_smoothing: ε, the probability mass moved off the labelled class.
      label_smoothing_formula: where ε goes (LABEL_SMOOTHING_FORMULAS), with K = num_classes:
        "all_classes"   (1 - ε) · one_hot + ε / K: every class gets ε / K, the true one
                        1 - ε + ε / K (Szegedy et al. arXiv 1512.00567 §7; Keras, PyTorch).
        "wrong_classes" (1 - ε) · one_hot + ε / (K - 1) · (1 - one_hot): the true class keeps
                        exactly 1 - ε, each of the K - 1 others gets ε / (K - 1) (Bag of
                        Tricks arXiv 1812.01187 §5.2, the q_i of its label-smoothing equation).
        Both are affine in the target, so a soft (mixed) target is smoothed as the same
        mixture of smoothed one-hot targets, and rows still sum to 1.
      class_weights: optional per-class weights (num_classes,) (official/data/balance.py):
        each example's loss is multiplied by the weight of its class, or for soft targets
        (mixup, CutMix) by the target-weighted mean Σ_c t_c w_c.

    Returns:
      float32 loss per example, shape (B,).
    """
    logits = tf.cast(logits, tf.float32)
    if labels.dtype.is_integer:
        targets = tf.one_hot(labels, num_classes, dtype=tf.float32)
    else:
        targets = tf.cast(labels, tf.float32)
    weights = None
    if class_weights is not None:
        weights = tf.linalg.matvec(targets, tf.cast(class_weights, tf.float32))
    if label_smoothing > 0:
        if label_smoothing_formula == "all_classes":
            targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
        elif label_smoothing_formula == "wrong_classes":
            spread = label_smoothing / (num_classes - 1)
            targets = targets * (1.0 - label_smoothing) + (1.0 - targets) * spread
        else:
            raise ValueError(
                f"unknown label smoothing formula {label_smoothing_formula!r}; choose one of "
                f"{', '.join(LABEL_SMOOTHING_FORMULAS)}"
            )
    loss = tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    return loss if weights is None else loss * weights
