"""Rebuild a read model from the start of the log, and replay dead letters.

:func:`rebuild` truncates a projector's tables, forgets its offsets and dead letters, and
replays every partition of its topic from offset 0 with large batches (the projector's
set-based ``reduce``/``write``), reporting progress. Stop the projector's live workers first:
a live worker would only notice the offset reset through its compare-and-set and then
replay alongside (still exactly once, but slower).

:func:`replay_dead_letters` re-reads each dead-lettered message from the log at its
topic/partition/offset and applies it again (after a fix); the rev rules of the read
models make a late application safe. A message that still fails keeps its row with the
new reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from kernel.log import Log, Message
from projectors.base import Projector
from projectors.runner import (
    Prepared,
    ReducingProjector,
    apply_batch,
    apply_message,
    load_offset,
    prepare,
)

__all__ = [
    "REBUILD_BATCH",
    "DeadLetter",
    "RebuildGap",
    "RebuildProgress",
    "list_dead_letters",
    "rebuild",
    "replay_dead_letters",
]


# Events per transaction when replaying: per-batch work (album derivation per artist,
# recounts, statement overheads) is paid once per batch, so large batches cost much less
# per event (60k-event rebuild: PostgreSQL 58 us/event at 2,000, 40 at 10,000).
REBUILD_BATCH = 10_000
# How long reads may come back empty below a partition's end offset before the rebuild
# says the events are gone (trimmed from the PostgreSQL log, or past Kafka's retention).
STALL_SECONDS = 10.0


class RebuildGap(RuntimeError):
    """Events a rebuild needs are no longer in the log; rebuild from the archive."""


@dataclass(frozen=True, slots=True)
class RebuildProgress:
    """How far a rebuild is: events applied, events to apply, elapsed seconds."""

    done: int
    total: int
    elapsed: float

    @property
    def rate(self) -> float:
        """Events per second so far."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0


async def reset(pool: AsyncConnectionPool, projector: Projector) -> None:
    """Empty the projector's tables, offsets and dead letters, in one transaction."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            sql.SQL("TRUNCATE {}").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in projector.tables)
            )
        )
        await conn.execute("DELETE FROM projector_offset WHERE projector = %s", (projector.name,))
        await conn.execute("DELETE FROM dead_letter WHERE projector = %s", (projector.name,))


async def rebuild(
    pool: AsyncConnectionPool,
    log: Log,
    projector: Projector,
    topics: str | Sequence[str],
    *,
    batch_size: int = REBUILD_BATCH,
    concurrency: int = 2,
    on_progress: Callable[[RebuildProgress], None] | None = None,
    stall_seconds: float = STALL_SECONDS,
) -> RebuildProgress:
    """Drop and replay ``projector`` from offset 0 of every partition of ``topics``.

    The tables are emptied once, then every topic is replayed (a projector reading
    several topics, like moderation, keeps independent state per topic, so the order
    across topics does not matter). Each partition is replayed up to at least the end
    offset it had when the rebuild started (and on until a read comes back empty). Reads
    that stay empty below that end offset for ``stall_seconds`` raise :class:`RebuildGap`:
    the events were trimmed or expired (or the broker does not serve them), and only
    ``--from-archive`` can replay them.

    The partitions are shared out among ``concurrency`` lanes. A lane is a pipeline: it
    reads and prepares (:func:`~projectors.runner.prepare`, in the helper process) the
    next batch, across its partitions' boundaries, while it writes the current one, so
    neither the helper nor the database waits for the other except at the very start
    and end. A lane's first batches are smaller (an eighth of ``batch_size``, doubling),
    so the database has something to write soon after the start.
    """
    names = [topics] if isinstance(topics, str) else list(topics)
    parts = [(t, p) for t in names for p in range(log.partitions(t))]
    targets = {tp: await log.end_offset(*tp) for tp in parts}
    total = sum(targets.values())
    await reset(pool, projector)
    started = time.perf_counter()
    done = 0

    def report() -> RebuildProgress:
        progress = RebuildProgress(done, max(total, done), time.perf_counter() - started)
        if on_progress is not None:
            on_progress(progress)
        return progress

    async def produce(
        lane: Sequence[tuple[str, int]], helper: Executor | None, ready: asyncio.Queue[_Batch]
    ) -> None:
        size = max(1, batch_size // 8)
        for topic, partition in lane:
            offset = await load_offset(pool, projector.name, topic, partition)
            stalled_since: float | None = None
            while True:
                messages = await log.read(topic, partition, offset, max_messages=size, timeout=0.2)
                if not messages:
                    if offset >= targets[topic, partition]:
                        break
                    now = time.monotonic()
                    stalled_since = stalled_since or now
                    if now - stalled_since > stall_seconds:
                        raise RebuildGap(
                            f"{topic}[{partition}]: nothing to read at offset {offset} below"
                            f" end offset {targets[topic, partition]} for {stall_seconds:g} s:"
                            " the events were trimmed from the log or expired, or the broker"
                            " does not serve them (Tansu's s3 engine, a partition too long to"
                            " list within a fetch's max wait); rebuild with --from-archive"
                        )
                    continue
                stalled_since = None
                if messages[0].offset > offset:
                    raise RebuildGap(
                        f"{topic}[{partition}]: offsets {offset}..{messages[0].offset - 1} are"
                        " no longer in the log (trimmed or expired); rebuild with --from-archive"
                    )
                size = min(size * 2, batch_size)
                prepared = None
                if helper is not None and isinstance(projector, ReducingProjector):
                    prepared = await asyncio.get_running_loop().run_in_executor(
                        helper, prepare, projector, [m.value for m in messages]
                    )
                await ready.put(_Batch(messages, offset, prepared))
                offset = messages[-1].offset + 1
        await ready.put(_Batch([], 0, None))  # the lane is done

    async def write(ready: asyncio.Queue[_Batch]) -> None:
        nonlocal done
        while (batch := await ready.get()).messages:
            new_offset = await apply_batch(
                pool, projector, batch.messages, batch.offset, prepared=batch.prepared
            )
            done += new_offset - batch.offset
            report()

    count = max(1, concurrency)
    lanes = [parts[i::count] for i in range(count)]
    with _fewer_collections(), _helper_process(projector) as helper:
        try:
            async with asyncio.TaskGroup() as group:
                for lane in lanes:
                    if lane:
                        ready: asyncio.Queue[_Batch] = asyncio.Queue(maxsize=1)
                        group.create_task(produce(lane, helper, ready))
                        group.create_task(write(ready))
        except* RebuildGap as gaps:
            raise gaps.exceptions[0] from None
    return report()


@dataclass(frozen=True, slots=True)
class _Batch:
    """Consecutive messages of one partition, the offset they start at, and what
    :func:`~projectors.runner.prepare` made of them (if it ran in the helper); no
    messages marks the end of a lane."""

    messages: list[Message]
    offset: int
    prepared: Prepared | None


@contextlib.contextmanager
def _helper_process(projector: Projector) -> Iterator[Executor | None]:
    """A process that parses and reduces batches, for a projector that can split that off.

    Parsing, validation and row building are most of a rebuild's Python time; done in a
    second process, the next batch is prepared while this one's are written (the event
    loop here only reads the log and talks to PostgreSQL). Other projectors get None.
    """
    if not isinstance(projector, ReducingProjector):
        yield None
        return
    with ProcessPoolExecutor(max_workers=1) as helper:
        yield helper


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """Run the young-generation garbage collector less often for the block.

    A replay allocates some twenty short-lived objects per event (envelopes, records,
    rows) and keeps a batch of them alive at a time, so the default threshold (700) runs
    the collector hundreds of times per batch over objects it cannot free; 10,000 saves
    about 8% of the rebuild's CPU here. The thresholds are restored after.
    """
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], 10_000), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One row of ``dead_letter``."""

    id: int
    projector: str
    topic: str
    partition: int
    offset: int
    uri: str | None
    reason: str
    created_at: datetime


async def list_dead_letters(
    pool: AsyncConnectionPool, *, projector: str | None = None, id: int | None = None
) -> list[DeadLetter]:
    """Dead letters, oldest first, optionally of one projector or one id."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            'SELECT id, projector, topic, partition, "offset", uri, reason, created_at'
            " FROM dead_letter WHERE (%(p)s::text IS NULL OR projector = %(p)s)"
            " AND (%(i)s::bigint IS NULL OR id = %(i)s) ORDER BY id",
            {"p": projector, "i": id},
        )
        return [DeadLetter(*row) for row in await cur.fetchall()]


async def replay_dead_letters(
    pool: AsyncConnectionPool,
    log: Log,
    letters: Sequence[DeadLetter],
    projector_of: Callable[[str], Projector],
) -> tuple[int, int]:
    """Apply each dead-lettered message again; ``(applied, still failing)``.

    ``projector_of`` builds the projector of a name (the wiring's registry lookup).

    An applied message loses its dead-letter row; one that fails again keeps it with the
    new reason. Raises :class:`LookupError` if a message is no longer on the log.
    """
    applied = failing = 0
    projectors: dict[str, Projector] = {}
    for letter in letters:
        projector = projectors.get(letter.projector)
        if projector is None:
            projector = projectors[letter.projector] = projector_of(letter.projector)
        messages = await log.read(
            letter.topic, letter.partition, letter.offset, max_messages=1, timeout=5.0
        )
        message = next((m for m in messages if m.offset == letter.offset), None)
        if message is None:
            raise LookupError(
                f"dead letter {letter.id}: {letter.topic}/{letter.partition}@{letter.offset}"
                " is not on the log any more"
            )
        async with pool.connection() as conn, conn.transaction():
            _, reason = await apply_message(conn, projector, message)
            if reason is None:
                await conn.execute("DELETE FROM dead_letter WHERE id = %s", (letter.id,))
                applied += 1
            else:
                await conn.execute(
                    "UPDATE dead_letter SET reason = %s WHERE id = %s", (reason, letter.id)
                )
                failing += 1
    return applied, failing
