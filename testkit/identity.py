"""DIDs, TIDs, signing keys, DID documents and signed labels."""

from __future__ import annotations

from typing import Any

import cbrrr

# -- signed repos with real MSTs (getRepo CARs), keys and labels --------------------------------

_B32 = "abcdefghijklmnopqrstuvwxyz234567"  # did:plc alphabet (base32, lowercase)


def did_for(name: str) -> str:
    """A syntactically valid did:plc derived from ``name``."""
    import hashlib

    digest = hashlib.sha256(name.encode()).digest()
    return "did:plc:" + "".join(_B32[b & 31] for b in digest[:24])


def service_did_document(
    did: str,
    *,
    handle: str | None = None,
    pds_url: str | None = None,
    key: SigningKey | None = None,
    label_key: SigningKey | None = None,
    labeler_url: str | None = None,
) -> dict[str, Any]:
    """A DID document with the ATProto parts (``#atproto`` key, PDS, labeler, label key)."""
    methods = []
    if key is not None:
        methods.append(
            {
                "id": f"{did}#atproto",
                "type": "Multikey",
                "controller": did,
                "publicKeyMultibase": key.multibase,
            }
        )
    if label_key is not None:
        methods.append(
            {
                "id": f"{did}#atproto_label",
                "type": "Multikey",
                "controller": did,
                "publicKeyMultibase": label_key.multibase,
            }
        )
    services = []
    if pds_url is not None:
        services.append(
            {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": pds_url}
        )
    if labeler_url is not None:
        services.append(
            {"id": "#atproto_labeler", "type": "AtprotoLabeler", "serviceEndpoint": labeler_url}
        )
    return {
        "@context": ["https://www.w3.org/ns/did/v1"],
        "id": did,
        "alsoKnownAs": [f"at://{handle}"] if handle else [],
        "verificationMethod": methods,
        "service": services,
    }


def signed_label(key: SigningKey, **fields: Any) -> dict[str, Any]:
    """A ``com.atproto.label.defs#label`` (``ver`` 1) signed with ``key`` (``sig`` as bytes)."""
    label: dict[str, Any] = {"ver": 1, **fields}
    label = {k: v for k, v in label.items() if v is not None}
    return {**label, "sig": key.sign(cbrrr.encode_dag_cbor(label))}


# --- Signed commits with realistic CARs (verification tests, firehose server, benchmarks) ---

_TID_CHARS = "234567abcdefghijklmnopqrstuvwxyz"
_SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
FIXED_TIME = "2026-11-01T12:00:00.000Z"


def tid(n: int) -> str:
    """A 13-character TID (sortable) for the integer ``n``."""
    out = []
    for _ in range(13):
        out.append(_TID_CHARS[n & 31])
        n >>= 5
    return "".join(reversed(out))


def plc_did(n: int) -> str:
    """A syntactically valid ``did:plc`` for test repo number ``n``."""
    return "did:plc:" + tid(n).rjust(24, "a")[-24:]


class SigningKey:
    """A repo signing key (secp256k1 by default, or P-256) for building signed commits."""

    def __init__(self, curve: str = "secp256k1") -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        self._ec = ec
        self.curve = curve
        self._private = ec.generate_private_key(
            ec.SECP256K1() if curve == "secp256k1" else ec.SECP256R1()
        )
        self._order = _SECP256K1_ORDER if curve == "secp256k1" else _P256_ORDER

    @property
    def did_key(self) -> str:
        """``did:key:z…`` of the public key."""
        from atproto_crypto.did import format_did_key
        from cryptography.hazmat.primitives import serialization

        raw = self._private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        did_key: str = format_did_key("ES256K" if self.curve == "secp256k1" else "ES256", raw)
        return did_key

    @property
    def multibase(self) -> str:
        """The ``publicKeyMultibase`` for a DID document."""
        return self.did_key.removeprefix("did:key:")

    def sign(self, data: bytes) -> bytes:
        """Compact low-S ECDSA/SHA-256 signature (64 bytes)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        r, s = decode_dss_signature(self._private.sign(data, self._ec.ECDSA(hashes.SHA256())))
        if s > self._order // 2:
            s = self._order - s
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def did_document(did: str, key: SigningKey, handle: str, pds_url: str) -> dict[str, Any]:
    """A DID document as the PLC directory serves it."""
    return {
        "@context": ["https://www.w3.org/ns/did/v1"],
        "id": did,
        "alsoKnownAs": [f"at://{handle}"],
        "verificationMethod": [
            {
                "id": f"{did}#atproto",
                "type": "Multikey",
                "controller": did,
                "publicKeyMultibase": key.multibase,
            }
        ],
        "service": [
            {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": pds_url}
        ],
    }
