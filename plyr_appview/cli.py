"""``plyr-appview``: the command line. It only wires; the work lives in the packages."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import signal
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import uvicorn
from psycopg_pool import AsyncConnectionPool

from api.app import create_app
from api.metrics import multiprocess_dir
from api.status import collect_status, status_lines
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
from kernel.config import ConfigError, Settings, load_settings
from kernel.db import apply_migrations, database_url, open_pool
from kernel.fetch import UpstreamFetcher
from kernel.group_commit import GroupCommitLog
from kernel.identity import DidResolver
from kernel.log import Log
from kernel.progress import ProgressBar
from plyr_appview import archive_commands
from plyr_appview.archive_commands import archived_log
from plyr_appview.plays_worker import exec_worker, run_plays_worker
from plyr_appview.runtime import (
    ApiWorkers,
    bind_api_sockets,
    configure_logging,
    open_log,
    render_banner,
    startup_banner,
    uvicorn_config,
    wants_json,
)
from projectors import registry
from projectors.kafka_group import GroupWorker
from projectors.moderation import operator_label
from projectors.plays_scrobble import scrobble_status
from projectors.rebuild import (
    REBUILD_BATCH,
    RebuildGap,
    RebuildProgress,
    list_dead_letters,
    rebuild,
    replay_dead_letters,
)
from projectors.runner import run_projector

__all__ = ["main"]

logger = logging.getLogger("plyr_appview")


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
    """Set on the first SIGINT/SIGTERM: every part drains (ingest saves its cursor once the
    log acknowledged, projectors commit or abandon their batch, the API finishes its
    requests) and the process exits 0. A second signal stops at once (default handling)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def first(sig: signal.Signals) -> None:
        logger.info("stopping; send the signal again to stop at once", extra={"signal": sig.name})
        stop.set()
        for each in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(each)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, first, sig)
    return stop


async def _ingest(ctx: Context, stop: asyncio.Event) -> None:
    """The live source (firehose or Jetstream), resync, labelers, and a first-start backfill."""
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
                plays_topic=settings.topic("plays"),
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
                plays_topic=settings.topic("plays"),
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
                logger.warning("backfill discovery failed", extra={"error": str(exc)})
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
    return urlsplit(settings.firehose_url).netloc


async def _backfill(settings: Settings, dids: Sequence[str]) -> int:
    """``plyr-appview backfill``: discover (or take ``dids``), sync every repo, report."""
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
    """Every registered projector, each with one reader over all its topics' partitions."""
    async with asyncio.TaskGroup() as group:
        for spec in registry.PROJECTORS:
            topics = [ctx.settings.topic(topic) for topic in spec.topics]
            group.create_task(
                run_projector(ctx.pool, ctx.log, spec.build(ctx.settings), topics, stop)
            )


async def _takedown(settings: Settings, subject: str, reason: str | None, negate: bool) -> int:
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
    """Every registered projector as a worker of its consumer group, on all its topics."""
    if ctx.settings.log_backend != "kafka":
        raise SystemExit("project --group needs the Kafka log (PLYR_LOG_BACKEND=kafka)")
    async with asyncio.TaskGroup() as group:
        for spec in registry.PROJECTORS:
            worker = GroupWorker(
                ctx.pool,
                ctx.settings.kafka_bootstrap,
                spec.build(ctx.settings),
                [ctx.settings.topic(t) for t in spec.topics],
            )
            group.create_task(worker.run(stop))


async def _rebuild(
    settings: Settings, name: str, batch_size: int | None, from_archive: bool = False
) -> int:
    try:
        spec = registry.spec(name)
    except LookupError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    projector = spec.build(settings)

    bar = ProgressBar(f"rebuild {name}", None, "events")

    def show(progress: RebuildProgress) -> None:
        bar.total = progress.total
        bar.update(progress.done, detail=f"{progress.rate:,.0f} events/s")

    async with _context(settings) as ctx:
        topics = [ctx.settings.topic(t) for t in spec.topics]
        source = ctx.log
        if from_archive:
            source = archived_log(settings, ctx.log)
        try:
            done = await rebuild(
                ctx.pool,
                source,
                projector,
                topics,
                batch_size=batch_size or REBUILD_BATCH,
                on_progress=show,
            )
        except RebuildGap as exc:
            sys.stderr.write(f"\nrebuild {name} stopped: {exc}\n")
            return 1
    bar.finish(done.done, detail=f"{done.rate:,.0f} events/s")
    sys.stderr.write(f"rebuilt {name}: {done.done} events in {done.elapsed:.1f} s\n")
    return 0


async def _dead_letters(settings: Settings, action: str, id_: int | None, name: str | None) -> int:
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
        applied, failing = await replay_dead_letters(
            ctx.pool, ctx.log, letters, lambda n: registry.spec(n).build(settings)
        )
        print(f"replayed {applied}, still failing {failing}")
        return 1 if failing else 0


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the process-wide stop event rules."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve(ctx: Context, stop: asyncio.Event) -> None:
    settings = ctx.settings
    url = settings.api_database_url or ctx.url
    if settings.api_workers > 1:
        await _serve_workers(settings, url, stop)
        return
    # One worker: in this process, as each worker process runs it (api_worker_main): the
    # app opens its own pool acting as the read-only role (migration 0009) in its lifespan.
    app = create_app(settings, database_url=url, log=GroupCommitLog(ctx.log))
    server = _Server(uvicorn_config(app, host=settings.api_host, port=settings.api_port))
    serving = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await serving


async def _serve_workers(settings: Settings, url: str, stop: asyncio.Event) -> None:
    """``api_workers`` processes accepting from sockets bound here; restarted if they die."""
    socks = bind_api_sockets(settings.api_host, settings.api_port, settings.api_workers)
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    shared = multiprocess_dir()
    workers = ApiWorkers(
        socks,
        url,
        settings.api_workers,
        str(level),
        metrics_dir=Path(shared) if shared is not None else None,
    )
    workers.start()
    logger.info("api workers started", extra={"workers": settings.api_workers})
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
            "plays-worker": _plays_worker,
        }
        async with asyncio.TaskGroup() as group:
            for part in parts:
                group.create_task(jobs[part](ctx, stop))
            logger.info(
                "started", extra={"parts": list(parts), "log_backend": settings.log_backend}
            )


async def _plays_worker(ctx: Context, stop: asyncio.Event) -> None:
    """Kafka mode: the faust play qualifier as a child process (see plays_worker)."""
    await run_plays_worker(ctx.settings, stop)


async def _status(settings: Settings) -> None:
    """``plyr-appview status``: a line per source and projector, partitions only where
    they lag (:func:`api.status.status_lines`)."""
    async with _context(settings) as ctx:
        status = await collect_status(ctx.pool, ctx.log)
        async with ctx.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT status, count(*) FROM repo_state GROUP BY status ORDER BY status"
            )
            repos = [f"{state} {count}" for state, count in await cur.fetchall()]
            scrobbles = await scrobble_status(conn)
    for line in status_lines(status):
        print(line)
    print("repos: " + (", ".join(repos) or "none"))
    print("network scrobbles:" + scrobbles.removeprefix("  scrobbles:"))


def _migrate(settings: Settings) -> None:
    applied = apply_migrations(database_url(settings))
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))


def _archive_command(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "query":
        return archive_commands.query(settings, args.sql)

    async def with_context() -> int:
        async with _context(settings) as ctx:
            if args.command == "archive":
                return await archive_commands.archive(settings, ctx.log)
            return await archive_commands.trim(settings, ctx.pool, args.topic)

    return asyncio.run(with_context())


def _announce(settings: Settings, parts: Sequence[str]) -> None:
    """The start-up banner: a few lines on a terminal, one log line elsewhere."""
    info = startup_banner(settings, parts)
    if wants_json(sys.stderr):
        logger.info("starting", extra=info)
    else:
        sys.stderr.write(render_banner(info) + "\n")
        sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    # -v before or after the command (argparse gives a sub-command's default the last word,
    # so it is SUPPRESS there: a -v before the command stays).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
        help="library logs too (embedded PostgreSQL, Kafka client, HTTP client)",
    )  # fmt: skip
    parser = argparse.ArgumentParser(prog="plyr-appview", description=__doc__, parents=[common])
    parser.set_defaults(verbose=False)
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    command = functools.partial(sub.add_parser, parents=[common])
    command("run", help="ingest + projectors + API (+ the Kafka-mode plays worker) in one process")
    command("ingest", help="follow the firehose into the log")
    backfill = command("backfill", help="sync whole repos (getRepo) into the log")
    backfill.add_argument("--did", action="append", default=[], help="only this repo (repeatable)")
    project = command("project", help="build the read models from the log")
    project.add_argument(
        "--group", action="store_true", help="join the projector's Kafka consumer group"
    )
    command("serve", help="serve the API")
    command("plays-worker", help="Kafka mode: the faust worker that qualifies play reports")
    command("migrate", help="apply database migrations")
    command("status", help="cursors, offsets, lag and row counts")
    rebuild_cmd = command("rebuild", help="drop a read model and replay it from offset 0")
    rebuild_cmd.add_argument("name", help=f"projector name: {', '.join(registry.names())}")
    rebuild_cmd.add_argument(
        "--batch-size", type=int, default=None, help="events per batch (default: rebuild's, 10000)"
    )
    rebuild_cmd.add_argument(
        "--from-archive", action="store_true", help="read the archive first, then the live log"
    )
    command("archive", help="write what the log holds beyond the archive to Parquet")
    trim = command("trim", help="delete archived events from the PostgreSQL log")
    trim.add_argument("--topic", required=True, help="repo, labels or plays (or a full name)")
    trim.add_argument(
        "--before-archived", action="store_true", required=True, help="what the archive holds"
    )
    query = command("query", help="DuckDB SQL over the archive (views repo, labels, plays)")
    query.add_argument("sql")
    dead = command("dead-letters", help="list or replay dead-lettered events")
    dead.add_argument("action", nargs="?", choices=["list", "replay"], default="list")
    dead.add_argument("--id", type=int, default=None, help="only this dead letter")
    dead.add_argument("--projector", default=None, help="only this projector's")
    takedown = command("takedown", help="operator takedown of an AT-URI or a DID")
    takedown.add_argument("subject", help="at://... (one record) or did:... (an account)")
    takedown.add_argument("--reason", default=None, help="why (kept on the log)")
    takedown.add_argument("--negate", action="store_true", help="lift an earlier takedown")
    args = parser.parse_args(argv)
    # status is for a person at a terminal: its figures only, unless asked (-v).
    quiet = args.command == "status" and not args.verbose
    configure_logging("WARNING" if quiet else args.log_level, verbose=args.verbose)
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
        return asyncio.run(_rebuild(settings, args.name, args.batch_size, args.from_archive))
    elif args.command in ("archive", "trim", "query"):
        return _archive_command(settings, args)
    elif args.command == "dead-letters":
        return asyncio.run(_dead_letters(settings, args.action, args.id, args.projector))
    elif args.command == "plays-worker":
        exec_worker(settings)
    else:
        parts = ["ingest", "project", "serve"] if args.command == "run" else [args.command]
        if args.command == "run" and settings.log_backend == "kafka":
            parts.append("plays-worker")  # Kafka mode: plays are qualified by faust
        if args.command == "project" and args.group:
            parts = ["project-group"]
        _announce(settings, parts)
        asyncio.run(_run_parts(settings, parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
