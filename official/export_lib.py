"""Turns a training run into an export: the wiring behind `python -m official.export` (and
`official.predict --model_dir`, which runs the same serving graph without writing it)."""

from __future__ import annotations

import gzip
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from official import config as config_lib
from official import runs
from official.data import preprocess, sources
from official.models import inference, registry
from official.serving import packed, saved_model, tflite
from official.training import precision, pruning

FORMATS = ("saved_model", "tflite", "packed")


def _check_precision(precision_name: str, export_format: str = "saved_model") -> None:
    if precision_name not in precision.PRECISIONS:
        raise saved_model.ExportError(
            f"--precision={precision_name!r}: choose one of {', '.join(precision.PRECISIONS)}"
        )
    if precision_name != "float32" and export_format != "saved_model":
        raise saved_model.ExportError(
            f"--precision={precision_name}: only --format=saved_model computes in another "
            f"precision (--format={export_format} has its own number formats"
            + ("; --quantization=int8 for integer kernels)" if export_format == "tflite" else ")")
        )


def _load(model_dir: str, checkpoint: str | None, precision_name: str):
    """(the run's TrainedModel built under `precision_name`'s global policy, the resolved
    Precision); the global policy is the caller's again afterwards."""
    previous = keras.mixed_precision.global_policy()
    resolved = precision.set_policy(precision_name)
    try:
        return runs.load_trained_model(model_dir, checkpoint=checkpoint), resolved
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _serving_precision(model: keras.Model, resolved: precision.Precision) -> str:
    """Gives the inference model the layer dtypes of `resolved` ("auto" on a bfloat16 CPU:
    the candidate whose inference pass is fastest on this model, as it will run); its name."""
    resolved = resolved.tuned(model, training=False)
    resolved.apply(model)
    logging.info("serving precision: %s", resolved.name)
    return resolved.name


def serving_module(
    model_dir: str, checkpoint: str | None = None, top_k: int = 5, precision_name: str = "float32"
):
    """(ServingModule of a run's trained model, the run's TrainedModel): the exported graph,
    built in-process, computing in `precision_name` (float32 inputs and outputs)."""
    _check_precision(precision_name)
    trained, resolved = _load(model_dir, checkpoint, precision_name)
    runs.read_labels(model_dir)  # A clear error when labels.txt is missing.
    model = inference.inference_form(trained.model).model  # As `export` writes it by default.
    _serving_precision(model, resolved)
    module = saved_model.ServingModule(
        model,
        labels_path=runs.labels_path(model_dir),
        geometry=runs.geometry(trained.config),
        top_k=top_k,
        max_image_pixels=trained.config.data.max_image_pixels,
    )
    return module, trained


def calibration_images(config: config_lib.Config, count: int, seed: int = 0) -> list[np.ndarray]:
    """`count` training images (a seeded sample of the split, eval preprocessing) as float32
    (1, S, S, 3) batches: the representative data of int8 quantization.

    The split's order is shuffled (for a folder source the whole file list, for records the
    shard order), then a bounded buffer picks the sample; the converter shuffled the
    records of its training shards already.
    """
    source = runs.open_source(config)
    size = source.info.num_examples[sources.TRAIN]
    examples = source.examples(sources.TRAIN, shuffle=True, seed=seed)
    examples = examples.shuffle(min(size, 20 * count), seed=seed).take(count)
    geometry = runs.geometry(config)
    images = source.encoded(examples).map(
        lambda encoded, label: preprocess.eval_image(encoded, geometry)
    )
    with sources.reading(source):
        return [image[None].astype(np.float32) for image in images.as_numpy_iterator()]


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
    fold_batch_norm: bool = True,
    precision_name: str = "float32",
    warmup_batch_sizes: tuple[int, ...] = (),
) -> str:
    """Exports a run; returns the version directory (SavedModel), the .tflite path or the
    packed weights' path (binary networks: 1 bit per binary weight, official/serving/packed.py).

    `fold_batch_norm`: a SavedModel or TFLite export computes each BN that follows a
    convolution or dense layer inside that layer's kernel and bias (batch_norm.fold; the same
    outputs within float rounding, fewer ops per image). Either way a SavedModel or TFLite
    export writes every swish layer out as x·σ(x), which TensorFlow fuses into the convolution
    before it (models/inference.py; export.json's `plain_swish_layers` counts the layers
    rewritten). A SavedModel also computes each float32 depthwise convolution as a grouped one,
    into which TensorFlow fuses the bias and swish (`grouped_depthwise_layers`), and each
    1×1 convolution on a pooled vector (squeeze-excite) as a matrix product
    (`vector_product_layers`), and the input normalization as one scale-and-offset kernel
    (`scaled_input_layers`); TFLite keeps the original ops. The packed format keeps the
    layers as the builder makes them.

    `precision_name` (saved_model only): the compute precision of the SavedModel's layers
    (`training/precision.py`; inputs, logits and probabilities stay float32, variables
    float32). mixed_bfloat16 is 1.5-2x faster on CPUs with bfloat16 instructions; "auto" picks
    per layer kind what runs fastest on this machine.

    `warmup_batch_sizes` (saved_model only): batch sizes, besides single images, that TF
    Serving's warm-up runs before the model serves (saved_model.warmup_requests).
    """
    if export_format not in FORMATS:
        raise saved_model.ExportError(
            f"--format={export_format!r}: choose one of {', '.join(FORMATS)}"
        )
    _check_precision(precision_name, export_format)
    warmup_batch_sizes = saved_model.check_warmup_batch_sizes(warmup_batch_sizes)
    if warmup_batch_sizes and export_format != "saved_model":
        raise saved_model.ExportError(
            f"--warmup_batch_sizes: only --format=saved_model has warm-up requests "
            f"(not --format={export_format})"
        )
    (model, config, _, path), resolved = _load(model_dir, checkpoint, precision_name)
    runs.read_labels(model_dir)  # A clear error when labels.txt is missing.
    # A pruned run: its masks folded into the kernels; the export has plain layers and zeros.
    sparsities = pruning.strip(model, path)
    data, geometry = config.data, runs.geometry(config)
    metadata = {
        "model": config.model.name,
        "model_dir": os.path.abspath(model_dir),
        "checkpoint": path,
        "num_classes": config.model.num_classes,
        "image_size": geometry.image_size,
        "crop_fraction": geometry.crop_fraction,
        "interpolation": geometry.interpolation,
        "mean": list(data.mean),
        "std": list(data.std),
        "normalization": "inside the model (inputs are 0..255 pixels)",
        "max_image_pixels": data.max_image_pixels,
        "tensorflow": tf.__version__,
    }
    if sparsities:
        metadata["pruned_kernel_sparsity"] = sparsities
    if export_format != "packed":
        # TFLite keeps the ops every delegate has.
        skip = () if export_format == "saved_model" else tuple(inference.TENSORFLOW_REWRITES)
        form = inference.inference_form(model, fold_batch_norm, skip)
        model = form.model
        if fold_batch_norm:
            metadata["batch_norm_folded"] = len(form.folded)
            metadata["batch_norm_unfolded"] = len(form.unfolded)
        metadata["plain_swish_layers"] = form.plain_swish
        metadata["vector_product_layers"] = form.vector_products
        metadata["scaled_input_layers"] = form.scaled_input
    if export_format == "saved_model":
        metadata["precision"] = _serving_precision(model, resolved)
    if export_format != "packed":
        metadata["grouped_depthwise_layers"] = inference.grouped_count(model)
    common = dict(
        export_dir=export_dir,
        labels_path=runs.labels_path(model_dir),
        geometry=geometry,
        metadata=metadata,
        version=version,
    )
    if export_format == "packed":
        overrides = runs.model_overrides(config.model, registry.get(config.model.name))
        overrides.pop("aux_head", None)  # The export has the main output only.
        builder_arguments = {
            "num_classes": config.model.num_classes,
            "image_size": geometry.image_size,
            "mean": list(data.mean),
            "std": list(data.std),
            **overrides,
        }
        return packed.export(
            model,
            export_dir=export_dir,
            labels_path=runs.labels_path(model_dir),
            metadata=metadata,
            builder_arguments=builder_arguments,
            version=version,
        )
    if export_format == "saved_model":
        return saved_model.export_saved_model(
            model,
            model_name=model_name or config.model.name,
            top_k=top_k,
            max_image_pixels=data.max_image_pixels,
            warmup_batch_sizes=warmup_batch_sizes,
            **common,
        )
    representative = (
        calibration_images(config, calibration_examples) if quantization == "int8" else None
    )
    if representative is not None:
        metadata["calibration_examples"] = len(representative)
    return tflite.export_tflite(
        model, quantization=quantization, representative_images=representative, **common
    )


def export_size(path: str) -> tuple[int, int]:
    """(bytes, gzip bytes) of an export (a .tflite file or a SavedModel directory, file by
    file): what a pruned model saves once compressed, its zeros being stored densely."""
    files = (
        [path]
        if os.path.isfile(path)
        else [os.path.join(root, name) for root, _, names in os.walk(path) for name in names]
    )
    size = compressed = 0
    for name in files:
        with open(name, "rb") as f:
            content = f.read()
        size += len(content)
        compressed += len(gzip.compress(content, compresslevel=9, mtime=0))
    return size, compressed
