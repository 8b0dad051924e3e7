"""Publishing: append envelopes to the log, then remember their records, then count them.

Every source (firehose, Jetstream, labelers, backfill) publishes through a
:class:`Publisher`, so ``repo_record`` (:mod:`ingest.repo_record`) follows the log
whichever source published a record, and the published count means the same everywhere.
Log and database errors propagate (the caller's cursor has not moved: nothing is lost).
Scrobbles go to the ``plays`` topic through a publisher built with ``remember=False``: a
listener's repo is not one we index, so ``repo_record`` keeps nothing of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from psycopg_pool import AsyncConnectionPool

from ingest.repo_record import remember_records
from kernel.envelope import Envelope
from kernel.log import Log

__all__ = ["Counts", "Publisher"]


class Counts(Protocol):
    """Where a source counts what it published (its stats)."""

    published: int


@dataclass
class _Count:
    published: int = 0


class Publisher:
    """Appends to ``topic`` in order (``batch`` envelopes per append), then ``repo_record``."""

    def __init__(
        self,
        log: Log,
        topic: str,
        pool: AsyncConnectionPool,
        *,
        counts: Counts | None = None,
        batch: int = 2000,
        remember: bool = True,
    ) -> None:
        self._log = log
        self._topic = topic
        self._pool = pool
        self.counts: Counts = counts if counts is not None else _Count()
        self._batch = batch
        self._remember = remember

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Append ``envelopes``; once the log acknowledged them, remember and count them."""
        for start in range(0, len(envelopes), self._batch):
            chunk = envelopes[start : start + self._batch]
            await self._log.append(self._topic, [(e.key, e.to_bytes()) for e in chunk])
        # What we published is what a later getRepo resync diffs against (deletes while down).
        if self._remember:
            await remember_records(self._pool, envelopes)
        self.counts.published += len(envelopes)
