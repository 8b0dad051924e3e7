"""Every public route, shapes and visibility, over read models projected from real records.

All data goes through the real projectors (catalog + moderation) via ``apply_batch``.
XRPC responses are validated against their lexicons.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from api.app import create_app
from kernel.config import Settings
from kernel.db import open_pool
from kernel.envelope import Envelope
from kernel.log import Message
from lexicons import validate_query_output
from projectors.base import track_id
from projectors.catalog import CatalogProjector
from projectors.moderation import ModerationProjector
from projectors.runner import apply_batch, load_offset
from projectors.search import SearchProjector
from testkit.car import block
from testkit.records import (
    bsky_profile_record,
    comment_record,
    like_record,
    list_record,
    plyr_profile_record,
    track_record,
)

ALICE = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
BOB = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"
CAROL = "did:plc:cccccccccccccccccccccccc"  # deactivated later
DAN = "did:plc:dddddddddddddddddddddddd"  # a listener
OPERATOR = "did:plc:oooooooooooooooooooooooo"
NS = "fm.plyr.appview"


def uri(did: str, collection: str, rkey: str) -> str:
    return f"at://{did}/{collection}/{rkey}"


def rec(did: str, collection: str, rkey: str, record: dict, rev: str = "3l00") -> Envelope:
    return Envelope(
        kind="record.created", did=did, source="test", time="2026-11-20T00:00:00Z", rev=rev,
        collection=collection, rkey=rkey, cid=block(record)[0].encode(), record=record,
    )  # fmt: skip


def ident(did: str, handle: str) -> Envelope:
    return Envelope(kind="identity.changed", did=did, source="t", time="t", handle=handle)


def track(did: str, rkey: str, title: str, day: int, **extra: object) -> Envelope:
    return rec(did, "fm.plyr.track", rkey,
               track_record(title, createdAt=f"2026-11-{day:02d}T10:00:00.000Z", **extra),
               rev=f"3l{day:02d}")  # fmt: skip


def label(subject: str, val: str) -> Envelope:
    return Envelope(
        kind="label.applied", did=OPERATOR, source="t", time="t",
        label={"src": OPERATOR, "uri": subject, "val": val, "cts": "2026-11-20T00:00:00.000Z"},
    )  # fmt: skip


A1 = uri(ALICE, "fm.plyr.track", "a1")
A2 = uri(ALICE, "fm.plyr.track", "a2")
A3 = uri(ALICE, "fm.plyr.track", "a3")
B1 = uri(BOB, "fm.plyr.track", "b1")  # adult self-label
B2 = uri(BOB, "fm.plyr.track", "b2")  # taken down by the operator
B3 = uri(BOB, "fm.plyr.track", "b3")  # copyright self-label
C1 = uri(CAROL, "fm.plyr.track", "c1")  # account deactivated
PLAYLIST = uri(DAN, "fm.plyr.list", "p1")
ALBUM_LIST = uri(ALICE, "fm.plyr.list", "al1")

REPO_EVENTS = [
    ident(ALICE, "alice.test"),
    ident(BOB, "bob.test"),
    ident(CAROL, "carol.test"),
    ident(DAN, "dan.test"),
    rec(ALICE, "app.bsky.actor.profile", "self", bsky_profile_record("Alice A")),
    rec(ALICE, "fm.plyr.actor.profile", "self", plyr_profile_record("I make songs")),
    track(ALICE, "a1", "Morning Light", 1, album="First Album", duration=180,
          imageUrl="https://images.example/a1.jpg"),
    track(ALICE, "a2", "Evening Rain", 2, album="First Album", duration=200,
          features=[{"did": BOB, "handle": "bob.test"}]),
    track(ALICE, "a3", "Night Drive", 3, audioUrl="https://audio.example/a3.mp3"),
    track(BOB, "b1", "Adult Song", 4,
          labels={"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "porn"}]}),
    track(BOB, "b2", "Taken Down", 5),
    track(BOB, "b3", "Copied Song", 6, supportGate={"type": "any"},
          labels={"$type": "com.atproto.label.defs#selfLabels",
                  "values": [{"val": "copyright-violation"}]}),
    track(CAROL, "c1", "Carol Song", 7),
    rec(DAN, "fm.plyr.like", "l1", like_record(A1, createdAt="2026-11-10T00:00:00.000Z")),
    rec(DAN, "fm.plyr.like", "l2", like_record(A2, createdAt="2026-11-10T01:00:00.000Z")),
    rec(BOB, "fm.plyr.like", "l3", like_record(A1, createdAt="2026-11-10T02:00:00.000Z")),
    rec(DAN, "fm.plyr.like", "l4", like_record(B1, createdAt="2026-11-10T03:00:00.000Z")),
    rec(DAN, "fm.plyr.like", "l5", like_record(B2, createdAt="2026-11-10T04:00:00.000Z")),
    rec(DAN, "fm.plyr.like", "l6", like_record(C1, createdAt="2026-11-10T05:00:00.000Z")),
    rec(DAN, "fm.plyr.comment", "c1", comment_record(A1, "lovely", timestampMs=5000)),
    rec(BOB, "fm.plyr.comment", "c2", comment_record(A1, "first!", timestampMs=1000)),
    rec(DAN, "fm.plyr.list", "p1", list_record([A2, B2, A1, C1], name="Dan's mix")),
    rec(ALICE, "fm.plyr.list", "al1",
        list_record([A2, A1], name="First Album", list_type="album")),
    Envelope(kind="account.changed", did=CAROL, source="t", time="t", active=False,
             status="deactivated"),
]  # fmt: skip


async def project(pool: AsyncConnectionPool, *, search: bool = True) -> None:
    """Project :data:`REPO_EVENTS` and the operator's takedown of ``B2`` into ``pool``."""
    catalog = CatalogProjector()
    moderation = ModerationProjector([OPERATOR])
    repo = [Message("plyr.repo", 0, i, e.key, e.to_bytes(), 0) for i, e in enumerate(REPO_EVENTS)]
    takedown = label(B2, "!takedown")
    labels = [Message("plyr.labels", 0, 0, takedown.key, takedown.to_bytes(), 0)]
    runs: list[tuple[Any, str, list[Message]]] = [
        (catalog, "plyr.repo", repo),
        (moderation, "plyr.repo", repo),
        (moderation, "plyr.labels", labels),
    ]
    if search:
        runs.append((SearchProjector(), "plyr.repo", repo))
    for projector, topic, messages in runs:
        start = await load_offset(pool, projector.name, topic, 0)
        await apply_batch(pool, projector, messages, start)


@pytest.fixture
async def client(pg_url):
    pool = await open_pool(pg_url)
    await project(pool)
    app = create_app(Settings(cors_origins=("https://plyr.example",)), pool=pool)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c,
    ):
        yield c
    await pool.close()


async def xrpc(client: httpx.AsyncClient, name: str, **params: str | int) -> dict:
    r = await client.get(f"/xrpc/{NS}.{name}", params=params)
    assert r.status_code == 200, r.text
    body: dict = r.json()
    validate_query_output(f"{NS}.{name}", body)
    return body


def titles(tracks: list[dict]) -> list[str]:
    return [t["title"] for t in tracks]


async def test_discovery_list_hides_labelled_taken_down_and_deactivated(client):
    body = (await client.get("/tracks/")).json()
    assert titles(body["tracks"]) == ["Night Drive", "Evening Rain", "Morning Light"]
    assert body == {**body, "has_more": False, "next_cursor": None}


async def test_artist_listing_shows_adult_but_not_taken_down_or_copyright(client):
    body = (await client.get("/tracks/", params={"artist_did": BOB})).json()
    assert titles(body["tracks"]) == ["Adult Song"]


async def test_cursor_pages_are_disjoint_and_complete(client):
    first = (await client.get("/tracks/", params={"limit": 2})).json()
    assert first["has_more"] is True
    second = await client.get("/tracks/", params={"limit": 2, "cursor": first["next_cursor"]})
    assert titles(first["tracks"]) + titles(second.json()["tracks"]) == [
        "Night Drive", "Evening Rain", "Morning Light"
    ]  # fmt: skip


async def test_tags_filter_matches_nothing(client):
    body = (await client.get("/tracks/", params={"tags": "ambient"})).json()
    assert body["tracks"] == []


async def test_track_detail_shape(client):
    t = (await client.get(f"/tracks/{track_id(A2)}")).json()
    assert t["artist"] == "Alice A" and t["artist_handle"] == "alice.test"
    assert t["features"] == [
        {"did": BOB, "handle": "bob.test", "display_name": "bob.test", "avatar_url": None}
    ]
    assert t["album"]["title"] == "First Album" and t["album_title"] == "First Album"
    assert t["like_count"] == 1 and t["r2_url"] == f"http://api/audio/{track_id(A2)}"
    by_uri = (await client.get("/tracks/by-uri", params={"uri": A2})).json()
    assert by_uri == t


async def test_detail_permalink_rules(client):
    # adult and copyright: the permalink resolves; takedown and deactivation: 410
    assert (await client.get(f"/tracks/{track_id(B1)}")).status_code == 200
    assert (await client.get(f"/tracks/{track_id(B3)}")).status_code == 200
    for gone in (B2, C1):
        r = await client.get(f"/tracks/{track_id(gone)}")
        assert r.status_code == 410 and r.json()["error"] == "gone"
    assert (await client.get("/tracks/999")).status_code == 404


async def test_top_tracks_by_likes(client):
    top = (await client.get("/tracks/top", params={"period": "all_time"})).json()
    assert titles(top) == ["Morning Light", "Evening Rain"]
    assert top[0]["like_count"] == 2
    assert (await client.get("/tracks/top", params={"period": "day"})).json() == []
    assert (await client.get("/tracks/top", params={"period": "year"})).status_code == 422


async def test_likes_and_comments(client):
    likes = (await client.get(f"/tracks/{track_id(A1)}/likes")).json()
    assert likes["count"] == 2
    assert [u["handle"] for u in likes["users"]] == ["bob.test", "dan.test"]
    assert set(likes["users"][0]) == {"did", "handle", "display_name", "avatar_url", "liked_at"}
    comments = (await client.get(f"/tracks/{track_id(A1)}/comments")).json()
    assert comments["count"] == 2 and comments["comments_enabled"] is True
    assert [c["text"] for c in comments["comments"]] == ["first!", "lovely"]
    assert (await client.get(f"/tracks/{track_id(B2)}/likes")).status_code == 410


async def test_artists(client):
    a = (await client.get(f"/artists/{ALICE}")).json()
    assert a["handle"] == "alice.test" and a["display_name"] == "Alice A"
    assert a["bio"] == "I make songs" and a["show_liked_on_profile"] is False
    assert (await client.get("/artists/by-handle/ALICE.test")).json() == a
    assert (await client.get(f"/artists/{CAROL}")).status_code == 404
    batch = (await client.post("/artists/batch", json=[ALICE, BOB, CAROL, "did:plc:x"])).json()
    assert set(batch) == {ALICE, BOB}
    stats = (await client.get(f"/artists/{ALICE}/analytics")).json()
    assert stats["total_items"] == 3 and stats["total_duration_seconds"] == 380
    assert stats["top_liked"] == {"id": track_id(A1), "title": "Morning Light", "play_count": 2}


async def test_user_likes(client):
    body = (await client.get("/users/dan.test/likes")).json()
    assert body["user"]["did"] == DAN
    assert titles(body["tracks"]) == ["Adult Song", "Evening Rain", "Morning Light"]
    assert (await client.get("/users/nobody.test/likes")).status_code == 404


async def test_albums(client):
    listing = (await client.get("/albums/")).json()["albums"]
    assert [(a["title"], a["artist_handle"], a["track_count"]) for a in listing] == [
        ("First Album", "alice.test", 2)
    ]
    mine = (await client.get("/albums/alice.test")).json()["albums"]
    slug = mine[0]["slug"]
    page = (await client.get(f"/albums/alice.test/{slug}")).json()
    assert page["metadata"]["list_uri"] == ALBUM_LIST
    assert titles(page["tracks"]) == ["Evening Rain", "Morning Light"]  # the record's order
    assert (await client.get("/albums/alice.test/nope")).status_code == 404


async def test_playlists(client):
    resolved = (await client.get("/lists/by-uri", params={"uri": PLAYLIST})).json()
    assert resolved["type"] == "playlist"
    pid = resolved["id"]
    assert str(uuid.UUID(pid)) == pid
    page = (await client.get(f"/lists/playlists/{pid}")).json()
    assert page["name"] == "Dan's mix" and page["owner_handle"] == "dan.test"
    assert titles(page["tracks"]) == ["Evening Rain", "Morning Light"]  # B2, C1 hidden
    meta = (await client.get(f"/lists/playlists/{pid}/meta")).json()
    assert "tracks" not in meta and meta["id"] == pid
    assert (await client.get("/lists/playlists/by-uri", params={"uri": PLAYLIST})).json() == page
    mine = (await client.get(f"/lists/playlists/by-artist/{DAN}")).json()
    assert [p["id"] for p in mine] == [pid]
    album = (await client.get("/lists/by-uri", params={"uri": ALBUM_LIST})).json()
    assert album["type"] == "album" and album["handle"] == "alice.test"
    assert (await client.get(f"/lists/playlists/{uuid.uuid4()}")).status_code == 404


async def test_activity_feed(client):
    body = (await client.get("/activity/", params={"limit": 100})).json()
    types = {e["type"] for e in body["events"]}
    assert {"like", "track", "comment", "playlist_create", "album_release"} <= types
    shown = {e["track"]["title"] for e in body["events"] if e["track"]}
    assert shown.isdisjoint({"Taken Down", "Carol Song", "Adult Song"})
    page = (await client.get("/activity/", params={"limit": 3})).json()
    rest = await client.get("/activity/", params={"limit": 100, "cursor": page["next_cursor"]})
    assert len(page["events"]) + len(rest.json()["events"]) <= len(body["events"])
    hist = (await client.get("/activity/histogram", params={"days": 3})).json()
    assert len(hist["buckets"]) == 3 and set(hist["buckets"][0]) == {"date", "count"}


async def test_stats_sitemap_oembed_config(client):
    stats = (await client.get("/stats")).json()
    assert stats["total_tracks"] == 5 and stats["total_artists"] == 2  # B2 and C1 hidden
    site = (await client.get("/sitemap-data")).json()
    assert {t["id"] for t in site["tracks"]} == {track_id(u) for u in (A1, A2, A3)}
    assert [a["handle"] for a in site["artists"]] == ["alice.test", "bob.test"]  # not carol
    o = await client.get("/oembed", params={"url": f"https://plyr.fm/track/{track_id(A1)}"})
    assert o.json()["type"] == "rich" and "embed/track" in o.json()["html"]
    assert (await client.get("/oembed", params={"url": "https://x/other"})).status_code == 404
    config = (await client.get("/config")).json()
    assert config["default_hidden_tags"] == ["ai", "ai-slop", "suno"]


async def test_anonymous_answers(client):
    for path in ("/auth/me", "/preferences/", "/jams/active", "/discover/network", "/for-you/"):
        r = await client.get(path)
        assert r.status_code == 401, path
        assert r.json()["detail"] == "not authenticated"
    assert (await client.get("/tracks/tags")).json() == []
    assert (await client.get("/tracks/tags/ambient")).status_code == 404


async def test_web_client_posts_of_public_pages(client):
    """The two POSTs plyr's web client sends from public pages without a session: a visit
    through a share link (``/track/{id}?ref=``) and an avatar that failed to load."""
    origin = {"Origin": "https://plyr.example"}
    r = await client.post(f"/tracks/{track_id(A1)}/ref/abc123/click", headers=origin)
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert r.headers["access-control-allow-origin"] == "https://plyr.example"
    r = await client.post(f"/artists/{ALICE}/refresh-avatar", headers=origin)
    assert r.status_code == 200 and r.json() == {"avatar_url": None}  # none in her records
    assert (await client.post(f"/artists/{CAROL}/refresh-avatar")).status_code == 404
    assert (await client.post("/artists/did:plc:nobody/refresh-avatar")).status_code == 404


async def test_radio(client):
    lineup = (await client.get("/radio/stations")).json()
    assert lineup["default_slug"] == "loved"
    assert [s["slug"] for s in lineup["stations"]] == ["loved", "fresh", "deep-cuts", "slop"]
    body = (await client.get("/radio/state")).json()
    assert body["station_slug"] == "loved" and body["live"] is None
    # Only what lists show: not adult (B1), taken down (B2), gated (B3) or deactivated (C1).
    assert {t["id"] for t in body["rotation"]} == {track_id(u) for u in (A1, A2, A3)}
    assert body["loop_duration_seconds"] == 180 + 200 + 180  # A3 gives no duration
    current = body["rotation"][body["current_index"]]
    assert body["current"] == current and current["stream_url"].endswith(f"/audio/{current['id']}")
    assert 0 <= body["progress_seconds"] < current["duration"]
    assert len(body["up_next"]) == 2 and current not in body["up_next"]
    again = (await client.get("/radio/state.json", params={"station": "loved"})).json()
    assert [t["id"] for t in again["rotation"]] == [t["id"] for t in body["rotation"]]
    empty = (await client.get("/radio/state", params={"station": "slop"})).json()
    assert empty["rotation"] == [] and empty["current"] is None and empty["current_index"] is None
    assert (await client.get("/radio/state", params={"station": "nope"})).status_code == 404


async def test_cors_echoes_allowed_origin_with_credentials(client):
    r = await client.get("/tracks/", headers={"Origin": "https://plyr.example"})
    assert r.headers["access-control-allow-origin"] == "https://plyr.example"
    assert r.headers["access-control-allow-credentials"] == "true"
    r = await client.get("/tracks/", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    pre = await client.options(
        "/tracks/",
        headers={"Origin": "https://plyr.example", "Access-Control-Request-Method": "GET"},
    )
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == "https://plyr.example"


async def test_metrics_and_openapi(client):
    await client.get("/tracks/")
    text = (await client.get("/metrics")).text
    assert 'plyr_api_requests_total{method="GET",route="/tracks/",status="200"}' in text
    spec = (await client.get("/openapi.json")).json()
    for path in ("/tracks/top", "/audio/{file_id}", "/albums/{handle}/{slug}", "/xrpc/{nsid}"):
        assert path in spec["paths"], path
    assert "play_count" in spec["paths"]["/tracks/{track_id}"]["get"]["description"]


async def test_xrpc_track_queries(client):
    t = (await xrpc(client, "getTrack", uri=A2))["track"]
    assert t["id"] == track_id(A2) and t["artist"]["handle"] == "alice.test"
    assert t["features"][0]["did"] == BOB
    assert (await xrpc(client, "getTrack", id=track_id(A1)))["track"]["uri"] == A1
    first = await xrpc(client, "getTracksByArtist", actor="alice.test", limit=2)
    assert [x["uri"] for x in first["tracks"]] == [A3, A2]
    rest = await xrpc(client, "getTracksByArtist", actor=ALICE, cursor=first["cursor"])
    assert [x["uri"] for x in rest["tracks"]] == [A1] and "cursor" not in rest
    top = await xrpc(client, "getTopTracks", period="all_time")
    assert [x["uri"] for x in top["tracks"]] == [A1, A2]
    found = await xrpc(client, "searchTracks", q="rain")
    assert [x["uri"] for x in found["tracks"]] == [A2]
    assert (await xrpc(client, "searchTracks", q="song"))["tracks"] == []  # hidden ones
    # The search read model: a typo still finds the track.
    typo = await xrpc(client, "searchTracks", q="evning rain")
    assert [x["uri"] for x in typo["tracks"]] == [A2]


async def test_xrpc_other_queries(client):
    artist = (await xrpc(client, "getArtist", actor="alice.test"))["artist"]
    assert artist["trackCount"] == 3 and artist["displayName"] == "Alice A"
    slug = (await client.get("/albums/alice.test")).json()["albums"][0]["slug"]
    album = await xrpc(client, "getAlbum", actor=ALICE, slug=slug)
    assert [x["uri"] for x in album["tracks"]] == [A2, A1]
    playlist = await xrpc(client, "getPlaylist", uri=PLAYLIST)
    assert [x["uri"] for x in playlist["tracks"]] == [A2, A1]
    likes = await xrpc(client, "getLikes", uri=A1, limit=1)
    assert likes["likes"][0]["actor"]["did"] == BOB and "cursor" in likes
    more = await xrpc(client, "getLikes", uri=A1, cursor=likes["cursor"])
    assert [x["actor"]["did"] for x in more["likes"]] == [DAN]
    comments = await xrpc(client, "getComments", uri=A1)
    assert [c["text"] for c in comments["comments"]] == ["first!", "lovely"]
    counts = await client.get(f"/xrpc/{NS}.getPlayCounts", params=[("uris", A1), ("uris", B2)])
    validate_query_output(f"{NS}.getPlayCounts", counts.json())
    assert counts.json() == {"counts": [{"uri": A1, "playCount": 0}]}


async def test_xrpc_errors(client):
    r = await client.get(f"/xrpc/{NS}.getTrack", params={"uri": "not a uri"})
    assert r.status_code == 400 and r.json()["error"] == "InvalidRequest" and r.json()["message"]
    r = await client.get(f"/xrpc/{NS}.getTrack", params={"uri": B2})
    assert r.status_code == 410 and r.json()["error"] == "Gone"
    r = await client.get(f"/xrpc/{NS}.getArtist", params={"actor": "nobody.test"})
    assert r.status_code == 400 and r.json()["error"] == "NotFound"
    r = await client.get(f"/xrpc/{NS}.getTopTracks", params={"limit": "many"})
    assert r.status_code == 400 and r.json()["error"] == "InvalidRequest"
    r = await client.get("/xrpc/com.example.nothing")
    assert r.status_code == 501 and r.json()["error"] == "MethodNotImplemented"


async def test_oversized_request_bodies_are_refused_with_413(client):
    big = ["did:plc:" + "a" * 24] * 20_000  # ~700 KB of JSON
    r = await client.post("/artists/batch", json=big)
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"

    async def chunks():
        yield b'["did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"'
        for _ in range(10_000):
            yield b',"did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"'
        yield b"]"

    r = await client.post(
        "/artists/batch", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    # A normal batch still works.
    r = await client.post("/artists/batch", json=["did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"])
    assert r.status_code == 200


async def test_an_unverified_handle_never_finds_an_artist(pg_url):
    """Ingest publishes ``handle.invalid`` for handles that do not verify both ways; many
    artists share it, so neither by-handle lookups nor search may treat it as a handle."""
    pool = await open_pool(pg_url)
    events = [
        ident(ALICE, "handle.invalid"),
        ident(BOB, "handle.invalid"),
        track(ALICE, "a1", "Morning Light", 1),
        track(BOB, "b1", "Evening Rain", 2),
    ]
    repo = [Message("plyr.repo", 0, i, e.key, e.to_bytes(), 0) for i, e in enumerate(events)]
    for projector in (CatalogProjector(), ModerationProjector([OPERATOR]), SearchProjector()):
        start = await load_offset(pool, projector.name, "plyr.repo", 0)
        await apply_batch(pool, projector, repo, start)
    app = create_app(Settings(), pool=pool)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c,
    ):
        assert (await c.get(f"/artists/{ALICE}")).json()["handle"] == "handle.invalid"
        for spelling in ("handle.invalid", "HANDLE.invalid"):
            assert (await c.get(f"/artists/by-handle/{spelling}")).status_code == 404
        found = (await c.get("/search/", params={"q": "handle.invalid"})).json()
        assert [r for r in found["results"] if r["type"] == "artist"] == []
    await pool.close()
