"""Classification losses, computed in float32 whatever the compute dtype."""

from __future__ import annotations

import tensorflow as tf


def cross_entropy(
    labels: tf.Tensor,
    logits: tf.Tensor,
    *,
    num_classes: int,
    label_smoothing: float = 0.0,
    class_weights=None,
) -> tf.Tensor:
    """Per-example softmax cross-entropy with label smoothing and class weights.

    Args:
      labels: int class indices (B,) or soft targets (B, num_classes) that sum to 1.
      logits: (B, num_classes).
      num_classes: number of classes.
      label_smoothing: ε of Szegedy et al. arXiv 1512.00567 §7: the target becomes
        (1 - ε) · one_hot + ε / num_classes.
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
        targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
    loss = tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    return loss if weights is None else loss * weights
