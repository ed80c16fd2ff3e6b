"""Class activation maps of image files: `python -m official.cam --model_dir=DIR IMAGE...`.

Writes one PNG per image: the image the model sees (its eval preprocessing), the heat map of
its top class with a colour bar, and the heat over the image, side by side, with the top-3
classes and their probabilities above them. CAM (Zhou et al. arXiv 1512.04150) for models
ending in global average pooling, Grad-CAM (Selvaraju et al. arXiv 1610.02391) otherwise. A
missing or unreadable file is reported by name and the others are still drawn (exit status 1).
The drawing is official/evaluation/cam.py.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from official import atomic, cli, runs
from official.evaluation import cam

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Training run directory.", required=True)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Checkpoint path (default: the latest).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "", "Where PNGs go (default: DIR/cam).")
_METHOD = flags.DEFINE_enum("method", "auto", cam.METHODS, "auto: CAM when the model ends in GAP.")


def main(argv: list[str]) -> None:
    paths = cli.image_files(argv, "python -m official.cam --model_dir=DIR IMAGE...")
    with cli.user_errors():
        trained = runs.load_trained_model(_MODEL_DIR.value, checkpoint=_CHECKPOINT.value)
        class_names = runs.read_labels(_MODEL_DIR.value)
        mapper = cam.ActivationMapper(trained.model, _METHOD.value)
        output_dir = atomic.ensure_directory(
            _OUTPUT_DIR.value or os.path.join(_MODEL_DIR.value, "cam"), "--output_dir"
        )
    drawn = cam.draw_files(
        mapper,
        paths,
        geometry=runs.geometry(trained.config),
        class_names=class_names,
        output_dir=output_dir,
        max_image_pixels=trained.config.data.max_image_pixels,
    )
    failures = 0
    for result in drawn:
        if result.problem:
            failures += 1
            sys.stderr.write(f"error: {result.path}: {result.problem}\n")
            continue
        print(f"{result.path}: {result.class_name} {result.probability:.4f} -> {result.written}")
    if failures:
        sys.stderr.write(f"{failures} of {len(paths)} images could not be read\n")
        sys.exit(1)


def run() -> None:
    """Console-script entry point."""
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
