"""From decoded firehose events to envelopes: filter by collection, then read the records.

Pure functions, no I/O. The collection filter looks only at op paths, so commits that
touch nothing we index never have their CAR parsed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cbrrr

from ingest.car import CarError, read_car
from ingest.frames import AccountEvent, CommitEvent, IdentityEvent
from plyr_appview.envelope import Envelope, Kind

__all__ = [
    "CollectionFilter",
    "RecordError",
    "account_envelope",
    "commit_envelopes",
    "identity_envelope",
]

_ACTIONS: dict[str, Kind] = {
    "create": "record.created",
    "update": "record.updated",
    "delete": "record.deleted",
}


class RecordError(ValueError):
    """A commit whose records cannot be read (bad CAR, missing or undecodable block)."""


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

    def __call__(self, collection: str) -> bool:
        return collection in self.exact or collection.startswith(self.prefixes)


def commit_envelopes(event: CommitEvent, keep: CollectionFilter, source: str) -> list[Envelope]:
    """Envelopes for the ops of ``event`` in kept collections (empty if none)."""
    wanted = [op for op in event.ops if keep(op.collection)]
    if not wanted:
        return []
    blocks: dict[str, bytes] = {}
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
        record = None
        if kind != "record.deleted":
            if op.cid is None or op.cid not in blocks:
                raise RecordError(f"record block {op.cid} for {op.path} is not in the commit")
            try:
                decoded = cbrrr.decode_dag_cbor(blocks[op.cid], atjson_mode=True)
            except (ValueError, cbrrr.CbrrrDecodeError) as exc:
                raise RecordError(f"record {op.path} is not DAG-CBOR: {exc}") from None
            if not isinstance(decoded, dict):
                raise RecordError(f"record {op.path} is not a map")
            record = decoded
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


def identity_envelope(event: IdentityEvent, source: str) -> Envelope:
    return Envelope(
        kind="identity.changed",
        did=event.did,
        source=source,
        time=event.time,
        seq=event.seq,
        handle=event.handle,
    )


def account_envelope(event: AccountEvent, source: str) -> Envelope:
    return Envelope(
        kind="account.changed",
        did=event.did,
        source=source,
        time=event.time,
        seq=event.seq,
        active=event.active,
        status=event.status or ("active" if event.active else None),
    )
