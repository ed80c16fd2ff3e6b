"""Class activation maps of image files: `python -m official.cam --model_dir=DIR IMAGE...`.

Writes one PNG per image: the heat map of the top class over the image the model sees (its eval
preprocessing), with the class named above it. CAM (Zhou et al. arXiv 1512.04150) for models
ending in global average pooling, Grad-CAM (Selvaraju et al. arXiv 1610.02391) otherwise. A
missing or unreadable file is reported by name and the others are still drawn (exit status 1).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from official import cli

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Training run directory.", required=True)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Checkpoint path (default: the latest).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "", "Where PNGs go (default: DIR/cam).")
_METHOD = flags.DEFINE_enum(
    "method", "auto", ["auto", "cam", "grad_cam"], "auto: CAM when the model ends in GAP."
)


def main(argv: list[str]) -> None:
    paths = argv[1:]
    if not paths:
        raise app.UsageError("give one or more image files")
    import numpy as np
    import tensorflow as tf

    from official.data import preprocess
    from official.evaluation import cam, experiment, serving
    from official.training import experiment as training_experiment

    with cli.user_errors():
        model, config, _, _ = training_experiment.load_trained_model(
            _MODEL_DIR.value, checkpoint=_CHECKPOINT.value
        )
        class_names = experiment.read_labels(_MODEL_DIR.value)
    try:
        mapper = cam.ActivationMapper(model, _METHOD.value)
    except ValueError as e:
        cli.fail(str(e))
    output_dir = _OUTPUT_DIR.value or os.path.join(_MODEL_DIR.value, "cam")
    failures, written_names = 0, set()
    for path in paths:
        try:
            encoded = tf.constant(serving.read_image(path))
            serving.check_image_bytes(encoded, tf.constant(0))  # Raises eagerly.
            image = preprocess.eval_image(
                encoded,
                image_size=config.data.image_size,
                crop_fraction=config.data.crop_fraction,
                interpolation=config.data.interpolation,
            ).numpy()
        except OSError as e:
            failures += 1
            sys.stderr.write(f"error: {path}: {e.strerror or e}\n")
            continue
        except tf.errors.InvalidArgumentError as e:
            failures += 1
            sys.stderr.write(f"error: {path}: {serving.describe_error(e)}\n")
            continue
        maps = mapper(image[None].astype(np.float32))
        top = int(maps.classes[0])
        caption = f"{class_names[top]} ({maps.probabilities[0, top]:.2f}) {maps.method}"
        stem = os.path.splitext(os.path.basename(path))[0]
        name, count = f"{stem}_cam.png", 1
        while name in written_names:  # Same file name in different folders.
            count += 1
            name = f"{stem}_{count}_cam.png"
        written_names.add(name)
        written = cam.save_png(
            cam.overlay(image, maps.maps[0], caption), os.path.join(output_dir, name)
        )
        print(f"{path}: {class_names[top]} {maps.probabilities[0, top]:.4f} -> {written}")
    if failures:
        sys.stderr.write(f"{failures} of {len(paths)} images could not be read\n")
        sys.exit(1)


def run() -> None:
    """Console-script entry point."""
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
