"""The ``moderation`` read model: labels, creator self-labels and account status.

Runs twice under the one projector name ``moderation`` — on the ``labels`` topic
(``label.applied``) and on the ``repo`` topic (``fm.plyr.track`` self-labels and images,
``account.changed``) — with separate offsets per topic, so it rebuilds on its own.
Schema and the visibility decision (``plyr_hidden``, ``plyr_visible``) are in
``migrations/0007_moderation.sql``; the API side is ``api/moderation.py``.

- Labels count only from trusted sources: the configured labelers and the operator DID
  (``label.src``). Labels from anyone else are skipped; changing the trusted set takes
  effect on a rebuild. State is per ``(src, uri, val)``: the event with the newest ``cts``
  wins, a negation wins a tie, and a negation stays stored so a late older label cannot
  come back. A negation from one labeler never cancels another's label. ``exp`` is stored
  and compared with ``now()`` at query time.
- Self-labels: the ``labels`` (``com.atproto.label.defs#selfLabels``) of each track record,
  ordered by commit rev by the catalog's rule (:data:`RECORDS`, :mod:`projectors.records`).
- Accounts: the latest ``account.changed`` status per DID in log order; ``deleted`` also
  purges the DID's records and self-labels (the status row stays, so nothing of it shows).

A batch is applied at once (:class:`~projectors.runner.ReducingProjector`):
:meth:`ModerationProjector.reduce` validates and folds it (pure) into one row per label
key, account and track record; :meth:`~ModerationProjector.write` writes each table with
one statement, the track records by the rule of :class:`~projectors.reduction.RecordEvents`
(so self-labels follow the writes that took effect). A deleted account cuts the batch.
The tables are those the events give one at a time, in the same order:
``tests/integration/test_moderation_batch_agreement.py`` holds them to the per-event
projector this replaced (:mod:`testkit.moderation_reference`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeAlias

from psycopg import AsyncConnection

from kernel.account import DELETED, account_status
from kernel.config import Settings
from kernel.envelope import Envelope
from lexicons import ValidationError, validate_record
from projectors.base import InvalidEvent, parse_datetime
from projectors.records import RecordTable, Rows, deletion, to_json
from projectors.reduction import (
    RecordEvents,
    apply_one,
    deleted_account,
    deletion_rows,
    reduce_segments,
)

__all__ = [
    "RECORDS",
    "TRACK",
    "LabelRow",
    "ModerationProjector",
    "delete_by_did",
    "label_row",
    "operator_label",
    "self_labels",
    "track_row",
    "trusted_sources",
]

logger = logging.getLogger(__name__)

TRACK = "fm.plyr.track"
_MAX_VAL = 128
_MAX_SELF_LABELS = 10


@dataclass(frozen=True, slots=True)
class LabelRow:
    """One label event as stored."""

    src: str
    uri: str
    val: str
    neg: bool
    cid: str | None
    cts: datetime
    exp: datetime | None


def label_row(envelope: Envelope) -> LabelRow:
    """The stored form of a ``label.applied`` event; :class:`InvalidEvent` if malformed."""
    label = envelope.label
    if label is None:
        raise InvalidEvent("label.applied without a label")
    src, uri, val = label.get("src"), label.get("uri"), label.get("val")
    if not isinstance(src, str) or not src.startswith("did:"):
        raise InvalidEvent("label.src: expected a DID")
    if not isinstance(uri, str) or not uri.startswith(("at://", "did:")):
        raise InvalidEvent("label.uri: expected an AT-URI or a DID")
    if not isinstance(val, str) or not 0 < len(val) <= _MAX_VAL:
        raise InvalidEvent(f"label.val: expected 1 to {_MAX_VAL} characters")
    neg = label.get("neg", False)
    cid = label.get("cid")
    if not isinstance(neg, bool) or not (cid is None or isinstance(cid, str)):
        raise InvalidEvent("label.neg must be a boolean and label.cid a string")
    exp = label.get("exp")
    return LabelRow(
        src=src,
        uri=uri,
        val=val,
        neg=neg,
        cid=cid,
        cts=parse_datetime(label.get("cts"), "label.cts"),
        exp=parse_datetime(exp, "label.exp") if exp is not None else None,
    )


def self_labels(record: dict[str, object]) -> list[str]:
    """The values of a record's ``selfLabels``, deduplicated, capped at 10 (as plyr)."""
    labels = record.get("labels")
    values = labels.get("values") if isinstance(labels, dict) else None
    out: list[str] = []
    for item in values if isinstance(values, list) else []:
        val = item.get("val") if isinstance(item, dict) else None
        if isinstance(val, str) and 0 < len(val) <= _MAX_VAL and val not in out:
            out.append(val)
    return out[:_MAX_SELF_LABELS]


def trusted_sources(settings: Settings) -> frozenset[str]:
    """The DIDs whose labels count: the configured labelers and the operator."""
    operator = {settings.operator_did} if settings.operator_did else set()
    return frozenset(settings.labelers) | operator


def operator_label(
    operator_did: str,
    subject: str,
    *,
    val: str = "!takedown",
    negate: bool = False,
    reason: str | None = None,
    now: datetime | None = None,
) -> Envelope:
    """The ``label.applied`` event an operator action appends to the labels topic.

    ``subject`` is an AT-URI (one record) or a DID (a whole account); ``negate`` lifts an
    earlier label of the same value. ``reason`` travels in the label as a non-standard
    ``reason`` field (kept on the log, ignored by projection).
    """
    if not subject.startswith(("at://", "did:")):
        raise ValueError(f"expected an AT-URI or a DID, got {subject!r}")
    when = (now or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    label: dict[str, object] = {"src": operator_did, "uri": subject, "val": val, "cts": when}
    if negate:
        label["neg"] = True
    if reason:
        label["reason"] = reason
    return Envelope(
        kind="label.applied", did=operator_did, source="operator", time=when, label=label
    )


# The track records moderation has seen (with their artwork URL, for the sensitive-images
# list): the rule of :mod:`projectors.records`, with moderation's own tombstones.
RECORDS = RecordTable(
    "moderation_record",
    (("uri", "text"), ("did", "text"), ("rev", "text"), ("image_url", "text")),
    touched="uri",
    tombstones="moderation_tombstone",
)


@dataclass
class _Segment:
    """The reduced events of a run of the batch with no account deletion in it."""

    records: dict[str, RecordEvents] = field(default_factory=dict)
    labels: dict[tuple[str, str, str], LabelRow] = field(default_factory=dict)
    """Per ``(src, uri, val)``: the label with the newest ``(cts, neg)`` (the first such)."""
    accounts: dict[str, str] = field(default_factory=dict)
    """Per DID: the status of its last ``account.changed``."""
    untrusted: list[tuple[str, str]] = field(default_factory=list)
    """``(src, uri)`` of the labels skipped: their source is not trusted."""

    def __bool__(self) -> bool:
        return bool(self.records or self.labels or self.accounts or self.untrusted)


@dataclass(frozen=True, slots=True)
class _Writes:
    """A segment as :meth:`ModerationProjector.write` takes it (rows encoded)."""

    labels: Rows
    accounts: Rows
    claims: Rows
    """The write that can take effect per track record: ``uri, did, rev, image_url``."""
    deletions: Rows
    self_labels: dict[str, tuple[str, list[str]]]
    """Per record of :attr:`claims`: its DID and self-labels, stored if the write takes
    effect."""
    untrusted: list[tuple[str, str]]


def _plan(segment: _Segment) -> _Writes:
    claims = []
    self_labels: dict[str, tuple[str, list[str]]] = {}
    for uri, entry in segment.records.items():
        if entry.write is not None:
            row, values = entry.write[2]
            claims.append(row)
            self_labels[uri] = (entry.did, values)
    labels = (
        {
            "src": r.src,
            "uri": r.uri,
            "val": r.val,
            "neg": r.neg,
            "cid": r.cid,
            "cts": r.cts.isoformat(),
            "exp": r.exp.isoformat() if r.exp is not None else None,
        }
        for r in segment.labels.values()
    )
    accounts = ({"did": did, "status": status} for did, status in segment.accounts.items())
    return _Writes(
        labels=Rows.of(labels),
        accounts=Rows.of(accounts, key="did"),
        claims=Rows.of(claims),
        deletions=deletion_rows(segment.records.values()),
        self_labels=self_labels,
        untrusted=segment.untrusted,
    )


def track_row(envelope: Envelope) -> tuple[dict[str, str | None], list[str]]:
    """The ``moderation_record`` row and self-labels of a track write; :class:`InvalidEvent`."""
    record = envelope.record
    if record is None:
        raise InvalidEvent("track event without record")
    try:
        validate_record(TRACK, record)
    except ValidationError as exc:
        raise InvalidEvent(str(exc)) from None
    image = record.get("imageUrl")
    row = {
        "uri": envelope.uri,
        "did": envelope.did,
        "rev": envelope.rev,
        "image_url": image if isinstance(image, str) else None,
    }
    return row, self_labels(record)


async def _write_tracks(conn: AsyncConnection, writes: _Writes) -> None:
    """Claim the track records, then store the self-labels of the writes that stand.

    A write that took effect replaced the record's self-labels, a delete that removed a
    row cleared them (see :class:`~projectors.reduction.RecordEvents` for the order).
    """
    written, _ = await RECORDS.upsert(conn, writes.claims)
    removed = await RECORDS.delete(conn, writes.deletions)
    cleared = sorted(written | {str(uri) for uri in removed})
    if not cleared:
        return
    await conn.execute("DELETE FROM moderation_self_label WHERE uri = ANY(%b::text[])", (cleared,))
    stand = [uri for uri in cleared if uri in written and uri not in removed]
    rows = [
        {"uri": uri, "did": did, "vals": values}
        for uri in stand
        for did, values in [writes.self_labels[uri]]
        if values
    ]
    if rows:
        await conn.execute(
            "INSERT INTO moderation_self_label (uri, did, vals)"
            " SELECT uri, did, ARRAY(SELECT jsonb_array_elements_text(vals))"
            " FROM jsonb_to_recordset(%s::jsonb) AS x(uri text, did text, vals jsonb)",
            (to_json(rows),),
        )


async def _write(conn: AsyncConnection, writes: _Writes) -> None:
    """Write one reduced segment."""
    for src, uri in writes.untrusted:
        logger.debug("label from untrusted source", extra={"src": src, "uri": uri})
    if writes.labels:
        await conn.execute(
            "INSERT INTO moderation_label (src, uri, val, neg, cid, cts, exp)"
            " SELECT src, uri, val, neg, cid, cts, exp FROM jsonb_to_recordset(%s::jsonb)"
            " AS x(src text, uri text, val text, neg boolean, cid text, cts timestamptz,"
            " exp timestamptz)"
            " ON CONFLICT (src, uri, val) DO UPDATE SET neg = excluded.neg, cid = excluded.cid,"
            " cts = excluded.cts, exp = excluded.exp"
            " WHERE (moderation_label.cts, moderation_label.neg) < (excluded.cts, excluded.neg)",
            (writes.labels.json,),
        )
    if writes.accounts:
        await _set_statuses(conn, writes.accounts.json)
    await _write_tracks(conn, writes)


async def _set_statuses(conn: AsyncConnection, rows: str) -> None:
    """Store accounts' statuses (``rows``: a JSON array of ``did, status``)."""
    await conn.execute(
        "INSERT INTO moderation_account (did, status) SELECT did, status"
        " FROM jsonb_to_recordset(%s::jsonb) AS x(did text, status text)"
        " ON CONFLICT (did) DO UPDATE SET status = excluded.status",
        (rows,),
    )


Steps: TypeAlias = "list[_Writes | str]"
"""A reduced batch: segments to write, and between them the DIDs of deleted accounts."""


async def delete_by_did(conn: AsyncConnection, did: str) -> None:
    """Purge a deleted repo's records and self-labels (labels about it are kept)."""
    await conn.execute("DELETE FROM moderation_self_label WHERE did = %s", (did,))
    await conn.execute("DELETE FROM moderation_record WHERE did = %s", (did,))
    await conn.execute("DELETE FROM moderation_tombstone WHERE did = %s", (did,))


class ModerationProjector:
    """Projects the ``labels`` and ``repo`` topics into the moderation tables."""

    name = "moderation"
    tables: tuple[str, ...] = (
        "moderation_label",
        "moderation_record",
        "moderation_self_label",
        "moderation_account",
        "moderation_tombstone",
    )

    def __init__(self, trusted: Iterable[str]) -> None:
        """``trusted``: the DIDs whose labels count (:func:`trusted_sources` of the settings)."""
        self.trusted = frozenset(trusted)

    async def apply(self, conn: AsyncConnection, envelope: Envelope) -> None:
        """Apply one labels-topic or repo-topic event (a batch of one)."""
        await apply_one(self, conn, envelope)

    def reduce(self, envelopes: Sequence[Envelope]) -> tuple[Steps, list[tuple[int, str]]]:
        """Validate and fold a batch (pure): what :meth:`write` writes, and ``(index,
        reason)`` of the invalid events. A deleted account cuts it (its DID is the step)."""
        return reduce_segments(envelopes, _Segment, self._reduce, _plan, deleted_account)

    def _reduce(self, segment: _Segment, envelope: Envelope, position: int) -> None:
        """Fold one event into the segment; :class:`InvalidEvent` if its data is bad."""
        kind = envelope.kind
        if kind == "label.applied":
            row = label_row(envelope)
            if row.src not in self.trusted:
                segment.untrusted.append((row.src, row.uri))
                return
            key = (row.src, row.uri, row.val)
            current = segment.labels.get(key)
            # The newest (cts, neg) wins; of equal ones, the first (the stored one stays).
            if current is None or (current.cts, current.neg) < (row.cts, row.neg):
                segment.labels[key] = row
        elif kind == "account.changed":
            segment.accounts[envelope.did] = account_status(envelope.status, envelope.active)
        elif envelope.collection == TRACK:
            entry = segment.records.get(envelope.uri or "")
            if entry is None:
                assert envelope.uri is not None  # record events have one
                entry = segment.records[envelope.uri] = RecordEvents(envelope.did, TRACK)
            if kind == "record.deleted":
                entry.fold_delete(deletion(envelope), position)
            else:
                assert envelope.rev is not None  # record events have one
                entry.fold_write(envelope.rev, position, track_row(envelope))

    async def write(self, conn: AsyncConnection, steps: Steps) -> None:
        """Write what :meth:`reduce` returned, inside the caller's transaction."""
        for step in steps:
            if isinstance(step, str):
                await _set_statuses(conn, to_json([{"did": step, "status": DELETED}]))
                await delete_by_did(conn, step)
            else:
                await _write(conn, step)
