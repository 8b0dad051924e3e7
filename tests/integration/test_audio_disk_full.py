"""The blob cache's disk fills up: the blob directory on a small tmpfs, blobs with real CIDs
from a local "PDS" (a small getBlob server, which also serves them as ``audioUrl`` files).

A request whose blob does not fit gets a 503 ``cache_full`` JSON answer (never a 500, a
502 blaming the PDS, or a crash); no partial file is left under a cache key or in the
scratch directory; catalog reads keep working; once space is freed the same request is
served and cached. The first test runs the real ``plyr-appview serve``; the others run the
app in process (the fetcher's test seam declares 127.0.0.2 public, for ``audioUrl``).
The tmpfs needs root (``mount``); without it the tests are skipped.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import subprocess
import tempfile
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from api.app import create_app
from api.audio import raw_cid
from api.blobstore import LocalBlobStore
from kernel.config import Settings
from kernel.db import open_pool
from kernel.envelope import Envelope
from kernel.log import Message
from projectors.base import track_id
from projectors.catalog import CatalogProjector
from projectors.moderation import ModerationProjector
from projectors.runner import apply_batch, load_offset
from testkit.brokers import fresh_database
from testkit.car import block
from tests.appview_process import AppviewProcess

DID = "did:plc:dddddddddddddddddddddddd"
DISK = 2 * 1024 * 1024
BLOB = 600 * 1024  # three fit on the disk, the fourth does not
BLOBS = [random.Random(i).randbytes(BLOB) for i in range(5)]
CIDS = [raw_cid(hashlib.sha256(b).digest()) for b in BLOBS]


@contextmanager
def _tmpfs(options: str) -> Iterator[Path]:
    """A tmpfs mounted with ``options``, unmounted afterwards; skips where not permitted."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where = Path(tempfile.mkdtemp(prefix="plyr-small-disk-"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        where.rmdir()
        pytest.skip(f"mount -t tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)
        where.rmdir()


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 2 MiB tmpfs."""
    with _tmpfs(f"size={DISK}") as where:
        yield where


@pytest.fixture
def blob_server() -> Iterator[str]:
    """On 127.0.0.2: ``getBlob`` for :data:`BLOBS` by CID, and ``/song<i>.mp3``; its origin."""
    by_cid = dict(zip(CIDS, BLOBS, strict=True))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            body = by_cid.get(parse_qs(url.query).get("cid", [""])[0])
            if url.path.startswith("/song"):
                body = BLOBS[int(url.path.removeprefix("/song").removesuffix(".mp3"))]
            elif url.path != "/xrpc/com.atproto.sync.getBlob":
                body = None
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "audio/mpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.2:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _envelope(rkey: str, audio: dict[str, object]) -> Envelope:
    record = {"$type": "fm.plyr.track", "title": rkey, "artist": "Disk", "fileType": "mp3",
              "createdAt": "2026-11-20T00:00:00.000Z", **audio}  # fmt: skip
    return Envelope(
        kind="record.created", did=DID, source="test", time="2026-11-20T00:00:00Z", rev="3l00",
        collection="fm.plyr.track", rkey=rkey, cid=block(record)[0].encode(), record=record,
    )  # fmt: skip


def _blob_track(i: int) -> Envelope:
    blob = {"$type": "blob", "ref": {"$link": CIDS[i]}, "mimeType": "audio/mpeg", "size": BLOB}
    return _envelope(f"full{i}", {"audioBlob": blob})


def _id(rkey: str) -> int:
    return track_id(f"at://{DID}/fm.plyr.track/{rkey}")


async def _project(url: str, pds: str) -> None:
    """Five ``audioBlob`` tracks (``full<i>``) and five ``audioUrl`` ones (``url<i>``)."""
    envelopes = [_blob_track(i) for i in range(len(BLOBS))]
    envelopes += [_envelope(f"url{i}", {"audioUrl": f"{pds}/song{i}.mp3"}) for i in range(5)]
    messages = [Message("plyr.repo", 0, i, e.key, e.to_bytes(), 0)
                for i, e in enumerate(envelopes)]  # fmt: skip
    pool = await open_pool(url)
    try:
        for projector in (CatalogProjector(), ModerationProjector([])):
            start = await load_offset(pool, projector.name, "plyr.repo", 0)
            await apply_batch(pool, projector, messages, start)
        # DIRECT SQL into ingest's repo_state: where the DID's PDS lives (no DID document).
        async with pool.connection() as conn:
            await conn.execute("INSERT INTO repo_state (did, pds_url) VALUES (%s, %s)", (DID, pds))
    finally:
        await pool.close()


@dataclass
class Outcomes:
    """Every audio answer by kind; what the test asserts on, printed on failure."""

    seen: Counter[str]

    def record(self, i: int, response: httpx.Response, start: int, end: int) -> str:
        if response.status_code in (200, 206):
            assert response.content == BLOBS[i][start : end + 1], f"track {i}: wrong bytes"
            kind = "served"
        else:
            assert response.status_code == 503, f"track {i}: {response.status_code} {response.text}"
            assert response.json()["error"] == "cache_full", response.text
            assert response.headers.get("retry-after"), response.headers
            kind = "cache_full"
        self.seen[kind] += 1
        return kind


def _check_cache(root: Path) -> None:
    """Every file under a cache key holds exactly its CID's bytes; no scratch file is left."""
    for path in (root / "audio").glob("*"):
        assert path.name in CIDS, path
        assert path.read_bytes() == BLOBS[CIDS.index(path.name)], f"{path.name} is partial"
    assert list((root / ".incoming").iterdir()) == []


def test_full_blob_cache_answers_503_keeps_nothing_partial_and_recovers(
    small_disk: Path, blob_server: str, tmp_path: Path
) -> None:
    with fresh_database() as url:
        asyncio.run(_project(url, blob_server))
        app = AppviewProcess(
            {
                "DATABASE_URL": url,
                "PLYR_DATA_DIR": str(tmp_path),
                "PLYR_BLOB_DIR": str(small_disk),
                "PLYR_TRUSTED_HOSTS": "127.0.0.2",
            },
            command="serve",
        )
        stack = ExitStack()
        try:
            app.wait_healthy()
            ids = [_id(f"full{i}") for i in range(len(BLOBS))]
            outcomes = Outcomes(Counter())
            client = stack.enter_context(httpx.Client(base_url=app.base_url, timeout=30))

            def play(i: int, ranged: bool = False) -> str:
                start, end = (1000, 99_999) if ranged else (0, BLOB - 1)
                headers = {"Range": f"bytes={start}-{end}"} if ranged else {}
                return outcomes.record(
                    i, client.get(f"/audio/{ids[i]}", headers=headers), start, end
                )

            def catalog_reads() -> None:
                r = client.get("/tracks/")
                assert r.status_code == 200 and len(r.json()["tracks"]) == 10, r.text

            # One by one: three fit, the fourth and fifth do not.
            assert [play(i) for i in range(5)] == ["served"] * 3 + ["cache_full"] * 2
            _check_cache(small_disk)
            catalog_reads()
            # Again, all at once, with ranges: the cached three are served, the rest refused.
            with ThreadPoolExecutor(5) as workers:  # httpx.Client is thread-safe
                plays = [workers.submit(play, i, i % 2 == 0) for i in range(5)]
                catalog_reads()
                kinds = [p.result() for p in plays]
            assert kinds == ["served"] * 3 + ["cache_full"] * 2
            assert outcomes.seen == Counter(served=6, cache_full=4), outcomes.seen
            _check_cache(small_disk)
            assert sorted(p.name for p in (small_disk / "audio").iterdir()) == sorted(CIDS[:3])
            # The operator frees space: what was refused is now served and cached.
            for cid in CIDS[:2]:
                (small_disk / "audio" / cid).unlink()
            assert [play(3, ranged=True), play(4)] == ["served", "served"]
            assert play(0) == "cache_full"  # full again
            _check_cache(small_disk)
            assert sorted(p.name for p in (small_disk / "audio").iterdir()) == sorted(
                [CIDS[2], CIDS[3], CIDS[4]]
            )
            catalog_reads()
            assert outcomes.seen == Counter(served=8, cache_full=5), outcomes.seen
            assert app.proc.poll() is None
            assert "Traceback" not in app.output, app.output[-3000:]
        finally:
            stack.close()
            code = app.stop()
        assert code == 0, app.output[-3000:]


@asynccontextmanager
async def _api(root: Path, url: str, pds: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app in process on ``url``, its blob store in ``root``; a 500 stays a response."""
    pool = await open_pool(url)
    settings = Settings(trusted_hosts=("127.0.0.2",), audio_origins=(pds,))
    app = create_app(
        settings,
        pool=pool,
        blob_store=LocalBlobStore(root),
        fetcher_overrides={"public_overrides": frozenset({"127.0.0.2"})},
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://api", timeout=30) as client,
        ):
            yield client
    finally:
        await pool.close()


async def test_no_inodes_left_for_a_download_is_a_503(blob_server: str, pg_url: str) -> None:
    # Four inodes: the root, the scratch directory, ``audio/`` and one cached blob.
    with _tmpfs("size=8m,nr_inodes=4") as root:
        await _project(pg_url, blob_server)
        async with _api(root, pg_url, blob_server) as api:
            outcomes = Outcomes(Counter())
            for i in range(2):
                r = await api.get(f"/audio/{_id(f'full{i}')}")
                outcomes.record(i, r, 0, BLOB - 1)
            assert outcomes.seen == Counter(served=1, cache_full=1)
            _check_cache(root)
            (root / "audio" / CIDS[0]).unlink()
            outcomes.record(1, await api.get(f"/audio/{_id('full1')}"), 0, BLOB - 1)
            assert outcomes.seen == Counter(served=2, cache_full=1)
            assert [p.name for p in (root / "audio").iterdir()] == [CIDS[1]]


async def test_audio_url_is_served_when_only_its_pointer_finds_no_room(
    blob_server: str, pg_url: str
) -> None:
    with _tmpfs(f"size={DISK}") as root:
        await _project(pg_url, blob_server)
        async with _api(root, pg_url, blob_server) as api:
            # Leave room for exactly one blob (whole pages): it fits, its pointer does not.
            (root / "filler").write_bytes(bytes(DISK - BLOB))
            r = await api.get(f"/audio/{_id('url0')}", headers={"Range": "bytes=5-9"})
            assert r.status_code == 206 and r.content == BLOBS[0][5:10], r.text
            _check_cache(root)
            assert [p.name for p in (root / "audio").iterdir()] == [CIDS[0]]
            assert not (root / "urlmap").exists() or not any((root / "urlmap").iterdir())
            # Without the pointer the URL is fetched again: no room for that copy.
            outcomes = Outcomes(Counter())
            outcomes.record(0, await api.get(f"/audio/{_id('url0')}"), 0, BLOB - 1)
            assert outcomes.seen == Counter(cache_full=1)
            _check_cache(root)
            (root / "filler").unlink()
            outcomes.record(0, await api.get(f"/audio/{_id('url0')}"), 0, BLOB - 1)
            outcomes.record(1, await api.get(f"/audio/{_id('url1')}"), 0, BLOB - 1)
            assert outcomes.seen == Counter(cache_full=1, served=2)
            _check_cache(root)
            assert len(list((root / "urlmap").iterdir())) == 2
