"""The response cache: answers from memory until a projected change announces itself."""

from __future__ import annotations

from collections.abc import Sequence

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from api.app import create_app
from api.cache import ResponseCache
from kernel.config import Settings
from kernel.db import open_pool
from kernel.envelope import Envelope
from kernel.log import Message
from projectors.base import Projector, track_id
from projectors.catalog import CatalogProjector
from projectors.moderation import ModerationProjector
from projectors.runner import apply_batch, load_offset
from testkit.records import track_record
from tests.appview_process import wait_until

ALICE = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
OPERATOR = "did:plc:oooooooooooooooooooooooo"
A1 = f"at://{ALICE}/fm.plyr.track/a1"


def created(rkey: str, title: str, day: int) -> Envelope:
    return Envelope(
        kind="record.created", did=ALICE, source="t", time="t", rev=f"3l{day:02d}",
        collection="fm.plyr.track", rkey=rkey, cid=f"bafy{rkey}",
        record=track_record(title, createdAt=f"2026-11-{day:02d}T10:00:00.000Z"),
    )  # fmt: skip


def takedown(subject: str) -> Envelope:
    return Envelope(
        kind="label.applied", did=OPERATOR, source="t", time="t",
        label={"src": OPERATOR, "uri": subject, "val": "!takedown",
               "cts": "2026-11-20T00:00:00.000Z"},
    )  # fmt: skip


class Projection:
    """Feeds envelopes to the catalog and moderation projectors, as the runner would."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self.offsets = {"plyr.repo": 0, "plyr.labels": 0}

    async def project(self, topic: str, envelopes: Sequence[Envelope]) -> None:
        first = self.offsets[topic]
        messages = [
            Message(topic, 0, first + i, e.key, e.to_bytes(), 0) for i, e in enumerate(envelopes)
        ]
        self.offsets[topic] += len(envelopes)
        projectors: list[Projector] = [ModerationProjector([OPERATOR])]
        if topic == "plyr.repo":
            projectors.insert(0, CatalogProjector())
        for projector in projectors:
            start = await load_offset(self.pool, projector.name, topic, 0)
            await apply_batch(self.pool, projector, messages, start)


@pytest.fixture
async def setup(pg_url):
    pool = await open_pool(pg_url)
    projection = Projection(pool)
    await projection.project("plyr.repo", [created("a1", "First", 1)])
    app = create_app(Settings(api_cache_entries=100, api_cache_ttl_s=3600), pool=pool)
    cache = app.state.response_cache
    assert isinstance(cache, ResponseCache)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c,
    ):
        yield c, cache, projection
    await pool.close()


async def announced(cache: ResponseCache, generation: int) -> None:
    """Wait until the listener has received the change notification."""
    await wait_until(
        lambda: _true(cache.generation > generation), timeout=10, what="a notification"
    )


async def _true(value: bool) -> bool:
    return value


def titles(response: httpx.Response) -> list[str]:
    return [t["title"] for t in response.json()["tracks"]]


async def test_repeated_get_is_answered_from_the_cache(setup):
    client, cache, _ = setup
    first = await client.get("/tracks/", headers={"Origin": "http://localhost:5173"})
    hits = cache.hits
    second = await client.get("/tracks/", headers={"Origin": "http://localhost:5173"})
    assert cache.hits == hits + 1
    assert second.status_code == 200 and second.content == first.content
    assert second.headers["content-type"] == "application/json"
    # CORS still applies to a cached answer
    assert second.headers["access-control-allow-origin"] == "http://localhost:5173"
    # metrics count it under its route
    metrics = (await client.get("/metrics")).text
    assert 'plyr_api_requests_total{method="GET",route="/tracks/",status="200"} 2.0' in metrics
    assert "plyr_api_cache_hits_total" in metrics


async def test_a_projected_track_is_visible_on_the_next_request(setup):
    client, cache, projection = setup
    assert titles(await client.get("/tracks/")) == ["First"]
    assert titles(await client.get("/tracks/")) == ["First"]  # cached now
    generation = cache.generation
    await projection.project("plyr.repo", [created("a2", "Second", 2)])
    await announced(cache, generation)
    assert titles(await client.get("/tracks/")) == ["Second", "First"]


async def test_a_takedown_hides_a_cached_track(setup):
    client, cache, projection = setup
    path = f"/tracks/{track_id(A1)}"
    assert (await client.get(path)).status_code == 200
    assert (await client.get(path)).status_code == 200
    generation = cache.generation
    await projection.project("plyr.labels", [takedown(A1)])
    await announced(cache, generation)
    assert (await client.get(path)).status_code == 410
    assert titles(await client.get("/tracks/")) == []


async def test_errors_and_credentialed_requests_are_not_cached(setup):
    client, cache, _ = setup
    for _ in range(2):
        assert (await client.get("/tracks/999")).status_code == 404
        assert (await client.get("/tracks/", headers={"Authorization": "Bearer x"})).is_success
    assert cache.hits == 0 and len(cache) == 0


async def test_cache_off_setting(pg_url):
    pool = await open_pool(pg_url)
    try:
        app = create_app(Settings(api_cache_entries=0), pool=pool)
        assert app.state.response_cache is None
    finally:
        await pool.close()


async def test_a_saturated_pool_answers_503_with_the_error_envelope(pg_url):
    # Not the cache, but the same overload story: every connection busy past the timeout.
    pool = AsyncConnectionPool(pg_url, min_size=1, max_size=1, timeout=0.2, open=False)
    await pool.open(wait=True)
    app = create_app(Settings(api_cache_entries=0), pool=pool)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c,
            pool.connection(),  # the only connection, held
        ):
            r = await c.get("/tracks/")
            assert r.status_code == 503 and r.headers["retry-after"] == "1"
            assert r.json()["error"] == "unavailable"
            r = await c.get("/xrpc/fm.plyr.appview.getTopTracks")
            assert r.status_code == 503 and r.json()["error"] == "ServiceUnavailable"
    finally:
        await pool.close()
