"""Prometheus metrics of the API: request counts and latency, response cache.

With several API worker processes, the supervisor gives them one directory in
``PROMETHEUS_MULTIPROC_DIR`` (:func:`prepare_multiprocess_dir`, emptied at start; a dead
worker's live gauges are dropped with :func:`worker_exited`): prometheus-client's
multiprocess mode then keeps every metric in files there, and whichever worker answers
``/metrics`` reports the sum over all of them (:func:`metrics_registry`), so counters
never go down between scrapes. The response cache's figures are per worker
(``worker`` label), published to the files by :class:`CacheGauges`. With one process,
the app's own registry and :class:`CacheCollector` serve directly.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from api.cache import ResponseCache

__all__ = [
    "MULTIPROC_ENV",
    "CacheCollector",
    "CacheGauges",
    "RequestMetrics",
    "metrics_registry",
    "multiprocess_dir",
    "prepare_multiprocess_dir",
    "request_metrics",
    "worker_exited",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir(env: Mapping[str, str] | None = None) -> str | None:
    """The shared metrics directory of the API workers, when there is one."""
    return (os.environ if env is None else env).get(MULTIPROC_ENV) or None


def prepare_multiprocess_dir(path: Path) -> Path:
    """Create ``path`` with no metric files in it (those of an earlier run would add to
    this run's counters); only the ``*.db`` files prometheus-client writes are removed."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    return path


def worker_exited(path: Path, pid: int) -> None:
    """Drop the live gauges of a worker that exited (its counters stay in the sums)."""
    multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]


def metrics_registry(own: CollectorRegistry) -> CollectorRegistry:
    """What ``/metrics`` reports: every worker's metrics (multiprocess), else ``own``."""
    if multiprocess_dir() is None:
        return own
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
    return merged


class CacheGauges:
    """The response cache's figures written to the multiprocess files, one series per
    worker (``worker`` = pid), refreshed by :meth:`publish`."""

    def __init__(self, cache: ResponseCache) -> None:
        self.cache = cache
        self.worker = str(os.getpid())
        # The running counts are gauges here (a counter's file could only add), named as
        # the one-process collector's counters are exposed (``_total``), so a dashboard or
        # alert reads the same series whatever the worker count.
        self.gauges = {
            name: Gauge(name, doc, ["worker"], registry=None, multiprocess_mode="liveall")
            for name, doc in (
                ("plyr_api_cache_hits_total", "Responses served from the response cache"),
                ("plyr_api_cache_misses_total", "Cacheable requests the cache could not answer"),
                ("plyr_api_cache_invalidations_total", "Read-model change notifications"),
                ("plyr_api_cache_entries", "Responses held by the cache"),
                ("plyr_api_cache_bytes", "Response bodies held by the cache"),
            )
        }

    def publish(self) -> None:
        c = self.cache
        for name, value in (
            ("plyr_api_cache_hits_total", c.hits),
            ("plyr_api_cache_misses_total", c.misses),
            ("plyr_api_cache_invalidations_total", c.generation),
            ("plyr_api_cache_entries", len(c)),
            ("plyr_api_cache_bytes", c.bytes),
        ):
            self.gauges[name].labels(self.worker).set(value)


class CacheCollector(Collector):
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


RequestMetrics = tuple[Counter, Histogram]
"""The request counter and the latency histogram (what :class:`api.middleware.AccessLog` feeds)."""


def request_metrics(registry: CollectorRegistry) -> RequestMetrics:
    """Register the request counter and latency histogram in ``registry``."""
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
    return requests, latency
