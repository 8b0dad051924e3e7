"""Commit verification: signatures (secp256k1, P-256), commit block checks, key parsing."""

from __future__ import annotations

import cbrrr
import pytest

from ingest.car import read_car
from ingest.frames import CommitEvent, decode_frame
from ingest.verify import KeyCache, VerifyError, check_commit
from testkit.identity import SigningKey, plc_did, tid
from testkit.records import track_record
from testkit.repos import SignedRepo

OPS = [("create", f"fm.plyr.track/{tid(1)}", track_record("x"))]


def commit(raw: bytes) -> tuple[CommitEvent, dict[str, bytes]]:
    event = decode_frame(raw)
    assert isinstance(event, CommitEvent)
    return event, read_car(event.blocks)[1]


@pytest.mark.parametrize("curve", ["secp256k1", "p256"])
def test_a_signed_commit_verifies_and_gives_its_data_cid(curve: str) -> None:
    repo = SignedRepo(plc_did(1), SigningKey(curve))
    event, blocks = commit(repo.commit_frame(1, OPS))
    verified = check_commit(event, blocks, repo.key.did_key, KeyCache())
    assert verified.rev == event.rev
    assert repo.data_cid is not None and verified.data_cid == repo.data_cid.encode()


def test_another_key_is_a_bad_signature() -> None:
    repo = SignedRepo(plc_did(1))
    event, blocks = commit(repo.commit_frame(1, OPS, sign_with=SigningKey()))
    with pytest.raises(VerifyError) as err:
        check_commit(event, blocks, repo.key.did_key, KeyCache())
    assert err.value.reason == "bad_signature"


def test_high_s_signature_is_refused() -> None:
    repo = SignedRepo(plc_did(1))
    event, blocks = commit(repo.commit_frame(1, OPS))
    raw = cbrrr.decode_dag_cbor(blocks[event.commit])
    assert isinstance(raw, dict) and isinstance(raw["sig"], bytes)
    order = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    s = int.from_bytes(raw["sig"][32:], "big")
    raw["sig"] = raw["sig"][:32] + (order - s).to_bytes(32, "big")  # same signature, high S
    data = cbrrr.encode_dag_cbor(raw)
    cid = cbrrr.CID.cidv1_dag_cbor_sha256_32_from(data).encode()
    forged = CommitEvent(**{**{f: getattr(event, f) for f in event.__slots__}, "commit": cid})
    with pytest.raises(VerifyError, match="high-S"):
        check_commit(forged, {**blocks, cid: data}, repo.key.did_key, KeyCache())


def test_commit_block_must_be_present_and_match_the_event() -> None:
    repo = SignedRepo(plc_did(1))
    event, blocks = commit(repo.commit_frame(1, OPS))
    with pytest.raises(VerifyError) as err:
        check_commit(event, {}, repo.key.did_key, KeyCache())
    assert err.value.reason == "missing_commit_block"
    other = CommitEvent(**{**{f: getattr(event, f) for f in event.__slots__}, "repo": plc_did(2)})
    with pytest.raises(VerifyError) as err:
        check_commit(other, blocks, repo.key.did_key, KeyCache())
    assert err.value.reason == "repo_mismatch"
    later = CommitEvent(**{**{f: getattr(event, f) for f in event.__slots__}, "rev": tid(10**15)})
    with pytest.raises(VerifyError) as err:
        check_commit(later, blocks, repo.key.did_key, KeyCache())
    assert err.value.reason == "rev_mismatch"


def test_unusable_keys_are_a_verify_error() -> None:
    with pytest.raises(VerifyError) as err:
        KeyCache().get("did:key:zNotAKey")
    assert err.value.reason == "bad_signing_key"
