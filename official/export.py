"""Exports a training run for serving: `python -m official.export --model_dir=DIR --export_dir=OUT`.

--format=saved_model (default) writes OUT/<version>/ for TF Serving: saved_model.pb,
variables/, assets/labels.txt and assets.extra/tf_serving_warmup_requests; `serving_default`
takes encoded image bytes and runs the model's own eval preprocessing in the graph,
`predict_images` takes preprocessed float images. --format=tflite writes
OUT/<version>/model.tflite (--quantization=float) or model_int8.tflite (--quantization=int8,
calibrated on --calibration_examples training images). --format=packed writes
OUT/<version>/weights.packed.npz: a binary network's binary kernels as 1 bit per weight plus one
scale per output channel, every other weight float32, with export.json to rebuild the model
(`official.serving.packed.load_model`). The weights are the run's latest
checkpoint (its EMA weights when the run kept them) unless --checkpoint names another. Every
export is written to a temporary directory and renamed to its version number when complete.
SavedModel and TFLite exports fold each BatchNormalization into the convolution or dense layer
before it (official/models/batch_norm.py); --nofold_batch_norm keeps them. --precision (saved_model)
sets the layers' compute precision: mixed_bfloat16 is 1.5-2x faster on CPUs with bfloat16
instructions; auto times the candidates of official/training/precision.py on the model.
The wiring is official/export_lib.py.
"""

from __future__ import annotations

from absl import app, flags

from official import cli, export_lib
from official.serving import saved_model, tflite
from official.training import precision

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Training run directory.", required=True)
_EXPORT_DIR = flags.DEFINE_string(
    "export_dir", None, "Base directory; the export goes to <export_dir>/<version>.", required=True
)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Checkpoint path (default: the latest).")
_FORMAT = flags.DEFINE_enum("format", "saved_model", export_lib.FORMATS, "What to write.")
_QUANTIZATION = flags.DEFINE_enum(
    "quantization", "float", tflite.QUANTIZATIONS, "tflite: float32, or int8 post-training."
)
_CALIBRATION = flags.DEFINE_integer(
    "calibration_examples", 200, "int8: representative training images for calibration."
)
_VERSION = flags.DEFINE_integer("version", None, "Version number (default: highest + 1).")
_TOP_K = flags.DEFINE_integer("top_k", 5, "saved_model: classes returned per image.")
_FOLD_BATCH_NORM = flags.DEFINE_boolean(
    "fold_batch_norm",
    True,
    "saved_model/tflite: fold each BatchNormalization into the convolution or dense layer "
    "before it (same outputs within float rounding, faster).",
)
_PRECISION = flags.DEFINE_enum(
    "precision",
    "float32",
    precision.PRECISIONS,
    "saved_model: the layers' compute precision (inputs, outputs and variables stay float32); "
    "auto: what runs fastest on this machine, per layer kind.",
)
_WARMUP_BATCH_SIZES = flags.DEFINE_list(
    "warmup_batch_sizes",
    [],
    "saved_model: batch sizes TF Serving's warm-up also runs, each "
    f"{saved_model.WARMUP_REPEATS} times, besides single images (e.g. a batcher's "
    "allowed_batch_sizes), so the first real batches of those sizes run warm.",
)
_MODEL_NAME = flags.DEFINE_string(
    "model_name", "", "Name in the warm-up requests (TF Serving's MODEL_NAME; default: model)."
)


def main(argv: list[str]) -> None:
    cli.no_arguments(argv)
    if _TOP_K.value < 1:
        cli.fail(f"--top_k={_TOP_K.value}: expected >= 1")
    if _CALIBRATION.value < 1:
        cli.fail(f"--calibration_examples={_CALIBRATION.value}: expected >= 1")
    try:
        warmup_batch_sizes = tuple(int(size) for size in _WARMUP_BATCH_SIZES.value)
    except ValueError:
        cli.fail(f"--warmup_batch_sizes={','.join(_WARMUP_BATCH_SIZES.value)}: expected integers")
    with cli.user_errors():
        path = export_lib.export(
            _MODEL_DIR.value,
            _EXPORT_DIR.value,
            export_format=_FORMAT.value,
            quantization=_QUANTIZATION.value,
            checkpoint=_CHECKPOINT.value,
            version=_VERSION.value,
            top_k=_TOP_K.value,
            calibration_examples=_CALIBRATION.value,
            model_name=_MODEL_NAME.value,
            fold_batch_norm=_FOLD_BATCH_NORM.value,
            precision_name=_PRECISION.value,
            warmup_batch_sizes=warmup_batch_sizes,
        )
    size, compressed = export_lib.export_size(path)
    print(f"exported:     {path}")
    print(f"size:         {size:,} bytes ({compressed:,} bytes gzip-compressed)")


def run() -> None:
    """Console-script entry point."""
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
