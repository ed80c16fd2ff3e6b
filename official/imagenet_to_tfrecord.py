"""Converts ImageNet (or any class-per-folder tree) to sharded TFRecords.

  python tools/imagenet_to_tfrecord.py --raw_data_dir=DIR --output_dir=DIR [--verify]

The same command is installed as the console script `imagenet-to-tfrecord` and runs as
`python -m official.imagenet_to_tfrecord` (it lives in the package so that the console script
works in any install; tools/imagenet_to_tfrecord.py only calls `run`). A drop-in replacement for
tensorflow/tpu's imagenet_to_gcs.py (same layout, record format and shard names) that runs in
parallel, checks every image by content, resumes after an interruption and can verify its output.
The logic is in official/data/convert.py; README.md "Converting ImageNet or your own images".

Exit status: 0 on success; 1 if no image could be converted or --verify found a problem;
2 for a wrong layout, flag or output directory (one line on stderr names it).
"""

from absl import app, flags

from official import cli
from official.data import convert

_RAW_DATA_DIR = flags.DEFINE_string(
    "raw_data_dir",
    None,
    "Dataset root: train/<class>/* plus validation/* with synset_labels.txt (ImageNet), "
    "validation/<class>/*, or one class-per-folder tree with --validation_fraction.",
    required=True,
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where shards, labels.json and manifest.json go.", required=True
)
_NUM_WORKERS = flags.DEFINE_integer(
    "num_workers", 0, "Worker processes; 0: one per core; 1: convert in this process."
)
_TRAIN_SHARDS = flags.DEFINE_integer(
    "train_shards",
    convert.DEFAULT_TRAIN_SHARDS,
    "Training shards (as tensorflow/tpu); capped at the number of images, so none is empty.",
)
_VALIDATION_SHARDS = flags.DEFINE_integer(
    "validation_shards",
    convert.DEFAULT_VALIDATION_SHARDS,
    "Validation shards (as tensorflow/tpu); capped at the number of images.",
)
_LABEL_OFFSET = flags.DEFINE_integer(
    "label_offset",
    0,
    "Added to the 0-based class index; 1 reproduces tensorflow/tpu's labels 1..1000 "
    "(0 reserved for 'background').",
)
_VALIDATION_FRACTION = flags.DEFINE_float(
    "validation_fraction",
    0.0,
    "For a tree without a validation folder: share of every class held out for validation.",
)
_SEED = flags.DEFINE_integer(
    "seed", 0, "Seed of the one-time shuffle of the training files and of the held-out split."
)
_VALIDATION_LABELS = flags.DEFINE_string(
    "validation_labels",
    "",
    "Labels of a flat validation folder, one synset per image in sorted file-name order "
    "(default: RAW_DATA_DIR/synset_labels.txt, or the bundled ImageNet 2012 list).",
)
_VERIFY = flags.DEFINE_bool(
    "verify",
    False,
    "Afterwards re-read every shard: checksums, record counts, labels, decodable RGB JPEGs.",
)


def main(argv: list[str]) -> int:
    cli.no_arguments(argv)
    with cli.user_errors():
        summary = convert.convert(
            _RAW_DATA_DIR.value,
            _OUTPUT_DIR.value,
            num_workers=_NUM_WORKERS.value,
            train_shards=_TRAIN_SHARDS.value,
            validation_shards=_VALIDATION_SHARDS.value,
            label_offset=_LABEL_OFFSET.value,
            validation_fraction=_VALIDATION_FRACTION.value,
            seed=_SEED.value,
            validation_labels=_VALIDATION_LABELS.value,
            verify=_VERIFY.value,
        )
    print(convert.report(summary))
    if sum(summary.records.values()) == 0:
        print("error: no image could be converted (see the skipped files above)")
    return convert.main_exit_code(summary)


def run() -> None:
    """Console-script entry point."""
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
