"""The table-backed log in PostgreSQL, used by the embedded default.

Offsets are handed out by a per-partition counter row (``log_partition``), locked for the
length of the appending transaction, so offsets are gapless and appear in commit order.
An append is one call of ``plyr_log_append`` (``migrations/0021_log_append_function.sql``),
one statement and one transaction.

Readers (:meth:`PostgresLog.reader`) ask for all their partitions in one query and, when
nothing is there, wait for the ``NOTIFY`` every append sends on commit, heard on one
``LISTEN`` connection per log: a write is seen in milliseconds, and idle readers cost one
query per second (the safety net, should a notification be missed while reconnecting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence

import psycopg
from psycopg_pool import AsyncConnectionPool

from kernel.log.base import (
    LogClosed,
    LogError,
    LogReader,
    Message,
    Position,
    TopicPartition,
    check_fetch,
    partition_for,
)

__all__ = ["PostgresLog"]

logger = logging.getLogger(__name__)

_POLL_INTERVAL = 0.05
# The channel appends notify on commit (named again in plyr_log_append); readers wake on it.
_CHANNEL = "plyr_log"
# Longest a waiting reader goes without looking: covers a notification missed while the
# listening connection was being re-established.
_SAFETY_POLL = 1.0
_LISTEN_RETRY = 1.0


class PostgresLog:
    """:class:`~kernel.log.base.Log` over the ``log_message`` table."""

    def __init__(
        self, pool: AsyncConnectionPool, *, partitions: int, topics: Sequence[str] = ()
    ) -> None:
        self._pool = pool
        self._partitions = partitions
        self._topics = tuple(topics)
        self._known: set[str] = set()
        self._closed = False
        # Each waiting reader's event and topics: the listener sets the events of the
        # readers of the topic a notification names.
        self._wakeups: dict[asyncio.Event, frozenset[str]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    async def start(self) -> None:
        for topic in self._topics:
            await self._ensure_topic(topic)

    async def close(self) -> None:
        self._closed = True
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        self._wake(None)

    def reader(self) -> LogReader:
        """A reader of many partitions: one query for all, woken by ``NOTIFY``."""
        return _PostgresReader(self)

    async def _ensure_listener(self) -> None:
        """Start the ``LISTEN`` task if needed; wait (briefly) until it listens."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="plyr-log-listen")
        if not self._listening.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._listening.wait(), _SAFETY_POLL)

    async def _listen(self) -> None:
        """Hold a ``LISTEN`` connection and wake every reader on each notification."""
        while not self._closed:
            try:
                async with await psycopg.AsyncConnection.connect(
                    await self._conninfo(), autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {_CHANNEL}")
                    self._listening.set()
                    # A reconnect may have missed notifications: wake everyone to look.
                    self._wake(None)
                    async for notify in conn.notifies():
                        self._wake(notify.payload)
            except psycopg.OperationalError as exc:
                self._listening.clear()
                logger.warning("log listener failed, reconnecting", extra={"error": str(exc)})
                await asyncio.sleep(_LISTEN_RETRY)

    async def _conninfo(self) -> str:
        """The pool's connection string (a pool may compute it per connection)."""
        conninfo = self._pool.conninfo
        if isinstance(conninfo, str):
            return conninfo
        made = conninfo()
        return made if isinstance(made, str) else await made

    def _wake(self, topic: str | None) -> None:
        """Wake the readers waiting on ``topic`` (all of them if None)."""
        for wakeup, topics in self._wakeups.items():
            if topic is None or topic in topics:
                wakeup.set()

    def partitions(self, topic: str) -> int:
        return self._partitions

    async def _ensure_topic(self, topic: str) -> None:
        if topic in self._known:
            return
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO log_partition (topic, partition, next_offset)"
                " SELECT %s, p, 0 FROM generate_series(0, %s - 1) AS p"
                " ON CONFLICT DO NOTHING",
                (topic, self._partitions),
            )
        self._known.add(topic)

    async def append(self, topic: str, items: Sequence[tuple[bytes, bytes]]) -> list[Position]:
        if self._closed:
            raise LogClosed("append on a closed log")
        if not items:
            return []
        await self._ensure_topic(topic)
        by_partition: dict[int, list[int]] = defaultdict(list)
        partitions: list[int] = []
        for index, (key, _) in enumerate(items):
            partition = partition_for(key, self._partitions)
            by_partition[partition].append(index)
            partitions.append(partition)
        try:
            async with self._pool.connection() as conn:
                # One statement, its own transaction (migrations/0021: lock the counters in
                # partition order, insert, notify); binary parameters: bytea as is, not
                # as hex text.
                cur = await conn.execute(
                    "SELECT plyr_log_append(%s, %b::int4[], %b::bytea[], %b::bytea[])",
                    (topic, partitions, [k for k, _ in items], [v for _, v in items]),
                )
                row = await cur.fetchone()
        except (psycopg.OperationalError, psycopg.errors.NoDataFound) as exc:
            raise LogError(f"append to {topic} failed: {exc}") from exc
        assert row is not None
        positions: list[Position | None] = [None] * len(items)
        for partition, first in zip(sorted(by_partition), row[0], strict=True):
            for rank, index in enumerate(by_partition[partition]):
                positions[index] = Position(partition, first + rank)
        return [p for p in positions if p is not None]

    async def read(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_messages: int = 500,
        timeout: float = 1.0,
    ) -> list[Message]:
        deadline = time.monotonic() + timeout
        while True:
            if self._closed:
                raise LogClosed("read on a closed log")
            try:
                async with self._pool.connection() as conn:
                    # Binary results: bytea arrives as is, not hex text to decode (half
                    # the CPU and a third of the time of a 10k-message read).
                    cur = await conn.cursor(binary=True).execute(
                        'SELECT "offset", key, value,'
                        " (extract(epoch FROM appended_at) * 1000)::bigint"
                        " FROM log_message WHERE topic = %s AND partition = %s"
                        ' AND "offset" >= %s ORDER BY "offset" LIMIT %s',
                        (topic, partition, offset, max_messages),
                    )
                    rows = await cur.fetchall()
            except psycopg.OperationalError as exc:
                raise LogError(f"read from {topic}/{partition} failed: {exc}") from exc
            if rows:
                return [
                    Message(topic, partition, int(o), bytes(k), bytes(v), int(ts))
                    for o, k, v, ts in rows
                ]
            if time.monotonic() >= deadline:
                return []
            await asyncio.sleep(_POLL_INTERVAL)

    async def end_offset(self, topic: str, partition: int) -> int:
        if self._closed:
            raise LogClosed("end_offset on a closed log")
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT next_offset FROM log_partition WHERE topic = %s AND partition = %s",
                (topic, partition),
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0


class _PostgresReader:
    """:class:`~kernel.log.base.LogReader` of a :class:`PostgresLog`."""

    def __init__(self, log: PostgresLog) -> None:
        self._log = log
        self._wakeup = asyncio.Event()
        self._closed = False

    async def fetch(
        self,
        positions: Mapping[TopicPartition, int],
        *,
        max_messages: int = 500,
        timeout: float = 1.0,
    ) -> list[Message]:
        """Whatever is ready in ``positions``; waits for a ``NOTIFY`` up to ``timeout`` s."""
        check_fetch(positions, max_messages)
        log = self._log
        deadline = time.monotonic() + timeout
        log._wakeups[self._wakeup] = frozenset(topic for topic, _ in positions)
        try:
            await log._ensure_listener()
            while True:
                if self._closed or log._closed:
                    raise LogClosed("fetch on a closed log")
                # Cleared before the query: a notification during it sets it again.
                self._wakeup.clear()
                messages = await self._query(positions, max_messages) if positions else []
                if messages:
                    return messages
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), min(remaining, _SAFETY_POLL))
        finally:
            log._wakeups.pop(self._wakeup, None)

    async def _query(
        self, positions: Mapping[TopicPartition, int], max_messages: int
    ) -> list[Message]:
        """One query over all partitions, shared round-robin (by rank within a partition)."""
        topics = [topic for topic, _ in positions]
        partitions = [partition for _, partition in positions]
        offsets = list(positions.values())
        try:
            async with self._log._pool.connection() as conn:
                cur = await conn.cursor(binary=True).execute(
                    'SELECT a.topic, a.partition, m."offset", m.key, m.value, m.ts'
                    " FROM unnest(%s::text[], %s::int4[], %s::int8[]) AS a(topic, partition, start)"
                    " CROSS JOIN LATERAL ("
                    '   SELECT "offset", key, value,'
                    "   (extract(epoch FROM appended_at) * 1000)::bigint AS ts,"
                    '   row_number() OVER (ORDER BY "offset") AS rank'
                    "   FROM log_message WHERE topic = a.topic AND partition = a.partition"
                    '   AND "offset" >= a.start ORDER BY "offset" LIMIT %s) AS m'
                    " ORDER BY m.rank, a.topic, a.partition LIMIT %s",
                    (topics, partitions, offsets, max_messages, max_messages),
                )
                rows = await cur.fetchall()
        except psycopg.OperationalError as exc:
            raise LogError(f"fetch of {len(positions)} partitions failed: {exc}") from exc
        messages = [
            Message(t, int(p), int(o), bytes(k), bytes(v), int(ts)) for t, p, o, k, v, ts in rows
        ]
        messages.sort(key=lambda m: (m.topic, m.partition, m.offset))
        return messages

    async def close(self) -> None:
        """Nothing to release (connections come from the log's pool). Idempotent."""
        self._closed = True
        self._wakeup.set()
