"""Wires a training run's saved config into an evaluation and writes its results.

This is the only place of the evaluation package that reads a run's config; the modes, metrics,
CAM and TFLite code below it take plain arguments.

Results of `run` go to `<model_dir>/evaluation/` (or `output_dir`), named after the mode and
the checkpoint, e.g. `center_ckpt-330`:
  <name>.json                 every metric, the checkpoint, data and preprocessing used
  <name>_confusion.csv        confusion matrix (rows: true class, columns: predicted)
  <name>_predictions.csv      per example: file, label, top-5 classes and probabilities
  <name>_misclassified/*.png  CAM overlays of the worst mistakes (--cam_misclassified)
  events.out.tfevents.*       the same scalars, the confusion matrix and the CAM overlays
Nothing in them depends on the time of the run: evaluating the same checkpoint again writes
the same files.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re

import numpy as np
import tensorflow as tf

from official import config as config_lib
from official import registry
from official.data import pipeline, preprocess
from official.evaluation import cam, dense, ensemble, metrics, modes, serving, tflite
from official.training import experiment as training_experiment

# Errors a user causes with flags or files; entry points print them as one line.
USER_ERRORS = (
    dense.DenseEvaluationError,
    ensemble.EnsembleError,
    serving.ExportError,
    tflite.TFLiteError,
)
MODES = ("center", "multi_crop", "multi_scale", "dense", "ensemble")
CROPS = ("ten", "grid")
RESULTS_DIR = "evaluation"
TOP_K_WRITTEN = 5
# VGG's test scales Q = {256, 384, 512} for 224 crops trained at S = 256 (arXiv 1409.1556
# §4.3), i.e. S, 1.5 S and 2 S of the reference resize size.
GRID_SCALE_FACTORS = (1.0, 1.5, 2.0)
# Multi-scale test scales around a fixed training scale S: {S − 32, S, S + 32} (§4.2).
MULTI_SCALE_OFFSETS = (-32, 0, 32)


@dataclasses.dataclass
class Options:
    """What to evaluate and how (the `official.evaluate` flags)."""

    mode: str = "center"
    crops: str = "ten"  # multi_crop: "ten" or "grid" (VGG 5×5 × flips per scale).
    scales: tuple[int, ...] = ()  # Test scales Q; (): the mode's default.
    flip: bool = True  # dense / multi_scale: average with the mirror image.
    source: str = ""  # "": the run's --config.data.source.
    split: str = pipeline.VALIDATION
    batch_size: int = 0  # 0: the run's eval batch size.
    checkpoint: str | None = None  # None: the run's latest.
    ensemble: str = ""  # mode=ensemble: "DIR1,DIR2,..." runs or checkpoint paths.
    tflite: str = ""  # A .tflite file to evaluate instead of the checkpoint (center crops).
    cam_misclassified: int = 0  # Write CAM overlays of this many worst mistakes.
    output_dir: str = ""  # "": <model_dir>/evaluation.


def _fail(flag: str, value, expected: str) -> None:
    raise config_lib.ConfigError(f"--{flag}={value!r}: {expected}")


def read_labels(model_dir: str) -> list[str]:
    path = os.path.join(model_dir, training_experiment.LABELS_FILE)
    if not os.path.isfile(path):
        raise config_lib.ConfigError(f"--model_dir={model_dir}: no {path}")
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def preprocessing_of(config: config_lib.Config) -> modes.Preprocessing:
    return modes.Preprocessing(
        image_size=config.data.image_size,
        crop_fraction=config.data.crop_fraction,
        interpolation=config.data.interpolation,
    )


def default_scales(options: Options, preprocessing: modes.Preprocessing) -> tuple[int, ...]:
    size = preprocessing.resize_size
    if options.scales:
        return tuple(options.scales)
    if options.mode == "multi_crop":
        return tuple(int(round(size * f)) for f in GRID_SCALE_FACTORS)
    if options.mode == "multi_scale":
        return tuple(size + offset for offset in MULTI_SCALE_OFFSETS)
    return (size,)


def check_scales(options: Options, scales, preprocessing, min_resolution: int) -> None:
    smallest = preprocessing.image_size if options.mode == "multi_crop" else min_resolution
    for scale in scales:
        if scale < smallest:
            what = "the crop size" if options.mode == "multi_crop" else "the model's minimum"
            _fail(
                "scales",
                ",".join(map(str, scales)),
                f"test scale {scale} is below {what} ({smallest} px); pass larger --scales",
            )


def result_name(options: Options, checkpoint: str | None, scales: tuple[int, ...]) -> str:
    """e.g. center_ckpt-330, multi_crop_grid_256-384-512_ckpt-330, dense_256_noflip_ckpt-330."""
    if options.tflite:
        stem = os.path.splitext(os.path.basename(options.tflite))[0]
        version = os.path.basename(os.path.dirname(os.path.abspath(options.tflite)))
        return f"tflite_{stem}" + (f"_v{version}" if version.isdigit() else "")
    name = options.mode
    if options.mode == "multi_crop":
        name += f"_{options.crops}"
    if options.mode in ("dense", "multi_scale") or name == "multi_crop_grid":
        name += "_" + "-".join(str(scale) for scale in scales)
    if options.mode in ("dense", "multi_scale") and not options.flip:
        name += "_noflip"
    return name + (f"_{os.path.basename(checkpoint)}" if checkpoint else "")


def checkpoint_step(checkpoint: str | None) -> int:
    match = re.search(r"ckpt-(\d+)$", checkpoint or "")
    return int(match.group(1)) if match else 0


def open_source(spec: str, config: config_lib.Config, class_names: list[str]):
    """The data source, checked to have the run's classes in the same order."""
    source = pipeline.open_source(
        spec,
        num_classes=config.model.num_classes,
        synthetic_examples=config.data.synthetic_examples,
        image_size=config.data.image_size,
    )
    if list(source.info.class_names) != list(class_names):
        raise pipeline.DataError(
            f"--source={spec}: its classes ({', '.join(source.info.class_names[:5])}, ...) "
            "differ from the run's labels.txt"
        )
    return source


def _write_text(path: str, text: str) -> None:
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(temporary, path)


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


def worst_mistakes(probabilities: np.ndarray, labels: np.ndarray, count: int) -> list[int]:
    """Indices of the `count` wrong top-1 predictions made with the highest confidence."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    return [int(i) for i in wrong[np.argsort(-confidence, kind="stable")][:count]]


def center_images(source, split: str, indices: list[int], preprocessing) -> np.ndarray:
    """The center-crop eval images of the given examples, in the order of `indices`."""
    dataset = modes.encoded_examples(source, split, indices).map(
        lambda encoded, label: preprocess.eval_image(
            encoded,
            image_size=preprocessing.image_size,
            crop_fraction=preprocessing.crop_fraction,
            interpolation=preprocessing.interpolation,
        )
    )
    by_position = dict(zip(sorted(indices), dataset.as_numpy_iterator()))
    return np.stack([by_position[i] for i in indices])


def write_misclassified(
    model, source, split, probabilities, labels, class_names, *, count, preprocessing, directory
) -> tuple[list[str], np.ndarray]:
    """CAM overlays of the worst mistakes; returns the PNG paths and the overlays."""
    indices = worst_mistakes(probabilities, labels, count)
    if not indices:
        return [], np.zeros((0, 1, 1, 3), np.uint8)
    images = center_images(source, split, indices, preprocessing)
    predicted = probabilities[indices].argmax(axis=1)
    maps = cam.ActivationMapper(model)(images.astype(np.float32), predicted)
    paths, pictures = [], []
    for rank, (index, image, heat, guess) in enumerate(zip(indices, images, maps.maps, predicted)):
        caption = (
            f"predicted {class_names[guess]} ({probabilities[index, guess]:.2f}), "
            f"true {class_names[labels[index]]}"
        )
        picture = cam.overlay(image, heat, caption)
        paths.append(
            cam.save_png(picture, os.path.join(directory, f"{rank + 1:03d}_example{index}.png"))
        )
        pictures.append(np.asarray(picture))
    return paths, np.stack(pictures)


def _load(model_dir: str, checkpoint: str | None):
    model, config, _, path = training_experiment.load_trained_model(
        model_dir, checkpoint=checkpoint
    )
    return model, config, path


def _tflite_posteriors(path, source, split, batch_size, preprocessing):
    """A .tflite model on the center crops of the run's evaluation pipeline."""
    classifier = tflite.TFLiteClassifier(path)
    if classifier.image_size != preprocessing.image_size:
        _fail(
            "tflite",
            path,
            f"input is {classifier.image_size} px, the run's {preprocessing.image_size} px",
        )
    dataset = pipeline.build_dataset(
        source,
        split=split,
        is_training=False,
        batch_size=batch_size,
        image_size=preprocessing.image_size,
        crop_fraction=preprocessing.crop_fraction,
        interpolation=preprocessing.interpolation,
    )
    return tflite.evaluate(
        classifier, dataset.as_numpy_iterator(), modes.num_examples(source, split)
    )


def _ensemble_posteriors(members, source, split, batch_size, class_names):
    """The members' mean posterior; each member runs center crops with its own preprocessing.

    Returns:
      (probabilities, labels, [{"model_dir", "checkpoint"} of every member]).
    """
    outputs, described = [], []
    for member in members:
        model, config, path = _load(member.model_dir, member.checkpoint)
        if read_labels(member.model_dir) != class_names:
            _fail("ensemble", member.name, "its labels.txt differs from the first member's")
        outputs.append(
            modes.center(
                model, source, split, batch_size=batch_size, preprocessing=preprocessing_of(config)
            )
        )
        described.append({"model_dir": member.model_dir, "checkpoint": path})
    probabilities = ensemble.average([p for p, _ in outputs], [labels for _, labels in outputs])
    return probabilities, outputs[0][1], described


def _model_posteriors(model, spec, options, source, batch_size, preprocessing, scales, settings):
    """One Keras model in the center, multi_crop, dense or multi_scale mode; records the
    mode's settings in `settings`."""
    if options.mode == "center":
        return modes.center(
            model, source, options.split, batch_size=batch_size, preprocessing=preprocessing
        )
    if options.mode == "multi_crop":
        if options.crops == "grid":
            check_scales(options, scales, preprocessing, spec.min_resolution)
            settings["scales"] = list(scales)
        settings.update(
            crops=options.crops, crops_per_image=modes.crops_per_image(options.crops, scales)
        )
        return modes.multi_crop(
            model,
            source,
            options.split,
            batch_size=batch_size,
            preprocessing=preprocessing,
            kind=options.crops,
            scales=scales,
        )
    check_scales(options, scales, preprocessing, spec.min_resolution)
    settings.update(scales=list(scales), flip=options.flip)
    return modes.dense_eval(
        model,
        source,
        options.split,
        preprocessing=preprocessing,
        scales=scales,
        flip=options.flip,
        fully_convolutional=dense.family_converter(spec.builder),
    )


def run(model_dir: str | None, options: Options) -> dict:
    """Evaluates a run (or an ensemble of runs) and writes the results.

    Returns:
      The results written to `<name>.json`, plus "results_file".
    """
    if options.mode not in MODES:
        _fail("mode", options.mode, "choose one of " + ", ".join(MODES))
    if options.crops not in CROPS:
        _fail("crops", options.crops, "choose one of " + ", ".join(CROPS))
    if options.tflite and options.mode != "center":
        _fail("mode", options.mode, "a --tflite model is evaluated with --mode=center only")
    members = []
    if options.mode == "ensemble":
        members = ensemble.parse_members(options.ensemble)
        model_dir = model_dir or members[0].model_dir
    if not model_dir:
        _fail("model_dir", model_dir, "required (a training run directory)")
    if options.cam_misclassified and (options.tflite or options.mode == "ensemble"):
        _fail("cam_misclassified", options.cam_misclassified, "needs a single Keras model")

    config, derived = config_lib.load(model_dir)
    class_names = read_labels(model_dir)
    source_spec = options.source or config.data.source
    source = open_source(source_spec, config, class_names)
    if options.split not in source.info.num_examples:
        _fail("split", options.split, "choose one of " + ", ".join(source.info.num_examples))
    batch_size = options.batch_size or (derived.eval_batch_size if derived else 64)
    preprocessing = preprocessing_of(config)
    scales = default_scales(options, preprocessing)
    settings = dataclasses.asdict(preprocessing)
    model, checkpoint = None, None
    if options.tflite:
        probabilities, labels = _tflite_posteriors(
            options.tflite, source, options.split, batch_size, preprocessing
        )
        settings["tflite"] = os.path.abspath(options.tflite)
    elif options.mode == "ensemble":
        probabilities, labels, settings["members"] = _ensemble_posteriors(
            members, source, options.split, batch_size, class_names
        )
    else:
        model, config, checkpoint = _load(model_dir, options.checkpoint)
        spec = registry.get(config.model.name)
        probabilities, labels = _model_posteriors(
            model, spec, options, source, batch_size, preprocessing, scales, settings
        )

    name = result_name(options, checkpoint, scales)
    directory = options.output_dir or os.path.join(model_dir, RESULTS_DIR)
    os.makedirs(directory, exist_ok=True)
    overlays = None
    results = {
        "mode": options.mode,
        "name": name,
        "model_dir": os.path.abspath(model_dir),
        "model": config.model.name,
        "checkpoint": checkpoint,
        "source": source_spec,
        "split": options.split,
        "settings": settings,
        "misclassified_cam": [],
    }
    if options.cam_misclassified:
        results["misclassified_cam"], overlays = write_misclassified(
            model,
            source,
            options.split,
            probabilities,
            labels,
            class_names,
            count=options.cam_misclassified,
            preprocessing=preprocessing,
            directory=os.path.join(directory, f"{name}_misclassified"),
        )
    return write_results(
        directory,
        results,
        probabilities,
        labels,
        class_names,
        example_names=modes.example_names(source, options.split),
        step=checkpoint_step(checkpoint),
        overlays=overlays,
    )


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
        "predictions_csv": os.path.join(directory, f"{name}_predictions.csv"),
    }
    _write_text(paths["confusion_csv"], metrics.confusion_csv(matrix, class_names))
    _write_text(
        paths["predictions_csv"],
        predictions_csv(probabilities, labels, class_names, example_names),
    )
    results = {**results, **summary, **paths}
    writer = tf.summary.create_file_writer(directory)
    with writer.as_default(step=step):
        for key in ("top1", "top5", "ece", "nll", "mean_per_class_accuracy"):
            tf.summary.scalar(f"{name}/{key}", results[key])
        tf.summary.image(f"{name}/confusion_matrix", metrics.confusion_image(matrix)[None])
        if overlays is not None and len(overlays):
            tf.summary.image(f"{name}/misclassified_cam", overlays, max_outputs=len(overlays))
    writer.close()
    results_file = os.path.join(directory, f"{name}.json")
    _write_text(results_file, json.dumps(results, indent=2, sort_keys=True) + "\n")
    return {**results, "results_file": results_file}
