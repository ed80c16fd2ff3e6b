"""The accuracy / speed / memory trade-off table of a set of models on this machine:

  python -m official.tradeoff --models=resnet18,bwn_resnet18,runs/x \
      --modes=keras_float32,tflite_float --out=DIR

Every entry of --models is a registry name (an untrained build at --image_size with
--num_classes classes and --width_multiplier, weights: "untrained") or a training run directory
(its config, latest checkpoint (EMA weights when kept) and labels; a pruned run's masks folded
in as the export folds them). For each entry and each mode of --modes it measures:

  params, MACs           Keras count_params() (BN statistics included) and multiply-adds from
                         the layer shapes (official/models/flops.py), batch 1.
  activations (MActs)    elements produced by the convolutions and dense layers of one image,
                         fvcore's ActivationCountAnalysis convention that timm's
                         `infer_macts` column uses (timm benchmark.py).
  weight bytes           the mode's artifact on disk and its gzip-compressed size
                         (official.export_lib.export_size): Keras modes the `.weights.h5` file,
                         saved_model the SavedModel directory, tflite_* the .tflite file;
                         packed bytes (1 bit per binary weight, official/serving/packed.py) for
                         binary networks.
  peak memory            ANALYTIC, not measured: the bytes of the model's variables plus the
                         largest total of activation tensors alive at once when the layers run
                         one after another in graph order (a tensor lives from the layer that
                         makes it to its last consumer), batch 1, each tensor at its dtype
                         (bfloat16 activations under mixed_bfloat16; 1 byte for int8). It
                         counts every layer output separately, as an unfused graph would, so it
                         is an upper estimate of what a runtime that fuses or reuses buffers needs.
  latency                median and 90th percentile of --repeats single-image calls (after 3
                         warm-up calls), ms.
  throughput             timm's `infer_samples_per_sec` and `infer_step_time`: --batch_size
                         images per call, the mean over --repeats calls (after one warm-up).
  top-1                  a run's metrics.json (measured, top1_source "run metrics.json"); empty
                         for an untrained build. The recipe flagfiles state their expected
                         accuracy only in comment lines, not as a table, so no cited accuracy
                         is filled in.

Modes: keras_float32 and keras_bfloat16 (a tf.function of the Keras model built under the
float32 / mixed_bfloat16 policy, the same weights), saved_model (the export's `predict_images`
signature, official/serving/saved_model.py, loaded back), tflite_float and tflite_int8 (that
signature converted by official/serving/tflite.py and run by the LiteRT interpreter with one
thread per core; int8 is calibrated on CALIBRATION_EXAMPLES training images of a run, or on
uniform random pixels for an untrained build). Every mode runs for every entry; the CSV has
one row per entry and mode.

Written to --out (each file complete or not at all, official/atomic.py): tradeoff.csv (timm's
benchmark-infer column names first, then ours), tradeoff.md (a Markdown table, then the chart
as text, which a README can hold without a picture file), and tradeoff.png (accuracy, or
parameters when some entry has no accuracy, against batch-1 latency, logarithmic when it spans
more than 20×; marker area proportional to peak memory, one colour per family, one marker shape
per mode) when matplotlib is installed.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import tempfile
import time
from collections.abc import Callable

import numpy as np

from official import atomic
from official.errors import UserError

MODES = ("keras_float32", "keras_bfloat16", "saved_model", "tflite_float", "tflite_int8")
# timm's published benchmark-infer-*.csv columns (huggingface/pytorch-image-models results/,
# benchmark.py), in their order and units: param_count in millions, infer_gmacs in GMACs,
# infer_macts in millions of activations, infer_step_time in ms per batch.
TIMM_COLUMNS = (
    "model",
    "infer_img_size",
    "infer_samples_per_sec",
    "infer_step_time",
    "infer_batch_size",
    "param_count",
    "infer_gmacs",
    "infer_macts",
)
COLUMNS = TIMM_COLUMNS + (
    "mode",
    "family",
    "weights",
    "params",
    "macs",
    "latency_p50_ms",
    "latency_p90_ms",
    "weight_bytes",
    "gzip_bytes",
    "packed_bytes",
    "peak_memory_bytes",
    "peak_memory_method",
    "top1",
    "top1_source",
    "error",
)
PEAK_MEMORY_METHOD = "analytic"
CSV_FILE, MARKDOWN_FILE, PLOT_FILE = "tradeoff.csv", "tradeoff.md", "tradeoff.png"
# Calibration images of int8 conversion (the converter's statistics settle within tens).
CALIBRATION_EXAMPLES = 32
_WARMUP_CALLS = 3
_UNTRAINED, _RUN_METRICS = "untrained", "run metrics.json"


class TradeoffError(UserError, ValueError):
    """A --models entry, mode or number the tool cannot use; the message names it."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One --models entry, checked but not built: a registry name or a run directory."""

    given: str
    model_name: str
    family: str
    image_size: int
    num_classes: int
    run_dir: str | None = None
    width_multiplier: float = 0.0

    @property
    def label(self) -> str:
        """What the tables call it: the model name, and a run's directory name (two runs of one
        architecture, e.g. dense and pruned, are two rows)."""
        if self.run_dir is None:
            return self.model_name
        return f"{os.path.basename(os.path.normpath(self.run_dir))} ({self.model_name})"


def _family(spec) -> str:
    """The registry family, with the binary mode of a binary variant ("resnet/bwn"), so a
    binary network and its real-valued parent get their own colours."""
    binary = spec.kwargs.get("binary")
    return f"{spec.family}/{binary}" if binary else spec.family


def resolve(
    models: list[str],
    *,
    image_size: int = 0,
    num_classes: int = 1000,
    width_multiplier: float = 0.0,
) -> list[Entry]:
    """Checks every --models entry without building anything.

    Args:
      models: registry names and run directories.
      image_size: registry names' input size (0: the model's reference resolution).
      num_classes: registry names' classes.
      width_multiplier: registry names' width (0: the variant's own).

    Raises:
      TradeoffError: an entry that is neither, a run without checkpoint or labels, a size below
        the model's minimum.
    """
    from official import runs
    from official.models import registry

    if not models:
        raise TradeoffError("--models: give one or more registry names or run directories")
    if num_classes < 1:
        raise TradeoffError(f"--num_classes={num_classes}: expected >= 1")
    entries = []
    for given in models:
        if os.path.isdir(given):
            if not runs.is_run(given):
                raise TradeoffError(
                    f"--models: {given} is a directory but not a training run (no "
                    f"{runs.CONFIG_FILE})"
                )
            config, _ = runs.load_config(given)
            if not runs.checkpoints_newest_first(runs.checkpoint_dir(given)):
                raise TradeoffError(f"--models: {given} has no checkpoint")
            runs.read_labels(given)
            spec = registry.get(config.model.name)
            entries.append(
                Entry(
                    given,
                    config.model.name,
                    _family(spec),
                    config.data.image_size,
                    config.model.num_classes,
                    run_dir=given,
                )
            )
            continue
        try:
            spec = registry.get(given)
        except registry.UnknownModelError as e:
            raise TradeoffError(f"--models: {e} (nor is it a run directory)") from None
        size = image_size or spec.default_resolution
        if size < spec.min_resolution:
            raise TradeoffError(
                f"--image_size={size}: {given} needs at least {spec.min_resolution} px"
            )
        entries.append(
            Entry(given, given, _family(spec), size, num_classes, width_multiplier=width_multiplier)
        )
    return entries


def check_modes(modes: list[str]) -> list[str]:
    """The modes, or TradeoffError naming an unknown one (or a missing TFLite runtime)."""
    if not modes:
        raise TradeoffError(f"--modes: give one or more of {', '.join(MODES)}")
    for mode in modes:
        if mode not in MODES:
            raise TradeoffError(f"--modes: unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if any(mode.startswith("tflite") for mode in modes):
        from official.serving import tflite

        try:
            tflite._interpreter_class()
        except tflite.TFLiteError as e:
            raise TradeoffError(f"--modes: {e}") from None
    return list(modes)


# ---------------------------------------------------------------------- analytic quantities


def _dtype_bytes(dtype) -> int:
    name = str(getattr(dtype, "name", dtype))
    return 2 if name in ("bfloat16", "float16") else np.dtype(name).itemsize


def _elements(tensor) -> int:
    return math.prod(int(d) for d in tensor.shape[1:])


def activation_count(model) -> int:
    """Elements produced by the model's convolutions and dense layers for one image (fvcore's
    activation count, timm's `infer_macts` × 1e6)."""
    import keras

    from official.models import graph

    kinds = (keras.layers.Conv2D, keras.layers.Dense)  # Depthwise/Separable are Conv2D-based.
    total = 0
    for call in graph.calls(model):
        if isinstance(call.layer, kinds) or hasattr(call.layer, "multiply_adds"):
            total += sum(_elements(t) for t in call.outputs)
    return total


def peak_memory_bytes(model, element_bytes: int | None = None) -> int:
    """Analytic peak memory of one batch-1 forward pass (see the module docstring): variable
    bytes plus the largest total of live activation tensors in graph order.

    Args:
      model: a functional Keras model with static spatial shapes.
      element_bytes: bytes per number for weights and activations alike (1 for int8); None:
        each variable's and tensor's own dtype.
    """
    from official.models import graph

    def size(tensor) -> int:
        return _elements(tensor) * (element_bytes or _dtype_bytes(tensor.dtype))

    weights = sum(
        math.prod(v.shape) * (element_bytes or _dtype_bytes(v.dtype)) for v in model.weights
    )
    order = list(graph.calls(model))
    last_use = {id(t): len(order) for t in model.outputs}  # Outputs live to the end.
    for index, call in enumerate(order):
        for tensor in call.inputs:
            last_use[id(tensor)] = max(last_use.get(id(tensor), index), index)
    live = {id(t): size(t) for t in model.inputs}
    peak = sum(live.values())
    for index, call in enumerate(order):
        for tensor in call.outputs:
            live[id(tensor)] = size(tensor)
        peak = max(peak, sum(live.values()))
        for tensor in call.inputs + call.outputs:
            if last_use.get(id(tensor), index) <= index:
                live.pop(id(tensor), None)
    return int(weights + peak)


# ------------------------------------------------------------------------------ measuring


def time_calls(forward: Callable, images: np.ndarray, repeats: int, warmup: int) -> list[float]:
    """Milliseconds of `repeats` calls forward(images) after `warmup` untimed ones (forward
    must return host values, so the time includes the whole computation)."""
    for _ in range(warmup):
        forward(images)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward(images)
        times.append(1000 * (time.perf_counter() - start))
    return times


@dataclasses.dataclass
class _Built:
    """An entry's float32 model and what its modes share."""

    entry: Entry
    model: object
    labels_path: str
    geometry: object
    top1: float | None
    scratch: str
    config: object = None
    # The SavedModel directories, keyed by whether batch-1 calls have a branch of their own.
    saved_model_dirs: dict = dataclasses.field(default_factory=dict)
    keras_weights: str | None = None


def _build(entry: Entry, scratch: str) -> _Built:
    from official import runs
    from official.data import preprocess
    from official.models import registry
    from official.training import pruning

    if entry.run_dir:
        trained = runs.load_trained_model(entry.run_dir)
        pruning.strip(trained.model, trained.checkpoint)
        metrics_path = os.path.join(entry.run_dir, runs.METRICS_FILE)
        top1 = None
        if os.path.isfile(metrics_path):
            import json

            with open(metrics_path, encoding="utf-8") as f:
                top1 = 100 * float(json.load(f)["top1"])
        return _Built(
            entry,
            trained.model,
            runs.labels_path(entry.run_dir),
            runs.geometry(trained.config),
            top1,
            scratch,
            config=trained.config,
        )
    spec = registry.get(entry.model_name)
    labels = atomic.write_text(
        os.path.join(scratch, "labels.txt"),
        "".join(f"class_{i}\n" for i in range(entry.num_classes)),
    )
    return _Built(
        entry,
        _build_keras(entry),
        labels,
        preprocess.Geometry(entry.image_size, spec.crop_fraction, spec.interpolation),
        None,
        scratch,
    )


def _build_keras(entry: Entry, config=None):
    """The entry's architecture under the current dtype policy (untrained)."""
    from official import runs
    from official.models import heads, registry

    if config is not None:
        return heads.main_output_model(runs.build_model(config))
    overrides = {"width_multiplier": entry.width_multiplier} if entry.width_multiplier else {}
    spec = registry.get(entry.model_name)
    return spec.build(num_classes=entry.num_classes, image_size=entry.image_size, **overrides)


def _keras_forward(model) -> Callable:
    import keras
    import tensorflow as tf

    function = tf.function(lambda x: model(x, training=False))
    return lambda images: keras.ops.convert_to_numpy(function(tf.constant(images)))


def _keras_weights(built: _Built) -> str:
    if built.keras_weights is None:
        built.keras_weights = os.path.join(built.scratch, "model.weights.h5")
        built.model.save_weights(built.keras_weights)
    return built.keras_weights


def _saved_model(built: _Built, *, single_image_branch: bool = True) -> str:
    """The entry's SavedModel as `export` writes it (for TFLite, as `export --format=tflite`
    converts it: without the batch-1 branch)."""
    from official.serving import saved_model

    if single_image_branch not in built.saved_model_dirs:
        directory = os.path.join(built.scratch, f"saved_model_{int(single_image_branch)}")
        module = saved_model.ServingModule(
            built.model,
            labels_path=built.labels_path,
            geometry=built.geometry,
            single_image_branch=single_image_branch,
        )
        saved_model.save_module(module, directory)
        built.saved_model_dirs[single_image_branch] = directory
    return built.saved_model_dirs[single_image_branch]


@dataclasses.dataclass
class _Prepared:
    forward: Callable[[np.ndarray], object]
    artifact: str
    peak_memory_bytes: int


def _prepare_keras_float32(built: _Built) -> _Prepared:
    return _Prepared(
        _keras_forward(built.model), _keras_weights(built), peak_memory_bytes(built.model)
    )


def _prepare_keras_bfloat16(built: _Built) -> _Prepared:
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = _build_keras(built.entry, built.config)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    model.set_weights(built.model.get_weights())
    # Mixed precision keeps float32 variables: the weights file is the float32 model's.
    return _Prepared(_keras_forward(model), _keras_weights(built), peak_memory_bytes(model))


def _prepare_saved_model(built: _Built) -> _Prepared:
    import tensorflow as tf

    from official.serving import saved_model

    directory = _saved_model(built)
    signature = tf.saved_model.load(directory).signatures[saved_model.IMAGES_SIGNATURE]

    def forward(images):
        return signature(**{saved_model.IMAGES_INPUT: tf.constant(images)})["logits"].numpy()

    return _Prepared(forward, directory, peak_memory_bytes(built.model))


def _representative_images(built: _Built) -> list[np.ndarray]:
    if built.config is not None:
        from official import export_lib

        return export_lib.calibration_images(built.config, CALIBRATION_EXAMPLES)
    rng = np.random.default_rng(0)
    size = built.entry.image_size
    return [
        rng.uniform(0, 255, (1, size, size, 3)).astype(np.float32)
        for _ in range(CALIBRATION_EXAMPLES)
    ]


def _prepare_tflite(quantization: str) -> Callable[[_Built], _Prepared]:
    def prepare(built: _Built) -> _Prepared:
        from official.serving import tflite

        images = _representative_images(built) if quantization == "int8" else None
        flatbuffer = tflite.convert(
            _saved_model(built, single_image_branch=False),
            quantization=quantization,
            representative_images=images,
        )
        path = os.path.join(built.scratch, tflite.model_file_name(quantization))
        with atomic.open_file(path, "wb") as f:
            f.write(flatbuffer)
        classifier = tflite.TFLiteClassifier(path, num_threads=os.cpu_count())
        element_bytes = 1 if quantization == "int8" else None
        return _Prepared(
            classifier.logits, path, peak_memory_bytes(built.model, element_bytes=element_bytes)
        )

    return prepare


_PREPARE: dict[str, Callable[[_Built], _Prepared]] = {
    "keras_float32": _prepare_keras_float32,
    "keras_bfloat16": _prepare_keras_bfloat16,
    "saved_model": _prepare_saved_model,
    "tflite_float": _prepare_tflite("float"),
    "tflite_int8": _prepare_tflite("int8"),
}


def measure(
    entries: list[Entry],
    modes: list[str],
    *,
    batch_size: int = 8,
    repeats: int = 20,
    progress=None,
) -> list[dict]:
    """One row (COLUMNS) per entry and mode, entries in order, modes in the given order; a
    mode that fails for an entry (conversion or runtime) leaves its timing, size and memory
    columns empty and says why in `error`.

    Args:
      entries: from `resolve`.
      modes: from `check_modes`.
      batch_size: images per call of the throughput measurement.
      repeats: timed calls of each measurement.
      progress: an official.progress.Progress over len(entries) * len(modes) units, or None.
    """
    import keras
    import tensorflow as tf
    from absl import logging

    from official import export_lib
    from official.errors import tensorflow_words
    from official.models import binary, count_flops
    from official.serving import packed

    rows, done = [], 0
    for entry in entries:
        with tempfile.TemporaryDirectory(prefix="tradeoff-") as scratch:
            built = _build(entry, scratch)
            model = built.model
            params, macs = model.count_params(), count_flops(model)
            packed_bytes = ""
            if binary.parameter_split(model).binary:
                packed_path = os.path.join(scratch, packed.FILE_NAME)
                packed_bytes = packed.save(model, packed_path)["file_bytes"]
            common = {
                "model": entry.label,
                "infer_img_size": entry.image_size,
                "infer_batch_size": batch_size,
                "param_count": round(params / 1e6, 4),
                "infer_gmacs": round(macs / 1e9, 4),
                "infer_macts": round(activation_count(model) / 1e6, 4),
                "family": entry.family,
                "weights": entry.run_dir or _UNTRAINED,
                "params": params,
                "macs": macs,
                "packed_bytes": packed_bytes,
                "peak_memory_method": PEAK_MEMORY_METHOD,
                "top1": "" if built.top1 is None else round(built.top1, 2),
                "top1_source": "" if built.top1 is None else _RUN_METRICS,
            }
            size = entry.image_size
            rng = np.random.default_rng(0)
            one = rng.uniform(0, 255, (1, size, size, 3)).astype(np.float32)
            batch = rng.uniform(0, 255, (batch_size, size, size, 3)).astype(np.float32)
            for mode in modes:
                if progress is not None:
                    progress.update(done, force=True, model=entry.label, mode=mode)
                try:
                    prepared = _PREPARE[mode](built)
                    latency = time_calls(prepared.forward, one, repeats, _WARMUP_CALLS)
                    step = float(np.mean(time_calls(prepared.forward, batch, repeats, 1)))
                except (RuntimeError, ValueError, tf.errors.OpError) as e:
                    # A conversion or runtime that cannot take this model (TFLite's int8
                    # kernels reject some binary networks' quantized kernels): the row says so.
                    error = tensorflow_words(e)
                    logging.warning("%s in %s: not measured (%s)", entry.label, mode, error)
                    rows.append({**common, "mode": mode, "error": error})
                    done += 1
                    continue
                weight_bytes, gzip_bytes = export_lib.export_size(prepared.artifact)
                rows.append(
                    {
                        **common,
                        "mode": mode,
                        "error": "",
                        "infer_samples_per_sec": round(1000 * batch_size / step, 2),
                        "infer_step_time": round(step, 3),
                        "latency_p50_ms": round(float(np.percentile(latency, 50)), 3),
                        "latency_p90_ms": round(float(np.percentile(latency, 90)), 3),
                        "weight_bytes": weight_bytes,
                        "gzip_bytes": gzip_bytes,
                        "peak_memory_bytes": prepared.peak_memory_bytes,
                    }
                )
                done += 1
                if progress is not None:
                    progress.update(done, model=entry.label, mode=mode)
        del built, model
        keras.backend.clear_session()
    return rows


# ------------------------------------------------------------------------------ writing


def csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _mb(value) -> str:
    return "" if value == "" else f"{value / 1e6:.2f}"


def markdown_table(rows: list[dict]) -> str:
    """The rows as a Markdown table (sizes in MB = 1e6 bytes), with the measurement's terms."""
    header = (
        "| model | mode | params (M) | GMACs | weights MB (gzip) | packed MB | peak mem MB | "
        "latency p50 / p90 ms | img/s (batch) | top-1 % |"
    )
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for row in rows:
        top1 = f"{row['top1']:.2f} ({row['top1_source']})" if row["top1"] != "" else ""
        if row["error"]:
            measured = f"not measured: {row['error']} | | | |"
        else:
            measured = (
                f"{_mb(row['weight_bytes'])} ({_mb(row['gzip_bytes'])}) | "
                f"{_mb(row['packed_bytes'])} | {_mb(row['peak_memory_bytes'])} | "
                f"{row['latency_p50_ms']:.2f} / {row['latency_p90_ms']:.2f} | "
                f"{row['infer_samples_per_sec']:.1f} ({row['infer_batch_size']})"
            )
        lines.append(
            f"| {row['model']} | {row['mode']} | {row['params'] / 1e6:.2f} | "
            f"{row['macs'] / 1e9:.3f} | {measured} | {top1} |"
        )
    sizes = sorted({row["infer_img_size"] for row in rows})
    lines.append("")
    lines.append(
        f"Images {', '.join(f'{s} px' for s in sizes)}; peak memory is analytic (variables + "
        "largest set of live activations of a batch-1 forward pass in graph order), not "
        "measured; top-1 only from a run's metrics.json."
    )
    chart = text_scatter(rows)
    if chart:
        lines += ["", "```text", chart.rstrip("\n"), "```"]
    return "\n".join(lines) + "\n"


# One marker shape per runtime mode, so a run's rows in several modes share a colour (its family)
# and a label, and differ in shape.
_MODE_MARKERS = {
    "keras_float32": "o",
    "keras_bfloat16": "s",
    "saved_model": "^",
    "tflite_float": "D",
    "tflite_int8": "v",
}
# Latencies spanning more than this ratio are drawn on a logarithmic axis (binary networks in
# Keras and int8 TFLite differ by 100×; on a linear axis the fast ones collapse into one dot).
_LOG_LATENCY_RATIO = 20.0
# Vertical label offsets (points) tried in turn until a label clears the ones already placed.
_LABEL_OFFSETS = [0.0] + [sign * 10.0 * k for k in range(1, 12) for sign in (-1, 1)]


def _y_value(row: dict, accuracy: bool) -> float:
    return row["top1"] if accuracy else row["params"] / 1e6


def _short_label(row: dict) -> str:
    """The run's directory name (or the registry name): the mode is the marker's shape."""
    return row["model"].split(" (", 1)[0]


def text_scatter(rows: list[dict], width: int = 64, height: int = 14) -> str:
    """The plot as text for a Markdown code block (a README needs no picture file): y = top-1
    (or parameters), x = batch-1 latency (logarithmic when it spans > 20×), each point a letter
    explained below the chart; points that fall into one character cell share it ("*")."""
    rows = [row for row in rows if not row["error"]]
    if not rows:
        return ""
    accuracy = all(row["top1"] != "" for row in rows)
    xs = [row["latency_p50_ms"] for row in rows]
    ys = [_y_value(row, accuracy) for row in rows]
    log_x = max(xs) / max(min(xs), 1e-9) > _LOG_LATENCY_RATIO
    scale_x = (lambda v: math.log10(max(v, 1e-9))) if log_x else (lambda v: v)
    x_low, x_high = scale_x(min(xs)), scale_x(max(xs))
    y_low, y_high = min(ys), max(ys)
    grid = [[" "] * width for _ in range(height)]
    legend = []
    for index, (row, x, y) in enumerate(zip(rows, xs, ys)):
        mark = chr(ord("a") + index) if index < 26 else "#"
        column = round((scale_x(x) - x_low) / ((x_high - x_low) or 1.0) * (width - 1))
        line = height - 1 - round((y - y_low) / ((y_high - y_low) or 1.0) * (height - 1))
        grid[line][column] = mark if grid[line][column] == " " else "*"
        legend.append(f"  {mark}  {_short_label(row)} ({row['mode']}): {x:.2f} ms, {y:.2f}")
    y_name = "top-1 %" if accuracy else "params (M)"
    lines = [y_name]
    for number, cells in enumerate(grid):
        tick = y_high if number == 0 else y_low if number == height - 1 else None
        lines.append(f"{'' if tick is None else f'{tick:.2f}':>7} |{''.join(cells).rstrip()}")
    lines.append(" " * 8 + "+" + "-" * width)
    left, right = f"{min(xs):.2f}", f"{max(xs):.2f} ms"
    lines.append(" " * 9 + left + right.rjust(width - len(left)))
    axis = "logarithmic" if log_x else "linear"
    lines.append(" " * 9 + f"batch-1 latency, median ({axis})")
    lines.extend(legend)
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: str) -> str | None:
    """tradeoff.png: top-1 (every row has one) or parameters against batch-1 latency
    (logarithmic when it spans > 20×), one colour per family, one marker shape per mode, marker
    area ∝ peak memory, each point labelled with its run (labels that would overlap are moved
    apart vertically); None (and a logged line) without matplotlib."""
    from absl import logging

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
    except ImportError:
        logging.warning("matplotlib is not installed: %s not written", path)
        return None
    rows = [row for row in rows if not row["error"]]
    if not rows:
        return None
    accuracy = all(row["top1"] != "" for row in rows)
    families = sorted({row["family"] for row in rows})
    colours = {family: plt.get_cmap("tab10")(i % 10) for i, family in enumerate(families)}
    largest = max(row["peak_memory_bytes"] for row in rows)
    latencies = [row["latency_p50_ms"] for row in rows]
    figure, axes = plt.subplots(figsize=(9, 6))
    if max(latencies) / max(min(latencies), 1e-9) > _LOG_LATENCY_RATIO:
        axes.set_xscale("log")
    for row in rows:
        axes.scatter(
            row["latency_p50_ms"],
            _y_value(row, accuracy),
            s=30 + 400 * row["peak_memory_bytes"] / largest,
            color=colours[row["family"]],
            marker=_MODE_MARKERS.get(row["mode"], "o"),
            alpha=0.65,
            edgecolors="black",
            linewidths=0.5,
        )
    axes.margins(x=0.08, y=0.12)
    figure.canvas.draw()  # Fixes the axis limits, so label positions can be compared in pixels.
    placed: list[tuple[float, float]] = []
    for row in sorted(rows, key=lambda r: (_y_value(r, accuracy), r["latency_p50_ms"])):
        x_pixel, y_pixel = axes.transData.transform(
            (row["latency_p50_ms"], _y_value(row, accuracy))
        )
        shift = next(
            offset
            for offset in _LABEL_OFFSETS
            if not any(
                abs(x_pixel - px) < 70 and abs(y_pixel + offset - py) < 10 for px, py in placed
            )
        )
        placed.append((x_pixel, y_pixel + shift))
        axes.annotate(
            _short_label(row),
            (row["latency_p50_ms"], _y_value(row, accuracy)),
            xytext=(7, shift - 3),
            textcoords="offset points",
            fontsize=7,
        )
    axes.set_xlabel("batch-1 latency, median (ms)")
    axes.set_ylabel("top-1 (%)" if accuracy else "parameters (M)")
    axes.set_title("marker area ∝ peak memory (analytic)")
    family_handles = [
        Line2D([], [], marker="o", linestyle="", color=colours[f], label=f) for f in families
    ]
    modes = [mode for mode in _MODE_MARKERS if any(row["mode"] == mode for row in rows)]
    mode_handles = [
        Line2D([], [], marker=_MODE_MARKERS[m], linestyle="", color="grey", label=m) for m in modes
    ]
    # Both legends outside the axes, where no point can hide under them.
    outside = {"fontsize": 8, "bbox_to_anchor": (1.01, 1.0), "borderaxespad": 0.0}
    first = axes.legend(handles=family_handles, title="family", loc="upper left", **outside)
    axes.add_artist(first)
    outside["bbox_to_anchor"] = (1.01, 0.0)
    axes.legend(handles=mode_handles, title="mode", loc="lower left", **outside)
    figure.tight_layout()
    with atomic.open_file(path, "wb") as f:
        figure.savefig(f, format="png", dpi=120)
    plt.close(figure)
    return path


def write(rows: list[dict], out: str) -> list[str]:
    """Writes tradeoff.csv, tradeoff.md and (with matplotlib) tradeoff.png into `out` (which
    exists); returns the paths written."""
    written = [
        atomic.write_text(os.path.join(out, CSV_FILE), csv_text(rows)),
        atomic.write_text(os.path.join(out, MARKDOWN_FILE), markdown_table(rows)),
    ]
    png = plot(rows, os.path.join(out, PLOT_FILE))
    return written + ([png] if png else [])


def tradeoff(
    models: list[str],
    modes: list[str],
    out: str,
    *,
    batch_size: int = 8,
    image_size: int = 0,
    num_classes: int = 1000,
    width_multiplier: float = 0.0,
    repeats: int = 20,
    progress: bool = True,
) -> tuple[list[dict], list[str]]:
    """Checks everything, measures, writes; returns (rows, paths written).

    Raises:
      TradeoffError / OutputError: bad input, found before anything is measured or written.
    """
    from official.progress import Progress

    if batch_size < 1:
        raise TradeoffError(f"--batch_size={batch_size}: expected >= 1")
    if repeats < 1:
        raise TradeoffError(f"--repeats={repeats}: expected >= 1")
    if image_size < 0:
        raise TradeoffError(f"--image_size={image_size}: expected >= 0 (0: the model's own)")
    if width_multiplier < 0:
        raise TradeoffError(f"--width_multiplier={width_multiplier}: expected > 0")
    if os.path.exists(out) and not os.path.isdir(out):
        raise atomic.OutputError(f"--out={out}: a file is in the way (expected a directory)")
    modes = check_modes(modes)
    entries = resolve(
        models, image_size=image_size, num_classes=num_classes, width_multiplier=width_multiplier
    )
    atomic.ensure_directory(out, "--out")
    bar = Progress(len(entries) * len(modes), "trade-off", unit="measurement") if progress else None
    rows = measure(entries, modes, batch_size=batch_size, repeats=repeats, progress=bar)
    if bar is not None:
        bar.close()
    return rows, write(rows, out)


def main(argv: list[str]) -> None:
    from absl import flags

    from official import cli

    cli.no_arguments(argv)
    values = flags.FLAGS
    with cli.user_errors():
        rows, written = tradeoff(
            values.models,
            values.modes,
            values.out,
            batch_size=values.batch_size,
            image_size=values.image_size,
            num_classes=values.num_classes,
            width_multiplier=values.width_multiplier,
            repeats=values.repeats,
        )
    print(markdown_table(rows), end="")
    for path in written:
        print(f"written:      {path}")


def define_flags() -> None:
    """The command's flags (defined when it runs, so importing this module defines none)."""
    from absl import flags

    flags.DEFINE_list("models", None, "Registry names and/or training run directories.")
    flags.DEFINE_list("modes", ["keras_float32"], f"Any of {', '.join(MODES)}.")
    flags.DEFINE_integer("batch_size", 8, "Images per call of the throughput measurement.")
    flags.DEFINE_integer(
        "image_size", 0, "Registry names: input size (0: reference resolution); runs keep theirs."
    )
    flags.DEFINE_integer("num_classes", 1000, "Registry names: classes of the untrained build.")
    flags.DEFINE_float(
        "width_multiplier", 0.0, "Registry names: width multiplier (0: the variant's own)."
    )
    flags.DEFINE_integer("repeats", 20, "Timed calls per latency / throughput measurement.")
    flags.DEFINE_string("out", None, "Directory for tradeoff.csv, .md and .png.")
    flags.mark_flags_as_required(["models", "out"])


def run() -> None:
    """Console-script entry point."""
    from absl import app

    from official import cli

    define_flags()
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
