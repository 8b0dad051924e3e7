"""Backfill and resync: whole repos from ``getRepo``, diffed against what we published.

For each repo: resolve its DID document (PDS endpoint, signing key, handle), tell
:class:`~ingest.repos.RepoStates` the backfill begins (live envelopes for the repo are
held from then on), fetch ``com.atproto.sync.getRepo`` from its PDS, verify the signed
commit, walk the MST (:mod:`ingest.repo_car`), diff the kept records against
``repo_record`` (what we last published of the repo) and publish the creates, updates and
deletes as ordinary envelopes with ``backfill=True``, after an ``identity.changed`` with
the handle. Then :meth:`~ingest.repos.RepoStates.end_backfill` publishes the held live
envelopes newer than the backfilled rev: the cut-over has no gap and no rollback.

Repos are discovered with ``com.atproto.sync.listReposByCollection`` (a relay), else
``com.atproto.sync.listRepos`` (a PDS), or given as a list. Work is bounded per PDS host;
each repo is retried with capped exponential backoff and then given up (marked
``desynchronized``, so the resync loop tries again later). A failing repo never stops the
others. ``repo_record`` is written after the log acknowledged the envelopes, by
:func:`remember_records`, which every publisher of record envelopes should call.

Errors: :class:`BackfillError` (with ``retry`` telling whether another attempt may help)
for a repo that could not be synced; database and log errors propagate.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx
import orjson
from atproto_core.exceptions import AtProtocolError  # type: ignore[import-untyped]
from atproto_crypto.verify import verify_signature  # type: ignore[import-untyped]
from cryptography.exceptions import InvalidSignature
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from ingest.commits import CollectionFilter
from ingest.repo_car import Repo, RepoCommit, RepoError, read_repo
from ingest.repos import RepoStates
from kernel.envelope import Envelope
from kernel.identity import DidDocument, DidResolver, ResolveError
from kernel.log import Log

__all__ = [
    "Backfill",
    "BackfillError",
    "BackfillOptions",
    "BackfillResult",
    "DiscoveredRepo",
    "Progress",
    "backfill_needed",
    "diff_repo",
    "discover_repos",
    "http_base",
    "initial_targets",
    "known_records",
    "remember_records",
    "verify_repo_commit",
]

log = logging.getLogger(__name__)

MAX_REPO_BYTES = 512 * 1024 * 1024
_NOT_RETRYABLE = frozenset(
    {"RepoNotFound", "RepoTakendown", "RepoDeactivated", "RepoSuspended", "InvalidRequest"}
)


class BackfillError(RuntimeError):
    """One repo could not be synced; ``retry`` says whether another attempt may help."""

    def __init__(self, message: str, *, retry: bool = True, reason: str = "error") -> None:
        super().__init__(message)
        self.retry = retry
        self.reason = reason


@dataclass(frozen=True)
class BackfillOptions:
    """How hard to push: workers overall, requests per PDS host, retries, batch size."""

    workers: int = 16
    per_host: int = 4
    attempts: int = 4
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    batch: int = 2000
    max_repo_bytes: int = MAX_REPO_BYTES
    resync_interval: float = 10.0


@dataclass(frozen=True, slots=True)
class DiscoveredRepo:
    """A repo to backfill; ``probe`` means it may hold nothing we keep (from ``listRepos``)."""

    did: str
    probe: bool = False


@dataclass
class BackfillResult:
    """What one :meth:`Backfill.run` did."""

    repos: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    records: int = 0
    published: int = 0
    errors: Counter[str] = field(default_factory=Counter)


# -- pure parts ------------------------------------------------------------------------------


def http_base(url: str) -> str:
    """``scheme://host`` of a service URL, websocket schemes mapped to HTTP ones."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def diff_repo(
    repo: Repo,
    known: dict[tuple[str, str], str],
    keep: CollectionFilter,
    *,
    source: str,
    time: str,
) -> list[Envelope]:
    """Envelopes that take what we published (``known``: (collection, rkey) → cid) to ``repo``.

    Creates and updates in key order, then deletes of known records of kept collections
    that are no longer in the repo. All carry the commit's rev and ``backfill=True``.
    """
    did, rev = repo.commit.did, repo.commit.rev
    remaining = dict(known)
    out: list[Envelope] = []
    for rec in repo.records:
        old = remaining.pop((rec.collection, rec.rkey), None)
        if old == rec.cid:
            continue
        out.append(
            Envelope(
                kind="record.created" if old is None else "record.updated",
                did=did,
                source=source,
                time=time,
                rev=rev,
                collection=rec.collection,
                rkey=rec.rkey,
                cid=rec.cid,
                record=rec.record,
                backfill=True,
            )
        )
    for (collection, rkey), _ in sorted(remaining.items()):
        if keep(collection):
            out.append(
                Envelope(
                    kind="record.deleted",
                    did=did,
                    source=source,
                    time=time,
                    rev=rev,
                    collection=collection,
                    rkey=rkey,
                    backfill=True,
                )
            )
    return out


def verify_repo_commit(commit: RepoCommit, did: str, did_key: str) -> None:
    """Check that ``commit`` is ``did``'s and signed by ``did_key``; raises :class:`BackfillError`.

    ECDSA-SHA256 over the DAG-CBOR of the commit without ``sig``, 64-byte ``r || s``,
    low-S only (``atproto_crypto`` refuses high-S).
    """
    if commit.did != did:
        raise BackfillError(f"commit did {commit.did!r} != {did}", reason="repo_mismatch")
    if len(commit.sig) != 64:
        raise BackfillError(f"{did}: sig must be 64 bytes", reason="bad_signature")
    try:
        valid = verify_signature(did_key, commit.unsigned, commit.sig)
    except (ValueError, InvalidSignature, AtProtocolError) as exc:
        raise BackfillError(f"{did} rev {commit.rev}: {exc}", reason="bad_signature") from None
    if not valid:
        raise BackfillError(f"{did} rev {commit.rev}: bad signature", reason="bad_signature")


# -- repo_record -----------------------------------------------------------------------------


async def known_records(pool: AsyncConnectionPool, did: str) -> dict[tuple[str, str], str]:
    """What we last published of ``did``: (collection, rkey) → cid."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT collection, rkey, cid FROM repo_record WHERE did = %s", (did,)
        )
        return {(c, r): cid for c, r, cid in await cur.fetchall()}


async def remember_records(
    target: AsyncConnectionPool | AsyncConnection[Any], envelopes: Sequence[Envelope]
) -> None:
    """Keep ``repo_record`` current after ``envelopes`` are on the log (any source).

    Per record the last envelope wins; a row only moves to a newer-or-equal rev, so a
    late replay does not roll it back. Non-record envelopes are ignored.
    """
    final: dict[tuple[str, str, str], tuple[str | None, str | None]] = {}
    for env in envelopes:
        if env.collection is None or env.rkey is None or not env.kind.startswith("record."):
            continue
        cid = None if env.kind == "record.deleted" else env.cid
        final[(env.did, env.collection, env.rkey)] = (cid, env.rev)
    if not final:
        return
    upserts = [(k, v) for k, v in final.items() if v[0] is not None]
    deletes = [(k, v) for k, v in final.items() if v[0] is None]

    # The rows travel as one JSON array (jsonb: parsed once, not per ->>): psycopg's list
    # adapter costs ~1 us per element and column in Python, orjson ~50 ns per row.
    async def write(conn: AsyncConnection[Any]) -> None:
        if upserts:
            await conn.execute(
                "INSERT INTO repo_record (did, collection, rkey, cid, rev)"
                " SELECT r->>0, r->>1, r->>2, r->>3, r->>4 FROM jsonb_array_elements(%s::jsonb) r"
                " ON CONFLICT (did, collection, rkey) DO UPDATE SET cid = excluded.cid,"
                " rev = excluded.rev WHERE repo_record.rev IS NULL OR excluded.rev IS NULL"
                ' OR excluded.rev COLLATE "C" >= repo_record.rev COLLATE "C"',
                (orjson.dumps([(*k, *v) for k, v in upserts]).decode(),),
            )
        if deletes:
            await conn.execute(
                "DELETE FROM repo_record r USING (SELECT d->>0 AS did, d->>1 AS collection,"
                " d->>2 AS rkey, d->>3 AS rev FROM jsonb_array_elements(%s::jsonb) d) AS d"
                " WHERE r.did = d.did AND r.collection = d.collection AND r.rkey = d.rkey"
                ' AND (r.rev IS NULL OR d.rev IS NULL OR d.rev COLLATE "C" >= r.rev COLLATE "C")',
                (orjson.dumps([(*k, v[1]) for k, v in deletes]).decode(),),
            )

    if isinstance(target, AsyncConnectionPool):
        async with target.connection() as conn, conn.transaction():
            await write(conn)
    else:
        await write(target)


# -- discovery -------------------------------------------------------------------------------


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


# -- progress --------------------------------------------------------------------------------


class Progress:
    """Repos done/total and records/s: a bar on a terminal, else a log line every few seconds."""

    def __init__(self, total: int, stream: TextIO | None = None, interval: float = 5.0) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.records = 0
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty()
        self._interval = 0.2 if self._tty else interval
        self._started = time.monotonic()
        self._shown = 0.0

    def add(self, *, records: int = 0, done: int = 0, failed: int = 0) -> None:
        """Count progress and redraw when due."""
        self.records += records
        self.done += done
        self.failed += failed
        self.show(force=self.done + self.failed >= self.total)

    def rate(self) -> float:
        return self.records / max(time.monotonic() - self._started, 1e-9)

    def show(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._shown < self._interval:
            return
        self._shown = now
        finished = self.done + self.failed
        if self._tty:
            width = 30
            filled = width * finished // max(self.total, 1)
            self._stream.write(
                f"\rbackfill [{'#' * filled}{'.' * (width - filled)}] {finished}/{self.total}"
                f" repos ({self.failed} failed) {self.records} records {self.rate():,.0f} rec/s"
            )
            if finished >= self.total:
                self._stream.write("\n")
            self._stream.flush()
        else:
            log.info(
                "backfill progress",
                extra={
                    "repos_done": self.done,
                    "repos_failed": self.failed,
                    "repos_total": self.total,
                    "records": self.records,
                    "records_per_s": round(self.rate()),
                },
            )


# -- the backfill ----------------------------------------------------------------------------


class Backfill:
    """Syncs whole repos into the log; see the module docstring."""

    def __init__(
        self,
        *,
        pool: AsyncConnectionPool,
        log: Log,
        topic: str,
        keep: CollectionFilter,
        states: RepoStates,
        resolver: DidResolver,
        http: httpx.AsyncClient,
        options: BackfillOptions | None = None,
        source: str = "backfill",
        keep_known: CollectionFilter | None = None,
    ) -> None:
        self._pool = pool
        self._log = log
        self._topic = topic
        self._keep = keep
        # What a repo that holds our records is read for (plus profiles); probing whether
        # it holds our records at all uses ``keep`` alone.
        self._keep_known = keep_known or keep
        self._states = states
        self._resolver = resolver
        self._http = http
        self.options = options or BackfillOptions()
        self.source = source
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._next_resync: dict[str, tuple[float, int]] = {}

    # -- publishing ----------------------------------------------------------------------

    async def publish(self, envelopes: list[Envelope]) -> None:
        """Append ``envelopes`` in order (in batches), then update ``repo_record``."""
        size = self.options.batch
        for start in range(0, len(envelopes), size):
            chunk = envelopes[start : start + size]
            await self._log.append(self._topic, [(e.key, e.to_bytes()) for e in chunk])
        await remember_records(self._pool, envelopes)

    # -- one repo ------------------------------------------------------------------------

    async def apply_repo(self, did: str, car: bytes, doc: DidDocument) -> int:
        """Verify, diff and publish the repo in ``car`` (the repo must be backfilling).

        Returns the number of record envelopes published. Raises :class:`BackfillError`.
        """
        try:
            repo = read_repo(car, self._keep_known)
        except RepoError as exc:
            raise BackfillError(f"{did}: {exc}", reason="bad_repo") from None
        await self._verify(did, repo.commit, doc)
        known = await known_records(self._pool, did)
        when = _now()
        envelopes = diff_repo(repo, known, self._keep_known, source=self.source, time=when)
        identity = Envelope(
            kind="identity.changed",
            did=did,
            source=self.source,
            time=when,
            rev=repo.commit.rev,
            handle=doc.handle,
            backfill=True,
        )
        await self.publish([identity, *envelopes])
        await self._states.set_identity(did, handle=doc.handle, pds_url=doc.pds_url)
        await self._states.end_backfill(did, repo.commit.rev, repo.commit.data, self.publish)
        return len(envelopes)

    async def _verify(self, did: str, commit: RepoCommit, doc: DidDocument) -> None:
        if doc.signing_did_key is None:
            raise BackfillError(f"{did} has no usable #atproto key", reason="no_signing_key")
        try:
            verify_repo_commit(commit, did, doc.signing_did_key)
            return
        except BackfillError as exc:
            if exc.reason != "bad_signature":
                raise
        try:
            fresh = await self._resolver.resolve(did, fresh=True)
        except ResolveError as exc:
            raise BackfillError(str(exc), reason="unresolvable_did") from None
        if fresh.signing_did_key is None or fresh.signing_did_key == doc.signing_did_key:
            raise BackfillError(f"{did}: commit signature does not verify", reason="bad_signature")
        verify_repo_commit(commit, did, fresh.signing_did_key)

    async def fetch_repo(self, did: str, pds_url: str) -> bytes:
        """``getRepo`` from the PDS, at most ``per_host`` at a time per host."""
        host = urlsplit(pds_url).netloc
        gate = self._hosts.setdefault(host, asyncio.Semaphore(self.options.per_host))
        async with gate:
            try:
                async with self._http.stream(
                    "GET",
                    f"{pds_url}/xrpc/com.atproto.sync.getRepo",
                    params={"did": did},
                    timeout=httpx.Timeout(30.0, read=120.0),
                ) as response:
                    if response.status_code != 200:
                        body = (await response.aread())[:2000]
                        error = None
                        try:
                            error = httpx.Response(200, content=body).json().get("error")
                        except (ValueError, AttributeError):
                            pass
                        retry = response.status_code >= 500 or response.status_code == 429
                        if error in _NOT_RETRYABLE:
                            retry = False
                        raise BackfillError(
                            f"getRepo {did} on {host}: HTTP {response.status_code} {error or ''}",
                            retry=retry,
                            reason=f"http_{response.status_code}",
                        )
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > self.options.max_repo_bytes:
                            raise BackfillError(
                                f"getRepo {did}: larger than {self.options.max_repo_bytes} bytes",
                                retry=False,
                                reason="too_big",
                            )
                        chunks.append(chunk)
                    return b"".join(chunks)
            except httpx.HTTPError as exc:
                raise BackfillError(
                    f"getRepo {did} on {host}: {exc}", reason="unreachable"
                ) from None

    async def _resolve(self, did: str) -> DidDocument:
        try:
            doc = await self._resolver.resolve(did)
        except ResolveError as exc:
            raise BackfillError(str(exc), reason="unresolvable_did") from None
        if doc.pds_url is None:
            raise BackfillError(f"{did} has no #atproto_pds service", reason="no_pds")
        return doc

    async def sync_repo(self, target: DiscoveredRepo) -> int | None:
        """One attempt at one repo: records published, or ``None`` if it holds nothing for us."""
        did = target.did
        doc = await self._resolve(did)
        assert doc.pds_url is not None
        if target.probe and not self._states.is_known(did):
            probe = await self.fetch_repo(did, doc.pds_url)
            try:
                if not read_repo(probe, self._keep).records:
                    return None
            except RepoError as exc:
                raise BackfillError(f"{did}: {exc}", reason="bad_repo") from None
        # Hold live envelopes from here, then read the repo: it is at least as new as
        # anything held, and end_backfill drops held records at or below its rev.
        await self._states.begin_backfill(did)
        car = await self.fetch_repo(did, doc.pds_url)
        return await self.apply_repo(did, car, doc)

    async def backfill_repo(self, target: DiscoveredRepo, result: BackfillResult) -> bool:
        """Sync one repo with retries; on giving up mark it desynchronized. True if synced."""
        attempt = 0
        while True:
            attempt += 1
            try:
                count = await self.sync_repo(target)
            except BackfillError as exc:
                if exc.retry and attempt < self.options.attempts:
                    delay = min(
                        self.options.backoff_cap, self.options.backoff_base * 2 ** (attempt - 1)
                    ) * random.uniform(0.5, 1.0)
                    log.warning(
                        "backfill retry",
                        extra={
                            "did": target.did,
                            "attempt": attempt,
                            "error": str(exc),
                            "retry_in": round(delay, 2),
                        },
                    )
                    await asyncio.sleep(delay)
                    continue
                result.errors[exc.reason] += 1
                log.warning(
                    "backfill gave up",
                    extra={"did": target.did, "attempts": attempt, "error": str(exc)},
                )
                await self._give_up(target.did, exc, attempt)
                return False
            await self._record_outcome(
                target.did, "skipped" if count is None else "done", attempt, count or 0, None
            )
            if count is None:
                result.skipped += 1
            else:
                result.records += count
            return True

    async def _give_up(self, did: str, exc: BackfillError, attempts: int) -> None:
        # Held live envelopes are dropped: the resync reads a repo newer than all of them.
        abort = getattr(self._states, "abort_backfill", None)
        if abort is not None:
            await abort(did, f"backfill: {exc.reason}")
        elif self._states.is_known(did) or self._states.is_backfilling(did):
            await self._states.set_status(did, "desynchronized", f"backfill: {exc.reason}")
        await self._record_outcome(did, "failed", attempts, 0, str(exc))

    async def _record_outcome(
        self, did: str, status: str, attempts: int, records: int, error: str | None
    ) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO backfill_repo (did, status, attempts, records, last_error, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, now()) ON CONFLICT (did) DO UPDATE SET"
                " status = excluded.status, attempts = excluded.attempts,"
                " records = excluded.records, last_error = excluded.last_error, updated_at = now()",
                (did, status, attempts, records, error),
            )

    # -- many repos ----------------------------------------------------------------------

    async def run(
        self,
        targets: Sequence[DiscoveredRepo],
        *,
        run_source: str | None = None,
        progress: Progress | None = None,
        stop: asyncio.Event | None = None,
    ) -> BackfillResult:
        """Backfill ``targets`` in parallel workers; record the run under ``run_source``."""
        result = BackfillResult(repos=len(targets))
        progress = progress or Progress(len(targets))
        if run_source is not None:
            await self._begin_run(run_source, len(targets))
        queue: asyncio.Queue[DiscoveredRepo] = asyncio.Queue()
        for target in dict.fromkeys(targets):
            queue.put_nowait(target)

        async def worker() -> None:
            while not (stop is not None and stop.is_set()):
                try:
                    target = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                before = result.records
                if await self.backfill_repo(target, result):
                    result.done += 1
                    progress.add(records=result.records - before, done=1)
                else:
                    result.failed += 1
                    progress.add(failed=1)

        workers = max(1, min(self.options.workers, len(targets)))
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(worker())
        progress.show(force=True)
        if run_source is not None and not (stop is not None and stop.is_set()):
            await self._finish_run(run_source, result)
        log.info(
            "backfill finished",
            extra={
                "repos": result.repos,
                "done": result.done,
                "failed": result.failed,
                "skipped": result.skipped,
                "records": result.records,
                "errors": dict(result.errors),
            },
        )
        return result

    async def _begin_run(self, source: str, repos: int) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO backfill_run (source, repos) VALUES (%s, %s) ON CONFLICT (source)"
                " DO UPDATE SET started_at = now(), finished_at = NULL, repos = excluded.repos,"
                " done = 0, failed = 0, records = 0",
                (source, repos),
            )

    async def _finish_run(self, source: str, result: BackfillResult) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE backfill_run SET finished_at = now(), done = %s, failed = %s,"
                " records = %s WHERE source = %s",
                (result.done, result.failed, result.records, source),
            )

    async def resync_forever(self, stop: asyncio.Event) -> None:
        """Resync ``desynchronized`` repos (and backfills cut short by a restart) until stopped.

        A repo that fails again waits longer before the next try (doubling, up to an hour).
        """
        first = True
        while not stop.is_set():
            dids = await self._states.desynchronized()
            if first:  # interrupted backfills of an earlier process
                dids = [*await self._states.backfilling(), *dids]
                first = False
            now = time.monotonic()
            due = [d for d in dict.fromkeys(dids) if self._next_resync.get(d, (0.0, 0))[0] <= now]
            if due:
                log.info("resync", extra={"repos": len(due)})
                result = BackfillResult()
                for did in due:
                    if stop.is_set():
                        break
                    if await self.backfill_repo(DiscoveredRepo(did), result):
                        self._next_resync.pop(did, None)
                    else:
                        failures = self._next_resync.get(did, (0.0, 0))[1] + 1
                        wait = min(3600.0, self.options.resync_interval * 2**failures)
                        self._next_resync[did] = (time.monotonic() + wait, failures)
            try:
                await asyncio.wait_for(stop.wait(), self.options.resync_interval)
            except TimeoutError:
                pass


async def backfill_needed(pool: AsyncConnectionPool, run_source: str, cursor_source: str) -> bool:
    """Whether ``run`` should backfill: no live cursor yet, or the last run never finished."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT finished_at FROM backfill_run WHERE source = %s", (run_source,)
        )
        run = await cur.fetchone()
        cur = await conn.execute("SELECT 1 FROM ingest_cursor WHERE source = %s", (cursor_source,))
        has_cursor = await cur.fetchone() is not None
    if run is not None:
        return run[0] is None
    return not has_cursor


async def initial_targets(
    http: httpx.AsyncClient, discovery_url: str, collections: Sequence[str], dids: Sequence[str]
) -> tuple[str, list[DiscoveredRepo]]:
    """What a backfill covers and under which run name: the DIDs given, else discovery."""
    if dids:
        return "dids", [DiscoveredRepo(d) for d in dids]
    base = http_base(discovery_url)
    return urlsplit(base).netloc, await discover_repos(http, base, collections)
