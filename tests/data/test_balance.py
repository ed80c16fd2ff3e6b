"""Class imbalance: counts, weights (inverse and effective number), re-sampling in tf.data."""

import numpy as np
import pytest
import tensorflow as tf

from official.data import balance, sources

COUNTS = np.array([800, 150, 50, 0])


def test_inverse_frequency_weights():
    weights = balance.class_weights(COUNTS, "inverse")
    present = COUNTS > 0
    # Proportional to 1 / n_c, mean weight per training example 1, empty class 0.
    np.testing.assert_allclose(weights[present] * COUNTS[present], weights[0] * COUNTS[0])
    np.testing.assert_allclose((weights * COUNTS).sum() / COUNTS.sum(), 1.0, rtol=1e-6)
    assert weights[3] == 0 and weights.dtype == np.float32


def test_effective_number_weights_follow_cui_et_al():
    beta = 0.99
    weights = balance.class_weights(COUNTS, "effective_number", beta)
    effective = (1 - beta ** COUNTS[:3]) / (1 - beta)  # arXiv 1901.05555 eq. 3
    np.testing.assert_allclose(weights[:3] / weights[0], effective[0] / effective, rtol=1e-5)
    np.testing.assert_allclose((weights * COUNTS).sum() / COUNTS.sum(), 1.0, rtol=1e-6)
    # β → 1 approaches inverse frequency; β = 0 is no re-weighting.
    np.testing.assert_allclose(
        balance.class_weights(COUNTS, "effective_number", 0.999999),
        balance.class_weights(COUNTS, "inverse"),
        rtol=1e-3,
    )
    np.testing.assert_allclose(balance.class_weights(COUNTS, "effective_number", 0.0)[:3], 1.0)
    with pytest.raises(ValueError, match="unknown class weighting"):
        balance.class_weights(COUNTS, "sqrt")


@pytest.mark.parametrize(
    "mode, exponent", [("oversample", 0.0), ("undersample", 0.0), ("oversample", 0.5)]
)
def test_resampling_reaches_target_class_frequencies(mode, exponent):
    counts = np.array([700, 200, 100])
    rates = balance.resampling_rates(counts, exponent=exponent, mode=mode)
    assert (rates >= 1 - 1e-9).all() if mode == "oversample" else (rates <= 1 + 1e-9).all()
    labels = np.repeat(np.arange(3), counts).astype(np.int32)
    keys = np.arange(len(labels)).astype(np.int64)
    ds = tf.data.Dataset.from_tensor_slices((keys, labels)).repeat(12)
    out_keys, drawn = next(balance.resample(ds, rates, seed=3).batch(10**6).as_numpy_iterator())
    assert len(drawn) >= 3000
    target = balance.target_distribution(counts, exponent)
    frequencies = np.bincount(drawn, minlength=3) / len(drawn)
    np.testing.assert_allclose(frequencies, target, atol=0.02)
    # Keys travel with their labels, and the stream is the same for the same seed.
    np.testing.assert_array_equal(labels[out_keys], drawn)
    _, again = next(balance.resample(ds, rates, seed=3).batch(10**6).as_numpy_iterator())
    np.testing.assert_array_equal(drawn, again)


def test_rare_classes_and_report():
    assert balance.rare_classes(COUNTS, 0.2) == [1, 2, 3]  # fewer than 0.2 x 800
    text = balance.report([5, 50, 20], ["ant", "bee", "cat"])
    assert text.splitlines()[0] == (
        "3 classes, 75 examples; min 5 (ant), median 20, max 50 (bee), imbalance 10.0x"
    )
    assert text.splitlines()[2].split() == ["bee", "50"]
    many = balance.report(np.arange(1, 101), [f"c{i}" for i in range(100)], limit=3)
    assert len(many.splitlines()) == 1 + 3 + 1 + 3 and "94 classes in between" in many


class _UncountedSource(sources.Source):
    """A source that does not know its class counts (like TFRecords without a manifest)."""

    def __init__(self, labels, num_classes):
        self.labels = labels
        self.num_classes = num_classes

    @property
    def info(self):
        return sources.DatasetInfo(
            num_classes=self.num_classes,
            class_names=tuple(map(str, range(self.num_classes))),
            num_examples={"train": len(self.labels)},
        )

    def examples(
        self, split, *, shuffle, seed, input_context=None, deterministic=True, portable=False
    ):
        keys = tf.constant([b"x"] * len(self.labels))
        return tf.data.Dataset.from_tensor_slices((keys, tf.constant(self.labels, tf.int32)))


def test_class_counts_read_once_when_the_source_does_not_know_them():
    source = _UncountedSource([0, 2, 2, 2, 1, 2], num_classes=4)
    np.testing.assert_array_equal(balance.class_counts(source, "train"), [1, 1, 4, 0])
