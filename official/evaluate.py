"""Evaluates a training run: `python -m official.evaluate --model_dir=DIR [--mode=...]`.

Data, model and preprocessing come from the run's config.json unless overridden. Reports top-1
and top-5 accuracy/error, per-class accuracy, a confusion matrix (CSV, PNG and TensorBoard image)
and the expected calibration error, and writes them as JSON under DIR/evaluation/.

Modes: center (reference single crop), multi_crop (--crops=ten, or grid: VGG's 5×5 crops and
flips at each of --scales), multi_scale (dense at several --scales, posteriors averaged), dense
(fully-convolutional on the whole image, flip averaged), dense+multi_crop (the posteriors of
dense and multi_crop at the same --scales averaged, VGG's Table 5), ensemble
(--ensemble=DIR1,DIR2,..., each a run or a checkpoint, each evaluated in its --ensemble_modes).
--tflite=FILE evaluates a converted model with center crops.
The wiring is official/evaluate_lib.py.
"""

from __future__ import annotations

import os

from absl import app, flags

from official import cli, evaluate_lib

_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "Training run directory (default for --mode=ensemble: the first member)."
)
_MODE = flags.DEFINE_enum("mode", "center", evaluate_lib.MODES, "How to test.")
_CROPS = flags.DEFINE_enum("crops", "ten", evaluate_lib.CROPS, "multi_crop: ten-crop or VGG grid.")
_SCALES = flags.DEFINE_list(
    "scales",
    [],
    "Test scales Q (shorter side, px). Defaults: grid and dense+multi_crop S,1.5S,2S; "
    "multi_scale S-d,S,S+d with "
    "d = 32 (S/8 for S < 256, none below the model's minimum size); dense S; "
    "S = image_size / crop_fraction.",
)
_FLIP = flags.DEFINE_boolean("flip", True, "dense/multi_scale: average with the mirror image.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Checkpoint path (default: the latest).")
_SOURCE = flags.DEFINE_string(
    "source", "", "Data source override (folder:PATH, tfrecord:DIR, synthetic)."
)
_SPLIT = flags.DEFINE_string("split", "validation", "Split to evaluate.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 0, "Images per batch (0: the run's).")
_ENSEMBLE = flags.DEFINE_string("ensemble", "", "mode=ensemble: comma-separated runs/checkpoints.")
_ENSEMBLE_MODES = flags.DEFINE_list(
    "ensemble_modes",
    [],
    "mode=ensemble: each member's mode, one per member or one for all "
    f"({', '.join(evaluate_lib.MEMBER_MODES)}); default center.",
)
_TFLITE = flags.DEFINE_string("tflite", "", "Evaluate this .tflite file (center crops).")
_CAM = flags.DEFINE_integer(
    "cam_misclassified", 0, "Write CAM overlays of this many worst mistakes (PNG + TensorBoard)."
)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "", "Where results go (default DIR/evaluation).")


def _scales() -> tuple[int, ...]:
    try:
        scales = tuple(int(value) for value in _SCALES.value)
    except ValueError:
        cli.fail(f"--scales={','.join(_SCALES.value)}: expected integers (pixels)")
    if any(scale <= 0 for scale in scales):
        cli.fail(f"--scales={','.join(_SCALES.value)}: expected positive sizes")
    return scales


def main(argv: list[str]) -> None:
    cli.no_arguments(argv)
    if _CAM.value < 0 or _BATCH_SIZE.value < 0:
        cli.fail("--cam_misclassified and --batch_size must be >= 0")
    options = evaluate_lib.Options(
        mode=_MODE.value,
        crops=_CROPS.value,
        scales=_scales(),
        flip=_FLIP.value,
        source=_SOURCE.value,
        split=_SPLIT.value,
        batch_size=_BATCH_SIZE.value,
        checkpoint=_CHECKPOINT.value,
        ensemble=_ENSEMBLE.value,
        ensemble_modes=tuple(_ENSEMBLE_MODES.value),
        tflite=_TFLITE.value,
        cam_misclassified=_CAM.value,
        output_dir=_OUTPUT_DIR.value,
    )
    with cli.user_errors():
        results = evaluate_lib.run(_MODEL_DIR.value, options)
    print(
        f"{results['name']}: top-1 {results['top1']:.4f} (error {results['top1_error']:.4f})  "
        f"top-5 {results['top5']:.4f} (error {results['top5_error']:.4f})  "
        f"ECE {results['ece']:.4f}  NLL {results['nll']:.4f}  "
        f"mean per-class {results['mean_per_class_accuracy']:.4f}  "
        f"({results['examples']} images)"
    )
    print(f"results:      {results['results_file']}")
    print(f"confusion:    {results['confusion_csv']}, {results['confusion_png']}")
    print(f"predictions:  {results['predictions_csv']}")
    if results["misclassified_cam"]:
        print(f"CAM overlays: {os.path.dirname(results['misclassified_cam'][0])}")


def run() -> None:
    """Console-script entry point."""
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
