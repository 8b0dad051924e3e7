"""Resolving DIDs to their documents: handle, PDS, signing key, labeler endpoint and key.

The one resolver of the product (ingest and the API both ask it). ``did:plc`` is read from
the configured PLC directory, ``did:web`` from the host's ``/.well-known/did.json``
(:func:`did_document_url`), both through the guarded fetcher (:mod:`kernel.fetch`): the
PLC directory may be a trusted host, a ``did:web`` host never is.

The document is parsed by the atproto SDK's ``DidDocument`` (structure; the exact
``#atproto`` and ``#atproto_pds`` ids; the ``AtprotoPersonalDataServer`` type; http(s)
endpoints), plus the checks it lacks: the document's ``id`` must be the DID asked for, it
must be a JSON object of at most :data:`MAX_DOCUMENT_SIZE` bytes, and the handle is
lowercased. The handle is only the document's claim: :mod:`ingest.handles` verifies it
before anything shows it. An unusable key (bad multibase, unknown type) reads as no key.

Failures raise :class:`ResolveError`. :class:`DidResolver` caches documents for a TTL (and
failures for a shorter one); callers ask it for a fresh document once when a signature
does not verify (the key may have rotated).
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson
from atproto_core.did_doc import DidDocument as SdkDidDocument
from atproto_core.exceptions import AtProtocolError
from atproto_crypto.did import get_did_key
from pydantic import ValidationError

from kernel.fetch import UpstreamError, UpstreamFetcher
from kernel.singleflight import SingleFlight

__all__ = [
    "INVALID_HANDLE",
    "MAX_DOCUMENT_SIZE",
    "DidDocument",
    "DidResolver",
    "ResolveError",
    "did_document_url",
    "parse_did_document",
    "resolve_did",
]

INVALID_HANDLE = "handle.invalid"
"""What a DID's handle is shown as when it does not verify both ways (the AT Protocol's
reserved name): never a real handle, so it never wins a by-handle lookup."""

_DID_PLC = re.compile(r"^did:plc:[a-z2-7]{24}$")
_DID_WEB = re.compile(r"^did:web:[a-zA-Z0-9.-]+(%3A[0-9]+)?$")
MAX_DOCUMENT_SIZE = 64 * 1024


class ResolveError(RuntimeError):
    """A DID that could not be resolved to a usable document."""


@dataclass(frozen=True, slots=True)
class DidDocument:
    """The ATProto parts of a DID document."""

    did: str
    handle: str | None
    pds_url: str | None
    signing_key: str | None
    """The ``#atproto`` verification method, as a multibase public key."""
    signing_did_key: str | None = None
    """The same key as a ``did:key:z…`` (compressed, multicodec-prefixed), for verification."""
    label_key: str | None = None
    """The ``#atproto_label`` key as a ``did:key`` (labelers only)."""
    labeler_url: str | None = None
    """The ``#atproto_labeler`` service endpoint (labelers only)."""


def did_document_url(plc_url: str, did: str) -> str:
    """Where the document of ``did`` lives; raises :class:`ResolveError` for other methods."""
    if _DID_PLC.match(did):
        return f"{plc_url.rstrip('/')}/{did}"
    if _DID_WEB.match(did):
        return f"https://{did.removeprefix('did:web:').replace('%3A', ':')}/.well-known/did.json"
    raise ResolveError(f"{did}: unsupported DID method")


def _did_key(key_type: str, multibase: str | None) -> str | None:
    if multibase is None:
        return None
    try:
        key = get_did_key(key_type, multibase)  # None for a key type it does not know
    except (AtProtocolError, ValueError, TypeError, KeyError, IndexError):  # unusable key
        return None
    return key if isinstance(key, str) else None


def parse_did_document(did: str, doc: Any) -> DidDocument:
    """Pick the ATProto parts out of a DID document (decoded JSON) of ``did``."""
    if not isinstance(doc, dict) or doc.get("id") != did:
        raise ResolveError(f"{did}: document id does not match")
    try:
        parsed = SdkDidDocument.from_dict(doc)
    except ValidationError as exc:
        raise ResolveError(f"{did}: malformed document: {exc.error_count()} errors") from None
    handle = parsed.get_handle()
    pds_url = parsed.get_pds_endpoint()
    signing = parsed.get_signing_key()
    label = next(
        (
            m
            for m in parsed.verification_method or []
            if m.id in ("#atproto_label", f"{did}#atproto_label")
        ),
        None,
    )
    return DidDocument(
        did=did,
        handle=handle.lower() if handle else None,
        pds_url=pds_url.rstrip("/") if pds_url else None,
        signing_key=signing.public_key_multibase if signing else None,
        signing_did_key=_did_key(signing.type, signing.public_key_multibase) if signing else None,
        label_key=_did_key(label.type, label.public_key_multibase) if label else None,
        labeler_url=parsed.get_service_endpoint("#atproto_labeler", "AtprotoLabeler"),
    )


async def resolve_did(fetcher: UpstreamFetcher, plc_url: str, did: str) -> DidDocument:
    """Fetch (guarded, at most :data:`MAX_DOCUMENT_SIZE` bytes) and parse ``did``'s document."""
    url = did_document_url(plc_url, did)
    try:
        body = await fetcher.get_bytes(
            url, allow_trusted=did.startswith("did:plc:"), limit=MAX_DOCUMENT_SIZE, timeout_s=10.0
        )
    except (UpstreamError, TimeoutError) as exc:
        raise ResolveError(f"{did}: {exc}") from None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ResolveError(f"{did}: document is not JSON") from None
    return parse_did_document(did, doc)


class DidResolver:
    """DID documents with a TTL cache; one resolution in flight per DID.

    ``ttl`` seconds for documents, ``failure_ttl`` for failures (so a dead host is not
    asked for every event), at most ``max_entries`` DIDs kept (least recently used go).
    """

    def __init__(
        self,
        fetcher: UpstreamFetcher,
        plc_url: str,
        *,
        ttl: float = 3600.0,
        failure_ttl: float = 60.0,
        max_entries: int = 100_000,
    ) -> None:
        self._fetcher = fetcher
        self._plc_url = plc_url
        self._ttl = ttl
        self._failure_ttl = failure_ttl
        self._max = max_entries
        self._cache: OrderedDict[str, tuple[float, DidDocument | ResolveError]] = OrderedDict()
        self._flights: SingleFlight[str, DidDocument] = SingleFlight()
        self.resolutions = 0

    @property
    def fetcher(self) -> UpstreamFetcher:
        """The guarded fetcher documents are read with (handle checks share it)."""
        return self._fetcher

    async def resolve(self, did: str, *, fresh: bool = False) -> DidDocument:
        """The document of ``did``: cached unless expired or ``fresh`` is asked for."""
        now = time.monotonic()
        entry = self._cache.get(did)
        if entry is not None and not fresh and entry[0] > now:
            self._cache.move_to_end(did)
            if isinstance(entry[1], ResolveError):
                raise entry[1]
            return entry[1]
        return await self._flights.run(did, lambda: self._resolve_now(did))

    async def _resolve_now(self, did: str) -> DidDocument:
        now = time.monotonic()
        self.resolutions += 1
        try:
            doc = await resolve_did(self._fetcher, self._plc_url, did)
        except ResolveError as exc:
            self._store(did, now + self._failure_ttl, exc)
            raise
        self._store(did, now + self._ttl, doc)
        return doc

    def forget(self, did: str) -> None:
        """Drop the cached document of ``did`` (its ``#identity`` event says it changed)."""
        self._cache.pop(did, None)

    def _store(self, did: str, expires: float, value: DidDocument | ResolveError) -> None:
        self._cache[did] = (expires, value)
        self._cache.move_to_end(did)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
