"""Checks the PyTorch ports against the real torchvision and timm networks.

The port (official/models/torch_port.py) matches a state dict's modules to our layers by
position; whether a torchvision or timm architecture computes what the registry model it is
ported into computes can only be shown by running both. `verify` does that with a Python that
has torch (never this package's: `models/torch_reference_script.py` runs in it by path, imports
nothing of ours, builds each reference architecture with seeded random weights and BN
statistics, and writes its state dict and its logits on seeded images), then ports each state
dict the way `--config.model.init_weights` does (weights_lib.load: the layout's arithmetic,
normalization and the port) into the registry model at the same input size, and compares the
logits. `tools/verify_torch_port.py` is its command line.

The same run writes the manifest the tests use without torch (`--write_manifest`): each
reference's state-dict keys and shapes in file order, from which a test builds a random state
dict and ports it (tests/models/test_torch_verify.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import tempfile
from collections.abc import Sequence

import numpy as np

from official import atomic
from official.errors import UserError
from official.models import registry

SCRIPT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "models", "torch_reference_script.py"
)
# Logits agree when max |ours − source| is below this fraction of the source logits' standard
# deviation (float32 through 20–120 layers of random weights: 1e-6 to 1e-4 in practice; a wrong
# epsilon, padding or layer order gives 1e-2 and more).
RELATIVE_TOLERANCE = 1e-3
# Very deep networks accumulate more float32 rounding than that (ResNet-152: torch's own float32
# logits are 1.9e-3 of the std off float64): a port passes too when its error is within this
# factor of torch's own float32 error on the same inputs.
FLOAT32_ERROR_FACTOR = 3.0
BATCH = 2
SEED = 0


class VerifyError(UserError):
    """The torch Python cannot run the reference script, or a name is unknown."""


@dataclasses.dataclass(frozen=True)
class Reference:
    """A torchvision or timm architecture and the registry model its weights port into.

    Attributes:
      source: "torchvision" or "timm".
      constructor: torchvision.models.get_model's or timm.create_model's name.
      model: our registry name.
      image_size: the input size both run at (small for speed; AlexNet and VGG at 224, where
        their flattened fully-connected weights see the reference grid).
      layout: torch_port.LAYOUTS key the port uses (None: detected from the names).
      kwargs: constructor arguments, as the released weights are built (torchvision's
        GoogLeNet and Inception-v3 with `transform_input=True`, their auxiliary heads on).
      slow: too heavy for the default test suite.
    """

    source: str
    constructor: str
    model: str
    image_size: int
    layout: str | None = None
    kwargs: dict = dataclasses.field(default_factory=dict)
    slow: bool = False

    @property
    def key(self) -> str:
        return f"{self.source}.{self.constructor}"


# torchvision's weights builders force `transform_input=True` and `aux_logits=True` for
# GoogLeNet and Inception-v3 (torchvision/models/googlenet.py, inception.py).
_TORCHVISION_INCEPTION = {"transform_input": True, "aux_logits": True, "init_weights": True}

REFERENCES = (
    Reference("torchvision", "resnet18", "resnet18", 64),
    # torchvision's bottleneck ResNets stride the 3x3 (ResNet-B, "v1.5").
    Reference("torchvision", "resnet50", "resnet50_b", 64, slow=True),
    Reference("torchvision", "resnext50_32x4d", "resnext50_32x4d", 64, slow=True),
    Reference("torchvision", "vgg11_bn", "vgg11_bn", 224, slow=True),
    Reference("torchvision", "alexnet", "alexnet", 224),
    Reference("torchvision", "squeezenet1_0", "squeezenet1_0", 64),
    Reference("torchvision", "squeezenet1_1", "squeezenet1_1", 64),
    Reference("torchvision", "densenet121", "densenet121", 64, slow=True),
    Reference(
        "torchvision", "googlenet", "inception_v1_torchvision", 64, kwargs=_TORCHVISION_INCEPTION
    ),
    Reference(
        "torchvision",
        "inception_v3",
        "inception_v3_torchvision",
        96,
        kwargs=_TORCHVISION_INCEPTION,
        slow=True,
    ),
    Reference("torchvision", "mobilenet_v2", "mobilenet_v2", 64),
    Reference("torchvision", "mobilenet_v3_large", "mobilenet_v3_large", 64),
    Reference("torchvision", "mobilenet_v3_small", "mobilenet_v3_small", 64),
    Reference("torchvision", "shufflenet_v2_x1_0", "shufflenet_v2_1.0", 64),
    Reference("torchvision", "efficientnet_b0", "efficientnet_b0", 64, slow=True),
    Reference("timm", "resnet50d", "resnet50_d", 64, layout="timm", slow=True),
    Reference("timm", "seresnet50", "se_resnet50_b", 64, layout="timm", slow=True),
    Reference(
        "timm", "tf_efficientnet_lite0", "efficientnet_lite0", 64, layout="timm_tf", slow=True
    ),
)
BY_KEY = {reference.key: reference for reference in REFERENCES}


@dataclasses.dataclass(frozen=True)
class Result:
    """One reference's comparison: max |ours − source| over the logits, absolute and as a
    fraction of the source logits' standard deviation, against the source computed in float64;
    `torch_float32_diff` is torch's own float32 error on the same logits (the floor any float32
    port sits on); `error` when the port refused."""

    reference: Reference
    max_abs_diff: float = float("nan")
    logit_std: float = float("nan")
    torch_float32_diff: float = float("nan")
    error: str = ""

    @property
    def relative(self) -> float:
        return self.max_abs_diff / self.logit_std

    @property
    def tolerance(self) -> float:
        """RELATIVE_TOLERANCE, or FLOAT32_ERROR_FACTOR × torch's own float32 error if larger."""
        floor = FLOAT32_ERROR_FACTOR * self.torch_float32_diff / self.logit_std
        return max(RELATIVE_TOLERANCE, floor) if math.isfinite(floor) else RELATIVE_TOLERANCE

    @property
    def ok(self) -> bool:
        return not self.error and self.relative <= self.tolerance


def select(names: Sequence[str]) -> list[Reference]:
    """References by key ("torchvision.resnet18"), constructor or registry name; all for ()."""
    if not names:
        return list(REFERENCES)
    chosen = []
    for name in names:
        matches = [r for r in REFERENCES if name in (r.key, r.constructor, r.model)]
        if not matches:
            known = ", ".join(r.key for r in REFERENCES)
            raise VerifyError(f"--models: {name!r} is not a reference; choose from {known}")
        chosen.extend(m for m in matches if m not in chosen)
    return chosen


def run_reference_script(torch_python: str, references: Sequence[Reference], out_dir: str):
    """Runs torch_reference_script.py with `torch_python` for `references` into `out_dir`."""
    jobs = []
    for reference in references:
        # The normalization the released weights are fed: torchvision's transforms (ImageNet
        # mean and std, then `transform_input` inside GoogLeNet and Inception-v3); timm's
        # pretrained_cfg.
        if reference.source == "timm":
            mean = std = None
        else:
            mean, std = registry.IMAGENET_MEAN, registry.IMAGENET_STD
        jobs.append(
            {
                "key": reference.key,
                "source": reference.source,
                "constructor": reference.constructor,
                "image_size": reference.image_size,
                "kwargs": reference.kwargs,
                "mean": mean,
                "std": std,
                "seed": SEED,
                "batch": BATCH,
            }
        )
    jobs_path = os.path.join(out_dir, "jobs.json")
    with open(jobs_path, "w") as f:
        json.dump(jobs, f)
    try:
        process = subprocess.run(
            [torch_python, SCRIPT, jobs_path, out_dir], capture_output=True, text=True
        )
    except OSError as e:
        raise VerifyError(f"--torch_python={torch_python}: cannot run it ({e})") from None
    if process.returncode != 0:
        last = (process.stderr.strip().splitlines() or ["no output"])[-1]
        raise VerifyError(
            f"--torch_python={torch_python}: the reference script failed "
            f"(status {process.returncode}): {last}"
        )


def compare(reference: Reference, out_dir: str) -> Result:
    """Ports the reference's state dict into its registry model and compares the logits."""
    import keras

    from official import weights_lib

    path = os.path.join(out_dir, reference.key + ".pth")
    arrays = np.load(os.path.join(out_dir, reference.key + ".npz"))
    source_logits = arrays["logits"]
    try:
        spec = registry.get(reference.model)
        loaded = weights_lib.load(
            path, spec, {"image_size": reference.image_size}, layout=reference.layout or ""
        )
    except UserError as e:
        return Result(reference, error=str(e))
    logits = np.asarray(loaded.model(arrays["images"], training=False), np.float64)
    del loaded
    keras.backend.clear_session()
    return Result(
        reference,
        max_abs_diff=float(np.abs(logits - source_logits).max()),
        logit_std=float(source_logits.std()),
        torch_float32_diff=float(np.abs(arrays["logits_float32"] - source_logits).max()),
    )


# Manifest parameter letters: every tensor of a module but its weight has shape (C,), C the
# weight's first dimension (conv and linear biases, BN offsets and statistics).
_PARAMETER_LETTERS = {"w": "weight", "b": "bias", "m": "running_mean", "v": "running_var"}


def manifest_entry(reference: Reference, out_dir: str) -> dict:
    """The reference's modules in state-dict order, each [path, parameter letters, the shape
    of its first tensor], and the registry model they port into."""
    with open(os.path.join(out_dir, reference.key + ".json")) as f:
        written = json.load(f)
    letters = {name: letter for letter, name in _PARAMETER_LETTERS.items()}
    modules: dict[str, list] = {}
    for name, shape in written["tensors"]:
        path, _, parameter = name.rpartition(".")
        entry = modules.setdefault(path, [path, "", shape])
        entry[1] += letters[parameter]
    return {
        "model": reference.model,
        "layout": reference.layout,
        "bn_epsilons": written["bn_epsilons"],
        "modules": list(modules.values()),
    }


def synthetic_state_dict(entry: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """A random state dict with a manifest entry's tensors, in its order (variances positive,
    so every BN ports)."""
    rng = np.random.default_rng(seed)
    weights = {}
    for path, parameters, shape in entry["modules"]:
        for letter in parameters:
            name = _PARAMETER_LETTERS[letter]
            size = shape if letter == parameters[0] else shape[:1]
            if name == "running_var":
                array = rng.uniform(0.5, 1.5, size)
            else:
                array = rng.normal(0, 0.1, size)
            weights[f"{path}.{name}"] = array.astype(np.float32)
    return weights


def verify(
    torch_python: str,
    names: Sequence[str] = (),
    *,
    work_dir: str | None = None,
    manifest_path: str = "",
    log=print,
) -> list[Result]:
    """Runs the references of `names` (all for ()) in `torch_python`, ports and compares each;
    logs one line per reference and a summary, and writes the manifest if asked."""
    references = select(names)
    with tempfile.TemporaryDirectory(dir=work_dir) as out_dir:
        run_reference_script(torch_python, references, out_dir)
        results = []
        for reference in references:
            result = compare(reference, out_dir)
            results.append(result)
            log(describe(result))
        if manifest_path:
            manifest = {r.key: manifest_entry(r, out_dir) for r in references}
            atomic.write_text(manifest_path, _compact_json(manifest))
    failed = [r.reference.key for r in results if not r.ok]
    log(
        f"{len(results) - len(failed)} of {len(results)} ports reproduce their source's logits"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return results


def describe(result: Result) -> str:
    reference = result.reference
    name = f"{reference.key} -> {reference.model} ({reference.image_size} px)"
    if result.error:
        return f"FAIL {name}: {result.error}"
    return (
        f"{'ok  ' if result.ok else 'FAIL'} {name}: max |diff| {result.max_abs_diff:.3g}, "
        f"logit std {result.logit_std:.3g}, relative {result.relative:.3g} (torch float32: "
        f"{result.torch_float32_diff / result.logit_std:.3g}; tolerance {result.tolerance:.3g})"
    )


def _compact_json(manifest: dict) -> str:
    """One line per module: small in git, readable in a diff."""
    lines = ["{"]
    for index, (key, entry) in enumerate(manifest.items()):
        head = {k: v for k, v in entry.items() if k != "modules"}
        lines.append(f'  "{key}": {{{json.dumps(head)[1:-1]}, "modules": [')
        modules = [json.dumps(m, separators=(",", ":")) for m in entry["modules"]]
        lines.append(",\n".join("    " + m for m in modules))
        lines.append("  ]}" + ("," if index < len(manifest) - 1 else ""))
    lines.append("}")
    return "\n".join(lines) + "\n"
