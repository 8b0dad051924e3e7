"""Trimming the PostgreSQL log: delete what the archive already holds.

Only offsets inside a segment the manifest lists are deleted, and only when that segment
is really in the store with the size the manifest recorded and holds every offset of its
span; anything else stays in the log. The live log's end offsets (``log_partition``) are
untouched, so appends continue numbering where they were.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from kernel.archive.manifest import Manifest, Segment
from kernel.archive.store import SegmentStore

__all__ = ["TrimResult", "trim_postgres_log", "trimmable"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TrimResult:
    """Rows deleted per partition, and segments skipped because they could not be trusted."""

    deleted: dict[int, int]
    skipped: list[Segment]

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


def trimmable(manifest: Manifest, topic: str, sizes: dict[str, int | None]) -> list[Segment]:
    """The segments of ``topic`` whose span may be deleted from the log.

    ``sizes`` maps a segment name to its size in the store (``None``: absent). A segment
    counts when it is dense (holds every offset of its span) and its stored size is the
    one the manifest recorded.
    """
    return [s for s in manifest.of_topic(topic) if s.dense and sizes.get(s.name) == s.bytes]


async def trim_postgres_log(
    pool: AsyncConnectionPool, store: SegmentStore, manifest: Manifest, topic: str
) -> TrimResult:
    """Delete from ``log_message`` every message of ``topic`` held by a trusted segment."""
    segments = manifest.of_topic(topic)
    sizes = {s.name: await asyncio.to_thread(store.size, s.name) for s in segments}
    trusted = trimmable(manifest, topic, sizes)
    skipped = [s for s in segments if s not in trusted]
    for segment in skipped:
        logger.warning(
            "trim: segment not trusted, its events stay in the log",
            extra={
                "topic": topic,
                "partition": segment.partition,
                "offset": segment.first_offset,
                "stored_bytes": sizes.get(segment.name),
            },
        )
    deleted: dict[int, int] = {}
    async with pool.connection() as conn, conn.transaction():
        for segment in trusted:
            cur = await conn.execute(
                "DELETE FROM log_message WHERE topic = %s AND partition = %s"
                ' AND "offset" BETWEEN %s AND %s',
                (topic, segment.partition, segment.first_offset, segment.last_offset),
            )
            deleted[segment.partition] = deleted.get(segment.partition, 0) + cur.rowcount
    logger.info("trim: done", extra={"topic": topic, "deleted": sum(deleted.values())})
    return TrimResult(deleted, skipped)
