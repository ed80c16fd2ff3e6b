"""Features for other datasets: `python -m official.features --model_dir=RUN --source=...` or
`--init_weights=FILE --model=NAME --source=... --output_dir=DIR`.

Writes the penultimate, globally pooled features of the source's train and validation images
(`{train,validation}_features.npy`, `_labels.npy`, `classes.txt`) and the score of a linear
classifier fitted on the L2-normalized train features (`linear_classifier.json`), as VGG's
Appendix B (arXiv 1409.1556) evaluates its networks on other datasets. The wiring is
official/features_lib.py.
"""

from __future__ import annotations

from absl import app, flags

from official import cli, features_lib

_MODEL_DIR = flags.DEFINE_string("model_dir", "", "Training run whose network extracts features.")
_INIT_WEIGHTS = flags.DEFINE_string(
    "init_weights",
    "",
    "Instead of --model_dir: a run or a checkpoint in one, or a keras .h5, .pth/.pt or "
    ".safetensors file of --model (its own input normalization applies).",
)
_MODEL = flags.DEFINE_string("model", "", "With --init_weights: the registry model of the file.")
_SOURCE = flags.DEFINE_string(
    "source",
    "",
    "Images (folder:PATH, tfrecord:DIR, ...) with train and validation splits; "
    "default with --model_dir: the run's.",
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", "", "Where the files go (default with --model_dir: DIR/features)."
)
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", features_lib.DEFAULT_BATCH_SIZE, "Images per batch."
)
_L2_REGULARIZATION = flags.DEFINE_float(
    "l2_regularization",
    features_lib.Options.l2_regularization,
    "λ of the linear classifier's weight penalty (λ/2)·||W||².",
)


def main(argv: list[str]) -> None:
    cli.no_arguments(argv)
    options = features_lib.Options(
        model_dir=_MODEL_DIR.value,
        init_weights=_INIT_WEIGHTS.value,
        model=_MODEL.value,
        source=_SOURCE.value,
        output_dir=_OUTPUT_DIR.value,
        batch_size=_BATCH_SIZE.value,
        l2_regularization=_L2_REGULARIZATION.value,
    )
    with cli.user_errors():
        results = features_lib.run(options)
    print(
        f"linear classifier: validation top-1 {results['top1']:.4f} "
        f"({results['train_examples']} train / {results['validation_examples']} validation "
        f"features, {results['dimensions']} dims)"
    )
    print(f"results:  {results['results_file']}")


def run() -> None:
    """Console-script entry point."""
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
