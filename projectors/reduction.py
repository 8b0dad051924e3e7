"""What the projectors that apply a batch at once share (search, moderation).

Such a projector (:class:`~projectors.runner.ReducingProjector`) folds a batch into
segments with a pure function, cutting it at each event that purges a repo (an account
deletion: what came before is written, then the repo is purged, then what follows), and
applies a single event as a batch of one.

Their records follow the rule of :mod:`projectors.records` (the newest rev wins, a delete
wins a tie and leaves a tombstone). :class:`RecordEvents` folds one record's events of a
batch so that writing its last effective write, then its newest delete, leaves what
applying the events one by one in the same order leaves, and tells which write took
effect, for the projectors whose other tables follow the writes that did.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from psycopg import AsyncConnection

from kernel.account import DELETED, account_status
from kernel.envelope import Envelope
from projectors.base import InvalidEvent
from projectors.records import Deletion, Rows
from projectors.runner import ReducingProjector

__all__ = [
    "RecordEvents",
    "apply_one",
    "deleted_account",
    "deletion_rows",
    "reduce_segments",
]

S = TypeVar("S")
P = TypeVar("P")
C = TypeVar("C")


@dataclass(slots=True)
class RecordEvents:
    """The events of one record in a batch, folded in order (see :meth:`fold_write`).

    To write: claim :attr:`write` (``RecordTable.upsert``), then :attr:`deletion`
    (``RecordTable.delete``), in that order: one by one, a delete after a write removes
    what the write claimed, and the write still had its effects.
    """

    did: str
    collection: str
    write: tuple[str, int, Any] | None = None
    """The last write that can take effect: rev, position in the batch, its document."""
    newest_write: str | None = None
    deletion: Deletion | None = None
    """The first delete of the highest rev (the tombstone it leaves)."""
    last_delete: int = -1
    """Position of the last delete in the batch."""

    def fold_write(self, rev: str, position: int, document: Any) -> None:
        """Add a write at ``rev`` (``position`` in the batch) of ``document``."""
        # Applied one by one, a write takes effect only if no earlier delete of the batch
        # has its rev or newer and no earlier write is newer; those that can are in rev
        # order, and whether they do depends on what is stored only by a threshold, so the
        # last of them takes effect exactly when any does (and is then the stored one).
        newest_delete = self.deletion.rev if self.deletion is not None else None
        if (newest_delete is None or rev > newest_delete) and (
            self.newest_write is None or rev >= self.newest_write
        ):
            self.write = (rev, position, document)
        if self.newest_write is None or rev > self.newest_write:
            self.newest_write = rev

    def fold_delete(self, deletion: Deletion, position: int) -> None:
        """Add a delete (``position`` in the batch)."""
        if self.deletion is None or deletion.rev > self.deletion.rev:
            self.deletion = deletion
        self.last_delete = position


def deletion_rows(records: Iterable[RecordEvents]) -> Rows:
    """The tombstones of ``records`` (their newest deletes) for ``RecordTable.delete``."""
    return Rows.of(e.deletion.as_json() for e in records if e.deletion is not None)


def deleted_account(envelope: Envelope) -> str | None:
    """The DID of an account deletion (the cut of :func:`reduce_segments`), else None."""
    if envelope.kind == "account.changed" and (
        account_status(envelope.status, envelope.active) == DELETED
    ):
        return envelope.did
    return None


def reduce_segments(
    envelopes: Sequence[Envelope],
    segment: Callable[[], S],
    fold: Callable[[S, Envelope, int], None],
    plan: Callable[[S], P],
    cut: Callable[[Envelope], C | None],
) -> tuple[list[P | C], list[tuple[int, str]]]:
    """Fold ``envelopes`` into segments: the planned segments and cuts, and the rejects.

    ``fold(segment, envelope, index)`` adds an event (:class:`InvalidEvent` rejects it);
    ``cut(envelope)`` is not None for an event that ends a segment (the step written
    between the segment before and the one after); ``plan`` turns a non-empty segment
    (truthy) into what the projector writes.
    """
    rejected: list[tuple[int, str]] = []
    steps: list[P | C] = []
    current = segment()
    for index, envelope in enumerate(envelopes):
        step = cut(envelope)
        if step is not None:
            if current:
                steps.append(plan(current))
            steps.append(step)
            current = segment()
            continue
        try:
            fold(current, envelope, index)
        except InvalidEvent as exc:
            rejected.append((index, str(exc)))
    if current:
        steps.append(plan(current))
    return steps, rejected


async def apply_one(
    projector: ReducingProjector, conn: AsyncConnection, envelope: Envelope
) -> None:
    """Apply one event as a batch of one; :class:`InvalidEvent` if its data is bad."""
    reduced, rejected = projector.reduce([envelope])
    if rejected:
        raise InvalidEvent(rejected[0][1])
    await projector.write(conn, reduced)
