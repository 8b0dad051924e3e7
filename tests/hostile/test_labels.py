"""Hostile ``subscribeLabels`` frames through :meth:`LabelIngest.handle_frame`.

The labeler's DID document (with its ``#atproto_label`` key) is served by the test relay's
PLC stand-in; labels go onto a real PostgreSQL log. A case may raise only the
``WebSocketException`` of an error frame (the loop reconnects). At the end every published
label must be one the labeler's key signed, from that labeler: zero forgeries accepted.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import cbrrr
import httpx
import pytest
import websockets
from hypothesis import strategies as st

from ingest.labels import LabelIngest
from kernel.db import open_pool
from kernel.envelope import Envelope
from kernel.fetch import UpstreamFetcher
from kernel.log.postgres import PostgresLog
from testkit.firehose_server import FirehoseServer
from testkit.frames import frame, labels_frame
from testkit.identity import SigningKey, did_for, service_did_document, signed_label
from tests.hostile.conftest import Tally, drive, examples

TOPIC = "plyr.labels"
LABELER = did_for("hostile-labeler")
TRACK = "at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/fm.plyr.track/3l1"
ENTRY = "labels.handle_frame"


@dataclass
class Labels:
    ingest: LabelIngest
    log: PostgresLog
    key: SigningKey
    n: itertools.count[int]
    genuine: set[str]

    def label(self, val: str, **extra: Any) -> dict[str, Any]:
        fields = {"src": LABELER, "uri": TRACK, "val": val, "cts": "2026-11-01T00:00:00.000Z"}
        made = signed_label(self.key, **{**fields, **extra})
        self.genuine.add(_fingerprint(made))
        return made

    async def case(self, tally: Tally, raw: str | bytes, kind: str) -> str:
        stats = self.ingest.stats
        rejected, published = Counter(stats.rejected), stats.published
        try:
            await self.ingest.handle_frame(raw)
            await self.ingest._cursor.save()  # what the loop does after a session
        except websockets.WebSocketException:
            outcome = "error frame (reconnect)"
        else:
            new = sorted((stats.rejected - rejected).keys())
            if new:
                outcome = "rejected:" + "+".join(new)
            elif stats.published > published:
                outcome = "published"
            else:
                outcome = "nothing to publish"
        tally.note(ENTRY, f"{kind} → {outcome}")
        return outcome

    async def assert_nothing_forged(self, tally: Tally) -> None:
        """Every published label is, field for field, one this labeler's key signed."""
        for m in await self.log.read(TOPIC, 0, 0, max_messages=100_000, timeout=0):
            label = Envelope.from_bytes(m.value).label or {}
            if _fingerprint(label) not in self.genuine:
                tally.forged_accepted.append(json.dumps(label)[:200])
        assert tally.forged_accepted == []


def _fingerprint(label: dict[str, Any]) -> str:
    """What a published label says (the envelope's fields), comparable across forms."""
    kept = {k: label.get(k) for k in ("src", "uri", "cid", "val", "cts", "exp")}
    kept["neg"] = label.get("neg") is True
    return json.dumps(kept, sort_keys=True)


@pytest.fixture
async def lab(pg_url: str) -> AsyncIterator[Labels]:
    pool = await open_pool(pg_url, max_size=4)
    log = PostgresLog(pool, partitions=1, topics=[TOPIC])
    await log.start()
    key = SigningKey()
    async with FirehoseServer() as plc, httpx.AsyncClient() as http:
        plc.docs[LABELER] = service_did_document(LABELER, label_key=key)
        ingest = LabelIngest(
            did=LABELER, url="wss://labeler.test", log=log, topic=TOPIC, pool=pool,
            fetcher=UpstreamFetcher(client=http, trusted_hosts=frozenset({"127.0.0.1"})),
            plc_url=plc.plc_url,
        )  # fmt: skip
        await ingest._identity(fresh=False)
        try:
            yield Labels(ingest, log, key, itertools.count(1), set())
        finally:
            await log.close()
            await pool.close()


label_fields = st.dictionaries(
    st.sampled_from(["ver", "src", "uri", "cid", "val", "neg", "cts", "exp", "sig", "x"]),
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text(max_size=200)
    | st.binary(max_size=70),
    max_size=10,
)


async def test_generated_label_frames(lab: Labels, tally: Tally) -> None:
    async def case(spec: tuple[str, Any]) -> None:
        how, value = spec
        seq = next(lab.n)
        if how == "bytes":
            raw: str | bytes = value
        elif how == "labels":
            raw = labels_frame(seq, value)
        elif how == "json":
            raw = json.dumps({"seq": seq, "labels": value}, default=repr)
        else:  # a genuine label whose fields were then changed (signature kept)
            raw = labels_frame(seq, [{**lab.label("porn"), **value}])
        await lab.case(tally, raw, f"generated {how}")

    spec = st.one_of(
        st.tuples(st.just("bytes"), st.binary(max_size=200)),
        st.tuples(st.just("labels"), st.lists(label_fields, max_size=3)),
        st.tuples(st.just("json"), st.lists(label_fields, max_size=3)),
        st.tuples(st.just("tampered"), label_fields),
    )
    await drive(spec, case, max_examples=examples(1500))
    await lab.assert_nothing_forged(tally)


async def test_label_corpus(lab: Labels, tally: Tally) -> None:
    forger = SigningKey()
    corpus: dict[str, str | bytes] = {
        "forged signature": labels_frame(1, [signed_label(forger, src=LABELER, uri=TRACK,
                                                          val="!takedown", cts="2026")]),
        "another labeler's src": labels_frame(2, [signed_label(lab.key, src=did_for("x"),
                                                               uri=TRACK, val="!takedown",
                                                               cts="2026")]),
        "seq past int64": labels_frame(2**64 - 1, [lab.label("porn")]),
        "negative seq": labels_frame(-1, []),
        "nul in val": labels_frame(3, [lab.label("a\x00b")]),
        "nul in uri": labels_frame(3, [lab.label("porn", uri="at://\x00")]),
        "huge val": labels_frame(3, [lab.label("v" * 100_000)]),
        "json seq past int64": json.dumps({"seq": 2**70, "labels": []}),
        "json lone surrogate": '{"seq": 4, "labels": [{"val": "\\ud800"}]}',
        "deep json": "{" * 1 + '"seq": 5, "labels": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "deep cbor": cbrrr.encode_dag_cbor({"op": 1, "t": "#labels"}) + b"\x81" * 100_000 + b"\0",
        "error frame": cbrrr.encode_dag_cbor({"op": -1}) + cbrrr.encode_dag_cbor({"error": "X"}),
        "unknown type": frame("#bogus", {"seq": 6}),
        "info": frame("#info", {"name": "OutdatedCursor"}),
    }  # fmt: skip
    for name, raw in corpus.items():
        outcome = await lab.case(tally, raw, f"corpus: {name}")
        if name in ("forged signature", "another labeler's src"):
            assert outcome.startswith("rejected:"), (name, outcome)
        # Still healthy: a genuine label after it is published.
        good = labels_frame(next(lab.n) + 10, [lab.label("sexual")])
        assert await lab.case(Tally(), good, "genuine") == "published", name
    await lab.assert_nothing_forged(tally)
