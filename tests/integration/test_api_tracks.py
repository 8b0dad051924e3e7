"""The tracks API over read models projected from real records."""

from __future__ import annotations

import httpx
import pytest

from api.app import create_app
from kernel.config import Settings
from kernel.db import open_pool
from kernel.envelope import Envelope
from kernel.log import Message
from projectors.base import track_id
from projectors.catalog import CatalogProjector
from projectors.moderation import ModerationProjector
from projectors.runner import apply_batch, load_offset
from testkit.records import track_record

ALICE = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
BOB = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"

# plyr.fm's TrackResponse fields (backend/schemas.py).
TRACK_RESPONSE_FIELDS = {
    "id", "title", "artist", "artist_handle", "artist_did", "artist_avatar_url", "file_id",
    "file_type", "features", "r2_url", "atproto_record_uri", "atproto_record_cid",
    "atproto_record_url", "play_count", "created_at", "image_url", "thumbnail_url", "is_liked",
    "like_count", "comment_count", "album", "tags", "copyright_flagged", "copyright_match",
    "support_gate", "gated", "downloadable", "download_policy", "artist_support_url",
    "copyright_song_uri", "copyright_recording_uri", "original_file_id", "original_file_type",
    "description", "audio_storage", "pds_blob_cid", "is_optimizing", "visibility", "unlisted",
    "self_labels", "operator_labels", "labels",
}  # fmt: skip


def created(did: str, rkey: str, title: str, day: int, **extra: object) -> Envelope:
    return Envelope(
        kind="record.created",
        did=did,
        source="test",
        time="t",
        rev=f"3l{day:02d}",
        collection="fm.plyr.track",
        rkey=rkey,
        cid=f"bafy{rkey}",
        record=track_record(title, createdAt=f"2026-11-{day:02d}T10:00:00.000Z", **extra),
    )


@pytest.fixture
async def client(pg_url):
    pool = await open_pool(pg_url)
    envelopes = [
        Envelope(kind="identity.changed", did=ALICE, source="t", time="t", handle="alice.test"),
        *[created(ALICE, f"a{i}", f"Alice {i}", i + 1) for i in range(5)],
        created(
            BOB,
            "b1",
            "Bob one",
            10,
            album="Bob's Album",
            duration=200,
            features=[{"did": ALICE, "handle": "alice.test"}],
            labels={"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "sexual"}]},
            supportGate={"type": "any"},
        ),
    ]
    messages = [Message("plyr.repo", 0, i, e.key, e.to_bytes(), 0) for i, e in enumerate(envelopes)]
    for projector in (CatalogProjector(), ModerationProjector([])):
        start = await load_offset(pool, projector.name, "plyr.repo", 0)
        await apply_batch(pool, projector, messages, start)
    app = create_app(Settings(), pool=pool)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c,
    ):
        yield c
    await pool.close()


async def test_health(client):
    r = await client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


async def test_list_is_newest_first_with_cursor_pages(client):
    # "Bob one" carries an adult self-label: not in the discovery list (plyr's policy)
    r = await client.get("/tracks/", params={"limit": 3})
    body = r.json()
    assert [t["title"] for t in body["tracks"]] == ["Alice 4", "Alice 3", "Alice 2"]
    assert body["has_more"] is True
    r2 = await client.get("/tracks/", params={"limit": 3, "cursor": body["next_cursor"]})
    body2 = r2.json()
    assert [t["title"] for t in body2["tracks"]] == ["Alice 1", "Alice 0"]
    assert body2["has_more"] is False and body2["next_cursor"] is None


async def test_list_filters_by_artist(client):
    body = (await client.get("/tracks/", params={"artist_did": BOB})).json()
    assert [t["title"] for t in body["tracks"]] == ["Bob one"]


async def test_detail_has_plyr_track_response_shape(client):
    uri = f"at://{BOB}/fm.plyr.track/b1"
    r = await client.get(f"/tracks/{track_id(uri)}")
    assert r.status_code == 200
    t = r.json()
    assert TRACK_RESPONSE_FIELDS <= set(t)
    assert t["id"] == track_id(uri)
    assert t["atproto_record_uri"] == uri
    assert t["artist_did"] == BOB and t["artist"] == "Some Artist"
    assert t["features"][0]["did"] == ALICE
    assert t["self_labels"] == ["sexual"]
    assert t["support_gate"] == {"type": "any"} and t["gated"] is True
    assert t["created_at"] == "2026-11-10T10:00:00Z"
    assert t["like_count"] == 0 and t["tags"] == []


async def test_detail_carries_handle_from_identity_events(client):
    t = (await client.get(f"/tracks/{track_id(f'at://{ALICE}/fm.plyr.track/a0')}")).json()
    assert t["artist_handle"] == "alice.test"


async def test_errors_use_one_envelope(client):
    r = await client.get("/tracks/12345")
    assert r.status_code == 404 and r.json() == {"detail": "track not found", "error": "not_found"}
    r = await client.get("/tracks/", params={"cursor": "garbage!"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_cursor"
    r = await client.get("/tracks/", params={"limit": 1000})
    assert r.status_code == 422 and "limit" in r.json()["detail"]
    r = await client.get("/tracks/not-a-number")
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"


async def test_openapi_docs(client):
    assert (await client.get("/docs")).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    assert "/tracks/" in spec["paths"] and "/tracks/{track_id}" in spec["paths"]
