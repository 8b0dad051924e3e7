"""Jetstream as a source: JSON events instead of the CBOR firehose, the same envelopes out.

A Jetstream server turns the firehose into one JSON object per op::

    {"did", "time_us", "kind": "commit",
     "commit": {"rev", "operation": "create"|"update"|"delete", "collection", "rkey",
                "record"?, "cid"?}}
    {"did", "time_us", "kind": "identity", "identity": {"did", "handle"?, "seq", "time"}}
    {"did", "time_us", "kind": "account", "account": {"did", "active", "status"?, "seq", "time"}}

We subscribe with one ``wantedCollections`` parameter per configured collection (prefix
wildcards such as ``fm.plyr.*`` work) and resume from ``cursor`` = the last ``time_us``
we published, kept in ``ingest_cursor`` under ``jetstream:<host>`` and rewound a little on
reconnect (duplicates are harmless; projectors are idempotent).

Jetstream carries no commit blocks and no signatures, so nothing can be verified: the
records are as trustworthy as the Jetstream host. Use the firehose where that matters.

One commit with several ops arrives as several events with the same ``rev``, so events
are dropped only when their rev is *older* than the repo's last one. Events for a repo
being backfilled are held by :class:`~ingest.repos.RepoStates` like the firehose's.
Handles are the DID document's, verified both ways (:mod:`ingest.handles`), as in the
firehose; with ``read_earlier`` a repo seen for the first time is marked so that the resync
worker reads its profile from the signed repo (:meth:`ingest.backfill.Backfill.read_earlier`).
Undecodable events are counted and skipped; they never stop the consumer.

With a ``plays_topic``, scrobble records (:data:`~ingest.commits.SCROBBLES`) of any repo are
subscribed to as well and go to that topic keyed by the listener, like the firehose's
(malformed ones counted as ``bad_scrobble``); they never make a repo known.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from psycopg_pool import AsyncConnectionPool
from websockets.asyncio.client import connect

from ingest.commits import SCROBBLES, CollectionFilter
from ingest.cursor import CursorKeeper
from ingest.errors import JetstreamError
from ingest.handles import HandleVerifier
from ingest.publisher import Publisher
from ingest.repos import RepoStates
from ingest.stream import TRANSIENT, keep_connected, receive_until_stopped
from kernel.account import account_status
from kernel.envelope import Envelope, Kind
from kernel.identity import DidResolver, ResolveError
from kernel.log import Log
from kernel.plays import ScrobbleError, parse_scrobble, scrobble_envelope
from lexicons import ValidationError, normalize_json_record

__all__ = [
    "JetstreamAccount",
    "JetstreamCommit",
    "JetstreamError",
    "JetstreamIdentity",
    "JetstreamIngest",
    "JetstreamStats",
    "event_envelope",
    "parse_event",
    "subscribe_url",
]

logger = logging.getLogger(__name__)

MAX_MESSAGE_SIZE = 2 * 1024 * 1024
CURSOR_REWIND_US = 2_000_000
_OPERATIONS: dict[str, Kind] = {
    "create": "record.created",
    "update": "record.updated",
    "delete": "record.deleted",
}


@dataclass(frozen=True, slots=True)
class JetstreamCommit:
    did: str
    time_us: int
    rev: str
    operation: str
    collection: str
    rkey: str
    cid: str | None
    record: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class JetstreamIdentity:
    did: str
    time_us: int
    handle: str | None


@dataclass(frozen=True, slots=True)
class JetstreamAccount:
    did: str
    time_us: int
    active: bool
    status: str | None


JetstreamEvent = JetstreamCommit | JetstreamIdentity | JetstreamAccount


_MAX_TIME_US = 253_402_300_800_000_000
"""Year 10000 in microseconds: past it no datetime (nor bigint cursor past 2^63) holds it."""

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
"""A JSON escape of a surrogate; only then can the decoded message hold a lone one."""


def _str(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise JetstreamError(f"{name}: expected a non-empty string")
    if "\x00" in value or not value.isprintable():
        # NUL (PostgreSQL text cannot hold it), lone surrogates, controls: no DID, rev,
        # collection or rkey holds them; storing one would crash the consumer.
        raise JetstreamError(f"{name}: holds a NUL, control or invalid character")
    return value


def parse_event(raw: str | bytes) -> JetstreamEvent:
    """A typed event from one Jetstream message; raises :class:`JetstreamError`."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        # RecursionError: nesting deeper than the interpreter's stack (a hostile message)
        raise JetstreamError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise JetstreamError("event must be an object")
    text = raw if isinstance(raw, str) else raw.decode(errors="replace")
    if _SURROGATE_ESCAPE.search(text):
        try:  # a lone surrogate cannot be encoded (envelope, log, database): refuse it here
            json.dumps(data, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise JetstreamError("holds a lone surrogate (invalid Unicode)") from None
    did = _str(data, "did")
    time_us = data.get("time_us")
    if not isinstance(time_us, int) or isinstance(time_us, bool) or not 0 < time_us < _MAX_TIME_US:
        raise JetstreamError("time_us: expected microseconds between 1970 and 9999")
    kind = data.get("kind")
    body = data.get(kind) if isinstance(kind, str) else None
    if not isinstance(body, dict):
        raise JetstreamError(f"kind {kind!r} without its object")
    if kind == "commit":
        operation = _str(body, "operation")
        if operation not in _OPERATIONS:
            raise JetstreamError(f"unknown operation {operation!r}")
        record = body.get("record")
        cid = body.get("cid")
        if operation != "delete":
            if not isinstance(record, dict):
                raise JetstreamError(f"{operation} without a record object")
            try:  # JSON can hold what the data model cannot (floats, a null $type)
                record = normalize_json_record(record)
            except ValidationError as exc:
                raise JetstreamError(str(exc)) from None
            if not isinstance(cid, str):
                raise JetstreamError(f"{operation} without a cid")
        rkey = _str(body, "rkey")
        collection = _str(body, "collection")
        if "/" in rkey or "/" in collection:
            raise JetstreamError("collection and rkey must not contain '/'")
        return JetstreamCommit(
            did,
            time_us,
            _str(body, "rev"),
            operation,
            collection,
            rkey,
            cid if isinstance(cid, str) else None,
            record if isinstance(record, dict) and operation != "delete" else None,
        )
    if kind == "identity":
        handle = body.get("handle")
        if isinstance(handle, str) and "\x00" in handle:
            raise JetstreamError("identity.handle: holds a NUL character")
        return JetstreamIdentity(did, time_us, handle if isinstance(handle, str) else None)
    if kind == "account":
        active = body.get("active")
        if not isinstance(active, bool):
            raise JetstreamError("account.active: expected a boolean")
        status = body.get("status")
        if isinstance(status, str) and "\x00" in status:
            raise JetstreamError("account.status: holds a NUL character")
        return JetstreamAccount(did, time_us, active, status if isinstance(status, str) else None)
    raise JetstreamError(f"unknown kind {kind!r}")


def time_of(time_us: int) -> str:
    """ISO 8601 UTC (milliseconds, ``Z``) of a microsecond timestamp."""
    moment = datetime.fromtimestamp(time_us / 1_000_000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def event_envelope(event: JetstreamEvent, source: str) -> Envelope:
    """The envelope for one Jetstream event (``seq`` is its ``time_us``)."""
    when = time_of(event.time_us)
    if isinstance(event, JetstreamCommit):
        return Envelope(
            kind=_OPERATIONS[event.operation],
            did=event.did,
            source=source,
            time=when,
            seq=event.time_us,
            rev=event.rev,
            collection=event.collection,
            rkey=event.rkey,
            cid=event.cid,
            record=event.record,
        )
    if isinstance(event, JetstreamIdentity):
        return Envelope(
            kind="identity.changed",
            did=event.did,
            source=source,
            time=when,
            seq=event.time_us,
            handle=event.handle,
        )
    return Envelope(
        kind="account.changed",
        did=event.did,
        source=source,
        time=when,
        seq=event.time_us,
        active=event.active,
        status=account_status(event.status, event.active),
    )


def subscribe_url(url: str, collections: tuple[str, ...], cursor: int | None) -> str:
    """The subscription URL with ``wantedCollections`` (one per collection) and ``cursor``."""
    params: list[tuple[str, str]] = [("wantedCollections", c) for c in collections]
    if cursor is not None:
        params.append(("cursor", str(cursor)))
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}{urlencode(params)}" if params else url


@dataclass
class JetstreamStats:
    events: int = 0
    published: int = 0
    held: int = 0
    reconnects: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    last_time_us: int | None = None


class JetstreamIngest:
    """Follows one Jetstream ``/subscribe`` endpoint into the ``repo`` topic."""

    def __init__(
        self,
        *,
        url: str,
        collections: tuple[str, ...],
        log: Log,
        topic: str,
        pool: AsyncConnectionPool,
        states: RepoStates,
        resolver: DidResolver,
        plays_topic: str | None = None,
        handles: HandleVerifier | None = None,
        read_earlier: bool = False,
    ) -> None:
        self.url = url
        self.source = f"jetstream:{urlsplit(url).netloc}"
        self._scrobbles = SCROBBLES if plays_topic is not None else None
        self._collections = collections + (
            tuple(sorted(SCROBBLES.exact)) if self._scrobbles is not None else ()
        )
        self._keep = CollectionFilter.of(collections)
        self._states = states
        self._resolver = resolver
        self._handles = handles if handles is not None else HandleVerifier(resolver.fetcher)
        # Whether a repo seen for the first time is resynced for what we keep of known repos
        # only (profiles; Jetstream never carries them here, the signed repo does).
        self._read_earlier = read_earlier
        self._cursor = CursorKeeper(pool, self.source)
        self.stats = JetstreamStats()
        self._publisher = Publisher(log, topic, pool, counts=self.stats)
        self._plays_publisher = (
            None
            if plays_topic is None
            else Publisher(log, plays_topic, pool, counts=self.stats, remember=False)
        )
        self.connected = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, reconnecting with capped, jittered backoff."""
        await self._cursor.load()

        def count() -> None:
            self.stats.reconnects += 1

        await keep_connected(
            lambda: self._session(stop),
            stop,
            retry_on=TRANSIENT,
            on_retry=count,
            message="jetstream disconnected",
            source=self.source,
        )
        await self._cursor.save()

    async def _session(self, stop: asyncio.Event) -> None:
        last = self._cursor.position
        cursor = None if last is None else max(0, last - CURSOR_REWIND_US)
        url = subscribe_url(self.url, self._collections, cursor)
        async with connect(url, max_size=MAX_MESSAGE_SIZE, open_timeout=15) as ws:
            logger.info("jetstream connected", extra={"source": self.source, "cursor": cursor})
            self.connected.set()
            try:
                await receive_until_stopped(ws, stop, self.handle_message)
            finally:
                self.connected.clear()
                await self._cursor.save()

    async def handle_message(self, raw: str | bytes) -> None:
        """Process one message: publish (or hold) its envelope, then move the cursor."""
        self.stats.events += 1
        try:
            event = parse_event(raw)
        except JetstreamError as exc:
            self.stats.skipped["undecodable"] += 1
            logger.warning("bad jetstream event", extra={"source": self.source, "error": str(exc)})
            return
        self.stats.last_time_us = event.time_us
        if self._cursor.position is None:  # first event ever (one check per message)
            await self._cursor.pin_start(event.time_us - 1)
        if (
            isinstance(event, JetstreamCommit)
            and self._scrobbles is not None
            and self._scrobbles(event.collection)
        ):
            await self._on_scrobble(event)
            await self._cursor.advance(event.time_us)
            return
        envelopes = await self._envelopes(event)
        if envelopes:
            did = event.did
            rev = event.rev if isinstance(event, JetstreamCommit) else None
            if self._states.is_backfilling(did):
                self._states.hold(did, envelopes, rev, None)
                self.stats.held += len(envelopes)
            else:
                await self._publisher.publish(envelopes)
                if rev is not None:
                    await self._states.advance(did, rev, None)
                if envelopes[0].kind == "identity.changed" and envelopes[0].handle:
                    await self._states.set_identity(did, handle=envelopes[0].handle)
                if isinstance(event, JetstreamAccount):
                    await self._states.set_identity(
                        did, account_status=account_status(event.status, event.active)
                    )
        await self._cursor.advance(event.time_us)

    async def _on_scrobble(self, event: JetstreamCommit) -> None:
        """Publish a scrobble op to the plays topic (the repo stays unknown if it was)."""
        assert self._plays_publisher is not None
        if event.record is not None:
            try:
                parse_scrobble(event.record)
            except ScrobbleError as exc:
                self.stats.skipped["bad_scrobble"] += 1
                logger.warning(
                    "bad scrobble",
                    extra={"source": self.source, "did": event.did, "error": str(exc)},
                )
                return
        envelope = scrobble_envelope(
            kind=_OPERATIONS[event.operation],
            listener=event.did,
            collection=event.collection,
            rkey=event.rkey,
            source=self.source,
            time=time_of(event.time_us),
            seq=event.time_us,
            rev=event.rev,
            cid=event.cid,
            record=event.record,
        )
        await self._plays_publisher.publish([envelope])

    async def _envelopes(self, event: JetstreamEvent) -> list[Envelope]:
        if not isinstance(event, JetstreamCommit):
            if not self._states.is_known(event.did):
                return []
            envelope = event_envelope(event, self.source)
            if isinstance(event, JetstreamIdentity):
                self._resolver.forget(event.did)
                envelope = replace(envelope, handle=await self._handle(event.did, fresh=True))
            return [envelope]
        if not self._keep(event.collection):
            self.stats.skipped["unwanted_collection"] += 1
            return []
        state = await self._states.get(event.did)
        if state is not None and state.rev is not None and event.rev < state.rev:
            self.stats.skipped["old_rev"] += 1
            return []
        out = [event_envelope(event, self.source)]
        if state is None:
            first = Envelope(
                kind="identity.changed",
                did=event.did,
                source=self.source,
                time=time_of(event.time_us),
                seq=event.time_us,
                handle=await self._handle(event.did, fresh=False),
            )
            out.insert(0, first)
            if self._read_earlier:  # before publishing: a crash in between still resyncs
                await self._states.mark_first_sight(event.did)
        return out

    async def _handle(self, did: str, *, fresh: bool) -> str | None:
        """The DID document's handle if verified, else ``handle.invalid`` (``None``: unreadable)."""
        try:
            doc = await self._resolver.resolve(did)
        except ResolveError as exc:
            logger.warning("did resolution failed", extra={"did": did, "error": str(exc)})
            return None
        return await self._handles.verify(did, doc.handle, fresh=fresh)
