"""The one base class of every error a user can cause or act on.

Library code raises a subclass of `UserError` whose message names the culprit (a flag, a file, a
record, a value) and what to do about it; `official.cli.user_errors` alone turns it into one
line on stderr and the exit status `exit_status`. Any other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An error the user can act on; the message is the whole report.

    Attributes:
      exit_status: the command's exit status (2: a wrong flag, file or value).
    """

    exit_status: int = 2
