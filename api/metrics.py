"""Prometheus metrics of one API process: request counts and latency, response cache."""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from api.cache import ResponseCache

__all__ = ["CacheCollector", "RequestMetrics", "request_metrics"]


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
