"""The log on Tansu's ``s3://`` engine (moto's S3 server): a partition the broker stops
serving, and the live runner saying so instead of waiting silently.

Tansu stores every produced batch as one object and, on each fetch, lists all the
partition's objects, but stops listing once the fetch's max wait has passed (counted from
the start of the fetch) and answers with what it listed so far. A reader whose offset lies
beyond that gets an empty answer, without an error, for as long as the partition keeps
that length or grows; when the first page of the listing (up to 1,000 objects) comes after
the max wait, no offset of the partition is served at all. The product's live reader asks
for a 50 ms max wait (``kernel.log.kafka``), its ``read`` (rebuilds) for aiokafka's 500 ms.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from kernel.envelope import Envelope
from kernel.log.kafka import KafkaLog
from projectors.runner import run_projector
from tests.appview_process import wait_until
from tests.faults.broker import PersistentTansu

pytestmark = pytest.mark.kafka

TOPIC = "plyr.s3"
# One object per batch: moto lists 500 of them in well over 50 ms (about 300 ms here).
BATCHES = 500


@pytest.fixture(scope="module")
def broker() -> Iterator[PersistentTansu]:
    """Tansu on moto with ``BATCHES`` one-message batches in partition 0 of ``TOPIC``."""
    running = PersistentTansu()
    try:
        asyncio.run(_fill(running.bootstrap))
        yield running
    finally:
        running.stop()


async def _fill(bootstrap: str) -> None:
    log = KafkaLog(bootstrap, partitions=1, topics=[TOPIC])
    await log.start()
    try:
        for i in range(BATCHES):
            # Awaited one by one: each append is its own batch, so its own object.
            await log.append(TOPIC, [(b"did:plc:s3", f"event {i}".encode())])
    finally:
        await log.close()


async def _first_offset(bootstrap: str, offset: int, max_wait_ms: int, within: float) -> int | None:
    """The first offset a plain consumer gets reading from ``offset``, or None."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="none",
        fetch_max_wait_ms=max_wait_ms,
    )
    await consumer.start()
    tp = TopicPartition(TOPIC, 0)
    try:
        consumer.assign([tp])
        consumer.seek(tp, offset)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            batches = await consumer.getmany(tp, timeout_ms=500)
            if batches.get(tp):
                return int(batches[tp][0].offset)
        return None
    finally:
        await consumer.stop()


async def test_tansu_s3_serves_the_tail_of_a_long_partition_only_to_a_long_max_wait(
    broker: PersistentTansu,
) -> None:
    """The broker's fault, shown with aiokafka alone; if this fails, Tansu was fixed."""
    last = BATCHES - 1
    assert await _first_offset(broker.bootstrap, 0, max_wait_ms=5000, within=10) == 0
    assert await _first_offset(broker.bootstrap, last, max_wait_ms=5000, within=10) == last
    assert await _first_offset(broker.bootstrap, last, max_wait_ms=50, within=5) is None
    assert await _first_offset(broker.bootstrap, 0, max_wait_ms=50, within=5) is None


class _Recorder:
    """Counts what it applies."""

    tables: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.name = "s3-recorder"
        self.applied = 0

    async def apply(self, conn: AsyncConnection, envelope: Envelope) -> None:
        self.applied += 1


async def test_runner_reports_a_partition_the_broker_does_not_serve(
    broker: PersistentTansu, pool: AsyncConnectionPool, caplog: pytest.LogCaptureFixture
) -> None:
    projector = _Recorder()
    # Not the last offset: the broker's end offset is that of the batch last written in the
    # newest second (S3 times are in seconds), so it can be below the last one.
    stored = BATCHES // 2
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO projector_offset (projector, topic, partition, next_offset)"
            " VALUES (%s, %s, 0, %s)",
            (projector.name, TOPIC, stored),
        )
    # Without the slow reads (next test), nothing of it is served to the runner.
    log = KafkaLog(broker.bootstrap, partitions=1, topics=[TOPIC], slow_after=None)
    await log.start()
    stop = asyncio.Event()
    caplog.set_level(logging.ERROR, logger="projectors.runner")
    task = asyncio.create_task(run_projector(pool, log, projector, TOPIC, stop, stall_seconds=1))

    def reported() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage() == "partition not served"]

    async def seen() -> bool:
        return bool(reported())

    try:
        await wait_until(seen, timeout=30, what="a 'partition not served' error")
    finally:
        stop.set()
        await task
        await log.close()
    record = reported()[0]
    assert (record.topic, record.partition, record.offset) == (TOPIC, 0, stored)  # type: ignore[attr-defined]
    assert stored < record.end_offset <= BATCHES  # type: ignore[attr-defined]
    async with pool.connection() as conn:  # not a single event was taken, even to dead-letter
        cur = await conn.execute(
            "SELECT next_offset FROM projector_offset WHERE projector = %s", (projector.name,)
        )
        assert await cur.fetchone() == (stored,)


async def test_the_reader_reads_a_partition_the_broker_does_not_serve_slowly(
    broker: PersistentTansu, pool: AsyncConnectionPool, caplog: pytest.LogCaptureFixture
) -> None:
    """The runner over that partition, with the reader's slow reads: every event from the
    stored offset on is taken, once (they are not envelopes, so each is dead-lettered: that
    is how they are counted), and the partition is never reported as not served."""
    projector = _Recorder()
    projector.name = "s3-slow-recorder"
    stored = BATCHES // 2
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO projector_offset (projector, topic, partition, next_offset)"
            " VALUES (%s, %s, 0, %s)",
            (projector.name, TOPIC, stored),
        )
    log = KafkaLog(broker.bootstrap, partitions=1, topics=[TOPIC], slow_after=1.0)
    await log.start()
    stop = asyncio.Event()
    caplog.set_level(logging.WARNING)
    task = asyncio.create_task(run_projector(pool, log, projector, TOPIC, stop, stall_seconds=30))

    async def position() -> int:
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT next_offset FROM projector_offset WHERE projector = %s", (projector.name,)
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def caught_up() -> bool:
        return await position() >= BATCHES

    try:
        await wait_until(caught_up, timeout=90, what=f"offset {BATCHES}")
    finally:
        stop.set()
        await task
        await log.close()
    assert await position() == BATCHES
    async with pool.connection() as conn:
        cur = await conn.execute(
            'SELECT count(*), min("offset"), max("offset") FROM dead_letter WHERE projector = %s',
            (projector.name,),
        )
        assert await cur.fetchone() == (BATCHES - stored, stored, BATCHES - 1)
    said = [r.getMessage() for r in caplog.records]
    assert "partition read slowly" in said and "partition not served" not in said
