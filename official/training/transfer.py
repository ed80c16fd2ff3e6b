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

from official.models import filter_pruning, graph, state_dict, torch_port

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


# How `--config.model.init_weights` maps onto the model's layers (`model.init_weights_mapping`):
# "" copies by layer name (`copy_matching_weights`); "vgg_net_a" is VGG's initialization of
# the deeper configurations from a trained configuration A (`copy_from_vgg_net_a`).
INIT_MAPPINGS = ("vgg_net_a",)
# Configuration A (arXiv 1409.1556 Table 1): convolutions per stage, and its FC layers.
VGG_NET_A_STAGES = (1, 1, 2, 2, 2)
VGG_FULLY_CONNECTED = 3
# §3.1: "we initialised the first four convolutional layers and the last three fully-connected
# layers with the layers of net A".
VGG_NET_A_COPIED_CONVOLUTIONS = 4


def vgg_layout(model) -> tuple[list[list[list]], list]:
    """A VGG-like model's convolutions by stage, and its fully-connected layers, in graph order
    (official/models/graph.py: fixed by the architecture, whatever the layer names).

    A stage ends at a max pooling. Each convolution is a unit with the weighted layers that
    follow it before the next convolution (the `_bn` variants' batch normalization); weighted
    layers before the first convolution (the input normalization) are no unit's.

    Returns:
      (stages: lists of units, each a list of layers; the Dense layers).
    """
    stages: list[list[list]] = [[]]
    fully_connected = []
    for call in graph.calls(model):
        layer = call.layer
        if isinstance(layer, keras.layers.Dense):
            fully_connected.append(layer)
        elif isinstance(layer, keras.layers.Conv2D):
            stages[-1].append([layer])
        elif isinstance(layer, keras.layers.MaxPooling2D) and stages[-1]:
            stages.append([])
        elif layer.weights and stages[-1]:
            stages[-1][-1].append(layer)
    return [stage for stage in stages if stage], fully_connected


def check_vgg_net_a(net_a) -> tuple[list[list[list]], list]:
    """`vgg_layout` of a model that must be configuration A (VGG-11, with or without BN).

    Raises:
      ValueError: another architecture (one line).
    """
    stages, fully_connected = vgg_layout(net_a)
    counts = tuple(len(stage) for stage in stages)
    if counts != VGG_NET_A_STAGES or len(fully_connected) != VGG_FULLY_CONNECTED:
        raise ValueError(
            f"{net_a.name!r} is not a VGG-11-like net (configuration A: convolutions per stage "
            f"{VGG_NET_A_STAGES} and {VGG_FULLY_CONNECTED} fully-connected layers; it has "
            f"{counts} and {len(fully_connected)})"
        )
    return stages, fully_connected


def copy_from_vgg_net_a(net_a, target) -> tuple[list[str], list[str]]:
    """Initializes a deeper VGG (configurations B-E) from a trained configuration A.

    Simonyan & Zisserman (arXiv 1409.1556 §3.1): "we began with training the configuration A
    ..., shallow enough to be trained with random initialisation. Then, when training deeper
    architectures, we initialised the first four convolutional layers and the last three
    fully-connected layers with the layers of net A (the intermediate layers were initialised
    randomly)". A's first four convolutions are the first of stages 1 and 2 and the two of
    stage 3; each goes to the same position (stage, index within the stage) of the deeper
    net, the only correspondence under which the shapes agree (Table 1). Layers are matched
    by that position in the graph, never by name (A's `block4_conv1` would otherwise land on
    the deeper net's `block4_conv1`, which the paper initializes randomly).

    Returns:
      (names of the target layers copied, names of the target's other weighted layers).

    Raises:
      ValueError: `net_a` is not configuration A, `target` is not a VGG with at least A's
        layers, or a copied pair's weight shapes differ (one line).
    """
    a_stages, a_fully_connected = check_vgg_net_a(net_a)
    a_counts = tuple(len(stage) for stage in a_stages)
    stages, fully_connected = vgg_layout(target)
    counts = tuple(len(stage) for stage in stages)
    if (
        len(counts) != len(a_counts)
        or any(n < a for n, a in zip(counts, a_counts))
        or len(fully_connected) != VGG_FULLY_CONNECTED
    ):
        raise ValueError(
            f"{target.name!r} is not a VGG net with at least configuration A's layers "
            f"(convolutions per stage {counts}, {len(fully_connected)} fully-connected layers)"
        )
    positions = [(s, i) for s, stage in enumerate(a_stages) for i in range(len(stage))]
    pairs = [(a_stages[s][i], stages[s][i]) for s, i in positions[:VGG_NET_A_COPIED_CONVOLUTIONS]]
    pairs += [([a], [t]) for a, t in zip(a_fully_connected, fully_connected)]
    for source_unit, target_unit in pairs:
        source_shapes = [tuple(w.shape) for layer in source_unit for w in layer.weights]
        target_shapes = [tuple(w.shape) for layer in target_unit for w in layer.weights]
        if source_shapes != target_shapes:
            raise ValueError(
                f"net A's {source_unit[0].name} has weights {source_shapes}, the model's "
                f"{target_unit[0].name} {target_shapes} (the same width, image size, classes "
                "and normalization are needed)"
            )
    copied = []
    for source_unit, target_unit in pairs:
        for source_layer, target_layer in zip(source_unit, target_unit):
            target_layer.set_weights(source_layer.get_weights())
            copied.append(target_layer.name)
    kept = [
        layer.name
        for layer in target.layers
        if layer.weights and layer.name not in copied and layer.trainable_weights
    ]
    return copied, kept


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
