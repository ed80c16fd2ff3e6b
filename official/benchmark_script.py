"""timm's side of official/benchmark.py: one model, trained or run, in torch's best CPU setup.

Run by path with a Python that has torch and timm (never this package's: it imports nothing
of the package, and the package never imports torch). The model is timm's (random weights,
no download) in channels-last memory format, which made timm 1.1-1.8x faster on this machine
(../shared/reference/perf-baseline.md §b); it is timed in float32 and/or under bfloat16
autocast (`timm_dtypes`), alternating, and the faster is reported, as a user would pick it.
Training: SGD with momentum 0.9, cross-entropy. Inference: `eval()` under `inference_mode`,
batch throughput and batch-1 latency.

Usage: python benchmark_script.py JOB_JSON, JOB_JSON as official/benchmark.py writes it; prints
one JSON line: step_seconds (the best variant's), latency_ms / latency_p90_ms (inference),
peak_rss_mb, timm_variant, every variant's step seconds, and the memory allocator the process
runs with ("tcmalloc" when preloaded, else "default").
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch


def _peak_rss_mb():
    """As official/benchmark.py's process_peak_rss_mb (this script imports nothing of the
    package): VmHWM, since ru_maxrss starts from the forking parent's resident size."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _allocator():
    """This process's memory allocator: tcmalloc when preloaded (benchmark.py's timm_tcmalloc
    side), else the default (glibc's malloc)."""
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
            return "tcmalloc" if "libtcmalloc" in maps.read() else "default"
    except OSError:
        return "default"


def _timed(step, count):
    times = []
    for _ in range(count):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def main(argv):
    import timm

    job = json.loads(argv[1])
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    model = timm.create_model(job["timm_model"], pretrained=False, num_classes=job["num_classes"])
    model = model.to(memory_format=torch.channels_last)
    size, batch = job["image_size"], job["batch_size"]
    images = torch.rand(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, job["num_classes"], (batch,))
    train = job["mode"] == "train"
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train(train)

    def autocast(variant):
        if variant == "bfloat16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(variant):
        with autocast(variant):
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def infer_step(variant, x):
        with torch.inference_mode(), autocast(variant):
            model(x)

    variants = job["timm_dtypes"]  # float32 and/or bfloat16
    steps = {variant: [] for variant in variants}
    for variant in variants:  # Warm-up of both first.
        for _ in range(job["warmup_steps"]):
            train_step(variant) if train else infer_step(variant, images)
    # Alternating halves, so a change of load hits both variants.
    for half in (job["steps"] // 2, job["steps"] - job["steps"] // 2):
        for variant in variants:
            step = (
                (lambda v=variant: train_step(v))
                if train
                else (lambda v=variant: infer_step(v, images))
            )
            steps[variant] += _timed(step, half)
    result = {"timm_variants": {}}
    for variant in variants:
        result["timm_variants"][variant] = statistics.median(steps[variant])
    best = min(variants, key=lambda v: result["timm_variants"][v])
    result["step_seconds"] = result["timm_variants"][best]
    result["timm_variant"] = f"{best} channels-last"
    if not train:
        single = images[:1]
        for _ in range(job["warmup_steps"]):
            infer_step(best, single)
        latency = _timed(lambda: infer_step(best, single), job["latency_steps"])
        result["latency_ms"] = 1e3 * statistics.median(latency)
        result["latency_p90_ms"] = 1e3 * float(np.percentile(latency, 90))
    result["peak_rss_mb"] = _peak_rss_mb()
    result["allocator"] = _allocator()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv)
