"""Two projector workers in one Kafka consumer group end with the read models of one."""

from __future__ import annotations

import asyncio

import pytest

from kernel.db import open_pool
from kernel.log.kafka import KafkaLog
from projectors.catalog import CatalogProjector
from projectors.kafka_group import GroupWorker
from projectors.runner import run_projector
from testkit.brokers import create_database, drop_database
from testkit.events import catalog_event_mix
from tests.integration.test_projector_read_models import dump

pytestmark = pytest.mark.kafka
PARTITIONS = 4


async def wait_until(predicate, timeout: float = 90.0) -> None:
    """Poll ``predicate`` (a state check, e.g. stored offsets) until true or ``timeout``."""
    async with asyncio.timeout(timeout):
        for _ in iter(int, 1):
            if await predicate():
                return
            await asyncio.sleep(0.2)


async def offsets(pool):
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT partition, next_offset FROM projector_offset WHERE projector = 'catalog'"
        )
        return dict(await cur.fetchall())


async def test_two_group_workers_equal_one(tansu, topic, pg_url):
    log = KafkaLog(tansu.bootstrap, partitions=PARTITIONS, topics=[topic])
    await log.start()
    name, single_url = await asyncio.to_thread(create_database)
    pool = await open_pool(pg_url, max_size=10)
    single = await open_pool(single_url, max_size=10)
    stop = asyncio.Event()
    assigned: dict[str, set[int]] = {"a": set(), "b": set()}
    try:
        workers = [
            GroupWorker(
                pool,
                tansu.bootstrap,
                CatalogProjector(),
                topic,
                batch_size=50,
                on_assign=assigned[key].update,
            )
            for key in ("a", "b")
        ]
        tasks = [asyncio.create_task(w.run(stop)) for w in workers]

        async def both_assigned() -> bool:
            current = [w.consumer.assignment() for w in workers]
            return all(current) and sum(len(c) for c in current) == PARTITIONS

        await wait_until(both_assigned)
        events = catalog_event_mix(800)
        positions = await log.append(topic, [(e.key, e.to_bytes()) for e in events])
        ends = {p: 0 for p in range(PARTITIONS)}
        for position in positions:
            ends[position.partition] = max(ends[position.partition], position.offset + 1)

        async def group_done() -> bool:
            got = await offsets(pool)
            return all(got.get(p, 0) >= end for p, end in ends.items() if end)

        await wait_until(group_done)
        # The reference: one worker with manual assignment on another database.
        solo = asyncio.create_task(run_projector(single, log, CatalogProjector(), topic, stop))

        async def solo_done() -> bool:
            got = await offsets(single)
            return all(got.get(p, 0) >= end for p, end in ends.items() if end)

        await wait_until(solo_done)
        stop.set()
        await asyncio.gather(*tasks, solo)
        assert assigned["a"] and assigned["b"]  # the partitions were split
        assert await dump(pool) == await dump(single)
    finally:
        stop.set()
        await log.close()
        await pool.close()
        await single.close()
        await asyncio.to_thread(drop_database, name)
