"""Pure parts of moderation: label parsing, self-labels, operator labels, SQL helpers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api.moderation import CONTEXTS, hidden_subjects, image_id, visible_clause
from kernel.config import load_settings
from kernel.envelope import Envelope
from projectors.base import InvalidEvent
from projectors.moderation import (
    ModerationProjector,
    label_row,
    operator_label,
    self_labels,
    trusted_sources,
)

SRC = "did:plc:labeler"


def env(**label: object) -> Envelope:
    body: dict[str, object] = {
        "src": SRC,
        "uri": "at://did:plc:x/fm.plyr.track/1",
        "val": "porn",
        "cts": "2026-11-01T00:00:00Z",
    }
    body.update(label)
    return Envelope(kind="label.applied", did=SRC, source="t", time="t", label=body)


def test_label_row_parses_times_and_negation():
    row = label_row(env(neg=True, exp="2026-12-01T00:00:00Z", cid="bafy"))
    assert row.neg is True and row.cid == "bafy"
    assert row.cts == datetime(2026, 11, 1, tzinfo=UTC)
    assert row.exp == datetime(2026, 12, 1, tzinfo=UTC)
    assert label_row(env()).exp is None and label_row(env()).neg is False


@pytest.mark.parametrize(
    "bad",
    [
        {"src": "not-a-did"},
        {"uri": "https://example.com"},
        {"val": ""},
        {"val": "x" * 129},
        {"neg": "yes"},
        {"cts": "yesterday"},
        {"exp": 12},
        {"cid": 5},
    ],
)
def test_label_row_rejects_malformed_labels(bad):
    with pytest.raises(InvalidEvent):
        label_row(env(**bad))


def test_self_labels():
    record: dict[str, object] = {
        "labels": {
            "$type": "com.atproto.label.defs#selfLabels",
            "values": [{"val": "porn"}, {"val": "porn"}, {"val": ""}, "x", {"val": "sexual"}],
        }
    }
    assert self_labels(record) == ["porn", "sexual"]
    assert self_labels({}) == [] and self_labels({"labels": "porn"}) == []


def test_operator_label():
    when = datetime(2026, 11, 5, 12, tzinfo=UTC)
    e = operator_label("did:plc:op", "did:plc:bad", negate=True, now=when)
    assert e.kind == "label.applied" and e.did == "did:plc:op"
    assert e.label == {
        "src": "did:plc:op",
        "uri": "did:plc:bad",
        "val": "!takedown",
        "cts": "2026-11-05T12:00:00Z",
        "neg": True,
    }
    assert e.key == b"did:plc:bad"  # keyed by subject on the labels topic
    assert Envelope.from_bytes(e.to_bytes()) == e
    with pytest.raises(ValueError):
        operator_label("did:plc:op", "alice.test")


def test_trusted_sources_from_settings():
    settings = load_settings(
        {"PLYR_LABELERS": "did:plc:a,did:plc:b", "PLYR_OPERATOR_DID": "did:plc:op"}
    )
    assert trusted_sources(settings) == {"did:plc:a", "did:plc:b", "did:plc:op"}
    assert trusted_sources(load_settings({})) == frozenset()
    assert ModerationProjector(["did:plc:a"]).trusted == {"did:plc:a"}


def test_visible_clause_forms():
    probe = visible_clause("t.uri", "t.did", "list")
    assert probe.count("NOT EXISTS") == 2 and "OFFSET 0" in probe
    assert "plyr_hidden('list', false)" in probe
    hashed = visible_clause("t.uri", "t.did", "search", adult_ok=True, hidden="h")
    assert hashed == "t.uri NOT IN (SELECT subject FROM h) AND t.did NOT IN (SELECT subject FROM h)"
    # an artist is its own subject: one check
    assert visible_clause("a.did", "a.did", "view").count("NOT EXISTS") == 1
    assert set(CONTEXTS) == {"list", "search", "view", "detail", "audio"}
    assert hidden_subjects("audio") == "SELECT subject FROM plyr_hidden('audio', false)"


@pytest.mark.parametrize("column", ["t.uri; --", "1", "t.uri)", "a.b.c", ""])
def test_visible_clause_refuses_non_columns(column):
    with pytest.raises(ValueError):
        visible_clause(column, "t.did", "list")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://images.plyr.fm/images/abc123.jpg", "abc123"),
        ("https://pub-x.r2.dev/f00d.png", "f00d"),
        ("https://cdn.example/x.png", None),
    ],
)
def test_image_id(url, expected):
    assert image_id(url) == expected
