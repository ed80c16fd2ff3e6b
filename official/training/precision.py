"""Mixed-precision policy by name, including "auto": measured per layer kind on CPUs.

On a CPU with bfloat16 instructions (AVX512_BF16, AMX) TensorFlow's oneDNN kernels make dense
convolutions about 1.5-2x faster in bfloat16, but depthwise convolutions slower: under one
global `mixed_bfloat16` policy EfficientNet-B0 trains at 0.75x and MobileNetV2 at 0.83x of
float32 on the project machine (README "Speed"). So there "auto" times one representative
layer of each kind (`LAYER_KINDS`) forward and backward in both dtypes once at start (about a
second) and gives every layer of the model the faster one (`Precision.apply`); the layers
between two kernels (normalization, activation, pooling, additions) follow the dtype of the
layer that feeds them, so a float32 depthwise convolution does not cast to bfloat16 and back
for its batch norm and activation. Layers the model pins to float32 (the classifier's output,
`heads.py`, and the input normalization) stay float32, as do the loss and the variables.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

import keras
import tensorflow as tf
from absl import logging

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16", "auto")
FLOAT32, BFLOAT16 = "float32", "mixed_bfloat16"

# The kernel layers whose dtype "auto" measures, each with the workload timed for it
# ((image side, input channels) → the layer's config): the MobileNetV2 / EfficientNet inverted
# residual's 96-channel depthwise and pointwise convolutions, a ResNet 3x3 convolution (no
# biases: batch norm follows them all), and a 1280 → 1000 classifier. A 28-px batch of 8 keeps
# the whole measurement near a second on an idle 2-core machine.
_CONV = dict(padding="same", use_bias=False)
LAYER_KINDS = {
    "depthwise": ((28, 96), dict(kind=keras.layers.DepthwiseConv2D, kernel_size=3, **_CONV)),
    "pointwise": ((28, 96), dict(kind=keras.layers.Conv2D, filters=24, kernel_size=1, **_CONV)),
    "conv": ((28, 64), dict(kind=keras.layers.Conv2D, filters=64, kernel_size=3, **_CONV)),
    "dense": ((None, 1280), dict(kind=keras.layers.Dense, units=1000)),
}
# Seconds per forward + backward pass of each kind, {kind: {dtype policy: seconds}}.
Timings = dict[str, dict[str, float]]


def _cpu_flags() -> set[str]:
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
    flags = _cpu_flags()
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        return "mixed_bfloat16", "CPU has AVX512_BF16/AMX: bfloat16 per layer kind where faster"
    return "float32", "CPU without bfloat16 instructions"


def layer_kind(layer: keras.layers.Layer) -> str | None:
    """The `LAYER_KINDS` key of a kernel layer, None for the layers that follow their input."""
    if isinstance(layer, keras.layers.DepthwiseConv2D | keras.layers.SeparableConv2D):
        return "depthwise"  # A separable convolution's cost is mostly its depthwise half.
    if isinstance(layer, keras.layers.Conv2D):
        return "pointwise" if tuple(layer.kernel_size) == (1, 1) else "conv"
    if isinstance(layer, keras.layers.Dense):
        return "dense"
    return None


def measure_layer_kinds(batch_size: int = 8, repeats: int = 3) -> Timings:
    """Median seconds of one forward + backward pass of each `LAYER_KINDS` workload (layer,
    batch norm, ReLU: the unit that takes one dtype), float32 and bfloat16 alternating."""
    timings: Timings = {}
    for kind, ((size, channels), layer_config) in LAYER_KINDS.items():
        shape = [batch_size, channels] if size is None else [batch_size, size, size, channels]
        inputs = tf.random.stateless_uniform(shape, seed=[1, 2])
        steps = {}
        for policy in (FLOAT32, BFLOAT16):
            config = dict(layer_config)
            layers = [config.pop("kind")(dtype=policy, **config)]
            if size is not None:
                layers += [keras.layers.BatchNormalization(dtype=policy), keras.layers.ReLU()]
            unit = keras.Sequential(layers)
            unit.build(shape)

            @tf.function
            def step(unit=unit, inputs=inputs):
                with tf.GradientTape() as tape:
                    tape.watch(inputs)
                    loss = tf.reduce_sum(tf.cast(unit(inputs, training=True), tf.float32))
                return tape.gradient(loss, [inputs, *unit.trainable_variables])

            step()  # Traces.
            steps[policy] = step
        samples = {policy: [] for policy in steps}
        for _ in range(repeats):
            for policy, step in steps.items():
                start = time.perf_counter()
                tf.nest.map_structure(lambda t: t.numpy(), step())
                samples[policy].append(time.perf_counter() - start)
        timings[kind] = {policy: statistics.median(s) for policy, s in samples.items()}
    return timings


@dataclasses.dataclass(frozen=True)
class Precision:
    """The resolved precision of a run.

    Attributes:
      policy: the global Keras dtype policy (what every layer gets unless `per_kind` says).
      per_kind: {layer kind: policy} for "auto" on a bfloat16 CPU, else empty.
      timings: the measurement behind `per_kind`.
    """

    policy: str
    per_kind: dict[str, str] = dataclasses.field(default_factory=dict)
    timings: Timings = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.policy} per layer" if self.per_kind else self.policy

    def apply(self, model: keras.Model) -> dict[str, int]:
        """Gives each layer of `model` (built under `policy`) its kind's dtype policy; returns
        the count of layers per compute dtype (logged).

        Works after construction because mixed and float32 policies keep the same float32
        variables; a layer's compute dtype is read when it is called, so a functional model's
        next call runs with the new policies.
        """
        from official.models import graph

        if not self.per_kind:  # One policy for every layer: set globally before the build.
            return {}
        counts: dict[str, int] = {}
        assigned: dict[int, str] = {}
        for call in graph.calls(model):
            layer = call.layer
            if id(layer) in assigned:
                continue
            current = layer.dtype_policy.name
            kind = layer_kind(layer)
            if current != self.policy:  # Pinned by the model (float32 output, normalization).
                chosen = current
            elif kind is not None:
                chosen = self.per_kind.get(kind, current)
            else:  # Follows the layer that feeds it, so no cast between them.
                source = call.inputs[0]._keras_history[0] if call.inputs else None
                chosen = assigned.get(id(source), current)
            if chosen != current:
                layer.dtype_policy = chosen
            assigned[id(layer)] = chosen
            counts[chosen] = counts.get(chosen, 0) + 1
        logging.info("precision per layer: %s layers", _format(counts))
        return counts


def _format(counts: dict) -> str:
    return ", ".join(f"{value} {key}" for key, value in sorted(counts.items()))


def choose_per_kind(timings: Timings) -> dict[str, str]:
    """The faster policy of every measured kind."""
    return {kind: min(times, key=times.get) for kind, times in timings.items()}


def set_policy(precision: str, measure: Callable[[], Timings] = measure_layer_kinds) -> Precision:
    """Sets the global Keras dtype policy and returns the resolved `Precision` (its `apply`
    assigns per-layer policies to a model built afterwards).

    Args:
      precision: one of PRECISIONS.
      measure: the per-kind timing ("auto" on a bfloat16 CPU); injectable for tests.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    resolved = Precision(precision)
    if precision == "auto":
        policy, reason = auto_precision()
        resolved = Precision(policy)
        on_cpu = not tf.config.list_physical_devices("GPU") and not tf.config.list_logical_devices(
            "TPU"
        )
        if policy == BFLOAT16 and on_cpu:
            timings = measure()
            per_kind = choose_per_kind(timings)
            resolved = Precision(policy, per_kind, timings)
            reason += "; measured ms float32/bfloat16: " + ", ".join(
                f"{kind} {1e3 * t[FLOAT32]:.1f}/{1e3 * t[BFLOAT16]:.1f} → {per_kind[kind]}"
                for kind, t in timings.items()
            )
        logging.info("precision auto → %s (%s)", resolved.name, reason)
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
