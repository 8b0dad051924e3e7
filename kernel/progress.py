"""Progress of long work (backfill, rebuild, archive), for the person who started it.

One renderer for every long command: on a terminal a bar redrawn in place (at most five
times a second), elsewhere a structured log line every ``interval`` seconds, so a job
run under a supervisor leaves a readable trail instead of carriage returns.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

__all__ = ["ProgressBar"]

logger = logging.getLogger(__name__)

_WIDTH = 30


class ProgressBar:
    """``label [#####.....] done/total unit  detail``, or a log line when not a terminal."""

    def __init__(
        self,
        label: str,
        total: int | None,
        unit: str,
        *,
        stream: TextIO | None = None,
        interval: float = 5.0,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._interval = 0.2 if self._tty else interval
        self._shown = float("-inf")
        self._drawn = False

    def update(self, done: int, *, detail: str = "", force: bool = False) -> None:
        """Show ``done`` (and ``detail``) when due, or now with ``force``."""
        now = time.monotonic()
        if not force and now - self._shown < self._interval:
            return
        self._shown = now
        if self._tty:
            self._stream.write("\r" + self.line(done, detail))
            self._stream.flush()
            self._drawn = True
        else:
            logger.info(
                "progress",
                extra={
                    "task": self.label,
                    "done": done,
                    "total": self.total,
                    "unit": self.unit,
                    "detail": detail,
                },
            )

    def finish(self, done: int, *, detail: str = "") -> None:
        """Show the final state and end the terminal line."""
        self.update(done, detail=detail, force=True)
        if self._tty and self._drawn:
            self._stream.write("\n")
            self._stream.flush()

    def line(self, done: int, detail: str = "") -> str:
        """The bar as text (without the carriage return)."""
        if self.total:
            filled = _WIDTH * min(done, self.total) // self.total
            bar = f" [{'#' * filled}{'.' * (_WIDTH - filled)}] {done:,}/{self.total:,}"
        else:
            bar = f" {done:,}"
        return f"{self.label}{bar} {self.unit}" + (f"  {detail}" if detail else "")
