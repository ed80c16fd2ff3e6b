"""Mixed-precision policy by name, including "auto": on a bfloat16 CPU, measured on the model.

On a CPU with bfloat16 instructions (AVX512_BF16, AMX) TensorFlow's oneDNN kernels make dense
convolutions about 1.5-2x faster in bfloat16, but depthwise convolutions can be slower, and by
how much depends on the CPU, the layer shapes and the model: under one global
`mixed_bfloat16` policy EfficientNet-B0 trained at 0.70x and MobileNetV2 at 1.15x of float32
on one AVX-512 BF16 machine, ResNet-50 at 1.82x (README "Speed"). Timing one small layer of
each kind (an earlier version) did not represent the models and flipped between processes,
so "auto" times the model itself: one forward and backward pass at the training image size
under each `CANDIDATES` assignment (every kernel in bfloat16, every kernel in float32,
bfloat16 but for depthwise convolutions), alternating, and keeps the fastest
(`Precision.tuned`). Candidates within a few percent of each other cost about the same, so
the noise that decides between them costs little. Layers between two kernels
(normalization, activation, pooling, additions) follow the dtype of the layer that feeds them,
so a float32 depthwise convolution does not cast to bfloat16 and back for its batch norm and
activation. Layers the model pins to float32 (the classifier's output, `heads.py`, and the
input normalization) stay float32, as do the loss and the variables.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
import weakref
from collections.abc import Callable

import keras
import tensorflow as tf
from absl import logging

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16", "auto")
FLOAT32, BFLOAT16 = "float32", "mixed_bfloat16"
KINDS = ("depthwise", "pointwise", "conv", "dense")

# The per-kind assignments "auto" times on a bfloat16 CPU ({kind: policy}; kinds left out take
# bfloat16). Depthwise convolutions are the kind whose bfloat16 kernels lose on some CPUs;
# the others gained on every CPU measured, so further mixes would add start-up time only.
CANDIDATES = {
    "bfloat16": {},
    "bfloat16, float32 depthwise": {"depthwise": FLOAT32},
    "float32": dict.fromkeys(KINDS, FLOAT32),
}
# Timing of the candidates: images per pass (the per-replica batch if smaller) and passes per
# candidate after one untimed warm-up, alternating (medians are kept).
TUNING_BATCH, TUNING_REPEATS = 8, 3
# Seconds per forward + backward pass of the model, {candidate: seconds}.
Timings = dict[str, float]
# {model: {id(layer): the policy the model pinned the layer to, or None}}, from `assign`'s first
# look at a model, before it changed any layer.
_PINNED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cpu_flags() -> set[str]:
    """The instruction-set flags of this machine's CPU (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def auto_precision() -> tuple[str, str]:
    """Picks the fastest safe global policy for this machine; returns (policy, reason)."""
    if tf.config.list_logical_devices("TPU"):
        return "mixed_bfloat16", "TPU: bfloat16 matrix units"
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get(
            "compute_capability", (0, 0)
        )
        if capability >= (7, 0):
            return "mixed_float16", f"GPU compute capability {capability} has float16 tensor cores"
        return "float32", f"GPU compute capability {capability} < 7.0: no fast float16"
    if cpu_has_bfloat16():
        return "mixed_bfloat16", "CPU has AVX512_BF16/AMX: bfloat16 per layer kind where faster"
    return "float32", "CPU without bfloat16 instructions"


def cpu_has_bfloat16() -> bool:
    """AVX512_BF16 or AMX: bfloat16 in hardware, where TensorFlow's bfloat16 kernels stay within
    bfloat16 rounding. Without them they lose more: TensorFlow's own depthwise kernel gradient
    over 2×9×11 positions came out 1.6 % off float64 on an AVX2-only CPU (AMD EPYC, Zen 2),
    where the same computation stays within 0.14 % on AVX512_BF16."""
    flags = cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def layer_kind(layer: keras.layers.Layer) -> str | None:
    """The `KINDS` entry of a kernel layer, None for the layers that follow their input."""
    if isinstance(layer, keras.layers.DepthwiseConv2D | keras.layers.SeparableConv2D):
        return "depthwise"  # A separable convolution's cost is mostly its depthwise half.
    if isinstance(layer, keras.layers.Conv2D):
        return "pointwise" if tuple(layer.kernel_size) == (1, 1) else "conv"
    if isinstance(layer, keras.layers.Dense):
        return "dense"
    return None


def assign(model: keras.Model, policy: str, per_kind: dict[str, str]) -> dict[str, int]:
    """Gives each kernel layer of `model` (built under `policy`) the dtype policy of its kind
    in `per_kind` (default `policy`), and each layer between kernels that of the layer feeding
    it; layers the model pinned to another policy keep it. Returns the count of layers per
    dtype policy.

    Works after construction because mixed and float32 policies keep the same float32
    variables; a layer's compute dtype is read when it is called, so the functional model's
    next trace runs with the new policies. Layers already assigned keep their first choice
    (one layer called twice).
    """
    from official.models import graph

    pins = _PINNED.setdefault(model, {})
    counts: dict[str, int] = {}
    assigned: dict[int, str] = {}
    free_kernels = 0
    for call in graph.calls(model):
        layer = call.layer
        if id(layer) in assigned:
            continue
        current = layer.dtype_policy.name
        # A policy other than the build's at first sight was pinned by the model (float32
        # output, input normalization); remembered so the next candidate keeps it.
        pinned = pins.setdefault(id(layer), current if current != policy else None)
        if pinned is not None:
            chosen = pinned
        elif (kind := layer_kind(layer)) is not None:
            chosen = per_kind.get(kind, policy)
        else:  # Follows the layer that feeds it, so no cast between them.
            source = call.inputs[0]._keras_history[0] if call.inputs else None
            chosen = assigned.get(id(source), policy)
        if chosen != current:
            layer.dtype_policy = chosen
        assigned[id(layer)] = chosen
        counts[chosen] = counts.get(chosen, 0) + 1
        free_kernels += pinned is None and layer_kind(layer) is not None
    if not free_kernels:
        raise ValueError(f"no layer of {model.name!r} was built under {policy}: nothing to assign")
    return counts


def candidates_for(model: keras.Model) -> dict[str, dict[str, str]]:
    """`CANDIDATES` restricted to the kernel kinds `model` has, without repeats (a model
    without depthwise convolutions times two)."""
    from official.models import graph

    present = {layer_kind(call.layer) for call in graph.calls(model)} - {None}
    unique: dict[str, dict[str, str]] = {}
    for name, per_kind in CANDIDATES.items():
        effective = {kind: p for kind, p in per_kind.items() if kind in present}
        if effective not in unique.values():
            unique[name] = effective
    return unique


def measure_candidates(
    model: keras.Model,
    policy: str,
    candidates: dict[str, dict[str, str]],
    batch_size: int = TUNING_BATCH,
    training: bool = True,
    repeats: int = TUNING_REPEATS,
) -> Timings:
    """Median seconds of one pass of `model` on `batch_size` random images under each
    candidate assignment, the candidates alternating: with `training`, forward and backward in
    training mode (gradients of every trainable variable), else the inference forward pass.
    The model's non-trainable variables (batch-norm statistics, random-generator states) are
    restored afterwards, so timing leaves no trace in training.
    """
    shape = [batch_size, *model.input_shape[1:]]
    if None in shape:
        raise ValueError(f"precision auto needs a fixed input size, the model takes {shape}")
    images = tf.random.stateless_uniform(shape, seed=[1, 2], maxval=255.0)
    # In a strategy's scope (training) the variables are distributed: each replica runs the
    # pass on its own batch, as in training.
    strategy = tf.distribute.get_strategy()
    saved = [v.numpy() for v in model.non_trainable_variables]
    try:
        steps = {}
        for name, per_kind in candidates.items():
            assign(model, policy, per_kind)

            def replica_pass():
                if not training:
                    return tf.nest.flatten(model(images, training=False))
                with tf.GradientTape() as tape:
                    outputs = model(images, training=True)
                    loss = tf.add_n(
                        [tf.reduce_sum(tf.cast(t, tf.float32)) for t in tf.nest.flatten(outputs)]
                    )
                return tape.gradient(loss, model.trainable_variables)

            step = tf.function(lambda replica_pass=replica_pass: strategy.run(replica_pass))
            _run(step, strategy)  # Traces and creates the kernels' primitives.
            steps[name] = step
        samples = {name: [] for name in steps}
        for _ in range(repeats):
            for name, step in steps.items():
                start = time.perf_counter()
                _run(step, strategy)
                samples[name].append(time.perf_counter() - start)
    finally:
        for variable, value in zip(model.non_trainable_variables, saved, strict=True):
            variable.assign(value)
    medians = tf.constant([statistics.median(samples[name]) for name in steps], tf.float32)
    # Every replica and worker decides on the same times (their mean), so all of them run
    # the same candidate.
    agreed = strategy.reduce(
        tf.distribute.ReduceOp.MEAN, strategy.run(lambda: tf.identity(medians)), axis=None
    )
    return dict(zip(steps, (float(t) for t in agreed.numpy()), strict=True))


def _run(step, strategy) -> None:
    for value in tf.nest.flatten(step()):
        for local in strategy.experimental_local_results(value):
            if local is not None:
                local.numpy()


@dataclasses.dataclass(frozen=True)
class Precision:
    """The resolved precision of a run.

    Attributes:
      policy: the global Keras dtype policy (what every layer gets unless `per_kind` says).
      tune: "auto" on a bfloat16 CPU: `tuned` still has to time the candidates on the model.
      chosen: the `CANDIDATES` entry `tuned` picked ("" before or without tuning).
      per_kind: {layer kind: policy} of the chosen candidate.
      timings: the measurement behind `chosen`.
    """

    policy: str
    tune: bool = False
    chosen: str = ""
    per_kind: dict[str, str] = dataclasses.field(default_factory=dict)
    timings: Timings = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"auto: {self.chosen}" if self.chosen else self.policy

    def tuned(
        self,
        model: keras.Model,
        batch_size: int = TUNING_BATCH,
        training: bool = True,
        measure: Callable[..., Timings] | None = None,
    ) -> Precision:
        """For "auto" on a bfloat16 CPU: times `model` (built under `policy`, with the kernels
        it will run, e.g. fused batch norm or folded) under each candidate, logs the times and
        returns the precision with the fastest; apply it to the model with `apply`. Otherwise
        returns itself.

        Args:
          model: the model to time.
          batch_size: the per-replica batch; timing uses at most `TUNING_BATCH` images.
          training: time training passes (forward and backward), else inference.
          measure: the timing (default `measure_candidates`); injectable for tests.
        """
        if not self.tune:
            return self
        measure = measure or measure_candidates
        candidates = candidates_for(model)
        batch = max(1, min(batch_size, TUNING_BATCH))
        start = time.monotonic()
        timings = measure(model, self.policy, candidates, batch, training)
        chosen = min(timings, key=timings.get)
        logging.info(
            "precision auto → %s; ms per %s pass of %d images: %s (%.0f s)",
            chosen,
            "training" if training else "inference",
            batch,
            ", ".join(f"{name} {1e3 * seconds:.0f}" for name, seconds in timings.items()),
            time.monotonic() - start,
        )
        return Precision(self.policy, False, chosen, candidates[chosen], timings)

    def resumed(self, recorded: str) -> Precision:
        """For "auto" on a bfloat16 CPU: the choice a run recorded (`recorded`, its `name`, as
        config.json keeps it), without timing again, so a resumed run computes as it started;
        itself when `recorded` is not such a choice."""
        chosen = recorded.removeprefix("auto: ")
        if not self.tune or chosen == recorded or chosen not in CANDIDATES:
            return self
        logging.info("precision auto → %s (recorded by the run; not timed again)", chosen)
        return Precision(self.policy, False, chosen, dict(CANDIDATES[chosen]))

    def apply(self, model: keras.Model) -> dict[str, int]:
        """Gives each layer of `model` (built under `policy`) the dtype policy of the chosen
        candidate (`assign`); returns the count of layers per compute dtype (logged)."""
        if self.tune:
            raise ValueError("precision auto: call tuned(model) before apply")
        if not self.chosen:  # One policy for every layer: set globally before the build.
            return {}
        counts = assign(model, self.policy, self.per_kind)
        logging.info("precision per layer: %s layers", _format(counts))
        return counts


def _format(counts: dict) -> str:
    return ", ".join(f"{value} {key}" for key, value in sorted(counts.items()))


def set_policy(precision: str) -> Precision:
    """Sets the global Keras dtype policy and returns the resolved `Precision` (for "auto" on a
    bfloat16 CPU, its `tuned(model)` times the model built afterwards and `apply` assigns the
    per-layer policies).

    Args:
      precision: one of PRECISIONS.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    resolved = Precision(precision)
    if precision == "auto":
        policy, reason = auto_precision()
        on_cpu = not tf.config.list_physical_devices("GPU") and not tf.config.list_logical_devices(
            "TPU"
        )
        resolved = Precision(policy, tune=policy == BFLOAT16 and on_cpu)
        if resolved.tune:
            reason += "; timed on the model once it is built"
        logging.info("precision auto → %s (%s)", policy, reason)
    keras.mixed_precision.set_global_policy(resolved.policy)
    return resolved


class DynamicLossScale(tf.Module):
    """Dynamic loss scaling for float16 training (Micikevicius et al. arXiv 1710.03740 §3.2).

    The loss is multiplied by `scale` before differentiation so small float16 gradients do not
    flush to zero; the loop divides the all-reduced gradients by it again. A step whose
    gradients are not finite is skipped and halves the scale; `growth_interval` finite steps in a
    row double it. Defaults are Keras' LossScaleOptimizer's. Keras' wrapper is not used because
    the loop applies gradients itself (after its own all-reduce, so every replica sees the same
    finiteness and skips the same steps).
    """

    def __init__(self, initial_scale: float = 2.0**15, growth_interval: int = 2000):
        super().__init__(name="loss_scale")
        self.growth_interval = int(growth_interval)
        self.scale = tf.Variable(initial_scale, trainable=False, dtype=tf.float32, name="scale")
        self.good_steps = tf.Variable(0, trainable=False, dtype=tf.int64, name="good_steps")

    def update(self, finite: tf.Tensor) -> None:
        """Adjusts the scale after a step; call in cross-replica context."""

        def on_finite():
            grow = self.good_steps + 1 >= self.growth_interval
            self.scale.assign(tf.where(grow, self.scale * 2.0, self.scale))
            self.good_steps.assign(tf.where(grow, tf.constant(0, tf.int64), self.good_steps + 1))

        def on_overflow():
            self.scale.assign(tf.maximum(self.scale * 0.5, 1.0))
            self.good_steps.assign(0)

        tf.cond(finite, on_finite, on_overflow)
