"""The moderation read model and its one visibility decision, on a real PostgreSQL:
the policy table (every label/status x context x opt-in), per-source negation, expiry,
trusted sources, and the required projector cases."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.moderation import CONTEXTS, is_visible, sensitive_images, visible_clause
from kernel.envelope import Envelope, Kind
from kernel.log import Message
from projectors.moderation import ModerationProjector, operator_label
from projectors.runner import apply_batch, load_offset
from testkit.records import track_record

OPERATOR = "did:plc:operatoroperatoroperator"
LABELER_A = "did:plc:labeleraaaaaaaaaaaaaaaaa"
LABELER_B = "did:plc:labelerbbbbbbbbbbbbbbbbb"
STRANGER = "did:plc:strangerstrangerstranger"
DID = "did:plc:artistartistartistartist"
URI = f"at://{DID}/fm.plyr.track/t1"
TRUSTED = [OPERATOR, LABELER_A, LABELER_B]


def label(
    val: str, *, src: str = LABELER_A, uri: str = URI, cts: str = "2026-11-01T00:00:00Z", **kw: Any
) -> Envelope:
    body = {"src": src, "uri": uri, "val": val, "cts": cts, **kw}
    return Envelope(kind="label.applied", did=src, source="t", time="t", label=body)


def track(rev: str = "3l1", kind: Kind = "record.created", **record: Any) -> Envelope:
    return Envelope(
        kind=kind,
        did=DID,
        source="t",
        time="t",
        rev=rev,
        collection="fm.plyr.track",
        rkey="t1",
        cid="bafy",
        record=None if kind == "record.deleted" else track_record("Song", **record),
    )


def self_labelled(*vals: str, rev: str = "3l1", **record: Any) -> Envelope:
    values = [{"val": v} for v in vals]
    labels = {"$type": "com.atproto.label.defs#selfLabels", "values": values}
    return track(rev, labels=labels, **record)


def account(status: str) -> Envelope:
    return Envelope(
        kind="account.changed",
        did=DID,
        source="t",
        time="t",
        active=status == "active",
        status=status,
    )


async def project(pool, envelopes: Sequence[Envelope | bytes], topic: str = "plyr.labels") -> None:
    projector = ModerationProjector(TRUSTED)
    offset = await load_offset(pool, projector.name, topic, 0)
    batch = [
        Message(topic, 0, offset + i, b"k", e.to_bytes() if isinstance(e, Envelope) else e, 0)
        for i, e in enumerate(envelopes)
    ]
    await apply_batch(pool, projector, batch, offset)


async def visible(pool, context: str, adult_ok: bool = False, uri: str = URI) -> bool:
    """The decision through both forms (function and clause); they must agree."""
    async with pool.connection() as conn:
        single = await is_visible(conn, uri, DID, context, adult_ok=adult_ok)  # type: ignore[arg-type]
        clause = visible_clause("x.uri", "x.did", context, adult_ok=adult_ok)  # type: ignore[arg-type]
        cur = await conn.execute(
            f"SELECT {clause} FROM (SELECT %s::text AS uri, %s::text AS did) x", (uri, DID)
        )
        row = await cur.fetchone()
    assert row is not None and row[0] == single
    return single


async def visibility(pool, adult_ok: bool = False) -> dict[str, bool]:
    return {c: await visible(pool, c, adult_ok) for c in CONTEXTS}


SHOWN = dict.fromkeys(CONTEXTS, True)
HIDDEN = dict.fromkeys(CONTEXTS, False)
DELISTED = {"list": False, "search": False, "view": False, "detail": True, "audio": True}
ADULT = {"list": False, "search": False, "view": True, "detail": True, "audio": True}

NEGATION = label("!takedown", neg=True, cts="2026-11-02T00:00:00Z")

# (what applies, events, expected for an anonymous viewer, expected for an opted-in viewer)
POLICY: list[tuple[str, list[Envelope], dict[str, bool], dict[str, bool]]] = [
    ("nothing", [], SHOWN, SHOWN),
    ("operator !takedown", [label("!takedown", src=OPERATOR)], HIDDEN, HIDDEN),
    ("labeler !takedown", [label("!takedown")], HIDDEN, HIDDEN),
    ("labeler !hide", [label("!hide")], HIDDEN, HIDDEN),
    ("takedown of the account", [label("!takedown", src=OPERATOR, uri=DID)], HIDDEN, HIDDEN),
    ("copyright-violation label", [label("copyright-violation")], DELISTED, DELISTED),
    ("copyright-violation self-label", [self_labelled("copyright-violation")], DELISTED, DELISTED),
    ("sexual label", [label("sexual")], ADULT, SHOWN),
    ("porn label", [label("porn")], ADULT, SHOWN),
    ("nudity label", [label("nudity")], ADULT, SHOWN),
    ("graphic-media label", [label("graphic-media")], ADULT, SHOWN),
    ("porn self-label", [self_labelled("porn")], ADULT, SHOWN),
    ("sexual self-label", [self_labelled("sexual")], ADULT, SHOWN),
    ("porn label on the account", [label("porn", uri=DID)], ADULT, SHOWN),
    ("adult and copyright", [self_labelled("porn", "copyright-violation")], DELISTED, DELISTED),
    ("unknown value", [label("spoiler")], SHOWN, SHOWN),
    ("!warn is not hiding", [label("!warn")], SHOWN, SHOWN),
    ("untrusted labeler", [label("!takedown", src=STRANGER)], SHOWN, SHOWN),
    ("negated takedown", [label("!takedown"), NEGATION], SHOWN, SHOWN),
    ("expired takedown", [label("!takedown", exp="2020-01-01T00:00:00Z")], SHOWN, SHOWN),
    ("takedown expiring later", [label("!takedown", exp="2999-01-01T00:00:00Z")], HIDDEN, HIDDEN),
    ("account deactivated", [account("deactivated")], HIDDEN, HIDDEN),
    ("account takendown", [account("takendown")], HIDDEN, HIDDEN),
    ("account suspended", [account("suspended")], HIDDEN, HIDDEN),
    ("account deleted", [account("deleted")], HIDDEN, HIDDEN),
    ("account throttled", [account("throttled")], SHOWN, SHOWN),
    ("account reactivated", [account("deactivated"), account("active")], SHOWN, SHOWN),
]  # fmt: skip


@pytest.mark.parametrize(
    ("events", "anonymous", "opted_in"),
    [pytest.param(e, a, o, id=name) for name, e, a, o in POLICY],
)
async def test_policy_table(pool, events, anonymous, opted_in):
    labels = [e for e in events if e.kind == "label.applied"]
    repo = [e for e in events if e.kind != "label.applied"]
    if labels:
        await project(pool, labels)
    if repo:
        await project(pool, repo, topic="plyr.repo")
    assert await visibility(pool) == anonymous
    assert await visibility(pool, adult_ok=True) == opted_in


async def test_unknown_context_is_as_strict_as_list(pool):
    await project(pool, [label("porn")])
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT plyr_visible(%s, %s, 'radio', false)", (URI, DID))
        assert (await cur.fetchone())[0] is False
    with pytest.raises(ValueError):
        visible_clause("t.uri", "t.did", "radio")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        visible_clause("t.uri; DROP TABLE x", "t.did", "list")


async def test_negation_is_per_source(pool):
    await project(
        pool,
        [
            label("!takedown", src=LABELER_A),
            label("!takedown", src=LABELER_B),
            label("!takedown", src=LABELER_A, neg=True, cts="2026-11-02T00:00:00Z"),
        ],
    )
    assert await visible(pool, "detail") is False  # B's label still stands
    await project(pool, [label("!takedown", src=LABELER_B, neg=True, cts="2026-11-02T00:00:00Z")])
    assert await visible(pool, "detail") is True


async def test_label_out_of_order_negation_first(pool):
    # the negation (newer cts) arrives before the label it negates: the label stays off
    await project(
        pool,
        [
            label("!takedown", neg=True, cts="2026-11-02T00:00:00Z"),
            label("!takedown", cts="2026-11-01T00:00:00Z"),
        ],
    )
    assert await visible(pool, "detail") is True
    # a re-application after the negation wins again
    await project(pool, [label("!takedown", cts="2026-11-03T00:00:00Z")])
    assert await visible(pool, "detail") is False


async def test_expiry_is_decided_at_query_time(pool):
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    await project(pool, [label("!takedown", exp=soon)])
    assert await visible(pool, "detail") is False
    async with pool.connection() as conn:
        # no job runs: the same row is simply past its exp later on
        await conn.execute("UPDATE moderation_label SET exp = now() - interval '1 second'")
    assert await visible(pool, "detail") is True


async def test_replay_twice_is_once_and_duplicates(pool):
    batch = [label("!takedown"), label("!takedown", neg=True, cts="2026-11-02T00:00:00Z")]
    await project(pool, batch)
    await project(pool, batch)
    await project(pool, [batch[0], batch[0]])
    assert await visible(pool, "detail") is True
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM moderation_label")
        assert (await cur.fetchone())[0] == 1


async def test_self_labels_insert_delete_insert_and_rev_order(pool):
    await project(
        pool,
        [
            self_labelled("porn", rev="3l1"),
            track("3l2", kind="record.deleted"),
            self_labelled("copyright-violation", rev="3l3"),
            self_labelled("porn", rev="3l2"),  # late, older: ignored
        ],
        topic="plyr.repo",
    )
    assert await visibility(pool) == DELISTED
    await project(pool, [track("3l4")], topic="plyr.repo")  # labels removed by an update
    assert await visibility(pool) == SHOWN


async def test_crash_before_commit_leaves_offset_unmoved(pool):
    class Crashing(ModerationProjector):
        async def write(self, conn, steps):
            await super().write(conn, steps)  # every row of the batch is written...
            raise RuntimeError("crash")  # ...and the worker dies before the commit

    batch = [
        Message("plyr.labels", 0, i, b"k", e.to_bytes(), 0)
        for i, e in enumerate([label("!takedown"), label("spam")])
    ]
    offset = await load_offset(pool, "moderation", "plyr.labels", 0)
    with pytest.raises(RuntimeError):
        await apply_batch(pool, Crashing(TRUSTED), batch, offset)
    assert await load_offset(pool, "moderation", "plyr.labels", 0) == 0
    assert await visible(pool, "detail") is True


async def test_malformed_labels_are_dead_lettered(pool):
    await project(pool, [label("!takedown", cts="yesterday"), label("x" * 200), label("!takedown")])
    assert await visible(pool, "detail") is False
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM dead_letter WHERE projector = 'moderation'")
        assert (await cur.fetchone())[0] == 2


async def test_operator_label_round_trip(pool):
    when = datetime(2026, 11, 5, tzinfo=UTC)
    down = operator_label(OPERATOR, URI, reason="dmca", now=when)
    assert down.label == {
        "src": OPERATOR, "uri": URI, "val": "!takedown", "cts": "2026-11-05T00:00:00Z",
        "reason": "dmca",
    }  # fmt: skip
    await project(pool, [down])
    assert await visible(pool, "audio") is False
    up = operator_label(OPERATOR, URI, negate=True, now=when + timedelta(minutes=1))
    await project(pool, [up])
    assert await visible(pool, "audio") is True
    with pytest.raises(ValueError):
        operator_label(OPERATOR, "https://example.com")


async def test_sensitive_images(pool):
    img = "https://images.plyr.fm/images/abc123.jpg"
    await project(pool, [self_labelled("porn", imageUrl=img)], topic="plyr.repo")
    other = Envelope(
        kind="record.created",
        did=DID,
        source="t",
        time="t",
        rev="3l9",
        collection="fm.plyr.track",
        rkey="t2",
        cid="bafy",
        record=track_record("Clean", imageUrl="https://cdn.example/x.png"),
    )
    await project(pool, [other], topic="plyr.repo")
    async with pool.connection() as conn:
        assert await sensitive_images(conn) == {"image_ids": ["abc123"], "urls": [img]}
    # an adult label on the account blurs all of its artwork; negating it unblurs
    await project(pool, [label("sexual", uri=DID)])
    async with pool.connection() as conn:
        assert (await sensitive_images(conn))["urls"] == ["https://cdn.example/x.png", img]
    await project(pool, [label("sexual", uri=DID, neg=True, cts="2026-11-02T00:00:00Z")])
    async with pool.connection() as conn:
        assert (await sensitive_images(conn))["urls"] == [img]
