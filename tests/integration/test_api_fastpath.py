"""``GET /tracks/{id}``: the ASGI fast path answers exactly as the FastAPI route does.

Two apps over the same projected read models (``test_api_routes``' records: visible,
adult, copyright, taken-down and deactivated tracks): one with the fast path, one with
``fast_paths=False``. Every answer is compared byte for byte (status, body, headers), and
a recorder inside the fast path shows which requests reached the FastAPI router.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from urllib.parse import unquote

import httpx
import pytest
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from api.app import create_app
from api.fastpath import parse_track_path
from kernel.config import Settings
from kernel.db import open_pool
from projectors.base import track_id
from tests.integration.test_api_routes import A1, A2, B1, B2, B3, C1, project

ORIGIN = "https://plyr.example"
ANSWERED = [f"/tracks/{track_id(u)}" for u in (A1, A2, B1, B3)]  # 200: visible on a permalink
GONE = [f"/tracks/{track_id(u)}" for u in (B2, C1)]  # 410: taken down, deactivated
UNKNOWN = ["/tracks/999", "/tracks/0", "/tracks/000999", "/tracks/" + "9" * 18]  # 404
# Not plain decimal digits (or too long for the fast path): FastAPI's own answers.
LEFT_TO_FASTAPI = [
    "/tracks/-1",
    "/tracks/abc",
    "/tracks/1.5",
    "/tracks/1e3",
    "/tracks/%C2%B2",  # a superscript two: str.isdigit() says yes
    "/tracks/" + "9" * 19,
    "/tracks/" + "9" * 30,
    f"/tracks/{track_id(A1)}/",
    "/tracks/top",
    "/tracks/by-uri",
]


class RouterCalls:
    """Innermost middleware: notes the paths that got past the fast path to the router."""

    def __init__(self, app: ASGIApp, *, seen: list[str]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append(scope["path"])
        await self.app(scope, receive, send)


@dataclass
class Side:
    client: httpx.AsyncClient
    routed: list[str]


@pytest.fixture
async def sides(pg_url: str) -> AsyncIterator[tuple[Side, Side]]:
    """(fast path, FastAPI route only), both with the response cache and CORS on."""
    pool = await open_pool(pg_url)
    await project(pool, search=False)
    settings = Settings(cors_origins=(ORIGIN,))
    out = []
    async with AsyncExitStack() as stack:
        for fast in (True, False):
            app = create_app(settings, pool=pool, fast_paths=fast)
            routed: list[str] = []
            app.user_middleware.append(Middleware(RouterCalls, seen=routed))  # innermost
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            client = httpx.AsyncClient(transport=transport, base_url="http://api")
            out.append(Side(await stack.enter_async_context(client), routed))
        yield out[0], out[1]
    await pool.close()


def answer(r: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    return r.status_code, r.content, sorted(r.headers.multi_items())


@pytest.mark.parametrize("origin", [None, ORIGIN, "https://evil.example"])
async def test_fast_path_answers_byte_for_byte_as_the_route(sides, origin):
    fast, route = sides
    # One request id for both sides: the echoed X-Request-Id is compared too.
    headers = {"Origin": origin, "X-Request-Id": "same"} if origin else {"X-Request-Id": "same"}
    expected = {**dict.fromkeys(ANSWERED, 200), **dict.fromkeys(GONE, 410)}
    expected |= dict.fromkeys(UNKNOWN, 404)
    for path, status in expected.items():
        for _ in range(2):  # the second time from each app's response cache, if cacheable
            a, b = (
                await fast.client.get(path, headers=headers),
                await route.client.get(path, headers=headers),
            )
            assert a.status_code == status, (path, a.text)
            assert answer(a) == answer(b), path
    for path in LEFT_TO_FASTAPI:
        a, b = (
            await fast.client.get(path, headers=headers),
            await route.client.get(path, headers=headers),
        )
        assert answer(a) == answer(b), path
    # The fast path answered every plain id itself; FastAPI saw only the rest.
    assert not set(fast.routed) & set(expected)
    assert set(route.routed) >= set(expected)
    assert {unquote(p) for p in LEFT_TO_FASTAPI} <= set(fast.routed)


async def test_invalid_ids_keep_fastapis_validation_envelope(sides):
    fast, _ = sides
    for path in ("/tracks/-1", "/tracks/abc"):
        r = await fast.client.get(path)
        assert r.status_code == 422
        assert r.json()["error"] == "invalid_request" and "track_id" in r.json()["detail"]


async def test_fast_path_counts_and_logs_under_the_route(sides):
    fast, route = sides
    for path in (ANSWERED[0], GONE[0], UNKNOWN[0], "/tracks/-1"):
        await fast.client.get(path)
        await route.client.get(path)

    def detail_lines(text: str) -> list[str]:
        return sorted(
            line
            for line in text.splitlines()
            if line.startswith("plyr_api_requests_total") and 'route="/tracks/{track_id}"' in line
        )

    fast_lines = detail_lines((await fast.client.get("/metrics")).text)
    assert fast_lines == detail_lines((await route.client.get("/metrics")).text)
    matches = [re.search(r'status="(\d+)"', line) for line in fast_lines]
    assert None not in matches, fast_lines
    assert {m.group(1) for m in matches if m is not None} == {
        "200",
        "404",
        "410",
        "422",
    }


async def test_head_and_other_methods_are_left_to_fastapi(sides):
    fast, route = sides
    path = ANSWERED[0]
    for method in ("HEAD", "POST", "OPTIONS"):
        same = {"Origin": ORIGIN, "X-Request-Id": "same"}
        a = await fast.client.request(method, path, headers=same)
        b = await route.client.request(method, path, headers=same)
        assert answer(a) == answer(b), method
    assert path in fast.routed


def test_parse_track_path():
    assert parse_track_path("/tracks/42") == 42
    assert parse_track_path("/tracks/007") == 7
    assert parse_track_path("/tracks/" + "9" * 18) == int("9" * 18)
    for path in ("/tracks/", "/tracks/-1", "/tracks/4 2", "/tracks/²", "/tracks/42/", "/track/4"):
        assert parse_track_path(path) is None, path
    assert parse_track_path("/tracks/" + "9" * 19) is None


async def test_permalinks_are_answered_around_the_response_cache(sides):
    fast, route = sides
    fast_cache, route_cache = (s.client._transport.app.state.response_cache for s in (fast, route))
    assert fast_cache.live and route_cache.live
    for _ in range(2):
        assert (await fast.client.get(ANSWERED[0])).status_code == 200
        assert (await route.client.get(ANSWERED[0])).status_code == 200
    assert (fast_cache.hits, fast_cache.misses, len(fast_cache)) == (0, 0, 0)
    assert route_cache.hits == 1 and len(route_cache) == 1  # the same answer, cached
