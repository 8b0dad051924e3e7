"""Handle verification: a DID document's handle is shown only if the handle points back.

A DID document's ``alsoKnownAs`` names a handle, but anyone can write any name there. ATProto
asks for the bidirectional check: the handle must resolve back to the same DID, through
the DNS TXT record ``_atproto.<handle>`` (``did=<DID>``) or, failing that, the body of
``https://<handle>/.well-known/atproto-did``. A handle that fails (bad syntax, a reserved
TLD, no answer, another DID, unreachable) is published as :data:`INVALID_HANDLE`, as other
apps show it; so the catalog only ever stores a handle that was verified, or
``handle.invalid``, and an unverified handle never wins a by-handle lookup (it replaces a
handle the DID held before, which may now belong to someone else).

Both lookups go through :class:`kernel.fetch.UpstreamFetcher`: the well-known fetch is
address-checked like every fetch (a handle is a name anyone can point at ``127.0.0.1``).
``hosts`` (``PLYR_HANDLE_HOSTS``) maps a handle suffix to a trusted server that answers
for those handles when asked with the handle as ``Host``: a local test network's PDS
(``.test``) is verified for real this way, not switched off. Such handles skip DNS.

:class:`HandleVerifier` caches what a handle resolves to for ``ttl`` seconds (failures
for ``failure_ttl``), one lookup in flight per handle; ``#identity`` events ask for a
fresh answer. Lookup failures never raise: they read as "does not resolve".
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterable

from kernel.fetch import UpstreamError, UpstreamFetcher
from kernel.identity import INVALID_HANDLE
from kernel.singleflight import SingleFlight
from lexicons.formats import is_did, is_handle

__all__ = [
    "INVALID_HANDLE",
    "RESERVED_TLDS",
    "HandleVerifier",
    "did_from_txt",
    "did_from_well_known",
    "normalize_handle",
]

logger = logging.getLogger(__name__)

RESERVED_TLDS = frozenset(
    {"alt", "arpa", "example", "internal", "invalid", "local", "localhost", "onion"}
)
"""TLDs the handle spec disallows (``.test`` stays allowed, for test networks)."""
_WELL_KNOWN_LIMIT = 2048


def normalize_handle(value: str | None) -> str | None:
    """``value`` lower-cased if it is a syntactically valid, resolvable handle, else ``None``."""
    if not value:
        return None
    handle = value.lower()
    if not is_handle(handle) or handle.rsplit(".", 1)[-1] in RESERVED_TLDS:
        return None
    return handle


def did_from_txt(records: Iterable[str]) -> str | None:
    """The DID of ``_atproto`` TXT records: exactly one distinct valid ``did=`` value."""
    dids = {r.strip()[4:] for r in records if r.strip().startswith("did=")}
    if len(dids) != 1:
        return None
    did = dids.pop()
    return did if is_did(did) else None


def did_from_well_known(body: bytes) -> str | None:
    """The DID of a ``/.well-known/atproto-did`` body (one line, surrounding space ignored)."""
    try:
        text = body.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    return text if is_did(text) else None


class HandleVerifier:
    """Resolves handles to DIDs (cached) and checks them against a DID's claim."""

    def __init__(
        self,
        fetcher: UpstreamFetcher,
        *,
        hosts: Iterable[tuple[str, str]] = (),
        ttl: float = 3600.0,
        failure_ttl: float = 300.0,
        timeout_s: float = 5.0,
        min_refresh: float = 5.0,
        max_entries: int = 100_000,
    ) -> None:
        self._fetcher = fetcher
        self._hosts = tuple((suffix.lower(), base.rstrip("/")) for suffix, base in hosts)
        self._ttl = ttl
        self._failure_ttl = failure_ttl
        self._timeout = timeout_s
        self._min_refresh = min_refresh
        self._max = max_entries
        # handle -> (expires, looked up at, DID or None)
        self._cache: OrderedDict[str, tuple[float, float, str | None]] = OrderedDict()
        self._flights: SingleFlight[str, str | None] = SingleFlight()
        self.lookups = 0

    async def verify(self, did: str, handle: str | None, *, fresh: bool = False) -> str:
        """``handle`` (normalized) if it resolves back to ``did``, else :data:`INVALID_HANDLE`."""
        normal = normalize_handle(handle)
        if normal is None:
            if handle:
                logger.info("handle refused", extra={"did": did, "handle": handle[:300]})
            return INVALID_HANDLE
        resolved = await self.resolve(normal, fresh=fresh)
        if resolved != did:
            logger.info(
                "handle not verified",
                extra={"did": did, "handle": normal, "resolves_to": resolved},
            )
            return INVALID_HANDLE
        return normal

    async def resolve(self, handle: str, *, fresh: bool = False) -> str | None:
        """The DID ``handle`` (normalized) resolves to, or ``None``: cached unless ``fresh``.

        ``fresh`` still reuses a successful answer younger than ``min_refresh`` seconds, so a
        burst of ``#identity`` events for one DID costs one lookup, not one each. A failure is
        never reused by ``fresh``: a PDS stops answering for a deactivated account's handle,
        and the ``#identity`` it sends on reactivation, often seconds later, must see the
        handle again rather than the failure.
        """
        now = time.monotonic()
        entry = self._cache.get(handle)
        if (
            entry is not None
            and entry[0] > now
            and (not fresh or (entry[2] is not None and now - entry[1] < self._min_refresh))
        ):
            self._cache.move_to_end(handle)
            return entry[2]
        return await self._flights.run(handle, lambda: self._look_up_now(handle))

    async def _look_up_now(self, handle: str) -> str | None:
        now = time.monotonic()
        self.lookups += 1
        did = await self._lookup(handle)
        self._cache[handle] = (now + (self._ttl if did else self._failure_ttl), now, did)
        self._cache.move_to_end(handle)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return did

    async def _lookup(self, handle: str) -> str | None:
        base = next((b for s, b in self._hosts if handle.endswith(s)), None)
        if base is not None:  # a trusted server answers for this suffix
            return await self._well_known(f"{base}/.well-known/atproto-did", handle, True)
        try:
            did = did_from_txt(
                await self._fetcher.txt(f"_atproto.{handle}", timeout_s=self._timeout)
            )
        except UpstreamError as exc:
            logger.info("handle dns lookup failed", extra={"handle": handle, "error": str(exc)})
            did = None
        if did is not None:
            return did
        return await self._well_known(f"https://{handle}/.well-known/atproto-did", None, False)

    async def _well_known(self, url: str, host: str | None, trusted: bool) -> str | None:
        try:
            body = await self._fetcher.get_bytes(
                url,
                allow_trusted=trusted,
                limit=_WELL_KNOWN_LIMIT,
                timeout_s=self._timeout,
                host=host,
            )
        except (UpstreamError, TimeoutError) as exc:
            logger.info("handle well-known failed", extra={"url": url, "error": str(exc)[:300]})
            return None
        return did_from_well_known(body)
