"""Hostile Jetstream messages through :meth:`JetstreamIngest.handle_message`, and what
they publish through the real projectors (catalog, search) via the runner's ``apply_batch``.

Jetstream carries no signatures (it is a source we chose to trust), so here the promise is
no crash: a message is published or counted as skipped; a published record that violates
its lexicon (every way hypothesis finds: wrong ``$type``, wrong types, huge strings, NUL,
lone surrogates, nesting) is dead-lettered by the projector with its reason, and the
offset still advances.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import strategies as st

from ingest.jetstream import JetstreamIngest
from ingest.repos import RepoStates
from kernel.db import open_pool
from kernel.fetch import UpstreamFetcher
from kernel.identity import DidResolver
from kernel.log.postgres import PostgresLog
from projectors.catalog import CatalogProjector
from projectors.runner import apply_batch, load_offset
from projectors.search import SearchProjector
from testkit.records import track_record
from tests.hostile.conftest import Tally, drive, examples

TOPIC = "plyr.repo"
COLLECTIONS = ("fm.plyr.track", "fm.plyr.like", "fm.plyr.comment", "fm.plyr.list")
DID = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=15,
)
HOSTILE_STRINGS = ["\x00", "\ud800", "a" * 100_000, "' OR 1=1 --", "%_\\", "🎵" * 1000, ""]


def hostile_record(base: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    return {**base, key: value}


records = st.builds(
    hostile_record,
    st.just(track_record("t")),
    st.sampled_from(
        [
            "$type",
            "title",
            "artist",
            "createdAt",
            "duration",
            "album",
            "features",
            "audioUrl",
            "imageUrl",
            "labels",
            "extra",
        ]
    ),
    json_values | st.sampled_from(HOSTILE_STRINGS),
) | st.dictionaries(st.sampled_from(["$type", "title", "subject", "createdAt"]), json_values)

messages = st.fixed_dictionaries(
    {
        "did": st.sampled_from([DID, "did:plc:\x00", "", "did:web:169.254.169.254", "x" * 3000]),
        "time_us": st.integers(min_value=-5, max_value=2**70),
        "kind": st.sampled_from(["commit", "identity", "account", "bogus"]),
        "commit": st.fixed_dictionaries(
            {
                "operation": st.sampled_from(["create", "update", "delete", "upsert"]),
                "collection": st.sampled_from([*COLLECTIONS, "fm.plyr/evil", "\x00"]),
                "rkey": st.sampled_from(["3l1", "a/b", "\x00", "x" * 600, "."]),
                "rev": st.sampled_from(["3l1", "", "\x00", "z" * 100]),
                "cid": st.sampled_from(["bafyreib", "", None, 1]),
                "record": records,
            }
        ),
        "identity": st.fixed_dictionaries({"handle": st.sampled_from(["a.test", "\x00", 5])}),
        "account": st.fixed_dictionaries({"active": st.booleans(), "status": json_values}),
    }
)


@pytest.fixture
async def setup(pg_url: str) -> AsyncIterator[tuple[Any, PostgresLog, JetstreamIngest]]:
    pool = await open_pool(pg_url, max_size=5)
    log = PostgresLog(pool, partitions=1, topics=[TOPIC])
    await log.start()
    states = RepoStates(pool)
    await states.load()
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(404))) as c:
        resolver = DidResolver(UpstreamFetcher(client=c), "https://plc.test")
        ingest = JetstreamIngest(
            url="ws://jetstream.test/subscribe", collections=COLLECTIONS, log=log, topic=TOPIC,
            pool=pool, states=states, resolver=resolver,
        )  # fmt: skip
        try:
            yield pool, log, ingest
        finally:
            await log.close()
            await pool.close()


async def test_hostile_jetstream_messages_and_records(setup, tally: Tally) -> None:
    pool, log, ingest = setup
    seq = itertools.count()

    async def case(message: dict[str, Any]) -> None:
        skipped, published = Counter(ingest.stats.skipped), ingest.stats.published
        n = next(seq)
        raw = json.dumps(message) if n % 5 else json.dumps(message).encode()[: -(n % 7 + 1)]
        await ingest.handle_message(raw)
        await ingest._cursor.save()  # what the loop's saver does
        new = sorted((ingest.stats.skipped - skipped).keys())
        if new:
            outcome = "skipped:" + "+".join(new)
        elif ingest.stats.published > published:
            outcome = "published"
        else:
            outcome = "ignored (unknown DID or nothing new)"
        tally.note("jetstream.handle_message", outcome)

    await drive(messages, case, max_examples=examples(2000))

    # Plus a corpus of genuine-looking messages whose records break the lexicon every way.
    fields = ["$type", "title", "artist", "createdAt", "duration", "album", "features",
              "audioUrl", "imageUrl", "labels"]  # fmt: skip
    values: list[Any] = [*HOSTILE_STRINGS, None, 1, -(2**63), 2**70, 1.5, [], {}, {"$type": 1}]
    for n, (key, value) in enumerate(itertools.product(fields, values)):
        message = {"did": DID, "time_us": 10**15 + n, "kind": "commit",
                   "commit": {"operation": "create", "collection": "fm.plyr.track",
                              "rkey": f"3k{n:05d}", "rev": f"3z{n:05d}", "cid": "bafyreib",
                              "record": hostile_record(track_record("t"), key, value)}}  # fmt: skip
        await case(message)

    await case({"did": DID, "time_us": 3 * 10**15, "kind": "commit",
                "commit": json.loads("[" * 500 + "]" * 500)})  # fmt: skip
    deep = '{"did": "' + DID + '", "time_us": 1, "kind": "commit", "commit": '
    await ingest.handle_message(deep + "[" * 100_000 + "]" * 100_000 + "}")
    tally.note("jetstream.handle_message", "corpus: 100,000-deep JSON → skipped:undecodable")
    for tail in ({"kind": "identity", "identity": {"handle": "a\x00b.test"}},
                 {"kind": "account", "account": {"active": False, "status": "x\x00"}}):  # fmt: skip
        await case({"did": DID, "time_us": 2 * 10**15, **tail})  # DID is known by now

    # Everything published goes through the real projectors: applied or dead-lettered.
    batch = await log.read(TOPIC, 0, 0, max_messages=1_000_000, timeout=0)
    for projector in (CatalogProjector(), SearchProjector()):
        offset = await load_offset(pool, projector.name, TOPIC, 0)
        for start in range(0, len(batch), 200):
            offset = await apply_batch(pool, projector, batch[start : start + 200], offset)
        assert offset == (batch[-1].offset + 1 if batch else 0)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT projector, reason FROM dead_letter")
        dead = await cur.fetchall()
    for projector, reason in dead:
        tally.note(
            "projectors (runner)", f"{projector}: dead-lettered: {reason.split(':')[0][:40]}"
        )
    for _ in range(len(batch) * 2 - len(dead)):
        tally.note("projectors (runner)", "applied")
