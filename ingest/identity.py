"""Resolving DIDs to their documents: handle, PDS endpoint and signing key.

``did:plc`` is read from the configured PLC directory, ``did:web`` from the host's
``/.well-known/did.json``. Failures raise :class:`ResolveError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["DidDocument", "ResolveError", "parse_did_document", "resolve_did"]

_DID_PLC = re.compile(r"^did:plc:[a-z2-7]{24}$")
_DID_WEB = re.compile(r"^did:web:[a-zA-Z0-9.-]+(%3A[0-9]+)?$")
MAX_DOCUMENT_SIZE = 64 * 1024


class ResolveError(RuntimeError):
    """A DID that could not be resolved to a usable document."""


@dataclass(frozen=True, slots=True)
class DidDocument:
    did: str
    handle: str | None
    pds_url: str | None
    signing_key: str | None
    """The ``#atproto`` verification method, as a multibase public key."""


def parse_did_document(did: str, doc: Any) -> DidDocument:
    """Pick the ATProto parts out of a DID document (JSON)."""
    if not isinstance(doc, dict) or doc.get("id") != did:
        raise ResolveError(f"{did}: document id does not match")
    handle = None
    for aka in doc.get("alsoKnownAs") or []:
        if isinstance(aka, str) and aka.startswith("at://"):
            handle = aka.removeprefix("at://").lower()
            break
    pds_url = None
    for service in doc.get("service") or []:
        if (
            isinstance(service, dict)
            and str(service.get("id", "")).endswith("#atproto_pds")
            and isinstance(service.get("serviceEndpoint"), str)
        ):
            pds_url = str(service["serviceEndpoint"]).rstrip("/")
    signing_key = None
    for method in doc.get("verificationMethod") or []:
        if isinstance(method, dict) and str(method.get("id", "")).endswith("#atproto"):
            key = method.get("publicKeyMultibase")
            signing_key = key if isinstance(key, str) else None
    return DidDocument(did, handle, pds_url, signing_key)


async def resolve_did(client: httpx.AsyncClient, plc_url: str, did: str) -> DidDocument:
    """Fetch and parse the DID document of ``did``."""
    if _DID_PLC.match(did):
        url = f"{plc_url.rstrip('/')}/{did}"
    elif _DID_WEB.match(did):
        host = did.removeprefix("did:web:").replace("%3A", ":")
        url = f"https://{host}/.well-known/did.json"
    else:
        raise ResolveError(f"{did}: unsupported DID method")
    try:
        response = await client.get(url, timeout=10.0)
    except httpx.HTTPError as exc:
        raise ResolveError(f"{did}: {exc}") from exc
    if response.status_code != 200:
        raise ResolveError(f"{did}: {url} answered {response.status_code}")
    if len(response.content) > MAX_DOCUMENT_SIZE:
        raise ResolveError(f"{did}: document too large")
    try:
        doc = response.json()
    except ValueError:
        raise ResolveError(f"{did}: document is not JSON") from None
    return parse_did_document(did, doc)
