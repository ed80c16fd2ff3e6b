"""The model registry: every architecture is looked up by name, with its reference metadata.

Family modules (`official/models/<family>.py`) call `register` for each variant when they are
imported, and the package `official.models` imports every family: so `from official.models
import registry` (which runs the package first) always sees the whole zoo. The registry itself
imports no family.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from typing import Any

from official.errors import UserError

# ImageNet channel statistics on the 0..255 scale (the values every reference pipeline uses:
# TF-slim, tensorflow/tpu, torchvision).
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder, fixed builder arguments and reference metadata.

    Attributes:
      name: registry name, e.g. "resnet50_d".
      builder: the family builder; takes keyword arguments and returns a keras.Model.
      family: family name, e.g. "resnet".
      default_resolution: training/eval image size of the reference recipe.
      min_resolution: smallest input size the architecture accepts.
      crop_fraction: eval center-crop fraction (image_size / resize_size) of the reference.
      interpolation: resize method of the reference pipeline ("bilinear", or "bicubic" for
        EfficientNet as in tensorflow/tpu).
      train_crop: training crop of the reference recipe: "inception" (random area and
        aspect), "scale_jitter" (VGG's random shorter side) or "resize" (see
        official/data/preprocess.py).
      mean: per-channel mean on the 0..255 scale the model normalizes its input with.
      std: per-channel standard deviation on the 0..255 scale.
      fixed_size: True when the weights of the top depend on the input size (VGG's
        fully-connected head): the model builds at any size, but weights trained or ported at
        `default_resolution` only load at that size.
      kwargs: builder arguments that define this variant (depth, width, switches).
    """

    name: str
    builder: Callable[..., Any]
    family: str
    default_resolution: int
    min_resolution: int = 32
    crop_fraction: float = 0.875
    interpolation: str = "bilinear"
    train_crop: str = "inception"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    fixed_size: bool = False
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def build(self, **overrides: Any):
        """Builds the model; `overrides` replace the variant's own builder arguments.

        The spec's `mean` and `std` are passed to the builder unless overridden, so a variant
        that shares a builder with different input statistics (EfficientNet-Lite) gets its own.

        Raises:
          ValueError: `image_size` is below the architecture's minimum.
        """
        image_size = overrides.get("image_size")
        if image_size is not None and image_size < self.min_resolution:
            raise ValueError(
                f"{self.name} needs images of at least {self.min_resolution} px, got {image_size}"
            )
        arguments = {
            "name": self.name,
            "mean": self.mean,
            "std": self.std,
            **self.kwargs,
            **overrides,
        }
        return self.builder(**arguments)


_REGISTRY: dict[str, ModelSpec] = {}
# Families with a continuous parameter in the name (EfficientNet's compound coefficient φ):
# prefix -> (resolver from the name's suffix to a spec, example shown in error messages).
_PATTERNS: dict[str, tuple[Callable[[str, str], ModelSpec], str]] = {}


class UnknownModelError(UserError, KeyError):
    """Raised for a name that is not registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0])


def register(name: str, builder: Callable[..., Any], **metadata: Any) -> ModelSpec:
    """Registers `builder` under `name` with the given ModelSpec metadata."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    spec = ModelSpec(name=name, builder=builder, **metadata)
    _REGISTRY[name] = spec
    return spec


def register_pattern(prefix: str, resolver: Callable[[str, str], ModelSpec], example: str) -> None:
    """Registers a family of names `prefix<suffix>`, e.g. `efficientnet_phi1.5`.

    Args:
      prefix: the fixed start of the names.
      resolver: called as resolver(name, suffix); returns the ModelSpec or raises ValueError
        when the suffix is not valid.
      example: a valid name, listed in the unknown-name error.
    """
    if prefix in _PATTERNS:
        raise ValueError(f"model name pattern {prefix!r} is registered twice")
    _PATTERNS[prefix] = (resolver, example)


def get(name: str) -> ModelSpec:
    """Returns the spec of a registered model, or raises UnknownModelError naming the choices."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    for prefix, (resolver, example) in _PATTERNS.items():
        if name.startswith(prefix) and name != prefix:
            try:
                return resolver(name, name[len(prefix) :])
            except ValueError as e:
                raise UnknownModelError(f"unknown model {name!r}: {e} (e.g. {example})") from None
    close = difflib.get_close_matches(name, _REGISTRY, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    patterns = "".join(
        f", {prefix}<...> (e.g. {example})" for prefix, (_, example) in _PATTERNS.items()
    )
    raise UnknownModelError(
        f"unknown model {name!r}.{hint} Known models: {', '.join(names())}{patterns}"
    )


def names() -> list[str]:
    """All registered model names, sorted."""
    return sorted(_REGISTRY)
