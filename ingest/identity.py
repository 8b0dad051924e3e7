"""Resolving DIDs to their documents: handle, PDS endpoint and signing key.

``did:plc`` is read from the configured PLC directory, ``did:web`` from the host's
``/.well-known/did.json``. Failures raise :class:`ResolveError`. :class:`DidResolver`
caches documents for a TTL (and failures for a shorter one); commit verification asks it
for a fresh document once when a signature does not verify (the key may have rotated).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import httpx
from atproto_core.exceptions import AtProtocolError  # type: ignore[import-untyped]
from atproto_crypto.did import get_did_key  # type: ignore[import-untyped]

__all__ = ["DidDocument", "DidResolver", "ResolveError", "parse_did_document", "resolve_did"]

_DID_PLC = re.compile(r"^did:plc:[a-z2-7]{24}$")
_DID_WEB = re.compile(r"^did:web:[a-zA-Z0-9.-]+(%3A[0-9]+)?$")
MAX_DOCUMENT_SIZE = 64 * 1024


class ResolveError(RuntimeError):
    """A DID that could not be resolved to a usable document."""


@dataclass(frozen=True, slots=True)
class DidDocument:
    did: str
    handle: str | None
    pds_url: str | None
    signing_key: str | None
    """The ``#atproto`` verification method, as a multibase public key."""
    signing_did_key: str | None = None
    """The same key as a ``did:key:z…`` (compressed, multicodec-prefixed), for verification."""


def parse_did_document(did: str, doc: Any) -> DidDocument:
    """Pick the ATProto parts out of a DID document (JSON)."""
    if not isinstance(doc, dict) or doc.get("id") != did:
        raise ResolveError(f"{did}: document id does not match")
    handle = None
    for aka in doc.get("alsoKnownAs") or []:
        if isinstance(aka, str) and aka.startswith("at://"):
            handle = aka.removeprefix("at://").lower()
            break
    pds_url = None
    for service in doc.get("service") or []:
        if (
            isinstance(service, dict)
            and str(service.get("id", "")).endswith("#atproto_pds")
            and isinstance(service.get("serviceEndpoint"), str)
        ):
            pds_url = str(service["serviceEndpoint"]).rstrip("/")
    signing_key = signing_did_key = None
    for method in doc.get("verificationMethod") or []:
        if isinstance(method, dict) and str(method.get("id", "")).endswith("#atproto"):
            key = method.get("publicKeyMultibase")
            signing_key = key if isinstance(key, str) else None
            if signing_key is not None:
                try:
                    signing_did_key = get_did_key(str(method.get("type", "")), signing_key)
                except (
                    AtProtocolError,
                    ValueError,
                    TypeError,
                    KeyError,
                    IndexError,
                ):  # unusable key, not fatal
                    signing_did_key = None
    return DidDocument(did, handle, pds_url, signing_key, signing_did_key)


async def resolve_did(client: httpx.AsyncClient, plc_url: str, did: str) -> DidDocument:
    """Fetch and parse the DID document of ``did``."""
    if _DID_PLC.match(did):
        url = f"{plc_url.rstrip('/')}/{did}"
    elif _DID_WEB.match(did):
        host = did.removeprefix("did:web:").replace("%3A", ":")
        url = f"https://{host}/.well-known/did.json"
    else:
        raise ResolveError(f"{did}: unsupported DID method")
    try:
        response = await client.get(url, timeout=10.0)
    except httpx.HTTPError as exc:
        raise ResolveError(f"{did}: {exc}") from exc
    if response.status_code != 200:
        raise ResolveError(f"{did}: {url} answered {response.status_code}")
    if len(response.content) > MAX_DOCUMENT_SIZE:
        raise ResolveError(f"{did}: document too large")
    try:
        doc = response.json()
    except ValueError:
        raise ResolveError(f"{did}: document is not JSON") from None
    return parse_did_document(did, doc)


class DidResolver:
    """DID documents with a TTL cache; one resolution in flight per DID.

    ``ttl`` seconds for documents, ``failure_ttl`` for failures (so a dead host is not
    asked for every event), at most ``max_entries`` DIDs kept (least recently used go).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        plc_url: str,
        *,
        ttl: float = 3600.0,
        failure_ttl: float = 60.0,
        max_entries: int = 100_000,
    ) -> None:
        self._client = client
        self._plc_url = plc_url
        self._ttl = ttl
        self._failure_ttl = failure_ttl
        self._max = max_entries
        self._cache: OrderedDict[str, tuple[float, DidDocument | ResolveError]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[DidDocument]] = {}
        self.resolutions = 0

    async def resolve(self, did: str, *, fresh: bool = False) -> DidDocument:
        """The document of ``did``: cached unless expired or ``fresh`` is asked for."""
        now = time.monotonic()
        entry = self._cache.get(did)
        if entry is not None and not fresh and entry[0] > now:
            self._cache.move_to_end(did)
            if isinstance(entry[1], ResolveError):
                raise entry[1]
            return entry[1]
        pending = self._inflight.get(did)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[DidDocument] = asyncio.get_running_loop().create_future()
        self._inflight[did] = future
        try:
            self.resolutions += 1
            doc = await resolve_did(self._client, self._plc_url, did)
        except ResolveError as exc:
            self._store(did, now + self._failure_ttl, exc)
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        finally:
            self._inflight.pop(did, None)
        self._store(did, now + self._ttl, doc)
        future.set_result(doc)
        return doc

    def forget(self, did: str) -> None:
        """Drop the cached document of ``did`` (its ``#identity`` event says it changed)."""
        self._cache.pop(did, None)

    def _store(self, did: str, expires: float, value: DidDocument | ResolveError) -> None:
        self._cache[did] = (expires, value)
        self._cache.move_to_end(did)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
