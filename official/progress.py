"""A progress bar for long loops (training, evaluation, conversion).

On a terminal it redraws one line; in a log file (CI, a subprocess) it prints a line at most
every `log_interval` seconds, so progress stays visible without flooding the log.
"""

from __future__ import annotations

import sys
import time


def _format_seconds(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("s", "x", "ch", "sh")) else "s")


def _format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


class Progress:
    """Progress of `total` units of work with an ETA and named values.

    Args:
      total: units of work (steps, batches, images).
      description: prefix of the line, e.g. "train".
      unit: name of a unit, shown after the counts.
      stream: where to write (stderr by default).
      log_interval: seconds between lines when the stream is not a terminal.
    """

    def __init__(
        self,
        total: int,
        description: str = "",
        unit: str = "step",
        stream=None,
        log_interval: float = 5.0,
    ):
        self.total = max(1, int(total))
        self.description = description
        self.unit = unit
        self.stream = stream or sys.stderr
        self.interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.log_interval = log_interval
        self.start_time = time.monotonic()
        self.start_count: int | None = None
        self.count = 0
        self._last_print: float | None = None

    def update(self, count: int, force: bool = False, **values) -> None:
        """Records that `count` units are done; `values` are shown after the bar."""
        now = time.monotonic()
        if self.start_count is None:
            self.start_count = count if count < self.total else 0
            self.start_time = now
        self.count = count
        interval = 0.1 if self.interactive else self.log_interval
        recent = self._last_print is not None and now - self._last_print < interval
        if not force and count < self.total and recent:
            return
        self._last_print = now
        self.stream.write(
            ("\r" if self.interactive else "")
            + self.line(now, values)
            + ("" if self.interactive else "\n")
        )
        self.stream.flush()

    def line(self, now: float, values: dict) -> str:
        fraction = min(1.0, self.count / self.total)
        width = 24
        filled = int(width * fraction)
        bar = "=" * filled + (">" if filled < width else "") + "." * (width - filled - 1)
        elapsed = now - self.start_time
        done = self.count - (self.start_count or 0)
        if self.count >= self.total:
            timing = f"{_format_seconds(elapsed)} elapsed"
        elif done > 0 and elapsed > 0:
            timing = f"ETA {_format_seconds(elapsed / done * (self.total - self.count))}"
        else:
            timing = "ETA ?"
        parts = [
            f"{self.description} [{bar}] {self.count}/{self.total} {_plural(self.unit)}",
            timing,
        ]
        parts += [f"{name} {_format_value(value)}" for name, value in values.items()]
        return " · ".join(parts).strip()

    def close(self) -> None:
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()
