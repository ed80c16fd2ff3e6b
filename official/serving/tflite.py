"""TFLite: conversion of the export's `predict_images` signature (float or int8), and an
interpreter that runs the result (official.evaluate --tflite uses it).

The converter is TensorFlow's `tf.lite.TFLiteConverter`. The interpreter comes from the
`ai-edge-litert` package (`pip install "cnn-repro[tflite]"`): TensorFlow 2.21 still ships
`tf.lite.Interpreter`, but it warns that it is deprecated in favour of LiteRT and scheduled
for deletion.

int8 is full-integer post-training quantization: weights and activations int8, calibrated on
representative images from the training split; the input is uint8 0..255 with scale 1 and
zero point 0 (exactly the pixels), the outputs stay float32.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable

import numpy as np
import tensorflow as tf

from official.data import preprocess
from official.errors import UserError
from official.serving import saved_model

QUANTIZATIONS = ("float", "int8")
LOGITS_OUTPUT = "logits"


class TFLiteError(UserError, ValueError):
    """A .tflite file or runtime that cannot be used; the message says which and why."""


def model_file_name(quantization: str) -> str:
    return "model.tflite" if quantization == "float" else f"model_{quantization}.tflite"


def convert(
    saved_model_dir: str,
    *,
    quantization: str,
    representative_images: Iterable[np.ndarray] | None = None,
) -> bytes:
    """Converts the `predict_images` signature of an export to a TFLite flatbuffer.

    Args:
      saved_model_dir: a SavedModel written by `saved_model.save_module`.
      quantization: "float" (float32 as trained) or "int8" (full-integer post-training).
      representative_images: for int8, float32 (1, S, S, 3) batches of preprocessed images.

    Returns:
      The .tflite bytes.
    """
    if quantization not in QUANTIZATIONS:
        raise TFLiteError(f"--quantization={quantization!r}: choose one of {QUANTIZATIONS}")
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=[saved_model.IMAGES_SIGNATURE]
    )
    if quantization == "int8":
        if representative_images is None:
            raise TFLiteError("int8 quantization needs representative images")
        images = list(representative_images)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ({saved_model.IMAGES_INPUT: x} for x in images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
    return converter.convert()


def export_tflite(
    model,
    *,
    export_dir: str,
    labels_path: str,
    geometry: preprocess.Geometry,
    quantization: str,
    metadata: dict,
    representative_images: Iterable[np.ndarray] | None = None,
    version: int | None = None,
) -> str:
    """Writes `export_dir/<version>/{model[_int8].tflite, labels.txt, export.json}` (through a
    temporary directory renamed when complete) and returns the .tflite path."""
    name = model_file_name(quantization)
    with saved_model.new_version(export_dir, version) as (temporary, final):
        module = saved_model.ServingModule(
            model, labels_path=labels_path, geometry=geometry, single_image_branch=False
        )
        graph = os.path.join(temporary, "saved_model")
        saved_model.save_module(module, graph)
        flatbuffer = convert(
            graph, quantization=quantization, representative_images=representative_images
        )
        shutil.rmtree(graph)
        with open(os.path.join(temporary, name), "wb") as f:
            f.write(flatbuffer)
        shutil.copyfile(labels_path, os.path.join(temporary, saved_model.LABELS_ASSET))
        saved_model.write_metadata(
            temporary,
            {
                **metadata,
                "format": "tflite",
                "quantization": quantization,
                "signature": saved_model.IMAGES_SIGNATURE,
                "input": "uint8 0..255" if quantization == "int8" else "float32 0..255",
            },
        )
    return os.path.join(final, name)


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise TFLiteError(
            "running .tflite models needs the LiteRT interpreter: "
            'pip install "cnn-repro[tflite]" (package ai-edge-litert)'
        ) from None
    return Interpreter


class TFLiteClassifier:
    """Runs the `predict_images` signature of a .tflite file on batches of images.

    Args:
      path: the .tflite file.
      num_threads: CPU threads of the interpreter (None: LiteRT's default).

    Raises:
      TFLiteError: missing or invalid file, or no `predict_images` signature.
    """

    def __init__(self, path: str, num_threads: int | None = None):
        if not os.path.isfile(path):
            raise TFLiteError(f"--tflite={path}: no such file")
        interpreter_class = _interpreter_class()
        try:
            self.interpreter = interpreter_class(model_path=path, num_threads=num_threads)
            self.runner = self.interpreter.get_signature_runner(saved_model.IMAGES_SIGNATURE)
        except (ValueError, RuntimeError) as e:
            raise TFLiteError(f"--tflite={path}: {str(e).splitlines()[0]}") from None
        details = self.runner.get_input_details()[saved_model.IMAGES_INPUT]
        self.input_dtype = details["dtype"]
        self.input_scale, self.input_zero_point = details["quantization"]
        self.image_size = int(details["shape_signature"][1])

    def _quantize(self, images: np.ndarray) -> np.ndarray:
        if np.issubdtype(self.input_dtype, np.floating):
            return images.astype(self.input_dtype)
        info = np.iinfo(self.input_dtype)
        scaled = np.round(images / self.input_scale + self.input_zero_point)
        return np.clip(scaled, info.min, info.max).astype(self.input_dtype)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) 0..255 → (N, K) float32 logits."""
        outputs = self.runner(**{saved_model.IMAGES_INPUT: self._quantize(np.asarray(images))})
        return np.asarray(outputs[LOGITS_OUTPUT], dtype=np.float32)
