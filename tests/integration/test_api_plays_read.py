"""Plays everywhere plyr shows them: ``/stats``, ``/artists/{did}/analytics``, album
``total_plays``, ``/tracks/tags``, ``/tracks/top?by=plays``, ``/charts/tracks`` and its
XRPC twin ``getTrackChart``, ``getPlayCounts`` and ``playCount`` in track views.

The catalog and moderation read models come from :mod:`tests.integration.test_api_routes`
(B2 taken down by the operator, B1 adult, B3 copyright-labelled, Carol deactivated) plus
a few tagged tracks; the plays are real ``play.reported`` events projected by the plays
projector. Hidden tracks are given plays on purpose: no plays-derived number may show them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from api.app import create_app
from kernel.config import Settings
from kernel.db import open_pool
from kernel.envelope import Envelope
from kernel.log import Message
from kernel.plays import iso_time, play_reported
from lexicons import validate_query_output
from projectors.base import track_id
from projectors.catalog import CatalogProjector
from projectors.moderation import ModerationProjector
from projectors.plays import PlaysProjector
from projectors.runner import apply_batch, load_offset
from tests.integration.test_api_routes import (
    A1,
    A2,
    A3,
    ALICE,
    B1,
    B2,
    BOB,
    C1,
    CAROL,
    NS,
    REPO_EVENTS,
    label,
    project,
    track,
    uri,
)

A4 = uri(ALICE, "fm.plyr.track", "a4")
B4 = uri(BOB, "fm.plyr.track", "b4")
B5 = uri(BOB, "fm.plyr.track", "b5")  # taken down by the operator
EXTRA = [
    track(ALICE, "a4", "Tape Loop", 8, tags=["lo-fi"]),
    track(BOB, "b4", "Bob Loop", 9, tags=["lo-fi", "jazz"]),
    track(BOB, "b5", "Hidden Loop", 10, tags=["jazz"]),
]
NOW = datetime.now(UTC)
RECENT = NOW - timedelta(hours=1)
WEEK = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)  # a Tuesday: the ISO week of Nov 9-15
LATER = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

# (track, when, how many plays, each by its own listener)
PLAYS = [
    (A1, WEEK, 3),
    (A2, WEEK + timedelta(days=1), 3),
    (A4, WEEK + timedelta(days=2), 1),
    (B4, WEEK, 2),
    (B1, WEEK, 1),  # adult: in view/detail numbers, not in lists
    (B2, WEEK, 5),  # taken down
    (B5, WEEK, 4),  # taken down
    (C1, WEEK, 2),  # account deactivated
    (A3, LATER, 1),
    (A3, RECENT, 2),
    (B4, RECENT, 1),
]


def reports() -> list[Envelope]:
    out = []
    for uri_, when, n in PLAYS:
        for i in range(n):
            out.append(
                play_reported(
                    play_id=f"{uri_}-{iso_time(when)}-{i}",
                    listener=f"cookie:{i}-{iso_time(when)}",
                    track_uri=uri_,
                    at=when,
                    duration_s=120,
                )
            )
    return out


async def apply(pool, projector, topic, envelopes, start=0):
    messages = [
        Message(topic, 0, start + i, e.key, e.to_bytes(), 0) for i, e in enumerate(envelopes)
    ]
    await apply_batch(pool, projector, messages, await load_offset(pool, projector.name, topic, 0))


@pytest.fixture
async def client(pg_url):
    pool = await open_pool(pg_url)
    await project(pool, search=False)
    start = len(REPO_EVENTS)
    await apply(pool, CatalogProjector(), "plyr.repo", EXTRA, start)
    moderation = ModerationProjector(["did:plc:oooooooooooooooooooooooo"])
    await apply(pool, moderation, "plyr.repo", EXTRA, start)
    await apply(pool, moderation, "plyr.labels", [label(B5, "!takedown")], 1)
    await apply(pool, PlaysProjector(), "plyr.plays", reports())
    app = create_app(Settings(), pool=pool)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c,
    ):
        c.pool = pool  # type: ignore[attr-defined]
        yield c
    await pool.close()


async def get(client, path, **params):
    r = await client.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def by_id_desc(*uris: str) -> list[str]:
    return sorted(uris, key=track_id, reverse=True)


async def test_stats_count_plays_of_tracks_a_permalink_may_show(client):
    # A1 3 + A2 3 + A3 3 + A4 1 + B4 3 + B1 1 (adult shows on a permalink); not B2, B5, C1.
    stats = await get(client, "/stats")
    assert stats["total_plays"] == 14
    assert stats["total_tracks"] == 7  # A1-A4, B1, B3 (copyright shows on a permalink), B4


async def test_artist_analytics_total_top_item_and_rank(client):
    alice = await get(client, f"/artists/{ALICE}/analytics")
    top = by_id_desc(A1, A2, A3)[0]  # three tracks with 3 plays: the newer id wins
    assert alice["total_plays"] == 10
    assert alice["top_item"] == {
        "id": track_id(top),
        "title": {A1: "Morning Light", A2: "Evening Rain", A3: "Night Drive"}[top],
        "play_count": 3,
    }
    assert alice["rank"] == 1
    # Bob's taken-down tracks (9 plays) count for nothing: 4 plays, second.
    bob = await get(client, f"/artists/{BOB}/analytics")
    assert (bob["total_plays"], bob["rank"]) == (4, 2)
    assert bob["top_item"] == {"id": track_id(B4), "title": "Bob Loop", "play_count": 3}
    carol = await get(client, f"/artists/{CAROL}/analytics")
    assert (carol["total_plays"], carol["top_item"], carol["rank"]) == (0, None, None)


async def test_album_total_plays(client):
    albums = (await get(client, "/albums/alice.test"))["albums"]
    assert [(a["title"], a["total_plays"]) for a in albums] == [("First Album", 6)]
    page = await get(client, f"/albums/alice.test/{albums[0]['slug']}")
    assert page["metadata"]["total_plays"] == 6
    assert sorted(t["play_count"] for t in page["tracks"]) == [3, 3]


async def test_tags_ordered_by_plays_without_hidden_tracks(client):
    # jazz would lead with B5's 4 plays; B5 is taken down, so lo-fi (A4 1 + B4 3) leads.
    assert await get(client, "/tracks/tags") == [
        {"name": "lo-fi", "track_count": 2, "total_plays": 4},
        {"name": "jazz", "track_count": 1, "total_plays": 3},
    ]


async def test_top_tracks_by_plays_and_by_likes(client):
    day = await get(client, "/tracks/top", period="day", by="plays")
    assert [(t["atproto_record_uri"], t["play_count"]) for t in day] == [(A3, 3), (B4, 3)]
    all_time = await get(client, "/tracks/top", by="plays")
    assert [t["atproto_record_uri"] for t in all_time] == [*by_id_desc(A1, A2, A3, B4), A4]
    # The default stays plyr's: by likes (A1 has two, A2 one).
    assert [t["atproto_record_uri"] for t in await get(client, "/tracks/top")] == [A1, A2]
    r = await client.get("/tracks/top", params={"by": "listens"})
    assert r.status_code == 422


async def test_week_chart_by_plays_ranks_and_pages(client):
    first = await get(client, "/charts/tracks", period="week", by="plays", date="2026-11-12",
                      limit=2)  # fmt: skip
    assert (first["period"], first["by"], first["start"], first["end"]) == (
        "week", "plays", "2026-11-09T00:00:00Z", "2026-11-16T00:00:00Z"
    )  # fmt: skip
    tied = by_id_desc(A1, A2)
    entries = [(e["rank"], e["count"], e["track"]["atproto_record_uri"]) for e in first["entries"]]
    assert entries == [(1, 3, tied[0]), (1, 3, tied[1])]
    assert first["has_more"] is True
    second = await get(client, "/charts/tracks", period="week", date="2026-11-12", limit=2,
                       cursor=first["next_cursor"])  # fmt: skip
    assert [(e["rank"], e["count"], e["track"]["title"]) for e in second["entries"]] == [
        (3, 2, "Bob Loop"), (4, 1, "Tape Loop")
    ]  # fmt: skip
    assert (second["has_more"], second["next_cursor"]) == (False, None)
    # The track inside an entry is a TrackResponse with its all-time count.
    assert second["entries"][0]["track"]["play_count"] == 3


async def test_day_month_and_likes_charts(client):
    day = await get(client, "/charts/tracks", period="day", date="2026-11-20")
    assert [(e["rank"], e["count"], e["track"]["title"]) for e in day["entries"]] == [
        (1, 1, "Night Drive")
    ]
    month = await get(client, "/charts/tracks", period="month", date="2026-11-30")
    assert month["start"] == "2026-11-01T00:00:00Z" and month["end"] == "2026-12-01T00:00:00Z"
    assert [e["count"] for e in month["entries"]] == [3, 3, 2, 1, 1]
    assert [e["rank"] for e in month["entries"]] == [1, 1, 3, 4, 4]
    likes = await get(client, "/charts/tracks", period="week", by="likes", date="2026-11-10")
    # Likes of B1 (adult), B2 (taken down) and C1 (deactivated) fall on hidden tracks.
    assert [(e["rank"], e["count"], e["track"]["title"]) for e in likes["entries"]] == [
        (1, 2, "Morning Light"), (2, 1, "Evening Rain")
    ]  # fmt: skip
    empty = await get(client, "/charts/tracks", period="week", date="2020-01-01")
    assert empty["entries"] == [] and empty["has_more"] is False


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        ({"period": "year"}, 422, None),
        ({"by": "shares"}, 422, None),
        ({"date": "2026-13-01"}, 400, "invalid_date"),
        ({"date": "11/12/2026"}, 400, "invalid_date"),
        ({"cursor": "bm9wZQ"}, 400, "invalid_cursor"),
        ({"limit": 0}, 422, None),
    ],
)
async def test_chart_bad_parameters_are_4xx(client, params, status, error):
    r = await client.get("/charts/tracks", params=params)
    assert r.status_code == status
    if error:
        assert r.json()["error"] == error


async def test_xrpc_chart_play_counts_and_track_views(client):
    def chart(**params):
        return get(client, f"/xrpc/{NS}.getTrackChart", **params)

    first = await chart(period="week", date="2026-11-12", limit=3)
    validate_query_output(f"{NS}.getTrackChart", first)
    assert (first["start"], first["end"]) == ("2026-11-09T00:00:00Z", "2026-11-16T00:00:00Z")
    assert [(e["rank"], e["count"]) for e in first["entries"]] == [(1, 3), (1, 3), (3, 2)]
    assert first["entries"][0]["track"]["playCount"] == 3
    rest = await chart(period="week", date="2026-11-12", limit=3, cursor=first["cursor"])
    validate_query_output(f"{NS}.getTrackChart", rest)
    assert [(e["rank"], e["track"]["title"]) for e in rest["entries"]] == [(4, "Tape Loop")]
    assert "cursor" not in rest
    bad = await client.get(f"/xrpc/{NS}.getTrackChart", params={"period": "year"})
    assert bad.status_code == 400 and bad.json()["error"] == "InvalidRequest"
    bad_date = await client.get(f"/xrpc/{NS}.getTrackChart", params={"date": "2026-02-30"})
    assert bad_date.status_code == 400
    counts = await client.get(
        f"/xrpc/{NS}.getPlayCounts", params=[("uris", A1), ("uris", B2), ("uris", A4)]
    )
    validate_query_output(f"{NS}.getPlayCounts", counts.json())
    assert counts.json() == {"counts": [{"uri": A1, "playCount": 3}, {"uri": A4, "playCount": 1}]}
    top = await get(client, f"/xrpc/{NS}.getTopTracks", period="day", by="plays")
    assert [(t["uri"], t["playCount"]) for t in top["tracks"]] == [(A3, 3), (B4, 3)]


async def test_account_deletion_takes_plays_out_of_every_number(client):
    deleted = Envelope(
        kind="account.changed", did=BOB, source="t", time=iso_time(NOW), active=False,
        status="deleted",
    )  # fmt: skip
    start = len(REPO_EVENTS) + len(EXTRA)
    for projector in (CatalogProjector(), PlaysProjector()):
        await apply(client.pool, projector, "plyr.repo", [deleted], start)
    assert (await get(client, "/stats"))["total_plays"] == 10
    assert [t["name"] for t in await get(client, "/tracks/tags")] == ["lo-fi"]
    assert (await get(client, f"/artists/{ALICE}/analytics"))["rank"] == 1
    async with client.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM play WHERE did = %s", (BOB,))
        assert await cur.fetchone() == (0,)
