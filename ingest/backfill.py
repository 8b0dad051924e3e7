"""Backfill and resync: the worker that syncs whole repos from ``getRepo``.

For each repo: resolve its DID document (PDS endpoint, signing key, handle), tell
:class:`~ingest.repos.RepoStates` the backfill begins (live envelopes for the repo are
held from then on), fetch ``com.atproto.sync.getRepo`` from its PDS, verify the signed
commit (:meth:`~ingest.verify.CommitVerifier.verify_repo`), walk the MST
(:mod:`ingest.repo_car`), diff the kept records against ``repo_record``
(:mod:`ingest.diff`, :mod:`ingest.repo_record`) and publish the creates, updates and
deletes as ordinary envelopes with ``backfill=True`` (:mod:`ingest.publisher`), after an
``identity.changed`` with the handle (verified both ways by :mod:`ingest.handles`, else
``handle.invalid``). Then :meth:`~ingest.repos.RepoStates.end_backfill`
publishes the held live envelopes newer than the backfilled rev: the cut-over has no gap
and no rollback.

A repo that became known live (its first plyr record) has records we keep only for known
repos (its profile) from before: :meth:`Backfill.read_earlier` reads just those from the
same verified ``getRepo``, without holding the live stream (the resync loop does it for
:meth:`~ingest.repos.RepoStates.first_sighted` repos).

Which repos (:mod:`ingest.discovery`) and whether to backfill at all on a first start
(:mod:`ingest.first_start`) are decided elsewhere; :mod:`ingest.progress` draws the bar.
Every request goes through the guarded fetcher (:mod:`kernel.fetch`): a DID document
that points its PDS at a private, loopback or link-local address is refused (reason
``refused``) unless the host is in ``PLYR_TRUSTED_HOSTS``. Work is bounded per PDS host;
each repo is retried with capped exponential backoff and then given up (marked
``desynchronized``, so the resync loop tries again later). A failing repo never stops the
others.

Errors: :class:`~ingest.errors.BackfillError` (with ``retry`` telling whether another
attempt may help) for a repo that could not be synced; database and log errors propagate.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode, urlsplit

import orjson
from psycopg_pool import AsyncConnectionPool

from ingest.commits import CollectionFilter
from ingest.diff import diff_repo
from ingest.discovery import DiscoveredRepo
from ingest.errors import BackfillError, VerifyError
from ingest.handles import HandleVerifier
from ingest.progress import BackfillProgress
from ingest.publisher import Publisher
from ingest.repo_car import RepoCommit, RepoError, read_repo
from ingest.repo_record import known_records
from ingest.repos import RepoStates
from ingest.verify import CommitVerifier
from kernel.envelope import Envelope
from kernel.fetch import (
    UpstreamError,
    UpstreamFetcher,
    UpstreamRefused,
    UpstreamStatus,
    UpstreamTooLarge,
)
from kernel.identity import DidDocument, DidResolver, ResolveError
from kernel.log import Log

__all__ = ["MAX_REPO_BYTES", "Backfill", "BackfillOptions", "BackfillResult"]

logger = logging.getLogger(__name__)

MAX_REPO_BYTES = 512 * 1024 * 1024
_NOT_RETRYABLE = frozenset(
    {"RepoNotFound", "RepoTakendown", "RepoDeactivated", "RepoSuspended", "InvalidRequest"}
)


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
    fetch_timeout: float = 600.0
    """Seconds one ``getRepo`` may take, from the request to the last byte."""


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


# -- the backfill ----------------------------------------------------------------------------


def _xrpc_error(body: bytes) -> str | None:
    """The ``error`` name of an XRPC error body, if it is one."""
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return error if isinstance(error, str) else None


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
        fetcher: UpstreamFetcher,
        options: BackfillOptions | None = None,
        source: str = "backfill",
        keep_known: CollectionFilter | None = None,
        handles: HandleVerifier | None = None,
    ) -> None:
        self._pool = pool
        self.options = options or BackfillOptions()
        self._publisher = Publisher(log, topic, pool, batch=self.options.batch)
        self._keep = keep
        # What a repo that holds our records is read for (plus profiles); probing whether
        # it holds our records at all uses ``keep`` alone.
        self._keep_known = keep_known or keep
        self._states = states
        self._resolver = resolver
        self._verifier = CommitVerifier(resolver)
        self._fetcher = fetcher
        self._handles = handles if handles is not None else HandleVerifier(fetcher)
        self.source = source
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._next_resync: dict[str, tuple[float, int]] = {}

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Append ``envelopes`` in order (in batches), then update ``repo_record``."""
        await self._publisher.publish(envelopes)

    # -- one repo ------------------------------------------------------------------------

    async def apply_repo(self, did: str, car: bytes, doc: DidDocument) -> int:
        """Verify, diff and publish the repo in ``car`` (the repo must be backfilling).

        Returns the number of record envelopes published. Raises :class:`BackfillError`.
        """
        try:
            repo = read_repo(car, self._keep_known)
        except RepoError as exc:
            raise BackfillError(f"{did}: {exc}", reason="bad_repo") from None
        await self._verify(did, repo.commit)
        known = await known_records(self._pool, did)
        when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        envelopes = diff_repo(repo, known, self._keep_known, source=self.source, time=when)
        handle = await self._handles.verify(did, doc.handle)
        identity = Envelope(
            kind="identity.changed",
            did=did,
            source=self.source,
            time=when,
            rev=repo.commit.rev,
            handle=handle,
            backfill=True,
        )
        await self.publish([identity, *envelopes])
        await self._states.set_identity(did, handle=handle, pds_url=doc.pds_url)
        await self._states.end_backfill(did, repo.commit.rev, repo.commit.data, self.publish)
        return len(envelopes)

    async def _verify(self, did: str, commit: RepoCommit) -> None:
        if commit.did != did:
            raise BackfillError(f"commit did {commit.did!r} != {did}", reason="repo_mismatch")
        try:
            await self._verifier.verify_repo(commit)
        except VerifyError as exc:
            raise BackfillError(str(exc), reason=exc.reason) from None

    async def fetch_repo(self, did: str, pds_url: str) -> bytes:
        """``getRepo`` from the PDS, at most ``per_host`` at a time per host."""
        host = urlsplit(pds_url).netloc
        gate = self._hosts.setdefault(host, asyncio.Semaphore(self.options.per_host))
        async with gate:
            url = f"{pds_url}/xrpc/com.atproto.sync.getRepo?" + urlencode({"did": did})
            try:
                async with self._fetcher.get(
                    url,
                    allow_trusted=True,
                    max_bytes=self.options.max_repo_bytes,
                    timeout_s=self.options.fetch_timeout,
                ) as response:
                    return b"".join([chunk async for chunk in response.chunks])
            except UpstreamStatus as exc:
                error = _xrpc_error(exc.body)
                retry = exc.status >= 500 or exc.status == 429
                raise BackfillError(
                    f"getRepo {did} on {host}: HTTP {exc.status} {error or ''}",
                    retry=retry and error not in _NOT_RETRYABLE,
                    reason=f"http_{exc.status}",
                ) from None
            except UpstreamTooLarge:
                raise BackfillError(
                    f"getRepo {did}: larger than {self.options.max_repo_bytes} bytes",
                    retry=False,
                    reason="too_big",
                ) from None
            except UpstreamRefused as exc:  # the DID document points the PDS at our network
                raise BackfillError(
                    f"getRepo {did}: {exc}", retry=False, reason="refused"
                ) from None
            except (UpstreamError, TimeoutError) as exc:
                raise BackfillError(
                    f"getRepo {did} on {host}: {exc or 'timed out'}", reason="unreachable"
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
                    logger.warning(
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
                logger.warning(
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
        progress: BackfillProgress | None = None,
        stop: asyncio.Event | None = None,
    ) -> BackfillResult:
        """Backfill ``targets`` in parallel workers; record the run under ``run_source``."""
        result = BackfillResult(repos=len(targets))
        progress = progress or BackfillProgress(len(targets))
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
        logger.info(
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

    def _due(self, dids: Sequence[str]) -> list[str]:
        now = time.monotonic()
        return [d for d in dict.fromkeys(dids) if self._next_resync.get(d, (0.0, 0))[0] <= now]

    def _retry_later(self, did: str, done: bool) -> None:
        if done:
            self._next_resync.pop(did, None)
            return
        failures = self._next_resync.get(did, (0.0, 0))[1] + 1
        wait = min(3600.0, self.options.resync_interval * 2**failures)
        self._next_resync[did] = (time.monotonic() + wait, failures)

    # -- records from before a repo became known -----------------------------------------

    async def read_earlier(self, did: str) -> int:
        """Publish what ``did`` held, before we knew it, of the collections kept only for known
        repos (``keep_known`` beyond ``keep``: its profile); returns the envelopes published.

        Read from ``getRepo`` and proven by its signed commit, like a backfill, but the live
        stream is not held and the repo's rev does not move: only those collections are
        published (with the repo's rev, ``backfill=True``), so the records the live stream
        follows keep the revs of their own commits. A newer live write of the same record
        carries a higher rev and wins in the projectors whichever arrives first. Raises
        :class:`BackfillError`.
        """
        only = self._keep_known.without(self._keep)
        if not only.exact and not only.prefixes:
            return 0
        doc = await self._resolve(did)
        assert doc.pds_url is not None
        car = await self.fetch_repo(did, doc.pds_url)
        try:
            repo = read_repo(car, only)
        except RepoError as exc:
            raise BackfillError(f"{did}: {exc}", reason="bad_repo") from None
        await self._verify(did, repo.commit)
        known = {k: c for k, c in (await known_records(self._pool, did)).items() if only(k[0])}
        when = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        envelopes = [
            e
            for e in diff_repo(repo, known, only, source=self.source, time=when)
            if e.collection is not None and not self._keep(e.collection)
        ]
        await self.publish(envelopes)
        return len(envelopes)

    async def _read_earlier_once(self, did: str) -> bool:
        """:meth:`read_earlier`, then clear the mark; ``False`` to try again later."""
        try:
            count = await self.read_earlier(did)
        except BackfillError as exc:
            logger.warning("reading earlier records failed", extra={"did": did, "error": str(exc)})
            if exc.retry:
                return False
            count = 0  # gone, taken down, refused: nothing to read, now or later
        await self._states.clear_first_sight(did)
        logger.info("earlier records read", extra={"did": did, "records": count})
        return True

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
        """Resync ``desynchronized`` repos and backfills cut short by a restart, and read the
        earlier records of repos first seen live (:meth:`read_earlier`), until stopped.

        A repo that fails again waits longer before the next try (doubling, up to an hour).
        """
        first = True
        while not stop.is_set():
            self._states.marked.clear()  # marks from here on wake the pause below
            dids = await self._states.desynchronized()
            if first:  # interrupted backfills of an earlier process
                dids = [*await self._states.backfilling(), *dids]
                first = False
            due = self._due(dids)
            if due:
                logger.info("resync", extra={"repos": len(due)})
                result = BackfillResult()
                for did in due:
                    if stop.is_set():
                        break
                    self._retry_later(did, await self.backfill_repo(DiscoveredRepo(did), result))
            for did in self._due(await self._states.first_sighted()):
                if stop.is_set():
                    break
                self._retry_later(did, await self._read_earlier_once(did))
            await self._pause(stop)

    async def _pause(self, stop: asyncio.Event) -> None:
        """Wait ``resync_interval``, or less if stopped or a repo was first seen meanwhile."""
        waits = [asyncio.ensure_future(e.wait()) for e in (stop, self._states.marked)]
        try:
            await asyncio.wait(
                waits, timeout=self.options.resync_interval, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiting in waits:
                waiting.cancel()
