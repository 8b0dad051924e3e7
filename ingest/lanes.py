"""Per-repo lanes: one repo's events run in order, different repos' run concurrently.

A live source reads its stream in order but must not wait, for every other repo, on the
work of one: resolving a DID document (a ``did:web`` on anyone's server), verifying a
handle (DNS and HTTPS on names anyone picks), first-sight bookkeeping. :class:`RepoLanes`
runs each event's work on its repo's lane (a queue per DID, drained by one worker task
while it has work), so events of a repo keep their order (the log is keyed by DID and
projectors rely on that order) while other repos go on.

At most ``limit`` events are unfinished at a time; :meth:`RepoLanes.submit` waits for room
(the reader stops reading the socket: backpressure onto the relay, not unbounded memory).

Resume point: every event read takes a slot in arrival order, and a position is handed
to ``on_passed`` only once every event read before it is finished. That is the last event
of the finished prefix: never past the oldest unfinished one, however long it takes, so a
cursor saved from it resumes with no gap after a crash (events after it that were done
are read again; consumers are idempotent). Arrival order, not seq order, so a relay whose
seqs go back (a reset) is followed too. Events with no work (skipped frames) only take a
slot while others are unfinished, and consecutive ones share it.

Errors: an exception in an event's work fails the lanes (:attr:`RepoLanes.failed` is set,
the events queued behind it on any lane are not run, their slots stay unfinished);
:meth:`RepoLanes.check` and :meth:`RepoLanes.submit` raise it in the reader, which ends
its session (a transient one reconnects from the saved cursor), after the work already
running ends (:meth:`RepoLanes.close`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["Passed", "RepoLanes", "Work"]

logger = logging.getLogger(__name__)

Work = Callable[[], Awaitable[bool]]
"""One event's work (a coroutine function, called on its lane when its turn comes); it
returns whether it published anything."""
Passed = Callable[[int], None]
"""Called with the position every event up to which is finished."""


@dataclass(slots=True)
class _Slot:
    position: int | None
    done: bool = False
    published: bool = False


class RepoLanes:
    """Runs work per key in order, across keys concurrently; see the module docstring."""

    def __init__(
        self,
        on_passed: Passed,
        *,
        limit: int = 256,
        after_publish: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.limit = limit
        self._on_passed = on_passed
        self._after_publish = after_publish
        self._slots: deque[_Slot] = deque()
        self._lanes: dict[str, deque[tuple[_Slot, Work]]] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._unfinished = 0
        self._changed = asyncio.Event()
        self.failed = asyncio.Event()
        """Set when some work raised: the reader should stop and call :meth:`check`."""
        self._failure: BaseException | None = None
        self._raised = False

    @property
    def unfinished(self) -> int:
        """Events submitted whose work is not finished (queued or running)."""
        return self._unfinished

    def busy(self, key: str) -> bool:
        """Whether ``key`` has work queued or running (its next events must join its lane)."""
        return key in self._lanes

    def passed(self, position: int) -> None:
        """An event with no work was read at ``position``: it is done once those before are."""
        if not self._slots:
            self._on_passed(position)
        elif self._slots[-1].done:
            self._slots[-1].position = position
        else:
            self._slots.append(_Slot(position, done=True))

    async def submit(self, key: str, position: int | None, work: Work) -> None:
        """Queue ``work`` on ``key``'s lane; first wait while ``limit`` events are unfinished."""
        while self._unfinished >= self.limit and self._failure is None:
            await self._changed.wait()
        self.check()
        slot = _Slot(position)
        self._slots.append(slot)
        self._unfinished += 1
        lane = self._lanes.get(key)
        if lane is not None:
            lane.append((slot, work))
            return
        self._lanes[key] = deque([(slot, work)])
        worker = asyncio.create_task(self._drain_lane(key))
        self._workers.add(worker)
        worker.add_done_callback(self._workers.discard)

    async def drain(self) -> None:
        """Wait until every submitted event is finished (a barrier); raise a failure."""
        await self._settled()
        self.check()

    def check(self) -> None:
        """Raise the exception some work raised, if any (once it is raised, it stays)."""
        if self._failure is not None:
            self._raised = True
            raise self._failure

    def fail(self, exc: BaseException) -> None:
        """Fail the lanes from outside any work (e.g. saving the cursor failed)."""
        if self._failure is None:
            self._failure = exc
            self.failed.set()
            self._wake()

    async def close(self, *, cancel: bool = False) -> None:
        """End a session: wait for the work in progress, or ``cancel`` it; empty the lanes.

        Without ``cancel``, queued work runs to its end (lookups end at their timeouts);
        after a failure, only the work already running does. Work is not cancelled unless
        asked: a lookup shared with another task (the resolver and handle verifier dedupe
        lookups across tasks, e.g. with the backfill worker) must not be cut off under it.
        Whatever does not finish stays unfinished: the resume point never passes it.
        Afterwards the lanes are ready for a new session. A failure not yet raised by
        :meth:`check` is raised here.
        """
        if cancel:
            for worker in list(self._workers):
                worker.cancel()
        else:
            await self._settled()  # returns early on a failure: then the running items end
        await asyncio.gather(*self._workers, return_exceptions=True)
        failure, raised = self._failure, self._raised
        self._slots.clear()
        self._lanes.clear()
        self._unfinished = 0
        self._failure, self._raised = None, False
        self.failed.clear()
        if failure is not None and not raised:
            raise failure

    async def _settled(self) -> None:
        while self._unfinished and self._failure is None:
            await self._changed.wait()

    def _wake(self) -> None:
        # A new event per change: every waiter of the old one wakes, none clears it for others.
        self._changed.set()
        self._changed = asyncio.Event()

    async def _drain_lane(self, key: str) -> None:
        lane = self._lanes[key]
        while lane and self._failure is None:
            slot, work = lane[0]
            try:
                published = await work()
                lane.popleft()
                if self._finish(slot, published) and self._after_publish is not None:
                    await self._after_publish()
            except Exception as exc:
                logger.warning("repo work failed", extra={"did": key, "error": str(exc)})
                self.fail(exc)
                return
        if self._lanes.get(key) is lane:
            del self._lanes[key]

    def _finish(self, slot: _Slot, published: bool) -> bool:
        """Mark ``slot`` done; whether the resume point passed an event that published."""
        slot.done, slot.published = True, published
        self._unfinished -= 1
        passed: int | None = None
        published = False  # of the events passed now (the head is never done at rest)
        while self._slots and self._slots[0].done:
            head = self._slots.popleft()
            published = published or head.published
            if head.position is not None:
                passed = head.position
        self._wake()
        if passed is None:
            return False
        self._on_passed(passed)
        return published
