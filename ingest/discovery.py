"""Which repos to backfill: ``listReposByCollection`` on a relay, else ``listRepos`` on a PDS.

Errors: :class:`~ingest.errors.BackfillError` (``retry=False``) when neither answers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from ingest.errors import BackfillError

__all__ = ["DiscoveredRepo", "discover_repos", "http_base"]

log = logging.getLogger(__name__)


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
    http: httpx.AsyncClient, base: str, method: str, params: dict[str, str]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        response = await http.get(f"{base}/xrpc/{method}", params=query, timeout=30.0)
        if response.status_code != 200:
            raise BackfillError(f"{method} on {base} answered {response.status_code}", retry=False)
        body = response.json()
        repos = body.get("repos") if isinstance(body, dict) else None
        if not isinstance(repos, list):
            raise BackfillError(f"{method} on {base}: no repos list", retry=False)
        out.extend(r for r in repos if isinstance(r, dict) and isinstance(r.get("did"), str))
        cursor = body.get("cursor")
        if not isinstance(cursor, str) or not cursor or not repos:
            return out


async def discover_repos(
    http: httpx.AsyncClient, base: str, collections: Sequence[str]
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
                http,
                base,
                "com.atproto.sync.listReposByCollection",
                {"collection": collection, "limit": "2000"},
            ):
                found.setdefault(repo["did"], DiscoveredRepo(repo["did"]))
        if exact:
            log.info(
                "repos discovered",
                extra={"host": base, "method": "listReposByCollection", "repos": len(found)},
            )
            return list(found.values())
    except (BackfillError, httpx.HTTPError, ValueError) as exc:
        log.info("listReposByCollection unavailable", extra={"host": base, "error": str(exc)})
    try:
        repos = await _xrpc_pages(http, base, "com.atproto.sync.listRepos", {"limit": "1000"})
    except (httpx.HTTPError, ValueError) as exc:
        raise BackfillError(f"listRepos on {base}: {exc}", retry=False) from None
    out = [
        DiscoveredRepo(r["did"], probe=True) for r in repos if r.get("active", True) is not False
    ]
    log.info("repos discovered", extra={"host": base, "method": "listRepos", "repos": len(out)})
    return out
