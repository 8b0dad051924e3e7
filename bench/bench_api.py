"""API latency under load: 100k tracks, 20k artists, 1M likes, 50 concurrent clients.

Bulk-loads the read models with COPY into a fresh database on the system PostgreSQL,
starts a real uvicorn (one worker, its own process) on loopback, and drives it from this
process with 50 concurrent httpx clients, each route for a bounded number of requests or
seconds. Then the baseline: the same endpoints after dropping the indexes our queries rely
on (newest-first, most-liked, id lookup, search indexes), so PostgreSQL falls back to scans
and sorts, as plyr.fm's query shapes do at this size. Same data, same run.

Prints ``BENCH api.<route>_p50_ms|_p95_ms|_p99_ms``, ``BENCH api.<route>_ratio_vs_baseline``
(baseline p95 / ours p95) for tracks, top, detail and search, plus the same routes from one
sequential client (``_1client_p50_ms``: service time without queueing; with 50 requests in
flight on one worker, latency ≈ 50 / throughput). Runs in about 3-4 minutes.
The machine's two cores are shared (server, clients, PostgreSQL and other work).
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import psycopg

from projectors.base import track_id
from tests.brokers import create_database, drop_database

TRACKS = int(os.environ.get("BENCH_TRACKS", "100000"))
ARTISTS = int(os.environ.get("BENCH_ARTISTS", "20000"))
LIKES = int(os.environ.get("BENCH_LIKES", "1000000"))
CLIENTS = 50
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "1000"))
BASELINE_REQUESTS = int(os.environ.get("BENCH_BASELINE_REQUESTS", "200"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))

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


def load(url: str) -> tuple[list[int], list[str]]:
    """COPY artists, tracks and likes; return track ids and search queries."""
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
        with conn.cursor().copy(
            'COPY "like" (uri, did, rkey, cid, rev, subject_uri, created_at) FROM STDIN'
        ) as copy:
            lines: list[str] = []
            for i in range(LIKES):
                subject = uris[int(TRACKS * rng.random() ** 3)]
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
    queries = []
    for _ in range(300):
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
    return ids, queries


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve(url: str, port: int) -> subprocess.Popen[bytes]:
    code = (
        "import uvicorn\n"
        "from api.app import create_app\n"
        "from plyr_appview.config import Settings\n"
        f"app = create_app(Settings(), database_url={url!r})\n"
        f"uvicorn.run(app, host='127.0.0.1', port={port}, log_level='warning',"
        " access_log=False)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return subprocess.Popen([sys.executable, "-c", code], env=env)


async def wait_ready(base: str) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(f"{base}/health")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("API did not start")


async def drive(base: str, paths: list[str], count: int) -> list[float]:
    """Latencies (ms) of ``count`` requests over ``paths`` by 50 clients, within SECONDS."""
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + SECONDS
    next_index = 0
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal next_index, errors
            while next_index < count and time.monotonic() < deadline:
                path = paths[next_index % len(paths)]
                next_index += 1
                started = time.perf_counter()
                try:
                    r = await client.get(path)
                    ok = r.status_code == 200
                except httpx.HTTPError:  # a dropped or timed-out request still counts
                    ok = False
                latencies.append((time.perf_counter() - started) * 1000)
                if not ok:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    if errors:
        print(f"# {errors} non-200 answers", file=sys.stderr)
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def single_client(base: str, paths: list[str], count: int = 60) -> list[float]:
    """Latencies of one client in sequence: the service time without queueing."""
    out = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for i in range(count):
            started = time.perf_counter()
            await client.get(paths[i % len(paths)])
            out.append((time.perf_counter() - started) * 1000)
    return out


async def measure(
    base: str, routes: dict[str, list[str]], count: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(50-client latencies, one-client latencies) per route."""
    out, solo = {}, {}
    for name, paths in routes.items():
        await drive(base, paths[:20], 100)  # warm the pool and caches
        out[name] = await drive(base, paths, count)
        solo[name] = await single_client(base, paths[::-1], 40)
    return out, solo


async def main() -> None:
    started = time.monotonic()
    name, url = create_database()
    proc: subprocess.Popen[bytes] | None = None
    try:
        ids, queries = load(url)
        print(f"# loaded {TRACKS} tracks, {ARTISTS} artists, {LIKES} likes "
              f"in {time.monotonic() - started:.0f} s", file=sys.stderr)  # fmt: skip
        rng = random.Random(3)
        # Deep pages too: cursors from the first pages of the newest list.
        routes = {
            "tracks": ["/tracks/?limit=50"] * 5,
            "top": [f"/tracks/top?period={p}" for p in ("all_time", "month", "week", "all_time")],
            "detail": [f"/tracks/{rng.choice(ids)}" for _ in range(500)],
            "search": [f"/search/?{httpx.QueryParams({'q': q})}" for q in queries],
        }
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = serve(url, port)
        await wait_ready(base)
        async with httpx.AsyncClient(base_url=base) as client:
            body = (await client.get("/tracks/?limit=50")).json()
            cursor = body["next_cursor"]
            for _ in range(3):
                routes["tracks"].append(f"/tracks/?{httpx.QueryParams({'cursor': cursor})}")
                cursor = (await client.get(routes["tracks"][-1])).json()["next_cursor"]
            if (await client.get("/search/?q=rain")).status_code != 200:
                del routes["search"]
                print("# /search/ not available: skipped", file=sys.stderr)
        ours, ours_solo = await measure(base, routes, REQUESTS)
        proc.terminate()
        proc.wait(timeout=30)
        proc = None

        with psycopg.connect(url, autocommit=True) as conn:
            for route in routes:
                for statement in BASELINE_DROPS[route]:
                    conn.execute(statement)
            conn.execute("ANALYZE")
        proc = serve(url, port)
        await wait_ready(base)
        baseline, baseline_solo = await measure(base, routes, BASELINE_REQUESTS)

        for route, lat in ours.items():
            p95 = pct(lat, 0.95)
            base95 = pct(baseline[route], 0.95)
            print(f"BENCH api.{route}_p50_ms {pct(lat, 0.50):.1f} ms")
            print(f"BENCH api.{route}_p95_ms {p95:.1f} ms")
            print(f"BENCH api.{route}_p99_ms {pct(lat, 0.99):.1f} ms")
            print(f"BENCH api.{route}_baseline_p95_ms {base95:.1f} ms")
            print(f"BENCH api.{route}_ratio_vs_baseline {base95 / p95:.1f} x")
            solo, solo_base = pct(ours_solo[route], 0.5), pct(baseline_solo[route], 0.5)
            print(f"BENCH api.{route}_1client_p50_ms {solo:.1f} ms")
            print(f"BENCH api.{route}_1client_ratio_vs_baseline {solo_base / solo:.1f} x")
            print(f"# {route}: {len(lat)} requests ours, {len(baseline[route])} baseline",
                  file=sys.stderr)  # fmt: skip
        print(f"# total {time.monotonic() - started:.0f} s", file=sys.stderr)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        drop_database(name)


if __name__ == "__main__":
    asyncio.run(main())
