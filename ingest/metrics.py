"""Ingest observability: counters kept as plain integers, exposed to Prometheus on scrape.

Each source keeps an :class:`IngestStats` (cheap ``+= 1`` on the hot path, no locks, no
label lookups). :class:`IngestMetrics` is a Prometheus collector over those stats,
registered in a :class:`~prometheus_client.CollectorRegistry` the caller owns; it turns
them into metric families when scraped:

- ``plyr_ingest_events_total{source,type}``: frames in, by event type;
- ``plyr_ingest_published_total{source}``: envelopes acknowledged by the log;
- ``plyr_ingest_rejected_total{source,reason}``: frames/commits/records refused or skipped;
- ``plyr_ingest_reconnects_total{source}``;
- ``plyr_ingest_cursor{source}``: the last saved cursor;
- ``plyr_ingest_lag_seconds{source}``: now minus the time of the latest event seen;
- ``plyr_ingest_desynchronized_total{source}``: repos marked for resync.

:func:`serve_metrics` serves a registry over HTTP (the CLI wires it for ``ingest``/``run``
when ``PLYR_INGEST_METRICS_BIND`` is set); :func:`render` gives the text exposition.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg_pool import AsyncConnectionPool

__all__ = [
    "METRICS_BIND_ENV",
    "IngestMetrics",
    "IngestStats",
    "MetricsServer",
    "ingest_status",
    "render",
    "serve_from_env",
    "serve_metrics",
]

METRICS_BIND_ENV = "PLYR_INGEST_METRICS_BIND"


@dataclass
class IngestStats:
    """Counters of one ingest source (mutated by its consumer only)."""

    source: str
    events: Counter[str] = field(default_factory=Counter)
    published: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    desynchronized: int = 0
    cursor: int | None = None
    last_event_time: float | None = None
    """Unix time of the latest event seen (from the event's ``time``)."""

    @property
    def frames(self) -> int:
        return sum(self.events.values())

    def lag(self, now: float | None = None) -> float | None:
        """Seconds between now and the latest event time (``None`` before any)."""
        if self.last_event_time is None:
            return None
        return max(0.0, (time.time() if now is None else now) - self.last_event_time)

    def as_counters(self) -> dict[str, int]:
        """Flat name → value, for persisting next to the cursor (``ingest_counter``)."""
        out = {f"events.{k}": v for k, v in self.events.items()}
        out.update({f"rejected.{k}": v for k, v in self.rejected.items()})
        out["published"] = self.published
        out["reconnects"] = self.reconnects
        out["desynchronized"] = self.desynchronized
        if self.last_event_time is not None:
            out["last_event_time_ms"] = int(self.last_event_time * 1000)
        return out


class IngestMetrics(Collector):
    """A Prometheus collector over the :class:`IngestStats` of every running source."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._sources: dict[str, IngestStats] = {}
        self.registry.register(self)

    def stats_for(self, source: str) -> IngestStats:
        """The stats object of ``source`` (created on first use)."""
        stats = self._sources.get(source)
        if stats is None:
            stats = self._sources[source] = IngestStats(source)
        return stats

    def add(self, stats: IngestStats) -> IngestStats:
        """Expose the stats a source already keeps (replaces any of the same source)."""
        self._sources[stats.source] = stats
        return stats

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "plyr_ingest_events", "Events received, by type", labels=["source", "type"]
        )
        published = CounterMetricFamily(
            "plyr_ingest_published", "Envelopes acknowledged by the log", labels=["source"]
        )
        rejected = CounterMetricFamily(
            "plyr_ingest_rejected",
            "Frames, commits or records refused or skipped, by reason",
            labels=["source", "reason"],
        )
        reconnects = CounterMetricFamily(
            "plyr_ingest_reconnects", "Source reconnections", labels=["source"]
        )
        desync = CounterMetricFamily(
            "plyr_ingest_desynchronized", "Repos marked for resync", labels=["source"]
        )
        cursor = GaugeMetricFamily("plyr_ingest_cursor", "Last saved cursor", labels=["source"])
        lag = GaugeMetricFamily(
            "plyr_ingest_lag_seconds", "Now minus the latest event time", labels=["source"]
        )
        now = time.time()
        for source, stats in self._sources.items():
            for kind, value in stats.events.items():
                events.add_metric([source, kind], value)
            for reason, value in stats.rejected.items():
                rejected.add_metric([source, reason], value)
            published.add_metric([source], stats.published)
            reconnects.add_metric([source], stats.reconnects)
            desync.add_metric([source], stats.desynchronized)
            if stats.cursor is not None:
                cursor.add_metric([source], stats.cursor)
            current = stats.lag(now)
            if current is not None:
                lag.add_metric([source], current)
        yield from (events, published, rejected, reconnects, desync, cursor, lag)


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of ``registry``."""
    return generate_latest(registry)


@dataclass
class MetricsServer:
    """A running metrics HTTP server; :meth:`close` stops it."""

    server: WSGIServer
    thread: Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> MetricsServer:
    """Serve ``/metrics`` of ``registry`` on ``host:port`` (0 picks a free port)."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(server, thread)


def serve_from_env(
    metrics: IngestMetrics, env: Mapping[str, str] | None = None
) -> MetricsServer | None:
    """Serve ``metrics`` on ``PLYR_INGEST_METRICS_BIND`` (``HOST:PORT``) if it is set."""
    bind = (os.environ if env is None else env).get(METRICS_BIND_ENV)
    if not bind:
        return None
    host, _, port = bind.rpartition(":")
    return serve_metrics(metrics.registry, host.strip("[]") or "127.0.0.1", int(port))


async def ingest_status(pool: AsyncConnectionPool) -> list[str]:
    """Lines for ``plyr-appview status``: per source cursor, lag and counters."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT source, cursor, updated_at FROM ingest_cursor")
        cursors = {row[0]: (row[1], row[2]) for row in await cur.fetchall()}
        cur = await conn.execute("SELECT source, name, value FROM ingest_counter")
        counters: dict[str, dict[str, int]] = {}
        for source, name, value in await cur.fetchall():
            counters.setdefault(source, {})[name] = int(value)
        cur = await conn.execute(
            "SELECT status, count(*) FROM repo_state GROUP BY status ORDER BY status"
        )
        statuses = [f"{status}={count}" for status, count in await cur.fetchall()]
    lines = []
    for source in sorted(set(cursors) | set(counters)):
        cursor, saved = cursors.get(source, (None, None))
        values = counters.get(source, {})
        event_ms = values.pop("last_event_time_ms", None)
        lag = f"{max(0.0, time.time() - event_ms / 1000):.1f}s" if event_ms else "-"
        events = sum(v for k, v in values.items() if k.startswith("events."))
        rejected = {k[9:]: v for k, v in values.items() if k.startswith("rejected.") and v}
        lines.append(
            f"  {source}  cursor={cursor}  saved={saved.isoformat() if saved else '-'}"
            f"  lag={lag}  events={events}  published={values.get('published', 0)}"
            f"  reconnects={values.get('reconnects', 0)}"
            f"  rejected={sum(rejected.values())}"
            + (
                " (" + ", ".join(f"{k}={v}" for k, v in sorted(rejected.items())) + ")"
                if rejected
                else ""
            )
        )
    lines.append("  repos: " + (" ".join(statuses) or "none"))
    return lines
