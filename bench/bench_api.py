"""API latency under load: 100k tracks, 20k artists, 1M likes, 50 concurrent clients.

Bulk-loads the read models with COPY into a fresh database on the system PostgreSQL,
starts the API as deployed (``plyr-appview serve``: ``BENCH_WORKERS`` uvicorn worker
processes, default the CPU count, uvloop and httptools) on loopback, and drives it from
this process with 50 closed-loop keep-alive HTTP/1.1 connections (a lean client on an
asyncio Protocol: each connection sends its next request when the previous answer is
complete), each route for a bounded number of requests or seconds. Then the baseline: the
same endpoints after dropping the indexes our queries rely on (newest-first, most-liked,
id lookup, search indexes), so PostgreSQL falls back to scans and sorts, as plyr.fm's
query shapes do at this size. Same data, same run.

Everything runs twice: with the response cache (the default settings; the hit rate is
printed) and with it off (``PLYR_API_CACHE_ENTRIES=0``, keys ``api.<route>_nocache_*``);
the baseline always with the same setting as ours. Detail ids follow the likes'
popularity (skewed, as real traffic is); a uniform-random variant is a ``#`` line. With the
cache, tracks and detail run once more while a read-model statement commits
``BENCH_WRITES_PER_S`` (10) times a second, each one emptying the caches (``#`` lines):
the other figures are for a period without writes.

Prints ``BENCH api.<route>_p50_ms|_p95_ms|_p99_ms``, ``BENCH api.<route>_ratio_vs_baseline``
(baseline p95 / ours p95) for tracks, top, detail and search, the same routes from one
sequential client (``_1client_p50_ms``: service time without queueing; with 50 requests in
flight, latency ≈ 50 / throughput), failed requests per route (non-200 answers and
transport errors, also listed on stderr) and the load generator's own CPU per request.
Runs in about 4-5 minutes. The machine's cores are shared (server, clients, PostgreSQL).
``BENCH_ROUTES`` (comma list of tracks, top, detail, search; default all) runs only some.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
import uvloop

from plyr_appview.ports import free_port
from projectors.base import track_id
from testkit.brokers import create_database, drop_database
from testkit.keepalive import Connection, Tally

TRACKS = int(os.environ.get("BENCH_TRACKS", "100000"))
ARTISTS = int(os.environ.get("BENCH_ARTISTS", "20000"))
LIKES = int(os.environ.get("BENCH_LIKES", "1000000"))
CLIENTS = 50
WORKERS = int(os.environ.get("BENCH_WORKERS", str(len(os.sched_getaffinity(0)))))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "20000"))
BASELINE_REQUESTS = int(os.environ.get("BENCH_BASELINE_REQUESTS", "2000"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
HOST = "127.0.0.1"
WRITES_PER_S = float(os.environ.get("BENCH_WRITES_PER_S", "10"))
SOLO = 40  # requests of the one-client run, on paths the 50-client run did not use
ROUTES = [r for r in os.environ.get("BENCH_ROUTES", "tracks,top,detail,search").split(",") if r]

WORDS = (
    "light rain night drive morning blue summer echo river fire gold dream city dust wave "
    "ghost heart star moon shadow glass velvet neon storm ocean silver broken wild electric "
    "sunset paper winter garden signal mirror orbit desert honey static thunder"
).split()

# Indexes dropped for the baseline, per route.
BASELINE_DROPS = {
    "tracks": ["DROP INDEX IF EXISTS track_created_idx"],
    "top": ["DROP INDEX IF EXISTS track_like_count_idx"],
    "detail": ["ALTER TABLE track DROP CONSTRAINT IF EXISTS track_id_key"],
    "search": [
        "DROP INDEX IF EXISTS search_doc_norm_trgm_idx",
        "DROP INDEX IF EXISTS search_doc_norm_prefix_idx",
        "DROP INDEX IF EXISTS search_doc_alt_trgm_idx",
        "DROP INDEX IF EXISTS search_doc_alt_prefix_idx",
    ],
}


def load(url: str) -> tuple[list[int], list[int], list[str]]:
    """COPY artists, tracks and likes; return track ids, their like counts, search queries."""
    rng = random.Random(7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    dids = [f"did:plc:{i:024d}".replace("0", "a") for i in range(ARTISTS)]
    ids: list[int] = []
    titles: list[str] = []
    uris: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.cursor().copy(
            "COPY artist (did, handle, display_name, account_status, first_seen_at, updated_at)"
            " FROM STDIN"
        ) as copy:
            for i, did in enumerate(dids):
                name = f"{rng.choice(WORDS)} {rng.choice(WORDS)} {i}"
                copy.write_row((did, f"artist{i}.test", name, "active", start, start))
        with conn.cursor().copy(
            "COPY track (uri, id, did, rkey, cid, rev, title, artist, file_type, duration,"
            " created_at, record) FROM STDIN"
        ) as copy:
            for i in range(TRACKS):
                did = dids[rng.randrange(ARTISTS)]
                uri = f"at://{did}/fm.plyr.track/t{i:08d}"
                title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
                created = start + timedelta(seconds=i * 97 + rng.randrange(90))
                ids.append(track_id(uri))
                titles.append(title)
                uris.append(uri)
                copy.write_row((uri, track_id(uri), did, f"t{i:08d}", "bafyreib" + "a" * 52,
                                "3l00", title, "Bench", "mp3", 180, created, "{}"))  # fmt: skip
        # Likes: a skewed popularity, so "top" has a real head.
        # Text COPY in large chunks: write_row per row is too slow for a million rows.
        base_epoch = int(start.timestamp())
        likes = [0] * TRACKS
        with conn.cursor().copy(
            'COPY "like" (uri, did, rkey, cid, rev, subject_uri, created_at) FROM STDIN'
        ) as copy:
            lines: list[str] = []
            for i in range(LIKES):
                index = int(TRACKS * rng.random() ** 3)
                likes[index] += 1
                subject = uris[index]
                did = dids[rng.randrange(ARTISTS)]
                when = datetime.fromtimestamp(base_epoch + rng.randrange(300 * 86400), UTC)
                lines.append(f"at://{did}/fm.plyr.like/l{i:09d}\t{did}\tl{i:09d}\tbafyreic"
                             f"\t3l00\t{subject}\t{when.isoformat()}\n")  # fmt: skip
                if len(lines) >= 50000:
                    copy.write("".join(lines))
                    lines.clear()
            copy.write("".join(lines))
        conn.execute(
            "UPDATE track t SET like_count = l.n FROM (SELECT subject_uri, count(*) AS n"
            ' FROM "like" GROUP BY subject_uri) l WHERE l.subject_uri = t.uri'
        )
        # The search read model, derived here in bulk the way its projector fills it.
        has_search = conn.execute("SELECT to_regclass('search_doc') IS NOT NULL").fetchone()
        if has_search and has_search[0]:
            conn.execute(
                "INSERT INTO search_doc (doc_type, doc_key, did, uri, item_id, title, created_at)"
                " SELECT 'track', uri, did, uri, id, title, created_at FROM track"
            )
            conn.execute(
                "INSERT INTO search_doc (doc_type, doc_key, did, uri, title, alt, created_at)"
                " SELECT 'artist', did, did, did, display_name, handle, first_seen_at FROM artist"
            )
        conn.execute("ANALYZE")
    # As many independent draws as requests: repeats come from the mix itself (short
    # prefixes and common titles recur, handles rarely), not from cycling a short list.
    queries = []
    for _ in range(max(REQUESTS, 300) + SOLO):
        kind = rng.random()
        title = rng.choice(titles)
        if kind < 0.4:
            queries.append(title)  # exact titles
        elif kind < 0.7:
            queries.append(title[: rng.randint(2, 5)])  # typing a prefix
        elif kind < 0.85:
            word = rng.choice(WORDS)
            pos = rng.randrange(len(word))
            queries.append(word[:pos] + word[pos + 1 :] if len(word) > 4 else word)  # typo
        else:
            queries.append(f"artist{rng.randrange(ARTISTS)}.test")  # a handle
    # Every track can be visited, the liked ones more (weight = likes + 1).
    return ids, [n + 1 for n in likes], queries


def serve(url: str, port: int, *, cache: bool) -> subprocess.Popen[bytes]:
    """``plyr-appview serve`` as deployed: WORKERS uvicorn processes, uvloop, httptools."""
    root = Path(__file__).resolve().parent.parent
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PLYR_API_CACHE")},
        "PYTHONPATH": str(root),
        "DATABASE_URL": url,
        "PLYR_API_BIND": f"127.0.0.1:{port}",
        "PLYR_API_WORKERS": str(WORKERS),
        "PLYR_DATA_DIR": os.environ.get(
            "BENCH_DATA_DIR", str(Path(tempfile.gettempdir()) / "plyr-bench-api")
        ),
    }
    if not cache:
        env["PLYR_API_CACHE_ENTRIES"] = "0"  # else the default cache settings
    return subprocess.Popen(
        [sys.executable, "-m", "plyr_appview", "--log-level", "WARNING", "serve"], env=env
    )


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def wait_ready(host: str, port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited with {proc.returncode} (see above)")
        try:
            status, _ = await get_once(host, port, "/health")
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("API did not start")


# --- the load generator ---------------------------------------------------------------
# A closed-loop HTTP/1.1 keep-alive client on a raw asyncio Protocol: each connection sends
# its next GET as soon as the previous response is complete (Content-Length or chunked).
# httpx spent about as much CPU per request as the server, on the same two cores.


async def drive(host: str, port: int, paths: list[str], count: int) -> Tally:
    """``count`` requests over ``paths`` by CLIENTS closed-loop connections, within SECONDS."""
    tally = Tally()
    deadline = time.monotonic() + SECONDS
    issued = 0

    def next_path() -> str | None:
        nonlocal issued
        if issued >= count or time.monotonic() >= deadline:
            return None
        issued += 1
        return paths[issued % len(paths)]

    loop = asyncio.get_running_loop()
    host_header = f"{host}:{port}".encode()

    async def client() -> None:
        # A connection the server closed (or that failed) is replaced while work remains.
        while issued < count and time.monotonic() < deadline:
            try:
                _, conn = await loop.create_connection(
                    lambda: Connection(host_header, next_path, tally), host, port
                )
            except OSError as exc:
                tally.errors[f"connect: {type(exc).__name__}"] += 1
                await asyncio.sleep(0.05)
                continue
            await conn.closed

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return tally


async def get_once(host: str, port: int, path: str) -> tuple[int, bytes]:
    """One request on a fresh connection: (status, body)."""
    tally = Tally()
    sent = False

    def one() -> str | None:
        nonlocal sent
        if sent:
            return None
        sent = True
        return path

    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(
        lambda: Connection(f"{host}:{port}".encode(), one, tally, keep_body=True), host, port
    )
    await conn.closed
    if tally.errors or not tally.statuses:
        raise OSError(f"no answer for {path}: {dict(tally.errors)}")
    status = next(iter(tally.statuses))
    body = conn.body
    if conn.chunked:
        body = _dechunk(body)
    return status, body


def _dechunk(raw: bytes) -> bytes:
    out, pos = bytearray(), 0
    while True:
        line_end = raw.index(b"\r\n", pos)
        size = int(raw[pos:line_end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += raw[line_end + 2 : line_end + 2 + size]
        pos = line_end + 2 + size + 2


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def single_client(host: str, port: int, paths: list[str], count: int = 40) -> Tally:
    """One client in sequence: the service time without queueing."""
    global CLIENTS
    saved, CLIENTS = CLIENTS, 1
    try:
        return await drive(host, port, paths, count)
    finally:
        CLIENTS = saved


@dataclass
class Figures:
    """Per route: the 50-client run, the one-client run, and extra labelled runs."""

    loaded: dict[str, Tally] = field(default_factory=dict)
    solo: dict[str, Tally] = field(default_factory=dict)
    extra: dict[str, Tally] = field(default_factory=dict)
    client_cpu_ms: float = 0.0
    requests: int = 0
    hit_rate: dict[str, float] = field(default_factory=dict)
    """Per route: the share of its requests the response cache answered."""


async def measure(
    host: str,
    port: int,
    routes: dict[str, list[str]],
    count: int,
    extra: dict[str, list[str]],
    solo: dict[str, list[str]],
    *,
    cache: bool,
    url: str,
) -> Figures:
    figures = Figures()

    async def run(name: str, paths: list[str]) -> Tally:
        # Warm connections, pools and plans on paths the measured run starts elsewhere.
        await drive(host, port, paths[-20:], 200)
        before = await cache_counts(host, port) if cache else (0.0, 0.0)
        cpu = time.process_time()
        tally = await drive(host, port, paths, count)
        figures.client_cpu_ms += (time.process_time() - cpu) * 1000
        if cache:
            after = await cache_counts(host, port)
            hits, misses = after[0] - before[0], after[1] - before[1]
            figures.hit_rate[name] = hits / (hits + misses) if hits + misses else 0.0
        figures.requests += len(tally.latencies)
        if tally.failed:
            print(f"# {name}: {tally.failed} failed of {len(tally.latencies)}: "
                  f"{dict(tally.statuses)} {dict(tally.errors)}", file=sys.stderr)  # fmt: skip
        return tally

    for name, paths in routes.items():
        figures.loaded[name] = await run(name, paths)
        figures.solo[name] = await single_client(host, port, solo[name], SOLO)
    for name, paths in extra.items():
        figures.extra[name] = await run(name, paths)
    if cache and WRITES_PER_S > 0:
        # The same routes while read models change: every change empties the caches.
        for name in [r for r in ("tracks", "detail") if r in routes]:
            stop = asyncio.Event()
            writer = asyncio.create_task(write_steadily(url, stop))
            try:
                label = f"{name}_with_{WRITES_PER_S:g}_writes_per_s"
                figures.extra[label] = await run(label, routes[name])
            finally:
                stop.set()
                await writer
    return figures


async def write_steadily(url: str, stop: asyncio.Event) -> None:
    """A read-model statement WRITES_PER_S times a second (each one notifies the API)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            await conn.execute(
                "UPDATE artist SET updated_at = updated_at"
                " WHERE did = (SELECT did FROM artist ORDER BY did LIMIT 1)"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1 / WRITES_PER_S)


# A worker's cache counts on /metrics (one process: counters; several: gauges of the same
# name with a pid label as well).
_CACHE_COUNT = re.compile(
    r'^plyr_api_cache_(hits|misses)_total{[^}]*worker="([^"]+)"[^}]*} (\S+)$', re.M
)


async def cache_counts(host: str, port: int) -> tuple[float, float]:
    """(hits, misses) of the response cache, summed over the workers that answer /metrics."""
    # Each connection may land on any worker: ask on fresh connections until every
    # worker's counters were seen (distinguished by their process id label).
    seen: dict[str, tuple[float, float]] = {}
    for _ in range(WORKERS * 20):
        _, body = await get_once(host, port, "/metrics")
        counts: dict[str, dict[str, float]] = {}
        for kind, worker, value in _CACHE_COUNT.findall(body.decode()):
            counts.setdefault(worker, {})[kind] = float(value)
        for worker, c in counts.items():
            seen[worker] = (c.get("hits", 0.0), c.get("misses", 0.0))
        if len(seen) >= WORKERS:
            break
    return sum(h for h, _ in seen.values()), sum(m for _, m in seen.values())


async def run_server(
    url: str,
    routes: dict[str, list[str]],
    count: int,
    extra: dict[str, list[str]],
    solo: dict[str, list[str]],
    *,
    cache: bool,
) -> Figures:
    port = free_port()
    proc = serve(url, port, cache=cache)
    try:
        await wait_ready(HOST, port, proc)
        return await measure(HOST, port, routes, count, extra, solo, cache=cache, url=url)
    finally:
        stop_server(proc)


def report(ours: Figures, baseline: Figures, suffix: str) -> None:
    for route, tally in ours.loaded.items():
        lat, base = tally.latencies, baseline.loaded[route].latencies
        p95, base95 = pct(lat, 0.95), pct(base, 0.95)
        key = f"api.{route}{suffix}"
        print(f"BENCH {key}_p50_ms {pct(lat, 0.50):.1f} ms")
        print(f"BENCH {key}_p95_ms {p95:.1f} ms")
        print(f"BENCH {key}_p99_ms {pct(lat, 0.99):.1f} ms")
        print(f"BENCH {key}_baseline_p95_ms {base95:.1f} ms")
        print(f"BENCH {key}_ratio_vs_baseline {base95 / p95:.1f} x")
        solo, solo_base = ours.solo[route].latencies, baseline.solo[route].latencies
        print(f"BENCH {key}_1client_p50_ms {pct(solo, 0.5):.1f} ms")
        print(f"BENCH {key}_1client_ratio_vs_baseline {pct(solo_base, 0.5) / pct(solo, 0.5):.1f} x")
        print(f"BENCH {key}_failed {tally.failed + baseline.loaded[route].failed} requests")
        print(f"# {key}: {len(lat)} requests ours, {len(base)} baseline", file=sys.stderr)
    for name, tally in ours.extra.items():
        print(f"# {name}{suffix}: p50 {pct(tally.latencies, 0.5):.1f} ms, p95 "
              f"{pct(tally.latencies, 0.95):.1f} ms, p99 {pct(tally.latencies, 0.99):.1f} ms "
              f"({len(tally.latencies)} requests)")  # fmt: skip
    if ours.requests:
        print(f"# load generator CPU{suffix}: {ours.client_cpu_ms / ours.requests * 1000:.0f} us"
              " per request (this process, all routes)")  # fmt: skip
    for name, rate in ours.hit_rate.items():
        print(f"BENCH api.{name}_cache_hit_rate {rate * 100:.1f} %")


async def add_tracks_pages(paths: list[str], url: str) -> None:
    """Append the next three cursor pages of ``/tracks/`` to ``paths``."""
    port = free_port()
    proc = serve(url, port, cache=False)
    try:
        await wait_ready(HOST, port, proc)
        _, body = await get_once(HOST, port, "/tracks/?limit=50")
        cursor = json.loads(body)["next_cursor"]
        for _ in range(3):
            paths.append(f"/tracks/?{urlencode({'cursor': cursor})}")
            _, body = await get_once(HOST, port, paths[-1])
            cursor = json.loads(body)["next_cursor"]
    finally:
        stop_server(proc)


async def main() -> None:
    started = time.monotonic()
    name, url = create_database()
    try:
        ids, weights, queries = load(url)
        print(f"# loaded {TRACKS} tracks, {ARTISTS} artists, {LIKES} likes "
              f"in {time.monotonic() - started:.0f} s", file=sys.stderr)  # fmt: skip
        rng = random.Random(3)
        # Detail ids follow the likes' popularity (a few tracks get most visits); the
        # uniform variant is printed as a '#' figure.
        popular = rng.choices(ids, weights=weights, k=REQUESTS)
        routes = {
            "tracks": ["/tracks/?limit=50"] * 5,
            "top": [f"/tracks/top?period={p}" for p in ("all_time", "month", "week", "all_time")],
            "detail": [f"/tracks/{i}" for i in popular],
            "search": [f"/search/?{urlencode({'q': q})}" for q in queries[SOLO:]],
        }
        solo = {
            "tracks": routes["tracks"],
            "top": routes["top"],
            "detail": [f"/tracks/{i}" for i in rng.choices(ids, weights=weights, k=SOLO)],
            "search": [f"/search/?{urlencode({'q': q})}" for q in queries[:SOLO]],
        }
        extra = {"detail_uniform": [f"/tracks/{rng.choice(ids)}" for _ in range(REQUESTS)]}
        # BENCH_ROUTES (comma list) runs only some routes, e.g. while working on one.
        routes = {name: paths for name, paths in routes.items() if name in ROUTES}
        solo = {name: paths for name, paths in solo.items() if name in ROUTES}
        if "detail" not in ROUTES:
            extra.clear()
        if "tracks" in ROUTES:
            await add_tracks_pages(routes["tracks"], url)

        ours = await run_server(url, routes, REQUESTS, extra, solo, cache=True)
        ours_off = await run_server(url, routes, REQUESTS, extra, solo, cache=False)
        with psycopg.connect(url, autocommit=True) as conn:
            for route in routes:
                for statement in BASELINE_DROPS[route]:
                    conn.execute(statement)
            conn.execute("ANALYZE")
        baseline = await run_server(url, routes, BASELINE_REQUESTS, {}, solo, cache=True)
        baseline_off = await run_server(url, routes, BASELINE_REQUESTS, {}, solo, cache=False)

        print(f"# {WORKERS} API worker processes, {CLIENTS} closed-loop keep-alive clients; "
              "with the response cache (default settings) and with PLYR_API_CACHE_ENTRIES=0 "
              "(_nocache); each baseline with the same setting")  # fmt: skip
        report(ours, baseline, "")
        report(ours_off, baseline_off, "_nocache")
        print(f"# total {time.monotonic() - started:.0f} s", file=sys.stderr)
    finally:
        drop_database(name)


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main())
