"""Rebuild throughput of the catalog projector into PostgreSQL, against a naive baseline.

Appends a realistic repo-topic event mix (tracks, likes, comments, lists, profiles,
identity and account events) to the PostgreSQL-backed log, then measures in the same run:

- ours: ``projectors.rebuild.rebuild`` (batches of 2000 through ``apply_many``: one
  set-based statement per table per batch, recounts once per batch per subject);
- naive: the same projector, one transaction per event (``apply_batch`` of one message),
  on the first part of the same log.

Prints ``BENCH projectors.rebuild_eps``, ``BENCH projectors.rebuild_naive_eps`` and
``BENCH projectors.rebuild_ratio_vs_naive``. Needs the system PostgreSQL (as the tests).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from plyr_appview.db import open_pool
from plyr_appview.log.postgres import PostgresLog
from projectors.catalog import CatalogProjector
from projectors.rebuild import rebuild, reset
from projectors.runner import apply_batch, load_offset
from tests.brokers import create_database, drop_database
from tests.factories import catalog_event_mix

EVENTS = int(os.environ.get("BENCH_EVENTS", "60000"))
NAIVE_EVENTS = int(os.environ.get("BENCH_NAIVE_EVENTS", "3000"))
PARTITIONS = 4
TOPIC = "plyr.repo"


async def main() -> None:
    name, url = create_database()
    try:
        pool = await open_pool(url, max_size=8)
        log = PostgresLog(pool, partitions=PARTITIONS, topics=[TOPIC])
        await log.start()
        events = catalog_event_mix(EVENTS)
        for start in range(0, len(events), 5000):
            chunk = events[start : start + 5000]
            await log.append(TOPIC, [(e.key, e.to_bytes()) for e in chunk])
        projector = CatalogProjector()

        progress = await rebuild(pool, log, projector, TOPIC, batch_size=2000)
        eps = progress.done / progress.elapsed

        # Naive: one transaction per event over the first NAIVE_EVENTS of partition 0..n.
        await reset(pool, projector)
        done = 0
        started = time.perf_counter()
        per_partition = NAIVE_EVENTS // PARTITIONS
        for partition in range(PARTITIONS):
            offset = await load_offset(pool, projector.name, TOPIC, partition)
            messages = await log.read(TOPIC, partition, 0, max_messages=per_partition, timeout=1)
            for message in messages:
                offset = await apply_batch(pool, projector, [message], offset)
                done += 1
        naive_eps = done / (time.perf_counter() - started)
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM dead_letter")
            row = await cur.fetchone()
        await log.close()
        await pool.close()
    finally:
        drop_database(name)
    print(f"# {EVENTS} events, {PARTITIONS} partitions, naive on {done}; dead letters {row}")
    print(f"BENCH projectors.rebuild_eps {eps:.0f} events/s")
    print(f"BENCH projectors.rebuild_naive_eps {naive_eps:.0f} events/s")
    print(f"BENCH projectors.rebuild_ratio_vs_naive {eps / naive_eps:.1f} x")


if __name__ == "__main__":
    asyncio.run(main())
