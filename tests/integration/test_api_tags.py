"""Tags on the API: ``/tracks/tags``, ``/tracks/tags/{tag}``, the ``tags`` and
``filter_hidden_tags`` filters of ``/tracks/``, ``tags`` in every TrackResponse, and the
search result of a tag landing on its tag page.

Records carry the tags (a ``tags`` array); the real projectors (catalog, moderation,
search) put them in ``track.tags`` and ``search_tag``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from api.app import create_app
from kernel.config import Settings
from kernel.db import open_pool
from kernel.envelope import Envelope
from kernel.log import Message
from projectors.base import track_id
from projectors.catalog import CatalogProjector
from projectors.moderation import ModerationProjector
from projectors.runner import apply_batch, load_offset
from projectors.search import SearchProjector
from tests.integration.test_api_routes import OPERATOR, ident, label, track, uri

ALICE = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
BOB = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"
CAROL = "did:plc:cccccccccccccccccccccccc"

T1 = uri(ALICE, "fm.plyr.track", "t1")
T2 = uri(ALICE, "fm.plyr.track", "t2")
T3 = uri(BOB, "fm.plyr.track", "t3")  # adult self-label: not in lists
T4 = uri(BOB, "fm.plyr.track", "t4")  # taken down by the operator
T5 = uri(CAROL, "fm.plyr.track", "t5")  # account deactivated
T6 = uri(ALICE, "fm.plyr.track", "t6")  # no tags
T7 = uri(BOB, "fm.plyr.track", "t7")

ADULT = {"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "porn"}]}
EVENTS = [
    ident(ALICE, "alice.test"),
    ident(BOB, "bob.test"),
    ident(CAROL, "carol.test"),
    track(ALICE, "t1", "Tape Hiss", 1, tags=["Lo-Fi", "Chill  Beats"]),
    track(ALICE, "t2", "Robot Choir", 2, tags=["lo-fi", "AI"]),
    track(BOB, "t3", "Adult Loop", 3, tags=["lo-fi"], labels=ADULT),
    track(BOB, "t4", "Gone Loop", 4, tags=["chill beats"]),
    track(CAROL, "t5", "Quiet Jazz", 5, tags=["jazz"]),
    track(ALICE, "t6", "Plain Song", 6),
    track(BOB, "t7", "Generated", 7, tags=["suno", "100%_real", "1000 voices"]),
]


async def project(pool: AsyncConnectionPool) -> None:
    deactivated = Envelope(
        kind="account.changed", did=CAROL, source="t", time="t", active=False,
        status="deactivated",
    )  # fmt: skip
    events = [*EVENTS, deactivated]
    repo = [Message("plyr.repo", 0, i, e.key, e.to_bytes(), 0) for i, e in enumerate(events)]
    takedown = label(T4, "!takedown")
    labels = [Message("plyr.labels", 0, 0, takedown.key, takedown.to_bytes(), 0)]
    moderation = ModerationProjector([OPERATOR])
    runs: list[tuple[Any, str, list[Message]]] = [
        (CatalogProjector(), "plyr.repo", repo),
        (moderation, "plyr.repo", repo),
        (moderation, "plyr.labels", labels),
        (SearchProjector(), "plyr.repo", repo),
    ]
    for projector, topic, messages in runs:
        start = await load_offset(pool, projector.name, topic, 0)
        await apply_batch(pool, projector, messages, start)


@pytest.fixture
async def client(pg_url):
    pool = await open_pool(pg_url)
    await project(pool)
    app = create_app(Settings(), pool=pool)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c,
    ):
        yield c
    await pool.close()


def titles(body: dict[str, Any] | list[dict[str, Any]]) -> list[str]:
    tracks = body["tracks"] if isinstance(body, dict) else body
    return [t["title"] for t in tracks]


async def test_track_responses_carry_the_normalised_tags_in_record_order(client):
    r = await client.get(f"/tracks/{track_id(T1)}")
    assert r.status_code == 200
    assert r.json()["tags"] == ["lo-fi", "chill beats"]
    r = await client.get(f"/tracks/{track_id(T6)}")
    assert r.json()["tags"] == []
    listed = {t["title"]: t["tags"] for t in (await client.get("/tracks/")).json()["tracks"]}
    assert listed["Tape Hiss"] == ["lo-fi", "chill beats"]


async def test_tag_list_counts_visible_tracks_only(client):
    r = await client.get("/tracks/tags")
    assert r.status_code == 200
    body = r.json()
    # lo-fi: T1 and T2 (T3 is adult); chill beats: T1 (T4 taken down); jazz: only on the
    # deactivated account's track.
    assert body[0] == {"name": "lo-fi", "track_count": 2, "total_plays": 0}
    counts = {t["name"]: t["track_count"] for t in body}
    assert counts == {
        "lo-fi": 2, "chill beats": 1, "ai": 1, "suno": 1, "100%_real": 1, "1000 voices": 1,
    }  # fmt: skip
    assert all(t["total_plays"] == 0 for t in body)
    assert len((await client.get("/tracks/tags", params={"limit": 2})).json()) == 2


async def test_tag_list_prefix_is_normalised_and_literal(client):
    r = await client.get("/tracks/tags", params={"q": "  LO"})
    assert [t["name"] for t in r.json()] == ["lo-fi"]
    r = await client.get("/tracks/tags", params={"q": "100%"})
    assert [t["name"] for t in r.json()] == ["100%_real"]  # not "1000 voices"
    r = await client.get("/tracks/tags", params={"q": "zzz"})
    assert r.json() == []
    r = await client.get("/tracks/tags", params={"limit": 0})
    assert r.status_code == 422


async def test_tag_page(client):
    r = await client.get("/tracks/tags/Lo-Fi")
    assert r.status_code == 200
    body = r.json()
    assert body["tag"] == {"name": "lo-fi", "track_count": 2}
    assert titles(body) == ["Robot Choir", "Tape Hiss"]  # newest first, T3 not shown
    assert body["created_by_handle"] == "alice.test"
    assert body["tracks"][0]["tags"] == ["lo-fi", "ai"]
    r = await client.get("/tracks/tags/chill%20beats")
    assert r.json()["tag"]["track_count"] == 1 and titles(r.json()) == ["Tape Hiss"]
    r = await client.get("/tracks/tags/100%25_real")
    assert titles(r.json()) == ["Generated"]


@pytest.mark.parametrize("name", ["jazz", "nothing", "%20", "lo-f"])
async def test_tag_page_404_when_no_visible_track_has_the_tag(client, name):
    r = await client.get(f"/tracks/tags/{name}")
    assert r.status_code == 404
    assert r.json() == {"detail": "tag not found", "error": "not_found"}


async def test_default_hidden_tags_filter_discovery_not_artist_pages(client):
    everything = ["Generated", "Plain Song", "Robot Choir", "Tape Hiss"]
    r = await client.get("/tracks/")
    assert titles(r.json()) == ["Plain Song", "Tape Hiss"]  # ai and suno hidden
    r = await client.get("/tracks/", params={"filter_hidden_tags": "false"})
    assert titles(r.json()) == everything
    r = await client.get("/tracks/", params={"artist_did": ALICE})
    assert titles(r.json()) == ["Plain Song", "Robot Choir", "Tape Hiss"]
    r = await client.get("/tracks/", params={"artist_did": ALICE, "filter_hidden_tags": "true"})
    assert titles(r.json()) == ["Plain Song", "Tape Hiss"]
    config = (await client.get("/config")).json()
    assert config["default_hidden_tags"] == ["ai", "ai-slop", "suno"]


async def test_tags_filter_is_any_of_and_normalised(client):
    r = await client.get("/tracks/", params=[("tags", "LO-FI"), ("tags", "jazz")])
    assert titles(r.json()) == ["Tape Hiss"]  # Robot Choir carries the hidden "ai"
    params = [("tags", " lo-fi "), ("tags", "1000  Voices"), ("filter_hidden_tags", "false")]
    r = await client.get("/tracks/", params=params)
    assert titles(r.json()) == ["Generated", "Robot Choir", "Tape Hiss"]
    r = await client.get("/tracks/", params={"tags": "nothing"})
    assert r.json() == {"tracks": [], "next_cursor": None, "has_more": False}
    r = await client.get("/tracks/", params={"tags": "  "})
    assert r.json()["tracks"] == []
    # Paging through a tag filter keeps the filter.
    r = await client.get("/tracks/", params=[*params, ("limit", "2")])
    first = r.json()
    assert titles(first) == ["Generated", "Robot Choir"] and first["has_more"]
    r = await client.get("/tracks/", params=[*params, ("cursor", first["next_cursor"])])
    assert titles(r.json()) == ["Tape Hiss"]


async def test_search_tag_result_lands_on_its_tag_page(client):
    r = await client.get("/search/", params={"q": "lo-f", "type": "tags"})
    assert r.status_code == 200
    results = r.json()["results"]
    assert [t["name"] for t in results] == ["lo-fi"]
    assert results[0]["track_count"] == 2
    page = await client.get(f"/tracks/tags/{results[0]['name']}")
    assert page.status_code == 200
    assert page.json()["tag"]["track_count"] == results[0]["track_count"]
    assert "Tape Hiss" in titles(page.json())
