"""The archiver: copy what the log holds beyond the manifest into new Parquet segments.

Per topic-partition, it reads from the manifest's end offset to the end of the log,
cuts segments of at most ``segment_events`` messages,
and for each writes the segment first, then the manifest that lists it. A crash between
the two leaves an unlisted segment under the name the next run writes again.

Columns: the :class:`~kernel.log.Message` fields, and the envelope's ``kind``, ``did``,
``collection`` and ``uri`` when the value is a JSON envelope (NULL otherwise), so SQL over
the archive need not parse JSON for the common questions.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from kernel.archive.duck import connect
from kernel.archive.manifest import MANIFEST_NAME, Manifest, Segment
from kernel.archive.store import SegmentStore
from kernel.envelope import ENVELOPE_VERSION
from kernel.log import Log, Message

__all__ = [
    "SEGMENT_EVENTS",
    "ArchiveProgress",
    "archive_log",
    "archive_partition",
    "envelope_columns",
    "load_manifest",
    "write_segment",
]

logger = logging.getLogger(__name__)

SEGMENT_EVENTS = 100_000
"""Messages per segment at most: a few MB of Parquet, read in well under a second."""

_READ_BATCH = 10_000
# How long reads may come back empty below the end offset the log reported before a
# partition counts as archived up to where it stopped (the next run goes on from there).
_BELOW_END_PATIENCE = 10.0

_SEGMENT_SQL = """
COPY (
    SELECT $topic::VARCHAR AS topic, $partition::INTEGER AS "partition",
           o AS "offset", from_base64(k) AS key, from_base64(v) AS value,
           t AS timestamp_ms, kind, did, collection, uri
    FROM read_json($rows, format = 'newline_delimited', columns = {
        'o': 'BIGINT', 'k': 'VARCHAR', 'v': 'VARCHAR', 't': 'BIGINT',
        'kind': 'VARCHAR', 'did': 'VARCHAR', 'collection': 'VARCHAR', 'uri': 'VARCHAR'})
    ORDER BY o
) TO '{target}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 10000)
"""


@dataclass(frozen=True, slots=True)
class ArchiveProgress:
    """Messages archived so far in this run, and the segment just written."""

    archived: int
    segment: Segment


def envelope_columns(value: bytes) -> tuple[str | None, str | None, str | None, str | None]:
    """``(kind, did, collection, uri)`` of a JSON envelope; NULLs for anything else.

    Lenient on purpose: the archive keeps every message, including kinds this version of
    the envelope does not know yet, so only the shape is checked, not the kind.
    """
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None, None, None, None
    if not isinstance(data, dict) or data.get("v") != ENVELOPE_VERSION:
        return None, None, None, None

    def text(name: str) -> str | None:
        item = data.get(name)
        return item if isinstance(item, str) else None

    kind, did, collection, rkey = text("kind"), text("did"), text("collection"), text("rkey")
    uri = text("uri")
    if uri is None and did is not None and collection is not None and rkey is not None:
        uri = f"at://{did}/{collection}/{rkey}"
    return kind, did, collection, uri


def _row(message: Message) -> bytes:
    kind, did, collection, uri = envelope_columns(message.value)
    return orjson.dumps(
        {
            "o": message.offset,
            "k": base64.b64encode(message.key).decode(),
            "v": base64.b64encode(message.value).decode(),
            "t": message.timestamp_ms,
            "kind": kind,
            "did": did,
            "collection": collection,
            "uri": uri,
        }
    )


def write_segment(store: SegmentStore, messages: Sequence[Message]) -> Segment:
    """Write ``messages`` (one topic-partition, offset order) as one segment; not the manifest.

    The rows go to DuckDB as newline-delimited JSON with base64 keys and values (no
    Arrow here), and DuckDB writes the Parquet file, which is then put in the store.
    """
    first, last = messages[0], messages[-1]
    if any(b.offset <= a.offset for a, b in itertools.pairwise(messages)):
        raise ValueError("a segment's messages must be in increasing offset order")
    with tempfile.TemporaryDirectory(prefix="plyr-archive-") as scratch:
        rows = Path(scratch) / "rows.ndjson"
        target = Path(scratch) / "segment.parquet"
        with rows.open("wb") as out:
            for message in messages:
                out.write(_row(message))
                out.write(b"\n")
        with connect() as con:
            con.execute(
                _SEGMENT_SQL.replace("{target}", str(target).replace("'", "''")),
                {"topic": first.topic, "partition": first.partition, "rows": str(rows)},
            )
        segment = Segment(
            topic=first.topic,
            partition=first.partition,
            first_offset=first.offset,
            last_offset=last.offset,
            count=len(messages),
            bytes=target.stat().st_size,
        )
        store.put_file(segment.name, target)
    return segment


def load_manifest(store: SegmentStore) -> Manifest:
    """The store's manifest (empty when nothing was archived yet)."""
    return Manifest.from_bytes(store.get_bytes(MANIFEST_NAME))


async def archive_partition(
    log_: Log,
    store: SegmentStore,
    manifest: Manifest,
    topic: str,
    partition: int,
    *,
    segment_events: int = SEGMENT_EVENTS,
    on_segment: Callable[[Segment], None] | None = None,
) -> Manifest:
    """Archive one partition from the manifest's end to the end of the log.

    Reads go on past the end offset the log reported at the start until a read comes
    back empty (Kafka brokers may report it too low after bursts). Returns the manifest
    with the new segments (already stored after each segment).
    """
    offset = manifest.end_offset(topic, partition)
    reported = await log_.end_offset(topic, partition)
    while True:
        batch: list[Message] = []
        while len(batch) < segment_events:
            want = min(_READ_BATCH, segment_events - len(batch))
            messages = await log_.read(topic, partition, offset, max_messages=want, timeout=0.2)
            # Below the reported end the log holds more: a busy broker may still answer an
            # empty fetch, so keep asking (a while) before calling the partition done.
            patience = time.monotonic() + _BELOW_END_PATIENCE
            while not messages and offset < reported and time.monotonic() < patience:
                messages = await log_.read(topic, partition, offset, max_messages=want, timeout=1.0)
            if not messages:
                break
            batch.extend(messages)
            offset = messages[-1].offset + 1
        if not batch:
            if offset < reported:
                logger.warning(
                    "archive: log ended before its reported end offset",
                    extra={"topic": topic, "partition": partition, "offset": offset},
                )
            break
        segment = await asyncio.to_thread(write_segment, store, batch)
        manifest = manifest.with_segment(segment)
        await asyncio.to_thread(store.put_bytes, MANIFEST_NAME, manifest.to_bytes())
        logger.info(
            "archive: segment written",
            extra={
                "topic": topic,
                "partition": partition,
                "offset": segment.first_offset,
                "count": segment.count,
                "bytes": segment.bytes,
            },
        )
        if on_segment is not None:
            on_segment(segment)
    return manifest


async def archive_log(
    log_: Log,
    store: SegmentStore,
    topics: Sequence[str],
    *,
    segment_events: int = SEGMENT_EVENTS,
    on_progress: Callable[[ArchiveProgress], None] | None = None,
) -> Manifest:
    """Archive every partition of ``topics`` that the log holds beyond the manifest.

    One run at a time per store: the manifest is read once and rewritten after each
    segment. Returns the final manifest.
    """
    manifest = await asyncio.to_thread(load_manifest, store)
    archived = 0

    def seen(segment: Segment) -> None:
        nonlocal archived
        archived += segment.count
        if on_progress is not None:
            on_progress(ArchiveProgress(archived, segment))

    for topic in topics:
        for partition in range(log_.partitions(topic)):
            manifest = await archive_partition(
                log_,
                store,
                manifest,
                topic,
                partition,
                segment_events=segment_events,
                on_segment=seen,
            )
    return manifest
