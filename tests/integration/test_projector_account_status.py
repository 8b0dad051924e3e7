"""Every projector reads an ``account.changed`` event by kernel.account.account_status.

Before, the catalog took ``status`` over ``active`` (an active account with a stale
``takendown`` status was hidden), moderation read ``active=None`` as deactivated, and
search purged on ``status == 'deleted'`` even for an active account.
"""

from __future__ import annotations

import pytest

from kernel.envelope import Envelope
from kernel.log import Message
from projectors.catalog import CatalogProjector
from projectors.moderation import ModerationProjector
from projectors.runner import apply_batch, load_offset
from projectors.search import SearchProjector
from testkit.records import track_record

TOPIC = "plyr.repo"

# (DID, active, status) -> the status every read model must agree on.
CASES = [
    ("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", None, None, "active"),
    ("did:plc:bbbbbbbbbbbbbbbbbbbbbbbb", True, "takendown", "active"),
    ("did:plc:cccccccccccccccccccccccc", True, "deleted", "active"),
    ("did:plc:dddddddddddddddddddddddd", False, None, "deactivated"),
    ("did:plc:eeeeeeeeeeeeeeeeeeeeeeee", False, "takendown", "takendown"),
]


def events() -> list[Envelope]:
    out: list[Envelope] = []
    for did, active, status, _ in CASES:
        out.append(
            Envelope(
                kind="record.created",
                did=did,
                source="test",
                time="2026-11-01T00:00:00Z",
                rev="3l1",
                collection="fm.plyr.track",
                rkey="t1",
                cid="bafy3l1",
                record=track_record("Song"),
            )
        )
        out.append(
            Envelope(
                kind="account.changed",
                did=did,
                source="test",
                time="2026-11-01T00:00:01Z",
                active=active,
                status=status,
            )
        )
    return out


@pytest.mark.parametrize("one_by_one", [False, True])
async def test_every_read_model_reads_the_account_status_alike(pool, one_by_one):
    batch = [Message(TOPIC, 0, i, e.did.encode(), e.to_bytes(), 0) for i, e in enumerate(events())]
    for projector in (CatalogProjector(), SearchProjector(), ModerationProjector(trusted=())):
        chunks = [[m] for m in batch] if one_by_one else [batch]
        for chunk in chunks:
            offset = await load_offset(pool, projector.name, TOPIC, 0)
            await apply_batch(pool, projector, chunk, offset)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT did, account_status FROM artist ORDER BY did")
        catalog = dict(await cur.fetchall())
        cur = await conn.execute("SELECT did, status FROM moderation_account ORDER BY did")
        moderation = dict(await cur.fetchall())
        cur = await conn.execute("SELECT DISTINCT did FROM search_doc WHERE doc_type = 'track'")
        searched = {row[0] for row in await cur.fetchall()}
        cur = await conn.execute("SELECT did FROM track")
        tracks = {row[0] for row in await cur.fetchall()}
    expected = {did: status for did, _, _, status in CASES}
    assert catalog == moderation == expected
    # Nobody is deleted, so no read model purged anyone.
    assert searched == tracks == set(expected)
