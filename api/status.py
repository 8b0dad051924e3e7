"""What the system is doing, for people: ingest, projector offsets and lag, dead letters,
row counts, and a ring of samples of the last hour.

One collector (:func:`collect_status`) feeds both the ``/status`` page (through
``/status.json``) and ``plyr-appview status`` (:func:`status_lines`). It reads only the
schema (``ingest_cursor``, ``ingest_counter``, ``projector_offset``, ``dead_letter``) and
the log's end offsets, so the API needs no projector imports.

The samples of the last hour live in memory, in each API worker (:class:`SampleRing`):
every worker samples the same shared figures (log end offsets, stored offsets, and the
request latency histogram of the whole process tree, see :mod:`api.metrics`), so any
worker answers with the same charts; a worker started a minute ago has a minute of them.
Nothing is written: the API's database role is read-only.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool

from kernel.log import Log

__all__ = [
    "ROW_TABLES",
    "PartitionStatus",
    "ProjectorStatus",
    "Sample",
    "SampleRing",
    "SourceStatus",
    "Status",
    "collect_status",
    "p95_by_route",
    "status_lines",
]

ROW_TABLES = (
    "track",
    "artist",
    "album",
    "list",
    "like",
    "comment",
    "play",
    "moderation_label",
    "repo_state",
)
"""Read-model tables whose row counts the status shows."""


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """One ingest source: its saved cursor, how far behind it is, what it published."""

    source: str
    cursor: int | None
    lag_s: float | None
    events: int
    published: int
    rejected: int


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    topic: str
    partition: int
    next_offset: int
    end_offset: int

    @property
    def lag(self) -> int:
        return max(0, self.end_offset - self.next_offset)


@dataclass(frozen=True, slots=True)
class ProjectorStatus:
    """One projector's stored offset against the log's end, per partition."""

    name: str
    partitions: tuple[PartitionStatus, ...]

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)


@dataclass(frozen=True, slots=True)
class Status:
    """Everything :func:`collect_status` read, at ``time`` (unix seconds)."""

    time: float
    sources: tuple[SourceStatus, ...]
    projectors: tuple[ProjectorStatus, ...]
    dead_letters: Mapping[str, int]
    rows: Mapping[str, int]
    log_end: Mapping[str, int]
    """Sum of the end offsets of each topic's partitions: events ever appended."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``/status.json`` ``now`` part)."""
        return {
            "time": self.time,
            "sources": [asdict(s) for s in self.sources],
            "projectors": [
                {
                    "name": p.name,
                    "lag": p.lag,
                    "partitions": [{**asdict(q), "lag": q.lag} for q in p.partitions],
                }
                for p in self.projectors
            ],
            "dead_letters": dict(self.dead_letters),
            "rows": dict(self.rows),
            "log_end": dict(self.log_end),
        }


async def collect_status(pool: AsyncConnectionPool, log: Log | None) -> Status:
    """Read the status from the database and (for end offsets) the log.

    Without a log, every partition's end offset is taken as its stored offset (no lag).
    """
    now = time.time()
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT source, cursor FROM ingest_cursor")
        cursors = {str(r[0]): r[1] for r in await cur.fetchall()}
        cur = await conn.execute("SELECT source, name, value FROM ingest_counter")
        counters: dict[str, dict[str, int]] = {}
        for source, name, value in await cur.fetchall():
            counters.setdefault(str(source), {})[str(name)] = int(value)
        cur = await conn.execute(
            "SELECT projector, topic, partition, next_offset FROM projector_offset"
            " ORDER BY projector, topic, partition"
        )
        offsets = [(str(a), str(b), int(c), int(d)) for a, b, c, d in await cur.fetchall()]
        cur = await conn.execute("SELECT projector, count(*) FROM dead_letter GROUP BY 1")
        dead = {str(r[0]): int(r[1]) for r in await cur.fetchall()}
        rows: dict[str, int] = {}
        for table in ROW_TABLES:
            cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'public."{table}"',))
            found = await cur.fetchone()
            if found and found[0]:
                cur = await conn.execute(f'SELECT count(*) FROM "{table}"')
                counted = await cur.fetchone()
                rows[table] = int(counted[0]) if counted else 0
    sources = []
    for source in sorted(set(cursors) | set(counters)):
        values = counters.get(source, {})
        event_ms = values.get("last_event_time_ms")
        sources.append(
            SourceStatus(
                source=source,
                cursor=cursors.get(source),
                lag_s=max(0.0, now - event_ms / 1000) if event_ms else None,
                events=sum(v for k, v in values.items() if k.startswith("events.")),
                published=values.get("published", 0),
                rejected=sum(v for k, v in values.items() if k.startswith("rejected.")),
            )
        )
    ends: dict[tuple[str, int], int] = {}
    for _, topic, partition, next_offset in offsets:
        if (topic, partition) not in ends:
            ends[topic, partition] = (
                await log.end_offset(topic, partition) if log is not None else next_offset
            )
    log_end: dict[str, int] = {}
    for (topic, _), end in ends.items():
        log_end[topic] = log_end.get(topic, 0) + end
    by_projector: dict[str, list[PartitionStatus]] = {}
    for name, topic, partition, next_offset in offsets:
        by_projector.setdefault(name, []).append(
            PartitionStatus(topic, partition, next_offset, max(next_offset, ends[topic, partition]))
        )
    return Status(
        time=now,
        sources=tuple(sources),
        projectors=tuple(ProjectorStatus(n, tuple(p)) for n, p in by_projector.items()),
        dead_letters=dead,
        rows=rows,
        log_end=log_end,
    )


def status_lines(status: Status) -> list[str]:
    """``plyr-appview status`` for a person: a line per source and per projector (its
    total lag), partitions only where they lag, then dead letters and row counts."""
    lines = ["ingest:"]
    if not status.sources:
        lines.append("  no source has run yet")
    for s in status.sources:
        lag = f"{s.lag_s:.1f}s behind" if s.lag_s is not None else "no event yet"
        lines.append(
            f"  {s.source}: {lag}, cursor {s.cursor if s.cursor is not None else '-'},"
            f" {s.published} published, {s.rejected} rejected"
        )
    lines.append("projectors:")
    if not status.projectors:
        lines.append("  no projector has run yet")
    for p in status.projectors:
        state = "caught up" if p.lag == 0 else f"{p.lag} events behind"
        lines.append(f"  {p.name}: {state} ({len(p.partitions)} partitions)")
        for q in p.partitions:
            if q.lag:
                lines.append(f"    {q.topic}/{q.partition}: {q.next_offset} of {q.end_offset}")
    total_dead = sum(status.dead_letters.values())
    lines.append(
        f"dead letters: {total_dead}"
        + (
            " (" + ", ".join(f"{k} {v}" for k, v in sorted(status.dead_letters.items())) + ")"
            if total_dead
            else ""
        )
    )
    lines.append("rows: " + ", ".join(f"{k} {v}" for k, v in status.rows.items()))
    return lines


# --- the last hour -------------------------------------------------------------------

Buckets = Mapping[str, list[tuple[float, float]]]
"""Route → cumulative latency histogram buckets ``[(upper bound, count), ...]``."""


def p95_by_route(before: Buckets, after: Buckets) -> dict[str, float]:
    """The 95th percentile latency (seconds, a bucket's upper bound) of each route over
    the requests between two readings of the cumulative histogram. Past the last finite
    bucket it is that bucket's bound (JSON has no infinity)."""
    out: dict[str, float] = {}
    for route, buckets in after.items():
        earlier = dict(before.get(route, []))
        window = [(bound, count - earlier.get(bound, 0.0)) for bound, count in buckets]
        total = window[-1][1] if window else 0.0
        if total <= 0:
            continue
        finite = [bound for bound, _ in window if bound != float("inf")]
        for bound, count in window:
            if count >= 0.95 * total:
                out[route] = bound if bound != float("inf") or not finite else finite[-1]
                break
    return out


@dataclass(frozen=True, slots=True)
class Sample:
    """One point of the charts."""

    time: float
    events_per_s: float
    lag: Mapping[str, int]
    p95_ms: Mapping[str, float]


@dataclass
class SampleRing:
    """The last ``size`` samples (an hour at the default 10 s interval), in memory."""

    size: int = 360
    samples: deque[Sample] = field(default_factory=deque)
    _last: tuple[float, int, Buckets] | None = None

    def add(self, status: Status, buckets: Buckets) -> Sample | None:
        """Take a sample from ``status`` and the latency histogram; the first call only
        remembers where the rates start from."""
        appended = sum(status.log_end.values())
        sample = None
        if self._last is not None:
            then, appended_then, buckets_then = self._last
            elapsed = max(status.time - then, 1e-6)
            sample = Sample(
                time=status.time,
                events_per_s=max(0, appended - appended_then) / elapsed,
                lag={p.name: p.lag for p in status.projectors},
                p95_ms={
                    route: seconds * 1000
                    for route, seconds in p95_by_route(buckets_then, buckets).items()
                },
            )
            self.samples.append(sample)
            while len(self.samples) > self.size:
                self.samples.popleft()
        self._last = (status.time, appended, buckets)
        return sample

    def to_json(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.samples]


def histogram_buckets(families: Iterable[Any], name: str) -> dict[str, list[tuple[float, float]]]:
    """Route → cumulative buckets of histogram ``name`` from collected metric families
    (summed over methods and processes)."""
    found: dict[str, dict[float, float]] = {}
    for family in families:
        if family.name != name:
            continue
        for sample in family.samples:
            if not sample.name.endswith("_bucket"):
                continue
            route = sample.labels.get("route", "")
            bound = float(sample.labels["le"])
            per = found.setdefault(route, {})
            per[bound] = per.get(bound, 0.0) + sample.value
    return {route: sorted(b.items()) for route, b in found.items()}
