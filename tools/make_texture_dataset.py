#!/usr/bin/env python
"""Writes the fine-tuning recipe's dataset: six-class surface patches of scikit-image's photos.

Needs scikit-image (in the `test` extra). README "Fine-tune on your own images".

  python tools/make_texture_dataset.py --output_dir=data/textures
"""

from absl import app, flags

from official import cli
from official.data import textures

_OUTPUT_DIR = flags.DEFINE_string("output_dir", "data/textures", "Where to write the images.")
_TRAIN_PER_CLASS = flags.DEFINE_integer("train_per_class", 50, "Training patches per class.")
_VALIDATION_PER_CLASS = flags.DEFINE_integer(
    "validation_per_class", 20, "Validation patches per class."
)
_TRAIN_FRACTION = flags.DEFINE_float(
    "train_fraction", 0.65, "Share of each photograph's columns (from the left) for training."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of patch sides and positions.")


def main(argv):
    del argv
    with cli.user_errors():
        counts = textures.write_texture_dataset(
            _OUTPUT_DIR.value,
            train_per_class=_TRAIN_PER_CLASS.value,
            validation_per_class=_VALIDATION_PER_CLASS.value,
            train_fraction=_TRAIN_FRACTION.value,
            seed=_SEED.value,
        )
    print(
        f"wrote {counts['train']} train and {counts['validation']} validation images "
        f"to {_OUTPUT_DIR.value}"
    )


if __name__ == "__main__":
    app.run(main)
