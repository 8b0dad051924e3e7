"""Audio end to end: a real PDS blob, served with ranges from the local cache and via S3.

The blob is uploaded to the local PDS (``uploadBlob``) and referenced by a real
``fm.plyr.track`` record; the record is projected by the catalog projector. The API
resolves the DID document on the test PLC, fetches ``getBlob`` once, verifies it against
its CID and caches it. The SSRF cases use ``audioUrl`` records aimed at loopback, private
and metadata addresses; a fake "public" host on 127.0.0.2 (declared public through the
fetcher's test seam) serves good audio and a redirect to loopback.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from api.app import create_app
from api.audio import raw_cid
from api.blobstore import LocalBlobStore, S3BlobStore
from kernel.config import Settings
from kernel.db import open_pool
from kernel.envelope import Envelope
from kernel.log import Message
from projectors.base import track_id
from projectors.catalog import CatalogProjector
from projectors.moderation import ModerationProjector
from projectors.runner import apply_batch, load_offset
from testkit.brokers import create_database, drop_database
from testkit.car import block
from testkit.pds import LocalPds
from tests.e2e.atp_client import AtpClient

pytestmark = pytest.mark.e2e

# A small well-formed MP3 (empty ID3v2.4 tag + MPEG-1 Layer III frames), as the harness uses.
MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + (b"\xff\xfb\x90\x64" + bytes(413)) * 60
FAKE_DID = "did:plc:ffffffffffffffffffffffff"  # its "PDS" serves tampered bytes


@dataclass
class FakeHost:
    """A tiny HTTP server; ``routes`` maps a path to (status, headers, body); hits recorded."""

    host: str
    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def origin(self) -> str:
        assert self.server is not None
        return f"http://{self.host}:{self.server.server_address[1]}"

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.hits.append(self.path)
                status, headers, body = fake.routes.get(self.path.split("?")[0], (404, {}, b"nope"))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((self.host, 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeHost, FakeHost]]:
    """(loopback secret host on 127.0.0.1, fake public host on 127.0.0.2)."""
    secret, public = FakeHost("127.0.0.1"), FakeHost("127.0.0.2")
    secret.start()
    public.start()
    secret.routes["/secret"] = (200, {}, b"internal secret")
    secret.routes["/xrpc/com.atproto.sync.getBlob"] = (200, {}, MP3[:-1] + b"\x01")  # tampered
    public.routes["/song.mp3"] = (200, {"Content-Type": "audio/mpeg"}, MP3)
    public.routes["/redirect"] = (302, {"Location": f"{secret.origin}/secret"}, b"")
    public.routes["/redirect-localhost"] = (
        302,
        {"Location": f"http://localhost:{secret.origin.rsplit(':', 1)[1]}/secret"},
        b"",
    )
    try:
        yield secret, public
    finally:
        secret.stop()
        public.stop()


@dataclass
class World:
    url: str
    blob_track: int
    blob_cid: str
    tampered: int
    url_tracks: dict[str, int]
    pds: LocalPds


def _track(did: str, rkey: str, record: dict, rev: str = "3l00") -> Envelope:
    return Envelope(
        kind="record.created", did=did, source="e2e", time="2026-11-20T00:00:00Z", rev=rev,
        collection="fm.plyr.track", rkey=rkey, cid=block(record)[0].encode(), record=record,
    )  # fmt: skip


def _record(title: str, **extra: object) -> dict:
    return {"$type": "fm.plyr.track", "title": title, "artist": "E2E", "fileType": "mp3",
            "createdAt": "2026-11-20T00:00:00.000Z", **extra}  # fmt: skip


@pytest.fixture(scope="module")
async def world(pds: LocalPds, fakes: tuple[FakeHost, FakeHost]) -> AsyncIterator[World]:
    secret, public = fakes
    async with AtpClient.for_pds(pds) as atp:
        artist = await atp.create_account("audio")
        blob = await atp.upload_blob(artist, MP3, "audio/mpeg")
        record = _record("Real Blob", audioBlob=blob, duration=4)
        track_uri, track_cid = await atp.create_record(artist, "fm.plyr.track", record)
    rkey = track_uri.rsplit("/", 1)[1]
    blob_cid = blob["ref"]["$link"]
    fake_blob = {"$type": "blob", "ref": {"$link": blob_cid}, "mimeType": "audio/mpeg",
                 "size": len(MP3)}  # fmt: skip
    url_targets = {
        "loopback": f"{secret.origin}/secret",
        "private": "http://10.0.0.1/secret",
        "metadata": "http://169.254.169.254/latest/meta-data/",
        "ipv6-loopback": f"http://[::1]:{secret.origin.rsplit(':', 1)[1]}/secret",
        "localhost": f"http://localhost:{secret.origin.rsplit(':', 1)[1]}/secret",
        "redirect": f"{public.origin}/redirect",
        "redirect-localhost": f"{public.origin}/redirect-localhost",
        "untrusted-origin": "http://127.0.0.3:9/song.mp3",
        "good": f"{public.origin}/song.mp3",
    }
    envelopes = [
        Envelope(
            kind="identity.changed", did=artist.did, source="e2e", time="t", handle=artist.handle
        ),
        Envelope(
            kind="record.created",
            did=artist.did,
            source="e2e",
            time="t",
            rev="3l01",
            collection="fm.plyr.track",
            rkey=rkey,
            cid=track_cid,
            record=record,
        ),
        _track(FAKE_DID, "tampered", _record("Tampered", audioBlob=fake_blob)),
        *[
            _track(FAKE_DID, name.replace("-", ""), _record(name, audioUrl=target))
            for name, target in url_targets.items()
        ],
    ]
    name, url = await asyncio.to_thread(create_database)
    pool = await open_pool(url)
    try:
        messages = [Message("plyr.repo", 0, i, e.key, e.to_bytes(), 0)
                    for i, e in enumerate(envelopes)]  # fmt: skip
        for projector in (CatalogProjector(), ModerationProjector([])):
            start = await load_offset(pool, projector.name, "plyr.repo", 0)
            await apply_batch(pool, projector, messages, start)
        # DIRECT SQL into ingest's repo_state: where the fake DID's "PDS" lives, as ingest
        # records it for the repos it follows (no real PDS would serve tampered bytes).
        async with pool.connection() as conn:
            await conn.execute(
                "INSERT INTO repo_state (did, pds_url) VALUES (%s, %s)"
                " ON CONFLICT (did) DO UPDATE SET pds_url = excluded.pds_url",
                (FAKE_DID, secret.origin),
            )
    finally:
        await pool.close()
    try:
        yield World(
            url=url,
            blob_track=track_id(track_uri),
            blob_cid=blob_cid,
            tampered=track_id(f"at://{FAKE_DID}/fm.plyr.track/tampered"),
            url_tracks={
                n: track_id(f"at://{FAKE_DID}/fm.plyr.track/{n.replace('-', '')}")
                for n in url_targets
            },
            pds=pds,
        )
    finally:
        await asyncio.to_thread(drop_database, name)


def _settings(world: World, public: FakeHost, secret: FakeHost, **extra: object) -> Settings:
    hosts = {urlsplit(world.pds.plc_url).hostname, urlsplit(world.pds.pds_url).hostname}
    hosts |= {"127.0.0.1", "localhost"}  # the PDS/PLC of the tests, and the fake DID's "PDS"
    port = secret.origin.rsplit(":", 1)[1]
    return Settings(
        plc_url=world.pds.plc_url,
        trusted_hosts=tuple(sorted(h for h in hosts if h)),
        # Every SSRF target is an allowed origin, so the address guard is what refuses them.
        audio_origins=(
            public.origin,
            secret.origin,
            "http://10.0.0.1",
            "http://169.254.169.254",
            f"http://[::1]:{port}",
            f"http://localhost:{port}",
        ),
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
async def local_api(
    world: World, fakes: tuple[FakeHost, FakeHost], tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    secret, public = fakes
    pool = await open_pool(world.url)
    app = create_app(
        _settings(world, public, secret),
        pool=pool,
        blob_store=LocalBlobStore(tmp_path / "blobs"),
        fetcher_overrides={"public_overrides": frozenset({"127.0.0.2"})},
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c,
    ):
        yield c
    await pool.close()


async def test_full_get_verifies_and_caches(local_api, world, tmp_path):
    r = await local_api.get(f"/audio/{world.blob_track}", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.content == MP3
    assert r.headers["content-type"] == "audio/mpeg"
    assert r.headers["etag"] == f'"{world.blob_cid}"'
    assert r.headers["accept-ranges"] == "bytes"
    assert (
        "immutable" in r.headers["cache-control"]
        and "max-age=31536000" in r.headers["cache-control"]
    )
    assert "content-encoding" not in r.headers
    assert (tmp_path / "blobs" / "audio" / world.blob_cid).read_bytes() == MP3


async def test_ranges(local_api, world):
    path = f"/audio/{world.blob_track}"
    size = len(MP3)
    r = await local_api.get(path, headers={"Range": "bytes=0-1"})
    assert r.status_code == 206 and r.content == MP3[:2]
    assert r.headers["content-range"] == f"bytes 0-1/{size}"
    assert r.headers["content-length"] == "2"
    r = await local_api.get(path, headers={"Range": "bytes=-100"})
    assert r.status_code == 206 and r.content == MP3[-100:]
    r = await local_api.get(path, headers={"Range": "bytes=1000-"})
    assert r.status_code == 206 and r.content == MP3[1000:]
    assert r.headers["content-range"] == f"bytes 1000-{size - 1}/{size}"
    r = await local_api.get(path, headers={"Range": f"bytes={size}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}"
    # If-Range with a stale validator: the whole body; with the current one: the range
    r = await local_api.get(path, headers={"Range": "bytes=0-1", "If-Range": '"other"'})
    assert r.status_code == 200 and r.content == MP3
    r = await local_api.get(path, headers={"Range": "bytes=0-1", "If-Range": f'"{world.blob_cid}"'})
    assert r.status_code == 206 and r.content == MP3[:2]


async def test_head_and_conditional(local_api, world):
    path = f"/audio/{world.blob_track}"
    r = await local_api.head(path)
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-length"] == str(len(MP3))
    assert r.headers["etag"] == f'"{world.blob_cid}"'
    r = await local_api.get(path, headers={"If-None-Match": f'"{world.blob_cid}"'})
    assert r.status_code == 304 and r.content == b""
    url = (await local_api.get(f"{path}/url")).json()
    assert url == {"url": f"http://api{path}", "file_id": str(world.blob_track),
                   "file_type": "mp3"}  # fmt: skip


async def test_tampered_blob_is_rejected(local_api, world, tmp_path):
    r = await local_api.get(f"/audio/{world.tampered}")
    assert r.status_code == 502 and "CID" in r.json()["detail"]
    assert not (tmp_path / "blobs" / "audio" / world.blob_cid).exists()


@pytest.mark.parametrize(
    "name",
    [
        "loopback",
        "private",
        "metadata",
        "ipv6-loopback",
        "localhost",
        "redirect",
        "redirect-localhost",
        "untrusted-origin",
    ],
)
async def test_ssrf_attempts_are_refused(local_api, world, fakes, name):
    secret, _ = fakes
    before = list(secret.hits)
    r = await local_api.get(f"/audio/{world.url_tracks[name]}")
    assert r.status_code == 502, r.text
    assert r.json()["error"] == "upstream_unavailable"
    assert "refusing" in r.json()["detail"]  # the guard said no; not a network failure
    assert [h for h in secret.hits if h not in before] == []  # nothing reached loopback


async def test_audio_url_from_trusted_origin(local_api, world):
    r = await local_api.get(f"/audio/{world.url_tracks['good']}", headers={"Range": "bytes=0-1"})
    assert r.status_code == 206 and r.content == MP3[:2]
    assert r.headers["etag"] == f'"{raw_cid(hashlib.sha256(MP3).digest())}"'


async def test_unknown_audio_is_404(local_api):
    assert (await local_api.get("/audio/12345")).status_code == 404
    assert (await local_api.get("/audio/abc")).status_code == 404


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


async def test_s3_mode_redirects_to_presigned_ranges(world, fakes, moto, tmp_path, monkeypatch):
    secret, public = fakes
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    store = S3BlobStore("audio", tmp_path / "in", endpoint_url=moto, presign_seconds=600)
    store.client.create_bucket(Bucket="audio")
    pool = await open_pool(world.url)
    app = create_app(_settings(world, public, secret), pool=pool, blob_store=store)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c,
            httpx.AsyncClient() as browser,
        ):
            path = f"/audio/{world.blob_track}"
            r = await c.get(path)
            assert r.status_code == 307
            location = r.headers["location"]
            assert location.startswith(moto) and "getBlob" not in location
            full = await browser.get(location)
            assert full.status_code == 200 and full.content == MP3
            assert full.headers["content-type"] == "audio/mpeg"
            part = await browser.get(location, headers={"Range": "bytes=0-1"})
            assert part.status_code == 206 and part.content == MP3[:2]
            head = await c.head(path)
            assert head.status_code == 200 and head.headers["etag"] == f'"{world.blob_cid}"'
            assert head.headers["content-length"] == str(len(MP3))
            r = await c.get(path, headers={"If-None-Match": f'"{world.blob_cid}"'})
            assert r.status_code == 304
            got = store.client.get_object(Bucket="audio", Key=f"audio/{world.blob_cid}")
            assert got["Body"].read() == MP3
    finally:
        await pool.close()
