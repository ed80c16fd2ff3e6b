"""Every file and export directory the package writes appears complete or not at all.

A writer writes under a temporary name in the destination's directory (same file system) and
renames it into place when complete, so a reader, a polling server or a rerun after `kill -9`
never sees half a file. Temporary names start with `.tmp-` (TF Serving and the converter's
shard globs ignore them) and carry the process id, so two processes never share one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from official.errors import UserError

TEMPORARY_PREFIX = ".tmp-"


class OutputError(UserError):
    """An output location that cannot be written (a file where a directory should be,
    permissions, a full disk); the message names the flag and the reason."""


def ensure_directory(path: str, flag: str) -> str:
    """Creates directory `path` (and its parents) if needed and checks that it is writable.

    Raises:
      OutputError: `path` or a parent is a file, or it cannot be created or written.
    """
    try:
        os.makedirs(path, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputError(f"{flag}={path}: a file is in the way (expected a directory)") from None
    except OSError as e:
        raise OutputError(f"{flag}={path}: cannot create it ({e.strerror or e})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"{flag}={path}: not writable")
    return path


def temporary_name(path: str) -> str:
    """The temporary name `path` is written under: `.tmp-<name>.<pid>` beside it."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f"{TEMPORARY_PREFIX}{name}.{os.getpid()}")


@contextlib.contextmanager
def open_file(path: str, mode: str = "w", *, fsync: bool = False) -> Iterator[IO]:
    """A file object to write `path` through; it replaces `path` when the block ends normally.

    Args:
      path: the final path (its directory must exist).
      mode: "w" (UTF-8 text) or "wb".
      fsync: flush the data to disk before the rename (for files a crash must not lose, such
        as TFRecord shards whose completion a manifest records).
    """
    temporary = temporary_name(path)
    # Text is UTF-8; names from a file system that are not (surrogate escapes) keep their bytes.
    text = {"encoding": "utf-8", "errors": "surrogateescape"} if "b" not in mode else {}
    try:
        with open(temporary, mode, **text) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


def write_text(path: str, text: str) -> str:
    """Writes `text` (UTF-8) to `path`; returns the path."""
    with open_file(path) as f:
        f.write(text)
    return path


def write_json(path: str, payload: Any, *, indent: int = 2) -> str:
    """Writes `payload` as JSON with sorted keys and a final newline; returns the path."""
    return write_text(path, json.dumps(payload, indent=indent, sort_keys=True) + "\n")


@contextlib.contextmanager
def directory(path: str) -> Iterator[str]:
    """A temporary directory that becomes `path` when the block ends normally.

    The temporary directory gets the permissions a plain `mkdir` would (a model server running
    as another user must read an export), and is removed if the block fails.

    Raises:
      FileExistsError: `path` appeared while the block ran (nothing is left behind).
    """
    parent, name = os.path.split(os.path.abspath(path))
    temporary = tempfile.mkdtemp(prefix=f"{TEMPORARY_PREFIX}{name}-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o777 & ~umask)
    try:
        yield temporary
        os.rename(temporary, path)  # Fails if `path` exists as a non-empty directory.
    except OSError as e:
        shutil.rmtree(temporary, ignore_errors=True)
        if os.path.exists(path):
            raise FileExistsError(f"{path} appeared while it was being written") from e
        raise
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
