"""The batch moderation projector agrees with the per-event one it replaced, table for table.

The same events go through the per-event projector (:mod:`testkit.moderation_reference`)
and through :class:`projectors.moderation.ModerationProjector` in batches of several sizes
(1 included): on the repo topic the catalog event mix, self-labelled tracks with the
order-sensitive cases below and a shuffled, duplicated replay; on the labels topic random
labels of trusted and untrusted sources with ties, negations and expiries. Every
moderation table, and the dead letters, must hold the same rows after each.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from kernel.envelope import Envelope, Kind
from projectors.moderation import ModerationProjector
from testkit.agreement import Contents, account, contents, differences, perturbed, project, rec
from testkit.events import catalog_event_mix
from testkit.moderation_reference import PerEventModerationProjector
from testkit.records import TRACK, track_record

A = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
B = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"
TRUSTED = ("did:plc:labeleraaaaaaaaaaaaaaaaa", "did:plc:labelerbbbbbbbbbbbbbbbbb")
UNTRUSTED = "did:plc:strangerstrangerstranger"


def track(kind: Kind, did: str, rkey: str, rev: str, *vals: str, **extra: Any) -> Envelope:
    labels = {"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": v} for v in vals]}
    return rec(kind, did, TRACK, rkey, rev, {**track_record(labels=labels), **extra})


def repo_cases() -> list[Envelope]:
    return [
        track("record.created", A, "t1", "3m01", "porn", imageUrl="https://img/1"),
        track("record.updated", A, "t1", "3m03", "nudity", "nudity", imageUrl="https://img/1b"),
        track("record.updated", A, "t1", "3m02", "sexual"),  # older: lost
        track("record.created", A, "t2", "3m05", "porn"),
        track("record.updated", A, "t2", "3m06"),  # no labels left
        # A delete before the create it beats; a delete of nothing.
        track("record.deleted", A, "t3", "3m09"),
        track("record.created", A, "t3", "3m08", "porn"),
        track("record.deleted", A, "never", "3m10"),
        # Written, deleted, written again (same rev); then a newer write.
        track("record.created", A, "t4", "3m11", "graphic-media"),
        track("record.deleted", A, "t4", "3m12"),
        track("record.created", A, "t4", "3m11", "graphic-media"),
        track("record.created", A, "t5", "3m13", "sexual"),
        track("record.deleted", A, "t5", "3m14"),
        track("record.created", A, "t5", "3m15", "nudity"),
        # A write, a newer delete, a write between the two (it cannot take effect).
        track("record.created", A, "t6", "3m16", "porn"),
        track("record.deleted", A, "t6", "3m19"),
        track("record.updated", A, "t6", "3m17", "nudity"),
        track("record.created", A, "bad", "3m20", title="x" * 300),
        # Account statuses: the last wins; deletion purges, later events come back.
        account(B, "deactivated", False),
        track("record.created", B, "t1", "3m21", "porn"),
        account(B, None, True),
        account(B, "deleted", False),
        track("record.created", B, "t2", "3m22", "nudity"),
        account(B, "takendown", False),
    ]


def labels(seed: int) -> list[Envelope]:
    """Random labels over few subjects and times, so ties and negations meet."""
    rng = random.Random(seed)
    out = []
    for _ in range(300):
        src = rng.choice([*TRUSTED, UNTRUSTED])
        body: dict[str, Any] = {
            "src": src,
            "uri": rng.choice([A, B, f"at://{A}/{TRACK}/t1", f"at://{B}/{TRACK}/t2"]),
            "val": rng.choice(["!takedown", "porn", "spam"]),
            "cts": f"2026-11-01T00:00:0{rng.randrange(4)}Z",
            "cid": rng.choice([None, "bafyone", "bafytwo"]),
        }
        if rng.random() < 0.4:
            body["neg"] = True
        if rng.random() < 0.2:
            body["exp"] = f"2026-12-0{rng.randrange(1, 4)}T00:00:00Z"
        if rng.random() < 0.03:
            body["src"] = "not-a-did"
        out.append(Envelope(kind="label.applied", did=src, source="t", time="t", label=body))
    return out


def streams() -> list[tuple[str, list[Envelope]]]:
    mix = catalog_event_mix(400, artists=5)
    repo = [*mix, *repo_cases(), *perturbed([*mix, *repo_cases()], seed=4), *repo_cases()]
    return [("plyr.repo", repo), ("plyr.labels", labels(seed=5))]


@pytest.fixture
async def expected(pool) -> Contents:
    await project(pool, PerEventModerationProjector(TRUSTED), streams(), 50)
    return await contents(pool, ModerationProjector(TRUSTED))


@pytest.mark.parametrize("size", [1, 3, 16, 10_000])
async def test_batches_give_the_per_event_tables(pool, expected, size):
    await project(pool, ModerationProjector(TRUSTED), streams(), size)
    assert differences(expected, await contents(pool, ModerationProjector(TRUSTED))) == []


async def test_the_streams_cover_the_cases(pool, expected):
    """The per-event run has what the cases are there for (the comparison means something)."""
    for table in ("moderation_label", "moderation_record", "moderation_self_label",
                  "moderation_account", "moderation_tombstone", "dead_letter"):  # fmt: skip
        assert len(expected[table]) > 2, table
    rows = "\n".join(row for table in expected.values() for row in table)
    for needle in ("'takendown'", "['nudity']", "https://img/1b", "True", "bafytwo"):
        assert needle in rows, needle
