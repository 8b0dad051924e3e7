"""Security hygiene of the API (issue #12 item 9): a read-only database role, no secrets
in logs, and the response headers (nosniff everywhere, a CSP on HTML, no traceback in 500s).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from api.app import create_app
from kernel.config import Settings

SECRETS = ("s3cr3t-db-passw0rd", "bearer-t0ken-abc123", "c00kie-value-xyz789")


def with_password(url: str) -> str:
    """``url`` with a password in it (trust auth here: PostgreSQL ignores it)."""
    parts = urlsplit(url)
    netloc = f"{parts.username or 'postgres'}:{SECRETS[0]}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


@pytest.fixture
async def app_client(pg_url: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The API on its own pool (as deployed: ``database_url``, the read-only role)."""
    app = create_app(Settings(api_cache_entries=0), database_url=with_password(pg_url))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://api") as client,
    ):
        yield app, client


async def test_a_write_through_the_api_pool_fails(app_client) -> None:
    app, client = app_client
    async with app.state.pool.connection() as conn:
        cur = await conn.execute("SELECT current_user")
        assert (await cur.fetchone())[0] == "plyr_api_ro"
        for statement in (
            "INSERT INTO artist (did) VALUES ('did:plc:aaaaaaaaaaaaaaaaaaaaaaaa')",
            "DELETE FROM track",
            "UPDATE projector_offset SET next_offset = 0",
            "CREATE TABLE evil (x int)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute(statement)
    assert (await client.get("/health")).status_code == 200


async def test_no_secret_in_the_logs_of_startup_and_requests(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = create_app(Settings(api_cache_entries=0), database_url=with_password(pg_url))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://api") as client,
    ):
        headers = {"authorization": f"Bearer {SECRETS[1]}", "cookie": f"session={SECRETS[2]}"}
        for path in ("/health", "/tracks/", "/auth/me", "/nope", "/search/?q=hello"):
            await client.get(path, headers=headers)
    assert caplog.records, "nothing was logged: the check below would prove nothing"
    everything = "\n".join(
        f"{r.getMessage()} {r.__dict__!r} {r.exc_text or ''}" for r in caplog.records
    )
    for secret in SECRETS:
        assert secret not in everything, secret


async def test_nosniff_everywhere_and_csp_on_html(app_client) -> None:
    _, client = app_client
    for path in ("/docs", "/redoc"):
        r = await client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
    for path in ("/health", "/openapi.json", "/metrics", "/tracks/", "/nope", "/tracks/x"):
        r = await client.get(path)
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert "content-security-policy" not in r.headers or "html" in r.headers["content-type"]
    r = await client.post("/artists/batch", content=b"x" * 300_000)
    assert r.status_code == 413 and r.headers["x-content-type-options"] == "nosniff"


async def test_a_failing_route_answers_500_without_a_traceback(
    app_client, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    _, client = app_client
    assert (await client.get("/tracks/")).status_code == 200
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
        await admin.execute("DROP TABLE track CASCADE")
    r = await client.get("/tracks/")
    assert r.status_code == 500
    assert r.json() == {"detail": "internal error", "error": "internal"}
    assert r.headers["x-content-type-options"] == "nosniff"
    for leak in ("Traceback", "psycopg", "relation", "track", "File "):
        assert leak not in r.text
