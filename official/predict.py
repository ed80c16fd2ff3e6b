"""Classifies image files: `python -m official.predict --export_dir=DIR IMAGE...`.

Prints the top-5 class names and probabilities of every image, using an exported SavedModel
(--export_dir: a version directory, or the base directory for its newest version) or a
training run (--model_dir: the same serving graph, built in-process from its checkpoint). A
missing or unreadable file is reported by name on stderr, the others are still classified, and
the exit status is 1 if any image failed.
"""

from __future__ import annotations

import sys

import tensorflow as tf
from absl import app, flags

import official
from official import cli, export_lib
from official.serving import saved_model
from official.training import precision

_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "An export (official.export) to use.")
_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Or: a training run to use.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "With --model_dir: checkpoint path.")
_TOP_K = flags.DEFINE_integer("top_k", 5, "Classes printed per image.")
_PRECISION = flags.DEFINE_enum(
    "precision",
    "float32",
    precision.PRECISIONS,
    "With --model_dir: the layers' compute precision, as official.export --precision.",
)


def _classifier():
    """The serving graph's `serving_default`: image bytes [N] → top-k classes and names."""
    if _MODEL_DIR.value:
        module, _ = export_lib.serving_module(
            _MODEL_DIR.value, _CHECKPOINT.value, top_k=_TOP_K.value, precision_name=_PRECISION.value
        )
        return module.serve
    return saved_model.load_classifier(_EXPORT_DIR.value)


def main(argv: list[str]) -> None:
    paths = cli.image_files(argv, "python -m official.predict --export_dir=DIR IMAGE...")
    if bool(_EXPORT_DIR.value) == bool(_MODEL_DIR.value):
        cli.fail("give exactly one of --export_dir (an export) or --model_dir (a training run)")
    if _EXPORT_DIR.value and _PRECISION.value != "float32":
        cli.fail(f"--precision={_PRECISION.value}: an export keeps the precision it was written in")
    if _TOP_K.value < 1:
        cli.fail(f"--top_k={_TOP_K.value}: expected >= 1")
    with cli.user_errors():
        classify = _classifier()
    failures = 0
    for path in paths:
        try:
            with open(path, "rb") as f:
                image = f.read()
            outputs = classify(**{saved_model.BYTES_INPUT: tf.constant([image])})
        except OSError as e:
            problem = e.strerror or str(e)
        except tf.errors.InvalidArgumentError as e:
            problem = saved_model.describe_error(e)
        else:
            k = _TOP_K.value  # An export returns the top_k it was exported with.
            names = outputs["class_names"].numpy()[0][:k]
            probabilities = outputs["probabilities"].numpy()[0][:k]
            print(path)
            for rank, (name, probability) in enumerate(zip(names, probabilities), start=1):
                print(f"  {rank}. {name.decode('utf-8'):<24} {probability:.4f}")
            sys.stdout.flush()
            continue
        failures += 1
        sys.stderr.write(f"error: {path}: {problem}\n")
        sys.stderr.flush()
    if failures:
        sys.stderr.write(f"{failures} of {len(paths)} images could not be classified\n")
        sys.exit(1)


def run() -> None:
    """Console-script entry point: a process that serves one model's weights, so oneDNN may
    cache them (official.assume_frozen_weights)."""
    official.assume_frozen_weights()
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
