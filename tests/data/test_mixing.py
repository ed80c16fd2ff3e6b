"""Mixup and CutMix: λ ~ Beta(α, α) (the bug of tensorflow/models#13490), label mass, and
label weights equal to pixel shares."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from official.data import mixing


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
def test_sample_beta_follows_beta_distribution(alpha):
    draws = mixing.sample_beta(alpha, tf.constant([5, 6]), shape=[4000]).numpy()
    assert stats.kstest(draws, stats.beta(alpha, alpha).cdf).pvalue > 1e-3
    # A sampler of the wrong family fails the same test: Uniform(0, 1) is Beta(1, 1) only.
    if alpha != 1.0:
        assert stats.kstest(draws, stats.uniform.cdf).pvalue < 1e-6


def _two_example_batches(count, size=4):
    """Batches of a black image labelled 0 and a white image labelled 1."""
    images = np.stack([np.zeros((size, size, 3)), np.full((size, size, 3), 255)]).astype(np.uint8)
    return tf.data.Dataset.from_tensors((images, np.array([0, 1], np.int32))).repeat(count)


def test_mixup_inside_tf_data_has_beta_lambda_and_unit_label_mass():
    alpha, count = 0.4, 3000
    mixer = mixing.Mixer(num_classes=3, mixup_alpha=alpha)
    seeds = tf.data.Dataset.random(seed=9).batch(2)
    ds = tf.data.Dataset.zip((_two_example_batches(count), seeds)).map(
        lambda batch, seed: mixer(batch[0], batch[1], seed), num_parallel_calls=4
    )
    images, labels = next(ds.batch(count).as_numpy_iterator())  # all batches at once
    assert images.dtype == np.uint8 and labels.dtype == np.float32
    np.testing.assert_allclose(labels.sum(axis=-1), 1.0, atol=1e-6)
    assert np.all(labels[..., 2] == 0)
    # The black example's weight on its own label is λ (partner white) or 1 (itself).
    own = labels[:, 0, 0]
    mixed = own < 1.0
    expected_pixels = np.round(255 * (1 - own[mixed]))[:, None, None, None]
    np.testing.assert_allclose(
        images[mixed, 0], np.broadcast_to(expected_pixels, images[mixed, 0].shape), atol=1
    )
    weights = own[mixed]
    assert len(weights) > 0.4 * count  # the random partner is the other example half the time
    assert stats.kstest(weights, stats.beta(alpha, alpha).cdf).pvalue > 1e-3


def _mixed(mixer, count, size=16):
    seeds = tf.data.Dataset.random(seed=4).batch(2)
    ds = tf.data.Dataset.zip((_two_example_batches(count, size), seeds))
    return ds.map(lambda batch, seed: mixer(batch[0], batch[1], seed)).as_numpy_iterator()


def test_cutmix_label_weights_equal_pixel_shares():
    mixer = mixing.Mixer(num_classes=2, cutmix_alpha=1.0)
    for images, labels in _mixed(mixer, 300):
        np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-6)
        white_share = np.mean(images[0, :, :, 0] == 255)
        np.testing.assert_allclose(labels[0, 1], white_share, atol=1e-6)
        assert set(np.unique(images)) <= {0, 255}


def test_switch_and_probability():
    batch = next(iter(_two_example_batches(1, size=16)))
    never = mixing.Mixer(num_classes=2, mixup_alpha=1.0, probability=0.0)
    images, labels = never(*batch, tf.constant([1, 2]))
    np.testing.assert_array_equal(images, batch[0])
    np.testing.assert_array_equal(labels, np.eye(2))
    both = mixing.Mixer(num_classes=2, mixup_alpha=1.0, cutmix_alpha=1.0, switch_probability=0.5)
    kinds = []
    for images, labels in _mixed(both, 300):
        values = set(np.unique(images))
        if labels[0, 0] < 1:  # mixed with the other example
            kinds.append("cutmix" if values <= {0, 255} else "mixup")
    assert 0.3 < kinds.count("cutmix") / len(kinds) < 0.7
    assert not mixing.Mixer(num_classes=2)
