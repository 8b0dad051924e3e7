"""subscribeLabels frames (CBOR and plyr's JSON), label parsing and signature checks."""

from __future__ import annotations

import base64
import json

import cbrrr
import pytest

from ingest.frames import ErrorFrame, InfoEvent
from ingest.labels import (
    LabelError,
    LabelsFrame,
    decode_labels_frame,
    label_envelope,
    parse_label,
    subscribe_labels_url,
    verify_label,
)
from kernel.envelope import Envelope
from testkit.frames import error_frame, info_frame, labels_frame
from testkit.identity import SigningKey, did_for, signed_label

LABELER = did_for("labeler")
SUBJECT = f"at://{did_for('artist')}/fm.plyr.track/3abc"


def a_label(key: SigningKey, **extra: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "src": LABELER,
        "uri": SUBJECT,
        "val": "copyright-violation",
        "cts": "2026-11-01T12:00:00.000Z",
    }
    fields.update(extra)
    return signed_label(key, **fields)


def test_cbor_labels_frame_decodes_and_verifies() -> None:
    key = SigningKey()
    frame = decode_labels_frame(labels_frame(7, [a_label(key, cid="bafyrei", neg=True)]))
    assert isinstance(frame, LabelsFrame) and frame.seq == 7
    label = parse_label(frame.labels[0])
    assert verify_label(label, key.did_key)
    assert not verify_label(label, SigningKey().did_key)
    env = label_envelope(label, LABELER, 7)
    assert env.kind == "label.applied" and env.did == LABELER and env.seq == 7
    assert env.source == f"labeler:{LABELER}"
    assert env.label == {
        "src": LABELER,
        "uri": SUBJECT,
        "cid": "bafyrei",
        "val": "copyright-violation",
        "neg": True,
        "cts": "2026-11-01T12:00:00.000Z",
    }
    assert env.key == SUBJECT.encode()
    assert Envelope.from_bytes(env.to_bytes()) == env


@pytest.mark.parametrize(
    "encode",
    [
        lambda sig: {"$bytes": base64.b64encode(sig).decode()},
        lambda sig: base64.b64encode(sig).decode(),
        lambda sig: base64.urlsafe_b64encode(sig).decode().rstrip("="),
        lambda sig: list(sig),
    ],
)
def test_plyr_json_text_frames_verify_with_any_sig_encoding(encode) -> None:
    key = SigningKey()
    label = a_label(key, exp="2027-01-01T00:00:00.000Z")
    label["sig"] = encode(label["sig"])
    frame = decode_labels_frame(json.dumps({"seq": 3, "labels": [label]}))
    assert isinstance(frame, LabelsFrame) and frame.seq == 3
    parsed = parse_label(frame.labels[0])
    assert verify_label(parsed, key.did_key)
    assert parsed.as_json()["exp"] == "2027-01-01T00:00:00.000Z"


def test_a_tampered_label_fails_verification() -> None:
    key = SigningKey()
    label = a_label(key)
    label["val"] = "porn"
    assert not verify_label(parse_label(label), key.did_key)
    unsigned_neg = a_label(key)
    unsigned_neg["neg"] = False  # a field the signer did not sign changes the bytes
    assert not verify_label(parse_label(unsigned_neg), key.did_key)


def test_info_and_error_frames() -> None:
    info = decode_labels_frame(info_frame("OutdatedCursor", "too old"))
    assert info == InfoEvent("OutdatedCursor", "too old")
    error = decode_labels_frame(error_frame("FutureCursor"))
    assert isinstance(error, ErrorFrame) and error.error == "FutureCursor"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xa1garbage",
        b"{not json",
        "[1, 2]",
        json.dumps({"seq": -1, "labels": []}),
        json.dumps({"seq": 1, "labels": "x"}),
        cbrrr.encode_dag_cbor({"op": 1, "t": "#mystery"}) + cbrrr.encode_dag_cbor({}),
        cbrrr.encode_dag_cbor({"op": 7}) + cbrrr.encode_dag_cbor({}),
        cbrrr.encode_dag_cbor({"op": 1, "t": "#labels"}),
        labels_frame(1, [])[:-3],
    ],
)
def test_garbage_frames_raise_label_error(raw: str | bytes) -> None:
    with pytest.raises(LabelError):
        decode_labels_frame(raw)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"sig": None}, "bad_label"),
        ({"sig": "!!"}, "bad_label"),
        ({"val": ""}, "bad_label"),
        ({"val": "x" * 129}, "bad_label"),
        ({"neg": "yes"}, "bad_label"),
        ({"cid": 5}, "bad_label"),
        ({"ver": "1"}, "bad_label"),
    ],
)
def test_malformed_labels_are_refused(change: dict[str, object], reason: str) -> None:
    label = {**a_label(SigningKey()), **change}
    with pytest.raises(LabelError) as info:
        parse_label(label)
    assert info.value.reason == reason
    unsigned = a_label(SigningKey())
    del unsigned["sig"]
    with pytest.raises(LabelError, match="unsigned"):
        parse_label(unsigned)


def test_subscribe_url_from_endpoints() -> None:
    assert subscribe_labels_url("https://mod.example") == (
        "wss://mod.example/xrpc/com.atproto.label.subscribeLabels"
    )
    assert subscribe_labels_url("ws://127.0.0.1:9/xrpc/com.atproto.label.subscribeLabels") == (
        "ws://127.0.0.1:9/xrpc/com.atproto.label.subscribeLabels"
    )


def test_labelers_setting_takes_dids_and_did_equals_url() -> None:
    from kernel.config import ConfigError, load_settings

    settings = load_settings({"PLYR_LABELERS": "did:plc:abc=wss://mod.example, did:web:l.example"})
    assert settings.labelers == ("did:plc:abc", "did:web:l.example")
    assert dict(settings.labeler_urls) == {"did:plc:abc": "wss://mod.example"}
    with pytest.raises(ConfigError, match="PLYR_LABELERS"):
        load_settings({"PLYR_LABELERS": "did:plc:abc=ftp://x"})
    with pytest.raises(ConfigError, match="PLYR_LABELERS"):
        load_settings({"PLYR_LABELERS": "mod.example"})
