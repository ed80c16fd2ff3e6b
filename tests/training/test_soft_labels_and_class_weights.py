"""What the input pipeline hands the loop: soft labels (mixup/CutMix) and class weights."""

import numpy as np
import pytest
import tensorflow as tf
import tiny

from official.training import loop, losses


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


def test_statistics_count_soft_targets_as_their_largest_class():
    logits = tf.constant([[3.0, 1.0, 0.0], [0.0, 1.0, 3.0]])
    soft = tf.constant([[0.6, 0.4, 0.0], [0.7, 0.0, 0.3]])
    totals = loop._statistics(soft, logits, tf.constant([1.0, 2.0])).numpy()
    np.testing.assert_allclose(totals, [3.0, 1.0, 2.0, 2.0])  # loss sum, top-1, top-k, count


def test_trainer_applies_class_weights_to_the_training_loss():
    images, labels = tiny.batches(num_examples=4, image_size=4)
    weights = np.array([1.0, 3.0, 0.5], np.float32)
    trainer = tiny.make_trainer(
        tf.distribute.OneDeviceStrategy("/cpu:0"),
        tiny.dense_model,
        images,
        labels,
        batch_size=4,
        rate=0.0,  # the weights stay as they are: the logits below are the step's
        class_weights=weights,
    )
    logits = trainer.model(images.astype(np.float32), training=False).numpy()
    totals, _ = trainer.train_steps(1)
    plain = _cross_entropy(np.eye(3)[labels], logits)
    assert totals[0] == pytest.approx((plain * weights[labels]).sum(), rel=1e-5)
    evaluation = trainer.evaluate([(images, labels)])
    assert evaluation["loss"] == pytest.approx(plain.mean(), rel=1e-5)  # unweighted
