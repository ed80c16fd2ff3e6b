"""PyTorch checkpoints (torchvision, timm, lukemelas' EfficientNet-PyTorch) into our models.

A state dict (official/models/state_dict.py reads one without torch) is a flat mapping from
module paths to tensors, in the order the modules were registered. For the networks of this
zoo that order is the order in which the forward pass uses the weighted modules, which is also
the canonical order in which `graph.calls` walks our models; so, as the keras.applications port
(official/models/port.py), modules and our weighted layers are matched by position, every pair
is checked by kind and shape, and every source tensor must be used once and every target
weight filled: anything left over is named in one line. A layout (`LAYOUTS`) records what the
positions cannot tell:

  * where a reference registers a module later than it uses it (torchvision's and timm's
    ResNet register a block's `downsample` after its last convolution, our graph visits the
    shortcut first): `first_in_block`;
  * the BN epsilon its networks were trained with (torchvision 1e-5, but 1e-3 in its
    Inception-v3 and MobileNetV3; lukemelas and timm's `tf_` ports 1e-3), which our model is
    built with (`norm_epsilon`) or, where the difference is representable, folds into the
    moving variance;
  * how its convolutions pad (`padding`: "torch" symmetric k//2, or "tf" SAME for ports of
    TensorFlow checkpoints, e.g. lukemelas' static-same padding and timm's `tf_` models);
  * the input normalization it was trained with (on the 0..255 scale; None: the registry
    model's own, e.g. EfficientNet-Lite's (x − 127) / 128).

Tensor layouts: PyTorch convolutions are (out, in / groups, kh, kw) and become Keras' (kh, kw,
in / groups, out); depthwise (C, 1, kh, kw) become (kh, kw, C, 1); linear (out, in) become
(in, out). A fully-connected layer after flattening a (C, H, W) map in PyTorch sees the
channels first; after our (H, W, C) flatten its input rows are permuted to match (VGG,
AlexNet).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

import keras
import numpy as np

from official.errors import UserError
from official.models import graph, heads, registry
from official.models.port import InputNormalization, set_batch_norm, set_input_normalization

_PARAMETERS = ("weight", "bias", "running_mean", "running_var")
# Bookkeeping tensors that carry no weights.
_IGNORED = ("num_batches_tracked",)
_WEIGHTED = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.Dense,
    keras.layers.BatchNormalization,
)


_IMAGENET = (registry.IMAGENET_MEAN, registry.IMAGENET_STD)
# torchvision's GoogLeNet and Inception-v3 weights are built with `transform_input=True`
# (torchvision/models/googlenet.py and inception.py: `_ovewrite_named_param(kwargs,
# "transform_input", True)` when weights are given), which maps ImageNet-normalized inputs to
# (x / 255 − 0.5) / 0.5: on the 0..255 scale, mean and std 127.5. timm's `tf_` EfficientNets
# take the same (their pretrained_cfg: mean = std = 0.5).
_MINUS_ONE_TO_ONE = ((127.5,) * 3, (127.5,) * 3)


def _lookup(table: Mapping[str, object], model: str, family: str):
    """A layout table's entry for a registry model: the longest key its name starts with, else
    its family's, else "*"."""
    named = [key for key in table if key != "*" and model.startswith(key)]
    if named:
        return table[max(named, key=len)]
    return table.get(family, table["*"])


@dataclasses.dataclass(frozen=True)
class Layout:
    """What a reference implementation's state dicts need besides their order.

    The tables are keyed by registry-name prefix or family ("*": the default; the longest
    matching key wins, so "mobilenet_v3" overrides "mobilenet").

    Attributes:
      name: a key of LAYOUTS.
      description: where its checkpoints come from.
      bn_epsilon: the BN epsilon of its networks.
      padding: how its convolutions pad: "torch" or "tf"; "": the model's own rule.
      normalization: its input (mean, std) on the 0..255 RGB scale; None: the model's own.
      first_in_block: module names registered after the modules they precede in the forward
        pass; each is moved before the first module of its block (the path before it).
      auxiliary: path prefixes of auxiliary classifiers, dropped (and named) when the target
        model has none.
    """

    name: str
    description: str
    bn_epsilon: Mapping[str, float]
    padding: Mapping[str, str]
    normalization: Mapping[str, tuple | None] = dataclasses.field(
        default_factory=lambda: {"*": _IMAGENET}
    )
    first_in_block: tuple[str, ...] = ()
    auxiliary: tuple[str, ...] = ()

    def epsilon(self, model: str, family: str) -> float:
        return _lookup(self.bn_epsilon, model, family)

    def padding_for(self, model: str, family: str) -> str:
        return _lookup(self.padding, model, family)

    def normalization_for(self, model: str, family: str) -> tuple | None:
        return _lookup(self.normalization, model, family)


LAYOUTS = {
    "torchvision": Layout(
        "torchvision",
        "torchvision.models (PyTorch's own ImageNet weights)",
        bn_epsilon={
            "*": 1e-5,
            # torchvision/models/googlenet.py and inception.py (BasicConv2d) and
            # mobilenetv3.py build their BNs with eps=0.001; efficientnet.py B5-B7 (and V2)
            # with eps=0.001, B0-B4 with PyTorch's default 1e-5.
            "inception": 1e-3,
            "mobilenet_v3": 1e-3,
            "efficientnet_b5": 1e-3,
            "efficientnet_b6": 1e-3,
            "efficientnet_b7": 1e-3,
        },
        # torchvision's GoogLeNet max-pools in ceil mode (MaxPool2d(3, 2, ceil_mode=True)):
        # the model's own rule (SAME pooling, symmetric convolutions), not "torch"'s
        # MaxPool2d(3, 2, padding=1).
        padding={"*": "torch", "inception_v1": ""},
        normalization={"*": _IMAGENET, "inception_v1": None, "inception_v3": None},
        first_in_block=("downsample",),
        auxiliary=("AuxLogits", "aux1", "aux2"),
    ),
    "timm": Layout(
        "timm",
        "timm (pytorch-image-models) models without the `tf_` prefix",
        bn_epsilon={"*": 1e-5},
        padding={"*": "torch"},
        first_in_block=("downsample",),
    ),
    "timm_tf": Layout(
        "timm_tf",
        "timm's `tf_` models: TensorFlow checkpoints converted (SAME padding, BN epsilon "
        "1e-3, inputs in [-1, 1]); their names are those of the `timm` layout, so name this "
        "layout explicitly",
        bn_epsilon={"*": 1e-3},
        padding={"*": "tf"},
        normalization={"*": _MINUS_ONE_TO_ONE},
        first_in_block=("downsample",),
    ),
    "lukemelas": Layout(
        "lukemelas",
        "lukemelas/EfficientNet-PyTorch and its EfficientNet-Lite ports (TensorFlow "
        "checkpoints converted: SAME padding, BN epsilon 1e-3)",
        bn_epsilon={"*": 1e-3},
        padding={"*": "tf"},
        normalization={"*": None},
    ),
}


class TorchPortError(UserError, ValueError):
    """A state dict that does not fit the model; the message names what is left over."""


def arithmetic(layout: str, family: str, model: str = "") -> dict:
    """The builder arguments registry model `model` of `family` needs to compute what
    `layout`'s networks compute: its padding (left out where the model's own rule is the
    source's) and BN epsilon."""
    spec = LAYOUTS[layout]
    padding = spec.padding_for(model, family)
    return {
        **({"padding": padding} if padding else {}),
        "norm_epsilon": spec.epsilon(model, family),
    }


def detect_layout(weights: Mapping[str, np.ndarray]) -> str:
    """The layout a state dict's names belong to (lukemelas' `_conv_stem`, timm's `conv_stem` /
    `conv1.0` deep stem / `se.fc1`, else torchvision's)."""
    names = list(weights)
    if any(name.startswith("_conv_stem.") for name in names):
        return "lukemelas"
    if any(
        name.startswith(("conv_stem.", "blocks.", "conv1.0.")) or ".se.fc1." in name
        for name in names
    ):
        return "timm"
    return "torchvision"


@dataclasses.dataclass
class _Module:
    path: str
    tensors: dict[str, np.ndarray]

    @property
    def kind(self) -> str:
        if "running_mean" in self.tensors:
            return "batch_norm"
        weight = self.tensors.get("weight")
        if weight is None:
            return "unknown"
        return {4: "conv", 2: "linear"}.get(weight.ndim, "unknown")

    def describe(self) -> str:
        shapes = {name: tuple(array.shape) for name, array in self.tensors.items()}
        return f"{self.path} ({self.kind}, {shapes})"


def _modules(weights: Mapping[str, np.ndarray]) -> list[_Module]:
    """Groups tensors by module path, in file order."""
    modules: dict[str, _Module] = {}
    for name, array in weights.items():
        path, _, parameter = name.rpartition(".")
        if parameter in _IGNORED:
            continue
        if parameter not in _PARAMETERS:
            raise TorchPortError(f"{name}: not a weight of a convolution, linear or BN layer")
        modules.setdefault(path, _Module(path, {})).tensors[parameter] = np.asarray(array)
    return list(modules.values())


def _reorder(modules: list[_Module], first_in_block: tuple[str, ...]) -> list[_Module]:
    """Moves each `first_in_block` module (and its siblings of the same name, e.g. a
    projection's convolution and BN) before the other modules of its block, keeping every
    other order."""
    if not first_in_block:
        return modules
    pattern = re.compile(r"^(.*?)\.(?:" + "|".join(map(re.escape, first_in_block)) + r")(\.|$)")
    blocks = {match.group(1) + "." for m in modules if (match := pattern.match(m.path))}

    def block_of(path: str) -> str | None:
        return max((b for b in blocks if path.startswith(b)), key=len, default=None)

    result, emitted = [], set()
    for module in modules:
        if module.path in emitted:
            continue
        block = block_of(module.path)
        members = [module] if block is None else [m for m in modules if block_of(m.path) == block]
        first = [m for m in members if pattern.match(m.path)]
        for member in first + [m for m in members if m not in first]:
            result.append(member)
            emitted.add(member.path)
    return result


def _flatten_order(call) -> np.ndarray | None:
    """For a dense layer fed by a Flatten of an (H, W, C) map with H·W > 1: the PyTorch input
    row (c·H·W + h·W + w) each of our rows ((h·W + w)·C + c) takes. A dropout between them
    (torchvision's AlexNet: `Dropout` before `Linear(256 * 6 * 6, 4096)`) keeps the order."""
    producer = call.inputs[0]._keras_history[0]
    while isinstance(producer, keras.layers.Dropout):
        producer = producer.input._keras_history[0]
    if not isinstance(producer, keras.layers.Flatten):
        return None
    height, width, channels = producer.input.shape[1:]
    if height * width == 1:
        return None
    h, w, c = np.meshgrid(np.arange(height), np.arange(width), np.arange(channels), indexing="ij")
    return (c * height * width + h * width + w).reshape(-1)


def _kernel(module: _Module, layer, call) -> np.ndarray:
    weight = module.tensors["weight"]
    shape = tuple(layer.kernel.shape)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kernel = weight.transpose(2, 3, 0, 1)  # (C·m, 1, kh, kw) → (kh, kw, C·m, 1)
        kernel = kernel.reshape(*kernel.shape[:2], shape[2], shape[3])
    elif isinstance(layer, keras.layers.Dense):
        if weight.ndim == 4:  # a 1x1 convolution on a pooled map
            weight = weight.reshape(weight.shape[:2])
        kernel = weight.T
        order = _flatten_order(call)
        if order is not None and kernel.shape[0] == order.size:
            kernel = kernel[order]
    elif weight.ndim == 2:  # a linear layer into our 1x1 convolution
        kernel = weight.T.reshape(1, 1, *weight.T.shape)
    else:
        kernel = weight.transpose(2, 3, 1, 0)
    if kernel.shape != shape:
        raise TorchPortError(f"{module.describe()} does not fit {layer.name} {shape}")
    return kernel


def _compatible(module: _Module, layer) -> bool:
    if isinstance(layer, keras.layers.BatchNormalization):
        return module.kind == "batch_norm"
    if isinstance(layer, keras.layers.Dense):
        return module.kind == "linear" or (
            module.kind == "conv" and module.tensors["weight"].shape[2:] == (1, 1)
        )
    return module.kind == "conv" or (module.kind == "linear" and layer.kernel.shape[:2] == (1, 1))


def _check_bottleneck_stride(weights: Mapping[str, np.ndarray], calls: list) -> None:
    """torchvision's and timm's bottleneck ResNets (and ResNeXts) stride their 3x3 convolution
    ("ResNet v1.5", Bag of Tricks' ResNet-B); the same weights in a model striding its first
    1x1 (the paper's ResNet-A, our `resnet50`) fit every shape and compute something else."""
    if "layer2.0.conv3.weight" not in weights:
        return
    strided_1x1 = [
        c.layer.name
        for c in calls
        if isinstance(c.layer, keras.layers.Conv2D)
        and c.layer.name.endswith("_1_conv")
        and c.layer.kernel_size == (1, 1)
        and c.layer.strides != (1, 1)
    ]
    if strided_1x1:
        raise TorchPortError(
            f"the state dict's bottlenecks stride their 3x3 convolution (torchvision / timm, "
            f"ResNet-B), the model its 1x1 ({strided_1x1[0]}): port into the `_b` variant "
            "(e.g. resnet50_b) or a later one"
        )


def port_state_dict(
    weights: Mapping[str, np.ndarray],
    model: keras.Model,
    *,
    layout: str | None = None,
    family: str = "*",
    name: str | None = None,
    epsilon: float | None = None,
) -> InputNormalization:
    """Copies a PyTorch state dict into the same architecture built here.

    Args:
      weights: name → array, in the file's order (`state_dict.read`).
      model: our model, built for the weights: the same class count and `include_top`, and the
        layout's padding and BN epsilon (`arithmetic` gives them).
      layout: a key of LAYOUTS; None: detected from the names.
      family: the model's registry family (selects the layout's epsilon and normalization).
      name: the model's registry name (the same, where the layout has a row for it); None:
        `model.name`, which the registry builds with.
      epsilon: the source's BN epsilon; None: the layout's for the model.

    Returns:
      The input normalization now set in `model` (the layout's, or the model's own).

    Raises:
      TorchPortError: the weights do not fit (one line naming the first mismatch or what is
        left over).
    """
    layout_name = layout or detect_layout(weights)
    if layout_name not in LAYOUTS:
        raise TorchPortError(f"unknown layout {layout_name!r}; choose one of {', '.join(LAYOUTS)}")
    spec = LAYOUTS[layout_name]
    modules = _reorder(_modules(weights), spec.first_in_block)
    main_output = heads.split_outputs(model.output)[0]
    calls = [c for c in graph.calls(model, outputs=main_output) if isinstance(c.layer, _WEIGHTED)]
    if layout_name in ("torchvision", "timm"):
        _check_bottleneck_stride(weights, calls)
    if spec.auxiliary:
        auxiliary = tuple(prefix + "." for prefix in spec.auxiliary)
        modules = [m for m in modules if not (m.path + ".").startswith(auxiliary)]
    name = model.name if name is None else name
    epsilon = spec.epsilon(name, family) if epsilon is None else epsilon
    pending_bias = None
    position = 0
    for call in calls:
        layer = call.layer
        if position >= len(modules):
            raise TorchPortError(
                f"the state dict has {len(modules)} weighted modules, {model.name} needs more: "
                f"nothing left for {layer.name} and {len(calls) - calls.index(call) - 1} more"
            )
        module = modules[position]
        position += 1
        if pending_bias is not None and not isinstance(layer, keras.layers.BatchNormalization):
            raise TorchPortError(f"the bias of {pending_bias[0]} has no BN to fold into")
        if not _compatible(module, layer):
            shapes = [tuple(w.shape) for w in layer.weights]
            raise TorchPortError(
                f"layer mismatch at position {position}: {module.describe()} vs "
                f"{layer.name} ({type(layer).__name__}, {shapes})"
            )
        tensors = module.tensors
        if isinstance(layer, keras.layers.BatchNormalization):
            try:
                set_batch_norm(
                    layer,
                    source_name=module.path,
                    mean=tensors["running_mean"].astype(np.float64),
                    variance=tensors["running_var"].astype(np.float64),
                    epsilon=epsilon,
                    gamma=tensors.get("weight"),
                    beta=tensors.get("bias"),
                    bias=None if pending_bias is None else pending_bias[1],
                )
            except ValueError as e:
                raise TorchPortError(str(e)) from None
            pending_bias = None
            continue
        layer.kernel.assign(_kernel(module, layer, call))
        bias = tensors.get("bias")
        if layer.use_bias:
            layer.bias.assign(np.zeros(layer.bias.shape) if bias is None else bias)
        elif bias is not None:
            pending_bias = (module.path, bias.astype(np.float64))
    if pending_bias is not None:
        raise TorchPortError(f"the bias of {pending_bias[0]} has no BN to fold into")
    if position < len(modules):
        left = [m.path for m in modules[position:]]
        raise TorchPortError(
            f"{len(left)} modules of the state dict are left over after {model.name}'s last "
            f"layer: {', '.join(left[:5])}{', ...' if len(left) > 5 else ''}"
        )
    normalization = spec.normalization_for(name, family)
    if normalization is None:  # the model's own normalization (or none)
        layer = next((x for x in model.layers if isinstance(x, keras.layers.Normalization)), None)
        if layer is None:
            mean, std = np.zeros(3), np.ones(3)
        else:
            mean = np.asarray(layer.input_mean, dtype=np.float64)
            std = np.sqrt(np.asarray(layer.input_variance, dtype=np.float64))
    else:
        mean, std = (np.asarray(v, dtype=np.float64) for v in normalization)
        set_input_normalization(model, mean, std)
    return InputNormalization(tuple(float(v) for v in mean), tuple(float(v) for v in std))
