"""Knowledge distillation: the student matches the teacher's softened class distribution."""

from __future__ import annotations

import tensorflow as tf


def distillation_loss(
    student_logits: tf.Tensor, teacher_logits: tf.Tensor, *, temperature: float
) -> tf.Tensor:
    """Per-example T² · H(softmax(teacher / T), softmax(student / T)), in float32.

    The cross-entropy between the softened distributions, scaled by T² so its gradients keep
    the magnitude of the hard-label term when T changes (Hinton et al. arXiv 1503.02531 §2;
    Bag of Tricks arXiv 1812.01187 §5.3, whose loss is this term added to the usual
    cross-entropy). It differs from the KL divergence by the teacher's entropy, a constant
    for the student, so the gradients are the same.

    Args:
      student_logits: (B, num_classes).
      teacher_logits: (B, num_classes); no gradient flows into the teacher.
      temperature: T > 0.

    Returns:
      float32 loss per example, shape (B,).
    """
    t = tf.constant(temperature, tf.float32)
    teacher = tf.nn.softmax(tf.stop_gradient(tf.cast(teacher_logits, tf.float32)) / t)
    student = tf.cast(student_logits, tf.float32) / t
    return t * t * tf.nn.softmax_cross_entropy_with_logits(labels=teacher, logits=student)
