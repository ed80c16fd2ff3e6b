"""tools/benchmark_train.py runs end to end on a tiny model (the real numbers are in README)."""

import json
import os
import subprocess
import sys

import pytest

from official import benchmark
from official.errors import UserError

TINY = [
    "--model=mobilenet_v2",
    "--image_size=32",
    "--width_multiplier=0.35",
    "--num_classes=10",
    "--batch_size=4",
    "--steps=2",
    "--warmup_steps=1",
    "--latency_steps=2",
    "--rounds=1",
    "--matmul_size=128",
    "--precision=float32",
]


def _run(repo, *flags, timeout=1700):
    result = subprocess.run(
        [sys.executable, "tools/benchmark_train.py", *TINY, *flags],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(repo), "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    return json.loads(lines[0]), lines[1:]


def _check(report, table, sides):
    assert set(report["sides"]) == sides
    macs = report["multiply_adds"]
    assert macs > 0
    for side in report["sides"].values():
        rate = side["images_per_second"]
        assert rate == pytest.approx(4 / (side["step_ms"] / 1e3))
        assert side["peak_rss_mb"] > 100  # A process with TensorFlow or torch in it.
        passes = 3 if report["mode"] == "train" else 1
        assert side["gflops_per_second"] == pytest.approx(2 * macs * passes * rate / 1e9)
    rates = {key: side["images_per_second"] for key, side in report["sides"].items()}
    ours = max(rate for key, rate in rates.items() if key.startswith("ours"))
    for key, rate in rates.items():
        side = key.split(":")[0]
        if not side.startswith("ours"):
            assert report["ratios"][f"ours/{side}"] == pytest.approx(ours / rate)
        elif side != "ours":  # Another of our sides, against `ours` in its precision.
            assert report["ratios"][f"{key}/ours:float32"] == pytest.approx(
                rate / rates["ours:float32"]
            )
    assert table[0].startswith("| model | side | precision | img/s")
    assert len(table) == 2 + len(sides)


def _timm_sides():
    """timm as is, and with tcmalloc preloaded where the machine has it."""
    return {"timm:float32"} | ({"timm_tcmalloc:float32"} if benchmark.tcmalloc_library() else set())


def test_a_side_reports_its_own_peak_memory_not_its_parents(repo):
    # Sides are started like this (fork with a preexec_fn, then exec); Linux starts a child's
    # ru_maxrss at the parent's resident size, which the memory column once showed.
    held = bytearray(400 << 20)
    held[::4096] = b"\x01" * len(held[::4096])  # resident, not just reserved
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from official import benchmark; print(benchmark.process_peak_rss_mb())",
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(repo)},
        preexec_fn=lambda: None,
        check=True,
    )
    assert 5 < float(result.stdout) < 200 < len(held) / 2**20


# Each side is a process that imports TensorFlow: about 30 s on the idle machine, many minutes
# when other jobs load it (the default suite's budget).
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_train_benchmark_writes_its_json_line_and_table(repo):
    report, table = _run(
        repo, "--sides=ours,ours_keras_bn,ours_one_inter_op_thread,keras_train_on_batch"
    )
    sides = {"ours:float32", "ours_keras_bn:float32", "keras_train_on_batch:float32"}
    _check(report, table, sides | {"ours_one_inter_op_thread:float32"})
    assert set(report["matmul_peak_gflops"]) == {"float32", "bfloat16"}
    # Only that side's process started TensorFlow with one inter-op thread.
    threads = {k: s["environment"]["TF_NUM_INTEROP_THREADS"] for k, s in report["sides"].items()}
    assert threads.pop("ours_one_inter_op_thread:float32") == "1"
    assert set(threads.values()) == {None}


def test_each_ablation_side_trains_with_exactly_its_switch_off(monkeypatch):
    """Our training sides put the model on the kernels through train_lib.use_training_kernels,
    `ours` with RuntimeConfig's defaults and each SWITCHED_OFF side with its one switch off."""
    import dataclasses

    from official import config as config_lib
    from official import train_lib

    defaults = dataclasses.asdict(config_lib.RuntimeConfig())
    assert set(benchmark.SWITCHED_OFF) < set(benchmark.TRAIN_SIDES) & set(benchmark.OUR_SIDES)
    assert all(defaults[switch] is True for switch in benchmark.SWITCHED_OFF.values())
    seen = []
    monkeypatch.setattr(train_lib, "use_training_kernels", lambda model, rt: seen.append(rt))
    job = dict(
        model="mobilenet_v2", mode="train", precision="float32", image_size=32,
        batch_size=4, num_classes=10, width_multiplier=0.35,
    )  # fmt: skip
    for side in ("ours", *benchmark.SWITCHED_OFF):
        benchmark._our_model({**job, "side": side})
        changed = {k: v for k, v in dataclasses.asdict(seen[-1]).items() if v != defaults[k]}
        switch = benchmark.SWITCHED_OFF.get(side)
        assert changed == ({switch: False} if switch else {}), side
    assert len(seen) == 1 + len(benchmark.SWITCHED_OFF)


@pytest.mark.slow  # A TensorFlow process for one error line: the default suite's budget.
def test_a_bad_flag_is_one_line(repo):
    result = subprocess.run(
        [sys.executable, "tools/benchmark_train.py", "--model=lenet5"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("error: --model=lenet5: no peer")


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_inference_benchmark_with_every_side(repo):
    """Ours, its SavedModel (tensors and JPEG bytes), keras.applications, and timm when
    CNN_REPRO_TORCH_PYTHON names a Python with torch and timm."""
    torch_python = os.environ.get("CNN_REPRO_TORCH_PYTHON", "")
    flags = ["--mode=infer"] + ([f"--torch_python={torch_python}"] if torch_python else [])
    report, table = _run(repo, *flags, timeout=3500)
    sides = {"ours:float32", "ours_folded_bn:float32", "ours_serving:float32"}
    sides |= {"ours_without_onednn:float32", "saved_model:float32", "keras:float32"}
    sides |= {f"{side}:float32" for side in benchmark.SERVING_SKIPS}
    _check(report, table, sides | (_timm_sides() if torch_python else set()))
    for key, side in report["sides"].items():
        assert 0 < side["latency_ms"] <= side["latency_p90_ms"]
        if key.startswith(("ours", "saved_model")):  # The precision each of ours ran in.
            assert side["precision_name"] == "float32", key
    saved = report["sides"]["saved_model:float32"]
    assert 0 < saved["bytes_latency_ms"] <= saved["bytes_latency_p90_ms"]


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(
    not os.environ.get("CNN_REPRO_TORCH_PYTHON"), reason="CNN_REPRO_TORCH_PYTHON not set"
)
def test_train_benchmark_against_timm(repo):
    torch_python = os.environ["CNN_REPRO_TORCH_PYTHON"]
    report, table = _run(repo, f"--torch_python={torch_python}", timeout=3500)
    sides = {"ours:float32", "ours_keras_bn:float32", "ours_without_onednn:float32"}
    sides |= {"ours_conv_gradient:float32", "ours_eigen_relu:float32"}
    sides |= {
        "ours_one_inter_op_thread:float32",
        "ours_tf_swish_gradient:float32",
        "ours_tf_depthwise_gradient:float32",
        "ours_keras_normalization:float32",
    }
    sides |= {"keras_fit:float32", "keras_train_on_batch:float32"}
    _check(report, table, sides | _timm_sides())
    for key in _timm_sides():  # Each timm side ran with the allocator it names.
        assert report["sides"][key]["timm_variant"] == "float32 channels-last"
        expected = "tcmalloc" if key.startswith("timm_tcmalloc") else "default"
        assert report["sides"][key]["allocator"] == expected


def test_the_tcmalloc_side_asked_for_without_the_library_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(benchmark, "tcmalloc_library", lambda: None)
    settings = benchmark.Settings(precisions=("float32",), sides=("ours", "timm_tcmalloc"))
    with pytest.raises(UserError, match=r"^--sides=timm_tcmalloc: no tcmalloc library"):
        benchmark.benchmark(settings, emit=lambda line: None)
