"""The generic projector runner: fetch what is ready, apply each partition's batch, commit
it with its offset.

The read-model writes and the partition's next offset are committed in one transaction,
with a compare-and-set on the stored offset, so every event takes effect exactly once even
if two workers read the same partition. Invalid events go to ``dead_letter`` and the
offset advances; database trouble retries the batch; anything else propagates.

A partition that returns nothing while the log's end offset lies beyond its position
is logged as an error (``partition not served``) every ``stall_seconds`` until it moves
again: the runner cannot read past it, and must not wait there silently. Tansu's
``s3://`` engine does this to a partition that grew too long to list within a fetch's
max wait (see :class:`StallWatch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from kernel.envelope import Envelope, EnvelopeError
from kernel.log import Log, LogError, Message, TopicPartition
from kernel.log.standstill import Standstill
from projectors.base import InvalidEvent, OffsetConflict, Projector

__all__ = [
    "STALL_SECONDS",
    "Prepared",
    "ReducingProjector",
    "StallWatch",
    "apply_batch",
    "apply_message",
    "dispatch",
    "load_offset",
    "load_positions",
    "prepare",
    "run_projector",
]

logger = logging.getLogger(__name__)

# How long a partition may stay at one position, with the log holding more, before the
# runner reports it as not served (and again every as long while it stays there).
STALL_SECONDS = 30.0


async def load_offset(pool: AsyncConnectionPool, projector: str, topic: str, partition: int) -> int:
    """The next offset ``projector`` will read on ``topic/partition`` (0 if it never ran)."""
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO projector_offset (projector, topic, partition, next_offset)"
            " VALUES (%s, %s, %s, 0) ON CONFLICT DO NOTHING",
            (projector, topic, partition),
        )
        cur = await conn.execute(
            "SELECT next_offset FROM projector_offset"
            " WHERE projector = %s AND topic = %s AND partition = %s",
            (projector, topic, partition),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def _dead_letter(
    conn: AsyncConnection, projector: str, message: Message, reason: str, uri: str | None
) -> None:
    payload: object
    try:
        # PostgreSQL cannot store NUL in jsonb; the original bytes stay on the log.
        payload = json.loads(message.value.replace(b"\\u0000", b"\\ufffd"))
    except ValueError:
        payload = {"raw": message.value.decode("utf-8", "replace")}
    await conn.execute(
        'INSERT INTO dead_letter (projector, topic, partition, "offset", uri, reason, envelope)'
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (
            projector,
            message.topic,
            message.partition,
            message.offset,
            uri,
            reason,
            Jsonb(payload),
        ),
    )
    logger.warning(
        "dead letter",
        extra={
            "projector": projector,
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "key": message.key.decode("utf-8", "replace"),
            "reason": reason,
        },
    )


# A JSON escape of a UTF-16 surrogate: fine in a pair (an emoji written as ASCII), but a
# lone one decodes to a string PostgreSQL cannot store.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abAB]")


def _parse(message: Message) -> Envelope:
    """The envelope of a message; :class:`InvalidEvent` for text PostgreSQL cannot store."""
    return _parse_value(message.value)


def _parse_value(value: bytes) -> Envelope:
    if b"\\u0000" in value:
        raise InvalidEvent("contains a NUL character, which PostgreSQL cannot store")
    envelope = Envelope.from_bytes(value)
    if _SURROGATE_ESCAPE.search(value):
        try:
            json.dumps(envelope.record, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise InvalidEvent("record holds invalid Unicode (a lone surrogate)") from None
    return envelope


async def apply_message(
    conn: AsyncConnection, projector: Projector, message: Message
) -> tuple[Envelope | None, str | None]:
    """Apply one message in a savepoint; the reason if it must be dead-lettered.

    Bad data (envelope, lexicon, values the database refuses) comes back as a reason;
    anything else propagates.
    """
    envelope: Envelope | None = None
    try:
        envelope = _parse(message)
        async with conn.transaction():
            await projector.apply(conn, envelope)
    except (EnvelopeError, InvalidEvent) as exc:
        return envelope, str(exc)
    except psycopg.DataError as exc:
        # Data PostgreSQL refuses (a value out of range, bad text): the event's fault.
        return envelope, f"rejected by the database: {exc}"
    return envelope, None


async def _apply_messages(
    conn: AsyncConnection, projector: Projector, messages: Sequence[Message]
) -> None:
    """Apply messages inside the caller's transaction, dead-lettering the invalid ones."""
    if isinstance(projector, ReducingProjector):
        prepared = prepare(projector, [m.value for m in messages])
        await _apply_prepared(conn, projector, messages, prepared)
        return
    for message in messages:
        envelope, reason = await apply_message(conn, projector, message)
        if reason is not None:
            await _dead_letter(conn, projector.name, message, reason, _uri(envelope))


def _uri(envelope: Envelope | None) -> str | None:
    return envelope.uri if envelope is not None else None


@runtime_checkable
class ReducingProjector(Projector, Protocol):
    """A projector that applies a whole batch at once: a pure reduction, then set-based writes.

    The reduction (:func:`prepare`: parse, validate, reduce) has no I/O, so a rebuild can run
    it in another process while this one writes the previous batch; see
    :func:`projectors.rebuild.rebuild`.
    """

    def reduce(self, envelopes: Sequence[Envelope]) -> tuple[Any, list[tuple[int, str]]]:
        """What :meth:`write` writes, and ``(index, reason)`` of the invalid events."""

    async def write(self, conn: AsyncConnection, reduced: Any) -> None:
        """Write what :meth:`reduce` returned."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A batch of messages parsed and reduced by :func:`prepare` (picklable).

    ``unparsed`` and ``rejected`` hold ``(message index, uri, reason)`` of the messages
    to dead-letter: not an envelope, or refused by the projector.
    """

    reduced: Any
    parsed: list[int]
    unparsed: list[tuple[int, str | None, str]]
    rejected: list[tuple[int, str | None, str]]


def prepare(projector: ReducingProjector, values: Sequence[bytes]) -> Prepared:
    """Parse and reduce a batch, given its messages' values, for :func:`apply_batch`.

    Pure (no I/O). It takes the values rather than the messages: they are what crosses
    to a helper process, and bytes pickle six times faster than message objects.
    """
    envelopes: list[Envelope] = []
    parsed: list[int] = []
    unparsed: list[tuple[int, str | None, str]] = []
    for index, value in enumerate(values):
        try:
            envelopes.append(_parse_value(value))
            parsed.append(index)
        except (EnvelopeError, InvalidEvent) as exc:
            unparsed.append((index, None, str(exc)))
    reduced, rejected = projector.reduce(envelopes)
    return Prepared(
        reduced,
        parsed,
        unparsed,
        [(parsed[i], envelopes[i].uri, reason) for i, reason in rejected],
    )


async def _apply_prepared(
    conn: AsyncConnection,
    projector: ReducingProjector,
    messages: Sequence[Message],
    prepared: Prepared,
) -> None:
    """Write a batch :func:`prepare` parsed and reduced, dead-lettering the invalid events."""
    try:
        async with conn.transaction():
            await projector.write(conn, prepared.reduced)
    except psycopg.DataError:
        # One event holds data the database refuses: find it, one event at a time.
        for index in prepared.parsed:
            envelope, reason = await apply_message(conn, projector, messages[index])
            if reason is not None:
                await _dead_letter(conn, projector.name, messages[index], reason, _uri(envelope))
        failed = prepared.unparsed
    else:
        failed = sorted(prepared.unparsed + prepared.rejected)
    for index, uri, reason in failed:
        await _dead_letter(conn, projector.name, messages[index], reason, uri)


async def apply_batch(
    pool: AsyncConnectionPool,
    projector: Projector,
    messages: Sequence[Message],
    expected_offset: int,
    *,
    prepared: Prepared | None = None,
) -> int:
    """Apply ``messages`` (one partition, consecutive) and move the offset; return it.

    The writes and the new offset commit together. Raises :class:`OffsetConflict`
    (nothing applied) if the stored offset is not ``expected_offset``. A projector with
    :class:`ReducingProjector` gets the batch at once; otherwise events are applied one by one.
    ``prepared`` is what :func:`prepare` made of ``messages``, if it ran already.
    """
    first = messages[0]
    next_offset = messages[-1].offset + 1
    async with pool.connection() as conn, conn.transaction():
        # Claim the offset first: a second worker on the same partition waits here on the
        # row lock and then fails the compare-and-set, instead of doing the work twice.
        cur = await conn.execute(
            "UPDATE projector_offset SET next_offset = %s WHERE projector = %s AND topic = %s"
            " AND partition = %s AND next_offset = %s",
            (next_offset, projector.name, first.topic, first.partition, expected_offset),
        )
        if cur.rowcount != 1:
            raise OffsetConflict(
                f"{projector.name} {first.topic}/{first.partition}: offset moved from "
                f"{expected_offset}"
            )
        fresh = [m for m in messages if m.offset >= expected_offset]
        if prepared is not None and len(fresh) == len(messages):
            assert isinstance(projector, ReducingProjector)
            await _apply_prepared(conn, projector, messages, prepared)
        elif fresh:
            await _apply_messages(conn, projector, fresh)
    return next_offset


async def load_positions(
    pool: AsyncConnectionPool,
    projector: str,
    partitions: Sequence[TopicPartition],
) -> dict[TopicPartition, int]:
    """The stored next offset of each of ``partitions`` (see :func:`load_offset`)."""
    return {tp: await load_offset(pool, projector, tp[0], tp[1]) for tp in partitions}


async def _apply_partition(
    pool: AsyncConnectionPool,
    projector: Projector,
    tp: TopicPartition,
    messages: Sequence[Message],
    positions: dict[TopicPartition, int],
) -> bool:
    """Apply one partition's share of a fetch; move its position. False if it must retry."""
    expected = positions.get(tp)
    if expected is None:
        return True  # no longer ours (a group revoked it meanwhile)
    fresh = [m for m in messages if m.offset >= expected]
    if not fresh:
        return True
    try:
        positions[tp] = await apply_batch(pool, projector, fresh, expected)
    except OffsetConflict as exc:
        # Another worker applied it: continue from the stored offset.
        logger.warning(
            "offset conflict, reloading", extra=_failed(projector, tp, expected, fresh, exc)
        )
        positions[tp] = await load_offset(pool, projector.name, tp[0], tp[1])
    except psycopg.OperationalError as exc:
        logger.warning(
            "projector batch failed, retrying", extra=_failed(projector, tp, expected, fresh, exc)
        )
        return False
    return True


async def dispatch(
    pool: AsyncConnectionPool,
    projector: Projector,
    messages: Sequence[Message],
    positions: dict[TopicPartition, int],
) -> bool:
    """Apply what one fetch returned, each partition's batch concurrently; update ``positions``.

    Each partition's batch commits with its offset (:func:`apply_batch`); a partition whose
    batch lost the compare-and-set continues from the stored offset, one whose database
    work failed keeps its position (the next fetch reads the batch again). Returns False if
    any batch must be retried; unknown errors propagate.
    """
    by_partition: dict[TopicPartition, list[Message]] = {}
    for message in messages:
        by_partition.setdefault((message.topic, message.partition), []).append(message)
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(_apply_partition(pool, projector, tp, batch, positions))
            for tp, batch in by_partition.items()
        ]
    return all(task.result() for task in tasks)


def _first_key(messages: Sequence[Message]) -> str | None:
    """The key of the batch's first event (the one at ``offset``), for log lines."""
    return messages[0].key.decode("utf-8", "replace") if messages else None


def _failed(
    projector: Projector,
    tp: TopicPartition,
    offset: int,
    batch: Sequence[Message],
    exc: Exception,
) -> dict[str, object]:
    """The log context of a batch applied at ``offset`` that failed."""
    return {
        "projector": projector.name,
        "topic": tp[0],
        "partition": tp[1],
        "offset": offset,
        "key": _first_key(batch),
        "error": str(exc),
    }


class StallWatch:
    """Reports partitions whose position stays put while the log holds more after it.

    A partition that has not moved for ``stall_seconds`` costs one end-offset request,
    repeated every ``stall_seconds`` while it stays put (an idle partition too; that is
    how it is told apart: :class:`~kernel.log.standstill.Standstill`, as the Kafka
    reader's slow reads). An end offset beyond the position proves the log has
    messages the reader is not given: logged as an error with the figures, and logged
    again once the partition moves. A broker that under-reports end offsets (Tansu's
    ``s3://`` engine) can hide a stall, never invent one.
    """

    def __init__(
        self,
        projector: str,
        stall_seconds: float = STALL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._projector = projector
        self._clock = clock
        self._still: Standstill[TopicPartition] = Standstill(stall_seconds)
        # Partitions reported as not served, with the end offset last seen.
        self.stalled: dict[TopicPartition, int] = {}

    async def check(self, log_: Log, positions: dict[TopicPartition, int]) -> None:
        """Look at every partition of ``positions``; ask the log about those long put."""
        now = self._clock()
        for tp, offset in positions.items():
            if self._still.note(tp, offset, now):
                if self.stalled.pop(tp, None) is not None:
                    logger.warning("partition served again", extra=self._context(tp, offset))
                continue
            seconds = self._still.due(tp, now)
            if seconds is None:
                continue
            try:
                end = await log_.end_offset(*tp)
            except LogError:
                continue  # the fetch loop reports an unreachable log
            if end > offset:
                self.stalled[tp] = end
                logger.error(
                    "partition not served",
                    extra={
                        **self._context(tp, offset),
                        "end_offset": end,
                        "seconds": round(seconds, 1),
                    },
                )
            else:
                self.stalled.pop(tp, None)

    def _context(self, tp: TopicPartition, offset: int) -> dict[str, object]:
        return {
            "projector": self._projector,
            "topic": tp[0],
            "partition": tp[1],
            "offset": offset,
        }


async def run_projector(
    pool: AsyncConnectionPool,
    log_: Log,
    projector: Projector,
    topics: str | Sequence[str],
    stop: asyncio.Event,
    partitions: Sequence[int] | None = None,
    *,
    batch_size: int = 500,
    stall_seconds: float = STALL_SECONDS,
    linger: float | None = None,
) -> None:
    """Project every (or the given) partition of ``topics`` until ``stop`` is set.

    One reader (in Kafka, one consumer) over all the partitions, fetching whatever is
    ready and dispatching it by partition (:func:`dispatch`); offsets stay in PostgreSQL.
    Partitions the log stops serving are reported (:class:`StallWatch`).

    ``linger`` (default: the projector's ``linger`` attribute, else 0) is the shortest
    time from one fetch to the next after a fetch that found messages but not a full
    batch: under a steady stream, batches then hold ``linger`` seconds' worth, since a
    batch's transaction costs about as much as its first few events. A fetch that found
    nothing is followed at once, so an event after a quiet spell waits for nothing.
    """
    if linger is None:
        linger = float(getattr(projector, "linger", 0.0))
    names = [topics] if isinstance(topics, str) else list(topics)
    chosen = [
        (topic, partition)
        for topic in names
        for partition in (partitions if partitions is not None else range(log_.partitions(topic)))
    ]
    positions = await load_positions(pool, projector.name, chosen)
    reader = log_.reader()
    watch = StallWatch(projector.name, stall_seconds)
    failures = 0
    try:
        while not stop.is_set():
            fetched_at = time.monotonic()
            try:
                messages = await reader.fetch(positions, max_messages=batch_size, timeout=0.5)
                ok = await dispatch(pool, projector, messages, positions) if messages else True
                error = "" if ok else "a batch failed"
                await watch.check(log_, positions)
            except (LogError, psycopg.OperationalError) as exc:
                ok, error = False, str(exc)
            if ok:
                failures = 0
                rest = fetched_at + linger - time.monotonic()
                if messages and len(messages) < batch_size and rest > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), rest)
                continue
            failures += 1
            delay = min(30.0, 0.2 * 2.0**failures)
            logger.warning(
                "projector fetch failed, retrying",
                extra={"projector": projector.name, "error": error, "retry_in": delay},
            )
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass
    finally:
        await reader.close()
