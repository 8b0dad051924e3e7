"""Crypto vectors (``vectors/crypto/``): signatures and ``did:key`` public keys.

Signatures are checked by both of our paths: commits (``ingest.verify``, libsecp256k1 and
``cryptography``) and labels (``ingest.labels.verify_label``). Every vector message is the
DAG-CBOR of a map, which is what both paths sign, so each path is given that map and
re-encodes it itself. ATProto refuses high-S and DER-encoded signatures.
"""

from __future__ import annotations

import base64
from typing import Any

import cbrrr
import coincurve
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ingest.labels import Label, verify_label
from ingest.verify import KeyCache, VerifyError, verify_signature
from tests.interop.vectors import load


def b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


SIGNATURES = [
    pytest.param(case, id=case["comment"]) for case in load("crypto/signature-fixtures.json")
]


def message_map(case: dict[str, Any]) -> dict[str, Any]:
    message = b64(case["messageBase64"])
    decoded = cbrrr.decode_dag_cbor(message)
    assert isinstance(decoded, dict)
    assert cbrrr.encode_dag_cbor(decoded) == message  # the map re-encodes to the message
    return decoded


@pytest.mark.parametrize("case", SIGNATURES)
def test_commit_signature_path(case: dict[str, Any]) -> None:
    data = cbrrr.encode_dag_cbor(message_map(case))
    valid = verify_signature(case["publicKeyDid"], data, b64(case["signatureBase64"]), KeyCache())
    assert valid is case["validSignature"]


@pytest.mark.parametrize("case", SIGNATURES)
def test_label_signature_path(case: dict[str, Any]) -> None:
    label = Label(
        src="did:example:labeler",
        uri="at://did:example:alice",
        val="spam",
        cts="2026-01-01T00:00:00.000Z",
        sig=b64(case["signatureBase64"]),
        unsigned=message_map(case),
    )
    assert verify_label(label, case["publicKeyDid"]) is case["validSignature"]


def test_signature_vectors_cover_both_curves_and_both_refusals() -> None:
    cases = load("crypto/signature-fixtures.json")
    assert {case["algorithm"] for case in cases} == {"ES256", "ES256K"}
    assert {tag for case in cases for tag in case["tags"]} == {"high-s", "der-encoded"}


def public_from_k256(private_hex: str) -> bytes:
    return coincurve.PrivateKey(bytes.fromhex(private_hex)).public_key.format(compressed=True)


BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def public_from_p256(private_base58: str) -> bytes:
    secret = 0
    for char in private_base58:
        secret = secret * 58 + BASE58.index(char)
    key = ec.derive_private_key(secret, ec.SECP256R1()).public_key()
    return key.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)


DID_KEYS = [
    pytest.param(
        public_from_k256(case["privateKeyBytesHex"]), case["publicDidKey"], id=case["publicDidKey"]
    )
    for case in load("crypto/w3c_didkey_K256.json")
] + [
    pytest.param(
        public_from_p256(case["privateKeyBytesBase58"]),
        case["publicDidKey"],
        id=case["publicDidKey"],
    )
    for case in load("crypto/w3c_didkey_P256.json")
]


@pytest.mark.parametrize(("public", "did_key"), DID_KEYS)
def test_did_key_parses_to_the_public_key_of_its_private_key(public: bytes, did_key: str) -> None:
    key = KeyCache().get(did_key).public
    if isinstance(key, coincurve.PublicKey):
        assert key.format(compressed=True) == public
    else:
        assert key.public_bytes(Encoding.X962, PublicFormat.CompressedPoint) == public


def test_did_key_of_another_kind_is_refused() -> None:
    with pytest.raises(VerifyError):
        KeyCache().get("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK")  # ed25519
