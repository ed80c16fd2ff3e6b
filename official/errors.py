"""The one base class of every error a user can cause or act on.

Library code raises a subclass of `UserError` whose message names the culprit (a flag, a file, a
record, a value) and what to do about it; `official.cli.user_errors` alone turns it into one
line on stderr and the exit status `exit_status`. Any other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations

import re


class UserError(Exception):
    """An error the user can act on; the message is the whole report.

    Attributes:
      exit_status: the command's exit status (2: a wrong flag, file or value).
    """

    exit_status: int = 2


# Lines TensorFlow wraps around an op's own words: where it happened, not what.
_CONTEXT_LINES = ("Graph execution error", "Detected at node", "<stack traces", "File ", "[[")


def tensorflow_words(error: Exception) -> str:
    """The first line of what a TensorFlow op said in an error (e.g. "Invalid JPEG data, size
    66"), without the function and node names TensorFlow puts around it."""
    message = getattr(error, "message", str(error))
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(_CONTEXT_LINES)]
    line = (useful or lines or [type(error).__name__])[0]
    line = re.sub(r"^(\{\{function_node [^}]*\}\}\s*)+", "", line)
    return re.sub(r"\s*\[Op:\w+\].*$", "", line).strip() or type(error).__name__
