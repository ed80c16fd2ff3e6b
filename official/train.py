"""Trains a model: `python -m official.train --flagfile=configs/<recipe>.flags [--config.x=y]`.

Flags: `--model_dir` and the `--config.*` tree of official/config.py. Flagfiles may include a
base flagfile (`--flagfile=configs/base.flags`); later flags override earlier ones. The wiring
is official/train_lib.py.
"""

from __future__ import annotations

import os

from absl import app, flags

from official import cli, train_lib
from official import config as config_lib

_CONFIG = cli.define_config_flag()
_MODEL_DIR = flags.DEFINE_string(
    "model_dir",
    None,
    "Where checkpoints, TensorBoard events, config.json and metrics.json go "
    "(default: runs/<model name>).",
)


def main(argv: list[str]) -> None:
    cli.no_arguments(argv)
    config: config_lib.Config = _CONFIG.value
    model_dir = _MODEL_DIR.value or os.path.join("runs", config.model.name)
    with cli.user_errors():
        train_lib.run(config, model_dir)


def run() -> None:
    """Console-script entry point."""
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run()
