"""Agreement of a batch projector with its per-event reference: project, then compare.

Builds their events too (:func:`rec`, :func:`account`, :func:`perturbed`). Used by the
tests that hold :class:`~projectors.runner.ReducingProjector` projectors to
the per-event code they replaced (``tests/integration/test_*_batch_agreement.py``).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

from psycopg_pool import AsyncConnectionPool

from kernel.envelope import Envelope, Kind
from kernel.log import Message
from projectors.base import Projector
from projectors.rebuild import reset
from projectors.runner import apply_batch, load_offset
from testkit.records import fake_cid

__all__ = [
    "Contents",
    "account",
    "contents",
    "differences",
    "perturbed",
    "project",
    "rec",
]

Contents = dict[str, Counter[str]]
"""Per table, its rows (their ``repr``) as a multiset."""


async def project(
    pool: AsyncConnectionPool,
    projector: Projector,
    streams: Sequence[tuple[str, Sequence[Envelope]]],
    size: int,
) -> None:
    """Empty ``projector``'s tables, then apply each ``(topic, envelopes)`` in batches of
    ``size`` (partition 0, one transaction per batch, as the runner does)."""
    await reset(pool, projector)
    for topic, envelopes in streams:
        offset = await load_offset(pool, projector.name, topic, 0)
        for start in range(0, len(envelopes), size):
            chunk = [
                Message(topic, 0, offset + i, e.did.encode(), e.to_bytes(), 0)
                for i, e in enumerate(envelopes[start : start + size])
            ]
            offset = await apply_batch(pool, projector, chunk, offset)


async def contents(pool: AsyncConnectionPool, projector: Projector) -> Contents:
    """Every table of ``projector``, and its dead letters, as multisets of rows."""
    out: Contents = {}
    async with pool.connection() as conn:
        for table in projector.tables:
            cur = await conn.execute(f"SELECT * FROM {table}")
            out[table] = Counter(repr(row) for row in await cur.fetchall())
        cur = await conn.execute(
            'SELECT topic, "offset", uri, reason FROM dead_letter WHERE projector = %s',
            (projector.name,),
        )
        out["dead_letter"] = Counter(repr(row) for row in await cur.fetchall())
    return out


def rec(kind: Kind, did: str, collection: str, rkey: str, rev: str, record: Any = None) -> Envelope:
    """A record event at ``rev`` (its time from the rev's last two characters)."""
    return Envelope(
        kind=kind,
        did=did,
        source="test",
        time=f"2026-11-05T10:00:{int(rev[-2:]) % 60:02d}Z",
        rev=rev,
        collection=collection,
        rkey=rkey,
        cid=fake_cid(rev),
        record=None if kind == "record.deleted" else record,
    )


def account(did: str, status: str | None, active: bool) -> Envelope:
    """An ``account.changed`` event."""
    return Envelope(
        kind="account.changed", did=did, source="test", time="t", active=active, status=status
    )


def perturbed(events: list[Envelope], seed: int) -> list[Envelope]:
    """A replay of part of ``events``: shuffled, duplicated, with deletes of their records."""
    rng = random.Random(seed)
    picked = rng.sample(events, len(events) // 3)
    out: list[Envelope] = []
    for event in picked:
        out.append(event)
        if rng.random() < 0.1:
            out.append(event)
        if event.uri is not None and event.rev is not None and rng.random() < 0.15:
            rev = rng.choice([r for r in (e.rev for e in picked) if r is not None])
            out.append(rec("record.deleted", event.did, event.collection or "",
                           event.rkey or "", rev))  # fmt: skip
        if rng.random() < 0.01:
            out.append(account(event.did, "deleted", False))
    rng.shuffle(out)
    return out


def differences(expected: Contents, got: Contents) -> list[str]:
    """The rows one side has and the other lacks, per table (empty: they agree)."""
    lines = []
    for table, rows in expected.items():
        lines += [f"{table} missing {row}" for row in (rows - got[table])]
        lines += [f"{table} extra {row}" for row in (got[table] - rows)]
    return lines
