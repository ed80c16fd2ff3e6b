"""Runs an ablation ladder and tabulates it, as Tables 5-6 of Bag of Tricks (He et al. arXiv
1812.01187) do:

  python -m official.ablate --flagfile=configs/ablation/bag_of_tricks.flags \\
      --config.data.source=tfrecord:/data/imagenet [--seeds=3] [--out=DIR]

A ladder is a flagfile of named rungs, each adding flags to the one before it:

  # Preamble: --config.* flags (and included flagfiles) common to every rung.
  --config.model.name=resnet50
  --config.train.lr_schedule=step
  # A rung: --rung=NAME[:PAPER_TOP1], then the --config.* flags it adds to the previous rung.
  --rung=baseline:76.21
  --rung=resnet_d:77.16
  --config.model.name=resnet50_d
  --rung=cosine:77.91
  --config.train.lr_schedule=cosine

NAME (letters, digits, `_.-`) names the rung's directory; PAPER_TOP1, optional, is the paper's
top-1 % for that rung, shown beside the measured one. A rung's flags may name an earlier rung's
run directory of the same seed as `{rung:NAME}` (the distillation rung's teacher:
`--config.train.distill_checkpoint={rung:mixup}`). `--config.*` flags given outside the ladder
flagfile (on the command line or in other flagfiles) apply to every rung and come after the
ladder's, so they win (`--config.data.source=...`, or `--config.train.epochs=1` for a smoke
run); the runner adds `--config.runtime.seed=K` last.

Rung R, seed K trains in `<out>/R/seed<K>` (`python -m official.train`, its output in
train.log there). A run whose metrics.json exists is finished and skipped, so rerunning the
command resumes the ladder: an interrupted run resumes from its last checkpoint, a rung
appended to the file is trained, and nothing finished is trained again (delete a rung's
directory to retrain it). Every rung's configuration is checked before anything trains.

Each rung runs in its own process rather than through `train_lib.run` in this one: TensorFlow
configures logical devices, distribution strategies (multi-worker, TPU) and the global
precision policy once per process, eight ImageNet trainings in one process would keep their
graphs and input pipelines in memory, and a rung that dies (out of memory, killed) leaves the
runner able to say which one and where its log is. The price, importing TensorFlow once per
rung, is seconds against minutes to days of training.

Results: top-1 and top-5 are each run's final validation evaluation (its metrics.json), as
mean ± sample standard deviation over the seeds 0..N-1 (`--seeds=N`); Δ is the change of the
mean top-1 from the previous rung, in percentage points, beside the paper's Δ; wall time is
the mean over seeds of the run's `wall_seconds` (its last invocation, when it was resumed).
Written to --out after every rung, each file complete or not at all (official/atomic.py):
ablation.md (a Markdown table, and under it the Δ per rung as a text bar chart), ablation.csv
(COLUMNS) and ablation.png (top-1 per rung with its standard deviation, and measured against
paper Δ per rung).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import statistics
import subprocess
import sys
import time

from official import atomic
from official.errors import UserError

RUNG_FLAG = "--rung"
SEED_FLAG = "--config.runtime.seed"
TRAIN_LOG = "train.log"
CSV_FILE, MARKDOWN_FILE, PLOT_FILE = "ablation.csv", "ablation.md", "ablation.png"
COLUMNS = (
    "rung",
    "flags_added",
    "seeds",
    "top1_mean",
    "top1_std",
    "top5_mean",
    "top5_std",
    "delta_top1",
    "paper_top1",
    "paper_delta_top1",
    "wall_seconds_mean",
    "top1_per_seed",
    "run_dirs",
)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_PLACEHOLDER = re.compile(r"\{rung:([^{}]*)\}")


class LadderError(UserError, ValueError):
    """A ladder file, rung or runner flag that cannot work; the message names it."""


class RungFailedError(UserError):
    """A rung's training exited with an error; the message names the rung and its log."""

    def __init__(self, message: str, exit_status: int):
        super().__init__(message)
        self.exit_status = exit_status


@dataclasses.dataclass(frozen=True)
class Rung:
    name: str
    paper_top1: float | None
    flags: tuple[str, ...]  # The --config.* flags it adds, `{rung:NAME}` not yet expanded.


@dataclasses.dataclass(frozen=True)
class Ladder:
    path: str  # The ladder flagfile.
    preamble: tuple[str, ...]  # Its --config.* flags before the first rung.
    rungs: tuple[Rung, ...]
    overrides: tuple[str, ...]  # --config.* flags from outside it, for every rung.

    @property
    def name(self) -> str:
        return os.path.splitext(os.path.basename(self.path))[0]


# ------------------------------------------------------------------------------ the ladder


def _expand(flagfile_arg: str) -> list[str]:
    from absl import flags

    try:
        return flags.FlagValues().read_flags_from_files([flagfile_arg], force_gnu=False)
    except flags.Error as e:
        raise LadderError(str(e).splitlines()[0]) from None


def _rung(value: str, path: str, seen: list[Rung]) -> Rung:
    name, _, paper = value.partition(":")
    if not _NAME.fullmatch(name):
        raise LadderError(
            f"{path}: {RUNG_FLAG}={value}: a rung name is letters, digits and _.- "
            "(it names the rung's directory)"
        )
    if any(rung.name == name for rung in seen):
        raise LadderError(f"{path}: {RUNG_FLAG}={name} appears twice")
    try:
        paper_top1 = float(paper) if paper else None
    except ValueError:
        paper_top1 = -1.0
    if paper_top1 is not None and not 0 < paper_top1 <= 100:
        raise LadderError(
            f"{path}: {RUNG_FLAG}={value}: expected NAME or NAME:PAPER_TOP1 (a top-1 % in (0, 100])"
        )
    return Rung(name, paper_top1, ())


def _check_placeholders(flag: str, where: str, earlier: list[Rung]) -> None:
    names = _PLACEHOLDER.findall(flag)
    if flag.count("{rung") != len(names):
        raise LadderError(f"{where}: {flag}: write a rung's run directory as {{rung:NAME}}")
    for name in names:
        if not any(rung.name == name for rung in earlier):
            raise LadderError(
                f"{where}: {flag}: {{rung:{name}}} must name an earlier rung "
                f"({', '.join(r.name for r in earlier) or 'none before this one'})"
            )


def parse_ladder(argv: list[str]) -> Ladder:
    """The ladder that a command line describes (see the module docstring).

    Args:
      argv: the command line without the program name, flagfiles not expanded; flags other
        than --config.*, --rung and --flagfile are the runner's own and are left out.

    Raises:
      LadderError: no flagfile with rungs, or two; a --rung outside one; a bad rung name,
        paper number or {rung:NAME}; a flag that is not --config.* inside a rung.
    """
    path, preamble, rungs, overrides = None, [], [], []
    for arg in argv:
        if arg.startswith(RUNG_FLAG + "=") or arg == RUNG_FLAG:
            raise LadderError(f"{arg}: rungs belong in the ladder flagfile (--flagfile=...)")
        if arg.startswith("--config.") and "=" not in arg:
            raise LadderError(f"{arg}: write --config.a.b=value (one argument)")
        if arg.startswith("--config."):
            _check_placeholders(arg, "command line", [])
            overrides.append(arg)
            continue
        if not arg.startswith("--flagfile="):
            continue  # The runner's own flags (absl has parsed them).
        expanded = _expand(arg)
        if not any(flag.startswith(RUNG_FLAG + "=") for flag in expanded):
            for flag in expanded:
                if flag.startswith("--config."):
                    _check_placeholders(flag, arg, [])
                    overrides.append(flag)
            continue
        if path is not None:
            raise LadderError(f"{arg}: a second ladder flagfile (the first is {path})")
        path = arg.split("=", 1)[1]
        for flag in expanded:
            if flag.startswith(RUNG_FLAG + "="):
                rungs.append(_rung(flag.split("=", 1)[1], path, rungs))
            elif flag.startswith("--config.") and rungs:
                _check_placeholders(flag, f"{path} ({RUNG_FLAG}={rungs[-1].name})", rungs[:-1])
                last = rungs[-1]
                rungs[-1] = dataclasses.replace(last, flags=last.flags + (flag,))
            elif flag.startswith("--config."):
                _check_placeholders(flag, f"{path} (preamble)", [])
                preamble.append(flag)
            elif rungs:
                raise LadderError(
                    f"{path}: {flag} in {RUNG_FLAG}={rungs[-1].name}: a rung adds --config.* "
                    "flags only (runner flags go in the preamble)"
                )
    if path is None:
        raise LadderError(
            "no ladder: give --flagfile=LADDER, a flagfile with --rung=NAME lines "
            "(e.g. configs/ablation/digits_small.flags)"
        )
    return Ladder(path, tuple(preamble), tuple(rungs), tuple(overrides))


def run_dir(out: str, rung: str, seed: int) -> str:
    return os.path.join(out, rung, f"seed{seed}")


def run_flags(ladder: Ladder, index: int, out: str, seed: int) -> list[str]:
    """The --config.* flags of rung `index`, seed `seed`: the preamble, every rung's flags up
    to this one (`{rung:NAME}` expanded), the flags from outside the ladder, the seed."""
    chain = [flag for rung in ladder.rungs[: index + 1] for flag in rung.flags]
    chain = [_PLACEHOLDER.sub(lambda m: run_dir(out, m.group(1), seed), f) for f in chain]
    return [*ladder.preamble, *chain, *ladder.overrides, f"{SEED_FLAG}={seed}"]


def parse_config(config_flags_: list[str]):
    """The Config that `official.train` would build from these --config.* flags."""
    from absl import flags
    from ml_collections import config_flags

    from official import config as config_lib

    # ml_collections defines one override flag per `--config.*` it finds in sys.argv when the
    # config flag is defined, so sys.argv must hold these flags at that moment.
    argv = ["ablate", *config_flags_]
    saved, sys.argv = sys.argv, argv
    try:
        values = flags.FlagValues()
        holder = config_flags.DEFINE_config_dataclass(
            "config", config_lib.Config(), flag_values=values
        )
        values(argv)
        return holder.value
    except (flags.Error, KeyError, TypeError, ValueError) as e:
        message = str(e.args[0] if isinstance(e, KeyError) else e).splitlines()[0]
        raise LadderError(message.replace("ERROR:: ", "")) from None
    finally:
        sys.argv = saved


def check(ladder: Ladder, out: str) -> None:
    """Checks every rung's configuration as `official.train` would before it trains.

    Raises:
      LadderError / ConfigError / UnknownModelError: naming the rung and the flag.
    """
    from official import config as config_lib
    from official.models import registry

    for index, rung in enumerate(ladder.rungs):
        try:
            config = parse_config(run_flags(ladder, index, out, 0))
            config_lib.validate(config)
            registry.get(config.model.name)
        except UserError as e:
            raise LadderError(f"{ladder.path} ({RUNG_FLAG}={rung.name}): {e}") from None


# ------------------------------------------------------------------------------ training


def _last_error_line(log_path: str) -> str:
    try:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return ""
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or [""])[-1]


def train(flags_: list[str], model_dir: str) -> None:
    """`python -m official.train --model_dir=model_dir flags...` with its output appended to
    model_dir/train.log.

    Raises:
      RungFailedError: it exited with an error (its status becomes the runner's).
    """
    atomic.ensure_directory(model_dir, "--out")
    log_path = os.path.join(model_dir, TRAIN_LOG)
    command = [sys.executable, "-m", "official.train", f"--model_dir={model_dir}", *flags_]
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n$ {' '.join(command)}\n")
        log.flush()
        status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    if status != 0:
        raise RungFailedError(
            f"{model_dir}: training failed (exit status {status}): "
            f"{_last_error_line(log_path)} (log: {log_path})",
            exit_status=status if 0 < status < 128 else 1,
        )


def _read_metrics(model_dir: str) -> dict:
    from official import runs

    with open(os.path.join(model_dir, runs.METRICS_FILE), encoding="utf-8") as f:
        return json.load(f)


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def summarize(ladder: Ladder, metrics: dict[str, list[dict]], out: str, seeds: int) -> list[dict]:
    """One row (COLUMNS) per rung with metrics, in ladder order; top-1/top-5 in %."""
    rows, previous, previous_paper = [], None, None
    for rung in ladder.rungs:
        if rung.name not in metrics:
            break
        runs_ = metrics[rung.name]
        top1, top1_std = _mean_std([100 * m["top1"] for m in runs_])
        top5, top5_std = _mean_std([100 * m["top5"] for m in runs_])
        paper = rung.paper_top1
        rows.append(
            {
                "rung": rung.name,
                "flags_added": " ".join(f.removeprefix("--config.") for f in rung.flags),
                "seeds": len(runs_),
                "top1_mean": round(top1, 4),
                "top1_std": "" if top1_std is None else round(top1_std, 4),
                "top5_mean": round(top5, 4),
                "top5_std": "" if top5_std is None else round(top5_std, 4),
                "delta_top1": "" if previous is None else round(top1 - previous, 4),
                "paper_top1": "" if paper is None else paper,
                "paper_delta_top1": (
                    ""
                    if paper is None or previous_paper is None
                    else round(paper - previous_paper, 4)
                ),
                "wall_seconds_mean": round(statistics.fmean(m["wall_seconds"] for m in runs_), 1),
                "top1_per_seed": ";".join(f"{100 * m['top1']:.4f}" for m in runs_),
                "run_dirs": ";".join(run_dir(out, rung.name, seed) for seed in range(seeds)),
            }
        )
        previous, previous_paper = top1, paper
    return rows


# ------------------------------------------------------------------------------ writing


def csv_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _with_std(mean, std) -> str:
    return f"{mean:.2f}" + ("" if std == "" else f" ± {std:.2f}")


def _signed(value) -> str:
    return "" if value == "" else f"{value:+.2f}"


def markdown_table(ladder: Ladder, rows: list[dict], seeds: int) -> str:
    """The rows as a Markdown table, with what the numbers are."""
    header = (
        "| rung | flags added | top-1 % | top-5 % | Δ top-1 | paper top-1 % | paper Δ | wall time |"
    )
    lines = [f"Ablation ladder {ladder.path}", "", header, "|---" * 8 + "|"]
    for row in rows:
        added = row["flags_added"].replace("|", "\\|").replace(" ", ", ") or "(the preamble)"
        paper = "" if row["paper_top1"] == "" else f"{row['paper_top1']:.2f}"
        lines.append(
            f"| {row['rung']} | {added} | {_with_std(row['top1_mean'], row['top1_std'])} | "
            f"{_with_std(row['top5_mean'], row['top5_std'])} | {_signed(row['delta_top1'])} | "
            f"{paper} | {_signed(row['paper_delta_top1'])} | {row['wall_seconds_mean']:.0f} s |"
        )
    spread = (
        f"mean ± sample standard deviation over seeds 0..{seeds - 1}" if seeds > 1 else "seed 0"
    )
    common = " ".join(f.removeprefix("--config.") for f in ladder.overrides)
    lines += [
        "",
        f"Top-1/top-5: each run's final validation evaluation (metrics.json), {spread}. Δ: "
        "percentage points against the previous rung; paper: the ladder file's numbers. Wall "
        "time: per run, mean over seeds.",
    ]
    if common:
        lines.append(f"Every rung also had: {common.replace('|', chr(92) + '|')}.")
    chart = text_chart(rows)
    if chart:
        lines += ["", "```text", chart.rstrip("\n"), "```"]
    return "\n".join(lines) + "\n"


def text_chart(rows: list[dict], half_width: int = 24) -> str:
    """ablation.png's gain panel as text (a README needs no picture file): one bar per rung
    after the first for the measured Δ top-1 (m, with the rung's top-1 and its spread over
    seeds) and one for the paper's (p), both on one scale around a zero axis ("|")."""
    values = [abs(row[key]) for row in rows[1:] for key in _DELTAS if row[key] != ""]
    if not values:
        return ""
    per_character = (max(values) or 1.0) / half_width
    name_width = max(len(row["rung"]) for row in rows)
    lines = [
        f"Δ top-1 against the previous rung, in points; one # = {per_character:.2g} points; "
        "m: measured here, p: the paper"
    ]
    for row in rows[1:]:
        for key, tag in zip(_DELTAS, "mp"):
            value = row[key]
            if value == "":
                continue
            bar = "#" * round(abs(value) / per_character)
            left, right = ("", bar) if value > 0 else (bar, "")
            name = row["rung"] if tag == "m" else ""
            line = f"{name:<{name_width}} {tag} {value:+6.2f} {left:>{half_width}}|{right}"
            if tag == "m":
                top1 = _with_std(row["top1_mean"], row["top1_std"])
                line = f"{line:<{name_width + 10 + 2 * half_width + 2}} top-1 {top1}"
            lines.append(line.rstrip())
    return "\n".join(lines) + "\n"


_DELTAS = ("delta_top1", "paper_delta_top1")  # Measured, paper: the chart's two bars per rung.


def plot(ladder: Ladder, rows: list[dict], path: str) -> str:
    """ablation.png: top-1 per rung (error bars: standard deviation over seeds) and Δ per rung,
    measured beside the paper's (the paper's absolute numbers are of another dataset when the
    ladder is scaled down, its steps are what compares)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [row["rung"] for row in rows]
    x = np.arange(len(rows))
    figure, (left, right) = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(rows) + 4), 4.5))
    top1 = [row["top1_mean"] for row in rows]
    errors = [row["top1_std"] or 0.0 for row in rows]
    spread = any(row["top1_std"] != "" for row in rows)
    left.bar(x, top1, yerr=errors if spread else None, capsize=4, color="tab:blue")
    low = min(t - e for t, e in zip(top1, errors))
    high = max(t + e for t, e in zip(top1, errors))
    margin = max(0.5, 0.15 * (high - low))
    left.set_ylim(max(0.0, low - margin), min(100.0, high + margin))
    left.set_ylabel("top-1 (%)")
    left.set_title("measured top-1")
    measured = [row["delta_top1"] or 0.0 for row in rows]
    paper = [row["paper_delta_top1"] or 0.0 for row in rows]
    right.bar(x - 0.2, measured, 0.4, label="measured", color="tab:blue")
    right.bar(x + 0.2, paper, 0.4, label="paper", color="tab:orange")
    right.axhline(0.0, color="black", linewidth=0.8)
    right.set_ylabel("Δ top-1 vs previous rung (points)")
    right.set_title("gain of each rung")
    right.legend(fontsize=8)
    for axes in (left, right):
        axes.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    figure.suptitle(f"ablation: {ladder.name}")
    figure.tight_layout()
    with atomic.open_file(path, "wb") as f:
        figure.savefig(f, format="png", dpi=110)
    plt.close(figure)
    return path


def write(ladder: Ladder, rows: list[dict], out: str, seeds: int) -> list[str]:
    """Writes ablation.md, ablation.csv and ablation.png into `out`; returns their paths."""
    return [
        atomic.write_text(os.path.join(out, MARKDOWN_FILE), markdown_table(ladder, rows, seeds)),
        atomic.write_text(os.path.join(out, CSV_FILE), csv_text(rows)),
        plot(ladder, rows, os.path.join(out, PLOT_FILE)),
    ]


# ------------------------------------------------------------------------------ the runner


def ablate(ladder: Ladder, out: str, seeds: int = 1, stream=None) -> tuple[list[dict], list[str]]:
    """Checks every rung, then trains (or skips) each rung and seed in order, printing a line
    per run and per rung to `stream` and rewriting the tables after every rung.

    Returns:
      (rows, paths written).

    Raises:
      LadderError, ConfigError, OutputError: before anything trains.
      RungFailedError: a rung's training failed (the tables hold the rungs before it).
    """
    from official import runs

    stream = stream or sys.stdout
    if seeds < 1:
        raise LadderError(f"--seeds={seeds}: expected >= 1")
    if not ladder.rungs:
        raise LadderError(f"{ladder.path}: no --rung=NAME line")
    if os.path.exists(out) and not os.path.isdir(out):
        raise atomic.OutputError(f"--out={out}: a file is in the way (expected a directory)")
    check(ladder, out)
    atomic.ensure_directory(out, "--out")

    def say(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    metrics, rows, written = {}, [], []
    total = len(ladder.rungs)
    for index, rung in enumerate(ladder.rungs):
        step = f"[{index + 1}/{total}] {rung.name}"
        results = []
        for seed in range(seeds):
            model_dir = run_dir(out, rung.name, seed)
            if os.path.isfile(os.path.join(model_dir, runs.METRICS_FILE)):
                say(f"{step} seed {seed}: finished earlier, skipped ({model_dir})")
            else:
                say(f"{step} seed {seed}: training in {model_dir} (log: {TRAIN_LOG} there)")
                start = time.monotonic()
                train(run_flags(ladder, index, out, seed), model_dir)
                say(f"{step} seed {seed}: trained in {time.monotonic() - start:.0f} s")
            results.append(_read_metrics(model_dir))
        metrics[rung.name] = results
        rows = summarize(ladder, metrics, out, seeds)
        row = rows[-1]
        delta = "" if row["delta_top1"] == "" else f", Δ {row['delta_top1']:+.2f}"
        paper = "" if row["paper_top1"] == "" else f", paper {row['paper_top1']:.2f}"
        say(
            f"{step}: top-1 {_with_std(row['top1_mean'], row['top1_std'])} %{delta}{paper} "
            f"({len(results)} seed{'s' if len(results) > 1 else ''})"
        )
        written = write(ladder, rows, out, seeds)
    return rows, written


def main(argv: list[str]) -> None:
    from absl import flags

    from official import cli

    cli.no_arguments(argv)
    values = flags.FLAGS
    with cli.user_errors():
        # The ladder's structure is the order of the flags, which absl does not keep: it is
        # read from the command line absl parsed.
        ladder = parse_ladder(sys.argv[1:])
        out = values.out or os.path.join("runs", "ablation", ladder.name)
        rows, written = ablate(ladder, out, values.seeds)
    print()
    print(markdown_table(ladder, rows, values.seeds), end="")
    for path in written:
        print(f"written:      {path}")


def define_flags() -> None:
    """The command's flags (defined when it runs, so importing this module defines none)."""
    from absl import flags

    from official import cli

    cli.define_config_flag()  # Checks every --config.* name and value type of every rung.
    flags.DEFINE_multi_string(
        "rung", [], "NAME[:PAPER_TOP1]: starts a rung (in the ladder flagfile only)."
    )
    flags.DEFINE_integer("seeds", 1, "Train every rung with seeds 0..N-1; report mean ± std.")
    flags.DEFINE_string(
        "out",
        None,
        "Directory of the rungs' runs and the tables (default: runs/ablation/<ladder>).",
    )


def run() -> None:
    """Console-script entry point."""
    from absl import app

    from official import cli

    define_flags()
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
