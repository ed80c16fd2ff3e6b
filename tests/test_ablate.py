"""The ablation runner (official/ablate.py): the ladder format, its checks, the tables from
known numbers, and a two-rung ladder of tiny runs trained, resumed and tabulated."""

import csv
import io
import json
import os
import statistics

import numpy as np
import pytest

from official import ablate

# Two steps of a LeNet-5 on 16 synthetic images: the fastest real training run.
TINY = (
    "--config.model.name=lenet5",
    "--config.data.source=synthetic",
    "--config.data.synthetic_examples=16",
    "--config.data.image_size=32",
    "--config.model.num_classes=4",
    "--config.train.batch_size=8",
    "--config.train.epochs=1",
    "--config.runtime.summary_images=0",
)


def _ladder_file(tmp_path, text, name="ladder.flags"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_ladder_format_order_and_placeholders(tmp_path):
    base = _ladder_file(tmp_path, "--config.train.epochs=3\n", "base.flags")
    ladder_path = _ladder_file(
        tmp_path,
        f"# a comment\n--flagfile={base}\n--config.model.name=resnet18\n--seeds=2\n\n"
        "--rung=baseline:76.21\n"
        "--rung=tweak\n--config.model.name=resnet18_d\n# comment inside a rung\n"
        "--rung=distill:79.29\n--config.train.distill_checkpoint={rung:baseline}\n",
    )
    other = _ladder_file(tmp_path, "--config.train.batch_size=8\n", "other.flags")
    ladder = ablate.parse_ladder(
        [f"--flagfile={ladder_path}", "--out=x", f"--flagfile={other}", "--config.data.cache=true"]
    )
    assert ladder.path == ladder_path and ladder.name == "ladder"
    assert ladder.preamble == ("--config.train.epochs=3", "--config.model.name=resnet18")
    assert [(r.name, r.paper_top1, r.flags) for r in ladder.rungs] == [
        ("baseline", 76.21, ()),
        ("tweak", None, ("--config.model.name=resnet18_d",)),
        ("distill", 79.29, ("--config.train.distill_checkpoint={rung:baseline}",)),
    ]
    assert ladder.overrides == ("--config.train.batch_size=8", "--config.data.cache=true")
    assert ablate.run_flags(ladder, 0, "out", 1) == [
        *ladder.preamble,
        *ladder.overrides,
        "--config.runtime.seed=1",
    ]
    assert ablate.run_flags(ladder, 2, "out", 1) == [
        *ladder.preamble,
        "--config.model.name=resnet18_d",
        f"--config.train.distill_checkpoint={os.path.join('out', 'baseline', 'seed1')}",
        *ladder.overrides,
        "--config.runtime.seed=1",
    ]
    # Later flags win, as official.train reads them: the rung's model, the override's batch.
    config = ablate.parse_config(ablate.run_flags(ladder, 2, "out", 1))
    assert (config.model.name, config.train.batch_size, config.runtime.seed) == (
        "resnet18_d",
        8,
        1,
    )
    assert config.train.distill_checkpoint == os.path.join("out", "baseline", "seed1")


@pytest.mark.parametrize(
    "text, extra, culprit",
    [
        ("--rung=a\n--rung=a\n", (), "--rung=a appears twice"),
        ("--rung=a/b\n", (), "--rung=a/b: a rung name"),
        ("--rung=a:high\n", (), "NAME:PAPER_TOP1"),
        ("--rung=a:120\n", (), "NAME:PAPER_TOP1"),
        ("--rung=a\n--config.train.distill_checkpoint={rung:b}\n--rung=b\n", (), "{rung:b}"),
        ("--rung=a\n--config.train.distill_checkpoint={rung:a}\n", (), "{rung:a}"),
        ("--rung=a\n--config.train.distill_checkpoint={rungs:a}\n", (), "{rung:NAME}"),
        ("--rung=a\n--seeds=2\n", (), "--seeds=2 in --rung=a"),
        ("--rung=a\n", ("--rung=b",), "--rung=b: rungs belong in the ladder"),
        ("--config.train.epochs=1\n", (), "no ladder"),
    ],
)
def test_bad_ladders_are_named(tmp_path, text, extra, culprit):
    path = _ladder_file(tmp_path, text)
    with pytest.raises(ablate.LadderError) as error:
        ablate.parse_ladder([f"--flagfile={path}", *extra])
    assert culprit in str(error.value)


def test_every_rung_is_checked_before_training(tmp_path):
    path = _ladder_file(
        tmp_path,
        "--config.model.name=resnet18\n--rung=a\n--rung=b\n--config.train.label_smoothing=1.5\n",
    )
    ladder = ablate.parse_ladder([f"--flagfile={path}"])
    out = tmp_path / "out"
    with pytest.raises(ablate.LadderError) as error:
        ablate.ablate(ladder, str(out))
    assert "(--rung=b)" in str(error.value) and "--config.train.label_smoothing=1.5" in str(
        error.value
    )
    assert not out.exists()  # Nothing written, nothing trained.
    path = _ladder_file(tmp_path, "--rung=a\n--config.model.name=resnet18_z\n")
    with pytest.raises(ablate.LadderError, match="--rung=a.*resnet18_z"):
        ablate.check(ablate.parse_ladder([f"--flagfile={path}"]), str(out))


def test_command_line_refuses_a_bad_ladder_in_one_line(run, tmp_path):
    path = _ladder_file(tmp_path, "--rung=a\n--rung=a\n")
    result = run("official.ablate", f"--flagfile={path}", f"--out={tmp_path / 'out'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {path}: --rung=a appears twice"]
    assert not (tmp_path / "out").exists()


def test_tables_from_known_metrics(tmp_path):
    path = _ladder_file(
        tmp_path,
        "--rung=base:76.21\n--rung=b\n--config.model.name=resnet50_b\n"
        "--rung=c:76.87\n--config.model.name=resnet50_c\n",
    )
    ladder = ablate.parse_ladder([f"--flagfile={path}", "--config.data.source=synthetic"])
    top1 = {"base": [0.90, 0.94], "b": [0.95, 0.93], "c": [0.97, 0.96]}
    metrics = {
        name: [
            {"top1": t, "top5": 1.0 - i / 100, "wall_seconds": 10.0 + i} for i, t in enumerate(ts)
        ]
        for name, ts in top1.items()
    }
    rows = ablate.summarize(ladder, metrics, "out", 2)
    assert [row["rung"] for row in rows] == ["base", "b", "c"]
    means = {name: 100 * np.mean(ts) for name, ts in top1.items()}
    for row in rows:
        values = [100 * t for t in top1[row["rung"]]]
        assert row["top1_mean"] == pytest.approx(np.mean(values), abs=1e-4)
        assert row["top1_std"] == pytest.approx(np.std(values, ddof=1), abs=1e-4)
        assert row["top5_mean"] == pytest.approx(99.5) and row["wall_seconds_mean"] == 10.5
    assert rows[0]["delta_top1"] == ""
    assert rows[1]["delta_top1"] == pytest.approx(means["b"] - means["base"], abs=1e-4)
    assert rows[2]["delta_top1"] == pytest.approx(means["c"] - means["b"], abs=1e-4)
    # The paper's Δ needs the paper's number on both rungs.
    assert [row["paper_top1"] for row in rows] == [76.21, "", 76.87]
    assert [row["paper_delta_top1"] for row in rows] == ["", "", ""]
    assert rows[1]["flags_added"] == "model.name=resnet50_b"
    assert (
        rows[2]["run_dirs"]
        == f"{os.path.join('out', 'c', 'seed0')};{os.path.join('out', 'c', 'seed1')}"
    )

    written = ablate.write(ladder, rows, str(tmp_path), 2)
    assert [os.path.basename(p) for p in written] == ["ablation.md", "ablation.csv", "ablation.png"]
    table = list(csv.DictReader(io.StringIO((tmp_path / "ablation.csv").read_text())))
    assert tuple(table[0]) == ablate.COLUMNS and len(table) == 3
    markdown = (tmp_path / "ablation.md").read_text()
    assert "| b | model.name=resnet50_b | 94.00 ± 1.41 | 99.50 ± 0.71 | +2.00 |  |  | 10 s |" in (
        markdown
    )
    assert (
        "over seeds 0..1" in markdown and "Every rung also had: data.source=synthetic" in markdown
    )
    assert (tmp_path / "ablation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The text chart under the table: b +2.00 and c +2.50 on a scale where c fills 24 cells.
    bars = {"b": ("+2.00", 19, "94.00 ± 1.41"), "c": ("+2.50", 24, "96.50 ± 0.71")}
    for name, (delta, length, top1) in bars.items():
        bar = f"{name:<4} m  {delta} " + " " * 24 + "|" + "#" * length
        assert f"{bar:<64} top-1 {top1}" in markdown


def test_text_chart_bars_share_one_scale_around_zero():
    def row(name, delta, paper, top1=90.0, std=""):
        return dict(
            rung=name, delta_top1=delta, paper_delta_top1=paper, top1_mean=top1, top1_std=std
        )

    rows = [row("base", "", ""), row("up", 0.5, 1.0, 90.5, 0.25), row("down", -1.0, "", 89.5)]
    lines = ablate.text_chart(rows, half_width=10).splitlines()
    assert "one # = 0.1 points" in lines[0]
    axis = lines[1].index("|")
    assert all(line.index("|") == axis for line in lines[1:])  # One zero axis for every bar.
    up, up_paper, down = lines[1:]
    assert up.startswith("up   m  +0.50") and up[axis + 1 :].split()[0] == "#####"
    assert up.endswith("top-1 90.50 ± 0.25")
    assert up_paper.startswith("     p  +1.00") and up_paper[axis + 1 :] == "#" * 10
    assert down[:axis].endswith(" " + "#" * 10) and down.endswith("top-1 89.50")
    assert ablate.text_chart([row("base", "", "")]) == ""  # One rung: no step to draw.


def _metrics(path):
    return json.loads((path / "metrics.json").read_text())


@pytest.mark.slow  # A whole run in a subprocess or a full-size build: the default suite's budget.
def test_two_rung_ladder_trains_resumes_and_tabulates(tmp_path):
    """Rung "base" trains; the ladder gains a rung; the rerun skips "base" and trains it."""
    preamble = "".join(f"{flag}\n" for flag in TINY)
    path = _ladder_file(tmp_path, f"{preamble}--rung=base:76.21\n")
    out = tmp_path / "out"
    stream = io.StringIO()
    rows, _ = ablate.ablate(ablate.parse_ladder([f"--flagfile={path}"]), str(out), stream=stream)
    base = out / "base" / "seed0"
    assert [row["rung"] for row in rows] == ["base"]
    assert "[1/1] base seed 0: training in" in stream.getvalue()
    first = os.stat(base / "metrics.json").st_mtime_ns

    _ladder_file(
        tmp_path,
        f"{preamble}--rung=base:76.21\n--rung=smooth:78.31\n--config.train.label_smoothing=0.1\n",
    )
    stream = io.StringIO()
    rows, written = ablate.ablate(
        ablate.parse_ladder([f"--flagfile={path}"]), str(out), stream=stream
    )
    lines = stream.getvalue().splitlines()
    assert f"[1/2] base seed 0: finished earlier, skipped ({base})" in lines
    assert os.stat(base / "metrics.json").st_mtime_ns == first
    assert any(line.startswith("[2/2] smooth seed 0: trained in") for line in lines)
    smooth = out / "smooth" / "seed0"
    config = json.loads((smooth / "config.json").read_text())["config"]
    assert config["train"]["label_smoothing"] == 0.1 and config["runtime"]["seed"] == 0
    assert "official.train" in (smooth / "train.log").read_text()

    base_top1, smooth_top1 = (100 * _metrics(p)["top1"] for p in (base, smooth))
    assert [row["rung"] for row in rows] == ["base", "smooth"]
    assert rows[0]["top1_mean"] == pytest.approx(base_top1, abs=1e-4)
    assert rows[1]["delta_top1"] == pytest.approx(smooth_top1 - base_top1, abs=1e-3)
    assert rows[1]["paper_delta_top1"] == pytest.approx(2.10)
    assert rows[1]["top1_std"] == ""  # One seed: no spread.
    table = list(csv.DictReader(io.StringIO((out / "ablation.csv").read_text())))
    assert [r["rung"] for r in table] == ["base", "smooth"] and tuple(table[0]) == ablate.COLUMNS
    markdown = (out / "ablation.md").read_text()
    assert "| base | (the preamble) |" in markdown and "| smooth | train.label_smoothing=0.1 |" in (
        markdown
    )
    assert (out / "ablation.png").stat().st_size > 1000


@pytest.mark.slow
def test_seeds_mean_std_and_teacher_from_an_earlier_rung(run, tmp_path):
    preamble = "".join(f"{flag}\n" for flag in TINY)
    path = _ladder_file(
        tmp_path,
        f"{preamble}--rung=base\n--rung=distill\n"
        "--config.train.distill_checkpoint={rung:base}\n--config.train.distill_temperature=20\n",
    )
    out = tmp_path / "out"
    result = run("official.ablate", f"--flagfile={path}", "--seeds=2", f"--out={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    table = {r["rung"]: r for r in csv.DictReader(io.StringIO((out / "ablation.csv").read_text()))}
    for rung in ("base", "distill"):
        top1 = [100 * _metrics(out / rung / f"seed{k}")["top1"] for k in (0, 1)]
        assert float(table[rung]["top1_mean"]) == pytest.approx(statistics.fmean(top1), abs=1e-4)
        assert float(table[rung]["top1_std"]) == pytest.approx(statistics.stdev(top1), abs=1e-4)
        assert table[rung]["seeds"] == "2"
    for k in (0, 1):
        config = json.loads((out / "distill" / f"seed{k}" / "config.json").read_text())["config"]
        assert config["runtime"]["seed"] == k
        assert config["train"]["distill_checkpoint"] == str(out / "base" / f"seed{k}")
    assert "± " in result.stdout and "written:" in result.stdout


@pytest.mark.slow
def test_a_failing_rung_names_its_log_and_keeps_the_rungs_before(run, tmp_path):
    preamble = "".join(f"{flag}\n" for flag in TINY)
    path = _ladder_file(
        tmp_path,
        f"{preamble}--rung=base\n--rung=distill\n"
        f"--config.train.distill_checkpoint={tmp_path / 'no_teacher'}\n",
    )
    out = tmp_path / "out"
    result = run("official.ablate", f"--flagfile={path}", f"--out={out}")
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith(f"error: {out / 'distill' / 'seed0'}: training failed")
    assert "no_teacher" in line and "train.log" in line
    table = list(csv.DictReader(io.StringIO((out / "ablation.csv").read_text())))
    assert [r["rung"] for r in table] == ["base"]
