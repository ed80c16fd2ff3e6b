"""Data: dataset facts, TFRecord format, converter, preprocessing, augmentation, pipelines."""
