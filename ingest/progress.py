"""The backfill's progress: a bar on a terminal, else a structured log line every few seconds."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

__all__ = ["Progress"]

log = logging.getLogger(__name__)


class Progress:
    """Repos done/total and records/s: a bar on a terminal, else a log line every few seconds."""

    def __init__(self, total: int, stream: TextIO | None = None, interval: float = 5.0) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.records = 0
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._interval = 0.2 if self._tty else interval
        self._started = time.monotonic()
        self._shown = 0.0

    def add(self, *, records: int = 0, done: int = 0, failed: int = 0) -> None:
        """Count progress and redraw when due."""
        self.records += records
        self.done += done
        self.failed += failed
        self.show(force=self.done + self.failed >= self.total)

    def rate(self) -> float:
        return self.records / max(time.monotonic() - self._started, 1e-9)

    def show(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._shown < self._interval:
            return
        self._shown = now
        finished = self.done + self.failed
        if self._tty:
            width = 30
            filled = width * finished // max(self.total, 1)
            self._stream.write(
                f"\rbackfill [{'#' * filled}{'.' * (width - filled)}] {finished}/{self.total}"
                f" repos ({self.failed} failed) {self.records} records {self.rate():,.0f} rec/s"
            )
            if finished >= self.total:
                self._stream.write("\n")
            self._stream.flush()
        else:
            log.info(
                "backfill progress",
                extra={
                    "repos_done": self.done,
                    "repos_failed": self.failed,
                    "repos_total": self.total,
                    "records": self.records,
                    "records_per_s": round(self.rate()),
                },
            )
