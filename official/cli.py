"""What every entry point shares: the `--config` flag, and the one place where an error a user
can act on (a flag mistake, or any `official.errors.UserError`) becomes one line on stderr and
a non-zero exit."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import logging
import sys

from absl import flags
from ml_collections import config_flags

from official import config as config_lib
from official.errors import UserError

# TensorFlow's Python INFO messages (e.g. the checkpoint saver's "Sharding callback duration"
# on every save) are not for users of the commands; warnings and errors still show.
logging.getLogger("tensorflow").setLevel(logging.WARNING)


def fail(message: str, status: int = 2) -> None:
    """Exits with one line on stderr naming what is wrong."""
    sys.stderr.write(f"error: {message}\n")
    sys.exit(status)


def no_arguments(argv: list[str]) -> None:
    """Refuses positional arguments with one line (absl's UsageError would print the whole
    module docstring first)."""
    if len(argv) > 1:
        fail(
            f"unexpected arguments: {' '.join(argv[1:])} (flags are written --name=value; "
            "--helpfull lists them)"
        )


def image_files(argv: list[str], usage: str) -> list[str]:
    """The image files named after the flags, or one line saying how to name them."""
    if len(argv) < 2:
        fail(f"give one or more image files: {usage}")
    return argv[1:]


def _unknown_config_field(argv: list[str]) -> str | None:
    """Names the first `--config.a.b` on the command line (or in a flagfile) that the Config
    tree does not have, with the valid fields and the closest match."""
    try:
        argv = flags.FLAGS.read_flags_from_files(argv, force_gnu=False)
    except flags.Error:
        return None
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        path = arg[len("--config.") :].split("=", 1)[0].split(".")
        node, prefix = config_lib.Config(), "--config"
        for name in path:
            fields = (
                [f.name for f in dataclasses.fields(node)] if dataclasses.is_dataclass(node) else []
            )
            if name not in fields:
                close = difflib.get_close_matches(name, fields, n=1)
                hint = f" Did you mean {prefix}.{close[0]}?" if close else ""
                return (
                    f"{prefix}.{name}: unknown config field.{hint} "
                    f"Fields of {prefix}: {', '.join(fields)}"
                )
            node, prefix = getattr(node, name), f"{prefix}.{name}"
    return None


def _fail_on_flag_error(error: Exception) -> None:
    if isinstance(error, KeyError):  # ml_collections: a field the config dataclass lacks.
        fail(_unknown_config_field(sys.argv) or f"unknown config field: {error.args[0]}")
    if isinstance(error, flags.Error | TypeError | ValueError):
        fail(str(error).replace("ERROR:: ", "").splitlines()[0])
    raise error


def define_config_flag():
    """Defines `--config.*` from the Config dataclass tree.

    ml_collections already reads the command line (and flagfiles) here, so a mistake in a
    `--config.*` override surfaces at definition time; it gets the same one-line exit.
    """
    try:
        return config_flags.DEFINE_config_dataclass(
            "config", config_lib.Config(), "Experiment configuration (official/config.py)."
        )
    except Exception as e:  # noqa: BLE001 - any failure here comes from the user's flags.
        _fail_on_flag_error(e)


def _print_file_names_as_given() -> None:
    """File names that are not UTF-8 (legal on Linux, kept by Python as surrogate escapes) are
    printed as their bytes, as `ls` does, instead of failing the command at its report under a
    strict UTF-8 locale."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")


def parse_flags(argv: list[str]) -> list[str]:
    """Parses flags; any mistake (unknown or misspelt flag or field, wrong type, missing
    flagfile) exits with status 2 and one line naming it."""
    _print_file_names_as_given()
    try:
        return flags.FLAGS(argv)
    except Exception as e:  # noqa: BLE001
        _fail_on_flag_error(e)
    return []


@contextlib.contextmanager
def user_errors():
    """Turns every UserError raised in the block (a bad config value, file, record or model
    name, a diverged loss, a preemption) into its one line and exit status."""
    try:
        yield
    except UserError as e:
        fail(str(e), status=e.exit_status)
