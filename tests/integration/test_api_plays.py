"""``POST /tracks/{id}/play`` end to end: report -> the log's plays topic -> the plays
projector -> the count in the next answer. Real PostgreSQL, the table-backed log."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from api.app import create_app
from api.ratelimit import RateLimiter
from kernel.config import Settings
from kernel.db import open_pool
from kernel.envelope import Envelope
from kernel.log import Message
from kernel.log.postgres import PostgresLog
from projectors.base import track_id
from projectors.catalog import CatalogProjector
from projectors.moderation import ModerationProjector
from projectors.plays import PlaysProjector
from projectors.runner import apply_batch, load_offset
from testkit.records import track_record

ALICE = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
CAROL = "did:plc:cccccccccccccccccccccccc"
SONG = f"at://{ALICE}/fm.plyr.track/s1"
GONE = f"at://{CAROL}/fm.plyr.track/g1"
PLAYS = "plyr.plays"
ORIGIN = "https://plyr.example"


def created(did: str, rkey: str, day: int, **extra: object) -> Envelope:
    return Envelope(
        kind="record.created",
        did=did,
        source="test",
        time="t",
        rev=f"3l{day:02d}",
        collection="fm.plyr.track",
        rkey=rkey,
        cid=f"bafy{rkey}",
        record=track_record(rkey, createdAt=f"2026-11-{day:02d}T10:00:00.000Z", **extra),
    )


class World:
    def __init__(self, pool, log, app, client):
        self.pool, self.log, self.app, self.client = pool, log, app, client

    async def project(self) -> None:
        """Run the plays projector over everything on the plays topic."""
        projector = PlaysProjector()
        for partition in range(self.log.partitions(PLAYS)):
            offset = await load_offset(self.pool, "plays", PLAYS, partition)
            messages = await self.log.read(PLAYS, partition, offset, max_messages=1000, timeout=0)
            if messages:
                await apply_batch(self.pool, projector, messages, offset)

    async def reports(self) -> list[Envelope]:
        out = []
        for partition in range(self.log.partitions(PLAYS)):
            messages = await self.log.read(PLAYS, partition, 0, max_messages=1000, timeout=0)
            out += [Envelope.from_bytes(m.value) for m in messages]
        return out

    def post(self, uri: str = SONG, **kwargs):
        return self.client.post(f"/tracks/{track_id(uri)}/play", **kwargs)


@pytest.fixture
async def world(pg_url):
    pool = await open_pool(pg_url)
    envelopes = [
        created(ALICE, "s1", 1, duration=200),
        created(CAROL, "g1", 2),
        Envelope(kind="account.changed", did=CAROL, source="t", time="t", status="takendown"),
    ]
    messages = [Message("plyr.repo", 0, i, e.key, e.to_bytes(), 0) for i, e in enumerate(envelopes)]
    for projector in (CatalogProjector(), ModerationProjector([])):
        start = await load_offset(pool, projector.name, "plyr.repo", 0)
        await apply_batch(pool, projector, messages, start)
    log = PostgresLog(pool, partitions=2, topics=[PLAYS])
    await log.start()
    app = create_app(Settings(cors_origins=(ORIGIN,)), pool=pool, log=log)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c,
    ):
        yield World(pool, log, app, c)
    await pool.close()


async def test_report_is_counted_once_per_window_and_shows_in_the_answer(world):
    first = await world.post()
    assert first.status_code == 200 and first.json() == {"play_count": 0}
    cookie = first.headers["set-cookie"]
    assert cookie.startswith("plyr_play_id=")
    for attribute in ("HttpOnly", "Max-Age=15552000", "Path=/", "SameSite=lax"):
        assert attribute in cookie
    assert "Secure" not in cookie  # plain http here
    await world.project()
    # The same browser again (the cookie came back), inside the 200 s window: not counted.
    second = await world.post()
    assert second.json() == {"play_count": 1} and "set-cookie" not in second.headers
    await world.project()
    assert (await world.post()).json() == {"play_count": 1}
    reports = await world.reports()
    assert len(reports) == 3 and len({r.play["id"] for r in reports}) == 3
    listener = "cookie:" + cookie.split(";")[0].split("=", 1)[1]
    assert {r.play["listener"] for r in reports} == {listener}
    assert {(r.kind, r.uri, r.play.get("duration")) for r in reports} == {
        ("play.reported", SONG, 200)
    }


async def test_play_count_shows_in_track_responses(world):
    await world.post()
    await world.project()
    detail = await world.client.get(f"/tracks/{track_id(SONG)}")
    assert detail.json()["play_count"] == 1
    listed = (await world.client.get("/tracks/")).json()["tracks"]
    assert [(t["atproto_record_uri"], t["play_count"]) for t in listed] == [(SONG, 1)]


async def test_each_browser_is_its_own_listener(world):
    await world.post()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=world.app), base_url="http://test"
    ) as other:
        await other.post(f"/tracks/{track_id(SONG)}/play")
        # A malformed cookie is replaced, not used as a listener key.
        forged = await other.post(
            f"/tracks/{track_id(SONG)}/play", headers={"cookie": "plyr_play_id=x;y"}
        )
        assert "set-cookie" in forged.headers
    await world.project()
    assert (await world.post()).json() == {"play_count": 3}


async def test_unknown_is_404_hidden_is_410_and_nothing_is_reported(world):
    unknown = await world.client.post("/tracks/12345/play")
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    hidden = await world.post(GONE)
    assert hidden.status_code == 410 and hidden.json()["error"] == "gone"
    assert await world.reports() == []


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "body must be JSON"),
        (b"[1, 2]", 422, "JSON object"),
        (b'{"ref": 5}', 422, "ref: expected a string"),
        (b'{"ref": ""}', 422, "ref: expected a string"),
    ],
)
async def test_bad_bodies_are_4xx_with_a_message(world, body, status, message):
    r = await world.post(content=body, headers={"content-type": "application/json"})
    assert r.status_code == status
    assert message in r.json()["detail"]
    assert await world.reports() == []


async def test_ref_and_empty_bodies_are_accepted(world):
    assert (await world.post(json={"ref": "share123"})).status_code == 200
    assert (await world.post(json=None)).status_code == 200
    assert (await world.post(json={})).status_code == 200
    refs = sorted(str(r.play.get("ref")) for r in await world.reports())
    assert refs == ["None", "None", "share123"]


async def test_rate_limit_answers_429_with_retry_after(world):
    world.app.state.play_limiter = RateLimiter(rate=0.01, burst=2)
    assert [(await world.post()).status_code for _ in range(2)] == [200, 200]
    limited = await world.post()
    assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    assert len(await world.reports()) == 2


async def test_cors_preflight_allows_credentials(world):
    r = await world.client.options(
        f"/tracks/{track_id(SONG)}/play",
        headers={"origin": ORIGIN, "access-control-request-method": "POST"},
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert r.headers["access-control-allow-credentials"] == "true"


async def test_without_a_log_reports_are_refused_with_503(pg_url):
    pool = await open_pool(pg_url)
    await apply_batch(
        pool,
        CatalogProjector(),
        [Message("plyr.repo", 0, 0, b"k", created(ALICE, "s1", 1).to_bytes(), 0)],
        await load_offset(pool, "catalog", "plyr.repo", 0),
    )
    app = create_app(Settings(), pool=pool)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c,
    ):
        r = await c.post(f"/tracks/{track_id(SONG)}/play")
    await pool.close()
    assert r.status_code == 503 and r.json()["error"] == "unavailable"


async def test_rate_limit_follows_the_settings(world):
    # PLYR_PLAY_RATE / PLYR_PLAY_BURST: the limiter is built from the app's settings.
    world.app.state.settings = dataclasses.replace(
        world.app.state.settings, play_rate=1, play_burst=3
    )
    world.app.state.play_limiter = None
    assert [(await world.post()).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert len(await world.reports()) == 3
