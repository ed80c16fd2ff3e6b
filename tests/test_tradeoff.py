"""The trade-off tool (official/tradeoff.py): the analytic quantities against hand counts, the
three outputs of a registry name and a trained run, and bad input refused with nothing written."""

import csv
import importlib.util

import keras
import pytest

from official import atomic, runs, tradeoff
from official.models import count_flops, registry


def _branchy_model():
    """input 8x8x3 → conv a (3x3, 4) → conv b (1x1, 4) of a → a + b → GAP → dense 5."""
    inputs = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    b = keras.layers.Conv2D(4, 1)(a)
    x = keras.layers.Add()([a, b])
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(5)(x))


def test_peak_memory_and_activations_by_hand():
    model = _branchy_model()
    weights = (3 * 3 * 3 * 4 + 4) + (4 * 4 + 4) + (4 * 5 + 5)  # 157 numbers
    assert model.count_params() == weights
    # Live tensors in graph order: input 192; a 256 (+input); b 256 while a lives on for the
    # add; the add's 256 with a and b: 768 elements, the peak.
    peak = 256 + 256 + 256
    assert tradeoff.peak_memory_bytes(model) == 4 * (weights + peak)
    assert tradeoff.peak_memory_bytes(model, element_bytes=1) == weights + peak
    # fvcore's activation count: outputs of the convolutions and the dense layer.
    assert tradeoff.activation_count(model) == 8 * 8 * 4 + 8 * 8 * 4 + 5


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


@pytest.mark.slow  # Measures two models end to end: the default suite's budget.
def test_tradeoff_of_a_registry_name_and_a_run(trained_run, trained_metrics, tmp_path):
    out = tmp_path / "table"
    modes = ["keras_float32", "tflite_float"]
    rows, written = tradeoff.tradeoff(
        ["resnet18", str(trained_run)],
        modes,
        str(out),
        batch_size=2,
        image_size=32,
        num_classes=10,
        width_multiplier=0.25,
        repeats=3,
        progress=False,
    )
    header, table = _read_csv(out / tradeoff.CSV_FILE)
    assert tuple(header[: len(tradeoff.TIMM_COLUMNS)]) == tradeoff.TIMM_COLUMNS
    assert tuple(header) == tradeoff.COLUMNS
    run_label = f"{trained_run.name} (resnet18)"  # A run's row names the run.
    assert [(r["model"], r["mode"]) for r in table] == [
        ("resnet18", "keras_float32"),
        ("resnet18", "tflite_float"),
        (run_label, "keras_float32"),
        (run_label, "tflite_float"),
    ]
    untrained = registry.get("resnet18").build(num_classes=10, image_size=32, width_multiplier=0.25)
    trained = runs.load_trained_model(str(trained_run)).model
    expected = [untrained] * 2 + [trained] * 2
    for row, model in zip(table, expected):
        assert row["error"] == ""
        assert int(row["params"]) == model.count_params()
        assert float(row["param_count"]) == round(model.count_params() / 1e6, 4)
        assert int(row["macs"]) == count_flops(model)
        assert int(row["infer_batch_size"]) == 2
        assert int(row["infer_img_size"]) == model.input_shape[1] == 32
        p50, p90 = float(row["latency_p50_ms"]), float(row["latency_p90_ms"])
        assert 0 < p50 <= p90
        step, rate = float(row["infer_step_time"]), float(row["infer_samples_per_sec"])
        assert step > 0 and rate == pytest.approx(2000 / step, rel=0.01)
        assert int(row["gzip_bytes"]) > 0 and int(row["weight_bytes"]) > 0
        assert row["packed_bytes"] == ""  # Not a binary network.
        assert row["peak_memory_method"] == "analytic"
        # Variables at 4 bytes plus at least the input image.
        assert int(row["peak_memory_bytes"]) > 4 * model.count_params() + 4 * 32 * 32 * 3
    for row in table[:2]:
        assert (row["weights"], row["top1"], row["top1_source"]) == ("untrained", "", "")
    for row in table[2:]:
        assert row["weights"] == str(trained_run)
        assert float(row["top1"]) == round(100 * trained_metrics["top1"], 2)
        assert row["top1_source"] == "run metrics.json"
    # A float32 Keras weights file holds every parameter in 4 bytes.
    assert int(table[0]["weight_bytes"]) >= 4 * untrained.count_params()

    markdown = (out / tradeoff.MARKDOWN_FILE).read_text().splitlines()
    assert markdown[0].startswith("| model | mode |")
    assert [line.split(" | ")[:2] for line in markdown[2:6]] == [
        [f"| {name}", mode] for name in ("resnet18", run_label) for mode in modes
    ]
    # The chart as text under the table: one legend line per row, each letter on the chart.
    chart = markdown[markdown.index("```text") + 1 : -1]
    legend = [line for line in chart if line.startswith("  ") and " ms, " in line]
    assert [line.split()[0] for line in legend] == ["a", "b", "c", "d"]
    png = out / tradeoff.PLOT_FILE
    if importlib.util.find_spec("matplotlib"):
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        names = (tradeoff.CSV_FILE, tradeoff.MARKDOWN_FILE, tradeoff.PLOT_FILE)
        assert sorted(written) == sorted(str(out / name) for name in names)
    else:  # The plot is skipped with a logged line; the table is complete.
        assert not png.exists() and len(written) == 2
    assert [p.name for p in out.iterdir() if p.name.startswith(atomic.TEMPORARY_PREFIX)] == []


@pytest.mark.parametrize(
    "arguments, culprit",
    [
        (dict(models=["resnet18", "resnet_eighteen"]), "resnet_eighteen"),
        (dict(models=[]), "--models"),
        (dict(modes=["keras_float32", "onnx"]), "'onnx'"),
        (dict(batch_size=0), "--batch_size=0"),
        (dict(repeats=0), "--repeats=0"),
        (dict(image_size=16), "--image_size=16"),  # ResNet's minimum is 32 px.
        (dict(width_multiplier=-1.0), "--width_multiplier=-1.0"),
        (dict(num_classes=0), "--num_classes=0"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(tmp_path, arguments, culprit):
    out = tmp_path / "table"
    call = {"models": ["resnet18"], "modes": ["keras_float32"], **arguments}
    with pytest.raises(tradeoff.TradeoffError, match=culprit.replace("[", r"\[")):
        tradeoff.tradeoff(call.pop("models"), call.pop("modes"), str(out), **call)
    assert not out.exists()


def test_a_directory_that_is_not_a_run_or_an_out_that_is_a_file(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(tradeoff.TradeoffError, match="not a training run"):
        tradeoff.tradeoff([str(plain)], ["keras_float32"], str(tmp_path / "table"))
    in_the_way = tmp_path / "file"
    in_the_way.write_text("x")
    with pytest.raises(atomic.OutputError, match="--out="):
        tradeoff.tradeoff(["resnet18"], ["keras_float32"], str(in_the_way))
    assert not (tmp_path / "table").exists()


@pytest.mark.slow  # A TensorFlow process for one error line: the default suite's budget.
def test_command_refuses_an_unknown_model_with_one_line(run, tmp_path):
    out = tmp_path / "table"
    result = run("official.tradeoff", "--models=resnet18,no_such_net", f"--out={out}")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "no_such_net" in lines[0], result.stderr[-2000:]
    assert not out.exists()


@pytest.mark.slow
def test_command_measures_every_mode_of_a_real_and_a_binary_network(run, tmp_path):
    out = tmp_path / "table"
    result = run(
        "official.tradeoff",
        "--models=resnet18,bwn_resnet18",
        f"--modes={','.join(tradeoff.MODES)}",
        "--width_multiplier=0.25",
        "--image_size=32",
        "--num_classes=10",
        "--batch_size=2",
        "--repeats=3",
        f"--out={out}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "measurements" in result.stderr  # The progress bar.
    _, table = _read_csv(out / tradeoff.CSV_FILE)
    rows = {(r["model"], r["mode"]): r for r in table}
    assert len(table) == 2 * len(tradeoff.MODES)
    for mode in tradeoff.MODES:  # The real network runs in every mode.
        row = rows["resnet18", mode]
        assert row["error"] == "" and 0 < float(row["latency_p50_ms"]) <= float(
            row["latency_p90_ms"]
        )
    real = {mode: rows["resnet18", mode] for mode in tradeoff.MODES}
    # int8: a quarter of the float file, and 1-byte numbers in the analytic memory.
    assert int(real["tflite_int8"]["weight_bytes"]) < int(real["tflite_float"]["weight_bytes"]) / 2
    assert int(real["tflite_int8"]["peak_memory_bytes"]) * 4 == int(
        real["tflite_float"]["peak_memory_bytes"]
    )
    # bfloat16 activations: less memory than float32 (variables stay float32).
    bf16, fp32 = (int(real[m]["peak_memory_bytes"]) for m in ("keras_bfloat16", "keras_float32"))
    assert bf16 < fp32
    binary = rows["bwn_resnet18", "keras_float32"]
    assert 0 < int(binary["packed_bytes"]) < int(binary["weight_bytes"]) / 4


def _chart_row(model: str, latency_ms: float, top1, mode: str = "keras_float32") -> dict:
    return dict(model=model, mode=mode, latency_p50_ms=latency_ms, top1=top1, params=1e6, error="")


def test_text_scatter_places_points_by_latency_and_accuracy():
    rows = [
        _chart_row("slow", 100.0, 99.0),
        _chart_row("fast", 1.0, 90.0),
        _chart_row("twin", 1.0, 90.0, mode="tflite_float"),  # Same cell as "fast".
        _chart_row("broken", 5.0, 95.0) | {"error": "refused"},  # Not drawn.
    ]
    lines = tradeoff.text_scatter(rows, width=21, height=5).splitlines()
    grid = [line.split("|", 1)[1] for line in lines[1:6]]
    assert grid[0] == " " * 20 + "a"  # Highest accuracy, slowest: top right.
    assert grid[4] == "*"  # "fast" and "twin" share the bottom-left cell.
    assert "logarithmic" in lines[8]  # 100× spread of latencies.
    assert lines[9:] == [
        "  a  slow (keras_float32): 100.00 ms, 99.00",
        "  b  fast (keras_float32): 1.00 ms, 90.00",
        "  c  twin (tflite_float): 1.00 ms, 90.00",
    ]
    # 10 ms on a log axis from 1 to 100 ms is the middle column; parameters when no accuracy.
    middle = tradeoff.text_scatter(
        [_chart_row("x", 1.0, ""), _chart_row("y", 10.0, ""), _chart_row("z", 100.0, "")],
        width=21,
        height=5,
    ).splitlines()
    assert middle[0] == "params (M)"
    assert middle[5].split("|", 1)[1] == "a" + " " * 9 + "b" + " " * 9 + "c"
