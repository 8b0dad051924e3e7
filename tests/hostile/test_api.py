"""Hostile requests against every GET route of the API, over ASGI, on a real database.

The app is :func:`api.app.create_app` on a migrated PostgreSQL holding the read models
of ``tests/integration/test_api_routes.py`` (projected by the real projectors). Every
path parameter and every declared query parameter of every route is filled with hostile
values (SQL, ``LIKE`` and regex metacharacters, NUL, invalid UTF-8, huge strings,
numbers out of range); headers and bodies are oversized. No answer may be a 5xx, and
every 4xx carries the error envelope with its code: the code is the rejection's class.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import strategies as st

from api.app import create_app
from kernel.config import Settings
from kernel.db import open_pool
from tests.hostile.conftest import Tally, drive, examples
from tests.integration.test_api_routes import project

ENTRY = "api (ASGI)"

HOSTILE_TEXT = [
    "' OR 1=1 --", "'; DROP TABLE track; --", '"', "\\", "%", "_", "%_%", "\\%", "[a-", "(",
    ".*", "a{99999}", "(a+)+$", "*", "?", "\x00", "a\x00b", "é", "e\u0301", "🎵", "\u202e",
    "", " ", "\t\n", "-1", "0", "99999999999999999999999", "9223372036854775808",
    "-9223372036854775809", "1e309", "NaN", "null", "[]", "{}", "true",
    "at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/fm.plyr.track/a\x00", "at://", "did:plc:",
    "did:web:169.254.169.254", "../../etc/passwd", "%2e%2e%2f", "a" * 10_000,
]  # fmt: skip
HOSTILE_BYTES = [b"\xff\xfe", b"\xc0\x80", b"\xed\xa0\x80", b"a\x80b", b"\xf4\x90\x80\x80"]


def encoded(value: str | bytes, limit: int = 15_000) -> str:
    """Percent-encoded UTF-8 (or raw bytes, e.g. invalid UTF-8) for a path or query.

    At most ~15,000 characters: several go in one URL, and httpx refuses URLs past 64 KiB
    (as servers refuse long request lines).
    """
    raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    out = quote(raw, "")
    while len(out) > limit:
        raw = raw[: len(raw) // 2]
        out = quote(raw, "")
    return out


hostile_values = (
    st.sampled_from(HOSTILE_TEXT)
    | st.sampled_from(HOSTILE_BYTES)
    | st.text(max_size=60)
    | st.binary(max_size=30)
    | st.integers().map(str)
    | st.text(min_size=1, max_size=3).map(lambda s: s * 5000)
)


def get_routes(app: Any) -> list[tuple[str, list[str]]]:
    """(path template, query parameter names) of every GET route in the OpenAPI schema."""
    out = []
    for path, methods in app.openapi()["paths"].items():
        if "get" in methods:
            params = methods["get"].get("parameters", [])
            out.append((path, [p["name"] for p in params if p["in"] == "query"]))
    assert len(out) > 30, out  # every router is in
    return sorted(out)


def fill(template: str, value: str) -> str:
    return re.sub(r"\{[^}]+\}", value, template)


class Api:
    def __init__(self, client: httpx.AsyncClient, routes: list[tuple[str, list[str]]]) -> None:
        self.client = client
        self.routes = routes

    async def case(self, tally: Tally, kind: str, method: str, url: str, **kw: Any) -> int:
        r = await self.client.request(method, url, **kw)
        # 501: a documented "not implemented" answer (e.g. oEmbed formats other than JSON).
        ok = r.status_code < 500 or r.status_code == 501
        assert ok, f"{method} {url[:200]} -> {r.status_code}: {r.text[:500]}"
        assert r.headers.get("x-content-type-options") == "nosniff", url[:200]
        if r.status_code >= 400:
            body = r.json()
            code = body.get("error")
            assert isinstance(code, str) and code, f"{url[:200]}: no error code in {body}"
            assert body.get("detail") or body.get("message"), f"{url[:200]}: no message"
            outcome = f"rejected {r.status_code} {code}"
        else:
            outcome = f"answered {r.status_code}"
        tally.note(ENTRY, f"{kind} → {outcome}")
        return r.status_code


@pytest.fixture
async def api(pg_url: str) -> AsyncIterator[Api]:
    pool = await open_pool(pg_url)
    await project(pool)
    app = create_app(Settings(), pool=pool)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://api") as client,
    ):
        yield Api(client, get_routes(app))
    await pool.close()


async def test_every_route_with_hostile_path_and_query_values(api: Api, tally: Tally) -> None:
    routes = [r for r in api.routes if not r[0].startswith(("/docs", "/redoc", "/openapi"))]

    async def case(spec: tuple[int, str | bytes, bool]) -> None:
        index, value, in_query = spec
        template, params = routes[index % len(routes)]
        value_enc = encoded(value)
        url = fill(template, value_enc)
        if in_query and params:
            # httpx refuses URLs past 64 KiB: a shorter value when there are many parameters
            per = encoded(value, 50_000 // len(params))
            url += "?" + "&".join(f"{p}={per}" for p in params)
        kind = "query" if in_query and params else "path"
        if "{" not in template and kind == "path":
            url += f"?q={value_enc}&cursor={value_enc}&limit={value_enc}"
            kind = "query"
        await api.case(tally, f"hostile {kind} value", "GET", url)

    spec = st.tuples(st.integers(0, 10_000), hostile_values, st.booleans())
    await drive(spec, case, max_examples=examples(3000))


async def test_corpus_values_on_every_route(api: Api, tally: Tally) -> None:
    """Each corpus value in each path parameter and each query parameter of each route."""
    values: list[str | bytes] = [*HOSTILE_TEXT, *HOSTILE_BYTES]
    if not __import__("tests.hostile.conftest", fromlist=["FULL"]).FULL:
        values = values[::4]
    for template, params in api.routes:
        if template.startswith(("/docs", "/redoc", "/openapi")):
            continue
        for value in values:
            enc = encoded(value)
            url = fill(template, enc)
            query = "&".join(f"{p}={enc}" for p in params)
            await api.case(tally, "corpus value", "GET", f"{url}?{query}" if query else url)


async def test_oversized_headers_query_and_bodies(api: Api, tally: Tally) -> None:
    await api.case(tally, "huge query string", "GET", "/tracks/?q=" + "a" * 60_000)
    await api.case(tally, "many query params", "GET", "/tracks/?" + "&".join(["a=1"] * 10_000))
    await api.case(tally, "huge header", "GET", "/tracks/", headers={"x-junk": "a" * 100_000})
    await api.case(
        tally, "many headers", "GET", "/tracks/", headers={f"x-h{i}": "v" for i in range(500)}
    )
    await api.case(
        tally, "hostile cookie", "GET", "/auth/me", headers={"cookie": "session=' OR 1=1; a=\x7f"}
    )
    await api.case(tally, "huge body", "POST", "/artists/batch", content=b"[" + b"1," * 300_000)
    await api.case(
        tally, "lying content-length", "POST", "/artists/batch",
        content=b"[]", headers={"content-length": "99999999999999999999"},
    )  # fmt: skip
    for body in (
        b"",
        b"{",
        b"null",
        b'"x"',
        b"[1]",
        b"[null]",
        b'["\\u0000"]',
        b'["\\ud800"]',
        b"\xff\xfe",
        b"[" * 10_000 + b"]" * 10_000,
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
    ):
        await api.case(
            tally, "malformed JSON body", "POST", "/artists/batch",
            content=body, headers={"content-type": "application/json"},
        )  # fmt: skip


async def test_post_routes_with_hostile_path_values_and_bodies(pg_url: str, tally: Tally) -> None:
    """The POSTs the web client sends from public pages (a play report, answered by the fast
    path for digit ids; a share-link click; an avatar refresh), with a log to report to."""
    from kernel.log.postgres import PostgresLog

    pool = await open_pool(pg_url)
    await project(pool)
    log = PostgresLog(pool, partitions=2, topics=["plyr.plays"])
    await log.start()
    app = create_app(Settings(play_burst=1_000_000), pool=pool, log=log)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    templates = (
        "/tracks/{track_id}/play",
        "/tracks/{track_id}/ref/{code}/click",
        "/artists/{did}/refresh-avatar",
    )
    values: list[str | bytes] = [*HOSTILE_TEXT, *HOSTILE_BYTES, "1", "0"]
    bodies = (b"", b"{", b"null", b'{"ref": 1}', b'{"ref": "\\u0000"}', b"\xff\xfe",
              b'{"ref": "' + b"a" * 200_000 + b'"}', b"[" * 10_000 + b"]" * 10_000)  # fmt: skip
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://api") as client,
        ):
            api = Api(client, [])
            known = str((await client.get("/tracks/")).json()["tracks"][0]["id"])
            for template in templates:
                for value in values:
                    url = fill(template, encoded(value))
                    await api.case(tally, "hostile POST path value", "POST", url)
                for body in bodies:  # on a track that exists, so the body is read
                    await api.case(
                        tally, "hostile POST body", "POST", fill(template, known),
                        content=body, headers={"content-type": "application/json"},
                    )  # fmt: skip
    finally:
        await log.close()
        await pool.close()
