"""Wires a Config into data, model, optimizer and loop, and runs one training job.

This is the only place below the entry points that reads the config; everything it calls
takes plain keyword arguments.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import time

import keras
import tensorflow as tf
from absl import logging

from official import config as config_lib
from official import registry
from official.data import augment, balance, catalog, mixing, pipeline
from official.training import (
    checkpoints,
    ema,
    loop,
    optimizers,
    precision,
    schedules,
    summaries,
    transfer,
)
from official.training import strategy as strategy_lib

METRICS_FILE = "metrics.json"
LABELS_FILE = "labels.txt"


def model_overrides(model_config: config_lib.ModelConfig, spec: registry.ModelSpec) -> dict:
    """Builder arguments set by `--config.model.*` (unset fields keep the variant's defaults).

    Raises:
      ConfigError: a switch that the model's builder does not have.
    """
    overrides, flags = {}, {}
    if model_config.width_multiplier:
        overrides["width_multiplier"] = model_config.width_multiplier
    if model_config.dropout >= 0:
        overrides["dropout"] = model_config.dropout
    if model_config.zero_gamma:
        overrides["zero_gamma"] = True
    if model_config.activation:
        overrides["activation"] = model_config.activation
    if model_config.normalization:
        overrides["normalization"] = model_config.normalization
    if model_config.aux_loss_weight > 0:
        overrides["aux_head"] = True
        flags["aux_head"] = "aux_loss_weight"
    accepted = inspect.signature(spec.builder).parameters
    for name in overrides:
        if name not in accepted:
            raise config_lib.ConfigError(
                f"--config.model.{flags.get(name, name)}: not a switch of {spec.name} "
                f"({spec.family} family)"
            )
    return overrides


def build_model(config: config_lib.Config, spec: registry.ModelSpec):
    """The model of a resolved config (logits output, normalization from data.mean/std).

    With `model.aux_loss_weight` > 0 the model returns {"logits", "aux_logits"...}, as trained.
    """
    try:
        return spec.build(
            num_classes=config.model.num_classes,
            image_size=config.data.image_size,
            mean=config.data.mean,
            std=config.data.std,
            **model_overrides(config.model, spec),
        )
    except ValueError as e:
        raise config_lib.ConfigError(f"--config.model.name={spec.name}: {e}") from e


def main_output_model(model):
    """The model with only its main logits output (drops auxiliary heads, sharing layers)."""
    if isinstance(model.output, dict):
        return keras.Model(model.inputs, model.output["logits"], name=model.name)
    return model


def load_trained_model(model_dir: str, *, checkpoint: str | None = None, ema: bool = True):
    """Rebuilds a run's model from its config.json and loads trained weights.

    This is how evaluation, export, prediction and class activation maps get a model.

    Args:
      model_dir: a training run's directory.
      checkpoint: a checkpoint path prefix; None for the run's latest
        (`checkpoints.best_checkpoint(model_dir)` gives the best evaluation's).
      ema: load the exponential moving average of the weights when the run kept one
        (`--config.train.ema_decay`), as its evaluations did; False: the raw trained weights.

    Returns:
      (model with one logits output, resolved config, derived values, checkpoint path used).

    Raises:
      ConfigError: no config.json or no checkpoint in model_dir, or a checkpoint that does
        not fit the model.
    """
    config, derived = config_lib.load(model_dir)
    spec = registry.get(config.model.name)
    path = checkpoint or checkpoints.latest_checkpoint(model_dir)
    if path is None:
        raise config_lib.ConfigError(
            f"--model_dir={model_dir}: no checkpoint in {model_dir}/{checkpoints.CHECKPOINT_DIR}"
        )
    model = build_model(config, spec)
    try:
        used_ema = checkpoints.restore_weights(model, path, ema=ema)
    except ValueError as e:
        raise config_lib.ConfigError(str(e)) from e
    logging.info("loaded %s weights from %s", "EMA" if used_ema else "trained", path)
    return main_output_model(model), config, derived, path


def _write_json(path: str, payload: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def _check_classes(model, num_classes: int, what: str) -> None:
    outputs = main_output_model(model).output.shape[-1]
    if outputs != num_classes:
        raise config_lib.ConfigError(f"{what}: {outputs} classes, the data has {num_classes}")


def build_teacher(config: config_lib.Config):
    """The distillation teacher as a function images → logits (call in the strategy scope).

    `train.distill_checkpoint` is a SavedModel directory (its `serve` endpoint, or its
    serving_default signature, must take float 0..255 images and return logits), a run
    directory or checkpoint of this package (rebuilt from the run's config.json, EMA weights
    if any), or a checkpoint of the registry model `train.distill_teacher`.
    """
    path = config.train.distill_checkpoint
    flag = f"--config.train.distill_checkpoint={path}"
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        loaded = tf.saved_model.load(path)
        function = getattr(loaded, "serve", None) or loaded.signatures["serving_default"]

        def saved_model_teacher(images):
            outputs = function(images)
            if isinstance(outputs, dict):
                outputs = outputs.get("logits", next(iter(outputs.values())))
            return outputs

        saved_model_teacher.loaded = loaded  # Keeps the SavedModel's variables alive.
        return saved_model_teacher
    run_dir, checkpoint = transfer.find_run(path)
    if run_dir is not None:
        teacher, teacher_config, _, _ = load_trained_model(run_dir, checkpoint=checkpoint)
        name = config.train.distill_teacher
        if name and name != teacher_config.model.name:
            raise config_lib.ConfigError(
                f"--config.train.distill_teacher={name}: {path} is a {teacher_config.model.name}"
            )
    else:
        if not config.train.distill_teacher:
            raise config_lib.ConfigError(
                f"{flag}: not a run directory or SavedModel; name its architecture with "
                "--config.train.distill_teacher"
            )
        spec = registry.get(config.train.distill_teacher)
        teacher = main_output_model(
            spec.build(num_classes=config.model.num_classes, image_size=config.data.image_size)
        )
        try:
            checkpoints.restore_weights(teacher, path, ema=True)
        except ValueError as e:
            raise config_lib.ConfigError(f"{flag}: {e}") from e
    _check_classes(teacher, config.model.num_classes, flag)
    teacher.trainable = False
    return lambda images: teacher(images, training=False)


def _transfer_source(config: config_lib.Config, spec: registry.ModelSpec):
    """The model whose weights start the run (`model.init_checkpoint`), built and loaded.

    Returns:
      (source model or None, the input normalization (mean, std) the weights need, or None).
    """
    path = config.model.init_checkpoint
    if not path:
        return None, None
    flag = f"--config.model.init_checkpoint={path}"
    if config.model.init_keras_application:
        from official.models import port_keras_applications_weights as port

        try:
            application, top = transfer.keras_application(config.model.init_keras_application, path)
        except ValueError as e:
            raise config_lib.ConfigError(f"{flag}: {e}") from e
        source = spec.build(
            num_classes=application.output.shape[-1] if top else config.model.num_classes,
            image_size=application.input.shape[1] or config.data.image_size,
            include_top=top,
            **{
                k: v
                for k, v in model_overrides(config.model, spec).items()
                if k not in ("aux_head", "dropout")
            },
        )
        try:
            normalization = port(application, source)
        except ValueError as e:
            raise config_lib.ConfigError(f"{flag}: {e}") from e
        return source, (tuple(normalization.mean), tuple(normalization.std))
    run_dir, checkpoint = transfer.find_run(path)
    if run_dir is None:
        return None, None  # A plain checkpoint of this very architecture: restored later.
    source, source_config, _, _ = load_trained_model(run_dir, checkpoint=checkpoint)
    return source, (source_config.data.mean, source_config.data.std)


def _initialize(model, config: config_lib.Config, source) -> None:
    """Copies `source`'s weights (or the plain init checkpoint) into a fresh model."""
    path = config.model.init_checkpoint
    if source is None:
        try:
            checkpoints.restore_weights(model, path, ema=True)
        except ValueError as e:
            raise config_lib.ConfigError(f"--config.model.init_checkpoint={path}: {e}") from e
        logging.info("initialized every weight from %s", path)
        return
    try:
        copied, skipped = transfer.copy_matching_weights(source, model)
    except ValueError as e:
        raise config_lib.ConfigError(f"--config.model.init_checkpoint={path}: {e}") from e
    logging.info(
        "initialized %d layers from %s; %d keep their initialization: %s",
        len(copied),
        path,
        len(skipped),
        ", ".join(skipped) or "none",
    )


def _learning_rates(config, derived, plateau):
    """One loop.Stage learning-rate function per optimizer stage (global step → rate)."""
    train = config.train
    end = derived.second_stage_step or derived.total_steps
    common = dict(
        decay=train.lr_schedule,
        decay_rate=train.lr_decay_rate,
        decay_steps=max(derived.lr_decay_interval_steps, 1e-9),
        staircase=train.lr_staircase,
        power=train.lr_power,
        end_learning_rate=train.min_learning_rate,
    )
    first = schedules.WarmupSchedule(
        derived.learning_rate,
        end,
        derived.warmup_steps,
        boundaries=derived.lr_decay_steps,
        **common,
    )

    def scaled(schedule, offset: int = 0):
        def rate(step):
            value = schedule(tf.cast(step, tf.int64) - offset)
            return value * plateau.scale if plateau is not None else value

        return rate

    rates = [scaled(first)]
    if derived.second_stage_step:
        start = derived.second_stage_step
        second = schedules.WarmupSchedule(
            derived.second_stage_learning_rate,
            derived.total_steps - start,
            0,
            boundaries=[b - start for b in derived.lr_decay_steps if b > start],
            **common,
        )
        rates.append(scaled(second, start))
    return rates


def _create_optimizer(name: str, train: config_lib.TrainConfig, variables):
    optimizer = optimizers.create_optimizer(
        name,
        momentum=train.momentum,
        nesterov=train.nesterov,
        rho=train.rmsprop_decay,
        beta_1=train.beta_1,
        beta_2=train.beta_2,
        epsilon=(
            train.epsilon
            if name == train.optimizer
            else config_lib.DEFAULT_EPSILON.get(name, train.epsilon)
        ),
        trust_coefficient=train.lars_trust_coefficient,
        weight_decay=train.weight_decay,
        no_bias_decay=train.no_bias_decay,
    )
    optimizer.build(variables)  # Slots exist before a restore, so it is exact.
    return optimizer


def input_pipeline_options(config: config_lib.Config, source, model_dir: str):
    """The training data options of a resolved config, and the class weights of the loss.

    Reads the training split's class counts once when they are needed (class weights,
    re-sampling, rare-class augmentation) or known for free, and logs them.

    Returns:
      (keyword arguments of pipeline.build_dataset for the training split, class weights or
      None).
    """
    data = config.data
    info = source.info
    counts = None
    if data.class_weights or data.resample or data.rare_class_fraction or info.class_counts:
        counts = balance.class_counts(source, pipeline.TRAIN)
        logging.info("training examples per class: %s", balance.report(counts, info.class_names))
    else:
        logging.info("training examples per class: not known without reading the data")
    weights = (
        balance.class_weights(counts, data.class_weights, data.class_weight_beta)
        if data.class_weights
        else None
    )
    rare = None
    if data.rare_class_fraction:
        rare = balance.rare_classes(counts, data.rare_class_fraction)
        logging.info("augmenting only %d rare classes: %s", len(rare), rare[:20])
    augmenter = augment.build(
        data.augment,
        augment.Parameters(
            randaugment_num_ops=data.randaugment_num_ops,
            randaugment_magnitude=data.randaugment_magnitude,
            cutout_fraction=data.cutout_fraction,
            erasing_probability=data.erasing_probability,
            rotation_degrees=data.rotation_degrees,
            seed=config.runtime.seed,
        ),
    )
    mixer = mixing.Mixer(
        num_classes=config.model.num_classes,
        mixup_alpha=data.mixup_alpha,
        cutmix_alpha=data.cutmix_alpha,
        probability=data.mix_probability,
        switch_probability=data.mix_switch_probability,
    )
    options = dict(
        preprocessing=pipeline.TrainPreprocessing(
            crop=data.train_crop,
            scale_range=tuple(data.scale_jitter),
            random_flip=data.random_flip,
            color_jitter=data.color_jitter,
            lighting=data.pca_lighting,
        ),
        augmenter=augmenter,
        rare_classes=rare,
        mixer=mixer if mixer else None,
        resampling_rates=(
            balance.resampling_rates(counts, exponent=data.resample_exponent, mode=data.resample)
            if data.resample
            else None
        ),
        shuffle_buffer=data.shuffle_buffer,
        deterministic=data.deterministic or config.runtime.deterministic,
        tf_data_service=data.tf_data_service,
        # Every trainer of one run (same model_dir) shares one tf.data service job.
        service_job_name="cnn-repro-"
        + hashlib.sha1(os.path.abspath(model_dir).encode()).hexdigest()[:12],
    )
    return options, weights


def _write_start_summaries(writer, model, make_dataset, image_size: int, count: int) -> None:
    """The model graph and a grid of augmented training images, at the start of a run."""
    forward = tf.function(lambda images: model(images, training=False))
    writer.graph(
        forward.get_concrete_function(tf.TensorSpec([None, image_size, image_size, 3], tf.float32))
    )
    if count > 0:
        dataset = make_dataset(pipeline.TRAIN, True, count)(tf.distribute.InputContext())
        images, _ = next(iter(dataset))
        writer.images("train", 0, "augmented_images", images.numpy(), count)


def run(config: config_lib.Config, model_dir: str) -> dict:
    """Trains and evaluates one model; returns the final metrics (also in metrics.json).

    Args:
      config: the parsed (unresolved) configuration.
      model_dir: where checkpoints, TensorBoard events, config.json and metrics.json go.

    Returns:
      {"top1", "top5", "loss", "epochs", "wall_seconds", ...}.

    Raises:
      loop.PreemptedError: SIGTERM arrived; a checkpoint was written first.
      FloatingPointError: the loss diverged; the last good checkpoint is kept.
    """
    start = time.monotonic()
    config_lib.validate(config)
    spec = registry.get(config.model.name)
    runtime, data, train = config.runtime, config.data, config.train
    strategy = strategy_lib.create_strategy(
        runtime.distribution_strategy,
        num_gpus=runtime.num_gpus,
        num_cpu_devices=runtime.num_cpu_devices,
        tpu=runtime.tpu,
    )
    policy = precision.set_policy(runtime.precision)
    if runtime.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(runtime.seed)
    source = pipeline.open_source(
        data.source,
        num_classes=config.model.num_classes,
        synthetic_examples=data.synthetic_examples,
        image_size=data.image_size or spec.default_resolution,
        tfds_data_dir=data.tfds_data_dir,
        tfds_manual_dir=data.tfds_manual_dir,
    )
    info = source.info
    for problem in catalog.count_mismatches(info.name, info.num_classes, info.num_examples):
        logging.warning("%s (incomplete copy?)", problem)
    config, derived = config_lib.resolve(
        config,
        spec=spec,
        num_classes=info.num_classes,
        num_train_examples=info.num_examples[pipeline.TRAIN],
        num_eval_examples=info.num_examples[pipeline.VALIDATION],
        dataset_name=info.name,
    )
    data, train = config.data, config.train
    replicas = strategy.num_replicas_in_sync
    if train.batch_size % (replicas * train.gradient_accumulation_steps):
        raise config_lib.ConfigError(
            f"--config.train.batch_size={train.batch_size}: not divisible by {replicas} replicas "
            f"× {train.gradient_accumulation_steps} gradient accumulation steps"
        )
    if derived.eval_batch_size % replicas:
        raise config_lib.ConfigError(
            f"--config.train.eval_batch_size={derived.eval_batch_size}: not divisible by "
            f"{replicas} replicas"
        )
    chief = strategy_lib.is_chief(strategy)
    resuming = checkpoints.latest_checkpoint(model_dir) is not None
    init_source, normalization = (None, None) if resuming else _transfer_source(config, spec)
    if (
        resuming
        and config.model.init_checkpoint
        and os.path.exists(os.path.join(model_dir, config_lib.CONFIG_FILE))
    ):  # Keep the input scaling the initial weights brought (see below).
        saved, _ = config_lib.load(model_dir)
        normalization = (saved.data.mean, saved.data.std)
    if normalization is not None:  # The initial weights expect their own input scaling.
        data.mean, data.std = tuple(normalization[0]), tuple(normalization[1])
    if chief:
        os.makedirs(model_dir, exist_ok=True)
        config_path = config_lib.save(model_dir, config, derived)
        with open(os.path.join(model_dir, LABELS_FILE), "w", encoding="utf-8") as f:
            f.write("\n".join(info.class_names) + "\n")
    logging.info("resolved config:\n%s", config_lib.to_json(config, derived))
    logging.info(
        "model %s, %d classes, %d px; precision %s; %d replicas; %d steps/epoch",
        spec.name,
        derived.num_classes,
        data.image_size,
        policy,
        replicas,
        derived.steps_per_epoch,
    )

    train_options, class_weights = input_pipeline_options(config, source, model_dir)

    def make_dataset(split: str, is_training: bool, global_batch: int):
        def fn(input_context: tf.distribute.InputContext):
            return pipeline.build_dataset(
                source,
                split=split,
                is_training=is_training,
                batch_size=input_context.get_per_replica_batch_size(global_batch),
                image_size=data.image_size,
                crop_fraction=data.crop_fraction,
                interpolation=data.interpolation,
                cache=data.cache,
                seed=runtime.seed,
                input_context=input_context,
                **(train_options if is_training else {}),
            )

        return fn

    inputs = loop.DistributedInput(strategy, make_dataset(pipeline.TRAIN, True, train.batch_size))
    with strategy.scope():
        model = build_model(config, spec)
        variables = list(model.trainable_variables)
        average_model = build_model(config, spec) if train.ema_decay > 0 else None
        plateau = None
        if train.lr_schedule == "plateau":
            plateau = schedules.ReduceOnPlateau(
                factor=train.lr_decay_rate,
                patience=train.plateau_patience,
                min_delta=train.plateau_min_delta,
                min_scale=train.min_learning_rate / derived.learning_rate,
            )
        rates = _learning_rates(config, derived, plateau)
        names = [train.optimizer] + ([train.second_stage_optimizer] if len(rates) > 1 else [])
        stages = [
            loop.Stage(
                optimizer=_create_optimizer(name, train, variables),
                learning_rate=rate,
                decay_rule=optimizers.DECAY_RULES[name],
                start_step=derived.second_stage_step if index else 0,
            )
            for index, (name, rate) in enumerate(zip(names, rates))
        ]
        loss_scale = precision.DynamicLossScale() if policy == "mixed_float16" else None
        teacher = build_teacher(config) if train.distill_checkpoint else None
        average = None
        if average_model is not None:
            average = ema.ExponentialMovingAverage(
                model, average_model, decay=train.ema_decay, strategy=strategy
            )
        trainer = loop.Trainer(
            strategy=strategy,
            model=model,
            inputs=inputs,
            stages=stages,
            num_classes=derived.num_classes,
            global_batch_size=train.batch_size,
            label_smoothing=train.label_smoothing,
            class_weights=class_weights,
            weight_decay=train.weight_decay,
            no_bias_decay=train.no_bias_decay,
            clip_gradient_norm=train.clip_gradient_norm,
            accumulation_steps=train.gradient_accumulation_steps,
            loss_scale=loss_scale,
            ema=average,
            eval_model=average_model,
            teacher=teacher,
            distill_temperature=train.distill_temperature,
            distill_weight=train.distill_weight,
            aux_loss_weight=config.model.aux_loss_weight,
            head_layers=transfer.head_layer_names(model),
            backbone_lr_multiplier=train.backbone_lr_multiplier,
            freeze_backbone_steps=derived.freeze_backbone_steps,
            measure_input_wait=not runtime.deterministic,
        )
    weight_ids = {id(w) for w in model.weights}
    # Random-number generator states (dropout, stochastic depth): variables that are not weights.
    rng_states = [v.value for v in model.variables if id(v) not in weight_ids]
    _, num_workers = strategy_lib.worker_index_and_count(strategy)
    # Each worker reads its own shard, but only the chief writes checkpoints, so with several
    # workers the input position cannot be saved.
    save_input = runtime.checkpoint_input and inputs.checkpointable and num_workers == 1
    if runtime.checkpoint_input and not save_input:
        logging.info(
            "the input position is not saved (TPU or several workers): a resumed run "
            "restarts its input pipeline"
        )
    checkpointer = checkpoints.Checkpointer(
        model_dir,
        is_chief=chief,
        keep=runtime.keep_checkpoints,
        model=model,
        ema=average_model,
        optimizer=stages[0].optimizer,
        second_stage_optimizer=stages[1].optimizer if len(stages) > 1 else None,
        step=trainer.step,
        best_top1=trainer.best_top1,
        loss_scale=loss_scale,
        plateau=plateau,
        rng=rng_states or None,
        iterator=inputs.iterator if save_input else None,
    )
    try:
        restored = checkpointer.restore_latest()
    except ValueError as e:
        raise config_lib.ConfigError(f"--model_dir={model_dir}: {e}") from e
    writer = summaries.Summaries(model_dir, enabled=chief)
    if not restored:
        if config.model.init_checkpoint:
            _initialize(model, config, init_source)
        if average is not None:
            average.reset()
        _write_start_summaries(writer, model, make_dataset, data.image_size, runtime.summary_images)
    eval_batches = -(-derived.num_eval_examples // derived.eval_batch_size)

    def evaluate():
        eval_dataset = strategy.distribute_datasets_from_function(
            make_dataset(pipeline.VALIDATION, False, derived.eval_batch_size)
        )
        return trainer.evaluate(eval_dataset, eval_batches)

    result = loop.fit(
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
    fingerprint = loop.weights_fingerprint(model)
    logging.info("final weights fingerprint %s (step %d)", fingerprint, trainer.current_step)
    metrics = {
        "top1": result["top1"],
        "top5": result["top5"],
        "loss": result["loss"],
        "epochs": trainer.current_step / derived.steps_per_epoch,
        "steps": trainer.current_step,
        "eval_examples": result["examples"],
        "ema": average is not None,
        "best_top1": float(trainer.best_top1.numpy()),
        "weights_fingerprint": fingerprint,
        "wall_seconds": time.monotonic() - start,
    }
    writer.close()
    if chief:
        _write_json(os.path.join(model_dir, METRICS_FILE), metrics)
        print(
            f"\nvalidation top-1 {metrics['top1']:.4f}  top-5 {metrics['top5']:.4f}  "
            f"loss {metrics['loss']:.4f}  ({metrics['epochs']:.1f} epochs, "
            f"{metrics['wall_seconds']:.0f} s)"
        )
        print(f"model dir:    {os.path.abspath(model_dir)}")
        print(f"checkpoints:  {checkpointer.directory}")
        print(f"tensorboard:  tensorboard --logdir {model_dir}")
        print(f"config:       {config_path}")
        print(f"metrics:      {os.path.join(model_dir, METRICS_FILE)}")
    return metrics
