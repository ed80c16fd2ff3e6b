"""Turns a training run into an evaluation: the wiring behind `python -m official.evaluate`.

`run` reads the run (official/runs.py), opens its data source, computes the posteriors of the
chosen mode (official/evaluation/modes.py; an ensemble of runs, or a TFLite export), and writes
the numbers and files of official/evaluation/report.py.
"""

from __future__ import annotations

import dataclasses
import os
import re

from official import atomic, runs
from official import config as config_lib
from official.data import preprocess, sources
from official.evaluation import cam, dense, ensemble, modes, report
from official.models import registry
from official.serving import tflite

MODES = ("center", "multi_crop", "multi_scale", "dense", "dense+multi_crop", "ensemble")
# Modes that average the posteriors of other modes at the same test scales: VGG's "dense +
# multi-crop" (arXiv 1409.1556 §4.3, Table 5 last rows: "we also assess the complementarity of
# the two evaluation techniques by averaging their soft-max outputs").
COMBINED_MODES = {"dense+multi_crop": ("dense", "multi_crop")}
# What each member of an ensemble may be evaluated with (--ensemble_modes).
MEMBER_MODES = tuple(mode for mode in MODES if mode != "ensemble")
CROPS = ("ten", "grid")
RESULTS_DIR = "evaluation"
# VGG's test scales Q = {256, 384, 512} for 224 crops trained at S = 256 (arXiv 1409.1556
# §4.3), i.e. S, 1.5 S and 2 S of the reference resize size.
GRID_SCALE_FACTORS = (1.0, 1.5, 2.0)
# Multi-scale test scales around a fixed training scale S: {S − 32, S, S + 32} (§4.2, for
# S = 256 and 384). Below VGG's smallest S the step shrinks with S (S/8), so that a 32 px run
# is tested at {28, 32, 36} rather than at an impossible {0, 32, 64}.
MULTI_SCALE_STEP = 32
MULTI_SCALE_REFERENCE = 256
# Images per batch when the run records no evaluation batch size.
DEFAULT_BATCH_SIZE = 64


@dataclasses.dataclass
class Options:
    """What to evaluate and how (the `official.evaluate` flags)."""

    mode: str = "center"
    crops: str = "ten"  # multi_crop: "ten" or "grid" (VGG 5×5 × flips per scale).
    scales: tuple[int, ...] = ()  # Test scales Q; (): the mode's default.
    flip: bool = True  # dense / multi_scale: average with the mirror image.
    source: str = ""  # "": the run's --config.data.source.
    split: str = sources.VALIDATION
    batch_size: int = 0  # 0: the run's eval batch size.
    checkpoint: str | None = None  # None: the run's latest.
    ensemble: str = ""  # mode=ensemble: "DIR1,DIR2,..." runs or checkpoint paths.
    # mode=ensemble: each member's mode (one per member, or one for all); (): center.
    ensemble_modes: tuple[str, ...] = ()
    tflite: str = ""  # A .tflite file to evaluate instead of the checkpoint (center crops).
    cam_misclassified: int = 0  # Write CAM overlays of this many worst mistakes.
    output_dir: str = ""  # "": <model_dir>/evaluation.


def _fail(flag: str, value, expected: str) -> None:
    raise config_lib.ConfigError(f"--{flag}={value!r}: {expected}")


def _check_options(model_dir: str | None, options: Options) -> None:
    if options.mode not in MODES:
        _fail("mode", options.mode, "choose one of " + ", ".join(MODES))
    if options.crops not in CROPS:
        _fail("crops", options.crops, "choose one of " + ", ".join(CROPS))
    if options.tflite and options.mode != "center":
        _fail("mode", options.mode, "a --tflite model is evaluated with --mode=center only")
    if not model_dir and options.mode != "ensemble":
        _fail("model_dir", model_dir, "required (a training run directory)")
    if options.cam_misclassified and (options.tflite or options.mode == "ensemble"):
        _fail("cam_misclassified", options.cam_misclassified, "needs a single Keras model")
    if options.ensemble_modes and options.mode != "ensemble":
        _fail("ensemble_modes", ",".join(options.ensemble_modes), "only with --mode=ensemble")
    for mode in options.ensemble_modes:
        if mode not in MEMBER_MODES:
            _fail("ensemble_modes", mode, "choose one of " + ", ".join(MEMBER_MODES))


def member_modes(options: Options, count: int) -> tuple[str, ...]:
    """The mode of each of `count` ensemble members: --ensemble_modes one each, or one shared;
    center when not given."""
    given = options.ensemble_modes or ("center",)
    if len(given) == 1:
        return given * count
    if len(given) != count:
        _fail(
            "ensemble_modes",
            ",".join(given),
            f"one mode for all members or one per member ({count})",
        )
    return tuple(given)


def default_scales(
    options: Options, geometry: preprocess.Geometry, min_resolution: int
) -> tuple[int, ...]:
    """The test scales Q: --scales, else the mode's default around S = resize_size.

    Default multi-scale scales below the model's minimum input size are raised to it (and
    duplicates dropped): a model trained at its minimum resolution is tested at S and above.
    """
    size = geometry.resize_size
    if options.scales:
        return tuple(options.scales)
    if options.mode in ("multi_crop", "dense+multi_crop"):
        return tuple(int(round(size * f)) for f in GRID_SCALE_FACTORS)
    if options.mode == "multi_scale":
        step = int(round(MULTI_SCALE_STEP * min(1.0, size / MULTI_SCALE_REFERENCE)))
        scales = (max(size - step, min_resolution), size, size + step)
        return tuple(dict.fromkeys(scales))
    return (size,)


def check_scales(options: Options, scales, geometry, min_resolution: int) -> None:
    smallest = geometry.image_size if options.mode == "multi_crop" else min_resolution
    for scale in scales:
        if scale < smallest:
            what = "the crop size" if options.mode == "multi_crop" else "the model's minimum"
            _fail(
                "scales",
                ",".join(map(str, scales)),
                f"test scale {scale} is below {what} ({smallest} px); pass larger --scales",
            )


def _tag(mode: str, options: Options, scales: tuple[int, ...] | None) -> str:
    """A mode with its crops, its scales (None: left out) and whether it flips."""
    parts = COMBINED_MODES.get(mode, (mode,))
    dense_parts = {"dense", "multi_scale"} & set(parts)
    name = mode
    if "multi_crop" in parts:
        name += f"_{options.crops}"
    if scales is not None and (dense_parts or options.crops == "grid" and "multi_crop" in parts):
        name += "_" + "-".join(str(scale) for scale in scales)
    if dense_parts and not options.flip:
        name += "_noflip"
    return name


def result_name(
    options: Options,
    checkpoint: str | None,
    scales: tuple[int, ...],
    ensemble_modes: tuple[str, ...] = (),
) -> str:
    """e.g. center_ckpt-330, multi_crop_grid_256-384-512_ckpt-330, dense_256_noflip_ckpt-330,
    dense+multi_crop_grid_256-384-512_ckpt-330, ensemble, ensemble_dense (every member dense),
    ensemble_dense_multi_crop_ten (one dense, one ten-crop)."""
    if options.tflite:
        stem = os.path.splitext(os.path.basename(options.tflite))[0]
        version = os.path.basename(os.path.dirname(os.path.abspath(options.tflite)))
        return f"tflite_{stem}" + (f"_v{version}" if version.isdigit() else "")
    if options.mode == "ensemble":
        if set(ensemble_modes) <= {"center"}:
            return "ensemble"
        shared = len(set(ensemble_modes)) == 1  # "ensemble_dense", not "ensemble_dense_dense"
        tags = [_tag(mode, options, None) for mode in ensemble_modes[: 1 if shared else None]]
        return "_".join(["ensemble", *tags])
    name = _tag(options.mode, options, scales)
    return name + (f"_{os.path.basename(checkpoint)}" if checkpoint else "")


def checkpoint_step(checkpoint: str | None) -> int:
    match = re.search(r"ckpt-(\d+)$", checkpoint or "")
    return int(match.group(1)) if match else 0


def open_source(spec: str, config: config_lib.Config, class_names: list[str]) -> sources.Source:
    """The data source, checked to have the run's classes in the same order."""
    # An evaluation over some of the examples would not be the evaluation asked for.
    source = runs.open_source(config, spec, bad_records="fail")
    if list(source.info.class_names) != list(class_names):
        raise sources.DataError(
            f"--source={spec}: its classes ({', '.join(source.info.class_names[:5])}, ...) "
            "differ from the run's labels.txt"
        )
    return source


def _tflite_posteriors(path, source, split, batch_size, geometry):
    """A .tflite model on the center crops of the run's evaluation pipeline."""
    classifier = tflite.TFLiteClassifier(path)
    if classifier.image_size != geometry.image_size:
        _fail(
            "tflite",
            path,
            f"input is {classifier.image_size} px, the run's {geometry.image_size} px",
        )
    return modes.center(
        lambda images: dense.softmax(classifier.logits(images.numpy())),
        source,
        split,
        batch_size=batch_size,
        geometry=geometry,
        description="evaluate tflite",
    )


def _ensemble_posteriors(members, member_modes, options, source, batch_size, class_names):
    """The members' mean posterior (arXiv 1409.1556 §4.4); each member is evaluated in its
    mode with its own preprocessing and its own default test scales (unless --scales).

    Returns:
      (probabilities, labels, [{"model_dir", "checkpoint", "mode", and the mode's settings}
      of every member]).
    """
    outputs, described = [], []
    for member, mode in zip(members, member_modes):
        model, config, _, path = runs.load_trained_model(
            member.model_dir, checkpoint=member.checkpoint
        )
        if runs.read_labels(member.model_dir) != class_names:
            _fail("ensemble", member.name, "its labels.txt differs from the first member's")
        geometry = runs.geometry(config)
        spec = registry.get(config.model.name)
        member_options = dataclasses.replace(options, mode=mode)
        scales = default_scales(member_options, geometry, spec.min_resolution)
        settings = {"model_dir": member.model_dir, "checkpoint": path, "mode": mode}
        outputs.append(
            _model_posteriors(
                model, spec, member_options, source, batch_size, geometry, scales, settings
            )
        )
        described.append(settings)
    probabilities = ensemble.average([p for p, _ in outputs], [labels for _, labels in outputs])
    return probabilities, outputs[0][1], described


def _model_posteriors(model, spec, options, source, batch_size, geometry, scales, settings):
    """One Keras model in the center, multi_crop, dense, multi_scale or a combined mode;
    records the mode's settings in `settings` (a combined mode's under each part's name)."""
    if options.mode in COMBINED_MODES:
        outputs = []
        for part in COMBINED_MODES[options.mode]:
            settings[part] = {}
            outputs.append(
                _model_posteriors(
                    model,
                    spec,
                    dataclasses.replace(options, mode=part),
                    source,
                    batch_size,
                    geometry,
                    scales,
                    settings[part],
                )
            )
        probabilities = ensemble.average([p for p, _ in outputs], [labels for _, labels in outputs])
        return probabilities, outputs[0][1]
    if options.mode == "center":
        probabilities = modes.probabilities_function(model, geometry.image_size)
        return modes.center(
            probabilities, source, options.split, batch_size=batch_size, geometry=geometry
        )
    if options.mode == "multi_crop":
        if options.crops == "grid":
            check_scales(options, scales, geometry, spec.min_resolution)
            settings["scales"] = list(scales)
        settings.update(
            crops=options.crops, crops_per_image=modes.crops_per_image(options.crops, scales)
        )
        return modes.multi_crop(
            model,
            source,
            options.split,
            batch_size=batch_size,
            geometry=geometry,
            kind=options.crops,
            scales=scales,
        )
    check_scales(options, scales, geometry, spec.min_resolution)
    settings.update(scales=list(scales), flip=options.flip)
    return modes.dense_eval(
        model,
        source,
        options.split,
        geometry=geometry,
        scales=scales,
        flip=options.flip,
        fully_convolutional=dense.family_converter(spec.builder),
    )


def _posteriors(
    model_dir, options, members, member_modes, source, batch_size, geometry, scales, settings
):
    """(probabilities, labels, the Keras model or None, its checkpoint or None) of the asked
    evaluation: a TFLite file, an ensemble, or the run's model in a mode."""
    if options.tflite:
        settings["tflite"] = os.path.abspath(options.tflite)
        return (
            *_tflite_posteriors(options.tflite, source, options.split, batch_size, geometry),
            None,
            None,
        )
    if options.mode == "ensemble":
        class_names = list(source.info.class_names)
        probabilities, labels, settings["members"] = _ensemble_posteriors(
            members, member_modes, options, source, batch_size, class_names
        )
        return probabilities, labels, None, None
    model, config, _, checkpoint = runs.load_trained_model(model_dir, checkpoint=options.checkpoint)
    spec = registry.get(config.model.name)
    probabilities, labels = _model_posteriors(
        model, spec, options, source, batch_size, geometry, scales, settings
    )
    return probabilities, labels, model, checkpoint


def run(model_dir: str | None, options: Options) -> dict:
    """Evaluates a run (or an ensemble of runs) and writes the results.

    Returns:
      The results written to `<name>.json`, plus "results_file".
    """
    _check_options(model_dir, options)
    members = runs.parse_members(options.ensemble) if options.mode == "ensemble" else []
    ensemble_modes = member_modes(options, len(members)) if members else ()
    model_dir = model_dir or members[0].model_dir
    config, derived = runs.load_config(model_dir)
    class_names = runs.read_labels(model_dir)
    source_spec = options.source or config.data.source
    source = open_source(source_spec, config, class_names)
    if options.split not in source.info.num_examples:
        _fail("split", options.split, "choose one of " + ", ".join(source.info.num_examples))
    batch_size = options.batch_size or (derived.eval_batch_size if derived else DEFAULT_BATCH_SIZE)
    geometry = runs.geometry(config)
    scales = default_scales(options, geometry, registry.get(config.model.name).min_resolution)
    settings = dataclasses.asdict(geometry)
    with sources.reading(source):
        probabilities, labels, model, checkpoint = _posteriors(
            model_dir,
            options,
            members,
            ensemble_modes,
            source,
            batch_size,
            geometry,
            scales,
            settings,
        )

    name = result_name(options, checkpoint, scales, ensemble_modes)
    directory = options.output_dir or os.path.join(model_dir, RESULTS_DIR)
    atomic.ensure_directory(directory, "--output_dir")
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
    overlays = None
    if options.cam_misclassified:
        results["misclassified_cam"], overlays = cam.draw_mistakes(
            model,
            source,
            options.split,
            probabilities,
            labels,
            class_names,
            count=options.cam_misclassified,
            geometry=geometry,
            directory=os.path.join(directory, f"{name}_misclassified"),
        )
    return report.write_results(
        directory,
        results,
        probabilities,
        labels,
        class_names,
        example_names=source.example_names(options.split),
        step=checkpoint_step(checkpoint),
        overlays=overlays,
    )
