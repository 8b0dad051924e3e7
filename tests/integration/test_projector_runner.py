"""The runner's read path on both logs: one reader per projector, dispatch by partition.

Exactly-once effect and per-partition order with two runners racing on the same
partitions, and a slow projector that must not hold back a fast one on the same log.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from kernel.envelope import Envelope
from kernel.log import Log
from projectors.runner import run_projector
from testkit.records import track_record
from tests.appview_process import wait_until

DIDS = [f"did:plc:runner{i:019d}" for i in range(6)]


class Recorder:
    """Records every event it applies, in apply order (``seen.id``)."""

    tables: tuple[str, ...] = ("seen",)

    def __init__(self, name: str, delay: float = 0.0) -> None:
        self.name = name
        self.delay = delay

    async def apply(self, conn: AsyncConnection, envelope: Envelope) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        await conn.execute(
            "INSERT INTO seen (projector, did, seq) VALUES (%s, %s, %s)",
            (self.name, envelope.did, int(envelope.rkey or "0")),
        )


def events(count: int) -> list[tuple[bytes, bytes]]:
    """``count`` track events over :data:`DIDS`; each DID's rkeys count up."""
    items = []
    for i in range(count):
        envelope = Envelope(
            kind="record.created",
            did=DIDS[i % len(DIDS)],
            source="test",
            time="2026-11-20T10:00:00Z",
            rev=f"3l{i:04d}",
            collection="fm.plyr.track",
            rkey=str(i),
            cid=f"bafy{i}",
            record=track_record(f"Song {i}"),
        )
        items.append((envelope.key, envelope.to_bytes()))
    return items


async def rows(pool: AsyncConnectionPool, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(sql, args)
        return await cur.fetchall()


async def applied(pool: AsyncConnectionPool, name: str) -> int:
    [(count,)] = await rows(pool, "SELECT count(*) FROM seen WHERE projector = %s", name)
    return int(count)


async def make_table(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "CREATE TABLE seen (id bigserial PRIMARY KEY, projector text, did text, seq int)"
        )


async def test_two_runners_on_the_same_partitions_apply_each_event_once_in_order(
    log: Log, topic: str, pool: AsyncConnectionPool
) -> None:
    await make_table(pool)
    stop = asyncio.Event()
    runners = [
        asyncio.create_task(run_projector(pool, log, Recorder("twice"), topic, stop, batch_size=7))
        for _ in range(2)
    ]
    try:
        for first in range(0, 300, 50):  # in bursts, while both runners read
            await log.append(topic, events(300)[first : first + 50])

        async def all_applied() -> bool:
            return await applied(pool, "twice") >= 300

        await wait_until(all_applied, timeout=60, what="300 events applied")
        await asyncio.sleep(0.5)  # a double apply would show now
    finally:
        stop.set()
        await asyncio.gather(*runners)

    seen = await rows(pool, "SELECT did, seq FROM seen WHERE projector = 'twice' ORDER BY id")
    assert len(seen) == len(set(seen)) == 300
    for did in DIDS:
        seqs = [seq for d, seq in seen if d == did]
        assert seqs == sorted(seqs), f"{did} applied out of order"


async def test_a_slow_projector_does_not_hold_back_another(
    log: Log, topic: str, pool: AsyncConnectionPool
) -> None:
    await make_table(pool)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(run_projector(pool, log, Recorder(name, delay), topic, stop))
        for name, delay in (("slow", 0.5), ("fast", 0.0))
    ]
    try:
        await asyncio.sleep(0.5)  # both readers are waiting
        started = time.monotonic()
        await log.append(topic, events(30))

        async def fast_done() -> bool:
            return await applied(pool, "fast") >= 30

        await wait_until(fast_done, timeout=30, what="the fast projector")
        fast = time.monotonic() - started
        slow_done = await applied(pool, "slow")
    finally:
        stop.set()
        await asyncio.gather(*tasks)

    assert fast < 1.0, f"the fast projector took {fast:.2f} s"
    assert slow_done < 30, "the slow projector was not slow: the test proves nothing"


async def test_a_lingering_runner_gathers_a_stream_but_not_an_event_after_quiet(
    log: Log, topic: str, pool: AsyncConnectionPool
) -> None:
    await make_table(pool)
    stop = asyncio.Event()
    linger = 2.0
    task = asyncio.create_task(
        run_projector(pool, log, Recorder("linger"), topic, stop, linger=linger)
    )
    try:
        await asyncio.sleep(0.5)  # the reader is waiting
        started = time.monotonic()
        await log.append(topic, events(1))

        async def applied_at_least(n: int) -> bool:
            return await applied(pool, "linger") >= n

        await wait_until(lambda: applied_at_least(1), timeout=30, what="the first event")
        first = time.monotonic() - started
        # The fetch that found the first event began before it was appended, at most one
        # fetch timeout (0.5 s) earlier; the next fetch waits until linger after that.
        await log.append(topic, events(2)[1:])
        await wait_until(lambda: applied_at_least(2), timeout=30, what="the second event")
        second = time.monotonic() - started
    finally:
        stop.set()
        await task

    assert first < linger, f"an event after a quiet spell waited {first:.2f} s"
    assert second >= linger - 0.6, f"the second event came {second:.2f} s after the first"
