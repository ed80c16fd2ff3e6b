import math

import numpy as np
import pytest
import tensorflow as tf

from official.training import losses


def test_label_smoothing_against_hand_computed_value():
    logits = tf.constant([[2.0, 0.0, -1.0]])
    log_softmax = np.log(np.exp([2.0, 0.0, -1.0]) / np.exp([2.0, 0.0, -1.0]).sum())
    targets = np.array([1.0, 0.0, 0.0]) * 0.9 + 0.1 / 3
    expected = -(targets * log_softmax).sum()
    loss = losses.cross_entropy(tf.constant([0]), logits, num_classes=3, label_smoothing=0.1)
    assert float(loss[0]) == pytest.approx(expected, rel=1e-6)


def test_soft_targets_and_bfloat16_logits_give_float32():
    logits = tf.constant([[0.0, 0.0]], tf.bfloat16)
    loss = losses.cross_entropy(tf.constant([[0.5, 0.5]]), logits, num_classes=2)
    assert loss.dtype == tf.float32
    assert float(loss[0]) == pytest.approx(math.log(2), rel=1e-6)


def _softmax(x):
    e = np.exp(x - np.max(x))
    return e / e.sum()


def test_distillation_loss_against_hand_computed_value():
    from official.training import distill

    student = np.array([1.0, -0.5, 0.25])
    teacher = np.array([2.0, 0.0, -1.0])
    temperature = 2.0
    targets = _softmax(teacher / temperature)
    log_student = np.log(_softmax(student / temperature))
    expected = temperature**2 * -(targets * log_student).sum()
    loss = distill.distillation_loss(
        tf.constant([student]), tf.constant([teacher], tf.bfloat16), temperature=temperature
    )
    assert loss.dtype == tf.float32
    assert float(loss[0]) == pytest.approx(expected, rel=1e-2)  # bfloat16 teacher logits
    loss = distill.distillation_loss(
        tf.constant([student]), tf.constant([teacher]), temperature=temperature
    )
    assert float(loss[0]) == pytest.approx(expected, rel=1e-6)


def test_distillation_gradient_reaches_the_student_only():
    from official.training import distill

    student = tf.Variable([[1.0, -0.5, 0.25]])
    teacher = tf.Variable([[2.0, 0.0, -1.0]])
    with tf.GradientTape() as tape:
        loss = distill.distillation_loss(student, teacher, temperature=3.0)
    grad_student, grad_teacher = tape.gradient(loss, [student, teacher])
    assert grad_teacher is None
    # d/dz of T²·H(p_t, softmax(z/T)) = T·(softmax(z/T) − p_t).
    expected = 3.0 * (_softmax(student.numpy()[0] / 3.0) - _softmax(teacher.numpy()[0] / 3.0))
    np.testing.assert_allclose(grad_student.numpy()[0], expected, rtol=1e-5)


def _cross_entropy(targets, logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -(targets * log_softmax).sum(axis=1)


def test_class_weights_multiply_hard_and_target_weighted_soft_losses():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 1.0, 0.0]], np.float32)
    weights = np.array([0.5, 2.0, 1.0], np.float32)
    hard = losses.cross_entropy(
        tf.constant([0, 1]), tf.constant(logits), num_classes=3, class_weights=weights
    )
    one_hot = np.eye(3)[[0, 1]]
    np.testing.assert_allclose(hard, _cross_entropy(one_hot, logits) * [0.5, 2.0], rtol=1e-6)
    soft = np.array([[0.7, 0.3, 0.0], [0.0, 0.25, 0.75]], np.float32)
    smoothed = soft * 0.9 + 0.1 / 3
    loss = losses.cross_entropy(
        tf.constant(soft),
        tf.constant(logits),
        num_classes=3,
        label_smoothing=0.1,
        class_weights=weights,
    )
    expected = _cross_entropy(smoothed, logits) * (soft @ weights)  # weights of the raw target
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_label_smoothing_over_the_wrong_classes_uses_k_minus_1():
    # Bag of Tricks arXiv 1812.01187 §5.2: q_y = 1 − ε, q_i = ε / (K − 1) for i ≠ y.
    logits = np.array([[2.0, 0.0, -1.0, 0.5]], np.float32)
    epsilon, k = 0.2, 4
    log_softmax = logits[0] - np.log(np.exp(logits[0]).sum())
    for formula, targets in (
        ("wrong_classes", [0.8, 0.2 / 3, 0.2 / 3, 0.2 / 3]),
        ("all_classes", [0.85, 0.05, 0.05, 0.05]),  # 1 − ε + ε/K and ε/K
    ):
        loss = losses.cross_entropy(
            tf.constant([0]),
            tf.constant(logits),
            num_classes=k,
            label_smoothing=epsilon,
            label_smoothing_formula=formula,
        )
        assert float(loss[0]) == pytest.approx(-(np.array(targets) * log_softmax).sum(), rel=1e-6)
    # A mixed target is smoothed as the same mixture of smoothed one-hot targets.
    soft = np.array([[0.7, 0.3, 0.0, 0.0]], np.float32)
    smoothed = 0.7 * np.array([0.8, 0.2 / 3, 0.2 / 3, 0.2 / 3]) + 0.3 * np.array(
        [0.2 / 3, 0.8, 0.2 / 3, 0.2 / 3]
    )
    assert smoothed.sum() == pytest.approx(1.0)
    loss = losses.cross_entropy(
        tf.constant(soft),
        tf.constant(logits),
        num_classes=k,
        label_smoothing=epsilon,
        label_smoothing_formula="wrong_classes",
    )
    assert float(loss[0]) == pytest.approx(-(smoothed * log_softmax).sum(), rel=1e-6)
    with pytest.raises(ValueError, match="unknown label smoothing formula 'k-1'"):
        losses.cross_entropy(
            tf.constant([0]),
            tf.constant(logits),
            num_classes=k,
            label_smoothing=epsilon,
            label_smoothing_formula="k-1",
        )
