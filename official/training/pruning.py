"""Magnitude pruning during training (Zhu & Gupta, "To prune, or not to prune", arXiv 1710.01878).

The sparsity of every pruned kernel follows the paper's cubic schedule (§3, Eq. 1)

    s_t = s_f + (s_i − s_f) · (1 − (t − t0) / (n·Δt))³,   t ∈ {t0, t0 + Δt, …, t0 + n·Δt},

starting at s_i at step t0 and reaching s_f at step t0 + n·Δt (`end_step`). At each of those
steps the mask of a kernel is recomputed so that exactly round(s_t · size) of its weights with
the smallest magnitudes are zero (ties broken by position, as `tf.math.top_k`, so the count is
exact); between them the masks stay fixed. tensorflow-model-optimization's
`PolynomialDecay(power=3)` (sparsity/keras/pruning_schedule.py) is the same schedule; the
package itself cannot be used because it needs legacy Keras 2 (tensorflow/model-optimization
#1119). Unlike it, the end step is always a mask-update step, so s_f is reached there even when
(end − begin) is not a multiple of the frequency.

The model is not rewritten: the masks are variables of a `Pruner`, one per pruned kernel, that
the training loop applies after every optimizer step (kernel ← kernel · mask, and the same for
the EMA copy), and the checkpoint holds them (key `pruning`), so a resumed run continues exactly.
The trained (and exported) model therefore holds its zeros in plain kernels: `strip` folds the
masks of a checkpoint into a model once more and reports the sparsity it has.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf

# Which kernels may be pruned. "conv": every Conv2D but the first, and the pointwise kernels of
# separable convolutions; "first_conv": the first Conv2D (the stem, which sees the pixels);
# "depthwise": depthwise kernels (few weights each, so pruning them costs much accuracy, as
# tensorflow-model-optimization's docs warn); "dense": fully connected layers, classifier
# included (Zhu & Gupta prune them too).
KINDS = ("first_conv", "conv", "depthwise", "dense")
DEFAULT_KINDS = ("conv", "dense")
# The checkpoint key of the masks.
CHECKPOINT_KEY = "pruning"


def parse_kinds(values: Sequence[str]) -> tuple[str, ...]:
    """("conv,dense",) or ("conv", "dense") → ("conv", "dense").

    Raises:
      ValueError: an unknown kind (the message lists the known ones).
    """
    parsed = tuple(name.strip() for value in values for name in value.split(",") if name.strip())
    for name in parsed:
        if name not in KINDS:
            raise ValueError(f"unknown layer kind {name!r}; choose from {', '.join(KINDS)}")
    return parsed


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Zhu & Gupta's schedule, in optimizer steps (the step count after the step)."""

    target_sparsity: float  # s_f.
    initial_sparsity: float = 0.0  # s_i.
    begin_step: int = 0  # t0.
    end_step: int = 0  # t0 + n·Δt.
    frequency: int = 100  # Δt (tensorflow-model-optimization's default).

    def sparsity(self, step):
        """s_t (a float, or a float32 tensor for a tensor step); s_f after the end."""
        span = max(self.end_step - self.begin_step, 1)
        if tf.is_tensor(step):
            progress = tf.clip_by_value(tf.cast(step - self.begin_step, tf.float32) / span, 0, 1)
        else:
            progress = min(max((step - self.begin_step) / span, 0.0), 1.0)
        initial, target = self.initial_sparsity, self.target_sparsity
        return target + (initial - target) * (1 - progress) ** 3

    def is_update_step(self, step):
        """Whether the masks are recomputed after `step` (a bool, or a bool tensor)."""
        offset = step - self.begin_step
        on_grid = offset % self.frequency == 0
        if tf.is_tensor(step):
            return (offset >= 0) & (step <= self.end_step) & (on_grid | (step == self.end_step))
        return offset >= 0 and step <= self.end_step and (on_grid or step == self.end_step)


def _layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """Every layer in model order, nested models flattened."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer


def prunable_kernels(model: keras.Model, kinds: Sequence[str] = DEFAULT_KINDS) -> list:
    """The kernels of `model` that pruning of these `kinds` (see KINDS) touches, in model order."""
    return [kernel for _, kernel in _prunable(model, kinds)]


def _prunable(model: keras.Model, kinds: Sequence[str]) -> list[tuple[keras.layers.Layer, object]]:
    """(layer, kernel) of every kernel pruning of these `kinds` touches, in model order."""
    kernels, first_conv_seen = [], False
    for layer in _layers(model):
        found = []
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            found = [("depthwise", layer.kernel)]
        elif isinstance(layer, keras.layers.SeparableConv2D):
            found = [("depthwise", layer.depthwise_kernel), ("conv", layer.pointwise_kernel)]
        elif isinstance(layer, keras.layers.Conv2D):
            found = [("conv" if first_conv_seen else "first_conv", layer.kernel)]
            first_conv_seen = True
        elif isinstance(layer, keras.layers.Dense):
            found = [("dense", layer.kernel)]
        kernels += [(layer, kernel) for kind, kernel in found if kind in kinds]
    return kernels


def magnitude_mask(kernel: tf.Tensor, sparsity: tf.Tensor) -> tf.Tensor:
    """1 for the (1 − s)·size weights of largest magnitude, 0 for the round(s·size) others."""
    flat = tf.reshape(tf.abs(kernel), [-1])
    size = tf.size(flat)
    fraction = tf.cast(sparsity, tf.float32)
    num_zeros = tf.cast(tf.round(fraction * tf.cast(size, tf.float32)), tf.int32)
    keep = tf.math.top_k(flat, size - num_zeros, sorted=False).indices
    ones = tf.ones_like(keep, dtype=kernel.dtype)
    return tf.reshape(tf.scatter_nd(keep[:, None], ones, [size]), tf.shape(kernel))


class Masks(tf.Module):
    """The mask variables by kernel path: what a checkpoint holds under CHECKPOINT_KEY."""

    def __init__(self, kernels: Sequence):
        super().__init__(name="pruning_masks")
        self.by_path = {
            kernel.path: tf.Variable(
                tf.ones(kernel.shape, kernel.dtype),
                trainable=False,
                name=kernel.path.replace("/", "_") + "_mask",
            )
            for kernel in kernels
        }


class Pruner:
    """The masks of one model (and of its EMA copy) and the schedule that updates them.

    Build it in the strategy's scope. `prune(step)` runs in cross-replica context after each
    optimizer step, inside the compiled training loop.

    Args:
      model: the trained model.
      schedule: the sparsity schedule.
      kinds: which kernels are pruned (see KINDS).
      strategy: the distribution strategy of the model.
      shadows: models of the same architecture whose kernels get the same masks (the EMA
        average, which evaluation and export use).
      frozen: layers of `model` that do not train in this run (`train.freeze_stages`): they
        are not pruned, since weights that cannot move cannot recover what pruning removes.
    """

    def __init__(
        self,
        model: keras.Model,
        *,
        schedule: Schedule,
        kinds: Sequence[str] = DEFAULT_KINDS,
        strategy: tf.distribute.Strategy,
        shadows: Sequence[keras.Model] = (),
        frozen: Sequence[keras.layers.Layer] = (),
    ):
        self.schedule = schedule
        self.strategy = strategy
        frozen_ids = {id(layer) for layer in frozen}
        found = _prunable(model, kinds)
        pruned = [i for i, (layer, _) in enumerate(found) if id(layer) not in frozen_ids]
        self.kernels = [found[i][1] for i in pruned]
        if not self.kernels:
            outside = " outside its frozen stages" if frozen_ids else ""
            raise ValueError(f"{model.name} has no kernel of the kinds {', '.join(kinds)}{outside}")
        self.masks = Masks(self.kernels)
        # A shadow has the same architecture: its prunable kernels line up with the model's.
        self._shadow_kernels = [
            [prunable_kernels(shadow, kinds)[i] for i in pruned] for shadow in shadows
        ]
        self._zeros = tf.function(self._count_zeros)

    def _mask_list(self) -> list[tf.Variable]:
        return [self.masks.by_path[kernel.path] for kernel in self.kernels]

    def prune(self, step: tf.Tensor) -> None:
        """After optimizer step `step`: recomputes the masks if it is an update step, then
        zeroes the masked weights (every step from `begin_step` on, since the optimizer moves
        them)."""
        schedule, extended = self.schedule, self.strategy.extended
        masks = self._mask_list()
        step = tf.convert_to_tensor(step)

        def update_masks():
            sparsity = schedule.sparsity(step)
            for kernel, mask in zip(self.kernels, masks):
                extended.update(
                    mask,
                    lambda m, k: m.assign(magnitude_mask(k, sparsity)),
                    args=(kernel.value,),
                    group=False,
                )
            return tf.constant(True)

        def apply_masks():
            for kernels in (self.kernels, *self._shadow_kernels):
                for kernel, mask in zip(kernels, masks):
                    extended.update(
                        kernel.value, lambda k, m: k.assign(k * m), args=(mask,), group=False
                    )
            return tf.constant(True)

        tf.cond(schedule.is_update_step(step), update_masks, lambda: tf.constant(False))
        tf.cond(step >= schedule.begin_step, apply_masks, lambda: tf.constant(False))

    def _count_zeros(self):
        return tf.stack([tf.reduce_sum(tf.cast(m == 0, tf.float32)) for m in self._mask_list()])

    def sparsities(self) -> dict[str, float]:
        """{kernel path: fraction of its weights masked}, and "total" over every pruned kernel."""
        zeros = self._zeros().numpy()
        sizes = np.array([int(np.prod(kernel.shape)) for kernel in self.kernels])
        values = {kernel.path: float(z / n) for kernel, z, n in zip(self.kernels, zeros, sizes)}
        values["total"] = float(zeros.sum() / sizes.sum())
        return values


def kernel_sparsities(model: keras.Model, kinds: Sequence[str] = KINDS) -> dict[str, float]:
    """{kernel path: fraction of exact zeros} of a model's kernels (of `kinds`; all by default)."""
    return {
        kernel.path: float(np.mean(keras.ops.convert_to_numpy(kernel) == 0))
        for kernel in prunable_kernels(model, kinds)
    }


def strip(model: keras.Model, checkpoint: str) -> dict[str, float]:
    """Folds the masks a training checkpoint holds into `model`'s kernels, for export.

    The exported model then has plain layers, no mask variables, and zeros wherever a mask was
    zero (training already keeps the kernels masked; this makes it hold for any weights loaded
    into `model`, e.g. an EMA copy). A checkpoint without masks (a run trained without pruning,
    or the weights-only best checkpoint) leaves the kernels as they are.

    Returns:
      {kernel path: fraction of zeros} of the pruned kernels after folding ({} if none).
    """
    names = {name for name, _ in tf.train.list_variables(checkpoint)}
    prefix = f"{CHECKPOINT_KEY}/by_path/"
    if not any(name.startswith(prefix) for name in names):
        return {}
    reader = tf.train.load_checkpoint(checkpoint)
    stripped = {}
    for kernel in prunable_kernels(model, KINDS):
        name = f"{prefix}{_escape(kernel.path)}/.ATTRIBUTES/VARIABLE_VALUE"
        if name not in names:
            continue
        mask = reader.get_tensor(name)
        kernel.assign(keras.ops.convert_to_numpy(kernel) * mask)
        stripped[kernel.path] = float(np.mean(keras.ops.convert_to_numpy(kernel) == 0))
    return stripped


def _escape(key: str) -> str:
    """A dict key as TensorFlow's object graph names it in a checkpoint ("/" → ".S")."""
    return key.replace(".", "..").replace("/", ".S")
