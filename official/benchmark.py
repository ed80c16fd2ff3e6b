"""Our training and inference speed next to the peers a user would pick instead, in one run.

The peers: `keras.applications` (trained by `fit` and by `train_on_batch`, called under
tf.function for inference) and, given a Python with torch + timm, timm (`benchmark_script.py`
runs there by path: channels-last, float32 and bfloat16 autocast, the faster reported), as is
(`timm`) and with tcmalloc preloaded as PyTorch's CPU launcher does (`timm_tcmalloc`, when the
machine has the library). For
inference our model is also measured as its exported SavedModel (`serving/saved_model.py`):
the `predict_images` signature (preprocessing excluded) and `serving_default` on JPEG bytes
(decode, resize and crop included), BN folded as `export` writes it, in a serving process
(oneDNN's weight cache on, as `official.predict` runs it). Our speed-ups are sides of their own,
so each is measured against the plain model in the same run: training as `train` runs it by
default (BN on TensorFlow's fused kernel, bfloat16 1×1 convolutions with a MatMul kernel
gradient) against Keras' own BN layers (`ours_keras_bn`), against oneDNN's backward-weights
convolution for the 1×1 kernels (`ours_conv_gradient`), against TensorFlow's bfloat16 ReLU
after residual additions (`ours_eigen_relu`), against tf.nn.silu's six-pass swish gradient
(`ours_tf_swish_gradient`), against oneDNN's whole-kernel gradient for depthwise kernels wider
than three columns (`ours_tf_depthwise_gradient`), against Keras' input normalization
(`ours_keras_normalization`), with one inter-op thread instead of TensorFlow's
one per core (`ours_one_inter_op_thread`: `TF_NUM_INTEROP_THREADS=1`, a setting of the process,
not a switch of ours), the inference form `export` writes
(BN folded into the convolutions, swish written out so that it fuses into them:
`models/inference.py`) against the plain model (`ours_folded_bn`), that form with oneDNN's weight
cache as a serving process has it (`ours_serving`, `official.assume_frozen_weights`), the same
with TensorFlow's depthwise op instead of the grouped convolution the form uses for it
(`ours_serving_depthwise`), with convolutions instead of matrix products on pooled vectors
(`ours_serving_vector_conv`) or with Keras' input normalization
(`ours_serving_keras_normalization`), and TensorFlow's default kernels without oneDNN
(`ours_without_onednn`).

Every side runs in its own process per round, the sides alternating (ours, keras, timm, ours,
...): each gets the machine alone, its peak resident memory is its own, and a change of load
on this shared machine hits every side of a round alike. Ratios taken inside one run are what
count (../shared/reference/perf-baseline.md: the same code measured 20-60 min apart differs by
10 % for ResNet-50 and far more for small models). Images are one random in-memory batch,
repeated: the input pipeline is measured by tools/benchmark_input.py.

Compute utilisation: achieved GFLOP/s (2 × multiply-adds from `models/flops.py` × images/s,
training counted as 3 forward passes) ÷ the 4096³ matmul GFLOP/s measured with TensorFlow at
start, in float32 or bfloat16 as the side ran (per-layer "auto": the bfloat16 peak when any
layer runs in bfloat16).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from official import FROZEN_WEIGHTS_ENV
from official.errors import UserError

MODES = ("train", "infer")
# The training sides that time our training with one of its kernel switches off
# (config.RuntimeConfig, train_lib.use_training_kernels), and the switch each turns off: Keras'
# own BN layers, oneDNN's convolution gradient for 1x1 kernels, TensorFlow's bfloat16 ReLU,
# tf.nn.silu's swish gradient, oneDNN's whole-kernel depthwise gradient, Keras' input
# normalization.
SWITCHED_OFF = {
    "ours_keras_bn": "fused_batch_norm",
    "ours_conv_gradient": "matmul_pointwise_gradient",
    "ours_eigen_relu": "integer_residual_relu",
    "ours_tf_swish_gradient": "short_swish_gradient",
    "ours_tf_depthwise_gradient": "strip_depthwise_gradient",
    "ours_keras_normalization": "fused_input_normalization",
}
# Our sides: the model as `train` trains it (every switch of train_lib.use_training_kernels as
# RuntimeConfig sets it by default) and, for inference, as built; training with one switch off
# (SWITCHED_OFF); as export and predict run it (the inference form: BN folded, swish written
# out); the folded model in a serving process (oneDNN's weight cache,
# official.assume_frozen_weights); and without the oneDNN kernels the package turns on
# (official/__init__.py), TensorFlow's own default on CPUs without AVX-512 VNNI/BF16 or AMX.
TRAIN_SIDES = (
    "ours",
    *SWITCHED_OFF,
    "ours_one_inter_op_thread",
    "ours_without_onednn",
    "keras_fit",
    "keras_train_on_batch",
    "timm",
    "timm_tcmalloc",
)
# The serving sides that time the inference form without one of its rewrites for TensorFlow's
# kernels (models/inference.py TENSORFLOW_REWRITES).
SERVING_SKIPS = {
    "ours_serving_depthwise": ("grouped_depthwise",),
    "ours_serving_vector_conv": ("vector_products",),
    "ours_serving_keras_normalization": ("scaled_input",),
}
INFER_SIDES = (
    "ours",
    "ours_folded_bn",
    "ours_serving",
    *SERVING_SKIPS,
    "ours_without_onednn",
    "saved_model",
    "keras",
    "timm",
    "timm_tcmalloc",
)
# timm's script as is, and in a process with tcmalloc preloaded: the allocator PyTorch's own
# CPU launcher (torch.backends.xeon.run_cpu) preloads by default. With it timm trained
# 1.03-2.3x faster than with glibc's malloc on the AMX VM (EfficientNet-B0 1.31x, VGG-16 2.3x;
# README "Speed"), while our TensorFlow sides did not change in the steady state.
TIMM_SIDES = ("timm", "timm_tcmalloc")
OUR_SIDES = (
    "ours",
    *SWITCHED_OFF,
    "ours_one_inter_op_thread",
    "ours_folded_bn",
    "ours_serving",
    *SERVING_SKIPS,
    "ours_without_onednn",
)
# The sides that time the inference form `export` writes (models/inference.py).
INFERENCE_FORM_SIDES = ("ours_folded_bn", "ours_serving", *SERVING_SKIPS, "saved_model")
# What a side's process adds to the environment before TensorFlow starts.
SIDE_ENVIRONMENT = {
    "ours_without_onednn": {"TF_ENABLE_ONEDNN_OPTS": "0"},
    # TensorFlow's inter-op pool runs independent ops of a step side by side, each op on the
    # intra-op pool; one thread runs them one after the other.
    "ours_one_inter_op_thread": {"TF_NUM_INTEROP_THREADS": "1"},
    # Every side that serves as a serving process does (official.assume_frozen_weights).
    **{side: {FROZEN_WEIGHTS_ENV: "1"} for side in ("ours_serving", *SERVING_SKIPS, "saved_model")},
}
# The tcmalloc libraries a side may preload, as torch's launcher looks for them (Debian:
# libtcmalloc-minimal4 or libgoogle-perftools4).
TCMALLOC_NAMES = ("tcmalloc", "tcmalloc_minimal")
# prctl(2): the signal a process gets when its parent dies.
_PR_SET_PDEATHSIG = 1
TIMM_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "benchmark_script.py")

# Registry name → (keras.applications constructor, timm model name) of the same architecture.
PEERS = {
    "resnet50": ("ResNet50", "resnet50"),
    "resnet101": ("ResNet101", "resnet101"),
    "resnet152": ("ResNet152", "resnet152"),
    "vgg16": ("VGG16", "vgg16"),
    "vgg19": ("VGG19", "vgg19"),
    "inception_v3": ("InceptionV3", "inception_v3"),
    "mobilenet_v1": ("MobileNet", None),
    "mobilenet_v2": ("MobileNetV2", "mobilenetv2_100"),
    **{f"efficientnet_b{i}": (f"EfficientNetB{i}", f"efficientnet_b{i}") for i in range(8)},
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """One benchmark run; each field is the tool's flag of the same name."""

    models: tuple[str, ...] = ("resnet50",)
    mode: str = "train"
    precisions: tuple[str, ...] = ("float32", "mixed_bfloat16", "auto")
    batch_size: int = 32
    image_size: int = 224
    num_classes: int = 1000
    width_multiplier: float = 1.0  # Ours only (keras.applications MobileNets: alpha).
    steps: int = 10
    warmup_steps: int = 2
    latency_steps: int = 20
    rounds: int = 3
    torch_python: str = ""
    matmul_size: int = 4096
    sides: tuple[str, ...] = ()  # Empty: every side of the mode.


# ----------------------------------------------------------------------------- one side


def process_peak_rss_mb() -> float:
    """This process's peak resident memory since it started its program. Not ru_maxrss: Linux
    starts a child's at the resident size of the parent it was forked from and keeps that
    across exec, so every side read at least the benchmark parent's ~2 GB (TensorFlow and the
    matmul-peak matrices); /proc's VmHWM belongs to the program's own address space."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:  # Not Linux: the best there is.
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _data(job: dict):
    import tensorflow as tf

    size, batch = job["image_size"], job["batch_size"]
    images = tf.random.stateless_uniform([batch, size, size, 3], [1, 2], 0, 255)
    labels = tf.random.stateless_uniform([batch], [3, 4], 0, job["num_classes"], tf.int32)
    return images, labels


def _timed(step, count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def _our_model(job: dict):
    """Our registry model under the job's precision (per-layer policies for "auto"), with its
    BN layers on the fused kernel or folded as the job's side says."""
    import keras

    from official import config as config_lib
    from official import train_lib
    from official.models import inference, registry
    from official.training import precision

    resolved = precision.set_policy(job["precision"])
    overrides = {}
    if job["width_multiplier"] != 1.0:
        overrides["width_multiplier"] = job["width_multiplier"]
    model = registry.get(job["model"]).build(
        num_classes=job["num_classes"], image_size=job["image_size"], **overrides
    )
    keras.mixed_precision.set_global_policy("float32")
    training = job["mode"] == "train"
    if training:  # As `train` runs it by default, or with the side's switch off.
        switched_off = SWITCHED_OFF.get(job["side"])
        runtime = config_lib.RuntimeConfig(**({switched_off: False} if switched_off else {}))
        train_lib.use_training_kernels(model, runtime)
    elif job["side"] in INFERENCE_FORM_SIDES:  # As `export` writes.
        skip = SERVING_SKIPS.get(job["side"], ())
        model = inference.inference_form(model, skip=skip).model
    # "auto" times the model as it will run, as `train` does.
    resolved = resolved.tuned(model, batch_size=job["batch_size"], training=training)
    counts = resolved.apply(model)
    return model, resolved, counts


def _keras_model(job: dict):
    import keras

    keras.mixed_precision.set_global_policy(job["precision"])
    constructor = getattr(keras.applications, PEERS[job["model"]][0])
    options = {}
    if job["width_multiplier"] != 1.0 and job["model"].startswith("mobilenet"):
        options["alpha"] = job["width_multiplier"]
    model = constructor(
        weights=None,
        input_shape=(job["image_size"], job["image_size"], 3),
        classes=job["num_classes"],
        classifier_activation=None,
        **options,
    )
    keras.mixed_precision.set_global_policy("float32")
    return model


def _train_ours(job: dict, images, labels) -> tuple[list[float], dict]:
    import tensorflow as tf

    from official.training import loop, optimizers

    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    batch = job["batch_size"]
    inputs = loop.DistributedInput(
        strategy, lambda context: tf.data.Dataset.from_tensors((images, labels)).repeat()
    )
    with strategy.scope():
        model, resolved, counts = _our_model(job)
        optimizer = optimizers.create_optimizer("sgd", momentum=0.9)
        optimizer.build(model.trainable_variables)
        trainer = loop.Trainer(
            strategy=strategy,
            model=model,
            inputs=inputs,
            stages=[loop.Stage(optimizer, lambda step: tf.constant(0.01, tf.float32))],
            global_batch_size=batch,
            objective=loop.Objective(num_classes=job["num_classes"]),
        )
    trainer.train_steps(job["warmup_steps"])
    # One step per call, each timed, as every other side is: the reported figure is the
    # median step. (Until 2026-12-02 17:00 one timing of all steps in one call gave their mean,
    # which counted the slower steps right after warm-up that the peers' medians leave out:
    # ResNet-50 bfloat16, steps 2-4 after a 1-step warm-up 1.80 s, steady 1.63 s.)
    steps = _timed(lambda: trainer.train_steps(1), job["steps"])
    return steps, {"layers_per_dtype": counts, "precision_name": resolved.name}


def _train_keras(job: dict, images, labels) -> tuple[list[float], dict]:
    import keras
    import tensorflow as tf

    model = _keras_model(job)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    if job["side"] == "keras_train_on_batch":
        for _ in range(job["warmup_steps"]):
            model.train_on_batch(images, labels)
        return _timed(lambda: model.train_on_batch(images, labels), job["steps"]), {}
    dataset = tf.data.Dataset.from_tensors((images, labels)).repeat()
    model.fit(dataset, steps_per_epoch=job["warmup_steps"], epochs=1, verbose=0)
    ends: list[float] = []
    timer = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: ends.append(time.perf_counter())
    )
    model.fit(dataset, steps_per_epoch=job["steps"] + 1, epochs=1, verbose=0, callbacks=[timer])
    # Steady state: from the first batch's end to the last's (fit's set-up excluded).
    return [b - a for a, b in zip(ends, ends[1:], strict=False)], {}


def _infer(call, images, job: dict) -> dict:
    """Batch throughput (median step) and batch-1 latency (median, 90th percentile) of
    `call(images)`."""
    import numpy as np

    single = images[:1]
    for _ in range(job["warmup_steps"]):
        call(images)
        call(single)
    steps = _timed(lambda: call(images), job["steps"])
    latency = _timed(lambda: call(single), job["latency_steps"])
    return {
        "step_seconds": statistics.median(steps),
        "latency_ms": 1e3 * statistics.median(latency),
        "latency_p90_ms": 1e3 * float(np.percentile(latency, 90)),
    }


def _infer_saved_model(job: dict, images) -> dict:
    """Our model exported as the serving SavedModel, loaded back: `predict_images` (model
    only) and `serving_default` on one JPEG (its decode, resize and crop included)."""
    import numpy as np
    import tensorflow as tf

    from official.data import preprocess
    from official.models import registry
    from official.serving import saved_model

    model, resolved, counts = _our_model(job)
    spec = registry.get(job["model"])
    geometry = preprocess.Geometry(job["image_size"], spec.crop_fraction, spec.interpolation)
    with tempfile.TemporaryDirectory() as directory:
        labels = os.path.join(directory, "labels.txt")
        with open(labels, "w", encoding="utf-8") as f:
            f.write("".join(f"class_{i}\n" for i in range(job["num_classes"])))
        module = saved_model.ServingModule(model, labels_path=labels, geometry=geometry)
        saved_model.save_module(module, os.path.join(directory, "export"))
        loaded = tf.saved_model.load(os.path.join(directory, "export"))
        predict = loaded.signatures[saved_model.IMAGES_SIGNATURE]
        serve = loaded.signatures[saved_model.SERVING_SIGNATURE]
        result = _infer(lambda x: predict(images=x), images, job)
        resize = geometry.resize_size
        jpeg = tf.io.encode_jpeg(
            tf.cast(tf.image.resize(images[:1], [resize, resize])[0], tf.uint8), quality=90
        )
        request = tf.reshape(jpeg, [1])
        for _ in range(job["warmup_steps"]):
            serve(image_bytes=request)
        latency = _timed(lambda: serve(image_bytes=request), job["latency_steps"])
    result["bytes_latency_ms"] = 1e3 * statistics.median(latency)
    result["bytes_latency_p90_ms"] = 1e3 * float(np.percentile(latency, 90))
    return {**result, "layers_per_dtype": counts, "precision_name": resolved.name}


def run_side(job: dict) -> dict:
    """Measures one side once (in this process); returns its figures and peak memory."""
    import tensorflow as tf

    images, labels = _data(job)
    if job["mode"] == "train":
        runner = _train_ours if job["side"] in OUR_SIDES else _train_keras
        steps, extra = runner(job, images, labels)
        result = {"step_seconds": statistics.median(steps), **extra}
    elif job["side"] == "saved_model":
        result = _infer_saved_model(job, images)
    else:
        extra = {}
        if job["side"] in OUR_SIDES:
            model, resolved, counts = _our_model(job)
            extra = {"layers_per_dtype": counts, "precision_name": resolved.name}
        else:
            model = _keras_model(job)
        forward = tf.function(lambda x: model(x, training=False))
        result = {**_infer(lambda x: forward(x).numpy(), images, job), **extra}
    # The variables any side sets (SIDE_ENVIRONMENT), as this process saw them.
    variables = sorted({name for setting in SIDE_ENVIRONMENT.values() for name in setting})
    environment = {name: os.environ.get(name) for name in variables}
    return {**result, "peak_rss_mb": process_peak_rss_mb(), "environment": environment}


# ----------------------------------------------------------------------------- the run


def matmul_peak(size: int = 4096, repeats: int = 3) -> dict[str, float]:
    """GFLOP/s of a size³ matmul with TensorFlow, float32 and bfloat16 (the best of
    `repeats`): the machine's practical peak (perf-baseline.md §a: 209 / 363 here)."""
    import tensorflow as tf

    peaks = {}
    for dtype in (tf.float32, tf.bfloat16):
        a = tf.cast(tf.random.stateless_uniform([size, size], [5, 6]), dtype)
        b = tf.cast(tf.random.stateless_uniform([size, size], [7, 8]), dtype)
        matmul = tf.function(lambda a=a, b=b: tf.matmul(a, b))
        matmul().numpy()
        best = min(_timed(lambda matmul=matmul: matmul().numpy(), repeats))
        peaks[dtype.name] = 2 * size**3 / best / 1e9
    return peaks


def _variants(settings: Settings, side: str) -> list[str]:
    """The precisions a side runs in: ours every one asked for; keras.applications the global
    policies among them (no per-layer "auto" there); timm its own pair, chosen in its script."""
    if side in OUR_SIDES:
        return list(settings.precisions)
    if side in TIMM_SIDES:
        return ["+".join(_timm_dtypes(settings))]
    return [p for p in settings.precisions if p != "auto"] or ["float32"]


def _timm_dtypes(settings: Settings) -> list[str]:
    """timm's precisions among the asked ones (float32 and/or bfloat16 autocast; "auto" is
    ours alone): a CPU without bfloat16 instructions emulates it 5-50x slower, so it runs only
    when asked for."""
    dtypes = {"float32": "float32", "mixed_bfloat16": "bfloat16"}
    return [dtypes[p] for p in settings.precisions if p in dtypes] or ["float32"]


def tcmalloc_library() -> str | None:
    """The tcmalloc shared library of this machine (a name LD_PRELOAD resolves), or None."""
    for name in TCMALLOC_NAMES:
        found = ctypes.util.find_library(name)
        if found:
            return found
    return None


def _die_with_parent() -> None:
    """In a side's process before it starts (Linux): SIGTERM when the benchmark process dies,
    so killing the benchmark (or a test's timeout) leaves no side running on the machine."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # Not Linux: the side may outlive a killed benchmark.
        pass


def _child(settings: Settings, job: dict) -> dict:
    """Runs one side in a new process; returns its JSON result."""
    if job["side"] in TIMM_SIDES:
        command = [settings.torch_python, TIMM_SCRIPT, json.dumps(job)]
    else:
        command = [sys.executable, "-m", "official.benchmark", json.dumps(job)]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environment = {**os.environ, "PYTHONPATH": repo, "TF_CPP_MIN_LOG_LEVEL": "2"}
    environment.update(SIDE_ENVIRONMENT.get(job["side"], {}))
    if job["side"] == "timm_tcmalloc":
        environment["LD_PRELOAD"] = " ".join(
            filter(None, (tcmalloc_library(), os.environ.get("LD_PRELOAD")))
        )
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=environment,
        cwd=repo,
        preexec_fn=_die_with_parent,
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-5:]
        raise RuntimeError(f"{job['side']} {job['model']} failed: " + " | ".join(tail))
    return json.loads(done.stdout.strip().splitlines()[-1])


def _check(settings: Settings) -> None:
    if settings.mode not in MODES:
        raise UserError(f"--mode={settings.mode}: choose one of {', '.join(MODES)}")
    from official.training import precision

    for value in settings.precisions:
        if value not in precision.PRECISIONS or value == "mixed_float16":
            raise UserError(f"--precision={value}: choose from float32, mixed_bfloat16, auto")
    for name in settings.models:
        if name not in PEERS:
            raise UserError(f"--model={name}: no peer known; known: {', '.join(sorted(PEERS))}")
    known = set(TRAIN_SIDES if settings.mode == "train" else INFER_SIDES)
    for side in settings.sides:
        if side not in known:
            raise UserError(f"--sides={side}: {settings.mode} sides are {', '.join(sorted(known))}")
    if settings.torch_python and not os.access(settings.torch_python, os.X_OK):
        raise UserError(f"--torch_python={settings.torch_python}: not an executable")
    if "timm_tcmalloc" in settings.sides and not tcmalloc_library():
        raise UserError(
            "--sides=timm_tcmalloc: no tcmalloc library on this machine (Debian: apt install "
            "libtcmalloc-minimal4)"
        )


def _summary(values: list[dict], batch_size: int) -> dict:
    """Median and best over rounds (images/s from each round's median step time)."""
    rates = [batch_size / v["step_seconds"] for v in values]
    summary = {
        "images_per_second": statistics.median(rates),
        "best_images_per_second": max(rates),
        "step_ms": 1e3 * statistics.median(v["step_seconds"] for v in values),
        "peak_rss_mb": max(v["peak_rss_mb"] for v in values),
        "rounds": [round(r, 2) for r in rates],
    }
    for key in ("latency_ms", "latency_p90_ms", "bytes_latency_ms", "bytes_latency_p90_ms"):
        if key in values[0]:
            summary[key] = statistics.median(v[key] for v in values)
    keys = (
        "layers_per_dtype",
        "precision_name",
        "timm_variant",
        "timm_variants",
        "allocator",
        "environment",
    )
    for key in keys:
        if key in values[-1]:
            summary[key] = values[-1][key]
    return summary


def _utilisation(summary: dict, variant: str, macs: int, mode: str, peaks: dict) -> None:
    passes = 3 if mode == "train" else 1
    gflops = 2 * macs * passes * summary["images_per_second"] / 1e9
    uses_bf16 = variant == "mixed_bfloat16" or "bfloat16" in summary.get("timm_variant", "")
    if variant == "auto":
        uses_bf16 = "mixed_bfloat16" in summary.get("layers_per_dtype", {"mixed_bfloat16": 1})
    peak = peaks["bfloat16" if uses_bf16 else "float32"]
    summary["gflops_per_second"] = gflops
    summary["percent_of_matmul_peak"] = 100 * gflops / peak


def benchmark(settings: Settings, emit=print, progress=lambda line: None) -> list[dict]:
    """Runs every model's sides in alternating rounds; emits one JSON line per model, then
    the Markdown table, and one progress line per side and round; returns the results."""
    _check(settings)
    from official.models import flops, registry

    peaks = matmul_peak(settings.matmul_size)
    results = []
    for name in settings.models:
        keras_name, timm_name = PEERS[name]
        sides = [
            side
            for side in (TRAIN_SIDES if settings.mode == "train" else INFER_SIDES)
            if (side not in TIMM_SIDES or (settings.torch_python and timm_name))
            and (side != "timm_tcmalloc" or tcmalloc_library())
            and (not settings.sides or side in settings.sides)
        ]
        overrides = {}
        if settings.width_multiplier != 1.0:
            overrides["width_multiplier"] = settings.width_multiplier
        macs = flops.count_flops(
            registry.get(name).build(
                num_classes=settings.num_classes, image_size=settings.image_size, **overrides
            )
        )
        base = {
            "mode": settings.mode,
            "model": name,
            "batch_size": settings.batch_size,
            "image_size": settings.image_size,
            "num_classes": settings.num_classes,
            "width_multiplier": settings.width_multiplier,
            "steps": settings.steps,
            "warmup_steps": settings.warmup_steps,
            "latency_steps": settings.latency_steps,
            "timm_model": timm_name,
            "timm_dtypes": _timm_dtypes(settings),
        }
        measured: dict[str, list[dict]] = {}
        for _ in range(settings.rounds):
            for side in sides:
                for variant in _variants(settings, side):
                    job = {**base, "side": side, "precision": variant}
                    value = _child(settings, job)
                    measured.setdefault(f"{side}:{variant}", []).append(value)
                    progress(
                        f"{name} {side} {variant} round {len(measured[f'{side}:{variant}'])}: "
                        f"{settings.batch_size / value['step_seconds']:.3g} img/s, "
                        f"{value['peak_rss_mb']:.0f} MB"
                    )
        summaries = {key: _summary(values, settings.batch_size) for key, values in measured.items()}
        for key, summary in summaries.items():
            _utilisation(summary, key.split(":")[1], macs, settings.mode, peaks)
        result = {
            **base,
            "keras_application": keras_name,
            "multiply_adds": macs,
            "matmul_peak_gflops": peaks,
            "sides": summaries,
            "ratios": _ratios(summaries),
        }
        emit(json.dumps(result))
        results.append(result)
    emit(markdown_table(results))
    return results


def _best(summaries: dict, side: str) -> str | None:
    """The key of the side's fastest variant; for "ours", of any of our sides."""
    sides = OUR_SIDES if side == "ours" else (side,)
    keys = [k for k in summaries if k.split(":")[0] in sides]
    return max(keys, key=lambda k: summaries[k]["images_per_second"], default=None)


def _ratios(summaries: dict) -> dict[str, float]:
    """Our best images/s ÷ each peer's best (and per precision where both ran it), each of our
    other sides ÷ the plain model in the same precision, and per-layer "auto" ÷ each global
    policy of ours."""
    ours = _best(summaries, "ours")
    ratios = {}
    for key, summary in summaries.items():
        side, variant = key.split(":")
        if side in OUR_SIDES:
            if side != "ours" and f"ours:{variant}" in summaries:
                ratios[f"{key}/ours:{variant}"] = (
                    summary["images_per_second"] / summaries[f"ours:{variant}"]["images_per_second"]
                )
            continue
        best = _best(summaries, side)
        if key == best:
            ratios[f"ours/{side}"] = (
                summaries[ours]["images_per_second"] / summary["images_per_second"]
            )
        same = f"ours:{variant}"
        if same in summaries:
            ratios[f"ours/{key}"] = (
                summaries[same]["images_per_second"] / summary["images_per_second"]
            )
    # The gain of per-layer "auto" over one global policy.
    if "ours:auto" in summaries:
        for policy in ("float32", "mixed_bfloat16"):
            if f"ours:{policy}" in summaries:
                ratios[f"ours:auto/ours:{policy}"] = (
                    summaries["ours:auto"]["images_per_second"]
                    / summaries[f"ours:{policy}"]["images_per_second"]
                )
    return ratios


def markdown_table(results: list[dict]) -> str:
    """One row per model, side and precision."""
    infer = results and results[0]["mode"] == "infer"
    header = ["model", "side", "precision", "img/s (best)", "step ms", "peak RSS MB"]
    header += ["b1 ms (p90)", "b1 ms bytes (p90)"] if infer else []
    header += ["GFLOP/s", "% matmul peak", "ours best / this"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        ours = result["sides"][_best(result["sides"], "ours")]["images_per_second"]
        for key, s in result["sides"].items():
            side, variant = key.split(":")
            if side in TIMM_SIDES:
                variant = s.get("timm_variant", variant)
            elif variant == "auto":
                # The layers per dtype, or the one policy "auto" chose on this machine.
                counts = s.get("layers_per_dtype") or {}
                chosen = ", ".join(f"{n} {dtype}" for dtype, n in sorted(counts.items()))
                variant = f"auto ({chosen or s.get('precision_name', '')})"
            row = [
                result["model"],
                side,
                variant,
                f"{s['images_per_second']:.3g} ({s['best_images_per_second']:.3g})",
                f"{s['step_ms']:.0f}",
                f"{s['peak_rss_mb']:.0f}",
            ]
            if infer:
                row.append(f"{s['latency_ms']:.1f} ({s['latency_p90_ms']:.1f})")
                row.append(
                    f"{s['bytes_latency_ms']:.1f} ({s['bytes_latency_p90_ms']:.1f})"
                    if "bytes_latency_ms" in s
                    else ""
                )
            row += [
                f"{s['gflops_per_second']:.0f}",
                f"{s['percent_of_matmul_peak']:.0f} %",
                f"{ours / s['images_per_second']:.2f}",
            ]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":  # One side, run by `_child` in its own process.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(json.dumps(run_side(json.loads(sys.argv[1]))), flush=True)
