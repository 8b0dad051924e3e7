"""Reading the archive back: one partition from an offset, and archive-then-live.

:class:`ArchiveReader` reads the segments the manifest lists (DuckDB over Parquet),
keeping one open scan per partition so consecutive reads continue where the last one
stopped instead of scanning again. :class:`ArchivedLog` is a :class:`~kernel.log.Log`
that serves a partition from the archive below the archive's end offset and from the
live log from there on; the archive's end offset is exactly the first offset the live
log is asked for, so the two join without a gap or a duplicate.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from kernel.archive.duck import connect, parquet_list
from kernel.archive.manifest import Manifest
from kernel.archive.store import SegmentStore
from kernel.archive.writer import load_manifest
from kernel.log import Log, LogReader, Message, Position, TopicPartition

__all__ = ["ArchiveReader", "ArchivedLog"]


@dataclass
class _Scan:
    """An open DuckDB result over one partition; ``next_offset`` is where it stands."""

    cursor: duckdb.DuckDBPyConnection
    next_offset: int
    lock: threading.Lock = field(default_factory=threading.Lock)


class ArchiveReader:
    """The messages of the archive, read with DuckDB over the manifest's segments.

    The manifest is read when the reader is made (:meth:`refresh` reads it again).
    """

    def __init__(self, store: SegmentStore, manifest: Manifest | None = None) -> None:
        self.store = store
        self.manifest = manifest if manifest is not None else load_manifest(store)
        self._db = connect()
        self._scans: dict[tuple[str, int], _Scan] = {}
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Read the manifest again (after an archiver run) and drop open scans."""
        with self._lock:
            self.manifest = load_manifest(self.store)
            self._close_scans()

    def close(self) -> None:
        """Release DuckDB. Idempotent."""
        with self._lock:
            self._close_scans()
            self._db.close()

    def _close_scans(self) -> None:
        for scan in self._scans.values():
            scan.cursor.close()
        self._scans.clear()

    def end_offset(self, topic: str, partition: int) -> int:
        """The offset after the last archived message of the partition (0: none)."""
        return self.manifest.end_offset(topic, partition)

    def _open(self, topic: str, partition: int, offset: int) -> _Scan:
        segments = [s for s in self.manifest.of(topic, partition) if s.last_offset >= offset]
        paths = [str(self.store.local_path(s.name)) for s in segments]
        cursor = self._db.cursor()
        if paths:
            cursor.execute(
                'SELECT "offset", key, value, timestamp_ms FROM read_parquet('
                + parquet_list(paths)
                + ') WHERE "offset" >= ? ORDER BY "offset"',
                [offset],
            )
        return _Scan(cursor, offset if paths else -1)

    def read(self, topic: str, partition: int, offset: int, max_messages: int) -> list[Message]:
        """Up to ``max_messages`` archived messages of the partition at ``offset`` or after.

        Blocking (DuckDB); async callers run it in a thread. Concurrent reads of different
        partitions are fine; of the same partition, they take turns.
        """
        if offset >= self.end_offset(topic, partition):
            return []
        with self._lock:
            scan = self._scans.get((topic, partition))
            if scan is None or scan.next_offset != offset:
                if scan is not None:
                    scan.cursor.close()
                scan = self._scans[topic, partition] = self._open(topic, partition, offset)
        with scan.lock:
            if scan.next_offset < 0:
                return []
            rows: list[Any] = scan.cursor.fetchmany(max_messages)
            if rows:
                scan.next_offset = int(rows[-1][0]) + 1
        return [Message(topic, partition, int(o), k, v, int(ts)) for o, k, v, ts in rows]


class ArchivedLog:
    """A :class:`~kernel.log.Log` that reads the archive first, then the live log.

    Appends and end offsets go to the live log (an end offset is never below the
    archive's). Reads below a partition's archive end offset come from the archive,
    reads from it on from ``live``: a partition whose oldest events were trimmed from
    the live log (or dropped by Kafka's retention) is still read from offset 0.
    """

    def __init__(self, live: Log, archive: ArchiveReader) -> None:
        self.live = live
        self.archive = archive

    async def start(self) -> None:
        await self.live.start()

    async def close(self) -> None:
        await self.live.close()
        self.archive.close()

    def partitions(self, topic: str) -> int:
        return self.live.partitions(topic)

    async def append(self, topic: str, items: Sequence[tuple[bytes, bytes]]) -> list[Position]:
        return await self.live.append(topic, items)

    async def read(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_messages: int = 500,
        timeout: float = 1.0,
    ) -> list[Message]:
        if offset < self.archive.end_offset(topic, partition):
            messages = await asyncio.to_thread(
                self.archive.read, topic, partition, offset, max_messages
            )
            if messages:
                return messages
        return await self.live.read(
            topic, partition, offset, max_messages=max_messages, timeout=timeout
        )

    def reader(self) -> LogReader:
        """A reader that serves archived positions from the archive, the rest live."""
        return _ArchivedReader(self, self.live.reader())

    async def end_offset(self, topic: str, partition: int) -> int:
        live = await self.live.end_offset(topic, partition)
        return max(live, self.archive.end_offset(topic, partition))


class _ArchivedReader:
    """:class:`~kernel.log.LogReader` of an :class:`ArchivedLog`."""

    def __init__(self, log: ArchivedLog, live: LogReader) -> None:
        self._log = log
        self._live = live

    async def fetch(
        self,
        positions: Mapping[TopicPartition, int],
        *,
        max_messages: int = 500,
        timeout: float = 1.0,
    ) -> list[Message]:
        """Archived partitions first (no waiting), then the live reader for the others."""
        archived: list[Message] = []
        for (topic, partition), offset in positions.items():
            if offset < self._log.archive.end_offset(topic, partition):
                archived += await asyncio.to_thread(
                    self._log.archive.read, topic, partition, offset, max_messages
                )
        if archived:
            return archived
        return await self._live.fetch(positions, max_messages=max_messages, timeout=timeout)

    async def close(self) -> None:
        await self._live.close()
