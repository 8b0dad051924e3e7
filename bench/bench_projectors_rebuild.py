"""Rebuild throughput of the catalog projector into PostgreSQL, against a naive baseline.

Appends a realistic repo-topic event mix (tracks, likes, comments, lists, profiles,
identity and account events) to the PostgreSQL-backed log, then measures in the same run:

- ours: ``projectors.rebuild.rebuild`` with its defaults (what ``plyr-appview rebuild``
  runs: batches of up to ``REBUILD_BATCH``, parsed, reduced and encoded in a helper
  process while the previous batch is written, set-based statements per table per
  batch, the partitions shared by two such pipelines);
- naive: the same projector, one transaction per event (``apply_batch`` of one message),
  on the first part of the same log.

Each is measured ``BENCH_ROUNDS`` (3) times; the median round is reported.

Prints ``BENCH projectors.rebuild_eps``, ``BENCH projectors.rebuild_naive_eps`` and
``BENCH projectors.rebuild_ratio_vs_naive``, and as ``#`` lines where the time goes: the
rebuild's wall time, its CPU (this process and the helper) and the CPU of the database's
server processes (read from ``/proc`` when PostgreSQL runs on this machine), and the
Python cost per event of each pure step (envelope parse, lexicon validation, row
building and encoding) measured on the same events. Needs the system PostgreSQL (as the
tests).

``BENCH_PROJECTOR=search`` (or ``moderation``) measures that projector instead: its
rebuild (batches reduced and written set-based) against the rebuild of the per-event
projector it replaced (:mod:`testkit.search_reference`, :mod:`testkit.moderation_reference`),
rounds alternating on the same log (the repo topic; moderation's labels topic is not
in it). Prints ``BENCH projectors.<name>_rebuild_eps``,
``BENCH projectors.<name>_rebuild_per_event_eps`` and
``BENCH projectors.<name>_rebuild_ratio_vs_per_event``, with the CPU per event of each.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg_pool import AsyncConnectionPool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kernel.db import open_pool
from kernel.log import Message
from kernel.log.postgres import PostgresLog
from projectors.base import Projector
from projectors.catalog import CatalogProjector
from projectors.moderation import ModerationProjector
from projectors.rebuild import REBUILD_BATCH, rebuild, reset
from projectors.records import valid_record
from projectors.runner import _parse, apply_batch, load_offset
from projectors.search import SearchProjector
from testkit.brokers import create_database, drop_database
from testkit.events import catalog_event_mix
from testkit.moderation_reference import PerEventModerationProjector
from testkit.search_reference import PerEventSearchProjector

EVENTS = int(os.environ.get("BENCH_EVENTS", "60000"))
NAIVE_EVENTS = int(os.environ.get("BENCH_NAIVE_EVENTS", "3000"))
PARTITIONS = 4
# Rounds of each measurement; the median is reported (all are printed): on a shared
# 2-core machine one round can land on a busy moment (the previous benchmark's
# checkpoint, autovacuum) and lose a quarter of its rate.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
TOPIC = "plyr.repo"
PROJECTOR = os.environ.get("BENCH_PROJECTOR", "catalog")
# The projectors measured against the per-event code they replaced (BENCH_PROJECTOR).
TWINS: dict[str, tuple[Projector, Projector]] = {
    "search": (SearchProjector(), PerEventSearchProjector()),
    "moderation": (ModerationProjector(()), PerEventModerationProjector(())),
}


def server_cpu(url: str) -> dict[int, float] | None:
    """CPU seconds used so far by each server process of the database (None if unknown)."""
    with psycopg.connect(url) as conn:
        pids = [
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]
    ticks = os.sysconf("SC_CLK_TCK")
    used: dict[int, float] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None  # not on this machine, or not ours to read
        used[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return used


def children_cpu() -> float:
    """CPU seconds of this process's finished children (the rebuild's helper process)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def step_costs(messages: list[Message]) -> dict[str, float]:
    """Microseconds of process time per event for each pure step, on ``messages``."""

    def per_event(step: Callable[[], object]) -> float:
        started = time.process_time()
        step()
        return (time.process_time() - started) / len(messages) * 1e6

    envelopes = [_parse(m) for m in messages]
    parse = per_event(lambda: [_parse(m) for m in messages])
    records = [(e.collection, e.record) for e in envelopes if e.record and e.collection]

    def validate_all() -> None:
        for collection, record in records:
            valid_record(collection, record)

    validate = per_event(validate_all)

    reduce = per_event(lambda: CatalogProjector().reduce(envelopes))
    return {"parse": parse, "validate": validate, "rows": reduce - validate}


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
        # A rebuild process does not hold the whole stream in memory: free it, so the
        # garbage collector does not walk it during the measurement.
        del events, chunk
        gc.collect()
        if PROJECTOR in TWINS:
            await compare_with_per_event(pool, log, url, *TWINS[PROJECTOR])
            await log.close()
            await pool.close()
            return
        projector = CatalogProjector()

        runs = [await measure_rebuild(pool, log, projector, url) for _ in range(ROUNDS)]
        sample = await log.read(TOPIC, 0, 0, max_messages=REBUILD_BATCH, timeout=1)
        costs = step_costs(sample)
        naive = [await measure_naive(pool, log, projector) for _ in range(ROUNDS)]
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM dead_letter")
            row = await cur.fetchone()
        await log.close()
        await pool.close()
    finally:
        drop_database(name)
    run = sorted(runs, key=lambda r: r.eps)[len(runs) // 2]
    naive_eps = statistics.median(naive)
    n = run.events
    print(f"# {EVENTS} events, {PARTITIONS} partitions, batch {REBUILD_BATCH}, naive on"
          f" {NAIVE_EVENTS}; median of {ROUNDS} rounds each")  # fmt: skip
    print("# rebuild rounds " + ", ".join(f"{r.eps:.0f}" for r in runs) + " events/s;"
          " naive rounds " + ", ".join(f"{v:.0f}" for v in naive) + " events/s")  # fmt: skip
    print(f"# dead letters after the naive run {row[0] if row else '?'}")
    print(f"# the median round: wall {run.elapsed:.2f} s = {run.elapsed / n * 1e6:.1f} us/event")
    print(
        f"# python CPU {(run.cpu + run.helper_cpu) / n * 1e6:.1f} us/event: event loop process"
        f" {run.cpu / n * 1e6:.1f}, helper process (parse, validate, rows)"
        f" {run.helper_cpu / n * 1e6:.1f}"
    )
    if run.server_cpu is not None:
        print(f"# postgresql server processes CPU {run.server_cpu / n * 1e6:.1f} us/event")
    print(
        "# python steps per event (process time, one partition's first batch): "
        + ", ".join(f"{step} {value:.1f} us" for step, value in costs.items())
    )
    print(f"BENCH projectors.rebuild_eps {run.eps:.0f} events/s")
    print(f"BENCH projectors.rebuild_naive_eps {naive_eps:.0f} events/s")
    print(f"BENCH projectors.rebuild_ratio_vs_naive {run.eps / naive_eps:.1f} x")


async def compare_with_per_event(
    pool: AsyncConnectionPool,
    log: PostgresLog,
    url: str,
    batched: Projector,
    reference: Projector,
) -> None:
    """Rebuild batched and per event, rounds alternating; print both (module doc)."""
    ours: list[Round] = []
    per_event: list[Round] = []
    for _ in range(ROUNDS):
        ours.append(await measure_rebuild(pool, log, batched, url))
        per_event.append(await measure_rebuild(pool, log, reference, url))
    name = batched.name
    print(f"# {name}: {EVENTS} events, {PARTITIONS} partitions, batch {REBUILD_BATCH};"
          f" median of {ROUNDS} alternating rounds each")  # fmt: skip
    medians = []
    for label, runs in (("batch", ours), ("per-event", per_event)):
        run = sorted(runs, key=lambda r: r.eps)[len(runs) // 2]
        medians.append(run.eps)
        n = run.events
        server = f"{run.server_cpu / n * 1e6:.1f}" if run.server_cpu is not None else "?"
        print(
            f"# {label}: rounds " + ", ".join(f"{r.eps:.0f}" for r in runs) + " events/s;"
            f" median round wall {run.elapsed / n * 1e6:.1f} us/event, CPU per event:"
            f" event loop {run.cpu / n * 1e6:.1f} us, helper {run.helper_cpu / n * 1e6:.1f} us,"
            f" postgresql {server} us"
        )
    print(f"BENCH projectors.{name}_rebuild_eps {medians[0]:.0f} events/s")
    print(f"BENCH projectors.{name}_rebuild_per_event_eps {medians[1]:.0f} events/s")
    print(f"BENCH projectors.{name}_rebuild_ratio_vs_per_event {medians[0] / medians[1]:.1f} x")


@dataclass(frozen=True, slots=True)
class Round:
    """One measured rebuild: events, seconds, and CPU seconds of each party."""

    events: int
    elapsed: float
    cpu: float
    helper_cpu: float
    server_cpu: float | None

    @property
    def eps(self) -> float:
        return self.events / self.elapsed


async def measure_rebuild(
    pool: AsyncConnectionPool, log: PostgresLog, projector: Projector, url: str
) -> Round:
    """``rebuild`` as ``plyr-appview rebuild`` runs it (it empties the tables first)."""
    gc.collect()
    before = server_cpu(url)
    cpu_started = time.process_time()
    children_started = children_cpu()
    progress = await rebuild(pool, log, projector, TOPIC)
    cpu = time.process_time() - cpu_started
    helper_cpu = children_cpu() - children_started
    after = server_cpu(url)
    server = None
    if before is not None and after is not None:
        server = sum(used - before.get(pid, 0.0) for pid, used in after.items())
    return Round(progress.done, progress.elapsed, cpu, helper_cpu, server)


async def measure_naive(
    pool: AsyncConnectionPool, log: PostgresLog, projector: CatalogProjector
) -> float:
    """Events/s of one transaction per event over the first NAIVE_EVENTS of the log."""
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
    return done / (time.perf_counter() - started)


if __name__ == "__main__":
    asyncio.run(main())
