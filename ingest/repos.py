"""Per-repo sync state (``repo_state``) with an in-memory cache, shared by live ingest and backfill.

For every repo we index this keeps the last applied commit (``rev`` and the MST root
``data_cid``), the sync ``status`` and what the host says about the account:

- ``active``: our copy follows the live stream; commits must chain onto ``data_cid``;
- ``backfilling``: a ``getRepo`` sync is running; live envelopes for the repo are held in
  memory (:meth:`RepoStates.hold`) and handed back by :meth:`RepoStates.end_backfill`;
- ``active`` with reason :data:`FIRST_SIGHT`: followed live, but what was written before
  it became known (its profile) is still to be read by a resync (:meth:`first_sighted`);
- ``desynchronized``: a gap was seen (broken sync-1.1 chain, ``#sync`` event,
  ``OutdatedCursor``); the backfill worker polls :meth:`RepoStates.desynchronized` and
  resyncs these.

Why the firehose cursor may move on while a repo is backfilling: the held envelopes are
only in memory, but the ``backfilling`` status is persisted *before* anything is held. If
the process dies, the restart finds the repo still ``backfilling`` (:meth:`backfilling`)
and runs its backfill again, which reads the whole repo from its PDS, newer than anything
that was held; nothing is lost, at worst re-published (projectors are idempotent).

The in-memory cache is authoritative for this process. Another process writing
``repo_state`` (a separate ``plyr-appview backfill``) is seen by :meth:`get` only for repos
not cached yet, and by :meth:`load`; live buffering needs both parts in one process.

Errors: database errors (``psycopg.Error``) propagate; the caller retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from psycopg_pool import AsyncConnectionPool

from kernel.envelope import Envelope
from kernel.revs import rev_sql

__all__ = [
    "ACTIVE",
    "BACKFILLING",
    "DESYNCHRONIZED",
    "FIRST_SIGHT",
    "Publish",
    "RepoState",
    "RepoStates",
]

ACTIVE = "active"
BACKFILLING = "backfilling"
DESYNCHRONIZED = "desynchronized"
FIRST_SIGHT = "first_sight"
"""The ``status_reason`` of an ``active`` repo that became known live and whose earlier
records (those kept only for known repos, e.g. its profile) a resync has yet to read."""

Publish = Callable[[list[Envelope]], Awaitable[None]]
"""Puts envelopes on the log (and returns once the log acknowledged them)."""

_COLUMNS = "did, rev, data_cid, status, handle, pds_url, account_status"

# TIDs sort bytewise; never let a locale collation decide which rev is newer.
_UPSERT_ADVANCE = f"""
INSERT INTO repo_state (did, rev, data_cid, status, updated_at)
VALUES (%(did)s, %(rev)s, %(data)s, 'active', now())
ON CONFLICT (did) DO UPDATE SET
    data_cid = CASE WHEN repo_state.rev IS NULL
                      OR {rev_sql("excluded.rev", ">=", "repo_state.rev")}
                    THEN coalesce(excluded.data_cid, repo_state.data_cid)
                    ELSE repo_state.data_cid END,
    rev = CASE WHEN repo_state.rev IS NULL
                 OR {rev_sql("excluded.rev", ">", "repo_state.rev")}
               THEN excluded.rev ELSE repo_state.rev END,
    updated_at = now()
"""


@dataclass(frozen=True, slots=True)
class RepoState:
    """What we know of one repo."""

    did: str
    rev: str | None = None
    data_cid: str | None = None
    status: str = ACTIVE
    handle: str | None = None
    pds_url: str | None = None
    account_status: str | None = None


@dataclass(slots=True)
class _Held:
    """Live envelopes of one backfilling repo, with the commit that produced the last ones."""

    envelopes: list[Envelope]
    rev: str | None = None
    data_cid: str | None = None


def _newer(rev: str | None, than: str | None) -> bool:
    return rev is not None and (than is None or rev > than)


class RepoStates:
    """The ``repo_state`` table behind a per-process cache; see the module docstring."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool
        self._cache: dict[str, RepoState] = {}
        self._held: dict[str, _Held] = {}
        self._dirty: dict[str, tuple[str, str | None]] = {}
        self.marked = asyncio.Event()
        """Set by :meth:`mark_first_sight`: wakes the resync worker (no waiting a poll)."""

    async def load(self) -> None:
        """Read every row into the cache (call once at start)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(f"SELECT {_COLUMNS} FROM repo_state")
            rows = await cur.fetchall()
        self._cache = {row[0]: RepoState(*row) for row in rows}

    def is_known(self, did: str) -> bool:
        """Whether ``did`` is a repo we index (its identity/account events matter)."""
        return did in self._cache

    def cached(self, did: str) -> RepoState | None:
        """The cached state of ``did`` without touching the database."""
        return self._cache.get(did)

    def is_backfilling(self, did: str) -> bool:
        """Whether live envelopes for ``did`` must be held (:meth:`hold`) instead of published."""
        return did in self._held

    async def get(self, did: str) -> RepoState | None:
        """The state of ``did`` (cache first, then the table), or ``None`` if never seen."""
        state = self._cache.get(did)
        if state is not None:
            return state
        async with self._pool.connection() as conn:
            cur = await conn.execute(f"SELECT {_COLUMNS} FROM repo_state WHERE did = %s", (did,))
            row = await cur.fetchone()
        if row is None:
            return None
        state = RepoState(*row)
        self._cache[did] = state
        return state

    async def advance(self, did: str, rev: str, data_cid: str | None) -> None:
        """Record that the commit ``rev`` (MST root ``data_cid``) of ``did`` is on the log.

        Call after publishing. The rev only moves forward; a repo seen for the first time
        becomes known with status ``active``.
        """
        async with self._pool.connection() as conn:
            await conn.execute(_UPSERT_ADVANCE, {"did": did, "rev": rev, "data": data_cid})
        self._advance_cache(did, rev, data_cid)

    def _advance_cache(self, did: str, rev: str, data_cid: str | None) -> None:
        old = self._cache.get(did) or RepoState(did)
        if old.rev is None or rev >= old.rev:
            self._cache[did] = replace(
                old, rev=max(rev, old.rev or rev), data_cid=data_cid or old.data_cid
            )

    def note(self, did: str, rev: str, data_cid: str | None) -> None:
        """Follow a commit of a known repo that published nothing (another collection).

        Only the cache moves now (so the next commit's ``prevData`` chains onto it); the
        table follows at :meth:`flush`, which the firehose calls before saving its cursor.
        """
        if did in self._held:
            self.hold(did, [], rev, data_cid)
            return
        self._advance_cache(did, rev, data_cid)
        self._dirty[did] = (rev, data_cid)

    async def flush(self) -> None:
        """Persist what :meth:`note` recorded (notes made while it runs wait for the next)."""
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, {}
        try:
            async with self._pool.connection() as conn, conn.transaction():
                cur = conn.cursor()
                await cur.executemany(
                    _UPSERT_ADVANCE,
                    [{"did": d, "rev": r, "data": c} for d, (r, c) in dirty.items()],
                )
        except BaseException:
            # Not written: noted again for the next flush (a note made meanwhile is newer).
            for did, noted in dirty.items():
                self._dirty.setdefault(did, noted)
            raise

    async def set_status(self, did: str, status: str, reason: str | None = None) -> None:
        """Persist the sync status of ``did`` (``active``, ``backfilling``, ``desynchronized``)."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO repo_state (did, status, status_reason, updated_at)"
                " VALUES (%s, %s, %s, now()) ON CONFLICT (did) DO UPDATE SET"
                " status = excluded.status, status_reason = excluded.status_reason,"
                " updated_at = now()",
                (did, status, reason),
            )
        self._cache[did] = replace(self._cache.get(did) or RepoState(did), status=status)

    async def set_identity(
        self,
        did: str,
        *,
        handle: str | None = None,
        pds_url: str | None = None,
        account_status: str | None = None,
    ) -> None:
        """Persist what the network says about ``did`` (``None`` leaves a field as it is)."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO repo_state (did, handle, pds_url, account_status, updated_at)"
                " VALUES (%s, %s, %s, %s, now()) ON CONFLICT (did) DO UPDATE SET"
                " handle = coalesce(excluded.handle, repo_state.handle),"
                " pds_url = coalesce(excluded.pds_url, repo_state.pds_url),"
                " account_status = coalesce(excluded.account_status, repo_state.account_status),"
                " updated_at = now()",
                (did, handle, pds_url, account_status),
            )
        old = self._cache.get(did) or RepoState(did)
        self._cache[did] = replace(
            old,
            handle=handle or old.handle,
            pds_url=pds_url or old.pds_url,
            account_status=account_status or old.account_status,
        )

    async def begin_backfill(self, did: str) -> None:
        """Persist ``status='backfilling'``; from now on live envelopes for ``did`` are held.

        The status is written before holding starts, so a crash while holding makes the
        restart re-run this repo's backfill (:meth:`backfilling`).
        """
        await self.set_status(did, BACKFILLING)
        self._held.setdefault(did, _Held([]))

    def hold(
        self, did: str, envelopes: list[Envelope], rev: str | None, data_cid: str | None
    ) -> None:
        """Keep live envelopes of a backfilling repo (the commit ``rev``/``data_cid`` if any)."""
        held = self._held.setdefault(did, _Held([]))
        held.envelopes.extend(envelopes)
        if _newer(rev, held.rev):
            held.rev, held.data_cid = rev, data_cid

    async def end_backfill(
        self, did: str, rev: str, data_cid: str | None, publish: Publish | None = None
    ) -> list[Envelope]:
        """Finish the backfill of ``did`` at commit ``rev`` (MST root ``data_cid``).

        Persists ``rev``/``data_cid`` and ``status='active'`` and returns the held live
        envelopes that are newer than the backfill: record envelopes with ``rev`` greater
        than ``rev``, and every identity/account envelope, in arrival order.

        Without ``publish`` the caller publishes them (live events for ``did`` arriving
        before it does are published directly, so a few may overtake; projectors order
        updates by rev). With ``publish`` they are published here while live envelopes are
        still held, then any held meanwhile, so the log keeps the repo's order; the same
        envelopes are returned. The persisted rev/data are the backfill's; the cache moves
        on to the newest held commit, so the next live commit chains onto it. If the
        process dies before the held envelopes are published, the next live commit no
        longer chains onto the persisted ``data_cid``, the repo is desynchronized and
        resynced: nothing is lost for good.
        """
        self._held.setdefault(did, _Held([]))
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO repo_state (did, rev, data_cid, status, status_reason, updated_at)"
                " VALUES (%s, %s, %s, 'active', NULL, now()) ON CONFLICT (did) DO UPDATE SET"
                " rev = excluded.rev, data_cid = excluded.data_cid, status = 'active',"
                " status_reason = NULL, updated_at = now()",
                (did, rev, data_cid),
            )
        old = self._cache.get(did) or RepoState(did)
        self._cache[did] = replace(old, rev=rev, data_cid=data_cid, status=ACTIVE)
        out: list[Envelope] = []
        while True:
            held = self._held.get(did)
            if held is None or not held.envelopes:
                break
            batch = [e for e in held.envelopes if e.rev is None or e.rev > rev]
            held.envelopes = []
            if _newer(held.rev, rev):
                assert held.rev is not None
                self._advance_cache(did, held.rev, held.data_cid)
            out.extend(batch)
            if publish is None:
                break
            if batch:
                await publish(batch)
                await asyncio.sleep(0)  # let the live stream hold what arrived meanwhile
        self._held.pop(did, None)
        if publish is not None and out:
            state = self._cache[did]
            if state.rev is not None and state.rev != rev:
                await self.advance(did, state.rev, state.data_cid)
        return out

    async def abort_backfill(self, did: str, reason: str) -> None:
        """Give up a backfill: drop the held live envelopes and mark the repo desynchronized.

        Dropping is safe because the resync that follows reads a repo newer than every held
        event; live events flow again meanwhile (their gap is what the resync closes).
        """
        self._held.pop(did, None)
        await self.set_status(did, DESYNCHRONIZED, reason)

    async def mark_first_sight(self, did: str) -> None:
        """Note that ``did`` became known live and its earlier records are still to be read.

        The status stays ``active`` (the chain is checked as usual); the resync worker reads
        those records (:meth:`first_sighted`, :meth:`clear_first_sight`); a full backfill
        (:meth:`end_backfill`) clears the mark too.
        """
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO repo_state (did, status, status_reason, updated_at)"
                " VALUES (%s, 'active', %s, now()) ON CONFLICT (did) DO UPDATE SET"
                " status_reason = excluded.status_reason, updated_at = now()"
                " WHERE repo_state.status = 'active'",
                (did, FIRST_SIGHT),
            )
        self._cache.setdefault(did, RepoState(did))
        self.marked.set()

    async def clear_first_sight(self, did: str) -> None:
        """The earlier records of ``did`` were read (any other reason stays as it is)."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE repo_state SET status_reason = NULL, updated_at = now()"
                " WHERE did = %s AND status_reason = %s",
                (did, FIRST_SIGHT),
            )

    async def first_sighted(self) -> list[str]:
        """Active DIDs whose records from before we knew them are still to be read."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT did FROM repo_state WHERE status = 'active' AND status_reason = %s"
                " ORDER BY updated_at, did",
                (FIRST_SIGHT,),
            )
            return [row[0] for row in await cur.fetchall()]

    async def desynchronized(self) -> list[str]:
        """DIDs whose copy has a gap and needs a ``getRepo`` resync (read from the table)."""
        return await self._with_status(DESYNCHRONIZED)

    async def backfilling(self) -> list[str]:
        """DIDs whose backfill was begun and never ended (re-run them after a restart)."""
        return await self._with_status(BACKFILLING)

    async def _with_status(self, status: str) -> list[str]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT did FROM repo_state WHERE status = %s ORDER BY updated_at, did", (status,)
            )
            return [row[0] for row in await cur.fetchall()]

    async def desynchronize_all(self, reason: str) -> int:
        """Mark every ``active`` repo desynchronized (e.g. after ``OutdatedCursor``)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE repo_state SET status = 'desynchronized', status_reason = %s,"
                " updated_at = now() WHERE status = 'active' RETURNING did",
                (reason,),
            )
            dids = [row[0] for row in await cur.fetchall()]
        for did in dids:
            if did in self._cache:
                self._cache[did] = replace(self._cache[did], status=DESYNCHRONIZED)
        return len(dids)
