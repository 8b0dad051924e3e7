"""The ``subscribeRepos`` consumer: frames in, verified envelopes onto the log, cursor after.

Per frame, in order:

1. :class:`~ingest.commits.Triage` reads ``seq`` and ``repo`` of a commit straight from
   its bytes; a commit whose op paths cannot name a kept collection, from a repo we do not
   index, only moves the cursor (this is ~99.5% of relay traffic).
2. Anything else is decoded. A commit touching kept collections is checked: ``rev`` newer
   than the last applied (else dropped as a replay), CAR blocks match their CIDs, the
   commit block is the one named by ``commit``, its signature verifies against the
   repo's DID document key (re-resolved once on failure: key rotation), each kept op is
   proven against the signed MST root through the CAR's nodes (a created or updated path
   maps to the op's CID, a deleted one is absent; :func:`~ingest.verify.check_ops`), every
   created or updated record's block is in the CAR. Refusals are counted by reason, never
   published.
   Commits of known repos that touch nothing kept are not verified; they only move the
   repo's ``rev``/``data`` so the sync-1.1 chain can be checked on the next one.
3. sync 1.1: a commit whose ``prevData`` differs from the data CID we hold for an active
   repo means we missed something: the repo is marked ``desynchronized`` (the backfill
   worker resyncs it; see :class:`~ingest.repos.RepoStates`); the commit itself is verified
   and still published. ``#sync`` events with another data CID do the same, and
   ``#info OutdatedCursor`` marks every active repo.
4. ``#identity``/``#account`` events of repos we index become envelopes keyed by the DID,
   so they reach the log in order with its records. The handle they carry is the DID
   document's, verified both ways (:class:`~ingest.handles.HandleVerifier`), else
   ``handle.invalid``.
5. A repo seen for the first time gets an identity envelope (verified handle) before its
   records, and is marked for a resync (:meth:`~ingest.repos.RepoStates.mark_first_sight`):
   what we keep only of known repos (``keep_known``: profiles) was written before, and the
   resync worker reads it from the signed repo (``getRepo``,
   :meth:`~ingest.backfill.Backfill.read_earlier`), never unverified.
6. Scrobbles (``fm.teal.feed.play`` and its alpha twin, :data:`~ingest.commits.SCROBBLES`)
   from ANY repo, when ``plays_topic`` is set: their commit is verified like any other,
   well-formed ones go to the ``plays`` topic keyed by the listener, malformed ones are
   counted (``bad_scrobble``). They never make a repo known: no identity envelope, no repo
   state, and nothing else of the listener's repo is kept.
7. While a repo is backfilling its envelopes are held by ``RepoStates`` instead of
   published; the cursor still moves (the persisted ``backfilling`` status re-runs that
   backfill after a crash).

Frames are read and decoded one at a time, in stream order; the work of an event (steps
2 to 7) runs on its repo's lane (:class:`~ingest.lanes.RepoLanes`): one repo's events in
order, different repos' at once. Waiting is per repo: a DID document on a slow or hostile
``did:web`` host, a handle whose DNS or HTTPS server does not answer, hold that repo's
later events (its order on the log is what projectors rely on), not everyone's. At most
``max_in_flight`` events are unfinished; then the socket is not read (backpressure). A frame
of a repo with work queued is never skipped by triage: the repo may be becoming known.
``#info`` waits for all earlier work (``OutdatedCursor`` marks every repo: a barrier).
Per-repo state (:class:`~ingest.repos.RepoStates`) is only changed from that repo's lane,
or by the backfill worker as before; counters are plain increments between awaits.

The cursor is the last event of the finished prefix of what was read: it never passes an
event whose work is unfinished, so a crash anywhere resumes with no gap (the events after
it that were done are read again: duplicates are possible and projectors are idempotent).
Repo state noted for those events is flushed before the cursor is written
(:meth:`~ingest.cursor.CursorKeeper.save`). A lane's failure ends the session (the cursor
stays before it). A session ends after the work in progress, as it did after the frame in
hand (lookups end at their timeouts); work that failed or never ran is read again after
reconnecting. Bad input (undecodable, truncated or oversized frames, unreadable commits)
is counted, sampled to the log at most once per reason every few seconds, and skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from urllib.parse import urlsplit

from cbrrr import CID
from psycopg_pool import AsyncConnectionPool
from websockets.asyncio.client import connect

from ingest.car import CarError, cid_string, read_car
from ingest.commits import (
    SCROBBLES,
    CollectionFilter,
    RecordError,
    Triage,
    account_envelope,
    commit_envelopes,
    identity_envelope,
    scrobble_envelopes,
)
from ingest.cursor import CursorKeeper
from ingest.errors import SourceError
from ingest.frames import (
    MAX_FRAME_SIZE,
    AccountEvent,
    CommitEvent,
    ErrorFrame,
    FrameError,
    IdentityEvent,
    InfoEvent,
    Op,
    SyncEvent,
    UnknownEvent,
    decode_frame,
    peek_commit,
)
from ingest.handles import HandleVerifier
from ingest.lanes import RepoLanes
from ingest.metrics import IngestStats
from ingest.publisher import Publisher
from ingest.repos import ACTIVE, RepoStates
from ingest.stream import TRANSIENT, keep_connected
from ingest.verify import CommitVerifier, VerifyError, check_ops, decode_commit
from kernel.account import account_status
from kernel.envelope import Envelope
from kernel.fetch import UpstreamFetcher
from kernel.identity import DidResolver, ResolveError
from kernel.log import Log

__all__ = ["FirehoseIngest", "IngestStats", "SourceError", "save_counters"]

logger = logging.getLogger(__name__)

_TIME_SAMPLE_INTERVAL = 1.0
_WARN_INTERVAL = 10.0
_RECV_LIMIT = 4 * MAX_FRAME_SIZE  # larger frames are refused by us (counted), not by the socket
MAX_IN_FLIGHT = 256
"""Events whose work may be unfinished at once before the socket is no longer read."""


def _event_time(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


async def save_counters(pool: AsyncConnectionPool, stats: IngestStats) -> None:
    """Persist the counters of ``stats`` (``ingest_counter``) for ``plyr-appview status``."""
    rows = [(stats.source, name, value) for name, value in stats.as_counters().items()]
    async with pool.connection() as conn, conn.transaction():
        cur = conn.cursor()
        await cur.executemany(
            "INSERT INTO ingest_counter (source, name, value, updated_at) VALUES (%s, %s, %s,"
            " now()) ON CONFLICT (source, name) DO UPDATE SET value = excluded.value,"
            " updated_at = now()",
            rows,
        )


class FirehoseIngest:
    """Follows one ``subscribeRepos`` endpoint (a relay or a PDS)."""

    def __init__(
        self,
        *,
        url: str,
        keep: CollectionFilter,
        keep_known: CollectionFilter | None = None,
        log: Log,
        topic: str,
        pool: AsyncConnectionPool,
        plc_url: str,
        fetcher: UpstreamFetcher,
        states: RepoStates | None = None,
        resolver: DidResolver | None = None,
        handles: HandleVerifier | None = None,
        stats: IngestStats | None = None,
        max_frame_size: int = MAX_FRAME_SIZE,
        plays_topic: str | None = None,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.url = url
        parts = urlsplit(url)
        self.source = f"firehose:{parts.netloc}"
        self._keep = keep
        # Repos we already index also keep these (profiles); frames of known repos are
        # decoded in full anyway, so this costs nothing on the skip path.
        self._keep_known = keep_known or keep
        # Scrobbles of any repo are followed only when there is a plays topic for them.
        self._scrobbles = SCROBBLES if plays_topic is not None else None
        self._triage = Triage(keep if self._scrobbles is None else keep.plus(SCROBBLES.exact))
        self._pool = pool
        self.states = states if states is not None else RepoStates(pool)
        self.resolver = resolver if resolver is not None else DidResolver(fetcher, plc_url)
        self.handles = handles if handles is not None else HandleVerifier(fetcher)
        self._verifier = CommitVerifier(self.resolver)
        self._max_frame = max_frame_size
        # Relay seqs only grow; one that goes back (a relay reset) is followed, not ignored.
        self._cursor = CursorKeeper(
            pool, self.source, forward_only=False, before_save=self._persist_state
        )
        # A publishing event's lane saves the cursor once the cursor passes it, as a
        # one-at-a-time consumer would (a restart then replays little).
        self._lanes = RepoLanes(
            self._cursor.note, limit=max_in_flight, after_publish=self._save_cursor
        )
        self._time_sampled_at = 0.0
        self._warned_at: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._counters_saved: dict[str, int] = {}
        self.stats = stats if stats is not None else IngestStats(self.source)
        self._publisher = Publisher(log, topic, pool, counts=self.stats)
        self._plays_publisher = (
            None
            if plays_topic is None
            else Publisher(log, plays_topic, pool, counts=self.stats, remember=False)
        )
        self.connected = asyncio.Event()
        """Set once the first connection is open (backfill starts after live is running)."""

    async def start(self) -> None:
        """Load repo state and the saved cursor (``run`` does it; tests may call it alone)."""
        await self.states.load()
        self.stats.cursor = await self._cursor.load()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, reconnecting with capped, jittered backoff."""
        await self.start()

        def count() -> None:
            self.stats.reconnects += 1

        await keep_connected(
            lambda: self._session(stop),
            stop,
            retry_on=(*TRANSIENT, SourceError),
            on_retry=count,
            message="firehose disconnected",
            source=self.source,
        )
        await self._save_cursor()

    async def _session(self, stop: asyncio.Event) -> None:
        cursor = self._cursor.position
        url = self.url if cursor is None else f"{self.url}?cursor={cursor}"
        async with connect(url, max_size=_RECV_LIMIT, open_timeout=15) as ws:
            logger.info("firehose connected", extra={"source": self.source, "cursor": cursor})
            self.connected.set()

            async def close_on_stop_or_failure() -> None:
                stopped = asyncio.create_task(stop.wait())
                failed = asyncio.create_task(self._lanes.failed.wait())
                try:
                    await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stopped.cancel()
                    failed.cancel()
                await ws.close()

            closer = asyncio.create_task(close_on_stop_or_failure())
            saver = asyncio.create_task(self._save_when_due())
            try:
                async for raw in ws:
                    if isinstance(raw, str):
                        self._reject("text_frame", "text frame on a binary stream")
                        continue
                    await self.receive(raw)
                    if stop.is_set():
                        break
                self._lanes.check()  # work failed: the closer ended the loop
            except BaseException as exc:
                # Cancelled: no waiting for work (what is cancelled is read again).
                cancel = isinstance(exc, asyncio.CancelledError)
                await self._wind_down(closer, saver, cancel=cancel, raise_failure=False)
                raise
            await self._wind_down(closer, saver, cancel=False, raise_failure=True)

    async def _save_when_due(self) -> None:
        """Save the cursor once per interval (it only ever holds finished events)."""
        try:
            while True:
                await asyncio.sleep(self._cursor.interval)
                if self._cursor.due():
                    await self._save_cursor()
        except Exception as exc:  # ends the session like failed work (the cursor stays put)
            self._lanes.fail(exc)

    async def _wind_down(
        self,
        closer: asyncio.Task[None],
        saver: asyncio.Task[None],
        *,
        cancel: bool,
        raise_failure: bool,
    ) -> None:
        """End a session: let work in progress end (or cancel it), then save the cursor."""
        closer.cancel()
        try:
            await self._lanes.close(cancel=cancel)
        except Exception as exc:
            if raise_failure:
                raise
            logger.warning("repo work failed", extra={"source": self.source, "error": str(exc)})
        finally:
            saver.cancel()
            await asyncio.gather(closer, saver, return_exceptions=True)
        await self._save_cursor()

    # -- per frame -------------------------------------------------------------------

    async def handle_frame(self, raw: bytes) -> None:
        """Process one frame completely: :meth:`receive`, then wait for all queued work.

        One frame at a time, as a test or a benchmark drives it.
        """
        await self.receive(raw)
        await self._lanes.drain()

    async def receive(self, raw: bytes) -> None:
        """Read one frame in stream order; its repo's work goes on the repo's lane.

        Returns once the frame is decoded and its work queued (waiting while too much is
        unfinished); ``#info`` waits for all earlier work first (a barrier). Raises the
        exception of failed work.
        """
        self._lanes.check()
        if self._cursor.position is None:
            await self._pin_start(raw)
        skip = self._triage.skip(raw)
        # A repo with work queued may be becoming known: its frames join its lane, in order.
        if skip is not None and not self.states.is_known(skip[1]) and not self._lanes.busy(skip[1]):
            self.stats.events["commit"] += 1
            now = time.monotonic()
            if now - self._time_sampled_at >= _TIME_SAMPLE_INTERVAL:
                self._sample_time(raw, now)
            self._lanes.passed(skip[0])
            return
        if len(raw) > self._max_frame:
            self.stats.events["oversized"] += 1
            peek = peek_commit(raw)
            self._reject("oversized_frame", f"{len(raw)} bytes", seq=peek[0] if peek else None)
            if peek is not None:
                self._lanes.passed(peek[0])
            return
        try:
            event = decode_frame(raw)
        except FrameError as exc:
            self.stats.events["undecodable"] += 1
            self._reject("undecodable", str(exc))
            return
        if isinstance(event, CommitEvent):
            self.stats.events["commit"] += 1
            self._see_time(event.time)
            await self._lanes.submit(event.repo, event.seq, lambda: self._on_commit(event))
        elif isinstance(event, IdentityEvent):
            self.stats.events["identity"] += 1
            self._see_time(event.time)
            await self._lanes.submit(event.did, event.seq, lambda: self._on_identity(event))
        elif isinstance(event, AccountEvent):
            self.stats.events["account"] += 1
            self._see_time(event.time)
            await self._lanes.submit(event.did, event.seq, lambda: self._on_account(event))
        elif isinstance(event, SyncEvent):
            self.stats.events["sync"] += 1
            self._see_time(event.time)
            await self._lanes.submit(event.did, event.seq, lambda: self._on_sync(event))
        elif isinstance(event, InfoEvent):
            self.stats.events["info"] += 1
            await self._lanes.drain()  # e.g. OutdatedCursor marks every repo: after all before
            await self._on_info(event)
        elif isinstance(event, ErrorFrame):
            self.stats.events["error"] += 1
            self.stats.rejected[f"error_frame:{event.error}"] += 1
            raise SourceError(f"error frame {event.error}: {event.message}")
        elif isinstance(event, UnknownEvent):
            self.stats.events["unknown"] += 1
            self._reject("unknown_type", event.type, seq=event.seq)
            if event.seq is not None:
                self._lanes.passed(event.seq)

    async def _pin_start(self, raw: bytes) -> None:
        """No cursor yet (first run): resume from just before this frame if we crash."""
        try:
            event = decode_frame(raw)
        except FrameError:
            return
        seq = getattr(event, "seq", None)
        if isinstance(seq, int) and seq > 0:
            await self._cursor.pin_start(seq - 1)
            self.stats.cursor = self._cursor.saved

    async def _on_commit(self, event: CommitEvent) -> bool:
        """Check and publish (or hold) a commit; whether anything was published."""
        did = event.repo
        state = self.states.cached(did)
        keep = self._keep if state is None else self._keep_known
        wanted = keep.wanted(event.ops)
        scrobbles = self._scrobbles.wanted(event.ops) if self._scrobbles is not None else []
        if state is not None and state.rev is not None and event.rev <= state.rev:
            if wanted or scrobbles:
                self._reject("stale_rev", f"{did} rev {event.rev} <= {state.rev}", seq=event.seq)
            return False
        if not wanted and scrobbles:
            return await self._on_scrobbles(event, scrobbles, state is not None)
        if not wanted:
            unknown = self._keep.unknown(event.ops)
            if unknown:
                self._reject("unknown_collection", unknown[0].path, seq=event.seq)
            if state is not None:  # a repo we index: follow its chain, unverified (cost)
                await self._follow(event)
            return False
        if event.too_big:
            self._reject("too_big", did, seq=event.seq)
            await self._desynchronize(did, "tooBig commit")
            return False
        try:
            _, blocks = read_car(event.blocks)
        except CarError as exc:
            self._reject("bad_car", f"{did}: {exc}", seq=event.seq)
            return False
        try:
            verified = await self._verifier.verify(event, blocks)
            check_ops(blocks, verified.data_cid, wanted + scrobbles)
        except VerifyError as exc:
            self._reject(exc.reason, str(exc), seq=event.seq)
            return False
        try:
            envelopes = commit_envelopes(event, keep, self.source, blocks)
        except RecordError as exc:
            self._reject("bad_record", str(exc), seq=event.seq)
            return False
        if (
            state is not None
            and state.status == ACTIVE
            and state.data_cid is not None
            and event.prev_data is not None
            and event.prev_data != state.data_cid
        ):
            await self._desynchronize(did, f"prevData {event.prev_data} != {state.data_cid}")
        if state is None:
            envelopes.insert(0, await self._first_sight(did, event.time, event.seq))
            if self._keep_known != self._keep:
                # Records of the repo we keep only once it is known (its profile) were
                # written before this commit: the resync reads them from the signed repo.
                # Marked before publishing, so a crash in between still resyncs it.
                await self.states.mark_first_sight(did)
        published = bool(scrobbles) and await self._publish_scrobbles(event, scrobbles, blocks)
        if self.states.is_backfilling(did):
            self.states.hold(did, envelopes, event.rev, verified.data_cid)
            return published
        await self._publish(envelopes)
        await self.states.advance(did, event.rev, verified.data_cid)
        return True

    async def _on_scrobbles(self, event: CommitEvent, ops: list[Op], known: bool) -> bool:
        """A commit whose only kept ops are scrobbles: verify it, publish them to ``plays``.

        The repo stays unknown if it was (a listener); a known repo's chain moves on.
        """
        if event.too_big:
            self._reject("too_big", event.repo, seq=event.seq)
            if known:
                await self._desynchronize(event.repo, "tooBig commit")
            return False
        try:
            _, blocks = read_car(event.blocks)
        except CarError as exc:
            self._reject("bad_car", f"{event.repo}: {exc}", seq=event.seq)
            return False
        try:
            verified = await self._verifier.verify(event, blocks)
            check_ops(blocks, verified.data_cid, ops)
        except VerifyError as exc:
            self._reject(exc.reason, str(exc), seq=event.seq)
            return False
        published = await self._publish_scrobbles(event, ops, blocks)
        if known:  # its chain moves on (prevData checked) as for any unkept commit
            await self._follow(event)
        return published

    async def _publish_scrobbles(
        self, event: CommitEvent, ops: list[Op], blocks: dict[str, bytes]
    ) -> bool:
        assert self._plays_publisher is not None  # only called when scrobbles are followed
        envelopes, refused = scrobble_envelopes(event, ops, self.source, blocks)
        for reason in refused:
            self._reject("bad_scrobble", reason, seq=event.seq)
        if envelopes:
            await self._plays_publisher.publish(envelopes)
        return bool(envelopes)

    async def _follow(self, event: CommitEvent) -> None:
        """Track rev/data of a known repo's commit that touches nothing we keep."""
        try:
            _, blocks = read_car(event.blocks)
            data = decode_commit(event, blocks)["data"]
        except (CarError, VerifyError) as exc:
            self._reject("bad_car", f"{event.repo}: {exc}", seq=event.seq)
            return
        state = self.states.cached(event.repo)
        if (
            state is not None
            and state.status == ACTIVE
            and state.data_cid is not None
            and event.prev_data is not None
            and event.prev_data != state.data_cid
        ):
            await self._desynchronize(event.repo, "prevData mismatch (unkept commit)")
        self.states.note(event.repo, event.rev, cid_string(data) if isinstance(data, CID) else None)

    async def _on_identity(self, event: IdentityEvent) -> bool:
        self.resolver.forget(event.did)  # the document (maybe the key) changed
        if not self.states.is_known(event.did):
            return False
        handle, _ = await self._identity(event.did, fresh=True)
        await self.states.set_identity(event.did, handle=handle)
        return await self._hold_or_publish(event.did, identity_envelope(event, self.source, handle))

    async def _identity(self, did: str, *, fresh: bool) -> tuple[str | None, str | None]:
        """(verified handle or ``handle.invalid``, PDS URL) from ``did``'s document.

        ``(None, None)`` if the document cannot be read: what we hold stays as it is.
        """
        try:
            doc = await self.resolver.resolve(did)
        except ResolveError as exc:
            logger.warning("did resolution failed", extra={"did": did, "error": str(exc)})
            return None, None
        return await self.handles.verify(did, doc.handle, fresh=fresh), doc.pds_url

    async def _on_account(self, event: AccountEvent) -> bool:
        if not self.states.is_known(event.did):
            return False
        status = account_status(event.status, event.active)
        await self.states.set_identity(event.did, account_status=status)
        return await self._hold_or_publish(event.did, account_envelope(event, self.source))

    async def _on_sync(self, event: SyncEvent) -> bool:
        """A ``#sync``: the repo's state was reset; resync unless it matches ours.

        Acted on only once its commit verifies: a forged ``#sync`` is counted and dropped,
        it never costs a resync.
        """
        state = self.states.cached(event.did)
        if state is None:
            return False
        if state.rev is not None and event.rev <= state.rev:
            return False
        try:
            verified = await self._verifier.verify_sync(event)
        except VerifyError as exc:
            self._reject(exc.reason, f"#sync: {exc}", seq=event.seq)
            return False
        if state.status == ACTIVE and verified.data_cid == state.data_cid:
            # Same records as ours, a newer rev (e.g. empty commits we did not see).
            self.states.note(event.did, event.rev, verified.data_cid)
            return False
        await self._desynchronize(event.did, f"#sync at rev {event.rev}")
        return False

    async def _on_info(self, event: InfoEvent) -> None:
        logger.warning(
            "firehose info",
            extra={"source": self.source, "info": event.name, "detail": event.message},
        )
        if event.name == "OutdatedCursor":
            marked = await self.states.desynchronize_all("OutdatedCursor")
            self.stats.desynchronized += marked
            logger.warning(
                "cursor outdated: every indexed repo marked for resync",
                extra={"source": self.source, "repos": marked},
            )

    async def _hold_or_publish(self, did: str, envelope: Envelope) -> bool:
        if self.states.is_backfilling(did):
            self.states.hold(did, [envelope], None, None)
            return False
        await self._publish([envelope])
        return True

    async def _desynchronize(self, did: str, reason: str) -> None:
        self.stats.desynchronized += 1
        logger.warning(
            "repo desynchronized", extra={"source": self.source, "did": did, "reason": reason}
        )
        await self.states.set_status(did, "desynchronized", reason)

    async def _first_sight(self, did: str, when: str, seq: int) -> Envelope:
        """An identity envelope for a repo we have not indexed before (its verified handle)."""
        handle, pds_url = await self._identity(did, fresh=False)
        await self.states.set_identity(did, handle=handle, pds_url=pds_url)
        return Envelope(
            kind="identity.changed", did=did, source=self.source, time=when, seq=seq, handle=handle
        )

    # -- output ------------------------------------------------------------------------

    async def _publish(self, envelopes: list[Envelope]) -> None:
        await self._publisher.publish(envelopes)

    async def _save_cursor(self) -> None:
        """Persist noted repo state, counters, then the cursor (in that order)."""
        await self._cursor.save()
        self.stats.cursor = self._cursor.saved

    async def _persist_state(self) -> None:
        await self.states.flush()
        counters = self.stats.as_counters()
        if counters != self._counters_saved:
            await save_counters(self._pool, self.stats)
            self._counters_saved = counters

    # -- bookkeeping -------------------------------------------------------------------

    def _see_time(self, value: str) -> None:
        when = _event_time(value)
        if when is not None and (
            self.stats.last_event_time is None or when > self.stats.last_event_time
        ):
            self.stats.last_event_time = when

    def _sample_time(self, raw: bytes, now: float) -> None:
        """Decode one skipped frame now and then, so the lag metric stays current."""
        self._time_sampled_at = now
        try:
            event = decode_frame(raw)
        except FrameError:
            return
        if isinstance(event, CommitEvent):
            self._see_time(event.time)

    def _reject(self, reason: str, detail: str, *, seq: int | None = None) -> None:
        """Count a refusal; log it, at most once per reason every few seconds."""
        self.stats.rejected[reason] += 1
        now = time.monotonic()
        if now - self._warned_at.get(reason, -_WARN_INTERVAL) < _WARN_INTERVAL:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return
        self._warned_at[reason] = now
        logger.warning(
            "firehose input refused",
            extra={
                "source": self.source,
                "reason": reason,
                "detail": detail[:500],
                "seq": seq,
                "suppressed": self._suppressed.pop(reason, 0),
            },
        )
