"""The guarded fetcher now lives in :mod:`kernel.fetch` (ingest uses it too); re-exported here."""

from kernel.fetch import (
    MAX_REDIRECTS,
    UpstreamError,
    UpstreamFetcher,
    UpstreamRefused,
    UpstreamResponse,
    UpstreamStatus,
    UpstreamTooLarge,
    is_public_address,
)

__all__ = [
    "MAX_REDIRECTS",
    "UpstreamError",
    "UpstreamFetcher",
    "UpstreamRefused",
    "UpstreamResponse",
    "UpstreamStatus",
    "UpstreamTooLarge",
    "is_public_address",
]
