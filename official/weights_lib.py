"""Weights from anywhere into our models: a run of this package (or one of its checkpoints), a
keras.applications `.h5`, a PyTorch `.pth` / `.pt` or a `.safetensors` state dict.

`load` gives the model holding them and the input normalization they were trained with (used by
train_lib when a run starts from `--config.model.init_weights`); `convert` writes them once as
a run directory (config.json + checkpoint, and a Keras `.weights.h5`), which every command then
starts from (`python -m official.models --convert=PATH --model=NAME --out=DIR`).
"""

from __future__ import annotations

import os
from typing import NamedTuple

import keras
from absl import logging

from official import atomic, runs
from official import config as config_lib
from official.data import layout
from official.models import port, registry
from official.training import transfer


class Weights(NamedTuple):
    """Where a model's weights come from.

    Attributes:
      model: a model holding them (copied layer by layer into the model that uses them); None
        for a plain checkpoint of that model's own architecture (restored directly), or for
        no weights at all.
      normalization: (mean, std) on the 0..255 scale the weights were trained with, or None.
      kind: the source's format (transfer.WEIGHTS_FORMATS), "" for none.
      arithmetic: model config fields the weights need the model to be built with
        ({"padding": "torch", "norm_epsilon": 1e-5} for torchvision's weights,
        {"filter_prune_fractions": ...} for a filter-pruned run); empty when the model's own
        defaults are the weights'.
    """

    model: keras.Model | None = None
    normalization: tuple | None = None
    kind: str = ""
    arithmetic: dict = {}


def load(
    path: str,
    spec: registry.ModelSpec,
    overrides: dict,
    *,
    file_format: str = "",
    layout: str = "",
    keras_application: str = "",
    flag: str = "--config.model.init_weights",
) -> Weights:
    """Loads the weights at `path` for the architecture `spec`.

    Args:
      path: a run directory or checkpoint, an .h5, a .pth/.pt or a .safetensors file.
      spec: the registry spec the weights are for.
      overrides: builder arguments (width, activation, ...) the model is built with.
      file_format: one of transfer.WEIGHTS_FORMATS, or "" to detect it from the contents.
      layout: PyTorch layout (torch_port.LAYOUTS), or "" to detect it from the names.
      keras_application: the keras.applications constructor of an .h5, or "" for the
        registry model's counterpart (port.KERAS_APPLICATIONS).
      flag: the flag named in error messages.

    Raises:
      ConfigError: the file cannot be read or does not fit the architecture (one line).
    """
    where = f"{flag}={path}"
    try:
        kind = file_format or transfer.weights_format(path)
    except ValueError as e:
        raise config_lib.ConfigError(f"{where}: {e}") from e
    overrides = {k: v for k, v in overrides.items() if k not in ("aux_head", "dropout")}
    if kind in ("torch", "safetensors"):
        try:
            model, normalization, arithmetic = transfer.torch_model(
                path, spec, overrides, file_format=kind, layout=layout
            )
        except ValueError as e:  # CheckpointError and TorchPortError among them
            raise config_lib.ConfigError(f"{where}: {e}") from e
        normalization = (tuple(normalization.mean), tuple(normalization.std))
        return Weights(model, normalization, kind, arithmetic)
    if kind == "keras_h5":
        name = keras_application or port.KERAS_APPLICATIONS.get(spec.name, "")
        if not name:
            raise config_lib.ConfigError(
                f"{where}: {spec.name} has no keras.applications counterpart; name the file's "
                "architecture with --config.model.init_keras_application"
            )
        try:
            application, top = transfer.keras_application(name, path)
        except ValueError as e:
            raise config_lib.ConfigError(f"{where}: {e}") from e
        # Convolutional weights do not depend on the input size: a headless application
        # (no fixed input size) is ported at the architecture's reference resolution.
        model = spec.build(
            image_size=application.input.shape[1] or spec.default_resolution,
            include_top=top,
            **({"num_classes": application.output.shape[-1]} if top else {}),
            **overrides,
        )
        try:
            normalization = port.port_keras_applications_weights(application, model)
        except ValueError as e:
            raise config_lib.ConfigError(f"{where}: {e}") from e
        return Weights(model, (tuple(normalization.mean), tuple(normalization.std)), kind)
    run_dir, checkpoint = runs.locate(path)
    if run_dir is None:
        return Weights(None, None, kind)  # A plain checkpoint of this very architecture.
    trained = runs.load_trained_model(run_dir, checkpoint=checkpoint)
    # A filter-pruned run's weights only fit the pruned architecture: the fine-tuning run
    # inherits its fractions (`python -m official.prune_filters` writes such runs).
    fractions = trained.config.model.filter_prune_fractions
    arithmetic = {"filter_prune_fractions": fractions} if fractions else {}
    normalization = (trained.config.data.mean, trained.config.data.std)
    return Weights(trained.model, normalization, kind, arithmetic)


def run_config(spec: registry.ModelSpec, loaded: Weights) -> config_lib.Config:
    """The configuration that rebuilds `loaded.model` as the weights need it: the model, its
    outputs (class count, or feature channels without a classifier), the resolution, and
    the normalization and arithmetic of the weights."""
    model = loaded.model
    config = config_lib.Config()
    config.model.name = spec.name
    config.model.num_classes = int(model.output.shape[-1])
    config.data.image_size = int(model.input.shape[1] or spec.default_resolution)
    config.data.mean, config.data.std = (tuple(map(float, v)) for v in loaded.normalization)
    for field, value in loaded.arithmetic.items():
        setattr(config.model, field, value)
    return config


IMAGENET_CLASSES = 1000


def imagenet_labels() -> list[str] | None:
    """ILSVRC 2012's synsets in label order (datasets/imagenet2012/synsets.txt), or None when
    the bundled file is absent (an installed package without the repository's datasets/)."""
    if not layout.IMAGENET_SYNSETS.is_file():
        return None
    return sorted(layout.read_synset_names(layout.IMAGENET_SYNSETS))


def convert(
    path: str,
    model_name: str,
    out_dir: str,
    *,
    file_format: str = "",
    layout: str = "",
    keras_application: str = "",
) -> dict:
    """Converts weights once into a run directory: `config.json` (the model, its class count,
    resolution and the normalization the weights need), `checkpoints/ckpt-0`, and
    `<model>.weights.h5` (Keras `save_weights` of our model, for use without this package's
    commands); with 1,000 classes also `labels.txt`, ImageNet's synsets in sorted order (the
    class order of every ImageNet checkpoint: torchvision's, timm's and keras.applications'
    ImageFolder-style labels), so evaluate, export and predict take the run as it is. Written
    aside and renamed into place when complete.

    Returns:
      A summary: model, source format, classes, normalization, files written.

    Raises:
      ConfigError: unknown model, unreadable or unfitting weights, or `out_dir` exists.
    """
    spec = registry.get(model_name)
    if os.path.exists(out_dir):
        raise config_lib.ConfigError(f"--out={out_dir}: exists; name a new directory")
    loaded = load(
        path,
        spec,
        {},
        file_format=file_format,
        layout=layout,
        keras_application=keras_application,
        flag="--convert",
    )
    if loaded.model is None:
        raise config_lib.ConfigError(f"--convert={path}: a checkpoint without its run directory")
    model = loaded.model
    if not isinstance(model.output, keras.KerasTensor) or len(model.output.shape) != 2:
        raise config_lib.ConfigError(
            f"--convert={path}: the weights have no classifier (a 'notop' file); converting "
            "needs the whole network"
        )
    config = run_config(spec, loaded)
    weights_file = f"{spec.name}.weights.h5"
    labels = imagenet_labels() if config.model.num_classes == IMAGENET_CLASSES else None
    atomic.ensure_directory(os.path.dirname(os.path.abspath(out_dir)), "--out")
    with atomic.directory(out_dir) as scratch:
        runs.save_config(scratch, config, None)
        if labels:
            runs.save_labels(scratch, labels)
        runs.Checkpointer(scratch, model=model).save(0)
        model.save_weights(os.path.join(scratch, weights_file))
    summary = {
        "model": spec.name,
        "source": path,
        "format": loaded.kind,
        "num_classes": config.model.num_classes,
        "mean": config.data.mean,
        "std": config.data.std,
        **loaded.arithmetic,
        "run_directory": out_dir,
        "keras_weights": os.path.join(out_dir, weights_file),
        "labels": os.path.join(out_dir, runs.LABELS_FILE) if labels else None,
    }
    logging.info("converted %s into %s", path, out_dir)
    return summary
