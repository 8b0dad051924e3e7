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
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from psycopg import AsyncConnection

from kernel.account import DELETED, account_status
from kernel.config import Settings
from kernel.envelope import Envelope
from lexicons import ValidationError, validate_record
from projectors.base import InvalidEvent, parse_datetime
from projectors.records import RecordTable, Rows, deletion

__all__ = [
    "LabelRow",
    "ModerationProjector",
    "delete_by_did",
    "label_row",
    "operator_label",
    "self_labels",
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


async def _apply_track(conn: AsyncConnection, envelope: Envelope) -> None:
    uri, rev = envelope.uri, envelope.rev
    assert uri is not None and rev is not None  # checked when the envelope was parsed
    if envelope.kind == "record.deleted":
        removed = await RECORDS.delete(conn, Rows.of([deletion(envelope).as_json()]))
        if removed:
            await conn.execute("DELETE FROM moderation_self_label WHERE uri = %s", (uri,))
        return
    record = envelope.record
    if record is None:
        raise InvalidEvent("track event without record")
    try:
        validate_record(TRACK, record)
    except ValidationError as exc:
        raise InvalidEvent(str(exc)) from None
    image = record.get("imageUrl")
    values = self_labels(record)
    row = {
        "uri": uri,
        "did": envelope.did,
        "rev": rev,
        "image_url": image if isinstance(image, str) else None,
    }
    written, _ = await RECORDS.upsert(conn, Rows.of([row]))
    if not written:
        return
    await conn.execute("DELETE FROM moderation_self_label WHERE uri = %s", (uri,))
    if values:
        await conn.execute(
            "INSERT INTO moderation_self_label (uri, did, vals) VALUES (%s, %s, %s)",
            (uri, envelope.did, values),
        )


async def _apply_label(conn: AsyncConnection, row: LabelRow) -> None:
    await conn.execute(
        "INSERT INTO moderation_label (src, uri, val, neg, cid, cts, exp)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (src, uri, val) DO UPDATE SET neg = excluded.neg, cid = excluded.cid,"
        " cts = excluded.cts, exp = excluded.exp"
        " WHERE (moderation_label.cts, moderation_label.neg) < (excluded.cts, excluded.neg)",
        (row.src, row.uri, row.val, row.neg, row.cid, row.cts, row.exp),
    )


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
        """Apply one labels-topic or repo-topic event."""
        kind = envelope.kind
        if kind == "label.applied":
            row = label_row(envelope)
            if row.src not in self.trusted:
                logger.debug("label from untrusted source", extra={"src": row.src, "uri": row.uri})
                return
            await _apply_label(conn, row)
        elif kind == "account.changed":
            status = account_status(envelope.status, envelope.active)
            await conn.execute(
                "INSERT INTO moderation_account (did, status) VALUES (%s, %s)"
                " ON CONFLICT (did) DO UPDATE SET status = excluded.status",
                (envelope.did, status),
            )
            if status == DELETED:
                await delete_by_did(conn, envelope.did)
        elif envelope.collection == TRACK:
            await _apply_track(conn, envelope)
