#!/usr/bin/env python
r"""Checks the PyTorch weight ports against the real torchvision / timm networks.

  python tools/verify_torch_port.py --torch_python=/path/to/venv/bin/python \
      [--models=resnet18,googlenet] [--write_manifest=tests/models/data/torch_manifests.json]

`--torch_python` is a Python with torch, torchvision and timm (this package never imports
torch). Each reference architecture is built there with seeded random weights (nothing is
downloaded), its state dict ported into the matching registry model as
`--config.model.init_weights` does, and the logits of both compared on the same images: one
line per model, a summary, and a non-zero exit if any port does not reproduce its source
(official/torch_verify.py). `--write_manifest=PATH` also writes the state-dict keys and
shapes the tests port without torch (tests/models/data/torch_manifests.json).
"""

import sys

from absl import app, flags

from official import cli, torch_verify

_TORCH_PYTHON = flags.DEFINE_string(
    "torch_python", "", "A Python interpreter with torch, torchvision and timm."
)
_MODELS = flags.DEFINE_list(
    "models", [], "References by torchvision/timm name or registry name; empty: all."
)
_WRITE_MANIFEST = flags.DEFINE_string(
    "write_manifest", "", "Also write the references' state-dict keys and shapes here."
)


def main(argv):
    cli.no_arguments(argv)
    if not _TORCH_PYTHON.value:
        cli.fail("--torch_python: name a Python interpreter that has torch")
    with cli.user_errors():
        results = torch_verify.verify(
            _TORCH_PYTHON.value, _MODELS.value, manifest_path=_WRITE_MANIFEST.value
        )
    sys.exit(0 if all(r.ok for r in results) else 1)


if __name__ == "__main__":
    app.run(main)
