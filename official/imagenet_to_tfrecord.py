"""Converts ImageNet (or any class-per-folder tree) to sharded TFRecords.

  python tools/imagenet_to_tfrecord.py --raw_data_dir=DIR --output_dir=DIR [--verify]
  python tools/imagenet_to_tfrecord.py --raw_data_dir=DIR --local_scratch_dir=DIR --nogcs_upload
      (tensorflow/tpu imagenet_to_gcs.py's own command: its labels 1..1000, one flat directory)

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
from official.data import convert, imagefile

_RAW_DATA_DIR = flags.DEFINE_string(
    "raw_data_dir",
    None,
    "Dataset root: train/<class>/* plus validation/* with synset_labels.txt (ImageNet), "
    "validation/<class>/*, or one class-per-folder tree with --validation_fraction.",
    required=True,
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where shards, labels.json and manifest.json go."
)
# tensorflow/tpu imagenet_to_gcs.py's flags, so that its documented command works as written
# (`--raw_data_dir=... --local_scratch_dir=... --nogcs_upload`).
_LOCAL_SCRATCH_DIR = flags.DEFINE_string(
    "local_scratch_dir",
    None,
    "imagenet_to_gcs.py's output directory: the same as --output_dir, with its labels 1..1000 "
    "(unless --label_offset says otherwise). The shards go into this one directory, the layout "
    "that tool uploads to GCS.",
)
_GCS_UPLOAD = flags.DEFINE_boolean(
    "gcs_upload", False, "imagenet_to_gcs.py's upload switch: only --nogcs_upload is accepted."
)
_GCS_OUTPUT_PATH = flags.DEFINE_string(
    "gcs_output_path", None, "imagenet_to_gcs.py's upload path: refused (this tool writes locally)."
)
_PROJECT = flags.DEFINE_string("project", None, "imagenet_to_gcs.py's GCP project: not needed.")
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
    None,
    "Added to the 0-based class index (default 0, or 1 with --local_scratch_dir); 1 reproduces "
    "tensorflow/tpu's labels 1..1000 (0 reserved for 'background').",
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
_MAX_IMAGE_PIXELS = flags.DEFINE_integer(
    "max_image_pixels",
    imagefile.MAX_IMAGE_PIXELS,
    "Images with more pixels (read from their header) are skipped as decompression bombs.",
)
_VERIFY = flags.DEFINE_bool(
    "verify",
    False,
    "Afterwards re-read every shard: checksums, record counts, labels, decodable RGB JPEGs.",
)


def _output_dir_and_label_offset() -> tuple[str, int]:
    """--output_dir, or imagenet_to_gcs.py's --local_scratch_dir with its 1-based labels."""
    if _GCS_UPLOAD.value or _GCS_OUTPUT_PATH.value:
        cli.fail(
            "--gcs_upload/--gcs_output_path: this converter writes locally; pass "
            "--local_scratch_dir=DIR --nogcs_upload (or --output_dir=DIR), then copy the "
            "shards with `gsutil -m cp DIR/* gs://BUCKET/PATH/`"
        )
    if bool(_OUTPUT_DIR.value) == bool(_LOCAL_SCRATCH_DIR.value):
        cli.fail("give one of --output_dir and --local_scratch_dir (imagenet_to_gcs.py's name)")
    if _OUTPUT_DIR.value:
        return _OUTPUT_DIR.value, 0 if _LABEL_OFFSET.value is None else _LABEL_OFFSET.value
    return _LOCAL_SCRATCH_DIR.value, 1 if _LABEL_OFFSET.value is None else _LABEL_OFFSET.value


def main(argv: list[str]) -> int:
    cli.no_arguments(argv)
    output_dir, label_offset = _output_dir_and_label_offset()
    with cli.user_errors():
        summary = convert.convert(
            _RAW_DATA_DIR.value,
            output_dir,
            num_workers=_NUM_WORKERS.value,
            train_shards=_TRAIN_SHARDS.value,
            validation_shards=_VALIDATION_SHARDS.value,
            label_offset=label_offset,
            validation_fraction=_VALIDATION_FRACTION.value,
            seed=_SEED.value,
            validation_labels=_VALIDATION_LABELS.value,
            max_image_pixels=_MAX_IMAGE_PIXELS.value,
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
