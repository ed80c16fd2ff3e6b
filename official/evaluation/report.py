"""The files of one evaluation, under `<model_dir>/evaluation/` (or `--output_dir`):

  <name>.json                 every metric, the checkpoint, data and preprocessing used
  <name>_confusion.csv        confusion matrix (rows: true class, columns: predicted)
  <name>_confusion.png        the same, coloured by row share, with counts (figures.py)
  <name>_predictions.csv      per example: file, label, top-5 classes and probabilities
  <name>_misclassified/*.png  CAM overlays of the worst mistakes (cam.draw_mistakes)
  events.out.tfevents.*       the same scalars, the confusion matrix, a bar chart of the
                              per-class accuracy and the CAM overlays, as images

`name` says the mode, its scales and the checkpoint (e.g. `center_ckpt-330`). Nothing in them
depends on the time of the run: evaluating the same checkpoint again writes the same files.
"""

from __future__ import annotations

import csv
import io
import os

import numpy as np
import tensorflow as tf

from official import atomic
from official.evaluation import figures, metrics

TOP_K_WRITTEN = 5


def predictions_csv(probabilities, labels, class_names, names: list[str] | None) -> str:
    """Per example: index, file, label, then the top-5 classes and their probabilities."""
    k = min(TOP_K_WRITTEN, probabilities.shape[1])
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    lines = []
    header = ["index", "file", "label", "label_name"]
    header += [f"class_{i + 1}" for i in range(k)] + [f"probability_{i + 1}" for i in range(k)]
    lines.append(header)
    for index, (row, label) in enumerate(zip(order, labels)):
        lines.append(
            [index, names[index] if names else "", int(label), class_names[label]]
            + [int(c) for c in row]
            + [f"{probabilities[index, c]:.9g}" for c in row]
        )
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(lines)
    return buffer.getvalue()


def write_results(
    directory: str,
    results: dict,
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    *,
    example_names: list[str] | None,
    step: int,
    overlays: np.ndarray | None = None,
) -> dict:
    """Adds the metrics to `results` and writes the JSON, the CSVs and the TensorBoard
    summaries of evaluation `results["name"]`; returns the results with "results_file"."""
    name = results["name"]
    summary = metrics.summarize(probabilities, labels, class_names)
    matrix = summary.pop("confusion_matrix")
    paths = {
        "confusion_csv": os.path.join(directory, f"{name}_confusion.csv"),
        "confusion_png": os.path.join(directory, f"{name}_confusion.png"),
        "predictions_csv": os.path.join(directory, f"{name}_predictions.csv"),
    }
    atomic.write_text(paths["confusion_csv"], metrics.confusion_csv(matrix, class_names))
    confusion_picture = figures.pixels(figures.confusion_figure(matrix, class_names, name))
    figures.save_png(confusion_picture, paths["confusion_png"])
    accuracy_picture = figures.pixels(
        figures.per_class_accuracy_figure(metrics.per_class_accuracy(matrix), class_names, name)
    )
    atomic.write_text(
        paths["predictions_csv"],
        predictions_csv(probabilities, labels, class_names, example_names),
    )
    results = {**results, **summary, **paths}
    writer = tf.summary.create_file_writer(directory)
    with writer.as_default(step=step):
        for key in ("top1", "top5", "ece", "nll", "mean_per_class_accuracy"):
            tf.summary.scalar(f"{name}/{key}", results[key])
        tf.summary.image(f"{name}/confusion_matrix", confusion_picture[None])
        tf.summary.image(f"{name}/per_class_accuracy", accuracy_picture[None])
        if overlays is not None and len(overlays):
            tf.summary.image(f"{name}/misclassified_cam", overlays, max_outputs=len(overlays))
    writer.close()
    results_file = os.path.join(directory, f"{name}.json")
    atomic.write_json(results_file, results)
    return {**results, "results_file": results_file}
