"""Classifies image files: `python -m official.predict --export_dir=DIR IMAGE...`.

Prints the top-5 class names and probabilities of every image, using an exported SavedModel
(--export_dir: a version directory, or the base directory for its newest version) or a
training run (--model_dir: the same serving graph, built in-process from its checkpoint). A
missing or unreadable file is reported by name on stderr, the others are still classified, and
the exit status is 1 if any image failed.
"""

from __future__ import annotations

import sys

from absl import app, flags

from official import cli

_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "An export (official.export) to use.")
_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Or: a training run to use.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "With --model_dir: checkpoint path.")
_TOP_K = flags.DEFINE_integer("top_k", 5, "Classes printed per image.")


def _classifier():
    """A function: one image's bytes → {"class_names", "probabilities"} (top-k arrays)."""
    import tensorflow as tf

    from official.evaluation import export_run, serving

    if _MODEL_DIR.value:
        module, _, _, _ = export_run.serving_module(
            _MODEL_DIR.value, _CHECKPOINT.value, top_k=_TOP_K.value
        )
        function = module.serve
    else:
        path = serving.resolve_saved_model(_EXPORT_DIR.value)
        function = tf.saved_model.load(path).signatures[serving.SERVING_SIGNATURE]

    def classify(image: bytes) -> dict:
        outputs = function(**{serving.BYTES_INPUT: tf.constant([image])})
        return {key: value.numpy()[0] for key, value in outputs.items()}

    return classify


def main(argv: list[str]) -> None:
    paths = argv[1:]
    if not paths:
        raise app.UsageError("give one or more image files")
    if bool(_EXPORT_DIR.value) == bool(_MODEL_DIR.value):
        cli.fail("give exactly one of --export_dir (an export) or --model_dir (a training run)")
    if _TOP_K.value < 1:
        cli.fail(f"--top_k={_TOP_K.value}: expected >= 1")
    import tensorflow as tf

    from official.evaluation import export_run, serving

    with cli.user_errors():
        try:
            classify = _classifier()
        except export_run.USER_ERRORS as e:
            cli.fail(str(e))
    failures = 0
    for path in paths:
        try:
            outputs = classify(serving.read_image(path))
        except OSError as e:
            problem = e.strerror or str(e)
        except tf.errors.InvalidArgumentError as e:
            problem = serving.describe_error(e)
        else:
            k = _TOP_K.value  # An export returns the top_k it was exported with.
            names, probabilities = outputs["class_names"][:k], outputs["probabilities"][:k]
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
    """Console-script entry point."""
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
