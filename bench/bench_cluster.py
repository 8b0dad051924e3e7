"""Consumer-group catch-up with one projector worker against two (issue #13 item 4).

A Tansu broker gets a repo topic of ``PLYR_PARTITIONS`` (8) partitions pre-filled with
:func:`testkit.events.catalog_event_mix` events (``BENCH_EVENTS``, default 50,000: ten
seconds or more of catch-up). Then, for N = 1 and N = 2, on a fresh database, N real
``plyr-appview project --group`` processes (what ``make cluster`` runs) join the groups and
project every registered projector of the repo topic (catalog, search, moderation) to the
end. The rate is events over the time from the first stored offset to the last one (group
formation, 1-30 s on Tansu, is printed apart).

Prints ``BENCH cluster.rebuild_eps_1w``, ``BENCH cluster.rebuild_eps_2w`` and the ratio, and
as ``#`` lines the arithmetic: CPU seconds of the workers and of the whole machine per run,
so the gain (or its absence) on this machine's cores can be read off. Needs PostgreSQL (as the
tests) and the Tansu binary of the test extra.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kernel.log.kafka import KafkaLog
from projectors import registry
from testkit.brokers import create_database, drop_database, start_tansu
from testkit.events import catalog_event_mix

EVENTS = int(os.environ.get("BENCH_EVENTS", "50000"))
PARTITIONS = 8
TIMEOUT_S = 600.0
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    workers: int
    join_s: float
    catchup_s: float
    worker_cpu_s: float
    server_cpu_s: float
    machine_busy_s: float

    @property
    def eps(self) -> float:
        return EVENTS / self.catchup_s


def _jiffies_busy() -> float:
    """Busy CPU seconds of the whole machine so far (all cores; /proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server_cpu(url: str) -> float:
    """CPU seconds so far of the database's server processes (backends of its connections)."""
    with psycopg.connect(url) as conn:
        pids = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    return sum(_process_cpu(int(pid)) for (pid,) in pids)


def _stored(url: str, projectors: list[str], topic: str) -> int:
    """Events applied so far, summed over the repo projectors' partitions (min per projector)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT projector, sum(next_offset) FROM projector_offset"
            " WHERE topic = %s AND projector = ANY(%s) GROUP BY projector",
            (topic, projectors),
        ).fetchall()
    done = {str(p): int(n) for p, n in rows}
    return min(done.get(p, 0) for p in projectors)


def measure(workers: int, bootstrap: str, prefix: str) -> Run:
    name, url = create_database()
    topic = f"{prefix}repo"
    projectors = [s.name for s in registry.PROJECTORS if "repo" in s.topics]
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PLYR_", "DATABASE_", "KAFKA_"))
    }
    env.update(
        DATABASE_URL=url,
        KAFKA_BOOTSTRAP=bootstrap,
        PLYR_TOPIC_PREFIX=prefix,
        PLYR_PARTITIONS=str(PARTITIONS),
        PYTHONPATH=str(ROOT),
    )
    procs: list[subprocess.Popen[bytes]] = []
    try:
        started = time.monotonic()
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "plyr_appview", "project", "--group"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(workers)
        ]
        first = None
        while True:
            done = _stored(url, projectors, topic)
            now = time.monotonic()
            if first is None and done > 0:
                first, busy_first = now, _jiffies_busy()
                cpu_first = sum(_process_cpu(p.pid) for p in procs)
                server_first = _server_cpu(url)
            if done >= EVENTS:
                break
            if now - started > TIMEOUT_S or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{workers} worker(s): stuck at {done} of {EVENTS}")
            time.sleep(0.05)
        assert first is not None
        cpu = sum(_process_cpu(p.pid) for p in procs) - cpu_first
        server = _server_cpu(url) - server_first
        busy = _jiffies_busy() - busy_first
        return Run(workers, first - started, now - first, cpu, server, busy)
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
        drop_database(name)


async def fill(bootstrap: str, prefix: str) -> None:
    topic = f"{prefix}repo"
    log = KafkaLog(bootstrap, partitions=PARTITIONS, topics=[topic])
    await log.start()
    try:
        events = catalog_event_mix(EVENTS)
        for start in range(0, len(events), 2000):
            chunk = events[start : start + 2000]
            await log.append(topic, [(e.key, e.to_bytes()) for e in chunk])
    finally:
        await log.close()


def main() -> None:
    cores = len(os.sched_getaffinity(0))
    runs: dict[int, Run] = {}
    with start_tansu() as broker:
        for workers in (1, 2):
            # A topic (and so consumer groups' partitions) of its own per run.
            prefix = f"bench{uuid.uuid4().hex[:6]}."
            asyncio.run(fill(broker.bootstrap, prefix))
            runs[workers] = measure(workers, broker.bootstrap, prefix)
    one, two = runs[1], runs[2]
    print(
        f"# {EVENTS} events, {PARTITIONS} partitions, projectors of the repo topic, {cores} cores"
    )
    for r in (one, two):
        print(
            f"# {r.workers} worker(s): group formed in {r.join_s:.1f} s, caught up in"
            f" {r.catchup_s:.1f} s; workers' CPU {r.worker_cpu_s:.1f} s"
            f" ({r.worker_cpu_s / EVENTS * 1e6:.0f} us/event), PostgreSQL's"
            f" {r.server_cpu_s:.1f} s ({r.server_cpu_s / EVENTS * 1e6:.0f} us/event); machine busy"
            f" {r.machine_busy_s:.1f} core-s = {r.machine_busy_s / r.catchup_s:.2f} of {cores}"
            " cores (workers + PostgreSQL + broker + anything else running)"
        )
    per_event = (one.worker_cpu_s + one.server_cpu_s) / EVENTS
    ceiling = cores / per_event
    print(
        f"# arithmetic: one event costs {per_event * 1e6:.0f} us of worker + PostgreSQL CPU,"
        f" so {cores} cores cap the rate near {ceiling:,.0f} events/s whatever the worker"
        f" count; one worker ran at {one.eps:,.0f} ({one.eps / ceiling:.0%} of that cap),"
        f" two at {two.eps:,.0f} ({two.eps / ceiling:.0%}); the rest of the machine's busy"
        " time is the broker and other processes"
    )
    print(f"BENCH cluster.rebuild_eps_1w {one.eps:.0f}")
    print(f"BENCH cluster.rebuild_eps_2w {two.eps:.0f}")
    print(f"BENCH cluster.rebuild_ratio_2w_vs_1w {two.eps / one.eps:.2f}")


if __name__ == "__main__":
    main()
