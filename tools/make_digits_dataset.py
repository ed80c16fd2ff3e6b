#!/usr/bin/env python
"""Writes the bundled quickstart dataset (datasets/digits) from scikit-learn's load_digits.

Run once; the output is committed. Needs scikit-learn (in the `test` extra).

  python tools/make_digits_dataset.py --output_dir=datasets/digits
"""

from absl import app, flags

from official import cli
from official.data import digits

_OUTPUT_DIR = flags.DEFINE_string("output_dir", "datasets/digits", "Where to write the images.")
_VALIDATION_FRACTION = flags.DEFINE_float(
    "validation_fraction", 0.2, "Share of each class held out."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the stratified split.")


def main(argv):
    del argv
    with cli.user_errors():
        counts = digits.write_digits_dataset(
            _OUTPUT_DIR.value, validation_fraction=_VALIDATION_FRACTION.value, seed=_SEED.value
        )
    print(
        f"wrote {counts['train']} train and {counts['validation']} validation images "
        f"to {_OUTPUT_DIR.value}"
    )


if __name__ == "__main__":
    app.run(main)
