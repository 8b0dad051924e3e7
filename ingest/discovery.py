"""Which repos to backfill: ``listReposByCollection`` on a relay, else ``listRepos`` on a PDS.

Requests go through the guarded fetcher (:mod:`kernel.fetch`). Errors:
:class:`~ingest.errors.BackfillError` (``retry=False``) when neither answers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

from ingest.errors import BackfillError
from kernel.fetch import UpstreamError, UpstreamFetcher, UpstreamStatus

__all__ = ["DiscoveredRepo", "discover_repos", "http_base"]

logger = logging.getLogger(__name__)

_MAX_PAGE = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class DiscoveredRepo:
    """A repo to backfill; ``probe`` means it may hold nothing we keep (from ``listRepos``)."""

    did: str
    probe: bool = False


def http_base(url: str) -> str:
    """``scheme://host`` of a service URL, websocket schemes mapped to HTTP ones."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}"


async def _xrpc_pages(
    fetcher: UpstreamFetcher, base: str, method: str, params: dict[str, str]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        url = f"{base}/xrpc/{method}?{urlencode(query)}"
        try:
            raw = await fetcher.get_bytes(url, allow_trusted=True, limit=_MAX_PAGE, timeout_s=30.0)
        except UpstreamStatus as exc:
            raise BackfillError(f"{method} on {base} answered {exc.status}", retry=False) from None
        body = orjson.loads(raw)
        repos = body.get("repos") if isinstance(body, dict) else None
        if not isinstance(repos, list):
            raise BackfillError(f"{method} on {base}: no repos list", retry=False)
        out.extend(r for r in repos if isinstance(r, dict) and isinstance(r.get("did"), str))
        cursor = body.get("cursor")
        if not isinstance(cursor, str) or not cursor or not repos:
            return out


async def discover_repos(
    fetcher: UpstreamFetcher, base: str, collections: Sequence[str]
) -> list[DiscoveredRepo]:
    """Repos to backfill from the relay or PDS at ``base``.

    ``listReposByCollection`` for each exact collection (relays that index collections);
    if the host does not offer it, ``listRepos`` (every active repo of a PDS, to be
    probed for kept records). Raises :class:`BackfillError` if neither works.
    """
    exact = [c for c in collections if not c.endswith("*")]
    found: dict[str, DiscoveredRepo] = {}
    try:
        for collection in exact:
            for repo in await _xrpc_pages(
                fetcher,
                base,
                "com.atproto.sync.listReposByCollection",
                {"collection": collection, "limit": "2000"},
            ):
                found.setdefault(repo["did"], DiscoveredRepo(repo["did"]))
        if exact:
            logger.info(
                "repos discovered",
                extra={"host": base, "method": "listReposByCollection", "repos": len(found)},
            )
            return list(found.values())
    except (BackfillError, UpstreamError, TimeoutError, ValueError) as exc:
        logger.info("listReposByCollection unavailable", extra={"host": base, "error": str(exc)})
    try:
        repos = await _xrpc_pages(fetcher, base, "com.atproto.sync.listRepos", {"limit": "1000"})
    except (UpstreamError, TimeoutError, ValueError) as exc:
        raise BackfillError(f"listRepos on {base}: {exc}", retry=False) from None
    out = [
        DiscoveredRepo(r["did"], probe=True) for r in repos if r.get("active", True) is not False
    ]
    logger.info("repos discovered", extra={"host": base, "method": "listRepos", "repos": len(out)})
    return out
