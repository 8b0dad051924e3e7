"""``plyr-appview``: the command line. It only wires; the work lives in the packages."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass

import httpx
import uvicorn
from psycopg_pool import AsyncConnectionPool

from plyr_appview.config import ConfigError, Settings, load_settings
from plyr_appview.db import apply_migrations, database_url, open_pool
from plyr_appview.log import Log
from plyr_appview.runtime import configure_logging, open_log

__all__ = ["main"]

log = logging.getLogger("plyr_appview")


@dataclass
class Context:
    settings: Settings
    url: str
    pool: AsyncConnectionPool
    log: Log


@contextlib.asynccontextmanager
async def _context(settings: Settings, *, with_log: bool = True) -> AsyncIterator[Context]:
    url = database_url(settings)
    apply_migrations(url)
    pool = await open_pool(url, max_size=20)
    try:
        the_log = await open_log(settings, pool) if with_log else None
        try:
            yield Context(settings, url, pool, the_log)  # type: ignore[arg-type]
        finally:
            if the_log is not None:
                await the_log.close()
    finally:
        await pool.close()


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _ingest(ctx: Context, stop: asyncio.Event) -> None:
    from ingest.commits import CollectionFilter
    from ingest.firehose import FirehoseIngest

    async with httpx.AsyncClient() as http:
        consumer = FirehoseIngest(
            url=ctx.settings.firehose_url,
            keep=CollectionFilter.of(ctx.settings.collections),
            log=ctx.log,
            topic=ctx.settings.topic("repo"),
            pool=ctx.pool,
            plc_url=ctx.settings.plc_url,
            http=http,
        )
        await consumer.run(stop)


async def _project(ctx: Context, stop: asyncio.Event) -> None:
    from projectors.catalog import CatalogProjector
    from projectors.runner import run_projector

    await run_projector(ctx.pool, ctx.log, CatalogProjector(), ctx.settings.topic("repo"), stop)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the process-wide stop event rules."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve(ctx: Context, stop: asyncio.Event) -> None:
    from api.app import create_app

    app = create_app(ctx.settings, pool=ctx.pool)
    config = uvicorn.Config(
        app,
        host=ctx.settings.api_host,
        port=ctx.settings.api_port,
        log_config=None,
        lifespan="on",
    )
    server = _Server(config)
    serving = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await serving


async def _run_parts(settings: Settings, parts: Sequence[str]) -> None:
    async with _context(settings) as ctx:
        stop = _stop_event()
        jobs = {"ingest": _ingest, "project": _project, "serve": _serve}
        async with asyncio.TaskGroup() as group:
            for part in parts:
                group.create_task(jobs[part](ctx, stop))
            log.info("started", extra={"parts": list(parts), "log_backend": settings.log_backend})


async def _status(settings: Settings) -> None:
    async with _context(settings) as ctx, ctx.pool.connection() as conn:
        print("ingest cursors:")
        cur = await conn.execute("SELECT source, cursor, updated_at FROM ingest_cursor")
        for source, cursor, updated in await cur.fetchall():
            print(f"  {source}  cursor={cursor}  saved={updated.isoformat()}")
        print("projector offsets (next offset / end offset = lag):")
        cur = await conn.execute(
            "SELECT projector, topic, partition, next_offset FROM projector_offset"
            " ORDER BY projector, topic, partition"
        )
        for projector, topic, partition, next_offset in await cur.fetchall():
            end = await ctx.log.end_offset(topic, partition)
            print(
                f"  {projector} {topic}/{partition}: {next_offset} / {end}"
                f"  lag={max(0, end - next_offset)}"
            )
        print("rows:")
        for table in ("track", "artist", "repo_state", "dead_letter", "log_message"):
            cur = await conn.execute(f"SELECT count(*) FROM {table}")
            row = await cur.fetchone()
            print(f"  {table}: {row[0] if row else 0}")


def _migrate(settings: Settings) -> None:
    applied = apply_migrations(database_url(settings))
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="plyr-appview", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="ingest + projectors + API in one process")
    sub.add_parser("ingest", help="follow the firehose into the log")
    sub.add_parser("project", help="build the read models from the log")
    sub.add_parser("serve", help="serve the API")
    sub.add_parser("migrate", help="apply database migrations")
    sub.add_parser("status", help="cursors, offsets, lag and row counts")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "migrate":
        _migrate(settings)
    elif args.command == "status":
        asyncio.run(_status(settings))
    else:
        parts = ["ingest", "project", "serve"] if args.command == "run" else [args.command]
        asyncio.run(_run_parts(settings, parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
