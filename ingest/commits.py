"""From decoded firehose events to envelopes: filter by collection, then read the records.

Pure functions, no I/O. The collection filter looks only at op paths, so commits that
touch nothing we index never have their CAR parsed; :class:`Triage` goes further and
decides from the raw frame bytes (see :func:`ingest.frames.commit_peek`), so most relay
frames are never decoded at all.

Lexicon validation is not done here: the projectors validate each record and dead-letter
the invalid ones with the reason, so a record that fails its lexicon is still published
(its facts are kept on the log, a later lexicon version may accept it) and is counted
where it is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import cbrrr

from ingest.car import CarError, read_car
from ingest.errors import RecordError
from ingest.frames import AccountEvent, CommitEvent, IdentityEvent, Op, commit_peek
from kernel.account import account_status
from kernel.envelope import Envelope, Kind
from kernel.plays import SCROBBLE_COLLECTIONS, parse_scrobble, scrobble_envelope

__all__ = [
    "SCROBBLES",
    "CollectionFilter",
    "RecordError",
    "Triage",
    "account_envelope",
    "commit_envelopes",
    "identity_envelope",
    "scrobble_envelopes",
]

_ACTIONS: dict[str, Kind] = {
    "create": "record.created",
    "update": "record.updated",
    "delete": "record.deleted",
}


@dataclass(frozen=True)
class CollectionFilter:
    """Which collections to keep: exact NSIDs, or prefixes written ``fm.plyr.*``."""

    exact: frozenset[str]
    prefixes: tuple[str, ...]

    @classmethod
    def of(cls, patterns: Iterable[str]) -> CollectionFilter:
        items = list(patterns)
        return cls(
            frozenset(p for p in items if not p.endswith("*")),
            tuple(p[:-1] for p in items if p.endswith("*")),
        )

    def plus(self, patterns: Iterable[str]) -> CollectionFilter:
        """This filter widened by ``patterns`` (for the raw-bytes triage of scrobbles)."""
        return CollectionFilter(
            self.exact | {p for p in patterns if not p.endswith("*")},
            self.prefixes + tuple(p[:-1] for p in patterns if p.endswith("*")),
        )

    def __call__(self, collection: str) -> bool:
        return collection in self.exact or collection.startswith(self.prefixes)

    def without(self, other: CollectionFilter) -> CollectionFilter:
        """The collections kept here but not by ``other`` (exact names and prefixes; callers
        recheck single collections against ``other`` where a prefix of ours overlaps)."""
        return CollectionFilter(
            frozenset(c for c in self.exact if not other(c)),
            tuple(p for p in self.prefixes if p not in other.prefixes),
        )

    def needles(self) -> tuple[bytes, ...]:
        """Byte strings one of which every kept op path starts with (for a raw-bytes check).

        Exact NSIDs sharing an authority (``fm.plyr.track``, ``fm.plyr.like``) collapse to
        that authority (``fm.plyr.``): fewer searches, a few more false hits, no misses.
        """
        out: set[str] = set(self.prefixes)
        by_authority: dict[str, list[str]] = {}
        for nsid in self.exact:
            by_authority.setdefault(".".join(nsid.split(".")[:2]) + ".", []).append(nsid)
        for authority, names in by_authority.items():
            if len(names) > 1:
                out.add(authority)
            else:
                out.add(names[0] + "/")
        # Drop needles that start with another needle: the shorter one already hits.
        kept = [n for n in out if not any(o != n and n.startswith(o) for o in out)]
        return tuple(sorted(n.encode() for n in kept))

    def unknown(self, ops: tuple[Op, ...]) -> list[Op]:
        """Ops in a namespace we follow (``fm.plyr.``) but of a collection we do not index."""
        near = tuple(n.decode() for n in self.needles())
        return [op for op in ops if not self(op.collection) and op.path.startswith(near)]

    def wanted(self, ops: tuple[Op, ...]) -> list[Op]:
        """The ops of a commit in kept collections."""
        return [op for op in ops if self(op.collection)]


SCROBBLES = CollectionFilter.of(SCROBBLE_COLLECTIONS)
"""Scrobble records: kept from any repo, for the ``plays`` topic only. They never make a
repo known (no identity envelope, no repo state), and nothing else of a listener's repo is
kept."""


class Triage:
    """Decide from raw frame bytes whether a ``#commit`` frame can matter to us.

    :attr:`skip` returns ``(seq, repo)`` for a commit none of whose op paths can be in a
    kept collection; ``None`` means: decode the frame (it is something else, or it may
    matter). One regular expression match over the frame's first bytes: no decoding (see
    :func:`ingest.frames.commit_peek`).
    """

    __slots__ = ("skip",)

    def __init__(self, keep: CollectionFilter) -> None:
        self.skip = commit_peek(keep.needles())


def _op_record(op: Op, blocks: dict[str, bytes]) -> dict[str, Any]:
    """The record a create/update ``op`` writes: its block among the commit's ``blocks``,
    decoded (DAG-CBOR, atjson), a map; :class:`RecordError` if not."""
    if op.cid is None or op.cid not in blocks:
        raise RecordError(f"record block {op.cid} for {op.path} is not in the commit")
    try:
        decoded = cbrrr.decode_dag_cbor(blocks[op.cid], atjson_mode=True)
    except (ValueError, cbrrr.CbrrrDecodeError) as exc:
        raise RecordError(f"record {op.path} is not DAG-CBOR: {exc}") from None
    if not isinstance(decoded, dict):
        raise RecordError(f"record {op.path} is not a map")
    return decoded


def commit_envelopes(
    event: CommitEvent,
    keep: CollectionFilter,
    source: str,
    blocks: dict[str, bytes] | None = None,
) -> list[Envelope]:
    """Envelopes for the ops of ``event`` in kept collections (empty if none).

    ``blocks`` are the event's verified CAR blocks if already read. Every created or
    updated record's block must be among them (so it is covered by the block CID check).
    """
    wanted = keep.wanted(event.ops)
    if not wanted:
        return []
    if blocks is None:
        blocks = {}
        if any(op.action != "delete" for op in wanted):
            try:
                _, blocks = read_car(event.blocks)
            except CarError as exc:
                raise RecordError(f"commit {event.commit} of {event.repo}: {exc}") from None
    out: list[Envelope] = []
    for op in wanted:
        kind = _ACTIONS.get(op.action)
        if kind is None:
            raise RecordError(f"unknown op action {op.action!r} at {op.path}")
        record = None if kind == "record.deleted" else _op_record(op, blocks)
        out.append(
            Envelope(
                kind=kind,
                did=event.repo,
                source=source,
                time=event.time,
                seq=event.seq,
                rev=event.rev,
                collection=op.collection,
                rkey=op.rkey,
                cid=op.cid,
                record=record,
            )
        )
    return out


def identity_envelope(event: IdentityEvent, source: str, handle: str | None) -> Envelope:
    """``identity.changed`` for an ``#identity`` event, with the handle we verified.

    The event's own ``handle`` is the relay's say-so; ``handle`` is the DID document's,
    checked by :class:`ingest.handles.HandleVerifier` (``handle.invalid`` if it failed,
    ``None`` if the document could not be read: the stored handle stays).
    """
    return Envelope(
        kind="identity.changed",
        did=event.did,
        source=source,
        time=event.time,
        seq=event.seq,
        handle=handle,
    )


def account_envelope(event: AccountEvent, source: str) -> Envelope:
    """``account.changed`` for an ``#account`` event: the active flag and the status that
    :func:`kernel.account.account_status` makes of it (never empty)."""
    return Envelope(
        kind="account.changed",
        did=event.did,
        source=source,
        time=event.time,
        seq=event.seq,
        active=event.active,
        status=account_status(event.status, event.active),
    )


def scrobble_envelopes(
    event: CommitEvent, ops: list[Op], source: str, blocks: dict[str, bytes]
) -> tuple[list[Envelope], list[str]]:
    """Plays-topic envelopes for the scrobble ops of a verified commit, and the refusals.

    ``ops`` are the commit's ops in :data:`SCROBBLES`. A created or updated record that is
    not a well-formed scrobble (:func:`kernel.plays.parse_scrobble`) is left out and its
    reason returned (the caller counts it); a delete always passes (it may take back a play).
    """
    out: list[Envelope] = []
    refused: list[str] = []
    for op in ops:
        kind = _ACTIONS.get(op.action)
        if kind is None:
            refused.append(f"unknown op action {op.action!r} at {op.path}")
            continue
        record = None
        if kind != "record.deleted":
            try:
                record = _op_record(op, blocks)
                parse_scrobble(record)
            except RecordError as exc:
                refused.append(str(exc))
                continue
            except ValueError as exc:  # ScrobbleError is one
                refused.append(f"{op.path}: {exc}")
                continue
        out.append(
            scrobble_envelope(
                kind=kind,
                listener=event.repo,
                collection=op.collection,
                rkey=op.rkey,
                source=source,
                time=event.time,
                seq=event.seq,
                rev=event.rev,
                cid=op.cid,
                record=record,
            )
        )
    return out, refused
