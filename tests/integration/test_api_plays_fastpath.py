"""``POST /tracks/{id}/play``: the ASGI fast path answers exactly as the FastAPI route does.

Two apps over the same read models and the same log (``test_api_plays``' world: a
visible track, a taken-down one): one with the fast path, one with ``fast_paths=False``.
Every answer is compared (status, body, headers; a minted cookie's random value is the
one part that differs), the reports each side put on the log are compared, and a recorder
inside the fast path shows which requests reached the FastAPI router.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.middleware import Middleware

from api.app import create_app
from api.fastpath import parse_play_path
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
from tests.integration.test_api_fastpath import RouterCalls
from tests.integration.test_api_plays import ALICE, CAROL, GONE, ORIGIN, PLAYS, SONG, created

PLAY = f"/tracks/{track_id(SONG)}/play"
HIDDEN = f"/tracks/{track_id(GONE)}/play"
UNKNOWN = ["/tracks/12345/play", "/tracks/0/play", "/tracks/" + "9" * 18 + "/play"]
# Not plain decimal digits (or too long for the fast path): FastAPI's own answers.
LEFT_TO_FASTAPI = [
    "/tracks/-1/play",
    "/tracks/abc/play",
    "/tracks/" + "9" * 19 + "/play",
    PLAY + "/",
    f"/tracks/{track_id(SONG)}/plays",
]
BODIES: list[dict[str, Any]] = [
    {},
    {"json": {"ref": "share123"}},
    {"json": None},
    {"content": b"{not json", "headers": {"content-type": "application/json"}},
    {"content": b"[1, 2]"},
    {"content": b'{"ref": 5}'},
]
_COOKIE_VALUE = re.compile(r"plyr_play_id=[A-Za-z0-9_-]+")


@dataclass
class Side:
    app: Any
    client: httpx.AsyncClient
    routed: list[str]


@dataclass
class Sides:
    fast: Side
    route: Side
    log: PostgresLog

    async def reports(self) -> list[Envelope]:
        out = []
        for partition in range(self.log.partitions(PLAYS)):
            messages = await self.log.read(PLAYS, partition, 0, max_messages=1000, timeout=0)
            out += [Envelope.from_bytes(m.value) for m in messages]
        return out


@pytest.fixture
async def sides(pg_url: str) -> AsyncIterator[Sides]:
    """(fast path, FastAPI route only) over one pool and one log, CORS on."""
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
    settings = Settings(cors_origins=(ORIGIN,))
    out = []
    async with AsyncExitStack() as stack:
        for fast in (True, False):
            app = create_app(settings, pool=pool, log=log, fast_paths=fast)
            routed: list[str] = []
            app.user_middleware.append(Middleware(RouterCalls, seen=routed))  # innermost
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://api"
            )
            out.append(Side(app, await stack.enter_async_context(client), routed))
        yield Sides(out[0], out[1], log)
    await pool.close()


def answer(r: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = [(k, _COOKIE_VALUE.sub("plyr_play_id=*", v)) for k, v in r.headers.multi_items()]
    return r.status_code, r.content, sorted(headers)


async def both(sides: Sides, path: str, **kwargs: Any) -> tuple[httpx.Response, httpx.Response]:
    """POST on each side, each time as a new browser unless a cookie header is given."""
    out = []
    for side in (sides.fast, sides.route):
        side.client.cookies.clear()  # httpx keeps what the last answer set
        out.append(await side.client.post(path, **kwargs))
    return out[0], out[1]


async def project(sides: Sides) -> None:
    projector = PlaysProjector()
    pool = sides.fast.app.state.pool
    for partition in range(sides.log.partitions(PLAYS)):
        offset = await load_offset(pool, "plays", PLAYS, partition)
        messages = await sides.log.read(PLAYS, partition, offset, max_messages=1000, timeout=0)
        if messages:
            await apply_batch(pool, projector, messages, offset)


@pytest.mark.parametrize("origin", [None, ORIGIN, "https://evil.example"])
async def test_fast_path_answers_as_the_route(sides, origin):
    base = {"X-Request-Id": "same"} | ({"Origin": origin} if origin else {})
    expected = {PLAY: 200, HIDDEN: 410} | dict.fromkeys(UNKNOWN, 404)
    for path, status in expected.items():
        for body in BODIES:
            headers = base | body.get("headers", {})
            kwargs = {k: v for k, v in body.items() if k != "headers"}
            a, b = await both(sides, path, headers=headers, **kwargs)
            assert answer(a) == answer(b), (path, body, a.text)
            if "content" not in body:
                assert a.status_code == status, (path, body, a.text)
    # A returning browser (its cookie) gets no new one, on either side.
    a, b = await both(sides, PLAY, headers=base | {"cookie": "plyr_play_id=" + "x" * 22})
    assert answer(a) == answer(b) and "set-cookie" not in a.headers
    for path in LEFT_TO_FASTAPI:
        a, b = await both(sides, path, headers=base)
        assert answer(a) == answer(b), path
    # The fast path answered every plain id itself; FastAPI saw only the rest.
    assert not set(sides.fast.routed) & set(expected)
    assert set(sides.route.routed) >= set(expected)
    assert set(LEFT_TO_FASTAPI) <= set(sides.fast.routed)


async def test_both_sides_put_the_same_reports_on_the_log_and_count_alike(sides):
    cookie = {"cookie": "plyr_play_id=" + "c" * 22}
    a, b = await both(sides, PLAY, json={"ref": "r1"}, headers=cookie)
    assert a.json() == b.json() == {"play_count": 0}
    reports = await sides.reports()
    assert len(reports) == 2 and reports[0].play["id"] != reports[1].play["id"]
    shapes = {
        (r.kind, r.uri, r.play["listener"], r.play["duration"], r.play["ref"]) for r in reports
    }
    assert shapes == {("play.reported", SONG, "cookie:" + "c" * 22, 200, "r1")}
    await project(sides)  # one counted play (the second is inside its window)
    a, b = await both(sides, PLAY)
    assert a.json() == b.json() == {"play_count": 1}


async def test_rate_limit_and_a_missing_log_answer_alike(sides):
    for side in (sides.fast, sides.route):
        side.app.state.play_limiter = RateLimiter(rate=0.01, burst=1)
    a, b = await both(sides, PLAY, headers={"X-Request-Id": "same"})
    assert a.status_code == 200 and answer(a) == answer(b)
    a, b = await both(sides, PLAY, headers={"X-Request-Id": "same"})
    assert a.status_code == 429 and answer(a) == answer(b)
    assert int(a.headers["retry-after"]) >= 1
    for side in (sides.fast, sides.route):
        side.app.state.play_limiter = None
        side.app.state.log = None
    a, b = await both(sides, PLAY, headers={"X-Request-Id": "same"})
    assert a.status_code == 503 and answer(a) == answer(b)


async def test_fast_path_counts_under_the_route(sides):
    for path in (PLAY, HIDDEN, UNKNOWN[0], "/tracks/-1/play"):
        await both(sides, path)

    def play_lines(text: str) -> list[str]:
        return sorted(
            line
            for line in text.splitlines()
            if line.startswith("plyr_api_requests_total")
            and 'route="/tracks/{track_id}/play"' in line
        )

    fast_lines = play_lines((await sides.fast.client.get("/metrics")).text)
    assert fast_lines == play_lines((await sides.route.client.get("/metrics")).text)
    statuses = {m.group(1) for line in fast_lines if (m := re.search(r'status="(\d+)"', line))}
    assert statuses == {"200", "404", "410", "422"}


def test_parse_play_path():
    assert parse_play_path("/tracks/42/play") == 42
    assert parse_play_path("/tracks/007/play") == 7
    for path in ("/tracks/42", "/tracks/42/play/", "/tracks/-1/play", "/tracks//play", "/play"):
        assert parse_play_path(path) is None, path
    assert parse_play_path("/tracks/" + "9" * 19 + "/play") is None
