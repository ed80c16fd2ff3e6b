"""Turns a Config into a trained run: the wiring behind `python -m official.train`.

`run` goes through named phases, one function each:
  runtime        distribution strategy, precision policy, seed, op determinism
  source         the data source and what it knows (classes, counts)
  initial        the weights the run starts from (transfer learning) and the input
                 normalization that belongs to them
  resolve        `config.resolve`: defaults filled in, derived values
  data           the training and evaluation pipelines, class weights
  trainer        in the strategy's scope: the model, its moving average and the distillation
                 teacher (model), optimizers and learning-rate schedules (optimization),
                 the compiled steps (official/training/loop.py)
  checkpoints    what a checkpoint holds (runs.Checkpointer); then, holding the run's lock:
                 resume (which refuses a checkpoint this configuration does not fit), save
                 config.json and labels.txt, or start a new run from the initial weights
  loop           `loop.fit`, then metrics.json and the closing summary

This is the only module that reads a training Config; everything it calls takes plain
arguments.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import time
from collections.abc import Callable

import keras
import tensorflow as tf
from absl import logging

from official import config as config_lib
from official import runs, weights_lib
from official.data import augment, balance, catalog, mixing, pipeline, preprocess, sources
from official.models import (
    batch_norm,
    depthwise_gradient,
    heads,
    input_normalization,
    pointwise,
    registry,
    residual_relu,
    swish_gradient,
)
from official.serving import saved_model
from official.training import (
    ema,
    loop,
    optimizers,
    precision,
    pruning,
    schedules,
    summaries,
    transfer,
)
from official.training import strategy as strategy_lib


def run(config: config_lib.Config, model_dir: str) -> dict:
    """Trains and evaluates one model; returns the final metrics (also in metrics.json).

    Args:
      config: the parsed (unresolved) configuration.
      model_dir: where checkpoints, TensorBoard events, config.json and metrics.json go.

    Returns:
      {"top1", "top5", "loss", "epochs", "wall_seconds", ...}.

    Raises:
      UserError: a configuration, data or model that cannot work; loop.PreemptedError after
        SIGTERM (a checkpoint was written first); loop.DivergedError when the loss diverged
        (the last good checkpoint is kept).
    """
    start = time.monotonic()
    config_lib.validate(config)
    spec = registry.get(config.model.name)
    strategy, policy = _runtime(config.runtime)
    source = _source(config)
    resuming = runs.latest_checkpoint(model_dir) is not None
    if resuming and policy.tune:
        policy = _resumed_precision(policy, model_dir, strategy)
    initial = _initial_weights(config, spec, model_dir, resuming)
    config, derived = _resolve(config, spec, source.info, strategy, initial)
    logging.info(
        "model %s, %d classes, %d px; precision %s; %d replicas; %d steps/epoch",
        spec.name,
        derived.num_classes,
        config.data.image_size,
        policy.name,
        strategy.num_replicas_in_sync,
        derived.steps_per_epoch,
    )
    make_dataset, class_weights = _data(config, source, model_dir)
    trainer, plateau, policy = _trainer(
        config, derived, strategy, policy, make_dataset, class_weights
    )
    derived = dataclasses.replace(derived, precision=policy.name)
    checkpointer = _checkpointer(config, model_dir, strategy, trainer, plateau)
    chief = strategy_lib.is_chief(strategy)
    # Nothing in the run directory changes before every check has passed (a resumed run's
    # checkpoint must fit this configuration); one process writes it at a time.
    with runs.RunLock(model_dir) if chief else contextlib.nullcontext():
        resumed = _restore(checkpointer)
        if chief:
            runs.save_config(model_dir, config, derived)
            runs.save_labels(model_dir, source.info.class_names)
        writer = summaries.Summaries(model_dir, enabled=chief)
        if not resumed:
            _initialize(config, trainer, initial, writer, make_dataset)
        with sources.reading(source):
            result = _fit(config, derived, trainer, make_dataset, checkpointer, writer, plateau)
        writer.close()
        seconds = time.monotonic() - start
        return _finish(model_dir, strategy, trainer, derived, result, source, seconds)


# ------------------------------------------------------------------------------- phases


def _runtime(
    runtime: config_lib.RuntimeConfig,
) -> tuple[tf.distribute.Strategy, precision.Precision]:
    """The distribution strategy and the precision policy (set globally); seeds."""
    strategy = strategy_lib.create_strategy(
        runtime.distribution_strategy,
        num_gpus=runtime.num_gpus,
        num_cpu_devices=runtime.num_cpu_devices,
        tpu=runtime.tpu,
    )
    policy = precision.set_policy(runtime.precision)
    if runtime.deterministic and policy.tune:
        keras.mixed_precision.set_global_policy("float32")
        raise config_lib.ConfigError(
            "--config.runtime.precision=auto: on this CPU it times float32 against bfloat16 "
            "and the faster can differ between runs, so --config.runtime.deterministic "
            "cannot hold; choose float32 or mixed_bfloat16"
        )
    if runtime.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(runtime.seed)
    return strategy, policy


def _source(config: config_lib.Config) -> sources.Source:
    """The data source. One class is refused (top-1 would be 1.0 whatever the model learns);
    a copy shorter than the catalog says, and classes without validation images, are
    reported."""
    source = runs.open_source(config)
    info = source.info
    if info.num_classes < 2:
        raise sources.DataError(
            f"--config.data.source={config.data.source}: {info.num_classes} class "
            f"({', '.join(info.class_names)}); a classifier needs at least 2"
        )
    for problem in catalog.count_mismatches(info.name, info.num_classes, info.num_examples):
        logging.warning("%s (incomplete copy?)", problem)
    validation = info.class_counts.get(sources.VALIDATION)
    if validation is not None:
        unseen = [name for name, count in zip(info.class_names, validation) if count == 0]
        if unseen:
            logging.warning(
                "%d classes have no validation images (their accuracy is not measured): %s",
                len(unseen),
                ", ".join(unseen[:20]) + (", ..." if len(unseen) > 20 else ""),
            )
    return source


def _initial_weights(
    config: config_lib.Config, spec: registry.ModelSpec, model_dir: str, resuming: bool
) -> weights_lib.Weights:
    """The weights a run starts from, built and loaded (read only when a run starts; a
    resumed run keeps the normalization its config.json recorded)."""
    model_config = config.model
    path = model_config.init_weights
    if not path:
        return weights_lib.Weights()
    if resuming:  # The run recorded the normalization its initial weights brought.
        if not runs.is_run(model_dir):
            return weights_lib.Weights()
        saved, _ = runs.load_config(model_dir)
        arithmetic = {
            field: getattr(saved.model, field)
            for field in ("padding", "norm_epsilon", "filter_prune_fractions")
        }
        return weights_lib.Weights(
            normalization=(saved.data.mean, saved.data.std),
            arithmetic={k: v for k, v in arithmetic.items() if v},
        )
    initial = weights_lib.load(
        path,
        spec,
        runs.model_overrides(model_config, spec),
        file_format=model_config.init_weights_format,
        layout=model_config.init_weights_layout,
        keras_application=model_config.init_keras_application,
    )
    inherited = initial.arithmetic.get("filter_prune_fractions")
    given = model_config.filter_prune_fractions
    if inherited and given and tuple(given) != tuple(inherited):
        raise config_lib.ConfigError(
            f"--config.model.filter_prune_fractions={','.join(map(str, given))}: the initial "
            f"weights {path} were pruned with {','.join(map(str, inherited))}; leave the flag out"
        )
    if model_config.init_weights_mapping == "vgg_net_a":
        if initial.kind != "run" or initial.model is None:
            raise config_lib.ConfigError(
                f"--config.model.init_weights={path}: init_weights_mapping=vgg_net_a needs a "
                "run of configuration A (vgg11) or a checkpoint inside one; convert other "
                "weights first (python -m official.models --convert=FILE --model=vgg11 --out=DIR)"
            )
        try:
            transfer.check_vgg_net_a(initial.model)
        except ValueError as e:
            raise config_lib.ConfigError(f"--config.model.init_weights={path}: {e}") from e
    return initial


def _resolve(config, spec, info, strategy, initial):
    """`config.resolve` for this data and these devices."""
    config, derived = config_lib.resolve(
        config,
        spec=spec,
        num_classes=info.num_classes,
        num_train_examples=info.num_examples[sources.TRAIN],
        num_eval_examples=info.num_examples[sources.VALIDATION],
        dataset_name=info.name,
        num_replicas=strategy.num_replicas_in_sync,
        weights_normalization=initial.normalization,
        weights_arithmetic=initial.arithmetic,
    )
    logging.info("resolved config:\n%s", runs.config_json(config, derived))
    return config, derived


def _data(config: config_lib.Config, source: sources.Source, model_dir: str):
    """The input pipelines, and the loss's class weights.

    Returns:
      (make_dataset(split, is_training, global_batch) → a dataset function of an
      InputContext, class weights or None).
    """
    data = config.data
    training, weights = _training_input(config, source, model_dir)
    geometry = runs.geometry(config)

    def make_dataset(split: str, is_training: bool, global_batch: int) -> Callable:
        def dataset_fn(input_context: tf.distribute.InputContext):
            return pipeline.build_dataset(
                source,
                split=split,
                batch_size=input_context.get_per_replica_batch_size(global_batch),
                geometry=geometry,
                training=training if is_training else None,
                cache=data.cache,
                seed=config.runtime.seed,
                deterministic=data.deterministic,
                input_context=input_context,
            )

        return dataset_fn

    return make_dataset, weights


def _training_input(config: config_lib.Config, source: sources.Source, model_dir: str):
    """What the training pipeline does beyond evaluation's (pipeline.Training), and the class
    weights of the loss.

    Reads the training split's class counts once when they are needed (class weights,
    re-sampling, rare-class augmentation) or known for free, and logs them.
    """
    data, info = config.data, source.info
    counts, weights, rare, rates = None, None, None, None
    if data.class_weights or data.resample or data.rare_class_fraction or info.class_counts:
        counts = balance.class_counts(source, sources.TRAIN)
        logging.info("training examples per class: %s", balance.report(counts, info.class_names))
    else:
        logging.info("training examples per class: not known without reading the data")
    if data.class_weights:
        weights = balance.class_weights(counts, data.class_weights, data.class_weight_beta)
    if data.rare_class_fraction:
        rare = balance.rare_classes(counts, data.rare_class_fraction)
        logging.info("augmenting only %d rare classes: %s", len(rare), rare[:20])
    if data.resample:
        rates = balance.resampling_rates(
            counts, exponent=data.resample_exponent, mode=data.resample
        )
    mixer = mixing.Mixer(
        num_classes=config.model.num_classes,
        mixup_alpha=data.mixup_alpha,
        cutmix_alpha=data.cutmix_alpha,
        ricap_beta=data.ricap_beta,
        probability=data.mix_probability,
        switch_probability=data.mix_switch_probability,
    )
    # TrainPreprocessing's fields and the augmentations' parameters are the --config.data.*
    # fields of the same names.
    preprocessing = {f.name for f in dataclasses.fields(preprocess.TrainPreprocessing)}
    training = pipeline.Training(
        preprocessing=preprocess.TrainPreprocessing(
            **{name: getattr(data, name) for name in preprocessing}
        ),
        shuffle_buffer=data.shuffle_buffer,
        augmenter=augment.build(
            data.augment,
            {name: getattr(data, name) for name in augment.parameter_names()},
            seed=config.runtime.seed,
        ),
        rare_classes=rare,
        mixer=mixer if mixer else None,
        resampling_rates=rates,
        tf_data_service=data.tf_data_service,
        # Every trainer of one run (same model_dir) shares one tf.data service job.
        service_job_name="cnn-repro-"
        + hashlib.sha1(os.path.abspath(model_dir).encode()).hexdigest()[:12],
        skip_undecodable=data.bad_records == "skip",
    )
    return training, weights


def _trainer(config, derived, strategy, policy: precision.Precision, make_dataset, class_weights):
    """The model, its optimizers and the compiled steps, built in the strategy's scope; the
    plateau schedule's state (or None); the precision as resolved on the model."""
    train = config.train
    with strategy.scope():
        model, average, policy = _model(config, strategy, policy)
        stages, plateau = _optimization(config, derived, model)
        backbone = loop.Backbone(
            head_layers=transfer.head_layer_names(model),
            lr_multiplier=train.backbone_lr_multiplier,
            freeze_steps=derived.freeze_backbone_steps,
            freeze_batch_norm=train.freeze_batch_norm,
            freeze_stages=train.freeze_stages,
        )
        trainer = loop.Trainer(
            strategy=strategy,
            model=model,
            inputs=loop.DistributedInput(
                strategy, make_dataset(sources.TRAIN, True, train.batch_size)
            ),
            stages=stages,
            global_batch_size=train.batch_size,
            objective=_objective(config, class_weights),
            gradients=loop.Gradients(
                weight_decay=train.weight_decay,
                no_bias_decay=train.no_bias_decay,
                clip_gradient_norm=train.clip_gradient_norm,
                accumulation_steps=train.gradient_accumulation_steps,
                loss_scale=(
                    precision.DynamicLossScale() if policy.policy == "mixed_float16" else None
                ),
            ),
            backbone=backbone,
            ema=average,
            pruner=_pruner(config, derived, strategy, model, average, backbone),
            measure_input_wait=not config.runtime.deterministic,
        )
    return trainer, plateau, policy


def _pruner(config, derived, strategy, model, average, backbone) -> pruning.Pruner | None:
    """Magnitude pruning of the model and its EMA copy (in scope) outside the layers frozen for
    the whole run, or None without it."""
    prune = config.prune
    if prune.target_sparsity <= 0:
        return None
    schedule = pruning.Schedule(
        target_sparsity=prune.target_sparsity,
        initial_sparsity=prune.initial_sparsity,
        begin_step=derived.prune_begin_step,
        end_step=derived.prune_end_step,
        frequency=prune.frequency_steps,
    )
    try:
        return pruning.Pruner(
            model,
            schedule=schedule,
            kinds=prune.layers,
            strategy=strategy,
            shadows=(average.average_model,) if average is not None else (),
            frozen=loop.frozen_layers(model, backbone),
        )
    except ValueError as e:
        raise config_lib.ConfigError(f"--config.prune.layers={','.join(prune.layers)}: {e}") from e


def use_training_kernels(model: keras.Model, runtime: config_lib.RuntimeConfig) -> None:
    """Puts `model` on the kernels training runs: with `runtime.fused_batch_norm`, BN on
    TensorFlow's fused kernel, with `runtime.fused_input_normalization` the input normalization
    in one XLA pass, with `runtime.matmul_pointwise_gradient` bfloat16 1x1 convolutions with a
    MatMul kernel gradient, with `runtime.integer_residual_relu` bfloat16 ReLUs after additions
    as an integer select, with `runtime.short_swish_gradient` swish layers with the one-pass
    (XLA-compiled) gradient, with `runtime.strip_depthwise_gradient` float32 depthwise
    convolutions wider than 3 columns with a kernel gradient in strips on CPUs where that pays
    (AVX-512; same variables). The benchmark (official/benchmark.py) puts its sides on them
    here too, each ablation side with one switch off."""
    if runtime.fused_batch_norm:
        batch_norm.use_fused_kernel(model)
    if runtime.fused_input_normalization:
        input_normalization.use_fused_kernel(model)
    if runtime.matmul_pointwise_gradient:
        pointwise.use_matmul_gradient(model)
    if runtime.integer_residual_relu:
        residual_relu.use_integer_select(model)
    if runtime.short_swish_gradient:
        swish_gradient.use_short_gradient(model)
    if runtime.strip_depthwise_gradient:
        if depthwise_gradient.pays_off(precision.cpu_flags()):
            depthwise_gradient.use_strip_gradient(model)
        elif depthwise_gradient.wide_layers(model):
            logging.info(
                "depthwise kernel gradients: oneDNN's whole kernels, not strips (no AVX-512: "
                "its wide kernels are the faster here)"
            )


def _hot_path(
    model: keras.Model, config: config_lib.Config, policy: precision.Precision, replicas: int
) -> precision.Precision:
    """Puts `model` on the training kernels (use_training_kernels), then on the per-layer
    dtypes of `runtime.precision` ("auto" on a bfloat16 CPU times this model, with those
    kernels, at the per-replica batch). Returns the resolved precision."""
    use_training_kernels(model, config.runtime)
    train = config.train
    micro_batch = train.batch_size // replicas // max(1, train.gradient_accumulation_steps)
    policy = policy.tuned(model, batch_size=micro_batch)
    policy.apply(model)
    return policy


def _model(
    config: config_lib.Config, strategy: tf.distribute.Strategy, policy: precision.Precision
):
    """The model and, with `train.ema_decay`, the moving average of its weights (in scope),
    each on the training kernels and per-layer dtypes of `_hot_path`; the resolved precision."""
    model = runs.build_model(config)
    replicas = strategy.num_replicas_in_sync
    policy = _hot_path(model, config, policy, replicas)
    if config.train.ema_decay <= 0:
        return model, None, policy
    average_model = runs.build_model(config)
    _hot_path(average_model, config, policy, replicas)  # The choice made on `model`.
    average = ema.ExponentialMovingAverage(
        model, average_model, decay=config.train.ema_decay, strategy=strategy
    )
    return model, average, policy


def _resumed_precision(
    policy: precision.Precision, model_dir: str, strategy: tf.distribute.Strategy
) -> precision.Precision:
    """A resumed "auto" run computes in the choice its config.json recorded. With several
    workers it times again: each would read its own run directory, and a worker that skipped
    the timing while another ran it would wait in its all-reduce forever."""
    _, workers = strategy_lib.worker_index_and_count(strategy)
    recorded = ""
    if workers == 1:
        try:
            _, derived = runs.load_config(model_dir)
            recorded = derived.precision if derived is not None else ""
        except config_lib.ConfigError:
            pass
    resumed = policy.resumed(recorded)
    if resumed is policy:
        logging.warning(
            "precision auto: %s; timing again (the steps after the resume may differ in "
            "rounding from an uninterrupted run)",
            "several workers" if workers > 1 else "the run recorded no choice",
        )
    return resumed


def _objective(config: config_lib.Config, class_weights) -> loop.Objective:
    train = config.train
    return loop.Objective(
        num_classes=config.model.num_classes,
        label_smoothing=train.label_smoothing,
        label_smoothing_formula=train.label_smoothing_formula,
        class_weights=class_weights,
        aux_loss_weight=config.model.aux_loss_weight,
        teacher=build_teacher(config) if train.distill_checkpoint else None,
        distill_temperature=train.distill_temperature,
        distill_weight=train.distill_weight,
    )


def _check_classes(model, num_classes: int, what: str) -> None:
    outputs = heads.main_output_model(model).output.shape[-1]
    if outputs != num_classes:
        raise config_lib.ConfigError(f"{what}: {outputs} classes, the data has {num_classes}")


def build_teacher(config: config_lib.Config) -> Callable:
    """The distillation teacher as a function images → logits (call in the strategy scope).

    `train.distill_checkpoint` is a SavedModel directory (its `serve` endpoint, or its
    serving_default signature, must take float 0..255 images and return logits), a run
    directory or checkpoint of this package (rebuilt from the run's config.json, EMA weights
    if any), or a checkpoint of the registry model `train.distill_teacher`.
    """
    path = config.train.distill_checkpoint
    flag = f"--config.train.distill_checkpoint={path}"
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        loaded = saved_model.load(path, "--config.train.distill_checkpoint")
        function = getattr(loaded, "serve", None) or loaded.signatures["serving_default"]

        def saved_model_teacher(images):
            outputs = function(images)
            if isinstance(outputs, dict):
                outputs = outputs.get(heads.LOGITS, next(iter(outputs.values())))
            return outputs

        saved_model_teacher.loaded = loaded  # Keeps the SavedModel's variables alive.
        return saved_model_teacher
    run_dir, checkpoint = runs.locate(path)
    name = config.train.distill_teacher
    if run_dir is not None:
        teacher, teacher_config, _, _ = runs.load_trained_model(run_dir, checkpoint=checkpoint)
        if name and name != teacher_config.model.name:
            raise config_lib.ConfigError(
                f"--config.train.distill_teacher={name}: {path} is a {teacher_config.model.name}"
            )
    else:
        if not name:
            raise config_lib.ConfigError(
                f"{flag}: not a run directory or SavedModel; name its architecture with "
                "--config.train.distill_teacher"
            )
        teacher = heads.main_output_model(
            registry.get(name).build(
                num_classes=config.model.num_classes, image_size=config.data.image_size
            )
        )
        try:
            runs.restore_weights(teacher, path, ema=True)
        except ValueError as e:
            raise config_lib.ConfigError(f"{flag}: {e}") from e
    _check_classes(teacher, config.model.num_classes, flag)
    teacher.trainable = False
    return lambda images: teacher(images, training=False)


def _optimization(config: config_lib.Config, derived: config_lib.Derived, model):
    """One loop.Stage per optimizer (a second one with `train.second_stage_epochs`), and the
    reduce-on-plateau state of the "plateau" schedule (else None)."""
    train = config.train
    plateau = None
    if train.lr_schedule == "plateau":
        plateau = schedules.ReduceOnPlateau(
            factor=train.lr_decay_rate,
            patience=train.plateau_patience,
            min_delta=train.plateau_min_delta,
            min_scale=train.min_learning_rate / derived.learning_rate,
        )
    common = dict(
        decay=train.lr_schedule,
        decay_rate=train.lr_decay_rate,
        decay_steps=max(derived.lr_decay_interval_steps, 1e-9),
        staircase=train.lr_staircase,
        power=train.lr_power,
        end_learning_rate=train.min_learning_rate,
    )
    end = derived.second_stage_step or derived.total_steps
    # (optimizer, epsilon, schedule, first step, base rate per 256 images).
    stages = [
        (
            train.optimizer,
            train.epsilon,
            schedules.WarmupSchedule(
                derived.learning_rate,
                end,
                derived.warmup_steps,
                boundaries=derived.lr_decay_steps,
                **common,
            ),
            0,
            train.base_learning_rate,
        )
    ]
    if derived.second_stage_step:  # Its own schedule of the same kind, without warmup.
        start = derived.second_stage_step
        second = schedules.WarmupSchedule(
            derived.second_stage_learning_rate,
            derived.total_steps - start,
            0,
            boundaries=[b - start for b in derived.lr_decay_steps if b > start],
            **common,
        )
        stages.append(
            (
                train.second_stage_optimizer,
                derived.second_stage_epsilon,
                second,
                start,
                train.second_stage_base_learning_rate,
            )
        )
    variables = list(model.trainable_variables)
    return [
        loop.Stage(
            optimizer=_optimizer(name, epsilon, base_learning_rate, train, variables),
            learning_rate=_learning_rate(schedule, start, plateau),
            decay_rule=optimizers.DECAY_RULES[name],
            start_step=start,
        )
        for name, epsilon, schedule, start, base_learning_rate in stages
    ], plateau


def _learning_rate(schedule, offset: int, plateau) -> Callable:
    """Global step → rate: the stage's schedule from its first step, times the plateau's
    reductions."""

    def rate(step):
        value = schedule(tf.cast(step, tf.int64) - offset)
        return value * plateau.scale if plateau is not None else value

    return rate


def _optimizer(
    name: str, epsilon: float, base_learning_rate: float, train: config_lib.TrainConfig, variables
):
    optimizer = optimizers.create_optimizer(
        name,
        momentum=train.momentum,
        nesterov=train.nesterov,
        rho=train.rmsprop_decay,
        beta_1=train.beta_1,
        beta_2=train.beta_2,
        epsilon=epsilon,
        trust_coefficient=train.lars_trust_coefficient,
        adagrad_initial_accumulator=train.adagrad_initial_accumulator,
        adadelta_rho=train.adadelta_decay,
        final_learning_rate=train.final_learning_rate,
        base_learning_rate=base_learning_rate,
        bound_gamma=train.bound_gamma,
        weight_decay=train.weight_decay,
        no_bias_decay=train.no_bias_decay,
    )
    optimizer.build(variables)  # Slots exist before a restore, so it is exact.
    return optimizer


def _checkpointer(config, model_dir, strategy, trainer: loop.Trainer, plateau):
    """What a checkpoint holds: every piece of state a resumed run needs to continue exactly."""
    runtime, model = config.runtime, trainer.model
    weight_ids = {id(w) for w in model.weights}
    # Random-number generator states (dropout, stochastic depth): variables that are not weights.
    rng_states = [v.value for v in model.variables if id(v) not in weight_ids]
    _, num_workers = strategy_lib.worker_index_and_count(strategy)
    # Each worker reads its own shard, but only the chief writes checkpoints, so with several
    # workers the input position cannot be saved.
    save_input = runtime.checkpoint_input and trainer.inputs.checkpointable and num_workers == 1
    if runtime.checkpoint_input and not save_input:
        logging.info(
            "the input position is not saved (TPU or several workers): a resumed run "
            "restarts its input pipeline"
        )
    stages = trainer.stages
    return runs.Checkpointer(
        model_dir,
        is_chief=strategy_lib.is_chief(strategy),
        keep=runtime.keep_checkpoints,
        model=model,
        ema=trainer.ema.average_model if trainer.ema is not None else None,
        optimizer=stages[0].optimizer,
        second_stage_optimizer=stages[1].optimizer if len(stages) > 1 else None,
        step=trainer.step,
        best_top1=trainer.best_top1,
        loss_scale=trainer.gradients.loss_scale,
        plateau=plateau,
        pruning=trainer.pruner.masks if trainer.pruner is not None else None,
        rng=rng_states or None,
        iterator=trainer.inputs.iterator if save_input else None,
    )


def _restore(checkpointer) -> bool:
    """Resumes from the latest checkpoint, if there is one.

    Raises:
      ConfigError: the checkpoint does not fit this configuration (nothing was changed).
    """
    try:
        return checkpointer.restore_latest() is not None
    except ValueError as e:
        raise config_lib.ConfigError(f"--model_dir={checkpointer.model_dir}: {e}") from e


def _initialize(config, trainer, initial: weights_lib.Weights, writer, make_dataset) -> None:
    """A new run starts from its initial weights; TensorBoard gets the model graph and a grid
    of augmented training images."""
    path, model = config.model.init_weights, trainer.model
    flag = f"--config.model.init_weights={path}"
    if path and initial.model is None:
        try:
            runs.restore_weights(model, path, ema=True)
        except ValueError as e:
            raise config_lib.ConfigError(f"{flag}: {e}") from e
        logging.info("initialized every weight from %s", path)
    elif path:
        copy = (
            transfer.copy_from_vgg_net_a
            if config.model.init_weights_mapping == "vgg_net_a"
            else transfer.copy_matching_weights
        )
        try:
            copied, skipped = copy(initial.model, model)
        except ValueError as e:
            raise config_lib.ConfigError(f"{flag}: {e}") from e
        logging.info(
            "initialized %d layers from %s; %d keep their initialization: %s",
            len(copied),
            path,
            len(skipped),
            ", ".join(skipped) or "none",
        )
    if trainer.ema is not None:
        trainer.ema.reset()
    size, count = config.data.image_size, config.runtime.summary_images
    forward = tf.function(lambda images: model(images, training=False))
    writer.graph(forward.get_concrete_function(tf.TensorSpec([None, size, size, 3], tf.float32)))
    if count > 0:
        dataset = make_dataset(sources.TRAIN, True, count)(tf.distribute.InputContext())
        images, _ = next(iter(dataset))
        writer.images("train", 0, "augmented_images", images.numpy(), count)


def _fit(config, derived, trainer, make_dataset, checkpointer, writer, plateau) -> dict:
    """The training loop with its evaluations; returns the last evaluation's metrics."""
    runtime = config.runtime
    eval_batches = -(-derived.num_eval_examples // derived.eval_batch_size)

    def evaluate():
        eval_dataset = trainer.strategy.distribute_datasets_from_function(
            make_dataset(sources.VALIDATION, False, derived.eval_batch_size)
        )
        return trainer.evaluate(eval_dataset, eval_batches)

    return loop.fit(
        trainer,
        schedule=loop.Schedule(
            total_steps=derived.total_steps,
            steps_per_epoch=derived.steps_per_epoch,
            log_every_steps=runtime.log_every_steps,
            checkpoint_every_steps=runtime.checkpoint_every_steps,
            eval_every_epochs=runtime.eval_every_epochs,
            profile_steps=tuple(runtime.profile_steps),
        ),
        evaluate=evaluate,
        checkpointer=checkpointer,
        summaries=writer,
        plateau=plateau,
    )


def _finish(model_dir, strategy, trainer, derived, result: dict, source, seconds: float) -> dict:
    """metrics.json, and the lines that tell the user where everything is (and what the data
    source left out: unreadable files, damaged records)."""
    fingerprint = loop.weights_fingerprint(trainer.model)
    logging.info("final weights fingerprint %s (step %d)", fingerprint, trainer.current_step)
    metrics = {
        "top1": result["top1"],
        "top5": result["top5"],
        "loss": result["loss"],
        "epochs": trainer.current_step / derived.steps_per_epoch,
        "steps": trainer.current_step,
        "eval_examples": result["examples"],
        "ema": trainer.ema is not None,
        "best_top1": float(trainer.best_top1.numpy()),
        "weights_fingerprint": fingerprint,
        "wall_seconds": seconds,
        "skipped_examples": len(source.skipped),
        "precision": derived.precision,
    }
    if strategy_lib.is_chief(strategy):
        metrics_path = runs.save_metrics(model_dir, metrics)
        print(
            f"\nvalidation top-1 {metrics['top1']:.4f}  top-5 {metrics['top5']:.4f}  "
            f"loss {metrics['loss']:.4f}  ({metrics['epochs']:.1f} epochs, "
            f"{metrics['wall_seconds']:.0f} s)"
        )
        print(f"model dir:    {os.path.abspath(model_dir)}")
        print(f"checkpoints:  {runs.checkpoint_dir(model_dir)}")
        print(f"tensorboard:  tensorboard --logdir {model_dir}")
        print(f"config:       {os.path.join(model_dir, runs.CONFIG_FILE)}")
        print(f"metrics:      {metrics_path}")
        if source.skipped:
            where, why = source.skipped[0]
            print(f"skipped:      {len(source.skipped)} examples (first: {where}: {why})")
    return metrics
