"""The FastAPI application factory."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from psycopg_pool import AsyncConnectionPool

from api.deps import Pool
from api.errors import install_error_handlers
from api.routers import tracks
from plyr_appview.config import Settings

__all__ = ["create_app"]

log = logging.getLogger("api.access")


def create_app(
    settings: Settings, *, database_url: str | None = None, pool: AsyncConnectionPool | None = None
) -> FastAPI:
    """The API; uses ``pool`` if given, else opens one on ``database_url`` for its lifetime."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if pool is not None:
            yield
            return
        if database_url is None:
            raise RuntimeError("create_app needs a pool or a database_url")
        own = AsyncConnectionPool(
            database_url, min_size=1, max_size=10, open=False, kwargs={"autocommit": True}
        )
        await own.open(wait=True, timeout=30)
        app.state.pool = own
        try:
            yield
        finally:
            await own.close()

    app = FastAPI(
        title="plyr appview",
        description="Open appview for plyr music records on the AT Protocol.",
        version="0.1.0",
        lifespan=lifespan,
    )
    if pool is not None:
        app.state.pool = pool
    install_error_handlers(app)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_origins),
        allow_credentials=True,
        allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
        allow_headers=["*"],
    )

    @app.middleware("http")
    async def access_log(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        log.info(
            "request",
            extra={
                "method": request.method,
                "path": request.url.path,
                "status": response.status_code,
                "ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        return response

    @app.get("/health", tags=["meta"])
    async def health(pool: Pool) -> dict[str, Any]:
        """Liveness plus a database round trip."""
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
        return {"status": "ok"}

    app.include_router(tracks.router)
    return app
