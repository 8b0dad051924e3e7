"""``GET /search/`` and ``GET /moderation/sensitive-images`` through the FastAPI app."""

from __future__ import annotations

import httpx
import pytest

from api.app import create_app
from kernel.config import Settings
from kernel.db import open_pool
from projectors.moderation import ModerationProjector
from projectors.search import SearchProjector
from tests.integration.test_search_ranking import OPERATOR, TOPIC_REPO, corpus, project


@pytest.fixture
async def client(pg_url):
    pool = await open_pool(pg_url)
    events = corpus()
    await project(pool, SearchProjector(), TOPIC_REPO, events)
    await project(pool, ModerationProjector([OPERATOR]), TOPIC_REPO, events)
    app = create_app(Settings(), pool=pool)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c,
    ):
        yield c
    await pool.close()


async def test_search_route_shape(client):
    r = await client.get("/search/", params={"q": "beyonce"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"results", "counts"}
    assert body["counts"] == {"tracks": 0, "artists": 1, "albums": 0, "tags": 0, "playlists": 0}
    assert body["results"][0]["type"] == "artist"
    assert body["results"][0]["display_name"] == "Beyoncé"


async def test_search_route_type_filter_and_limit(client):
    body = (
        await client.get("/search/", params={"q": "love", "type": "tracks,albums", "limit": 1})
    ).json()
    assert body["counts"]["tracks"] == 1 and body["counts"]["artists"] == 0
    assert body["results"][0]["title"] == "Love"


@pytest.mark.parametrize(
    "params",
    [{"q": "a"}, {}, {"q": "x" * 101}, {"q": "love", "limit": 0}, {"q": "love", "limit": 51}],
)
async def test_search_route_validates_like_plyr(client, params):
    r = await client.get("/search/", params=params)
    assert r.status_code == 422
    assert set(r.json()) == {"detail", "error"}


async def test_sensitive_images_route(client):
    r = await client.get("/moderation/sensitive-images")
    assert r.status_code == 200
    assert r.json() == {"image_ids": [], "urls": []}
    assert "max-age" in r.headers["cache-control"]
