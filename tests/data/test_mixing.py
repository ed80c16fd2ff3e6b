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


def _coordinate_images(batch_size, height, width):
    """Image b's pixel (y, x) holds (b, y, x), so every output pixel names its source."""
    grids = np.meshgrid(np.arange(batch_size), np.arange(height), np.arange(width), indexing="ij")
    return np.stack(grids, axis=-1).astype(np.uint8)


def test_ricap_patches_crops_of_four_images_and_mixes_labels_by_area():
    batch_size, height, width = 6, 12, 20
    images = tf.constant(_coordinate_images(batch_size, height, width))
    labels = tf.eye(batch_size)  # Image b is class b.
    boundaries, offsets = set(), set()
    ricap = tf.function(lambda seed: mixing.ricap(images, labels, seed, beta=0.3))
    for i in range(25):
        mixed, mixed_labels, boundary = ricap(tf.constant([3, i]))
        mixed, mixed_labels = mixed.numpy(), mixed_labels.numpy()
        h, w = boundary.numpy()
        boundaries.add((h, w))
        assert (
            mixed.shape == (batch_size, height, width, 3) and 0 <= h <= height and 0 <= w <= width
        )
        np.testing.assert_allclose(mixed_labels.sum(axis=1), 1.0, atol=1e-6)
        expected = np.zeros_like(mixed_labels)
        # Top-left, top-right, bottom-left, bottom-right of the boundary (h, w).
        for top, bottom, left, right in (
            (0, h, 0, w),
            (0, h, w, width),
            (h, height, 0, w),
            (h, height, w, width),
        ):
            if bottom == top or right == left:
                continue
            patch = mixed[:, top:bottom, left:right].astype(int)
            sources = patch[:, 0, 0, 0]
            # Each rectangle comes from one image per example, a permutation of the batch ...
            assert np.all(patch[..., 0] == sources[:, None, None])
            assert sorted(sources) == list(range(batch_size))
            # ... and is an unscaled crop of it: source = output position + one offset, the
            # same for the whole batch (one crop position per rectangle, as the reference).
            dy = patch[..., 1] - np.arange(top, bottom)[None, :, None]
            dx = patch[..., 2] - np.arange(left, right)[None, None, :]
            assert np.all(dy == dy[0, 0, 0]) and np.all(dx == dx[0, 0, 0])
            offsets.add((dy[0, 0, 0], dx[0, 0, 0]))
            area = (bottom - top) * (right - left) / (height * width)
            expected[np.arange(batch_size), sources] += area
        np.testing.assert_allclose(mixed_labels, expected, atol=1e-6)
    assert len(boundaries) > 10 and len(offsets) > 10  # Random boundaries and crop positions.


def test_ricap_in_tf_data_label_weights_equal_pixel_shares():
    mixer = mixing.Mixer(num_classes=2, ricap_beta=0.3)
    assert mixer
    shares = []
    for images, labels in _mixed(mixer, 40):
        assert images.shape == (2, 16, 16, 3) and images.dtype == np.uint8
        np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-6)
        for example in range(2):
            white_share = np.mean(images[example, :, :, 0] == 255)
            np.testing.assert_allclose(labels[example, 1], white_share, atol=1e-6)
        shares.append(labels[0, 1])
    shares = np.array(shares)
    assert np.mean((shares > 0) & (shares < 1)) > 0.2  # Many batches are truly mixed.
