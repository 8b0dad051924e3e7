"""DID documents: the SDK's parsing plus our checks (id, size, lowercased handle)."""

from __future__ import annotations

from typing import Any

import pytest

from kernel.identity import ResolveError, did_document_url, parse_did_document
from testkit.identity import SigningKey, did_document, plc_did, service_did_document


def test_did_document_gives_the_signing_key_as_did_key() -> None:
    key = SigningKey()
    did = plc_did(3)
    doc = parse_did_document(did, did_document(did, key, "Someone.Test", "https://pds.test/"))
    assert doc.signing_did_key == key.did_key
    assert doc.signing_key == key.multibase
    assert (doc.handle, doc.pds_url) == ("someone.test", "https://pds.test")


def test_a_labeler_document_gives_its_label_key_and_endpoint() -> None:
    did, key = plc_did(4), SigningKey("p256")
    doc = parse_did_document(
        did, service_did_document(did, label_key=key, labeler_url="https://labels.test")
    )
    assert (doc.label_key, doc.labeler_url) == (key.did_key, "https://labels.test")
    assert (doc.signing_did_key, doc.pds_url, doc.handle) == (None, None, None)


def test_a_document_of_another_did_is_refused() -> None:
    did = plc_did(5)
    raw = did_document(plc_did(6), SigningKey(), "a.test", "https://pds.test")
    with pytest.raises(ResolveError, match="id does not match"):
        parse_did_document(did, raw)
    with pytest.raises(ResolveError):
        parse_did_document(did, [raw])


def test_a_malformed_document_is_refused() -> None:
    did = plc_did(7)
    raw: dict[str, Any] = did_document(did, SigningKey(), "a.test", "https://pds.test")
    raw["verificationMethod"] = [{"id": f"{did}#atproto"}]  # no type, no controller
    with pytest.raises(ResolveError, match="malformed"):
        parse_did_document(did, raw)


@pytest.mark.parametrize(
    "service",
    [
        {"id": "#atproto_pds", "type": "Something", "serviceEndpoint": "https://pds.test"},
        {"id": "#not_atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "x"},
        {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "ftp://x"},
        {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": {"a": 1}},
    ],
)
def test_a_pds_service_must_have_its_id_type_and_an_http_endpoint(
    service: dict[str, Any],
) -> None:
    did = plc_did(8)
    raw = did_document(did, SigningKey(), "a.test", "https://pds.test")
    raw["service"] = [service]
    assert parse_did_document(did, raw).pds_url is None


@pytest.mark.parametrize("key_type", ["EcdsaSecp256k1VerificationKey2019", "Unknown"])
def test_an_unusable_key_reads_as_no_key(key_type: str) -> None:
    did = plc_did(9)
    raw = did_document(did, SigningKey(), "a.test", "https://pds.test")
    raw["verificationMethod"][0].update(type=key_type, publicKeyMultibase="zNotAKey")
    doc = parse_did_document(did, raw)
    assert doc.signing_key == "zNotAKey"
    assert doc.signing_did_key is None


def test_document_urls() -> None:
    did = plc_did(1)
    assert did_document_url("https://plc.test/", did) == f"https://plc.test/{did}"
    assert (
        did_document_url("https://plc.test", "did:web:example.com%3A8080")
        == "https://example.com:8080/.well-known/did.json"
    )
    for bad in ("did:key:zabc", "did:plc:short", "did:web:a/b"):
        with pytest.raises(ResolveError, match="unsupported"):
            did_document_url("https://plc.test", bad)


async def test_a_resolve_cancelled_mid_lookup_leaves_the_other_callers_their_document(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before the lookup ran as a task of its own, the first caller's cancellation left
    every other caller of the same DID waiting forever."""
    import asyncio

    import kernel.identity as identity

    did = plc_did(5)
    document = parse_did_document(
        did, did_document(did, SigningKey(), "slow.test", "https://pds.test/")
    )
    opened = asyncio.Event()
    calls = 0

    async def slow_resolve(fetcher: object, plc_url: str, asked: str) -> identity.DidDocument:
        nonlocal calls
        calls += 1
        await opened.wait()
        return document

    monkeypatch.setattr(identity, "resolve_did", slow_resolve)
    resolver = identity.DidResolver(None, "https://plc.invalid")  # type: ignore[arg-type]
    first = asyncio.create_task(resolver.resolve(did))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(resolver.resolve(did))
    await asyncio.sleep(0.01)
    first.cancel()
    opened.set()
    assert await asyncio.wait_for(second, 2) == document
    assert calls == 1
