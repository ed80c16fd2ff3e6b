import math

import numpy as np
import pytest
import tensorflow as tf

from official.training import losses, optimizers


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


def test_weight_decay_skips_biases_and_norm_parameters():
    kernel = tf.Variable(tf.ones([2, 2]))
    bias = tf.Variable(tf.ones([2]))
    grads = optimizers.add_weight_decay([tf.zeros([2, 2]), tf.zeros([2])], [kernel, bias], 0.1)
    np.testing.assert_allclose(grads[0].numpy(), 0.1)
    np.testing.assert_allclose(grads[1].numpy(), 0.0)
