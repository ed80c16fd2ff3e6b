"""The training loop: one custom loop for every distribution strategy.

Keras 3 `fit` breaks under MultiWorkerMirroredStrategy (keras-team/keras#20585), so training
runs its own steps with `strategy.run`, and the same code serves one device, mirrored replicas,
several workers and TPUs. Several steps run inside one `tf.function` call (a `tf.while_loop`),
so the host only wakes up at logging, checkpoint and evaluation boundaries.

One step:
  replica context   forward/backward (optionally over micro-batches), then ONE all-reduce of the
                    gradients together with the step's statistics; unscale (float16), global
                    norm, clipping and coupled ("l2") weight decay on the reduced gradients,
                    so every replica sees exactly what a single device would.
  cross-replica     if the gradients are finite: each optimizer's `update_step` per variable
                    (decoupled decay first, backbone learning-rate multiplier), the EMA; then the
                    loss scale and the step counter.
Keras' own `apply_gradients` is not used: it clips before its all-reduce (per replica) and
would all-reduce again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import signal
import threading
import time
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow.python.framework import ops as _framework_ops  # the gradient registry

from official.errors import UserError
from official.models import heads
from official.progress import Progress
from official.training import distill, losses, optimizers, transfer
from official.training import strategy as strategy_lib

# Order of the per-step statistics summed over replicas and steps.
_LOSS_SUM, _TOP1, _TOP5, _COUNT = range(4)
_NONFINITE = 4  # Steps whose gradients were not finite (skipped).
_STOP = 5  # > 0 when some worker was asked to stop (SIGTERM).
_NUM_STATS = 6


def _statistics(labels, logits, per_example_loss) -> tf.Tensor:
    """[sum of losses, top-1 hits, top-5 hits, examples] of one batch, in float32.

    Ties count against the prediction: of equal logits the lowest class index is ranked first
    (as numpy's argmax), so a constant output scores chance, not 100% (tf.math.in_top_k would
    count every tied class as a hit). Soft targets (mixup, CutMix) count as their
    largest-weight class.
    """
    logits = tf.cast(logits, tf.float32)
    if labels.shape.rank == 2:
        labels = tf.argmax(labels, axis=-1, output_type=tf.int32)
    labels = tf.cast(labels, tf.int32)
    k = min(5, logits.shape[-1])
    hits = tf.equal(tf.math.top_k(logits, k).indices, labels[:, None])
    top1 = tf.reduce_sum(tf.cast(hits[:, 0], tf.float32))
    topk = tf.reduce_sum(tf.cast(tf.reduce_any(hits, axis=-1), tf.float32))
    count = tf.cast(tf.shape(labels)[0], tf.float32)
    return tf.stack([tf.reduce_sum(per_example_loss), top1, topk, count])


def summarize(totals: np.ndarray) -> dict[str, float]:
    """Turns summed statistics into {"loss", "top1", "top5"}."""
    count = max(float(totals[_COUNT]), 1.0)
    return {
        "loss": float(totals[_LOSS_SUM]) / count,
        "top1": float(totals[_TOP1]) / count,
        "top5": float(totals[_TOP5]) / count,
    }


def weights_fingerprint(model) -> str:
    """SHA-256 of the model's weights (first replica's copy): equal fingerprints, equal weights."""
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return digest.hexdigest()[:16]


class DistributedInput:
    """Feeds `strategy.run` from one tf.data pipeline per worker through a plain iterator.

    tf.distribute's own iterators cannot be saved in a checkpoint (TF 2.21: they are not
    trackable), while a plain tf.data iterator can. So each worker iterates its pipeline (batched
    per replica, as `distribute_datasets_from_function` would) and hands one batch to each local
    replica with `experimental_distribute_values_from_function`. On TPUs, whose input must go
    through the distributed iterator, the position is not saved.

    Args:
      strategy: the distribution strategy.
      dataset_fn: InputContext → dataset of per-replica batches of this worker's shard.
    """

    def __init__(self, strategy: tf.distribute.Strategy, dataset_fn):
        self.strategy = strategy
        self.checkpointable = not isinstance(strategy, tf.distribute.TPUStrategy)
        if not self.checkpointable:
            self.iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
            return
        index, count = strategy_lib.worker_index_and_count(strategy)
        context = tf.distribute.InputContext(
            num_input_pipelines=count,
            input_pipeline_id=index,
            num_replicas_in_sync=strategy.num_replicas_in_sync,
        )
        self.iterator = iter(dataset_fn(context))

    def next(self):
        """The next batch of every replica (call inside a tf.function, cross-replica context)."""
        if not self.checkpointable:
            return next(self.iterator)
        return self.strategy.experimental_distribute_values_from_function(
            lambda _: next(self.iterator)
        )


@dataclasses.dataclass
class Stage:
    """An optimizer and its learning rate from `start_step` on.

    Attributes:
      optimizer: a Keras optimizer built on all trainable variables (see optimizers.py).
      learning_rate: global step → learning rate (a float32 tensor).
      decay_rule: how weight decay is applied, optimizers.DECAY_RULES.
      start_step: first step of this stage.
    """

    optimizer: object
    learning_rate: Callable[[tf.Tensor], tf.Tensor]
    decay_rule: str = "l2"
    start_step: int = 0


@dataclasses.dataclass(frozen=True)
class Objective:
    """What each step minimizes: cross-entropy, the auxiliary heads', distillation.

    Attributes:
      num_classes: classifier outputs.
      label_smoothing: see losses.cross_entropy.
      label_smoothing_formula: see losses.cross_entropy.
      class_weights: per-class weights of the training loss (official/data/balance.py);
        evaluation reports the unweighted loss. None: no weighting.
      aux_loss_weight: weight of each auxiliary head's cross-entropy.
      teacher: images → teacher logits, for distillation; None: no distillation.
      distill_temperature: T of distill.distillation_loss.
      distill_weight: weight of the distillation term.
    """

    num_classes: int
    label_smoothing: float = 0.0
    label_smoothing_formula: str = "all_classes"
    class_weights: Sequence[float] | None = None
    aux_loss_weight: float = 0.0
    teacher: Callable | None = None
    distill_temperature: float = 1.0
    distill_weight: float = 0.0


@dataclasses.dataclass(frozen=True)
class Gradients:
    """How the all-reduced gradients become an update.

    Attributes:
      weight_decay: see optimizers.DECAY_RULES.
      no_bias_decay: exclude biases and normalization parameters from weight decay.
      clip_gradient_norm: clip their global norm; 0: off.
      accumulation_steps: micro-batches per replica batch whose gradients are summed (the
        global batch must divide into replicas × accumulation_steps).
      loss_scale: a precision.DynamicLossScale for float16, else None.
    """

    weight_decay: float = 0.0
    no_bias_decay: bool = True
    clip_gradient_norm: float = 0.0
    accumulation_steps: int = 1
    loss_scale: object | None = None


@dataclasses.dataclass(frozen=True)
class Backbone:
    """Fine-tuning: which layers are the classifier, and how the rest trains.

    Attributes:
      head_layers: names of the classifier layers; every other layer is the backbone.
      lr_multiplier: the backbone's learning rate relative to the head's.
      freeze_steps: steps that train only the head, backbone BN in inference mode.
      freeze_batch_norm: the backbone's BN layers stay in inference mode for the whole run,
        their scale and shift not trained: small fine-tuning batches then neither replace the
        pretrained statistics nor feed the unfrozen network statistics unlike those its head
        was first trained on.
      freeze_stages: the first this many stages (transfer.stages) are frozen for the whole
        run, their BN in inference mode: only the later stages and the head retrain, as when
        fine-tuning the upper layers only (Yosinski et al. arXiv 1411.1792 §2; Keras'
        transfer-learning guide).
    """

    head_layers: Sequence[str] = (heads.CLASSIFIER_LAYER,)
    lr_multiplier: float = 1.0
    freeze_steps: int = 0
    freeze_batch_norm: bool = False
    freeze_stages: int = 0


def frozen_layers(model: keras.Model, backbone: Backbone) -> list[keras.layers.Layer]:
    """The layers `backbone` freezes for the whole run: its first `freeze_stages` stages, and
    with `freeze_batch_norm` every BN layer outside the head.

    Raises:
      UserError: more stages to freeze than the model has.
    """
    network_stages = transfer.stages(model, backbone.head_layers)
    if backbone.freeze_stages > len(network_stages):
        raise UserError(
            f"--config.train.freeze_stages={backbone.freeze_stages}: {model.name} has "
            f"{len(network_stages)} stages before its classifier ({', '.join(network_stages)})"
        )
    head_names = set(backbone.head_layers)
    return [
        layer
        for name in list(network_stages)[: backbone.freeze_stages]
        for layer in network_stages[name]
    ] + [
        layer
        for layer in model.layers
        if backbone.freeze_batch_norm
        and layer.name not in head_names
        and layer.weights
        and isinstance(layer, keras.layers.BatchNormalization)
    ]


class Trainer:
    """Compiled training and evaluation steps of one model under one strategy.

    Build it inside `strategy.scope()` (it creates the step counter there).

    Args:
      strategy: the distribution strategy the model and optimizers were built under.
      model: a Keras model taking 0..255 images, returning logits (or {"logits", "aux_logits"}).
      inputs: a DistributedInput of the training data.
      stages: one Stage, or two for a two-optimizer run.
      global_batch_size: examples per step over all replicas (the loss is averaged over it).
      objective: the loss.
      gradients: weight decay, clipping, accumulation, loss scaling.
      backbone: the classifier layers, and the backbone's rate multiplier and frozen steps.
      ema: an ema.ExponentialMovingAverage, whose average model evaluation then uses; None:
        evaluation uses `model`.
      pruner: a pruning.Pruner whose masks are updated and applied after every step (to the
        model and its EMA copy); None: no pruning.
      measure_input_wait: time each step's wait for its batch (tf.timestamp, which op
        determinism forbids: turn it off then).
    """

    def __init__(
        self,
        *,
        strategy: tf.distribute.Strategy,
        model,
        inputs: DistributedInput | None,
        stages: Sequence[Stage],
        global_batch_size: int,
        objective: Objective,
        gradients: Gradients = Gradients(),
        backbone: Backbone = Backbone(),
        ema=None,
        pruner=None,
        measure_input_wait: bool = True,
    ):
        self.strategy = strategy
        self.model = model
        self.inputs = inputs
        self.stages = list(stages)
        self.global_batch_size = global_batch_size
        self.objective = objective
        self.gradients = gradients
        self.backbone = backbone
        self.ema = ema
        self.pruner = pruner
        self.eval_model = ema.average_model if ema is not None else model
        self.measure_input_wait = measure_input_wait
        self.class_weights = (
            None
            if objective.class_weights is None
            else tf.constant(objective.class_weights, tf.float32)
        )

        head_names = set(backbone.head_layers)
        head_layers = [layer for layer in model.layers if layer.name in head_names]
        self.head_variables = [v for layer in head_layers for v in layer.trainable_weights]
        head_ids = {id(v) for v in self.head_variables}
        self.backbone_layers = [
            layer for layer in model.layers if layer not in head_layers and layer.weights
        ]
        # Layers frozen for the whole run. A non-trainable Keras BN layer runs in inference
        # mode (moving statistics, no updates).
        self.always_frozen = frozen_layers(model, backbone)
        for layer in self.always_frozen:
            layer.trainable = False
        frozen_ids = {id(v) for layer in self.always_frozen for v in layer.weights}
        self.variables = [v for v in model.trainable_variables if id(v) not in frozen_ids]
        self._backbone_ids = {id(v) for v in self.variables if id(v) not in head_ids}
        # Statistics the forward pass updates on each replica (BN moving mean and variance).
        # Keras 3 keeps one copy per replica and lets them drift apart; the loop averages them
        # over replicas after every step, as a single device (or Keras 2's MEAN aggregation)
        # would have them.
        self._replica_statistics = (
            [w for w in model.non_trainable_weights if "float" in str(w.dtype)]
            if strategy.num_replicas_in_sync > 1
            else []
        )
        self._synchronized_batch_norm = any(
            getattr(layer, "synchronized", False)
            for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization)
        )
        if backbone.freeze_steps and not self.head_variables:
            raise ValueError(f"no classifier layer named {list(head_names)} to train alone")
        with strategy.scope():
            self.step = tf.Variable(
                0,
                dtype=tf.int64,
                trainable=False,
                name="step",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
            self.best_top1 = tf.Variable(
                -1.0,
                trainable=False,
                name="best_top1",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
        self._train_functions: dict[tuple[int, bool], Callable] = {}
        self._eval_step = tf.function(self._eval_step_fn)
        self._frozen: bool | None = None

    # ----------------------------------------------------------------------------- training

    @property
    def current_step(self) -> int:
        return int(self.step.numpy())

    def stage_index(self, step: int) -> int:
        return max(i for i, s in enumerate(self.stages) if s.start_step <= step)

    def learning_rate(self, step: int) -> float:
        """The head's learning rate at `step`."""
        return float(self.stages[self.stage_index(step)].learning_rate(step))

    def phase_boundaries(self) -> list[int]:
        """Steps at which the compiled step changes (optimizer stage, backbone unfreezing)."""
        steps = [s.start_step for s in self.stages[1:]]
        if self.backbone.freeze_steps:
            steps.append(self.backbone.freeze_steps)
        return steps

    def _set_backbone_frozen(self, frozen: bool) -> None:
        if self._frozen is frozen:
            return
        for layer in self.backbone_layers:
            layer.trainable = not frozen and layer not in self.always_frozen
        self._frozen = frozen

    def train_steps(self, num_steps: int, stop: bool = False) -> tuple[np.ndarray, float]:
        """Runs `num_steps` steps in one call (all within one stage and freeze phase).

        Args:
          num_steps: steps to run.
          stop: this worker was asked to stop; every worker learns it through the statistics.

        Returns:
          (summed statistics, seconds spent waiting for input).
        """
        step = self.current_step
        key = (self.stage_index(step), step < self.backbone.freeze_steps)
        self._set_backbone_frozen(key[1])
        if key not in self._train_functions:
            self._train_functions[key] = tf.function(
                functools.partial(self._train_chunk, stage_index=key[0], frozen=key[1])
            )
        with _custom_gradients_dropped():
            totals, wait = self._train_functions[key](
                tf.constant(num_steps, tf.int32), tf.constant(float(stop), tf.float32)
            )
        return totals.numpy(), float(wait.numpy())

    def _train_chunk(self, num_steps, stop, *, stage_index: int, frozen: bool):
        stage = self.stages[stage_index]
        variables = self.head_variables if frozen else self.variables
        replica_step = functools.partial(
            self._replica_step, variables=variables, stop=stop, l2=stage.decay_rule == "l2"
        )
        totals = tf.zeros([_NUM_STATS], tf.float32)
        wait = tf.constant(0.0, tf.float64)
        for _ in tf.range(num_steps):
            if self.measure_input_wait:
                start = tf.timestamp()
                with tf.control_dependencies([start]):
                    batch = self.inputs.next()
                with tf.control_dependencies(tf.nest.flatten(batch, expand_composites=True)):
                    wait += tf.timestamp() - start
            else:
                batch = self.inputs.next()
            gradients, statistics, finite, moving = self.strategy.run(replica_step, args=(batch,))
            for variable, value in zip(self._replica_statistics, moving):
                self.strategy.extended.update(
                    variable.value, lambda v, x: v.assign(x), args=(value,), group=False
                )
            # Gradients and statistics are all-reduced: every replica holds the same values.
            finite = self.strategy.experimental_local_results(finite)[0]
            statistics = self.strategy.experimental_local_results(statistics)[0]

            def apply(stage=stage, gradients=gradients, variables=variables):
                self._apply(stage, gradients, variables)
                if self.ema is not None:
                    self.ema.update(self.step)
                return tf.constant(True)

            tf.cond(finite, apply, lambda: tf.constant(False))
            if self.gradients.loss_scale is not None:
                self.gradients.loss_scale.update(finite)
            self.step.assign_add(1)
            if self.pruner is not None:
                # After the optimizer and the EMA, so both hold the masked kernels (Zhu & Gupta
                # arXiv 1710.01878 §3: pruned weights stay zero).
                self.pruner.prune(self.step)
            totals += statistics
        return totals, wait

    def _gradients(self, images, labels, variables):
        spec, loss_scale = self.objective, self.gradients.loss_scale
        with tf.GradientTape() as tape:
            outputs = self.model(tf.cast(images, tf.float32), training=True)
            logits, aux_logits = heads.split_outputs(outputs)
            loss = functools.partial(
                losses.cross_entropy,
                num_classes=spec.num_classes,
                label_smoothing=spec.label_smoothing,
                label_smoothing_formula=spec.label_smoothing_formula,
                class_weights=self.class_weights,
            )
            objective = loss(labels, logits)
            for aux in aux_logits if spec.aux_loss_weight > 0 else ():
                # Each auxiliary classifier weighs aux_loss_weight (GoogLeNet's two: 0.3 each,
                # arXiv 1409.4842 §5).
                objective += spec.aux_loss_weight * loss(labels, aux)
            if spec.teacher is not None and spec.distill_weight > 0:
                teacher_logits = spec.teacher(tf.cast(images, tf.float32))
                objective += spec.distill_weight * distill.distillation_loss(
                    logits, teacher_logits, temperature=spec.distill_temperature
                )
            loss = tf.nn.compute_average_loss(objective, global_batch_size=self.global_batch_size)
            if loss_scale is not None:
                loss = loss * loss_scale.scale
        gradients = tape.gradient(loss, variables)
        gradients = [
            tf.zeros_like(v.value) if g is None else tf.convert_to_tensor(g)
            for g, v in zip(gradients, variables)
        ]
        statistics = tf.pad(_statistics(labels, logits, objective), [[0, _NUM_STATS - 4]])
        return gradients, statistics

    def _replica_step(self, batch, *, variables, stop, l2: bool):
        images, labels = batch
        rule = self.gradients
        count = rule.accumulation_steps
        if count == 1:
            gradients, statistics = self._gradients(images, labels, variables)
        else:
            size = tf.shape(images)[0] // count
            gradients = [tf.zeros(v.shape, v.dtype) for v in variables]
            statistics = tf.zeros([_NUM_STATS], tf.float32)
            # Synchronized BN all-reduces inside the forward pass, which tf.distribute cannot
            # do inside a while loop (merge_call in control flow): unroll the micro-batches
            # then (one traced forward/backward per micro-batch), else loop in the graph.
            micro_batches = range(count) if self._synchronized_batch_norm else tf.range(count)
            for index in micro_batches:
                part = slice(index * size, (index + 1) * size)
                micro_gradients, micro_statistics = self._gradients(
                    images[part], labels[part], variables
                )
                gradients = [a + b for a, b in zip(gradients, micro_gradients)]
                statistics += micro_statistics
        statistics += stop * tf.one_hot(_STOP, _NUM_STATS)
        context = tf.distribute.get_replica_context()
        # One all-reduce for the gradients, the step's statistics and the BN moving statistics.
        moving = [tf.identity(w.value) for w in self._replica_statistics]
        reduced = context.all_reduce(tf.distribute.ReduceOp.SUM, [*gradients, statistics, *moving])
        count = len(gradients)
        gradients, statistics = reduced[:count], reduced[count]
        moving = [m / context.num_replicas_in_sync for m in reduced[count + 1 :]]
        if rule.loss_scale is not None:
            gradients = [g / rule.loss_scale.scale for g in gradients]
        norm = tf.linalg.global_norm(gradients)
        finite = tf.math.is_finite(norm)
        if rule.clip_gradient_norm > 0:
            gradients, _ = tf.clip_by_global_norm(gradients, rule.clip_gradient_norm, use_norm=norm)
        if l2:
            gradients = optimizers.add_weight_decay(
                gradients, variables, rule.weight_decay, rule.no_bias_decay
            )
        statistics += tf.one_hot(_NONFINITE, _NUM_STATS) * (1.0 - tf.cast(finite, tf.float32))
        return gradients, statistics, finite, moving

    def _apply(self, stage: Stage, gradients, variables) -> None:
        learning_rate = tf.cast(stage.learning_rate(self.step), tf.float32)
        rule, multiplier = self.gradients, self.backbone.lr_multiplier
        decoupled = stage.decay_rule == "decoupled" and rule.weight_decay > 0
        for gradient, variable in zip(gradients, variables):
            rate = learning_rate
            if id(variable) in self._backbone_ids and multiplier != 1:
                rate = learning_rate * multiplier
            decay = decoupled and optimizers.is_decayed(variable, rule.no_bias_decay)
            # A weight's constraint (e.g. binary nets' latent clip) after each update, as
            # Keras' own optimizer.apply does.
            constraint = getattr(variable, "constraint", None)

            def update(var, grad, rate, decay=decay, constraint=constraint):
                if decay:
                    var.assign_sub(var * tf.cast(rule.weight_decay * rate, var.dtype))
                stage.optimizer.update_step(grad, var, rate)
                if constraint is not None:
                    var.assign(constraint(var))

            self.strategy.extended.update(
                variable.value, update, args=(gradient, rate), group=False
            )
        stage.optimizer.iterations.assign_add(1)

    # --------------------------------------------------------------------------- evaluation

    def _replica_eval_step(self, images, labels):
        logits, _ = heads.split_outputs(
            self.eval_model(tf.cast(images, tf.float32), training=False)
        )
        per_example = losses.cross_entropy(labels, logits, num_classes=self.objective.num_classes)
        return _statistics(labels, logits, per_example)

    def _eval_step_fn(self, batch):
        per_replica = self.strategy.run(self._replica_eval_step, args=batch)
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def evaluate(
        self, dataset, num_batches: int | None = None, description: str = "eval"
    ) -> dict[str, float]:
        """Evaluates `eval_model` on a distributed dataset that yields every example once."""
        totals = np.zeros(4)
        progress = Progress(num_batches or 1, description, unit="batch")
        with _custom_gradients_dropped():  # the eval step's trace too, else it stays alive
            for index, batch in enumerate(dataset):
                totals += self._eval_step(batch).numpy()
                progress.update(index + 1, **summarize(totals))
        progress.close()
        return {**summarize(totals), "examples": int(totals[_COUNT])}


@contextlib.contextmanager
def _custom_gradients_dropped():
    """Drops the gradient functions that tf.custom_gradient registered while tracing.

    TensorFlow keeps each one in its global gradient registry for the life of the process,
    and each holds the traced graph, whose captures include the input iterator
    (tensorflow/tensorflow#97697): every traced training step would keep its input pipeline
    (shuffle buffer, prefetched batches, threads) and its graph alive until exit, and tearing
    those pipelines down at exit took minutes. A trace has built its gradients by the time it
    returns, so nothing looks these entries up again; a retrace registers fresh ones.
    """
    registry = getattr(getattr(_framework_ops, "_gradient_registry", None), "_registry", None)
    before = set(registry) if isinstance(registry, dict) else None
    try:
        yield
    finally:
        if before is not None:
            for name in set(registry) - before:
                if name.startswith("CustomGradient-"):
                    del registry[name]


@dataclasses.dataclass
class Schedule:
    """When things happen, in optimizer steps."""

    total_steps: int
    steps_per_epoch: int
    log_every_steps: int
    checkpoint_every_steps: int = 0  # 0: at epoch ends only.
    eval_every_epochs: int = 1  # 0: only after the last step.
    profile_steps: tuple[int, ...] = ()  # (first, last) steps to trace; (): none.


class PreemptedError(UserError):
    """Training stopped on SIGTERM after writing a checkpoint; rerunning resumes."""

    exit_status = 128 + signal.SIGTERM  # As a shell reports a process ended by SIGTERM.


class DivergedError(UserError, FloatingPointError):
    """The loss or the gradients became NaN or Inf; nothing was saved."""


@dataclasses.dataclass
class _StopRequest:
    """Set by SIGTERM; read between compiled chunks of steps."""

    event: threading.Event = dataclasses.field(default_factory=threading.Event)

    def __enter__(self):
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, lambda *_: self.event.set())
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _chunk_end(step: int, schedule: Schedule, phase_boundaries: Sequence[int]) -> int:
    """The next step at which the host must act: log, epoch end, checkpoint, phase change,
    profiler start/stop, or the end."""

    def next_multiple(every: int) -> int:
        return (step // every + 1) * every

    ends = [
        schedule.total_steps,
        next_multiple(schedule.log_every_steps),
        next_multiple(schedule.steps_per_epoch),
    ]
    if schedule.checkpoint_every_steps:
        ends.append(next_multiple(schedule.checkpoint_every_steps))
    if schedule.profile_steps:
        ends += [schedule.profile_steps[0] - 1, schedule.profile_steps[1]]
    ends += list(phase_boundaries)
    return min(end for end in ends if end > step)


def fit(
    trainer: Trainer,
    *,
    schedule: Schedule,
    evaluate: Callable[[], dict],
    checkpointer,
    summaries,
    plateau=None,
) -> dict:
    """Trains until `schedule.total_steps`, logging, checkpointing and evaluating on the way.

    Resumes from the trainer's step (restore the checkpoint before calling). Evaluations run
    every `eval_every_epochs` epochs and at the end; each one that improves top-1 replaces the
    best checkpoint and feeds `plateau` (a schedules.ReduceOnPlateau).

    Returns:
      The last evaluation's metrics.

    Raises:
      DivergedError: the loss or the gradients became NaN or Inf (without loss scaling);
        nothing is saved, so the last good checkpoint is the latest one.
      PreemptedError: SIGTERM arrived; a checkpoint of the current step was written first.
    """
    step = trainer.current_step
    progress = Progress(schedule.total_steps, "train", unit="step")
    last_eval: dict = {}
    # One worker acts on SIGTERM at the end of the running chunk; several agree first, through
    # the statistics of the next chunk, so that all of them stop (and save) at the same step.
    single_worker = strategy_lib.worker_index_and_count(trainer.strategy)[1] == 1
    with _StopRequest() as stop:
        try:
            while step < schedule.total_steps:
                end = _chunk_end(step, schedule, trainer.phase_boundaries())
                if schedule.profile_steps and step == schedule.profile_steps[0] - 1:
                    summaries.start_profiler()
                start = time.monotonic()
                totals, wait = trainer.train_steps(end - step, stop.event.is_set())
                seconds = time.monotonic() - start
                first, step = step + 1, trainer.current_step
                _check_finite(totals, first, step, trainer, checkpointer)
                if schedule.profile_steps and step >= schedule.profile_steps[1]:
                    summaries.stop_profiler()
                _log_train(
                    trainer, summaries, progress, step, totals, seconds, wait, end - first + 1
                )
                epoch_end = step % schedule.steps_per_epoch == 0
                epoch = step // schedule.steps_per_epoch
                improved = False
                if step == schedule.total_steps or (
                    epoch_end
                    and schedule.eval_every_epochs
                    and epoch % schedule.eval_every_epochs == 0
                ):
                    last_eval = evaluate()
                    improved = _after_evaluation(
                        trainer, summaries, plateau, step, schedule, last_eval
                    )
                if totals[_STOP] > 0 or (single_worker and stop.event.is_set()):
                    path = checkpointer.save(step)
                    raise PreemptedError(
                        f"stopped by SIGTERM at step {step}; wrote {path}. Run the same command "
                        "again to resume."
                    )
                every = schedule.checkpoint_every_steps
                if epoch_end or step == schedule.total_steps or (every and step % every == 0):
                    checkpointer.save(step)
                if improved:
                    checkpointer.save_best(step, last_eval)
                summaries.flush()
        finally:
            progress.close()
            summaries.stop_profiler()
            summaries.flush()
    if not last_eval:  # Resumed a finished run: evaluate the final weights again.
        last_eval = evaluate()
    return last_eval


def _check_finite(totals, first: int, last: int, trainer: Trainer, checkpointer) -> None:
    loss = summarize(totals)["loss"]
    bad_gradients = totals[_NONFINITE] > 0 and trainer.gradients.loss_scale is None
    if np.isfinite(loss) and not bad_gradients:
        return
    what = f"loss is {loss}" if not np.isfinite(loss) else "gradients are NaN or Inf"
    raise DivergedError(
        f"{what} in steps {first}-{last}; stopped without saving, so the last good checkpoint "
        f"({checkpointer.latest or 'none'}) is kept. Lower --config.train.base_learning_rate, "
        "add warmup (--config.train.warmup_epochs) or clipping "
        "(--config.train.clip_gradient_norm)."
    )


def _log_train(trainer, summaries, progress, step, totals, seconds, wait, num_steps) -> None:
    metrics = summarize(totals)
    images_per_second = totals[_COUNT] / max(seconds, 1e-9)
    values = {
        **metrics,
        "learning_rate": trainer.learning_rate(step),
        "images_per_second": images_per_second,
        "step_time_seconds": seconds / num_steps,
    }
    shown = {
        "loss": metrics["loss"],
        "top1": metrics["top1"],
        "top5": metrics["top5"],
        "lr": values["learning_rate"],
        "img_per_s": round(images_per_second, 1),
        "step_ms": round(1000 * seconds / num_steps, 1),
    }
    if trainer.measure_input_wait:
        values["input_wait_seconds"] = wait / num_steps
        shown["input_wait"] = f"{100 * wait / max(seconds, 1e-9):.0f}%"
    if trainer.gradients.loss_scale is not None:
        values["loss_scale"] = float(trainer.gradients.loss_scale.scale.numpy())
        values["skipped_steps"] = float(totals[_NONFINITE])
        shown["loss_scale"] = values["loss_scale"]
    summaries.scalars("train", step, values)
    if trainer.pruner is not None:
        sparsities = trainer.pruner.sparsities()
        summaries.scalars("train", step, {f"sparsity/{k}": v for k, v in sparsities.items()})
        shown["sparsity"] = round(sparsities["total"], 3)
    progress.update(step, force=True, **shown)


def _after_evaluation(trainer, summaries, plateau, step, schedule, metrics) -> bool:
    """Logs an evaluation, feeds the plateau schedule; returns True for a new best top-1."""
    summaries.scalars("validation", step, {k: metrics[k] for k in ("loss", "top1", "top5")})
    logging.info(
        "step %d (epoch %.2f): validation top-1 %.4f top-5 %.4f loss %.4f",
        step,
        step / schedule.steps_per_epoch,
        metrics["top1"],
        metrics["top5"],
        metrics["loss"],
    )
    if plateau is not None and plateau.update(metrics["top1"]):
        logging.info("validation top-1 stopped improving: learning rate × %g", plateau.factor)
    if metrics["top1"] > float(trainer.best_top1.numpy()):
        trainer.best_top1.assign(metrics["top1"])
        return True
    return False
