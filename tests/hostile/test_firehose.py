"""Hostile ``subscribeRepos`` frames through :meth:`FirehoseIngest.handle_frame`.

``handle_frame`` is the consumer loop's ``receive`` (decode in order, queue the event's
work on its repo's lane) followed by waiting for that work, so each case here takes the
real path: triage, decode, CAR, signature against a DID document served by
the test relay, MST proof, publish onto a real PostgreSQL log, cursor. A case may raise
only :class:`~ingest.errors.SourceError` (an error frame: the loop reconnects); its
outcome is read from the consumer's own counters. At the end, every record envelope on
the log must be one the repo's key signed: zero forged events accepted.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import cbrrr
import httpx
import pytest
from hypothesis import strategies as st

from ingest.commits import CollectionFilter
from ingest.errors import SourceError
from ingest.firehose import FirehoseIngest
from ingest.frames import MAX_FRAME_SIZE
from ingest.repos import RepoStates
from kernel.config import DEFAULT_COLLECTIONS
from kernel.db import open_pool
from kernel.envelope import Envelope
from kernel.fetch import UpstreamFetcher
from kernel.log.postgres import PostgresLog
from testkit.car import block, make_car
from testkit.firehose_server import FirehoseServer
from testkit.frames import commit_frame, frame
from testkit.identity import FIXED_TIME, SigningKey, did_document, plc_did, tid
from testkit.records import post_record, track_record
from testkit.repos import SignedRepo, signed_commit
from tests.hostile.conftest import Tally, drive, examples

TOPIC = "plyr.repo"
ENTRY = "firehose.handle_frame"


@dataclass
class Firehose:
    ingest: FirehoseIngest
    log: PostgresLog
    repo: SignedRepo
    legit: set[tuple[str, str]] = field(default_factory=set)
    """(uri, cid) of every record the repo's own key signed."""
    n: itertools.count[int] = field(default_factory=lambda: itertools.count(10))

    def signed(self, title: str) -> bytes:
        """A genuine commit creating one track (remembered as legit)."""
        seq = next(self.n)
        record = track_record(title)
        path = f"fm.plyr.track/{tid(seq)}"
        raw = self.repo.commit_frame(seq, [("create", path, record)])
        self.legit.add((f"at://{self.repo.did}/{path}", block(record)[0].encode()))
        return raw

    async def case(self, tally: Tally, raw: bytes, kind: str) -> str:
        """Feed one frame; classify what the consumer made of it; count it."""
        stats = self.ingest.stats
        rejected, events, published = (
            Counter(stats.rejected),
            Counter(stats.events),
            stats.published,
        )
        try:
            await self.ingest.handle_frame(raw)
            # What the loop's idle saver does every few seconds: persist state and cursor.
            await self.ingest._save_cursor()
        except SourceError:
            outcome = "source_error"
        else:
            new_rejections = sorted((stats.rejected - rejected).keys())
            new_events = sorted((stats.events - events).keys())
            if new_rejections:
                outcome = "rejected:" + "+".join(new_rejections)
            elif stats.published > published:
                outcome = "accepted"
            elif new_events:
                outcome = "ignored:" + "+".join(new_events)
            else:
                raise AssertionError(f"{kind}: a frame left no trace in any counter")
        tally.note(ENTRY, f"{kind} → {outcome}")
        return outcome

    async def published(self) -> list[Envelope]:
        out: list[Envelope] = []
        for partition in range(self.log.partitions(TOPIC)):
            for m in await self.log.read(TOPIC, partition, 0, max_messages=100_000, timeout=0):
                out.append(Envelope.from_bytes(m.value))
        return out

    async def assert_nothing_forged(self, tally: Tally) -> None:
        for e in await self.published():
            if e.collection is None:
                assert e.did == self.repo.did, f"identity/account event for a stranger: {e}"
                continue
            if (e.uri, e.cid) not in self.legit:
                tally.forged_accepted.append(f"{e.uri} {e.cid}")
        assert tally.forged_accepted == []


@pytest.fixture
async def fh(pg_url: str) -> AsyncIterator[Firehose]:
    pool = await open_pool(pg_url, max_size=4)
    log = PostgresLog(pool, partitions=1, topics=[TOPIC])
    await log.start()
    repo = SignedRepo(plc_did(1), records=20)
    async with FirehoseServer() as relay, httpx.AsyncClient() as http:
        relay.docs[repo.did] = did_document(repo.did, repo.key, "alice.test", "http://127.0.0.1:1")
        ingest = FirehoseIngest(
            url=relay.url,
            keep=CollectionFilter.of(DEFAULT_COLLECTIONS),
            log=log,
            topic=TOPIC,
            pool=pool,
            plc_url=relay.plc_url,
            fetcher=UpstreamFetcher(client=http, trusted_hosts=frozenset({"127.0.0.1"})),
            states=RepoStates(pool),
        )
        await ingest.start()
        harness = Firehose(ingest, log, repo)
        # The repo is known and in sync before the attack starts.
        assert await harness.case(_quiet(), harness.signed("genuine"), "setup") == "accepted"
        try:
            yield harness
        finally:
            await log.close()
            await pool.close()


def _quiet() -> Tally:
    return Tally()


# -- strategies ---------------------------------------------------------------------------

_CID = block({"x": 1})[0]

cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text(max_size=40)
    | st.binary(max_size=40)
    | st.just(_CID),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
"""Any DAG-CBOR value (floats aside: DAG-CBOR forbids most of them)."""

FIELDS = ["seq", "repo", "rev", "since", "commit", "ops", "blocks", "time", "tooBig", "did"]
FIELDS += ["prevData", "handle", "active", "status", "name", "message", "error"]

structured_frames = st.builds(
    lambda header, body: cbrrr.encode_dag_cbor(header) + cbrrr.encode_dag_cbor(body),
    st.fixed_dictionaries(
        {"op": st.sampled_from([1, -1, 0, 2])},
        optional={"t": st.sampled_from(["#commit", "#sync", "#identity", "#account", "#info"])},
    ),
    st.dictionaries(st.sampled_from(FIELDS), cbor_values, max_size=10),
)
"""Header and body of the right kinds, with fields of any type (or missing)."""

mutations = st.tuples(
    st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite"]),
    st.integers(min_value=0, max_value=2**20),
    st.integers(min_value=0, max_value=255),
)


def mutate(raw: bytes, how: tuple[str, int, int]) -> bytes:
    kind, at, byte = how
    at %= len(raw)
    if kind == "flip":
        return raw[:at] + bytes([raw[at] ^ (1 << (byte % 8))]) + raw[at + 1 :]
    if kind == "truncate":
        return raw[:at]
    if kind == "insert":
        return raw[:at] + bytes([byte]) + raw[at:]
    if kind == "delete":
        return raw[:at] + raw[at + 1 :]
    return raw[:at] + bytes([byte]) * 8 + raw[at + 8 :]


# -- generated cases ----------------------------------------------------------------------


async def test_random_bytes_and_structures(fh: Firehose, tally: Tally) -> None:
    async def bytes_case(raw: bytes) -> None:
        await fh.case(tally, raw, "random bytes")

    async def structure_case(raw: bytes) -> None:
        await fh.case(tally, raw, "random header+body")

    await drive(st.binary(max_size=300), bytes_case, max_examples=examples(600))
    await drive(structured_frames, structure_case, max_examples=examples(1500))
    await fh.assert_nothing_forged(tally)


async def test_mutated_signed_commits_never_publish_forgeries(fh: Firehose, tally: Tally) -> None:
    """Every byte of a genuine commit frame is fair game; what gets through must be genuine."""

    async def case(how: tuple[str, int, int]) -> None:
        genuine = fh.signed("mutated")
        await fh.case(tally, mutate(genuine, how), f"mutated commit ({how[0]})")

    await drive(mutations, case, max_examples=examples(1500))
    await fh.assert_nothing_forged(tally)


async def test_forged_commits_and_syncs(fh: Firehose, tally: Tally) -> None:
    """Commits signed by another key, or lying about the records: all refused."""
    forger = SigningKey()
    repo = fh.repo

    async def case(spec: tuple[str, str]) -> None:
        how, title = spec
        seq = next(fh.n)
        path = f"fm.plyr.track/{tid(seq)}"
        ops: list[tuple[str, str, dict[str, Any] | None]] = [
            ("create", path, track_record(f"forged {title}"))
        ]
        if how == "wrong key":
            raw = repo.commit_frame(seq, ops, sign_with=forger)
        elif how == "missing record block":
            raw = repo.commit_frame(seq, ops, omit_record_blocks=True)
        elif how == "lying mst":
            other = block(track_record(f"other {title}"))[0]
            raw = repo.commit_frame(seq, ops, mst={path: other})
        elif how == "forged #sync":
            rev = repo.next_rev()
            cid, commit = signed_commit(repo.did, block({"s": seq})[0], rev, forger)
            car = make_car([cid], [(cid, commit)])
            body = {"seq": seq, "did": repo.did, "rev": rev, "blocks": car, "time": FIXED_TIME}
            raw = frame("#sync", body)
        elif how == "invalid CAR root":
            raw = repo.commit_frame(seq, ops)
            car = make_car([cbrrr.CID(b"\x00\x01\x70\x12")], [])
            decoded = list(cbrrr.decode_multi_dag_cbor_in_violation_of_the_spec(raw))[1]
            assert isinstance(decoded, dict)
            raw = frame("#commit", {**decoded, "blocks": car})
        else:  # the record block swapped for another with the op's CID kept
            raw = repo.commit_frame(seq, ops)
            good = cbrrr.encode_dag_cbor(track_record(f"forged {title}"), atjson_mode=True)
            bad = cbrrr.encode_dag_cbor(track_record(f"FORGED {title}"), atjson_mode=True)
            assert raw.count(good) == 1
            raw = raw.replace(good, bad)
        outcome = await fh.case(tally, raw, f"forged: {how}")
        assert outcome.startswith("rejected:"), (how, outcome)

    kinds = st.sampled_from(
        [
            "wrong key",
            "missing record block",
            "lying mst",
            "forged #sync",
            "block/CID mismatch",
            "invalid CAR root",
        ]
    )
    await drive(st.tuples(kinds, st.text(max_size=20)), case, max_examples=examples(400))
    await fh.assert_nothing_forged(tally)


# -- corpus -------------------------------------------------------------------------------


def _nested(depth: int) -> bytes:
    return b"\x81" * depth + b"\x00"  # [[[...[0]...]]]


CORPUS: dict[str, bytes] = {
    "empty": b"",
    "header only": cbrrr.encode_dag_cbor({"op": 1, "t": "#commit"}),
    "three objects": frame("#info", {"name": "x"}) + b"\xa0",
    "deep nesting 100k": cbrrr.encode_dag_cbor({"op": 1, "t": "#commit"}) + _nested(100_000),
    "deep nesting header": _nested(50_000) + b"\xa0",
    "indefinite length": bytes.fromhex("bf616f01ff") + b"\xa0",
    "huge declared length": cbrrr.encode_dag_cbor({"op": 1, "t": "#commit"})
    + bytes.fromhex("5bffffffffffffffff"),
    "huge map count": cbrrr.encode_dag_cbor({"op": 1}) + bytes.fromhex("bb7fffffffffffffff"),
    "oversized frame": frame("#commit", {"seq": 1, "blocks": b"\0" * (MAX_FRAME_SIZE + 1)}),
    "invalid utf-8 repo": cbrrr.encode_dag_cbor({"op": 1, "t": "#identity"})
    + b"\xa4cseq\x01cdid\x62\xff\xfedtime\x60fhandle\xf6",
    "nul in did": frame("#identity", {"seq": 1, "did": "did:plc:\x00", "time": FIXED_TIME}),
    "huge string": frame("#identity", {"seq": 1, "did": "d" * 4_000_000, "time": "t"}),
    "nul in a known repo's handle": frame(
        "#identity", {"seq": 1, "did": plc_did(1), "handle": "a\x00b.test", "time": FIXED_TIME}
    ),
    "invalid CID in an op": cbrrr.encode_dag_cbor({"op": 1, "t": "#commit"})
    + cbrrr.encode_dag_cbor(
        {
            "seq": 1,
            "repo": plc_did(1),
            "rev": "x",
            "commit": _CID,
            "blocks": b"",
            "time": FIXED_TIME,
            "ops": [{"action": "create", "path": "a/b", "cid": None}],
        }
    ).replace(b"\xf6", b"\xd8\x2a\x45\x00\x00\x01\x70\x12"),
    "negative seq": frame("#identity", {"seq": -5, "did": plc_did(1), "time": FIXED_TIME}),
    "seq past int64": frame(
        "#account", {"seq": 2**64 - 1, "did": plc_did(1), "active": True, "time": FIXED_TIME}
    ),
    "skipped commit, seq past int64": commit_frame(
        2**64 - 1, plc_did(99), tid(1), [("create", f"app.bsky.feed.post/{tid(1)}", post_record(1))]
    ),
    "float in frame": cbrrr.encode_dag_cbor({"op": 1, "t": "#info"})
    + bytes.fromhex("a2646e616d6561786776616c7565fb3ff8000000000000"),
    "unknown type": frame("#bogus", {"seq": 7}),
    "error frame": cbrrr.encode_dag_cbor({"op": -1}) + cbrrr.encode_dag_cbor({"error": "X"}),
    "op path without slash": frame(
        "#commit",
        {
            "seq": 1,
            "repo": plc_did(1),
            "rev": "x",
            "commit": _CID,
            "blocks": b"",
            "time": FIXED_TIME,
            "ops": [{"action": "create", "path": "nope", "cid": None}],
        },
    ),
    "cbor tag 42 on garbage": cbrrr.encode_dag_cbor({"op": 1, "t": "#commit"})
    + bytes.fromhex("a166636f6d6d6974d82a4400010203"),
}


async def test_corpus_frames(fh: Firehose, tally: Tally) -> None:
    for name, raw in sorted(CORPUS.items()):
        outcome = await fh.case(tally, raw, f"corpus: {name}")
        assert outcome != "accepted", name
        # The consumer is still healthy: a genuine commit after the hostile one goes through.
        assert await fh.case(_quiet(), fh.signed("after " + name), "genuine") == "accepted"
    await fh.assert_nothing_forged(tally)
