"""Inputs no route can take (NUL, invalid UTF-8, encoded lone surrogates, over-long paths
and queries) get a 4xx in the API's envelope, REST or XRPC, before any route runs.

Before :class:`api.middleware.InputGuard`, each URL of :data:`NUL_URLS` reached PostgreSQL
and answered 500 (psycopg ``DataError``: text cannot hold NUL).
"""

from __future__ import annotations

import httpx
import pytest

from api.app import create_app
from api.middleware import MAX_PATH_BYTES, MAX_QUERY_BYTES, input_problem
from kernel.config import Settings
from kernel.db import open_pool
from tests.integration.test_api_routes import project

TRACK = "at://did:plc:abc/fm.plyr.track/a"
LIST = "at://did:plc:abc/fm.plyr.list/a"
NUL_URLS = [
    "/search/?q=a%00b",
    "/users/%00/likes",
    "/albums/%00",
    "/artists/by-handle/%00",
    f"/tracks/by-uri?uri={TRACK}%00",
    f"/lists/playlists/by-uri?uri={LIST}%00",
    "/tracks/tags/a%00b",
    "/tracks/?tags=a%00",
    "/oembed?url=https://plyr.fm/track/1%00",
]
XRPC = "/xrpc/fm.plyr.appview.searchTracks"


@pytest.fixture
async def client(pg_url):
    pool = await open_pool(pg_url)
    await project(pool, search=True)
    app = create_app(Settings(), pool=pool)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c,
    ):
        yield c
    await pool.close()


@pytest.mark.parametrize("url", NUL_URLS)
async def test_nul_in_path_or_query_is_a_rest_400(client, url):
    r = await client.get(url)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "invalid_request" and "NUL" in body["detail"]


@pytest.mark.parametrize(
    "url",
    [
        "/search/?q=a%ffb",  # invalid UTF-8
        "/search/?q=%ed%a0%80ab",  # a lone surrogate, UTF-8-encoded
        "/search/?q%00=ab",  # in a parameter's name
        "/artists/by-handle/%ff",
        "/artists/by-handle/%ed%b2%80",
        "/tracks/tags/%c3",  # truncated sequence
    ],
)
async def test_undecodable_text_is_a_rest_400(client, url):
    r = await client.get(url)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request"


@pytest.mark.parametrize("query", ["q=%00", "q=ab%ff", "q=ab%ed%a0%80", "q=ab&cursor=%00"])
async def test_xrpc_gets_the_xrpc_envelope(client, query):
    r = await client.get(f"{XRPC}?{query}")
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "InvalidRequest" and body["message"]
    assert "detail" not in body


async def test_over_long_path_and_query_are_414(client):
    r = await client.get("/artists/by-handle/" + "a" * MAX_PATH_BYTES)
    assert r.status_code == 414 and r.json()["error"] == "uri_too_long"
    r = await client.get("/search/", params={"q": "a" * MAX_QUERY_BYTES})
    assert r.status_code == 414 and r.json()["error"] == "uri_too_long"
    r = await client.get(XRPC, params={"q": "a" * MAX_QUERY_BYTES})
    assert r.status_code == 414 and r.json()["error"] == "InvalidRequest"


async def test_good_text_still_passes(client):
    # Percent-escaped UTF-8, '+' for spaces, a near-limit query: answered by the routes.
    r = await client.get("/search/?q=caf%C3%A9+song")
    assert r.status_code == 200
    r = await client.get("/tracks/tags/caf%C3%A9")
    assert r.status_code == 404 and r.json()["detail"] == "tag not found"
    r = await client.get("/search/", params={"q": "a" * 101})
    assert r.status_code == 422  # the route's own validation, not the guard
    r = await client.get(f"{XRPC}?q=ab")
    assert r.status_code == 200


async def test_text_the_database_cannot_hold_in_a_request_body_is_a_400(client):
    r = await client.post("/artists/batch", json=["did:plc:a\u0000"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    lone = b'["did:plc:a\\ud800"]'  # JSON's escape of a lone surrogate
    r = await client.post(
        "/artists/batch", content=lone, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = await client.post("/artists/batch", json=["did:plc:a"])
    assert r.status_code == 200 and r.json() == {}


def test_a_decoded_lone_surrogate_is_refused():
    # An ASGI server may hand over a path that is already decoded (no raw_path).
    scope = {"type": "http", "path": "/artists/by-handle/\udc80", "query_string": b""}
    assert input_problem(scope) == (400, "path contains a lone surrogate")
    scope = {"type": "http", "path": "/artists/by-handle/\x00", "query_string": b""}
    assert input_problem(scope) == (400, "path contains a NUL character")
    scope = {"type": "http", "path": "/tracks/1", "raw_path": b"/tracks/1", "query_string": b""}
    assert input_problem(scope) is None
