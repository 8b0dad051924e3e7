"""The backfill's progress: repos done and failed, records and records/s.

Drawn by the one renderer, :class:`kernel.progress.ProgressBar` (a bar on a terminal, a
structured log line every few seconds elsewhere).
"""

from __future__ import annotations

import time
from typing import TextIO

from kernel.progress import ProgressBar

__all__ = ["BackfillProgress"]


class BackfillProgress:
    """Counts a backfill: repos done/failed of ``total``, records, records/s."""

    def __init__(self, total: int, stream: TextIO | None = None, interval: float = 5.0) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.records = 0
        self._bar = ProgressBar("backfill", total, "repos", stream=stream, interval=interval)
        self._started = time.monotonic()

    def add(self, *, records: int = 0, done: int = 0, failed: int = 0) -> None:
        """Count progress and redraw when due (and at the end)."""
        self.records += records
        self.done += done
        self.failed += failed
        self.show(force=self.done + self.failed >= self.total)

    def rate(self) -> float:
        """Records per second since the start."""
        return self.records / max(time.monotonic() - self._started, 1e-9)

    def show(self, *, force: bool = False) -> None:
        """Draw (or log) the current state; ends the line once every repo is through."""
        finished = self.done + self.failed
        detail = f"({self.failed} failed) {self.records} records {self.rate():,.0f} rec/s"
        if finished >= self.total and force:
            self._bar.finish(finished, detail=detail)
        else:
            self._bar.update(finished, detail=detail, force=force)
