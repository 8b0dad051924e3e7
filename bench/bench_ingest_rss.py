"""Ingest resident memory under sustained load: peak RSS of a process running FirehoseIngest.

A test relay (``python -m testkit.firehose_server --stream``, its own process) streams
generated mixed traffic (99.5% ``app.bsky.*``, 0.5% ``fm.plyr.track`` signed commits,
realistic CARs) as fast as the consumer takes it. A child process runs
:class:`ingest.firehose.FirehoseIngest` against it for ``SECONDS`` into a
:class:`~kernel.log.postgres.PostgresLog` on a fresh database (verifying every
``fm.plyr`` commit against the relay-served DID documents), then reports its peak resident
set (``VmHWM``) and how many frames it handled. Prints ``BENCH ingest.rss_mb`` (target
≤ 256 MB) and, for information, the end-to-end frames/s over the websocket.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECONDS = 20.0


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


async def _child(url: str, plc_url: str, db_url: str, seconds: float) -> None:
    import httpx

    from ingest.commits import CollectionFilter
    from ingest.firehose import FirehoseIngest
    from kernel.config import DEFAULT_COLLECTIONS
    from kernel.db import open_pool
    from kernel.fetch import UpstreamFetcher
    from kernel.log.postgres import PostgresLog

    pool = await open_pool(db_url, max_size=4)
    log = PostgresLog(pool, partitions=8, topics=["plyr.repo"])
    await log.start()
    stop = asyncio.Event()
    async with httpx.AsyncClient() as http:
        ingest = FirehoseIngest(
            url=url,
            keep=CollectionFilter.of(DEFAULT_COLLECTIONS),
            log=log,
            topic="plyr.repo",
            pool=pool,
            plc_url=plc_url,
            fetcher=UpstreamFetcher(client=http, trusted_hosts=frozenset({"127.0.0.1"})),
        )
        task = asyncio.create_task(ingest.run(stop))
        await asyncio.sleep(seconds)
        stop.set()
        await task
    await log.close()
    await pool.close()
    stats = ingest.stats
    print(
        json.dumps(
            {
                "rss_mb": _peak_rss_mb(),
                "frames": stats.frames,
                "published": stats.published,
                "rejected": dict(stats.rejected),
                "seconds": seconds,
            }
        ),
        flush=True,
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        url, plc_url, db_url, seconds = sys.argv[2:6]
        asyncio.run(_child(url, plc_url, db_url, float(seconds)))
        return

    from testkit.brokers import create_database, drop_database

    relay = subprocess.Popen(
        [sys.executable, "-m", "testkit.firehose_server", "--stream", "--frames", "2000"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    name, db_url = create_database()
    try:
        assert relay.stdout is not None
        ready = relay.stdout.readline().split()
        if not ready or ready[0] != "READY":
            raise RuntimeError("test relay did not start")
        ws_url, plc_url = ready[1], ready[2]
        started = time.monotonic()
        child = subprocess.run(
            [sys.executable, __file__, "--child", ws_url, plc_url, db_url, str(SECONDS)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=SECONDS + 60,
            check=True,
        )
        result = json.loads(child.stdout.strip().splitlines()[-1])
        elapsed = time.monotonic() - started
    finally:
        relay.terminate()
        relay.wait(timeout=10)
        drop_database(name)
    print(
        f"# {result['frames']} frames in {result['seconds']:.0f} s through the websocket"
        f" ({result['frames'] / result['seconds']:.0f} frames/s, relay and consumer sharing"
        f" the CPU), {result['published']} envelopes published, rejected {result['rejected']},"
        f" run took {elapsed:.0f} s"
    )
    print(f"BENCH ingest.rss_mb {result['rss_mb']:.1f} MB")


if __name__ == "__main__":
    main()
