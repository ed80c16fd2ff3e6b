"""Class imbalance: class counts, loss weights, and re-sampling inside tf.data.

- `class_counts`: from the source's metadata (the folder listing, the converter's manifest)
  or, when a source does not know them, counted once by reading its labels.
- `class_weights`: per-class loss weights, inverse frequency or the effective number of
  samples of Cui et al. (arXiv 1901.05555), handed to the loss.
- `resampling_rates` + `resample`: over- or under-sampling towards a target distribution
  p_c ∝ n_c^q (q = 0: class-balanced, q = 0.5: square-root sampling, q = 1: unchanged;
  Kang et al. arXiv 1910.09217 §3) on the stream of encoded examples, before decoding.
- `report`: the per-class count table logged at the start of training.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

WEIGHTINGS = ("inverse", "effective_number")
RESAMPLINGS = ("oversample", "undersample")


def class_counts(source, split: str) -> np.ndarray:
    """Examples per class in `split`: from the source's metadata, else counted by reading.

    Args:
      source: a data source (official/data/sources.py).
      split: "train" or "validation".

    Returns:
      int64 array of shape (num_classes,).
    """
    info = source.info
    known = info.class_counts.get(split) if info.class_counts else None
    if known is not None:
        return np.asarray(known, dtype=np.int64)
    labels = source.examples(split, shuffle=False, seed=0).map(lambda key, label: label)
    counts = np.zeros(info.num_classes, dtype=np.int64)
    for batch in labels.batch(4096).prefetch(2).as_numpy_iterator():
        counts += np.bincount(batch, minlength=info.num_classes)[: info.num_classes]
    return counts


def class_weights(counts, method: str, beta: float = 0.999) -> np.ndarray:
    """Per-class loss weights, scaled so that the average weight per training example is 1.

    "inverse": w_c ∝ 1 / n_c. "effective_number": w_c ∝ (1 - β) / (1 - β^n_c), the inverse
    of the effective number of samples (Cui et al. arXiv 1901.05555 §3-4; β → 1 gives
    inverse frequency, β = 0 no re-weighting; the paper's best ImageNet-LT/iNaturalist β is
    0.999). The paper scales the weights to sum to the number of classes; scaling them to a
    mean of 1 per example instead keeps the loss, and so the tuned learning rate, on the same
    scale as unweighted training. Classes without examples get weight 0.

    Args:
      counts: examples per class.
      method: "inverse" or "effective_number".
      beta: β of the effective number, in [0, 1).

    Returns:
      float32 array of shape (num_classes,).
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    if method == "inverse":
        raw = np.divide(1.0, counts, out=np.zeros_like(counts), where=present)
    elif method == "effective_number":
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        effective = (1.0 - np.power(beta, counts)) / (1.0 - beta)
        raw = np.divide(1.0, effective, out=np.zeros_like(counts), where=present)
    else:
        raise ValueError(f"unknown class weighting {method!r}; choose {', '.join(WEIGHTINGS)}")
    mean_per_example = (raw * counts).sum() / counts.sum()
    return (raw / mean_per_example).astype(np.float32)


def target_distribution(counts, exponent: float) -> np.ndarray:
    """p_c ∝ n_c^q over the classes that have examples."""
    counts = np.asarray(counts, dtype=np.float64)
    powered = np.where(counts > 0, np.power(np.maximum(counts, 1.0), exponent), 0.0)
    return powered / powered.sum()


def resampling_rates(counts, *, exponent: float, mode: str) -> np.ndarray:
    """Expected copies of each example of class c that turn the class frequencies into p_c.

    Rate r_c = p_c / (n_c / N), scaled so that the rarest-relative class keeps every example
    once and the others are repeated ("oversample", every r_c ≥ 1), or the most over-
    represented class keeps every example and the others are dropped ("undersample", every
    r_c ≤ 1: rejection sampling with known class frequencies, as tf.data's
    `rejection_resample` does).

    Returns:
      float64 array of shape (num_classes,); 0 for empty classes.
    """
    if mode not in RESAMPLINGS:
        raise ValueError(f"unknown resampling {mode!r}; choose {', '.join(RESAMPLINGS)}")
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    rates = np.where(
        present, target_distribution(counts, exponent) * counts.sum() / np.maximum(counts, 1), 0
    )
    scale = rates[present].min() if mode == "oversample" else rates[present].max()
    return rates / scale


def resample(dataset: tf.data.Dataset, rates, *, seed: int) -> tf.data.Dataset:
    """Repeats or drops each (key, label) element according to its class's rate.

    An element of class c is emitted ⌊r_c⌋ times plus once more with probability
    r_c - ⌊r_c⌋, so the expected frequencies follow the target; the draws use stateless
    per-element seeds, so a fixed seed gives the same stream. Copies of an element are
    adjacent: shuffle after this.
    """
    table = tf.constant(np.asarray(rates, dtype=np.float32))
    seeds = tf.data.Dataset.random(seed=seed).batch(2)

    def copies(example, element_seed):
        key, label = example
        rate = tf.gather(table, label)
        whole = tf.math.floor(rate)
        extra = tf.random.stateless_uniform([], element_seed) < rate - whole
        count = tf.cast(whole, tf.int32) + tf.cast(extra, tf.int32)
        return tf.repeat(key[None], count, axis=0), tf.repeat(label[None], count, axis=0)

    return tf.data.Dataset.zip((dataset, seeds)).map(copies).unbatch()


def rare_classes(counts, fraction: float) -> list[int]:
    """Classes with fewer examples than `fraction` × the largest class's count."""
    counts = np.asarray(counts)
    return [int(c) for c in np.flatnonzero(counts < fraction * counts.max())]


def report(counts, class_names, *, limit: int = 10) -> str:
    """A readable per-class count summary (all classes when there are few).

    Returns:
      Text such as "10 classes, 1,000 examples; min 20 (bee), median 100, max 300 (ant),
      imbalance 15.0x" followed by one line per class (or the `limit` rarest and largest).
    """
    counts = np.asarray(counts, dtype=np.int64)
    names = list(class_names)
    order = np.argsort(counts, kind="stable")
    smallest, largest = order[0], order[-1]
    imbalance = counts[largest] / max(counts[smallest], 1)
    lines = [
        f"{len(counts)} classes, {counts.sum():,} examples; "
        f"min {counts[smallest]:,} ({names[smallest]}), median {int(np.median(counts)):,}, "
        f"max {counts[largest]:,} ({names[largest]}), imbalance {imbalance:.1f}x"
    ]
    width = max(len(name) for name in names)
    if len(counts) <= 2 * limit:
        shown = range(len(counts))
    else:
        shown = list(order[:limit]) + [None] + list(order[-limit:])
    for index in shown:
        if index is None:
            lines.append(f"  ... {len(counts) - 2 * limit} classes in between ...")
        else:
            lines.append(f"  {names[index]:<{width}}  {counts[index]:>10,}")
    return "\n".join(lines)
