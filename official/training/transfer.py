"""Starting a model from other weights: copy by layer name, keeping layers whose shapes differ.

Used for transfer learning (a new classifier when the class count changes) and for starting
from other frameworks' files through the model zoo's ports: a keras.applications `.h5`
(official/models/port.py) or a PyTorch / safetensors state dict (official/models/torch_port.py).
Which kind a file is comes from its contents (`weights_format`).
"""

from __future__ import annotations

import os

import keras
from absl import logging

from official.models import filter_pruning, state_dict, torch_port

# The classifier layer of every family (official/models/heads.py), and the auxiliary
# classifiers (official/models/inception.py: `aux_...`): trained alone while the backbone is
# frozen, and re-initialized when the class count changes.
CLASSIFIER_LAYER = "predictions"
AUX_PREFIX = "aux"


def head_layer_names(model) -> list[str]:
    """Names of the model's classifier layers (main and auxiliary) that hold weights."""
    return [
        layer.name
        for layer in model.layers
        if layer.weights and (layer.name == CLASSIFIER_LAYER or layer.name.startswith(AUX_PREFIX))
    ]


def stages(model, head_layers) -> dict[str, list]:
    """The model's stages in graph order: its weighted layers but the classifier's, grouped by
    the name prefix before the first "_" (filter_pruning.stage_of: keras.applications names,
    "conv3_block1_1_conv" → conv3 = He et al.'s conv3_x, "block3_conv2" → VGG's block3)."""
    head = set(head_layers)
    grouped: dict[str, list] = {}
    for layer in model.layers:
        if layer.weights and layer.name not in head:
            grouped.setdefault(filter_pruning.stage_of(layer), []).append(layer)
    return grouped


def copy_matching_weights(source, target) -> tuple[list[str], list[str]]:
    """Copies every layer's weights from `source` to the layer of the same name in `target`.

    A layer is copied only if all its weights have the same shapes in both; otherwise (the
    classifier of a different class count, say) the target keeps its initialization.

    Returns:
      (names of the copied layers, names of target layers with weights that were not copied).

    Raises:
      ValueError: no layer could be copied (different architectures).
    """
    by_name = {layer.name: layer for layer in source.layers}
    copied, skipped = [], []
    for layer in target.layers:
        if not layer.weights:
            continue
        other = by_name.get(layer.name)
        if other is None or [tuple(w.shape) for w in other.weights] != [
            tuple(w.shape) for w in layer.weights
        ]:
            skipped.append(layer.name)
            continue
        layer.set_weights(other.get_weights())
        copied.append(layer.name)
    if not copied:
        raise ValueError(f"no layer of {source.name!r} matches {target.name!r}")
    return copied, skipped


# What `--config.model.init_weights` can name: a run directory or one of its checkpoints, a
# keras.applications HDF5 file, a PyTorch `torch.save` file, a safetensors file.
WEIGHTS_FORMATS = ("run", "keras_h5", "torch", "safetensors")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def weights_format(path: str) -> str:
    """The kind of weights `path` holds, from its contents (one of WEIGHTS_FORMATS).

    Raises:
      ValueError: no such file, or a file of none of the known kinds.
    """
    if os.path.isdir(path) or os.path.isfile(path + ".index"):
        return "run"
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file or directory")
    with open(path, "rb") as f:
        head = f.read(len(_HDF5_SIGNATURE))
    if head == _HDF5_SIGNATURE:
        return "keras_h5"
    try:
        kind = state_dict.detect_format(path)
    except state_dict.CheckpointError as e:
        raise ValueError(
            f"{path}: not a run, a checkpoint, a keras .h5, a PyTorch or a safetensors file ({e})"
        ) from None
    return "safetensors" if kind == "safetensors" else "torch"


def classifier_outputs(weights: dict) -> int:
    """The class count of a state dict: the outputs of its last weighted module (a linear
    layer, or SqueezeNet's 1x1 convolution)."""
    for name in reversed(list(weights)):
        if name.endswith(".weight") and weights[name].ndim in (2, 4):
            return int(weights[name].shape[0])
    raise ValueError("no weighted layer in the state dict")


def torch_model(path: str, spec, overrides: dict, *, file_format: str, layout: str):
    """Our model (`spec` built with `overrides`) holding a PyTorch or safetensors file's
    weights, the input normalization they need, and the builder arguments the model must
    compute with to reproduce the source ({"padding", "norm_epsilon"} of its layout).

    Args:
      path: the file.
      spec: the registry spec of the architecture the weights are for.
      overrides: builder arguments of the run (width, activation, ...; no head switches: the
        classifier is built with the file's class count).
      file_format: "torch" or "safetensors".
      layout: a key of torch_port.LAYOUTS, or "" to detect it from the names.

    Raises:
      ValueError: an unreadable file, or weights that do not fit the model (one line).
    """
    weights = state_dict.read(path, format=None if file_format == "torch" else "safetensors")
    layout = layout or torch_port.detect_layout(weights)
    arithmetic = torch_port.arithmetic(layout, spec.family, spec.name)
    model = spec.build(
        num_classes=classifier_outputs(weights),
        # The source's arithmetic replaces the run's switches of the same names; the reference
        # resolution unless the caller asks for another (tools/verify_torch_port.py).
        **{"image_size": spec.default_resolution, **overrides, **arithmetic},
    )
    normalization = torch_port.port_state_dict(
        weights, model, layout=layout, family=spec.family, name=spec.name
    )
    logging.info(
        "ported %d tensors of %s (%s layout) into %s (%s)",
        len(weights),
        path,
        layout,
        spec.name,
        arithmetic,
    )
    return model, normalization, arithmetic


def keras_application(name: str, weights_path: str):
    """A keras.applications model by constructor name with the weights of an `.h5` file, and
    whether it has its classifier (`include_top`).

    Full (with top) and "notop" files are both accepted; the architecture is built without
    weights first, so nothing is downloaded.

    Raises:
      ValueError: unknown constructor, or a file that fits neither variant.
    """
    constructor = getattr(keras.applications, name, None)
    if constructor is None or not callable(constructor):
        known = sorted(n for n in dir(keras.applications) if n[:1].isupper())
        raise ValueError(f"unknown keras.applications model {name!r}; known: {', '.join(known)}")
    if not os.path.isfile(weights_path):
        raise ValueError(f"{weights_path}: no such file")
    errors = []
    for include_top in (True, False):
        model = constructor(weights=None, include_top=include_top)
        try:
            model.load_weights(weights_path)
        except (ValueError, KeyError, OSError) as e:
            errors.append(str(e).splitlines()[0][:200])
            continue
        logging.info("loaded %s (include_top=%s) from %s", name, include_top, weights_path)
        return model, include_top
    raise ValueError(f"{weights_path} does not hold {name} weights: {'; '.join(errors)}")
