"""Reference logits from real torchvision / timm networks, for official/torch_verify.py.

Run by path with a Python that has torch (and torchvision / timm): it imports nothing of this
package, so the package never needs torch and this file never needs the package. For each job
it builds the architecture with seeded random weights (no download), moves every BN away from
a fresh BN's identity (mean 0, variance 1, scale 1, offset 0 would hide an epsilon, a swapped
BN or a missing scale) while keeping activations at their scale (`_set_batch_norms`), and
writes into the output directory:

  <key>.pth   its state dict (`torch.save`, the zip format of torch >= 1.6);
  <key>.npz   the input images (N, H, W, 3) on the 0..255 scale and the logits of the
              network in eval mode on them (normalized as the weights expect), computed in
              float64 (`logits`) and in float32 (`logits_float32`, torch's own rounding);
  <key>.json  the state dict's keys and shapes in file order (the manifest the tests port),
              the normalization applied and the BN epsilons found.

Usage: python torch_reference_script.py JOBS_JSON OUT_DIR, where JOBS_JSON is a list of
{"key", "source" ("torchvision" | "timm"), "constructor", "image_size", "kwargs", "mean",
"std" (0..255 scale, the normalization applied before the network; None: timm's
pretrained_cfg), "seed", "batch"}.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

CALIBRATION_BATCH = 8
MIN_VARIANCE = 1e-2


def _images(rng, count, size):
    """Images that differ as photos do, in brightness, contrast, colour and coarse layout:
    white noise alone gives every image the same deep features, whose tiny spread around a
    large mean makes BN cancel digits (float32 logits of a deep random network then differ
    from float64 ones by percents in torch alone)."""
    cells = rng.uniform(0, 1, (count, 4, 4, 3))
    coarse = np.repeat(np.repeat(cells, -(-size // 4), axis=1), -(-size // 4), axis=2)
    fine = rng.uniform(0, 1, (count, size, size, 3))
    mix = rng.uniform(0.2, 0.8, (count, 1, 1, 1))
    image = mix * coarse[:, :size, :size] + (1 - mix) * fine
    contrast = rng.uniform(0.3, 1.0, (count, 1, 1, 1))
    offset = rng.uniform(0, 1 - contrast, (count, 1, 1, 1))
    return (255 * (offset + contrast * image)).astype(np.float32)


def _build(job):
    kwargs = dict(job.get("kwargs") or {})
    if job["source"] == "torchvision":
        import torchvision

        return torchvision.models.get_model(job["constructor"], weights=None, **kwargs)
    if job["source"] == "timm":
        import timm

        return timm.create_model(job["constructor"], pretrained=False, **kwargs)
    raise ValueError(f"unknown source {job['source']!r}")


def _set_batch_norms(model, images, generator):
    """BN parameters far from a fresh BN's identity, with the statistics of real activations.

    Each affine BN gets a random scale around 1 and offset around 0 (timm zero-initializes
    the last BN of each residual branch); then the running statistics are those of a
    calibration batch through these weights, so activations keep their scale through any
    depth; then about a tenth of the channels of every affine BN get a variance near 1e-3 with
    the scale shrunk to match (the same output, but now a wrong epsilon shows in the logits).
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for module in norms:
            if module.affine:
                module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.num_features, generator=generator) * 0.2)
            module.momentum = None  # a cumulative average: one batch gives its statistics
            module.reset_running_stats()
        # Only the BNs in training mode: auxiliary classifiers (which run in training mode
        # only and need the reference resolution: Inception-v3's AuxLogits convolves a 5x5
        # window of the 17x17 grid) and dropout stay off.
        model.eval()
        for module in norms:
            module.train()
        model(images)
        model.eval()
        for module in norms:
            # A channel the calibration batch left (nearly) constant would amplify float
            # rounding by 1 / sqrt(epsilon) in both frameworks alike.
            module.running_var.clamp_(min=MIN_VARIANCE)
            if not module.affine:
                continue
            small = torch.rand(module.num_features, generator=generator) < 0.1
            factor = 1e-3 / module.running_var[small]
            module.running_var[small] *= factor
            module.weight[small] *= factor.sqrt()


def _epsilons(model):
    return sorted(
        {
            float(m.eps)
            for m in model.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        }
    )


def run(job, out_dir):
    torch.manual_seed(job["seed"])
    generator = torch.Generator().manual_seed(job["seed"])
    model = _build(job)
    size = job["image_size"]
    rng = np.random.default_rng(job["seed"])
    config = getattr(model, "pretrained_cfg", None) or {}
    if job["mean"] is None:  # timm: what its pretrained weights are fed
        mean = 255 * np.asarray(config["mean"], np.float32)
        std = 255 * np.asarray(config["std"], np.float32)
    else:
        mean = np.asarray(job["mean"], np.float32)
        std = np.asarray(job["std"], np.float32)

    def prepare(images):
        return torch.from_numpy(((images - mean) / std).transpose(0, 3, 1, 2).copy())

    calibration = _images(rng, CALIBRATION_BATCH, size)
    _set_batch_norms(model, prepare(calibration), generator)
    images = _images(rng, job["batch"], size)
    inputs = prepare(images)
    state = model.state_dict()
    key = job["key"]
    torch.save(state, os.path.join(out_dir, key + ".pth"))
    with torch.no_grad():
        logits_float32 = model(inputs).numpy()
        # The exact logits of these float32 weights, against which float32 arithmetic (ours
        # and torch's own) is measured.
        logits = model.double()(inputs.double()).numpy()
    np.savez(
        os.path.join(out_dir, key + ".npz"),
        images=images,
        logits=logits,
        logits_float32=logits_float32.astype(np.float64),
    )
    manifest = {
        "source": job["source"],
        "constructor": job["constructor"],
        "kwargs": job.get("kwargs") or {},
        "bn_epsilons": _epsilons(model),
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "tensors": [
            [name, list(tensor.shape)]
            for name, tensor in state.items()
            if not name.endswith("num_batches_tracked")
        ],
    }
    with open(os.path.join(out_dir, key + ".json"), "w") as f:
        json.dump(manifest, f)


def main(argv):
    if len(argv) != 3:
        raise SystemExit(__doc__)
    with open(argv[1]) as f:
        jobs = json.load(f)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    for job in jobs:
        run(job, argv[2])
        print(job["key"], "ok", flush=True)


if __name__ == "__main__":
    main(sys.argv)
