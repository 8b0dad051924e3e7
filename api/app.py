"""The FastAPI application factory: pool, routers, error handlers and the middleware stack
(:mod:`api.middleware`, :mod:`api.metrics`, :mod:`api.cache`, :mod:`api.fastpath`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry
from psycopg import AsyncConnection
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from api.audio import AudioCache
from api.blobstore import BlobStore, open_blob_store
from api.cache import ReadModelListener, ResponseCache, ResponseCacheApp
from api.errors import install_error_handlers
from api.fastpath import TrackDetailFastPath
from api.headers import SecurityHeaders
from api.metrics import (
    CacheCollector,
    CacheGauges,
    metrics_registry,
    multiprocess_dir,
    request_metrics,
)
from api.middleware import AccessLog, BodyLimit, InputGuard
from api.radio import RotationCache
from api.routers import (
    activity,
    albums,
    artists,
    audio,
    charts,
    lists,
    meta,
    moderation,
    ops,
    plays,
    radio,
    search,
    stubs,
    tracks,
    xrpc,
)
from api.status import SampleRing, collect_status, histogram_buckets
from api.visibility import Visibility
from kernel.config import Settings
from kernel.fetch import UpstreamFetcher
from kernel.log import Log

__all__ = ["READ_ONLY_ROLE", "create_app", "open_api_pool"]

READ_ONLY_ROLE = "plyr_api_ro"

logger = logging.getLogger(__name__)


async def _sample_forever(app: FastAPI, interval: float, stop: asyncio.Event) -> None:
    """Keep the status ring and this worker's cache gauges current (see :mod:`api.status`),
    until ``stop`` is set. ``stop``, not only cancelling the task: a cancellation that lands
    inside a library call may be swallowed there, and the loop would then sleep on."""
    while not stop.is_set():
        if app.state.cache_gauges is not None:
            app.state.cache_gauges.publish()
        try:
            status = await collect_status(app.state.pool, app.state.log)
            registry = metrics_registry(app.state.metrics)
            buckets = histogram_buckets(registry.collect(), "plyr_api_request_seconds")
            app.state.status_ring.add(status, buckets)
        except Exception as exc:  # a sample missed is a gap in a chart, not a failure
            logger.warning("status sample failed", extra={"error": str(exc)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


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


def create_app(
    settings: Settings,
    *,
    database_url: str | None = None,
    pool: AsyncConnectionPool | None = None,
    blob_store: BlobStore | None = None,
    fetcher_overrides: dict[str, Any] | None = None,
    fast_paths: bool = True,
    log: Log | None = None,
) -> FastAPI:
    """The API; uses ``pool`` if given, else opens a read-only pool on ``database_url``.

    ``blob_store`` defaults to the configured one (S3 bucket, else the local blob dir);
    ``fetcher_overrides`` passes test-only options to :class:`kernel.fetch.UpstreamFetcher`;
    ``fast_paths=False`` leaves every request to the FastAPI routes (tests compare the two);
    ``log`` takes play reports (``POST /tracks/{id}/play``; 503 without one).
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
        app.state.visibility = Visibility()
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
                max_bytes=settings.blob_cache_max_bytes,
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
            stop_sampling = asyncio.Event()
            sampler = asyncio.create_task(
                _sample_forever(app, settings.status_sample_s, stop_sampling)
            )
            try:
                yield
            finally:
                stop_sampling.set()
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
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
    app.state.status_ring = SampleRing()
    app.state.radio = RotationCache()
    app.state.public_url = settings.public_url
    app.state.log = log
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
        # Play reports too (POSTs: never cached).
        app.add_middleware(
            TrackDetailFastPath,
            route=_route(tracks.router, tracks.get_track),
            play_route=_route(plays.router, plays.report_play),
        )
    # Outside the fast path and the cache (neither sees what no route can take), inside
    # CORS (browsers may read the 4xx).
    app.add_middleware(InputGuard)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_origins),
        allow_credentials=True,
        allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=["Content-Range", "Accept-Ranges", "ETag", "Content-Length"],
    )

    registry = CollectorRegistry()
    requests, latency = request_metrics(registry)
    app.state.metrics = registry
    app.state.cache_gauges = None
    if cache is not None:
        if multiprocess_dir() is None:
            registry.register(CacheCollector(cache))
        else:
            app.state.cache_gauges = CacheGauges(cache)

    app.add_middleware(BodyLimit)
    app.add_middleware(AccessLog, requests=requests, latency=latency)
    app.add_middleware(SecurityHeaders)  # outermost of ours: every response, 500s included

    for module in (
        ops, tracks, plays, artists, albums, lists, activity, meta, audio, charts, radio, stubs,
        xrpc,
    ):  # fmt: skip
        app.include_router(module.router)
    app.include_router(artists.users_router)
    app.include_router(search.router)
    app.include_router(moderation.router)
    return app


def _route(router: Any, endpoint: Any) -> APIRoute:
    """The route of ``router`` that calls ``endpoint``."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.endpoint is endpoint:
            return route
    raise LookupError(f"no route for {endpoint.__name__}")
