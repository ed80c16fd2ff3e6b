#!/usr/bin/env python
"""`python tools/imagenet_to_tfrecord.py --raw_data_dir=DIR --output_dir=DIR [--verify]`.

ImageNet (or any class-per-folder tree) → sharded TFRecords; the same command as the console
script `imagenet-to-tfrecord`. Flags and exit codes: official/imagenet_to_tfrecord.py.
"""

from official.imagenet_to_tfrecord import run

if __name__ == "__main__":
    run()
