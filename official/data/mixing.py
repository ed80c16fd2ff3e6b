"""Batch mixing: mixup (Zhang et al. arXiv 1710.09412), CutMix (Yun et al. arXiv 1905.04899) and
RICAP (random image cropping and patching, Takahashi et al. arXiv 1811.09030).

Each combines examples of the same batch (random permutations) and mixes the one-hot labels
with the same weights as the pixels, so every label row still sums to 1. The
mixing weight λ follows Beta(α, α), drawn as X / (X + Y) with X, Y ~ Gamma(α, 1) (the
textbook construction; tensorflow/models#13490 drew it wrongly, which is why
tests/data/test_mixing.py checks λ's distribution with a Kolmogorov-Smirnov test).

Mixed images stay uint8: mixup's blend is rounded to the nearest grey level (at most half a
level of error, far below JPEG noise), so every batch has one dtype and a quarter of float32's
bytes on its way to the model. Label smoothing belongs to the loss, not here.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from official.data import preprocess


def sample_beta(alpha: float, seed: tf.Tensor, shape=()) -> tf.Tensor:
    """Beta(α, α) samples from two stateless Gamma(α, 1) draws: X / (X + Y)."""
    x_seed, y_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    x = tf.random.stateless_gamma(shape, x_seed, alpha=alpha, dtype=tf.float32)
    y = tf.random.stateless_gamma(shape, y_seed, alpha=alpha, dtype=tf.float32)
    # Both draws can underflow to 0 for small α; the limit there is a coin flip of 0 or 1.
    total = x + y
    return tf.where(total > 0, x / tf.maximum(total, 1e-30), tf.cast(x >= y, tf.float32))


def _partners(seed: tf.Tensor, batch_size: tf.Tensor) -> tf.Tensor:
    """A random permutation of the batch indices."""
    return tf.argsort(tf.random.stateless_uniform([batch_size], seed))


def mixup(images, labels, seed, *, alpha: float):
    """Mixes the whole batch with a permutation of itself: λ x_i + (1 - λ) x_j.

    Args:
      images: uint8 (B, H, W, 3).
      labels: float32 (B, K) one-hot or soft labels.
      seed: shape-(2,) seed.
      alpha: α of Beta(α, α); one λ per batch, as in the paper.

    Returns:
      (uint8 images, float32 labels, λ).
    """
    lambda_seed, partner_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    lam = sample_beta(alpha, lambda_seed)
    partners = _partners(partner_seed, tf.shape(images)[0])
    pixels = tf.cast(images, tf.float32)
    mixed = lam * pixels + (1.0 - lam) * tf.gather(pixels, partners)
    mixed_labels = lam * labels + (1.0 - lam) * tf.gather(labels, partners)
    return preprocess.to_uint8(mixed, clip=False), mixed_labels, lam


def cutmix(images, labels, seed, *, alpha: float):
    """Pastes a box of a partner image into every image; labels mix by the box's area.

    The box has sides H √(1-λ) and W √(1-λ) around a uniformly drawn centre and is clipped to
    the image (arXiv 1905.04899 §3.1, Algorithm A1); λ is then recomputed from the clipped
    area, so label weights equal pixel shares exactly.

    Returns:
      (uint8 images, float32 labels, λ = share of each image's own pixels).
    """
    lambda_seed, partner_seed, center_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 3)
    )
    lam = sample_beta(alpha, lambda_seed)
    partners = _partners(partner_seed, tf.shape(images)[0])
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    ratio = tf.sqrt(1.0 - lam)
    cut_height = tf.cast(tf.math.round(ratio * tf.cast(height, tf.float32)), tf.int32)
    cut_width = tf.cast(tf.math.round(ratio * tf.cast(width, tf.float32)), tf.int32)
    center = tf.random.stateless_uniform([2], center_seed)
    center_y = tf.cast(center[0] * tf.cast(height, tf.float32), tf.int32)
    center_x = tf.cast(center[1] * tf.cast(width, tf.float32), tf.int32)
    top = tf.clip_by_value(center_y - cut_height // 2, 0, height)
    bottom = tf.clip_by_value(center_y + cut_height - cut_height // 2, 0, height)
    left = tf.clip_by_value(center_x - cut_width // 2, 0, width)
    right = tf.clip_by_value(center_x + cut_width - cut_width // 2, 0, width)
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    box = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
    mixed = tf.where(box[None, :, :, None], tf.gather(images, partners), images)
    own_share = 1.0 - tf.cast((bottom - top) * (right - left), tf.float32) / tf.cast(
        height * width, tf.float32
    )
    mixed_labels = own_share * labels + (1.0 - own_share) * tf.gather(labels, partners)
    return mixed, mixed_labels, own_share


def ricap(images, labels, seed, *, beta: float):
    """Patches four crops of four images into one, labels mixed by the crops' areas.

    Takahashi et al. arXiv 1811.09030 §3.1, as the authors' PyTorch code computes it (its loop
    recurs in ports, e.g. pprp/captcha.Pytorch utils/randomCropPatch.py): a boundary point
    (h, w) splits the image
    into four rectangles, h = round(H·X) and w = round(W·Y) with X, Y ~ Beta(β, β); rectangle
    k (top-left, top-right, bottom-left, bottom-right) is filled with a crop of its size cut at
    a uniformly drawn position from image π_k(i), π_k an independent random permutation of the
    batch per rectangle; one boundary and four crop positions per batch, as in the reference.
    Image i's label becomes Σ_k (area_k / (H·W)) · label[π_k(i)].

    Args:
      images: uint8 (B, H, W, 3).
      labels: float32 (B, K) one-hot or soft labels.
      seed: shape-(2,) seed.
      beta: β of Beta(β, β) (0.3 in the paper's experiments and the reference code).

    Returns:
      (uint8 images, float32 labels, the boundary (h, w) as int32 (2,)).
    """
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 9))
    shape = tf.shape(images)
    batch_size, height, width = shape[0], shape[1], shape[2]
    size = tf.cast(tf.stack([height, width]), tf.float32)
    boundary = tf.cast(tf.math.round(size * sample_beta(beta, seeds[0], [2])), tf.int32)
    top_height, left_width = boundary[0], boundary[1]
    heights = (top_height, top_height, height - top_height, height - top_height)
    widths = (left_width, width - left_width, left_width, width - left_width)
    crops, mixed_labels = [], 0.0
    for k in range(4):
        partners = _partners(seeds[1 + k], batch_size)
        position = tf.random.stateless_uniform([2], seeds[5 + k])
        y = tf.cast(position[0] * tf.cast(height - heights[k] + 1, tf.float32), tf.int32)
        x = tf.cast(position[1] * tf.cast(width - widths[k] + 1, tf.float32), tf.int32)
        y = tf.minimum(y, height - heights[k])
        x = tf.minimum(x, width - widths[k])
        crops.append(tf.gather(images, partners)[:, y : y + heights[k], x : x + widths[k]])
        area = tf.cast(heights[k] * widths[k], tf.float32) / tf.cast(height * width, tf.float32)
        mixed_labels += area * tf.gather(labels, partners)
    mixed = tf.concat([tf.concat(crops[:2], axis=2), tf.concat(crops[2:], axis=2)], axis=1)
    mixed = tf.ensure_shape(mixed, images.shape)
    return mixed, mixed_labels, boundary


@dataclasses.dataclass(frozen=True)
class Mixer:
    """Mixup and/or CutMix, or RICAP, on whole batches, with one-hot labels out.

    Attributes:
      num_classes: K of the one-hot labels.
      mixup_alpha: α of mixup's Beta(α, α); 0 disables mixup (0.2 in arXiv 1710.09412 and
        Bag of Tricks §5.4 for ImageNet).
      cutmix_alpha: α of CutMix; 0 disables it (1.0, i.e. λ uniform, in arXiv 1905.04899).
      ricap_beta: β of RICAP's boundary; 0 disables it (0.3 in arXiv 1811.09030). Used alone:
        the configuration refuses it together with mixup or CutMix.
      probability: chance that a batch is mixed at all.
      switch_probability: with both enabled, chance that a mixed batch uses CutMix rather
        than mixup (timm's default 0.5).
    """

    num_classes: int
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    ricap_beta: float = 0.0
    probability: float = 1.0
    switch_probability: float = 0.5

    def __bool__(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0 or self.ricap_beta > 0

    def __call__(self, images, labels, seed):
        """uint8 images (B, H, W, 3), int labels (B,) → (uint8 images, float32 (B, K))."""
        targets = tf.one_hot(tf.cast(labels, tf.int32), self.num_classes, dtype=tf.float32)
        if not self:
            return images, targets
        apply_seed, switch_seed, mix_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, 3)
        )
        apply = tf.random.stateless_uniform([], apply_seed) < self.probability

        def mixed():
            if self.ricap_beta > 0:
                return ricap(images, targets, mix_seed, beta=self.ricap_beta)[:2]
            if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
                use_cutmix = tf.random.stateless_uniform([], switch_seed) < self.switch_probability
                return tf.cond(
                    use_cutmix,
                    lambda: cutmix(images, targets, mix_seed, alpha=self.cutmix_alpha)[:2],
                    lambda: mixup(images, targets, mix_seed, alpha=self.mixup_alpha)[:2],
                )
            if self.cutmix_alpha > 0:
                return cutmix(images, targets, mix_seed, alpha=self.cutmix_alpha)[:2]
            return mixup(images, targets, mix_seed, alpha=self.mixup_alpha)[:2]

        return tf.cond(apply, mixed, lambda: (images, targets))
