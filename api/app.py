"""The FastAPI application factory: routers, errors, CORS, metrics, access logs, audio."""

from __future__ import annotations

import gc
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg import AsyncConnection
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.audio import AudioCache
from api.blobstore import BlobStore, open_blob_store
from api.cache import ReadModelListener, ResponseCache, ResponseCacheApp
from api.deps import Pool
from api.errors import install_error_handlers
from api.fastpath import TrackDetailFastPath
from api.fetch import UpstreamFetcher
from api.headers import SecurityHeaders
from api.inputs import InputGuard
from api.routers import (
    activity,
    albums,
    artists,
    audio,
    lists,
    meta,
    stubs,
    tracks,
    xrpc,
)
from api.visibility import detect_visibility
from kernel.config import Settings

__all__ = ["READ_ONLY_ROLE", "create_app", "open_api_pool"]

log = logging.getLogger("api.access")

READ_ONLY_ROLE = "plyr_api_ro"


async def _configure_api_connection(conn: AsyncConnection) -> None:
    """Set up a fresh API connection: ``json``/``jsonb`` columns decoded with orjson
    (several per track row), and the read-only role when this login may take it (0009)."""
    set_json_loads(orjson.loads, conn)
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s)"
        " AND pg_has_role(current_user, %s, 'MEMBER')",
        (READ_ONLY_ROLE, READ_ONLY_ROLE),
    )
    row = await cur.fetchone()
    if row and row[0]:
        await conn.execute(f"SET ROLE {READ_ONLY_ROLE}")


async def open_api_pool(url: str, *, max_size: int = 10) -> AsyncConnectionPool:
    """A pool for the API whose connections act as the read-only role ``plyr_api_ro``."""
    pool = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        open=False,
        kwargs={"autocommit": True},
        configure=_configure_api_connection,
    )
    await pool.open(wait=True, timeout=30)
    return pool


MAX_BODY_BYTES = 256 * 1024
"""Largest request body we read (the biggest legitimate one, 500 DIDs, is ~30 KB)."""


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, before anything buffers them.

    A declared ``Content-Length`` is checked up front; a chunked body is counted as it
    arrives and cut off at the limit.
    """

    def __init__(self, app: ASGIApp, *, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        bodyless = scope.get("http_version") in ("1.0", "1.1")
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.limit:
                    await _too_large(send, self.limit)
                    return
                bodyless = bodyless and int(value) == 0
            elif name == b"transfer-encoding":
                bodyless = False
        if bodyless:
            # HTTP/1.x without Content-Length or Transfer-Encoding: the body is empty by
            # definition (RFC 9112 §6.3), nothing to count (most GETs; saves two wrappers).
            await self.app(scope, receive, send)
            return
        seen = 0
        refused = False
        started = False

        async def counted_receive() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Answer now and tell the app the client is gone: it stops reading.
                    refused = True
                    if not started:
                        await _too_large(send, self.limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if not refused:  # once we answered 413, the app's own answer is dropped
                started = started or message["type"] == "http.response.start"
                await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not refused:
                raise


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps(
        {"detail": f"request body larger than {limit} bytes", "error": "payload_too_large"}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class AccessLog:
    """Request log line and Prometheus metrics, as plain ASGI middleware.

    Plain ASGI rather than ``@app.middleware("http")``: that wrapper runs every response
    through an extra task and memory stream, which cost more than the queries themselves.
    Timing runs until the last body byte is sent (streamed audio included).
    """

    def __init__(self, app: ASGIApp, *, requests: Counter, latency: Histogram) -> None:
        self.app = app
        self.requests = requests
        self.latency = latency
        self._labelled: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def _children(self, method: str, route: str, status: int) -> tuple[Counter, Histogram]:
        """The labelled counter and histogram: ``labels()`` takes a lock and builds its key
        on every call, so the children (the same objects it returns) are kept here."""
        key = (method, route, status)
        found = self._labelled.get(key)
        if found is None:
            found = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._labelled[key] = found
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            elapsed = time.perf_counter() - started
            # The matched route's template keeps the label set small (not the raw path).
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            counter, histogram = self._children(method, route, status)
            counter.inc()
            histogram.observe(elapsed)
            log.info(
                "request",
                extra={
                    "method": method,
                    "path": scope["path"],
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                },
            )


class _CacheCollector(Collector):
    """The response cache's counters, labelled with this worker's process id."""

    def __init__(self, cache: ResponseCache) -> None:
        self.cache = cache
        self.worker = str(os.getpid())

    def collect(self) -> Iterable[Metric]:
        c = self.cache
        for name, doc, value in (
            ("plyr_api_cache_hits", "Responses served from the response cache", c.hits),
            ("plyr_api_cache_misses", "Cacheable requests the cache could not answer", c.misses),
            ("plyr_api_cache_invalidations", "Read-model change notifications", c.generation),
        ):
            family = CounterMetricFamily(name, doc, labels=["worker"])
            family.add_metric([self.worker], value)
            yield family
        entries = GaugeMetricFamily(
            "plyr_api_cache_entries", "Responses held by the cache", labels=["worker"]
        )
        entries.add_metric([self.worker], len(c))
        yield entries
        held = GaugeMetricFamily(
            "plyr_api_cache_bytes", "Response bodies held by the cache", labels=["worker"]
        )
        held.add_metric([self.worker], c.bytes)
        yield held


def create_app(
    settings: Settings,
    *,
    database_url: str | None = None,
    pool: AsyncConnectionPool | None = None,
    blob_store: BlobStore | None = None,
    fetcher_overrides: dict[str, Any] | None = None,
    fast_paths: bool = True,
) -> FastAPI:
    """The API; uses ``pool`` if given, else opens a read-only pool on ``database_url``.

    ``blob_store`` defaults to the configured one (S3 bucket, else the local blob dir);
    ``fetcher_overrides`` passes test-only options to :class:`api.fetch.UpstreamFetcher`;
    ``fast_paths=False`` leaves every request to the FastAPI routes (tests compare the two).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own: AsyncConnectionPool | None = None
        if pool is None:
            url = database_url or settings.api_database_url or settings.database_url
            if url is None:
                raise RuntimeError("create_app needs a pool or a database_url")
            own = await open_api_pool(url, max_size=settings.api_pool_size)
            app.state.pool = own
        async with app.state.pool.connection() as conn:
            app.state.visibility = await detect_visibility(conn)
        listener: ReadModelListener | None = None
        if cache is not None:
            listener = ReadModelListener(app.state.pool.conninfo, cache)
            await listener.start()
        async with httpx.AsyncClient(http2=False, trust_env=False) as client:
            fetcher = UpstreamFetcher(
                client=client,
                trusted_hosts=frozenset(settings.trusted_hosts),
                max_bytes=settings.upstream_max_bytes,
                timeout_s=float(settings.upstream_timeout_s),
                **(fetcher_overrides or {}),
            )
            store = blob_store or open_blob_store(
                blob_dir=settings.blob_path,
                s3_bucket=settings.s3_bucket,
                s3_endpoint_url=settings.s3_endpoint_url,
                presign_seconds=settings.s3_presign_seconds,
            )
            app.state.audio = AudioCache(
                store=store,
                fetcher=fetcher,
                plc_url=settings.plc_url,
                audio_origins=settings.audio_origins,
            )
            # What startup built (modules, routes, pool, schemas) lives as long as the
            # process: out of the collector's sight, a full collection no longer walks it.
            # Those walks paused a busy worker for 50-100 ms every second or so, since
            # objects of requests in flight survive into the oldest generation.
            gc.collect()
            gc.freeze()
            try:
                yield
            finally:
                gc.unfreeze()
                if listener is not None:
                    await listener.close()
                if own is not None:
                    await own.close()

    app = FastAPI(
        title="plyr appview",
        description=(
            "Open appview for plyr music records on the AT Protocol. The REST routes answer "
            "with plyr.fm's paths and JSON shapes; fields only plyr.fm's own database knows are "
            "present with null/default values (see each route). XRPC queries for third-party "
            "apps live under /xrpc/fm.plyr.appview.*. Errors: {detail, error} (REST), "
            "{error, message} (XRPC)."
        ),
        version="0.1.0",
        lifespan=lifespan,
        # The API reports through Prometheus (/metrics) and its access log. FastAPI's own
        # OpenTelemetry hooks would only act if a global provider were configured, yet
        # asked for the providers on every request (~5% of a permalink's CPU).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.public_url = settings.public_url
    if pool is not None:
        app.state.pool = pool
    install_error_handlers(app)
    cache: ResponseCache | None = None
    if settings.api_cache_entries > 0:
        cache = ResponseCache(
            max_entries=settings.api_cache_entries,
            max_bytes=settings.api_cache_mb << 20,
            ttl_s=float(settings.api_cache_ttl_s),
        )
        app.add_middleware(ResponseCacheApp, cache=cache)
    app.state.response_cache = cache
    if fast_paths:
        # Outside the response cache, inside CORS, access log and metrics (they wrap it as
        # they wrap the router). Not cached: a permalink costs ~0.2 ms of CPU to answer,
        # less than the cache costs at its hit rate (18-25% in bench/bench_api.py, whose
        # detail p95 was 14 ms through the cache and 9-10 ms around it), and its entries
        # would push aggregate pages out of the cache.
        app.add_middleware(TrackDetailFastPath, route=_route(tracks.router, tracks.get_track))
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_origins),
        allow_credentials=True,
        allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=["Content-Range", "Accept-Ranges", "ETag", "Content-Length"],
    )

    registry = CollectorRegistry()
    requests = Counter(
        "plyr_api_requests", "API requests", ["method", "route", "status"], registry=registry
    )
    latency = Histogram(
        "plyr_api_request_seconds",
        "API request latency",
        ["method", "route"],
        buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        registry=registry,
    )

    if cache is not None:
        registry.register(_CacheCollector(cache))

    app.add_middleware(BodyLimit)
    app.add_middleware(InputGuard)  # NUL / lone surrogates: 400 before any route (api/inputs.py)
    app.add_middleware(AccessLog, requests=requests, latency=latency)
    app.add_middleware(SecurityHeaders)  # outermost of ours: every response, 500s included

    @app.get("/health", tags=["meta"])
    async def health(pool: Pool) -> dict[str, Any]:
        """Liveness plus a database round trip."""
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
        return {"status": "ok"}

    @app.get("/metrics", tags=["meta"], include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus metrics of this API process."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    for module in (tracks, artists, albums, lists, activity, meta, audio, stubs, xrpc):
        app.include_router(module.router)
    app.include_router(artists.users_router)
    _include_optional(app)
    return app


def _route(router: Any, endpoint: Any) -> APIRoute:
    """The route of ``router`` that calls ``endpoint``."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.endpoint is endpoint:
            return route
    raise LookupError(f"no route for {endpoint.__name__}")


def _include_optional(app: FastAPI) -> None:
    """Routers owned by the search/moderation work, included once they exist."""
    import importlib

    for name in ("api.routers.search", "api.routers.moderation"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        app.include_router(module.router)
