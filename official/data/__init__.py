"""Data: dataset facts, sources, TFRecords, converter, preprocessing, augmentation, pipeline."""
