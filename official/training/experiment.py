"""Wires a Config into data, model, optimizer and loop, and runs one training job.

This is the only place below the entry points that reads the config; everything it calls
takes plain keyword arguments.
"""

from __future__ import annotations

import inspect
import json
import os
import time

import keras
import tensorflow as tf
from absl import logging

from official import config as config_lib
from official import registry
from official.data import pipeline
from official.training import checkpoints, loop, optimizers, precision, schedules, summaries
from official.training import strategy as strategy_lib

METRICS_FILE = "metrics.json"
LABELS_FILE = "labels.txt"


def model_overrides(model_config: config_lib.ModelConfig, spec: registry.ModelSpec) -> dict:
    """Builder arguments set by `--config.model.*` (unset fields keep the variant's defaults).

    Raises:
      ConfigError: a switch that the model's builder does not have.
    """
    overrides = {}
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
    accepted = inspect.signature(spec.builder).parameters
    for name in overrides:
        if name not in accepted:
            raise config_lib.ConfigError(
                f"--config.model.{name}: not a switch of {spec.name} ({spec.family} family)"
            )
    return overrides


def build_model(config: config_lib.Config, spec: registry.ModelSpec):
    """The model of a resolved config (logits output, normalization from data.mean/std)."""
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


def load_trained_model(model_dir: str, *, checkpoint: str | None = None):
    """Rebuilds a run's model from its config.json and loads trained weights.

    This is how evaluation, export, prediction and class activation maps get a model.

    Args:
      model_dir: a training run's directory.
      checkpoint: a checkpoint path prefix; None for the run's latest.

    Returns:
      (model, resolved config, derived values, checkpoint path used).

    Raises:
      ConfigError: no config.json or no checkpoint in model_dir.
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
        checkpoints.restore_weights(model, path)
    except ValueError as e:
        raise config_lib.ConfigError(str(e)) from e
    return model, config, derived, path


def _write_json(path: str, payload: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def run(config: config_lib.Config, model_dir: str) -> dict:
    """Trains and evaluates one model; returns the final metrics (also in metrics.json).

    Args:
      config: the parsed (unresolved) configuration.
      model_dir: where checkpoints, TensorBoard events, config.json and metrics.json go.

    Returns:
      {"top1", "top5", "loss", "epochs", "wall_seconds", ...}.
    """
    start = time.monotonic()
    config_lib.validate(config)
    spec = registry.get(config.model.name)
    runtime, data, train = config.runtime, config.data, config.train
    strategy = strategy_lib.create_strategy(
        runtime.distribution_strategy,
        num_gpus=runtime.num_gpus,
        num_cpu_devices=runtime.num_cpu_devices,
    )
    policy = precision.set_policy(runtime.precision)
    keras.utils.set_random_seed(runtime.seed)
    source = pipeline.open_source(
        data.source,
        num_classes=config.model.num_classes,
        synthetic_examples=data.synthetic_examples,
        image_size=data.image_size or spec.default_resolution,
    )
    info = source.info
    config, derived = config_lib.resolve(
        config,
        spec=spec,
        num_classes=info.num_classes,
        num_train_examples=info.num_examples[pipeline.TRAIN],
        num_eval_examples=info.num_examples[pipeline.VALIDATION],
    )
    data, train = config.data, config.train
    chief = strategy_lib.is_chief(strategy)
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
        strategy.num_replicas_in_sync,
        derived.steps_per_epoch,
    )

    def dataset_fn(split: str, is_training: bool, global_batch: int):
        def fn(input_context: tf.distribute.InputContext):
            return pipeline.build_dataset(
                source,
                split=split,
                is_training=is_training,
                batch_size=input_context.get_per_replica_batch_size(global_batch),
                image_size=data.image_size,
                train_crop=data.train_crop,
                random_flip=data.random_flip,
                crop_fraction=data.crop_fraction,
                interpolation=data.interpolation,
                shuffle_buffer=data.shuffle_buffer,
                cache=data.cache,
                seed=runtime.seed,
                input_context=input_context,
            )

        return strategy.distribute_datasets_from_function(fn)

    with strategy.scope():
        model = build_model(config, spec)
        schedule = schedules.WarmupSchedule(
            derived.learning_rate, derived.total_steps, derived.warmup_steps, train.lr_schedule
        )
        optimizer = optimizers.create_optimizer(
            train.optimizer, schedule, momentum=train.momentum, nesterov=train.nesterov
        )
        optimizer.build(model.trainable_variables)
    trainer = loop.Trainer(
        strategy=strategy,
        model=model,
        optimizer=optimizer,
        num_classes=derived.num_classes,
        global_batch_size=train.batch_size,
        label_smoothing=train.label_smoothing,
        weight_decay=train.weight_decay,
    )
    checkpointer = checkpoints.Checkpointer(
        model_dir, is_chief=chief, keep=runtime.keep_checkpoints, model=model, optimizer=optimizer
    )
    checkpointer.restore_latest()
    writer = summaries.Summaries(model_dir, enabled=chief)
    eval_batches = -(-derived.num_eval_examples // derived.eval_batch_size)

    def evaluate():
        eval_ds = dataset_fn(pipeline.VALIDATION, False, derived.eval_batch_size)
        return trainer.evaluate(eval_ds, eval_batches)

    train_ds = dataset_fn(pipeline.TRAIN, True, train.batch_size)
    result = loop.fit(
        trainer,
        train_iterator=iter(train_ds),
        schedule=loop.Schedule(
            total_steps=derived.total_steps,
            steps_per_epoch=derived.steps_per_epoch,
            log_every_steps=runtime.log_every_steps,
            checkpoint_every_steps=runtime.checkpoint_every_steps,
        ),
        evaluate=evaluate,
        checkpointer=checkpointer,
        summaries=writer,
        learning_rate=lambda step: float(schedule(step)),
    )
    metrics = {
        "top1": result["top1"],
        "top5": result["top5"],
        "loss": result["loss"],
        "epochs": trainer.step / derived.steps_per_epoch,
        "steps": trainer.step,
        "eval_examples": result["examples"],
        "wall_seconds": time.monotonic() - start,
    }
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
