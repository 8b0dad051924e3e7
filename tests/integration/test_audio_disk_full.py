"""The blob cache's disk fills up: the blob directory on a small tmpfs, blobs with real CIDs
from a local "PDS" (a small getBlob server, which also serves them as ``audioUrl`` files,
with a ``Content-Length`` or without one), counting the requests it answers.

The cache evicts the least recently used audio to stay under its cap and to make room when
the disk fills up; a request whose blob cannot fit even so (the disk is full of other
files) gets a 503 ``cache_full`` JSON answer (never a 500, a 502 blaming the PDS, or a
crash), before the download when the blob's size is known; no partial file is left under
a cache key or in the scratch directory; catalog reads keep working. The first test runs
the real ``plyr-appview serve`` (two API workers on one directory); the others run the
app in process (the fetcher's test seam declares 127.0.0.2 public, for ``audioUrl``).
The tmpfs needs root (``mount``); without it those tests are skipped.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import subprocess
import tempfile
import threading
import time
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
CAP = 1536 * 1024  # two fit under the cap
PAGE = 4096  # the cache's count file (``.audio-bytes``) takes a page of the tmpfs
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


@dataclass
class BlobServer:
    """Where the blob server listens, and what it was asked: ``getBlob`` by CID, files by
    path (counted when the request arrives, before any body is sent)."""

    origin: str
    asked: Counter[str]

    def __str__(self) -> str:
        return self.origin


@pytest.fixture
def blob_server() -> Iterator[BlobServer]:
    """On 127.0.0.2: ``getBlob`` for :data:`BLOBS` by CID, ``/song<i>.mp3``, and
    ``/stream<i>.mp3`` (no ``Content-Length``: the size is unknown until the end)."""
    by_cid = dict(zip(CIDS, BLOBS, strict=True))
    asked: Counter[str] = Counter()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            cid = parse_qs(url.query).get("cid", [""])[0]
            body = by_cid.get(cid)
            asked[cid if url.path == "/xrpc/com.atproto.sync.getBlob" else url.path] += 1
            name = url.path.removesuffix(".mp3")
            if name.startswith(("/song", "/stream")):
                body = BLOBS[int(name.removeprefix("/song").removeprefix("/stream"))]
            elif url.path != "/xrpc/com.atproto.sync.getBlob":
                body = None
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "audio/mpeg")
            if not name.startswith("/stream"):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused after the headers: the client hung up

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield BlobServer(f"http://127.0.0.2:{server.server_address[1]}", asked)
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
    """Five ``audioBlob`` tracks (``full<i>``), five ``audioUrl`` ones (``url<i>``) and five
    ``audioUrl`` ones of unknown size (``stream<i>``)."""
    envelopes = [_blob_track(i) for i in range(len(BLOBS))]
    envelopes += [_envelope(f"url{i}", {"audioUrl": f"{pds}/song{i}.mp3"}) for i in range(5)]
    envelopes += [_envelope(f"stream{i}", {"audioUrl": f"{pds}/stream{i}.mp3"}) for i in range(5)]
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


def _check_cache(root: Path, cap: int | None = None) -> list[int]:
    """Every file under a cache key holds exactly its CID's bytes, under ``cap`` if given;
    no scratch file is left. The cached blobs' indexes."""
    cached = []
    for path in (root / "audio").glob("*"):
        assert path.name in CIDS, path
        assert path.read_bytes() == BLOBS[CIDS.index(path.name)], f"{path.name} is partial"
        cached.append(CIDS.index(path.name))
    assert cap is None or len(cached) * BLOB <= cap, cached
    assert list((root / ".incoming").iterdir()) == []
    return sorted(cached)


def _age(root: Path, i: int, seconds: float) -> None:
    """Blob ``i`` was last played ``seconds`` ago."""
    then = time.time() - seconds
    os.utime(root / "audio" / CIDS[i], (then, then))


def test_blob_cache_evicts_to_its_cap_and_refuses_what_cannot_fit(
    small_disk: Path, blob_server: BlobServer, tmp_path: Path
) -> None:
    with fresh_database() as url:
        asyncio.run(_project(url, blob_server.origin))
        app = AppviewProcess(
            {
                "DATABASE_URL": url,
                "PLYR_DATA_DIR": str(tmp_path),
                "PLYR_BLOB_DIR": str(small_disk),
                "PLYR_BLOB_CACHE_MAX_BYTES": str(CAP),
                "PLYR_API_WORKERS": "2",
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
                assert r.status_code == 200 and len(r.json()["tracks"]) == 15, r.text

            # The disk is full of something else: the record's blob size does not fit even
            # with the cache empty, so the answer comes before any download.
            filler = small_disk / "filler"
            filler.write_bytes(bytes(DISK - BLOB // 2))
            assert play(0) == "cache_full"
            assert blob_server.asked[CIDS[0]] == 0
            catalog_reads()
            filler.unlink()
            # One by one, each fetched once: the least recently played go, the cap holds.
            for i in range(5):
                assert play(i) == "served"
                assert len(_check_cache(small_disk, CAP)) <= 2
            assert _check_cache(small_disk) == [3, 4]
            assert [blob_server.asked[cid] for cid in CIDS] == [1] * 5
            # Played long ago, 3 before 4; 3 is played again: 4 is now the least recent.
            _age(small_disk, 4, 3600)
            _age(small_disk, 3, 7200)
            assert play(3, ranged=True) == "served"
            assert play(0) == "served"
            assert _check_cache(small_disk, CAP) == [0, 3]
            # All at once, with ranges, on both workers: bytes are right or the answer is a
            # 503 (three downloads at once fill this disk, and may evict the two cached
            # blobs before they are opened); nothing partial stays.
            with ThreadPoolExecutor(5) as workers:  # httpx.Client is thread-safe
                plays = [workers.submit(play, i, i % 2 == 0) for i in range(5)]
                catalog_reads()
                kinds = [p.result() for p in plays]
            assert "served" in kinds, kinds
            _check_cache(small_disk, CAP)
            # Then each again, one by one: all served.
            assert [play(i) for i in range(5)] == ["served"] * 5
            assert len(_check_cache(small_disk, CAP)) == 2
            catalog_reads()
            assert app.proc.poll() is None
            assert "Traceback" not in app.output, app.output[-3000:]
        finally:
            stack.close()
            code = app.stop()
        assert code == 0, app.output[-3000:]


@asynccontextmanager
async def _api(
    root: Path, url: str, pds: str, max_bytes: int | None = None, store: type = LocalBlobStore
) -> AsyncIterator[httpx.AsyncClient]:
    """The app in process on ``url``, its blob store in ``root``; a 500 stays a response."""
    pool = await open_pool(url)
    settings = Settings(trusted_hosts=("127.0.0.2",), audio_origins=(pds,))
    app = create_app(
        settings,
        pool=pool,
        blob_store=store(root, max_bytes),
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


async def test_no_inodes_left_evicts_or_is_a_503(blob_server: BlobServer, pg_url: str) -> None:
    # Five inodes: the root, the scratch directory, the count file, ``audio/`` and one blob.
    with _tmpfs("size=8m,nr_inodes=5") as root:
        await _project(pg_url, blob_server.origin)
        async with _api(root, pg_url, blob_server.origin) as api:
            outcomes = Outcomes(Counter())
            for i in range(2):
                r = await api.get(f"/audio/{_id(f'full{i}')}")
                outcomes.record(i, r, 0, BLOB - 1)
            # The second blob took the first one's inode.
            assert outcomes.seen == Counter(served=2)
            assert _check_cache(root) == [1]
            # Other files hold the inodes: a 503, without asking the PDS.
            (root / "audio" / CIDS[1]).unlink()
            (root / "filler").touch()
            outcomes.record(2, await api.get(f"/audio/{_id('full2')}"), 0, BLOB - 1)
            assert outcomes.seen == Counter(served=2, cache_full=1)
            assert blob_server.asked[CIDS[2]] == 0
            (root / "filler").unlink()
            outcomes.record(2, await api.get(f"/audio/{_id('full2')}"), 0, BLOB - 1)
            assert outcomes.seen == Counter(served=3, cache_full=1)
            assert _check_cache(root) == [2]


async def test_audio_url_is_served_when_only_its_pointer_finds_no_room(
    blob_server: BlobServer, pg_url: str
) -> None:
    with _tmpfs(f"size={DISK}") as root:
        await _project(pg_url, blob_server.origin)
        async with _api(root, pg_url, blob_server.origin) as api:
            # Leave room for exactly one blob (whole pages): it fits, its pointer does not.
            (root / "filler").write_bytes(bytes(DISK - BLOB - PAGE))
            r = await api.get(f"/audio/{_id('url0')}", headers={"Range": "bytes=5-9"})
            assert r.status_code == 206 and r.content == BLOBS[0][5:10], r.text
            assert _check_cache(root) == [0]
            assert not (root / "urlmap").exists() or not any((root / "urlmap").iterdir())
            # Without the pointer the URL is fetched again: its own old copy is evicted.
            outcomes = Outcomes(Counter())
            outcomes.record(0, await api.get(f"/audio/{_id('url0')}"), 0, BLOB - 1)
            assert outcomes.seen == Counter(served=1)
            assert blob_server.asked["/song0.mp3"] == 2
            # Another URL: the disk is full, evicting url0's copy makes room.
            outcomes.record(1, await api.get(f"/audio/{_id('url1')}"), 0, BLOB - 1)
            assert outcomes.seen == Counter(served=2)
            assert _check_cache(root) == [1]
            # Less than a blob free, nothing to evict: refused before the body is read.
            (root / "audio" / CIDS[1]).unlink()
            (root / "filler").unlink()
            (root / "filler").write_bytes(bytes(DISK - BLOB // 2 - PAGE))
            outcomes.record(2, await api.get(f"/audio/{_id('url2')}"), 0, BLOB - 1)
            assert outcomes.seen == Counter(served=2, cache_full=1)
            assert blob_server.asked["/song2.mp3"] == 1
            _check_cache(root)
            (root / "filler").unlink()
            for i in range(3):
                outcomes.record(i, await api.get(f"/audio/{_id(f'url{i}')}"), 0, BLOB - 1)
            assert outcomes.seen == Counter(served=5, cache_full=1)
            assert len(list((root / "urlmap").iterdir())) == 3
            # A pointer whose audio was evicted: the URL is fetched again, not a 500.
            asked = blob_server.asked["/song2.mp3"]
            (root / "audio" / CIDS[2]).unlink()
            outcomes.record(2, await api.get(f"/audio/{_id('url2')}"), 0, BLOB - 1)
            assert blob_server.asked["/song2.mp3"] == asked + 1
            assert outcomes.seen == Counter(served=6, cache_full=1)
            _check_cache(root)


async def test_a_write_out_of_room_evicts_and_retries_once(
    blob_server: BlobServer, pg_url: str
) -> None:
    # Sizes unknown until the end (no Content-Length), a cap above the disk: only ENOSPC
    # in the middle of a download tells that room is needed.
    with _tmpfs(f"size={DISK}") as root:
        await _project(pg_url, blob_server.origin)
        async with _api(root, pg_url, blob_server.origin, max_bytes=10 * DISK) as api:
            outcomes = Outcomes(Counter())
            for i in range(5):
                outcomes.record(i, await api.get(f"/audio/{_id(f'stream{i}')}"), 0, BLOB - 1)
            assert outcomes.seen == Counter(served=5)
            assert _check_cache(root) == [2, 3, 4]  # 0, then 1, evicted mid-download
            assert [blob_server.asked[f"/stream{i}.mp3"] for i in range(5)] == [1] * 5
            # The disk full of something else: nothing to evict, a 503.
            for path in (root / "audio").iterdir():
                path.unlink()
            (root / "filler").write_bytes(bytes(DISK - BLOB // 2))
            outcomes.record(0, await api.get(f"/audio/{_id('stream0')}"), 0, BLOB - 1)
            assert outcomes.seen == Counter(served=5, cache_full=1)
            assert _check_cache(root) == []


async def test_audio_larger_than_the_cap_is_refused_before_the_download(
    blob_server: BlobServer, pg_url: str, tmp_path: Path
) -> None:
    # A plain directory: the cap, not the disk, refuses (no tmpfs needed).
    await _project(pg_url, blob_server.origin)
    async with _api(tmp_path, pg_url, blob_server.origin, max_bytes=BLOB - 1) as api:
        outcomes = Outcomes(Counter())
        outcomes.record(0, await api.get(f"/audio/{_id('full0')}"), 0, BLOB - 1)
        assert blob_server.asked[CIDS[0]] == 0  # the record's blob size said so
        outcomes.record(1, await api.get(f"/audio/{_id('url1')}"), 0, BLOB - 1)
        assert blob_server.asked["/song1.mp3"] == 1  # its Content-Length said so
        assert outcomes.seen == Counter(cache_full=2)
        assert _check_cache(tmp_path) == []


class _EvictedOnRead(LocalBlobStore):
    """Another worker evicts each object just after it was found, before it is opened: a
    race of a few microseconds, so the eviction is done here, by the store itself."""

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        if not getattr(self, "evicted", False):
            self.evicted = True
            (self.root / key).unlink()
        return await super().read(key, start, end)


async def test_audio_evicted_between_found_and_opened_is_fetched_again(
    blob_server: BlobServer, pg_url: str, tmp_path: Path
) -> None:
    await _project(pg_url, blob_server.origin)
    async with _api(tmp_path, pg_url, blob_server.origin, store=_EvictedOnRead) as api:
        r = await api.get(f"/audio/{_id('full0')}", headers={"Range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == BLOBS[0][10:20], r.text
        assert blob_server.asked[CIDS[0]] == 2
        assert _check_cache(tmp_path) == [0]
