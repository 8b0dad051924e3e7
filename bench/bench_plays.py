"""Play reports through the API into counted plays, against plyr's counter shape.

A fresh database on the system PostgreSQL with ``BENCH_TRACKS`` visible tracks (the
catalog read model, COPY), then, as deployed in the embedded mode (the table-backed log):
``plyr-appview serve`` (``BENCH_WORKERS`` API processes, default the CPU count) and
``plyr-appview project`` as subprocesses. This process drives ``POST /tracks/{id}/play``
with 50 closed-loop keep-alive HTTP/1.1 connections (a lean client on an asyncio Protocol:
httpx spends about as much CPU per request as the server, on the same cores), each report
without a cookie, so each is a new listener and counts. The play limit is raised for the
run through the settings (``PLYR_PLAY_RATE``/``PLYR_PLAY_BURST``): all 50 clients share
one address.

While the clients run, a poller reads the counted total (``sum(plays)`` of
``play_track_total``, what ``play_count`` answers) every 20 ms. The lag of the k-th report
sent is the time from its sending until the total first reaches k (the count curve against
the send curve: exact when plays are counted in the order they were sent, and close to it
otherwise, since partitions are projected concurrently).

Then plyr's shape, same data, same client load, same API process layout: each worker runs
our app with one more route, ``POST /counter/tracks/{id}/play``, which loads the track the
same way, then does a ``SET NX`` stand-in (``INSERT ... ON CONFLICT DO NOTHING`` on a dedupe
key with its expiry) and ``UPDATE ... SET play_count = play_count + 1 ... RETURNING`` (a
narrow counter table: the ``track`` table's read-model trigger would empty the API caches
on every report, which plyr does not pay).

Prints ``BENCH plays.eps`` (reports counted per second: the window's reports over the time
from its start until the last of them is counted), ``plays.report_p99_ms``,
``plays.lag_p99_ms``, ``plays.counter_eps``, ``plays.counter_report_p99_ms`` and
``plays.ratio_vs_counter`` (ours / counter, per second), and ``#`` lines with the CPU per
report of the API processes, the projector, the database backends and this load generator
(from /proc), and the reports/s those costs allow on this machine's cores.

``BENCH_SECONDS`` (15) is the measured window, after a 3 s warm-up that is drained first.
``BENCH_COUNTER=0`` skips the counter run. The database backends' CPU is split by whose
they are: ``db_api`` (the API's appends and lookups), ``db_projector`` and ``db`` (others).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
import uvicorn
import uvloop
from fastapi import Path as PathParam
from fastapi import Request
from starlette.responses import Response

from api.app import create_app
from api.catalog import shown_row
from api.deps import Read
from api.responses import encode, json_response
from kernel.config import load_settings
from kernel.db import open_pool
from plyr_appview.ports import free_port
from plyr_appview.runtime import bind_api_sockets, uvicorn_config
from projectors.base import track_id
from testkit.brokers import create_database, drop_database
from testkit.keepalive import Connection, Tally

ROOT = Path(__file__).resolve().parent.parent
TRACKS = int(os.environ.get("BENCH_TRACKS", "2000"))
ARTISTS = max(1, TRACKS // 10)
CLIENTS = 50
WORKERS = int(os.environ.get("BENCH_WORKERS", str(len(os.sched_getaffinity(0)))))
SECONDS = float(os.environ.get("BENCH_SECONDS", "15"))
WITH_COUNTER = os.environ.get("BENCH_COUNTER", "1") != "0"
WARMUP = 3.0
IDLE_S = 3.0
HOST = "127.0.0.1"
POLL_S = 0.02
DRAIN_TIMEOUT_S = 120.0
TICK = os.sysconf("SC_CLK_TCK")
CORES = len(os.sched_getaffinity(0))

_COUNTER_WORKER = "--counter-worker"
_FD = "BENCH_COUNTER_FD"
_URL = "BENCH_COUNTER_URL"


# --- data ------------------------------------------------------------------------------


def load(url: str) -> list[int]:
    """COPY artists and tracks (visible, 3 minutes long); the counter table; track ids."""
    dids = [f"did:plc:{i:024d}".replace("0", "a") for i in range(ARTISTS)]
    ids = []
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.cursor().copy(
            "COPY artist (did, handle, display_name, account_status, first_seen_at, updated_at)"
            " FROM STDIN"
        ) as copy:
            for i, did in enumerate(dids):
                copy.write_row((did, f"artist{i}.test", f"Artist {i}", "active", "2026-01-01",
                                "2026-01-01"))  # fmt: skip
        with conn.cursor().copy(
            "COPY track (uri, id, did, rkey, cid, rev, title, artist, file_type, duration,"
            " created_at, record) FROM STDIN"
        ) as copy:
            for i in range(TRACKS):
                did = dids[i % ARTISTS]
                uri = f"at://{did}/fm.plyr.track/t{i:08d}"
                ids.append(track_id(uri))
                copy.write_row((uri, ids[-1], did, f"t{i:08d}", "bafyreib" + "a" * 52, "3l00",
                                f"Song {i}", "Bench", "mp3", 180, "2026-01-02", "{}"))  # fmt: skip
        # plyr's shape: a counter per track and a dedupe key per listener and track.
        conn.execute(
            "CREATE TABLE counter_track (id bigint PRIMARY KEY, play_count bigint NOT NULL)"
        )
        conn.execute("INSERT INTO counter_track SELECT id, 0 FROM track")
        conn.execute(
            "CREATE TABLE counter_dedupe (key text PRIMARY KEY, expires_at timestamptz NOT NULL)"
        )
        conn.execute("ANALYZE")
    return ids


# --- processes and their CPU -------------------------------------------------------------


def env_for(url: str, port: int, data_dir: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PLYR_", "KAFKA_"))},
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": url,
        "PLYR_LOG_BACKEND": "postgres",
        "PLYR_API_BIND": f"{HOST}:{port}",
        "PLYR_API_WORKERS": str(WORKERS),
        "PLYR_DATA_DIR": data_dir,
        "PLYR_PLAY_RATE": "1000000",  # one address for all 50 clients: lift the limit
        "PLYR_PLAY_BURST": "1000000",
        "PLYR_FIREHOSE_URL": f"ws://{HOST}:9/none",  # not used by serve/project
    }


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, *args], env=env, cwd=str(ROOT))


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def tree(root: int) -> list[int]:
    """``root`` and its descendants."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += parents.get(pid, [])
    return out


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` (those still alive)."""
    total = 0
    for pid in pids:
        if (fields := _stat(pid)) is not None:
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def backend_pids(url: str) -> dict[str, list[int]]:
    """The database's backends, by whose they are: ``db_api``, ``db_projector`` (the
    subprocesses' ``PGAPPNAME``) and ``db`` (any other)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid, application_name FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    out: dict[str, list[int]] = {"db_api": [], "db_projector": [], "db": []}
    for pid, name in rows:
        out[name if name in ("db_api", "db_projector") else "db"].append(int(pid))
    return out


# --- the load generator ------------------------------------------------------------------


async def drive(port: int, paths: list[str], seconds: float) -> Tally:
    """CLIENTS closed-loop connections POSTing ``paths`` round-robin for ``seconds``."""
    tally = Tally()
    deadline = time.monotonic() + seconds
    index = 0

    def next_path() -> str | None:
        nonlocal index
        if time.monotonic() >= deadline:
            return None
        index += 1
        return paths[index % len(paths)]

    loop = asyncio.get_running_loop()
    conns = []
    for _ in range(CLIENTS):
        _, conn = await loop.create_connection(
            lambda: Connection(b"bench", next_path, tally, method=b"POST"), HOST, port
        )
        conns.append(conn)
    await asyncio.gather(*(c.closed for c in conns))
    return tally


async def wait_ready(port: int, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a server exited with {proc.returncode} (see above)")
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            answer = await reader.read()
            writer.close()
            if answer.startswith(b"HTTP/1.1 200"):
                return
        await asyncio.sleep(0.2)
    raise RuntimeError("the API did not start")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# --- counted plays -------------------------------------------------------------------


async def counted(conn: psycopg.AsyncConnection[tuple[int]]) -> int:
    cur = await conn.execute("SELECT coalesce(sum(plays), 0)::bigint FROM play_track_total")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def poll(url: str, samples: list[tuple[float, int]], stop: asyncio.Event) -> None:
    """``(perf_counter, counted total)`` every POLL_S until ``stop``."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            samples.append((time.perf_counter(), await counted(conn)))
            await asyncio.sleep(POLL_S)


async def drain(url: str, target: int) -> float:
    """Wait until ``target`` plays are counted; the perf_counter time it was seen."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while (seen := await counted(conn)) < target:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {seen} of {target} plays counted")
            await asyncio.sleep(POLL_S)
    return time.perf_counter()


def lags_ms(sent: list[float], samples: list[tuple[float, int]], base: int) -> list[float]:
    """Per report, in send order: first sample counting it minus its send time."""
    out = []
    j = 0
    for k, at in enumerate(sorted(sent), start=1):
        while j < len(samples) and samples[j][1] - base < k:
            j += 1
        if j == len(samples):
            break
        out.append((samples[j][0] - at) * 1000)
    return out


# --- plyr's shape: the counter route ---------------------------------------------------------


def counter_worker_main() -> None:
    """One API worker process of the counter run: our app plus the counter route."""
    sock = socket.socket(fileno=int(os.environ[_FD]))
    url = os.environ[_URL]
    settings = load_settings()

    async def serve() -> None:
        writer = await open_pool(url, max_size=settings.api_pool_size)
        app = create_app(settings, database_url=url)

        async def counter_play(
            request: Request, read: Read, track: int = PathParam(ge=0)
        ) -> Response:
            found = await read.tracks.load(track)
            row = shown_row(found.row, found.visible)
            listener = request.cookies.get("plyr_play_id") or os.urandom(12).hex()
            # One transaction: plyr's SET NX goes to Redis (no commit of its own).
            async with writer.connection() as conn, conn.transaction():
                cur = await conn.execute(
                    "INSERT INTO counter_dedupe VALUES (%s, now() + make_interval(secs => %s))"
                    " ON CONFLICT DO NOTHING",
                    (f"{listener}:{row['id']}", int(row.get("duration") or 300)),
                )
                if cur.rowcount:
                    cur = await conn.execute(
                        "UPDATE counter_track SET play_count = play_count + 1 WHERE id = %s"
                        " RETURNING play_count",
                        (row["id"],),
                    )
                else:
                    cur = await conn.execute(
                        "SELECT play_count FROM counter_track WHERE id = %s", (row["id"],)
                    )
                count = await cur.fetchone()
            return json_response(encode({"play_count": int(count[0]) if count else 0}))

        app.add_api_route("/counter/tracks/{track}/play", counter_play, methods=["POST"])
        server = uvicorn.Server(uvicorn_config(app))
        try:
            await server.serve(sockets=[sock])
        finally:
            await writer.close()

    uvloop.install()
    asyncio.run(serve())


def start_counter(
    url: str, port: int, env: dict[str, str]
) -> tuple[list[subprocess.Popen[bytes]], list[socket.socket]]:
    socks = bind_api_sockets(HOST, port, WORKERS)
    procs = []
    for i in range(WORKERS):
        sock = socks[i % len(socks)]
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, _COUNTER_WORKER],
                env={**env, _FD: str(sock.fileno()), _URL: url},
                pass_fds=[sock.fileno()],
                cwd=str(ROOT),
            )
        )
    return procs, socks


# --- the runs ------------------------------------------------------------------------


async def run_ours(url: str, ids: list[int], data_dir: str) -> dict[str, float]:
    port = free_port()
    env = env_for(url, port, data_dir)
    args = ["-m", "plyr_appview", "--log-level", "WARNING"]
    # Each process's backends are told apart by their application name (libpq reads it).
    api = start([*args, "serve"], {**env, "PGAPPNAME": "db_api"})
    project = start([*args, "project"], {**env, "PGAPPNAME": "db_projector"})
    try:
        await wait_ready(port, [api, project])
        paths = [f"/tracks/{i}/play" for i in ids]
        idle = await idle_cpu({"api": tree(api.pid), "projector": tree(project.pid)}, url)
        warm = await drive(port, paths, WARMUP)
        base = len(warm.sent)  # a fresh database: the warm-up's plays are all there is
        await drain(url, base)
        pids = {"api": tree(api.pid), "projector": tree(project.pid), **backend_pids(url)}
        cpu0 = {name: cpu_s(p) for name, p in pids.items()} | {"client": time.process_time()}
        samples: list[tuple[float, int]] = []
        stop_poll = asyncio.Event()
        poller = asyncio.create_task(poll(url, samples, stop_poll))
        t0 = time.perf_counter()
        tally = await drive(port, paths, SECONDS)
        done_at = await drain(url, base + len(tally.sent))
        await asyncio.sleep(POLL_S * 2)
        stop_poll.set()
        await poller
        cpu1 = {name: cpu_s(p) for name, p in pids.items()} | {"client": time.process_time()}
    finally:
        stop(api)
        stop(project)
    report_failures("ours", tally)
    n = len(tally.sent)
    lags = lags_ms(tally.sent, samples, base)
    figures = {
        "eps": n / (done_at - t0),
        "accepted_eps": n / SECONDS,
        "report_p50_ms": pct(tally.latencies, 0.50),
        "report_p99_ms": pct(tally.latencies, 0.99),
        "lag_p50_ms": pct(lags, 0.50),
        "lag_p99_ms": pct(lags, 0.99),
        "reports": n,
    }
    elapsed = done_at - t0
    for name in cpu0:
        figures[f"cpu_ms_{name}"] = (cpu1[name] - cpu0[name]) * 1000 / max(1, n)
        if name in idle:
            used = cpu1[name] - cpu0[name] - idle[name] * elapsed
            figures[f"marginal_ms_{name}"] = max(0.0, used) * 1000 / max(1, n)
    return figures


async def idle_cpu(pids: dict[str, list[int]], url: str) -> dict[str, float]:
    """CPU seconds per second each part spends with no reports (the log readers' polls)."""
    pids = {**pids, **backend_pids(url)}
    before = {name: cpu_s(p) for name, p in pids.items()}
    await asyncio.sleep(IDLE_S)
    return {name: (cpu_s(p) - before[name]) / IDLE_S for name, p in pids.items()}


async def run_counter(url: str, ids: list[int], data_dir: str) -> dict[str, float]:
    port = free_port()
    env = env_for(url, port, data_dir)
    procs, socks = start_counter(url, port, env)
    try:
        await wait_ready(port, procs)
        paths = [f"/counter/tracks/{i}/play" for i in ids]
        await drive(port, paths, WARMUP)
        pids = {
            "api": [p.pid for p in procs],
            "db": [p for ps in backend_pids(url).values() for p in ps],
        }
        cpu0 = {name: cpu_s(p) for name, p in pids.items()} | {"client": time.process_time()}
        tally = await drive(port, paths, SECONDS)
        cpu1 = {name: cpu_s(p) for name, p in pids.items()} | {"client": time.process_time()}
    finally:
        for proc in procs:
            stop(proc)
        for sock in socks:
            sock.close()
    report_failures("counter", tally)
    n = len(tally.sent)
    figures = {
        "eps": n / SECONDS,
        "report_p50_ms": pct(tally.latencies, 0.50),
        "report_p99_ms": pct(tally.latencies, 0.99),
        "reports": n,
    }
    for name in cpu0:
        figures[f"cpu_ms_{name}"] = (cpu1[name] - cpu0[name]) * 1000 / max(1, n)
    return figures


def report_failures(name: str, tally: Tally) -> None:
    failed = {code: n for code, n in tally.statuses.items() if code != 200}
    if failed or tally.errors:
        print(f"# {name}: failed answers {failed} errors {dict(tally.errors)}", file=sys.stderr)


def setup(url: str, data_dir: str) -> list[int]:
    """Migrate the fresh database as the product does, then load it."""
    subprocess.run(
        [sys.executable, "-m", "plyr_appview", "--log-level", "WARNING", "migrate"],
        env=env_for(url, free_port(), data_dir),
        cwd=str(ROOT),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return load(url)


async def main() -> None:
    name, url = create_database()
    data_dir = tempfile.mkdtemp(prefix="plyr-bench-plays-")
    try:
        ids = await asyncio.to_thread(setup, url, data_dir)
        ours = await run_ours(url, ids, data_dir)
        counter = await run_counter(url, ids, data_dir) if WITH_COUNTER else None
    finally:
        drop_database(name)
    print(f"BENCH plays.eps {ours['eps']:.0f} reports/s")
    print(f"BENCH plays.report_p99_ms {ours['report_p99_ms']:.1f} ms")
    print(f"BENCH plays.lag_p99_ms {ours['lag_p99_ms']:.0f} ms")
    if counter is not None:
        print(f"BENCH plays.counter_eps {counter['eps']:.0f} reports/s")
        print(f"BENCH plays.counter_report_p99_ms {counter['report_p99_ms']:.1f} ms")
        print(f"BENCH plays.ratio_vs_counter {ours['eps'] / counter['eps']:.2f} x")
    print(
        f"# ours: {ours['reports']:.0f} reports in {SECONDS:.0f} s (accepted"
        f" {ours['accepted_eps']:.0f}/s), report p50 {ours['report_p50_ms']:.1f} ms,"
        f" lag p50 {ours['lag_p50_ms']:.0f} ms; {WORKERS} API workers, {CORES} cores"
    )
    if counter is not None:
        print(f"# counter: {counter['reports']:.0f} reports, p50 {counter['report_p50_ms']:.1f} ms")
    idle = {k.removeprefix("marginal_ms_"): v for k, v in ours.items() if "marginal" in k}
    print(
        "# ours, minus what the same processes spend idle (polling the log):"
        " CPU ms per report: " + ", ".join(f"{k} {v:.2f}" for k, v in idle.items())
    )
    for label, figures in (("ours", ours), ("counter", counter)):
        if figures is None:
            continue
        parts = {k.removeprefix("cpu_ms_"): v for k, v in figures.items() if k.startswith("cpu_")}
        total = sum(parts.values())
        detail = ", ".join(f"{k} {v:.2f}" for k, v in parts.items())
        print(
            f"# {label}: CPU ms per report: {detail}; total {total:.2f}"
            f" -> at most {CORES * 1000 / total:.0f} reports/s on {CORES} cores"
        )


if __name__ == "__main__":
    if sys.argv[1:] == [_COUNTER_WORKER]:
        counter_worker_main()
    else:
        uvloop.run(main())
