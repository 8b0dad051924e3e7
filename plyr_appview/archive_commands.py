"""``plyr-appview archive | trim | query``: wiring of :mod:`kernel.archive` to the CLI.

The work lives in :mod:`kernel.archive`; these functions open the log and the store the
settings describe, print progress and results, and turn known failures into messages
and exit codes (0 ok, 1 the query or the archive failed, 2 the command cannot apply).
"""

from __future__ import annotations

import asyncio
import sys

from psycopg_pool import AsyncConnectionPool

from kernel.archive import ArchivedLog, ArchiveReader, ManifestError, StoreError, store_for
from kernel.archive.query import QueryError, format_result, open_views, run_query
from kernel.archive.trim import trim_postgres_log
from kernel.archive.writer import ArchiveProgress, archive_log, load_manifest
from kernel.config import Settings
from kernel.log import Log
from kernel.progress import ProgressBar

__all__ = ["LOGICAL_TOPICS", "archive", "archived_log", "full_topic", "query", "trim"]

LOGICAL_TOPICS = ("repo", "labels", "plays")


def full_topic(settings: Settings, name: str) -> str:
    """``plays`` → ``plyr.plays``; a full name (already prefixed) is kept."""
    return name if name.startswith(settings.topic_prefix) else settings.topic(name)


def archived_log(settings: Settings, live: Log) -> ArchivedLog:
    """``live`` with the configured archive in front of it (for ``rebuild --from-archive``)."""
    return ArchivedLog(live, ArchiveReader(store_for(settings)))


async def archive(settings: Settings, log: Log) -> int:
    """Write every event of the standard topics that is not archived yet."""
    store = store_for(settings)

    bar = ProgressBar("archive", None, "events")
    archived = 0

    def show(progress: ArchiveProgress) -> None:
        nonlocal archived
        archived, s = progress.archived, progress.segment
        bar.update(archived, detail=f"{s.topic}/{s.partition} up to {s.last_offset}")

    try:
        manifest = await archive_log(
            log, store, [settings.topic(t) for t in LOGICAL_TOPICS], on_progress=show
        )
    except (StoreError, ManifestError) as exc:
        sys.stderr.write(f"\narchive failed: {exc}\n")
        return 1
    bar.finish(archived, detail="archived in this run")
    total = sum(s.count for s in manifest.segments)
    size = sum(s.bytes for s in manifest.segments)
    sys.stderr.write(
        f"archive holds {total:,} events in {len(manifest.segments)} segments"
        f" ({size / 1e6:,.1f} MB)\n"
    )
    return 0


async def trim(settings: Settings, pool: AsyncConnectionPool, topic: str) -> int:
    """Delete the archived events of ``topic`` from the PostgreSQL log."""
    if settings.log_backend != "postgres":
        sys.stderr.write("trim applies to the PostgreSQL log; Kafka drops events by retention\n")
        return 2
    store = store_for(settings)
    name = full_topic(settings, topic)
    try:
        manifest = await asyncio.to_thread(load_manifest, store)
        result = await trim_postgres_log(pool, store, manifest, name)
    except (StoreError, ManifestError) as exc:
        sys.stderr.write(f"trim failed: {exc}\n")
        return 1
    print(f"deleted {result.total:,} archived events of {name} from the log")
    for segment in result.skipped:
        print(
            f"kept {segment.topic}/{segment.partition} offsets"
            f" {segment.first_offset}-{segment.last_offset}: segment missing, changed or sparse"
        )
    return 0


def query(settings: Settings, sql: str) -> int:
    """Run ``sql`` over the archive (views ``repo``, ``labels``, ``plays``); print TSV."""
    store = store_for(settings)
    try:
        manifest = load_manifest(store)
        views = {t: settings.topic(t) for t in LOGICAL_TOPICS}
        with open_views(store, manifest, views) as con:
            result = run_query(con, sql)
    except QueryError as exc:
        sys.stderr.write(f"query error: {exc}\n")
        return 1
    except (StoreError, ManifestError) as exc:
        sys.stderr.write(f"archive unreadable: {exc}\n")
        return 1
    for line in format_result(result):
        print(line)
    return 0
