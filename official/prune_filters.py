"""Filter pruning of a trained run (Li et al. arXiv 1608.08710):
`python -m official.prune_filters --model_dir=RUN --fractions=0.5,0.3,0.1,0 --out=PRUNED`.

Removes the given fraction of filters (one per stage, or one for all) from every prunable
convolution of the run's model by L1 norm (official/models/filter_pruning.py), prints the
parameters, multiply-adds and single-image latency before and after, and writes PRUNED as a run
directory (config.json with `model.filter_prune_fractions`, labels.txt, checkpoint) that the
normal training command fine-tunes (the fractions come with the weights):

  python -m official.train ... --config.model.init_weights=PRUNED --model_dir=FINETUNED
"""

from __future__ import annotations

import dataclasses
import os
import shutil

from absl import app, flags

from official import atomic, cli

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Trained run to prune.", required=True)
_OUT = flags.DEFINE_string("out", None, "New run directory to write.", required=True)
_FRACTIONS = flags.DEFINE_list(
    "fractions", None, "Fraction of filters removed per stage (or one for all).", required=True
)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Checkpoint path (default: the latest).")
_LATENCY_RUNS = flags.DEFINE_integer("latency_runs", 20, "Timed single-image forward passes.")


def prune_run(
    model_dir: str,
    out: str,
    fractions: tuple[float, ...],
    checkpoint: str | None = None,
    latency_runs: int = 20,
) -> dict:
    """Prunes a run's model and writes `out`; returns {"before", "after"} model statistics and
    the stages' fractions."""
    from official import config as config_lib
    from official import runs
    from official.models import count_flops, filter_pruning

    if os.path.exists(out):
        raise atomic.OutputError(f"--out={out}: exists; choose a new directory")
    model, config, _, _ = runs.load_trained_model(model_dir, checkpoint=checkpoint)
    if config.model.filter_prune_fractions:
        raise config_lib.ConfigError(
            f"--model_dir={model_dir}: already filter-pruned; prune its unpruned parent"
        )
    try:
        pruned = filter_pruning.prune_filters(model, fractions)
    except ValueError as e:
        raise config_lib.ConfigError(f"--fractions={','.join(map(str, fractions))}: {e}") from e
    size = config.data.image_size

    def statistics(m):
        return {
            "params": m.count_params(),
            "macs": count_flops(m),
            "latency_ms": filter_pruning.latency_ms(m, size, latency_runs),
        }

    result = {
        "before": statistics(model),
        "after": statistics(pruned.model),
        "stages": pruned.stages,
    }
    pruned_config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, filter_prune_fractions=tuple(fractions)),
    )
    atomic.ensure_directory(os.path.dirname(os.path.abspath(out)), "--out")
    with atomic.directory(out) as scratch:
        runs.save_config(scratch, pruned_config, None)
        shutil.copy(runs.labels_path(model_dir), runs.labels_path(scratch))
        runs.Checkpointer(scratch, model=pruned.model).save(0)
    return result


def main(argv: list[str]) -> None:
    cli.no_arguments(argv)
    try:
        fractions = tuple(float(f) for f in _FRACTIONS.value)
    except ValueError:
        cli.fail(f"--fractions={','.join(_FRACTIONS.value)}: expected numbers, e.g. 0.5,0.3")
    with cli.user_errors():
        result = prune_run(
            _MODEL_DIR.value, _OUT.value, fractions, _CHECKPOINT.value, _LATENCY_RUNS.value
        )
    before, after = result["before"], result["after"]
    stages = ", ".join(f"{name} {fraction:g}" for name, fraction in result["stages"].items())
    print(f"pruned:       {stages}")
    for key, form in (("params", "{:,}"), ("macs", "{:,}"), ("latency_ms", "{:.1f} ms")):
        change = 100 * (1 - after[key] / before[key])
        values = f"{form.format(before[key])} → {form.format(after[key])}"
        print(f"{key + ':':<13} {values} (−{change:.1f}%)")
    print(f"written:      {_OUT.value}")
    print(
        "fine-tune:    python -m official.train <your flags> "
        f"--config.model.init_weights={_OUT.value} --model_dir=NEW_DIR"
    )


def run() -> None:
    """Console-script entry point."""
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
