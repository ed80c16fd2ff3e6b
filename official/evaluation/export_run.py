"""Wires a training run's saved config into a SavedModel or TFLite export."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from official import config as config_lib
from official.data import pipeline, preprocess
from official.evaluation import experiment, modes, serving, tflite
from official.training import experiment as training_experiment

USER_ERRORS = experiment.USER_ERRORS


def serving_module(model_dir: str, checkpoint: str | None = None, top_k: int = 5):
    """(ServingModule of a run's trained model, its config, the checkpoint used): the exported
    graph, built in-process (`official.predict --model_dir` uses it without exporting)."""
    model, config, _, path = training_experiment.load_trained_model(
        model_dir, checkpoint=checkpoint
    )
    experiment.read_labels(model_dir)  # A clear error when labels.txt is missing.
    module = serving.ServingModule(
        model,
        labels_path=os.path.join(model_dir, training_experiment.LABELS_FILE),
        image_size=config.data.image_size,
        crop_fraction=config.data.crop_fraction,
        interpolation=config.data.interpolation,
        top_k=top_k,
    )
    return module, model, config, path


def calibration_images(config: config_lib.Config, count: int, seed: int = 0):
    """`count` training images (a seeded shuffle of the split, eval preprocessing) as float32
    (1, S, S, 3) batches: the representative data of int8 quantization."""
    data = config.data
    source = pipeline.open_source(
        data.source,
        num_classes=config.model.num_classes,
        synthetic_examples=data.synthetic_examples,
        image_size=data.image_size,
    )
    if isinstance(source, pipeline.SyntheticSource):  # Random images already.
        dataset = pipeline.build_dataset(
            source,
            split=pipeline.TRAIN,
            is_training=False,
            batch_size=1,
            image_size=data.image_size,
        )
        dataset = dataset.unbatch().map(lambda image, label: image).take(count)
    else:
        size = source.info.num_examples[pipeline.TRAIN]
        if isinstance(source, pipeline.FolderSource):  # Shuffle the file list: cheap.
            encoded = source.examples(pipeline.TRAIN, shuffle=False, seed=0)
            encoded = encoded.shuffle(size, seed=seed).take(count)
            encoded = encoded.map(source.read)
        else:  # Records: a bounded shuffle buffer (the converter shuffles the training split).
            encoded = modes.encoded_examples(source, pipeline.TRAIN)
            encoded = encoded.shuffle(min(size, 20 * count), seed=seed).take(count)
        dataset = encoded.map(
            lambda image, label: preprocess.eval_image(
                image,
                image_size=data.image_size,
                crop_fraction=data.crop_fraction,
                interpolation=data.interpolation,
            )
        )
    return [image[None].astype(np.float32) for image in dataset.as_numpy_iterator()]


def export(
    model_dir: str,
    export_dir: str,
    *,
    export_format: str = "saved_model",
    quantization: str = "float",
    checkpoint: str | None = None,
    version: int | None = None,
    top_k: int = 5,
    calibration_examples: int = 200,
    model_name: str = "",
) -> str:
    """Exports a run; returns the version directory (SavedModel) or the .tflite path."""
    model, config, _, path = training_experiment.load_trained_model(
        model_dir, checkpoint=checkpoint
    )
    labels_path = os.path.join(model_dir, training_experiment.LABELS_FILE)
    experiment.read_labels(model_dir)
    data = config.data
    metadata = {
        "model": config.model.name,
        "model_dir": os.path.abspath(model_dir),
        "checkpoint": path,
        "num_classes": config.model.num_classes,
        "image_size": data.image_size,
        "crop_fraction": data.crop_fraction,
        "interpolation": data.interpolation,
        "mean": list(data.mean),
        "std": list(data.std),
        "normalization": "inside the model (inputs are 0..255 pixels)",
        "tensorflow": tf.__version__,
    }
    preprocessing = dict(
        image_size=data.image_size,
        crop_fraction=data.crop_fraction,
        interpolation=data.interpolation,
    )
    if export_format == "saved_model":
        return serving.export_saved_model(
            model,
            export_dir=export_dir,
            labels_path=labels_path,
            model_name=model_name or config.model.name,
            metadata=metadata,
            version=version,
            top_k=top_k,
            **preprocessing,
        )
    if export_format != "tflite":
        raise serving.ExportError(f"--format={export_format!r}: choose saved_model or tflite")
    representative = (
        calibration_images(config, calibration_examples) if quantization == "int8" else None
    )
    if representative is not None:
        metadata["calibration_examples"] = len(representative)
    return tflite.export_tflite(
        model,
        export_dir=export_dir,
        labels_path=labels_path,
        quantization=quantization,
        metadata=metadata,
        representative_images=representative,
        version=version,
        **preprocessing,
    )
