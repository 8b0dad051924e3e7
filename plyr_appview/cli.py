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

from kernel.config import ConfigError, Settings, load_settings
from kernel.db import apply_migrations, database_url, open_pool
from kernel.log import Log
from plyr_appview.runtime import (
    ApiWorkers,
    bind_api_sockets,
    configure_logging,
    open_log,
    uvicorn_config,
)

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
    """The live source (firehose or Jetstream), resync, labelers, and a first-start backfill."""
    from ingest.backfill import Backfill, BackfillOptions
    from ingest.commits import CollectionFilter
    from ingest.errors import BackfillError
    from ingest.firehose import FirehoseIngest
    from ingest.first_start import backfill_needed, initial_targets
    from ingest.handles import HandleVerifier
    from ingest.jetstream import JetstreamIngest
    from ingest.labels import LabelIngest
    from ingest.metrics import IngestMetrics, IngestStats, serve_from_env
    from ingest.repos import RepoStates
    from kernel.fetch import UpstreamFetcher
    from kernel.identity import DidResolver

    settings = ctx.settings
    keep = CollectionFilter.of(settings.collections)
    keep_known = CollectionFilter.of(settings.collections + settings.known_did_collections)
    repo_topic = settings.topic("repo")
    async with httpx.AsyncClient() as client:
        fetcher = UpstreamFetcher(client=client, trusted_hosts=frozenset(settings.trusted_hosts))
        states = RepoStates(ctx.pool)
        await states.load()
        resolver = DidResolver(fetcher, settings.plc_url)
        handles = HandleVerifier(fetcher, hosts=settings.handle_hosts)
        live: FirehoseIngest | JetstreamIngest
        if settings.source == "jetstream":
            live = JetstreamIngest(
                url=settings.jetstream_url,
                collections=settings.collections,
                log=ctx.log,
                topic=repo_topic,
                pool=ctx.pool,
                states=states,
                resolver=resolver,
                handles=handles,
                read_earlier=bool(settings.known_did_collections),
            )
        else:
            live = FirehoseIngest(
                url=settings.firehose_url,
                keep=keep,
                keep_known=keep_known,
                log=ctx.log,
                topic=repo_topic,
                pool=ctx.pool,
                plc_url=settings.plc_url,
                fetcher=fetcher,
                states=states,
                resolver=resolver,
                handles=handles,
            )
        backfill = Backfill(
            pool=ctx.pool,
            log=ctx.log,
            topic=repo_topic,
            keep=keep,
            keep_known=keep_known,
            states=states,
            resolver=resolver,
            fetcher=fetcher,
            handles=handles,
            options=BackfillOptions(per_host=settings.backfill_concurrency),
        )
        first_start = await backfill_needed(
            ctx.pool, "dids" if settings.backfill_dids else _discovery_run(settings), live.source
        )

        async def first_backfill() -> None:
            # Live first: its events for a repo are held while that repo is backfilled.
            connected = getattr(live, "connected", None)
            if isinstance(connected, asyncio.Event):
                waits = [asyncio.ensure_future(e.wait()) for e in (connected, stop)]
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for waiting in waits:
                    waiting.cancel()
                if stop.is_set():
                    return
            try:
                run, targets = await initial_targets(
                    fetcher, settings.firehose_url, settings.collections, settings.backfill_dids
                )
            except BackfillError as exc:  # the next start tries again (the run is unfinished)
                log.warning("backfill discovery failed", extra={"error": str(exc)})
                return
            await backfill.run(targets, run_source=run, stop=stop)

        metrics = IngestMetrics()
        stats = getattr(live, "stats", None)
        if isinstance(stats, IngestStats):
            metrics.add(stats)
        serve_from_env(metrics)  # PLYR_INGEST_METRICS_BIND=HOST:PORT serves /metrics
        async with asyncio.TaskGroup() as group:
            group.create_task(live.run(stop))
            group.create_task(backfill.resync_forever(stop))
            if first_start:
                group.create_task(first_backfill())
            for did in settings.labelers:
                labeler = LabelIngest(
                    did=did,
                    url=settings.labeler_urls.get(did),
                    log=ctx.log,
                    topic=settings.topic("labels"),
                    pool=ctx.pool,
                    fetcher=fetcher,
                    plc_url=settings.plc_url,
                )
                group.create_task(labeler.run(stop))


def _discovery_run(settings: Settings) -> str:
    from urllib.parse import urlsplit

    return urlsplit(settings.firehose_url).netloc


async def _backfill(settings: Settings, dids: Sequence[str]) -> int:
    """``plyr-appview backfill``: discover (or take ``dids``), sync every repo, report."""
    from ingest.backfill import Backfill, BackfillOptions
    from ingest.commits import CollectionFilter
    from ingest.first_start import initial_targets
    from ingest.handles import HandleVerifier
    from ingest.repos import RepoStates
    from kernel.fetch import UpstreamFetcher
    from kernel.identity import DidResolver

    async with _context(settings) as ctx, httpx.AsyncClient() as client:
        fetcher = UpstreamFetcher(client=client, trusted_hosts=frozenset(settings.trusted_hosts))
        stop = _stop_event()
        states = RepoStates(ctx.pool)
        await states.load()
        backfill = Backfill(
            pool=ctx.pool,
            log=ctx.log,
            topic=settings.topic("repo"),
            keep=CollectionFilter.of(settings.collections),
            keep_known=CollectionFilter.of(settings.collections + settings.known_did_collections),
            states=states,
            resolver=DidResolver(fetcher, settings.plc_url),
            fetcher=fetcher,
            handles=HandleVerifier(fetcher, hosts=settings.handle_hosts),
            options=BackfillOptions(per_host=settings.backfill_concurrency),
        )
        run, targets = await initial_targets(
            fetcher,
            settings.firehose_url,
            settings.collections,
            list(dids) or settings.backfill_dids,
        )
        result = await backfill.run(targets, run_source=run, stop=stop)
    print(
        f"backfill: {result.done} of {result.repos} repos synced ({result.skipped} without"
        f" records we keep), {result.failed} failed, {result.records} record changes published"
    )
    for reason, count in sorted(result.errors.items()):
        print(f"  failed: {reason}: {count}")
    return 0 if result.failed == 0 else 1


async def _project(ctx: Context, stop: asyncio.Event) -> None:
    from projectors.catalog import CatalogProjector
    from projectors.moderation import ModerationProjector, trusted_sources
    from projectors.runner import run_projector
    from projectors.search import SearchProjector

    repo, labels = ctx.settings.topic("repo"), ctx.settings.topic("labels")
    moderation = ModerationProjector(trusted_sources(ctx.settings))
    async with asyncio.TaskGroup() as group:
        group.create_task(run_projector(ctx.pool, ctx.log, CatalogProjector(), repo, stop))
        group.create_task(run_projector(ctx.pool, ctx.log, SearchProjector(), repo, stop))
        group.create_task(run_projector(ctx.pool, ctx.log, moderation, repo, stop))
        group.create_task(run_projector(ctx.pool, ctx.log, moderation, labels, stop))


async def _takedown(settings: Settings, subject: str, reason: str | None, negate: bool) -> int:
    from projectors.moderation import operator_label

    if settings.operator_did is None:
        print("takedown needs PLYR_OPERATOR_DID (the operator's DID)", file=sys.stderr)
        return 2
    try:
        envelope = operator_label(settings.operator_did, subject, negate=negate, reason=reason)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    async with _context(settings) as ctx:
        [position] = await ctx.log.append(
            settings.topic("labels"), [(envelope.key, envelope.to_bytes())]
        )
    action = "lifted" if negate else "applied"
    print(f"!takedown {action} on {subject} (labels/{position.partition}@{position.offset})")
    return 0


async def _project_group(ctx: Context, stop: asyncio.Event) -> None:
    from projectors.catalog import CatalogProjector
    from projectors.kafka_group import GroupWorker

    if ctx.settings.log_backend != "kafka":
        raise SystemExit("project --group needs the Kafka log (PLYR_LOG_BACKEND=kafka)")
    worker = GroupWorker(
        ctx.pool, ctx.settings.kafka_bootstrap, CatalogProjector(), ctx.settings.topic("repo")
    )
    await worker.run(stop)


async def _rebuild(settings: Settings, name: str, batch_size: int | None) -> None:
    from projectors.moderation import ModerationProjector, trusted_sources
    from projectors.rebuild import (
        REBUILD_BATCH,
        Progress,
        projector_for,
        projector_topics,
        rebuild,
    )

    # Moderation needs the configured labelers: which sources' labels count.
    projector = (
        ModerationProjector(trusted_sources(settings))
        if name == "moderation"
        else projector_for(name)
    )

    def show(progress: Progress) -> None:
        width = 30
        filled = width * progress.done // max(1, progress.total)
        sys.stderr.write(
            f"\r{name} [{'#' * filled}{'.' * (width - filled)}]"
            f" {progress.done}/{progress.total} events  {progress.rate:,.0f} events/s"
        )
        sys.stderr.flush()

    async with _context(settings) as ctx:
        topics = [ctx.settings.topic(t) for t in projector_topics(projector)]
        done = await rebuild(
            ctx.pool,
            ctx.log,
            projector,
            topics,
            batch_size=batch_size or REBUILD_BATCH,
            on_progress=show,
        )
    show(done)
    sys.stderr.write(f"\nrebuilt {name}: {done.done} events in {done.elapsed:.1f} s\n")


async def _dead_letters(settings: Settings, action: str, id_: int | None, name: str | None) -> int:
    from projectors.rebuild import list_dead_letters, replay_dead_letters

    async with _context(settings, with_log=action == "replay") as ctx:
        letters = await list_dead_letters(ctx.pool, projector=name, id=id_)
        if action == "list":
            for d in letters:
                print(
                    f"{d.id}\t{d.projector}\t{d.topic}/{d.partition}@{d.offset}"
                    f"\t{d.uri or '-'}\t{d.created_at.isoformat()}\t{d.reason}"
                )
            print(f"{len(letters)} dead letter(s)", file=sys.stderr)
            return 0
        applied, failing = await replay_dead_letters(ctx.pool, ctx.log, letters)
        print(f"replayed {applied}, still failing {failing}")
        return 1 if failing else 0


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the process-wide stop event rules."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve(ctx: Context, stop: asyncio.Event) -> None:
    from api.app import create_app

    settings = ctx.settings
    url = settings.api_database_url or ctx.url
    if settings.api_workers > 1:
        await _serve_workers(settings, url, stop)
        return
    # One worker: in this process, as each worker process runs it (api_worker_main): the
    # app opens its own pool acting as the read-only role (migration 0009) in its lifespan.
    app = create_app(settings, database_url=url)
    server = _Server(uvicorn_config(app, host=settings.api_host, port=settings.api_port))
    serving = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await serving


async def _serve_workers(settings: Settings, url: str, stop: asyncio.Event) -> None:
    """``api_workers`` processes accepting from sockets bound here; restarted if they die."""
    socks = bind_api_sockets(settings.api_host, settings.api_port, settings.api_workers)
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    workers = ApiWorkers(socks, url, settings.api_workers, str(level))
    workers.start()
    log.info("api workers started", extra={"workers": settings.api_workers})
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            if not stop.is_set():
                workers.check()
    finally:
        await asyncio.to_thread(workers.stop)


async def _run_parts(settings: Settings, parts: Sequence[str]) -> None:
    async with _context(settings) as ctx:
        stop = _stop_event()
        jobs = {
            "ingest": _ingest,
            "project": _project,
            "project-group": _project_group,
            "serve": _serve,
        }
        async with asyncio.TaskGroup() as group:
            for part in parts:
                group.create_task(jobs[part](ctx, stop))
            log.info("started", extra={"parts": list(parts), "log_backend": settings.log_backend})


async def _status(settings: Settings) -> None:
    async with _context(settings) as ctx, ctx.pool.connection() as conn:
        from ingest.metrics import ingest_status

        print("ingest sources (cursor, lag = now - latest event time, counters):")
        for line in await ingest_status(ctx.pool):
            print(line)
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
    backfill = sub.add_parser("backfill", help="sync whole repos (getRepo) into the log")
    backfill.add_argument("--did", action="append", default=[], help="only this repo (repeatable)")
    project = sub.add_parser("project", help="build the read models from the log")
    project.add_argument(
        "--group", action="store_true", help="join the projector's Kafka consumer group"
    )
    sub.add_parser("serve", help="serve the API")
    sub.add_parser("migrate", help="apply database migrations")
    sub.add_parser("status", help="cursors, offsets, lag and row counts")
    rebuild = sub.add_parser("rebuild", help="drop a read model and replay it from offset 0")
    rebuild.add_argument("name", help="projector name, e.g. catalog")
    rebuild.add_argument(
        "--batch-size", type=int, default=None, help="events per batch (default: rebuild's, 10000)"
    )
    dead = sub.add_parser("dead-letters", help="list or replay dead-lettered events")
    dead.add_argument("action", nargs="?", choices=["list", "replay"], default="list")
    dead.add_argument("--id", type=int, default=None, help="only this dead letter")
    dead.add_argument("--projector", default=None, help="only this projector's")
    takedown = sub.add_parser("takedown", help="operator takedown of an AT-URI or a DID")
    takedown.add_argument("subject", help="at://... (one record) or did:... (an account)")
    takedown.add_argument("--reason", default=None, help="why (kept on the log)")
    takedown.add_argument("--negate", action="store_true", help="lift an earlier takedown")
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
    elif args.command == "backfill":
        return asyncio.run(_backfill(settings, args.did))
    elif args.command == "takedown":
        return asyncio.run(_takedown(settings, args.subject, args.reason, args.negate))
    elif args.command == "rebuild":
        asyncio.run(_rebuild(settings, args.name, args.batch_size))
    elif args.command == "dead-letters":
        return asyncio.run(_dead_letters(settings, args.action, args.id, args.projector))
    else:
        parts = ["ingest", "project", "serve"] if args.command == "run" else [args.command]
        if args.command == "project" and args.group:
            parts = ["project-group"]
        asyncio.run(_run_parts(settings, parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
