"""Replaying the plays topic from the Parquet archive against from the PostgreSQL log.

Builds a fresh database (testkit's), appends N realistic ``play.reported`` envelopes to
the table-backed log (8 partitions), archives them to a local directory, then reads the
same N events back through the :class:`~kernel.log.Log` interface, as ``rebuild`` does
(every partition from offset 0, 10,000 events per read): once from the PostgreSQL log,
once from the archive (:class:`~kernel.archive.ArchivedLog` over the same log). Each is
measured three times, alternating; medians are printed.

    BENCH plays.archive_replay_eps <n> events/s
    BENCH plays.archive_ratio_vs_log <r> x        (archive rate / log rate; target >= 1)
    BENCH plays.archive_bytes_per_event <b> bytes

Usage: ``python bench/bench_archive.py [--events N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kernel.archive import ArchivedLog, ArchiveReader, LocalStore, archive_log
from kernel.db import open_pool
from kernel.log import Log
from kernel.log.postgres import PostgresLog
from testkit.brokers import fresh_database

TOPIC = "plyr.plays"
PARTITIONS = 8
READ_BATCH = 10_000


def play_events(count: int, seed: int = 3) -> list[tuple[bytes, bytes]]:
    """``(listener key, envelope)`` pairs shaped like the API's play reports."""
    rng = random.Random(seed)
    artists = [f"did:plc:{rng.getrandbits(120):030x}"[:32] for _ in range(400)]
    tracks = [
        (a, f"at://{a}/fm.plyr.track/3l{rng.getrandbits(50):013x}")
        for a in artists
        for _ in range(5)
    ]
    listeners = [f"cookie:{uuid.UUID(int=rng.getrandbits(128))}" for _ in range(5000)]
    out = []
    for i in range(count):
        artist, uri = tracks[min(int(rng.paretovariate(1.2)) - 1, len(tracks) - 1)]
        listener = rng.choice(listeners)
        second = 1_800_000_000 + i // 3
        envelope = {
            "v": 1,
            "kind": "play.reported",
            "did": artist,
            "source": "api",
            "time": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(second)),
            "uri": uri,
            "play": {
                "id": uuid.UUID(int=rng.getrandbits(128)).hex,
                "listener": listener,
                "track": uri,
                "duration_ms": rng.randrange(60_000, 420_000),
                "ref": None if rng.random() < 0.9 else f"s{rng.getrandbits(30):08x}",
            },
        }
        out.append((listener.encode(), orjson.dumps(envelope)))
    return out


async def replay(log: Log) -> tuple[int, float]:
    """Read every partition from offset 0 to its end; (events, seconds)."""
    started = time.perf_counter()
    total = 0
    for partition in range(PARTITIONS):
        offset = 0
        while batch := await log.read(
            TOPIC, partition, offset, max_messages=READ_BATCH, timeout=0.0
        ):
            total += len(batch)
            offset = batch[-1].offset + 1
    return total, time.perf_counter() - started


async def main(events: int) -> None:
    with fresh_database() as url, tempfile.TemporaryDirectory() as scratch:
        pool = await open_pool(url, max_size=4)
        try:
            log = PostgresLog(pool, partitions=PARTITIONS, topics=[TOPIC])
            await log.start()
            items = play_events(events)
            for start in range(0, len(items), 20_000):
                await log.append(TOPIC, items[start : start + 20_000])
            store = LocalStore(Path(scratch) / "archive")
            started = time.perf_counter()
            manifest = await archive_log(log, store, [TOPIC])
            archive_s = time.perf_counter() - started
            archived = sum(s.count for s in manifest.segments)
            size = sum(s.bytes for s in manifest.segments)
            assert archived == events, (archived, events)
            from_log: list[float] = []
            from_archive: list[float] = []
            for _ in range(3):
                n, seconds = await replay(log)
                assert n == events
                from_log.append(n / seconds)
                # A fresh reader each round: no scan left open from the last round.
                archived_log = ArchivedLog(log, ArchiveReader(store))
                n, seconds = await replay(archived_log)
                archived_log.archive.close()
                assert n == events
                from_archive.append(n / seconds)
            log_eps = statistics.median(from_log)
            archive_eps = statistics.median(from_archive)
            print(
                f"# {events} events, {len(manifest.segments)} segments, archived in "
                f"{archive_s:.1f} s ({events / archive_s:,.0f} events/s)"
            )
            print(f"# log rounds: {', '.join(f'{r:,.0f}' for r in from_log)} events/s")
            print(f"# archive rounds: {', '.join(f'{r:,.0f}' for r in from_archive)} events/s")
            print(f"BENCH plays.archive_replay_eps {archive_eps:.0f} events/s")
            print(f"BENCH plays.archive_ratio_vs_log {archive_eps / log_eps:.2f} x")
            print(f"BENCH plays.archive_bytes_per_event {size / events:.1f} bytes")
        finally:
            await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    asyncio.run(main(args.events))
