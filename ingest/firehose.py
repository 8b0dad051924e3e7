"""The ``subscribeRepos`` consumer: frames in, envelopes onto the log, cursor saved after.

The cursor only moves once the log has acknowledged every envelope of every earlier
frame, so a crash anywhere resumes with no gap (duplicates are possible; projectors are
idempotent). Bad frames and unreadable commits are counted and skipped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import websockets
from psycopg_pool import AsyncConnectionPool
from websockets.asyncio.client import connect

from ingest.commits import (
    CollectionFilter,
    RecordError,
    account_envelope,
    commit_envelopes,
    identity_envelope,
)
from ingest.cursor import load_cursor, save_cursor
from ingest.frames import (
    MAX_FRAME_SIZE,
    AccountEvent,
    CommitEvent,
    ErrorFrame,
    FrameError,
    IdentityEvent,
    InfoEvent,
    SyncEvent,
    UnknownEvent,
    decode_frame,
)
from ingest.identity import ResolveError, resolve_did
from plyr_appview.envelope import Envelope
from plyr_appview.log import Log, LogError

__all__ = ["FirehoseIngest", "IngestStats", "backoff_delay"]

log = logging.getLogger(__name__)

_CURSOR_SAVE_INTERVAL = 1.0


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Capped exponential backoff with full jitter in its upper half."""
    ceiling = min(cap, base * 2.0**attempt)
    return ceiling * random.uniform(0.5, 1.0)


@dataclass
class IngestStats:
    frames: int = 0
    published: int = 0
    reconnects: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    last_event_time: str | None = None


class FirehoseIngest:
    """Follows one ``subscribeRepos`` endpoint (a relay or a PDS)."""

    def __init__(
        self,
        *,
        url: str,
        keep: CollectionFilter,
        log: Log,
        topic: str,
        pool: AsyncConnectionPool,
        plc_url: str,
        http: httpx.AsyncClient,
    ) -> None:
        self.url = url
        parts = urlsplit(url)
        self.source = f"firehose:{parts.netloc}"
        self._keep = keep
        self._log = log
        self._topic = topic
        self._pool = pool
        self._plc_url = plc_url
        self._http = http
        self._known: set[str] = set()
        self._cursor: int | None = None
        self._saved: int | None = None
        self._saved_at = 0.0
        self.stats = IngestStats()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, reconnecting with backoff."""
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT did FROM repo_state")
            self._known = {row[0] for row in await cur.fetchall()}
        self._cursor = self._saved = await load_cursor(self._pool, self.source)
        attempt = 0
        while not stop.is_set():
            try:
                await self._session(stop)
                attempt = 0
            except (OSError, websockets.WebSocketException, LogError, TimeoutError) as exc:
                self.stats.reconnects += 1
                delay = backoff_delay(attempt)
                attempt += 1
                log.warning(
                    "firehose disconnected",
                    extra={"source": self.source, "error": str(exc), "retry_in": delay},
                )
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
        await self._save_cursor(force=True)

    async def _session(self, stop: asyncio.Event) -> None:
        url = self.url if self._cursor is None else f"{self.url}?cursor={self._cursor}"
        async with connect(url, max_size=MAX_FRAME_SIZE, open_timeout=15) as ws:
            log.info("firehose connected", extra={"source": self.source, "cursor": self._cursor})
            stopper = asyncio.create_task(stop.wait())
            try:
                while not stop.is_set():
                    receive = asyncio.ensure_future(ws.recv())
                    done, _ = await asyncio.wait(
                        {receive, stopper}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if receive not in done:
                        receive.cancel()
                        return
                    raw = receive.result()
                    if isinstance(raw, str):
                        self.stats.skipped["text_frame"] += 1
                        continue
                    await self.handle_frame(raw)
            finally:
                stopper.cancel()
                await self._save_cursor(force=True)

    async def handle_frame(self, raw: bytes) -> None:
        """Process one frame: publish what it carries for us, then move the cursor."""
        self.stats.frames += 1
        try:
            event = decode_frame(raw)
        except FrameError as exc:
            self.stats.skipped["undecodable"] += 1
            log.warning("bad frame", extra={"source": self.source, "error": str(exc)})
            return
        envelopes: list[Envelope] = []
        seq: int | None = None
        if isinstance(event, CommitEvent):
            seq = event.seq
            self.stats.last_event_time = event.time
            try:
                envelopes = commit_envelopes(event, self._keep, self.source)
            except RecordError as exc:
                self.stats.skipped["bad_commit"] += 1
                log.warning(
                    "unreadable commit",
                    extra={"source": self.source, "did": event.repo, "seq": seq, "error": str(exc)},
                )
            if envelopes and event.repo not in self._known:
                envelopes.insert(0, await self._first_sight(event.repo, event.time, seq))
        elif isinstance(event, IdentityEvent):
            seq = event.seq
            if event.did in self._known:
                envelopes = [identity_envelope(event, self.source)]
        elif isinstance(event, AccountEvent):
            seq = event.seq
            if event.did in self._known:
                envelopes = [account_envelope(event, self.source)]
        elif isinstance(event, SyncEvent | UnknownEvent):
            seq = event.seq
        elif isinstance(event, InfoEvent):
            log.warning("firehose info", extra={"source": self.source, "info": event.name})
        elif isinstance(event, ErrorFrame):
            raise websockets.WebSocketException(f"error frame {event.error}: {event.message}")
        if envelopes:
            await self._log.append(self._topic, [(e.key, e.to_bytes()) for e in envelopes])
            self.stats.published += len(envelopes)
            await self._remember(envelopes)
        if seq is not None:
            self._cursor = seq
            await self._save_cursor(force=bool(envelopes))

    async def _first_sight(self, did: str, when: str, seq: int) -> Envelope:
        """An identity envelope for a repo we have not indexed before (handle from its DID doc)."""
        handle = None
        try:
            handle = (await resolve_did(self._http, self._plc_url, did)).handle
        except ResolveError as exc:
            log.warning("did resolution failed", extra={"did": did, "error": str(exc)})
        return Envelope(
            kind="identity.changed", did=did, source=self.source, time=when, seq=seq, handle=handle
        )

    async def _remember(self, envelopes: list[Envelope]) -> None:
        async with self._pool.connection() as conn:
            for env in envelopes:
                await conn.execute(
                    "INSERT INTO repo_state (did, rev, handle, status) VALUES (%s, %s, %s,"
                    " coalesce(%s, 'active')) ON CONFLICT (did) DO UPDATE SET"
                    " rev = coalesce(excluded.rev, repo_state.rev),"
                    " handle = coalesce(excluded.handle, repo_state.handle),"
                    " status = coalesce(%s, repo_state.status), updated_at = now()",
                    (env.did, env.rev, env.handle, env.status, env.status),
                )
                self._known.add(env.did)

    async def _save_cursor(self, *, force: bool) -> None:
        if self._cursor is None or self._cursor == self._saved:
            return
        now = time.monotonic()
        if not force and now - self._saved_at < _CURSOR_SAVE_INTERVAL:
            return
        await save_cursor(self._pool, self.source, self._cursor)
        self._saved, self._saved_at = self._cursor, now
