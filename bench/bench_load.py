"""Load: the API under 200 concurrent connections for 60 s of mixed reads and play reports,
from a second process, while the projectors run (issue #12 item 8).

Loads the benchmark catalog of ``bench_api`` (``BENCH_TRACKS`` tracks, default 50k; artists,
likes, search documents) into a fresh database on the system PostgreSQL, starts
``plyr-appview serve`` (``BENCH_WORKERS`` workers) and ``plyr-appview project`` on it (the
PostgreSQL log), then runs the load generator as a separate process: ``BENCH_CONNECTIONS``
(200) keep-alive HTTP/1.1 connections, closed loop, for ``BENCH_SECONDS`` (60) seconds; each
request is a track list, a track page, a search, or (one in five) ``POST /tracks/{id}/play``.
Each connection comes from its own loopback address (127.0.0.2, .3, …), as separate
listeners would, so the per-address play rate limit applies per connection.

While it runs, this process samples the projectors' lag on the log every second (events
appended but not yet projected, summed over partitions). Prints ``BENCH load.*``: requests,
errors (transport errors and any status other than 200), p50/p95/p99 latency, and the
largest projector lag seen and the lag at the end. Ingest lag is not measured here (there is
no firehose in this run; the fault suite covers the ingest).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("BENCH_TRACKS", "50000")
os.environ.setdefault("BENCH_ARTISTS", "10000")
os.environ.setdefault("BENCH_LIKES", "200000")

import bench_api
import psycopg

from plyr_appview.ports import free_port
from testkit.brokers import create_database, drop_database

CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "200"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "60"))
PLAY_SHARE = 0.2


# --- the load generator (run as a second process: ``bench_load.py --client``) ------------


async def _request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str, path: str, extra: str
) -> int:
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: 0\r\n{extra}\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def _connection(
    n: int, port: int, paths: dict[str, list[str]], deadline: float, out: dict[str, object]
) -> None:
    rng = random.Random(n)
    latencies: list[float] = out["latencies"]  # type: ignore[assignment]
    statuses: Counter[str] = out["statuses"]  # type: ignore[assignment]
    source = f"127.0.{(n + 2) // 256}.{(n + 2) % 256}"
    cookie = f"Cookie: plyr_play_id=bench{n:012d}abcd\r\n"
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while time.monotonic() < deadline:
        if rng.random() < PLAY_SHARE:
            method, path, extra = "POST", rng.choice(paths["play"]), cookie
        else:
            kind = rng.choice(("list", "page", "search"))
            method, path, extra = "GET", rng.choice(paths[kind]), ""
        started = time.monotonic()
        try:
            if conn is None:
                conn = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            status = await asyncio.wait_for(_request(*conn, method, path, extra), 30)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            statuses[f"{method} {type(exc).__name__}"] += 1
            if conn is not None:
                conn[1].transport.abort()
            conn = None
            continue
        latencies.append(time.monotonic() - started)
        statuses[f"{method} {status}"] += 1
    if conn is not None:
        conn[1].close()


async def client(port: int, paths: dict[str, list[str]]) -> None:
    """Drive the API; print one JSON line of results."""
    out: dict[str, object] = {"latencies": [], "statuses": Counter()}
    deadline = time.monotonic() + SECONDS
    await asyncio.gather(*(_connection(n, port, paths, deadline, out) for n in range(CONNECTIONS)))
    latencies = sorted(out["latencies"])  # type: ignore[call-overload]
    print(json.dumps({"latencies": latencies, "statuses": out["statuses"]}))


# --- the run --------------------------------------------------------------------------


def projector_lag(url: str) -> int:
    """Events on the log not yet projected, summed over projectors and partitions."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(p.next_offset - coalesce(o.next_offset, 0)), 0)"
            " FROM log_partition p JOIN projector_offset o USING (topic, partition)"
            " WHERE p.next_offset > o.next_offset"
        ).fetchone()
    return int(row[0]) if row else 0


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))] * 1000 if values else 0.0


async def main() -> None:
    name, url = create_database()
    try:
        ids, _, queries = bench_api.load(url)
        rng = random.Random(3)
        paths = {
            "list": [f"/tracks/?limit={rng.choice((10, 20, 50))}" for _ in range(50)],
            "page": [f"/tracks/{rng.choice(ids)}" for _ in range(2000)],
            "search": [f"/search/?q={q.replace(' ', '+')}" for q in queries[:2000]],
            "play": [f"/tracks/{rng.choice(ids)}/play" for _ in range(2000)],
        }
        port = free_port()
        api = bench_api.serve(url, port, cache=True)
        env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(Path(__file__).parent.parent)}
        project = subprocess.Popen(  # noqa: ASYNC220 (started once, before the load)
            [sys.executable, "-m", "plyr_appview", "--log-level", "WARNING", "project"], env=env
        )
        try:
            await bench_api.wait_ready("127.0.0.1", port, api)
            gen = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--client",
                str(port),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            sender = asyncio.create_task(gen.communicate(json.dumps(paths).encode()))
            lags: list[int] = []
            while not sender.done():
                lags.append(await asyncio.to_thread(projector_lag, url))
                await asyncio.sleep(1)
            stdout, _ = await sender
            final_lag_started = time.monotonic()
            lag = projector_lag(url)
            for _ in range(150):  # 30 s at most
                if lag == 0:
                    break
                await asyncio.sleep(0.2)
                lag = projector_lag(url)
            drained = time.monotonic() - final_lag_started
        finally:
            bench_api.stop_server(api)
            bench_api.stop_server(project)
        result = json.loads(stdout.decode().strip().splitlines()[-1])
        latencies: list[float] = result["latencies"]
        statuses: dict[str, int] = result["statuses"]
        errors = sum(n for k, n in statuses.items() if not k.endswith(" 200"))
        print(f"BENCH load.connections {CONNECTIONS}")
        print(f"BENCH load.seconds {SECONDS:.0f}")
        print(f"BENCH load.requests {len(latencies)}")
        print(f"BENCH load.requests_per_s {len(latencies) / SECONDS:.0f}")
        print(f"BENCH load.errors {errors}")
        for q, label in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
            print(f"BENCH load.{label}_ms {pct(latencies, q):.1f}")
        print(f"BENCH load.projector_lag_max_events {max(lags, default=0)}")
        print(f"BENCH load.projector_lag_drained_s {drained:.1f} (left: {lag})")
        print(f"# statuses {dict(sorted(statuses.items()))}")
    finally:
        drop_database(name)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--client":
        asyncio.run(client(int(sys.argv[2]), json.loads(sys.stdin.read())))
    else:
        asyncio.run(main())
