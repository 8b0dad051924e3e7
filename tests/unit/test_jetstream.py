"""Jetstream events → typed events → envelopes; bad events refused; subscription URLs."""

from __future__ import annotations

import json

import pytest

from ingest.jetstream import (
    JetstreamAccount,
    JetstreamCommit,
    JetstreamError,
    JetstreamIdentity,
    event_envelope,
    parse_event,
    subscribe_url,
    time_of,
)
from kernel.envelope import Envelope
from testkit.identity import did_for
from testkit.records import track_record

DID = did_for("jet")
T = 1_767_225_600_123_456  # 2026-01-01T00:00:00.123456Z


def commit(operation: str, **extra: object) -> str:
    body: dict[str, object] = {
        "rev": "3lbcdefghij22",
        "operation": operation,
        "collection": "fm.plyr.track",
        "rkey": "3abc",
    }
    if operation != "delete":
        body.update(record=track_record("Jet"), cid="bafyreiabc")
    body.update(extra)
    return json.dumps({"did": DID, "time_us": T, "kind": "commit", "commit": body})


@pytest.mark.parametrize(
    ("operation", "kind"),
    [("create", "record.created"), ("update", "record.updated"), ("delete", "record.deleted")],
)
def test_commit_events_become_record_envelopes(operation: str, kind: str) -> None:
    event = parse_event(commit(operation))
    assert isinstance(event, JetstreamCommit)
    env = event_envelope(event, "jetstream:js.example")
    assert env.kind == kind
    assert (env.did, env.collection, env.rkey, env.rev) == (
        DID,
        "fm.plyr.track",
        "3abc",
        "3lbcdefghij22",
    )
    assert env.seq == T
    assert env.time == "2026-01-01T00:00:00.123Z"
    assert env.source == "jetstream:js.example"
    if operation == "delete":
        assert env.record is None and env.cid is None
    else:
        assert env.record == track_record("Jet") and env.cid == "bafyreiabc"
    assert Envelope.from_bytes(env.to_bytes()) == env


def test_identity_and_account_events() -> None:
    ident = parse_event(
        json.dumps(
            {
                "did": DID,
                "time_us": T,
                "kind": "identity",
                "identity": {"did": DID, "handle": "new.test", "seq": 5, "time": "x"},
            }
        )
    )
    assert ident == JetstreamIdentity(DID, T, "new.test")
    env = event_envelope(ident, "s")
    assert (env.kind, env.handle) == ("identity.changed", "new.test")
    acct = parse_event(
        json.dumps(
            {
                "did": DID,
                "time_us": T,
                "kind": "account",
                "account": {"did": DID, "active": False, "status": "takendown", "seq": 6},
            }
        )
    )
    assert acct == JetstreamAccount(DID, T, False, "takendown")
    env = event_envelope(acct, "s")
    assert (env.kind, env.active, env.status) == ("account.changed", False, "takendown")
    reactivated = event_envelope(JetstreamAccount(DID, T, True, None), "s")
    assert reactivated.status == "active"


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe",
        "not json",
        "[]",
        json.dumps({"did": DID, "kind": "commit", "commit": {}}),
        json.dumps({"did": DID, "time_us": "1", "kind": "commit", "commit": {}}),
        json.dumps({"did": DID, "time_us": T, "kind": "mystery", "mystery": {}}),
        json.dumps({"did": DID, "time_us": T, "kind": "commit"}),
        commit("create", record=None),
        commit("create", cid=None),
        commit("rename"),
        commit("delete", rkey="a/b"),
        json.dumps({"did": DID, "time_us": T, "kind": "account", "account": {"active": "no"}}),
    ],
)
def test_garbage_is_refused(raw: str | bytes) -> None:
    with pytest.raises(JetstreamError):
        parse_event(raw)


def test_subscribe_url_has_one_param_per_collection_and_the_cursor() -> None:
    url = subscribe_url("wss://js.example/subscribe", ("fm.plyr.*", "app.bsky.actor.profile"), 42)
    assert url == (
        "wss://js.example/subscribe?wantedCollections=fm.plyr.%2A"
        "&wantedCollections=app.bsky.actor.profile&cursor=42"
    )
    assert subscribe_url("ws://h/subscribe?compress=false", ("a.b.c",), None) == (
        "ws://h/subscribe?compress=false&wantedCollections=a.b.c"
    )


def test_time_of_is_utc_milliseconds() -> None:
    assert time_of(1_000_000) == "1970-01-01T00:00:01.000Z"


def test_source_and_backfill_settings() -> None:
    from kernel.config import ConfigError, load_settings

    settings = load_settings(
        {
            "PLYR_SOURCE": "jetstream",
            "PLYR_JETSTREAM_URL": "ws://127.0.0.1:9/subscribe",
            "PLYR_BACKFILL_DIDS": "did:plc:a, did:web:b.example",
            "PLYR_BACKFILL_CONCURRENCY": "8",
        }
    )
    assert settings.source == "jetstream"
    assert settings.jetstream_url == "ws://127.0.0.1:9/subscribe"
    assert settings.backfill_dids == ("did:plc:a", "did:web:b.example")
    assert settings.backfill_concurrency == 8
    for env, name in [
        ({"PLYR_SOURCE": "tap"}, "PLYR_SOURCE"),
        ({"PLYR_JETSTREAM_URL": "https://x"}, "PLYR_JETSTREAM_URL"),
        ({"PLYR_BACKFILL_DIDS": "alice"}, "PLYR_BACKFILL_DIDS"),
        ({"PLYR_BACKFILL_CONCURRENCY": "0"}, "PLYR_BACKFILL_CONCURRENCY"),
    ]:
        with pytest.raises(ConfigError, match=name):
            load_settings(env)
