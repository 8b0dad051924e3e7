"""The moderation projector as it was before it applied batches: one event at a time.

Kept only as the reference its batch twin (:class:`projectors.moderation.ModerationProjector`)
is held to: ``tests/integration/test_moderation_batch_agreement.py`` feeds both the same
events and compares every moderation table, and ``bench/bench_projectors_rebuild.py``
(``BENCH_PROJECTOR=moderation``) measures both in the same run. It shares the pure parts
(label rows, self-labels, the record table) with the product.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from psycopg import AsyncConnection

from kernel.account import DELETED, account_status
from kernel.envelope import Envelope
from projectors.moderation import (
    RECORDS,
    TRACK,
    LabelRow,
    ModerationProjector,
    delete_by_did,
    label_row,
    track_row,
)
from projectors.records import Rows, deletion

__all__ = ["PerEventModerationProjector"]

logger = logging.getLogger(__name__)


async def _apply_track(conn: AsyncConnection, envelope: Envelope) -> None:
    uri, rev = envelope.uri, envelope.rev
    assert uri is not None and rev is not None  # checked when the envelope was parsed
    if envelope.kind == "record.deleted":
        removed = await RECORDS.delete(conn, Rows.of([deletion(envelope).as_json()]))
        if removed:
            await conn.execute("DELETE FROM moderation_self_label WHERE uri = %s", (uri,))
        return
    row, values = track_row(envelope)
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


class PerEventModerationProjector:
    """The moderation projector of one event at a time (the reference; see the module)."""

    name = ModerationProjector.name
    tables = ModerationProjector.tables

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
