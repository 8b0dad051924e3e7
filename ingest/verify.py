"""Commit verification: the signed commit block, its signature, and the sync-1.1 chain.

A ``#commit`` event names its commit by CID; the commit block (in the event's CAR, whose
blocks :func:`ingest.car.read_car` already checked against their CIDs) is a DAG-CBOR map
``{did, version: 3, data, rev, prev, sig}``. The signature ``sig`` (64 bytes, ``r || s``,
low-S) is ECDSA over SHA-256 of the DAG-CBOR encoding of that map without ``sig``, by the
key in the DID document's ``#atproto`` verification method (secp256k1 or P-256, given as
a ``did:key``). secp256k1 (what PDSes issue) is checked with libsecp256k1 (``coincurve``,
about 10x faster than OpenSSL's generic curve code here), P-256 with ``cryptography``.

:func:`check_commit` is pure and synchronous (the benchmark and the firehose both use it);
:class:`CommitVerifier` adds DID resolution, with one fresh re-resolution when a signature
does not verify (the account may have rotated its key). A ``#sync`` event carries the
same signed commit block (as its CAR's root) and is checked the same way, and so is the
commit at the root of a ``getRepo`` CAR (:meth:`CommitVerifier.verify_repo`, for backfill).
Every refusal is a :class:`VerifyError` whose ``reason`` is a short metric label.

A signature only vouches for the commit block, whose ``data`` is the root of the repo's MST;
the ops listed beside it in the event are the relay's say-so. :func:`check_ops` proves each
op against that MST through the CAR's blocks (:func:`ingest.repo_car.find_key`): a created
or updated path must map to the op's CID, a deleted one must be absent. The nodes on the
search path of a changed key are new in this commit, so a correct commit always carries them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import cbrrr
import coincurve
from atproto_core.exceptions import AtProtocolError
from atproto_crypto.did import parse_did_key
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ingest.car import CarError, cid_string, read_car
from ingest.errors import VerifyError
from ingest.frames import CommitEvent, Op, SyncEvent
from ingest.repo_car import MstNodeMissing, RepoCommit, RepoError, find_key
from kernel.identity import DidResolver, ResolveError

__all__ = [
    "CommitVerifier",
    "KeyCache",
    "VerifiedCommit",
    "VerifyError",
    "check_commit",
    "check_ops",
    "check_signature",
    "check_signed",
    "decode_commit",
    "verify_signature",
]

_CURVES: dict[str, tuple[ec.EllipticCurve, int]] = {
    "ES256K": (
        ec.SECP256K1(),
        0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
    ),
    "ES256": (
        ec.SECP256R1(),
        0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    ),
}
_ECDSA = ec.ECDSA(hashes.SHA256())
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class VerifiedCommit:
    """The parts of a verified commit that repo state keeps."""

    did: str
    rev: str
    data_cid: str
    """The MST root after this commit (the next commit's ``prevData``)."""


@dataclass(frozen=True, slots=True)
class _Key:
    public: ec.EllipticCurvePublicKey | coincurve.PublicKey
    half_order: int

    def verify(self, r: int, s: int, data: bytes) -> bool:
        der = encode_dss_signature(r, s)
        if isinstance(self.public, coincurve.PublicKey):
            return bool(self.public.verify(der, data))  # hashes with SHA-256
        try:
            self.public.verify(der, data, _ECDSA)
        except InvalidSignature:
            return False
        return True


class KeyCache:
    """Parsed public keys by ``did:key`` (parsing decompresses a curve point: not free)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._keys: dict[str, _Key] = {}
        self._max = max_entries

    def get(self, did_key: str) -> _Key:
        """The public key of ``did_key``; raises :class:`VerifyError` if unusable."""
        key = self._keys.get(did_key)
        if key is None:
            try:
                parsed = parse_did_key(did_key)
                curve, order = _CURVES[parsed.jwt_alg]
                public: ec.EllipticCurvePublicKey | coincurve.PublicKey
                if parsed.jwt_alg == "ES256K":
                    public = coincurve.PublicKey(parsed.key_bytes)
                else:
                    public = ec.EllipticCurvePublicKey.from_encoded_point(curve, parsed.key_bytes)
            except (AtProtocolError, ValueError, KeyError, TypeError, IndexError) as exc:
                raise VerifyError("bad_signing_key", f"{did_key}: {exc}") from None
            if len(self._keys) >= self._max:
                self._keys.clear()
            key = self._keys[did_key] = _Key(public, order // 2)
        return key


def decode_commit(event: CommitEvent, blocks: dict[str, bytes]) -> dict[str, cbrrr.DagCborTypes]:
    """The commit object named by ``event.commit``, checked against the event's fields."""
    return _decode_commit(event.repo, event.rev, event.commit, blocks)


def _decode_commit(
    did: str, rev: str, cid: str, blocks: dict[str, bytes]
) -> dict[str, cbrrr.DagCborTypes]:
    raw = blocks.get(cid)
    if raw is None:
        raise VerifyError("missing_commit_block", f"{cid} is not in the CAR")
    try:
        commit = cbrrr.decode_dag_cbor(raw)
    except (ValueError, cbrrr.CbrrrDecodeError) as exc:
        raise VerifyError("bad_commit_block", str(exc)) from None
    if not isinstance(commit, dict):
        raise VerifyError("bad_commit_block", "commit is not a map")
    if commit.get("did") != did:
        raise VerifyError("repo_mismatch", f"commit did {commit.get('did')!r} != {did}")
    if commit.get("rev") != rev:
        raise VerifyError("rev_mismatch", f"commit rev {commit.get('rev')!r} != {rev}")
    if commit.get("version") != 3:
        raise VerifyError("bad_commit_block", f"commit version {commit.get('version')!r}")
    if not isinstance(commit.get("data"), cbrrr.CID):
        raise VerifyError("bad_commit_block", "commit data is not a CID")
    return commit


def check_commit(
    event: CommitEvent, blocks: dict[str, bytes], did_key: str, keys: KeyCache
) -> VerifiedCommit:
    """Verify the commit block of ``event`` against the signing key ``did_key``."""
    return check_signed(event.repo, event.rev, event.commit, blocks, did_key, keys)


def check_signed(
    did: str, rev: str, cid: str, blocks: dict[str, bytes], did_key: str, keys: KeyCache
) -> VerifiedCommit:
    """Verify commit block ``cid`` (of ``did`` at ``rev``) against the signing key ``did_key``."""
    commit = _decode_commit(did, rev, cid, blocks)
    sig = commit.pop("sig", None)
    check_signature(did, rev, cbrrr.encode_dag_cbor(commit), sig, did_key, keys)
    data = commit["data"]
    assert isinstance(data, cbrrr.CID)  # checked by _decode_commit
    return VerifiedCommit(did, rev, cid_string(data))


def check_signature(
    did: str, rev: str, unsigned: bytes, sig: object, did_key: str, keys: KeyCache
) -> None:
    """Check ``sig`` over ``unsigned`` (a commit's DAG-CBOR without ``sig``) by ``did_key``.

    64 bytes ``r || s``, low-S only. Raises :class:`VerifyError` (``bad_signature``, or
    ``bad_signing_key`` for a key that cannot be parsed).
    """
    if not isinstance(sig, bytes) or len(sig) != 64:
        raise VerifyError("bad_signature", "sig must be 64 bytes")
    problem = _signature_problem(did_key, unsigned, sig, keys)
    if problem is not None:
        raise VerifyError("bad_signature", f"{did} rev {rev}: {problem}")


def verify_signature(did_key: str, data: bytes, sig: bytes, keys: KeyCache) -> bool:
    """Whether ``sig`` (64 bytes, ``r || s``) signs ``data`` with ``did_key``.

    High-S signatures (malleable) and any other length (a DER encoding) are refused, as
    the spec says. Raises :class:`VerifyError` if ``did_key`` is not a usable key.
    """
    return _signature_problem(did_key, data, sig, keys) is None


def _signature_problem(did_key: str, data: bytes, sig: bytes, keys: KeyCache) -> str | None:
    if len(sig) != 64:
        return "sig must be 64 bytes"
    key = keys.get(did_key)
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:], "big")
    if s > key.half_order:
        return "high-S signature"
    return None if key.verify(r, s, data) else "does not verify"


def check_ops(blocks: dict[str, bytes], data_cid: str, ops: Iterable[Op]) -> None:
    """Prove ``ops`` against the MST rooted at ``data_cid`` (a verified commit's ``data``).

    Raises :class:`VerifyError`: ``mst_proof_missing`` if a node on an op's search path is
    not in ``blocks``, ``mst_proof_mismatch`` if the tree maps a created or updated path to
    another CID (or lacks it) or still holds a deleted one, ``mst_proof_malformed`` for a
    node that is not a well-formed MST node. Ops with other actions are left to the record
    reading, which refuses them.
    """
    for op in ops:
        if op.action == "delete":
            expected = None
        elif op.action in ("create", "update"):
            expected = op.cid
            if expected is None:
                raise VerifyError("mst_proof_mismatch", f"{op.action} of {op.path} without a CID")
        else:
            continue
        try:
            found = find_key(blocks, data_cid, op.path)
        except MstNodeMissing as exc:
            raise VerifyError("mst_proof_missing", f"{op.path}: {exc}") from None
        except RepoError as exc:
            raise VerifyError("mst_proof_malformed", f"{op.path}: {exc}") from None
        if found is None:
            if expected is not None:
                raise VerifyError("mst_proof_mismatch", f"{op.path} is not in the signed MST")
        elif expected is None:
            raise VerifyError("mst_proof_mismatch", f"deleted {op.path} is still in the MST")
        elif cid_string(found) != expected:
            raise VerifyError(
                "mst_proof_mismatch", f"{op.path}: MST has {cid_string(found)}, op {expected}"
            )


class CommitVerifier:
    """:func:`check_commit` with the signing key from the DID document (cached)."""

    def __init__(self, resolver: DidResolver, keys: KeyCache | None = None) -> None:
        self.resolver = resolver
        self.keys = keys or KeyCache()

    async def verify(self, event: CommitEvent, blocks: dict[str, bytes]) -> VerifiedCommit:
        """Verify ``event``; on a bad signature, re-resolve the DID once and retry."""
        return await self._verify(
            event.repo,
            event.rev,
            lambda key: check_signed(event.repo, event.rev, event.commit, blocks, key, self.keys),
        )

    async def verify_sync(self, event: SyncEvent) -> VerifiedCommit:
        """Verify a ``#sync``: its CAR holds the signed commit as the only root."""
        try:
            roots, blocks = read_car(event.blocks)
        except CarError as exc:
            raise VerifyError("bad_car", f"#sync of {event.did}: {exc}") from None
        if len(roots) != 1:
            raise VerifyError("bad_commit_block", f"#sync of {event.did}: {len(roots)} roots")
        root = roots[0]
        return await self._verify(
            event.did,
            event.rev,
            lambda key: check_signed(event.did, event.rev, root, blocks, key, self.keys),
        )

    async def verify_repo(self, commit: RepoCommit) -> None:
        """Verify the signed commit at the root of a ``getRepo`` CAR (backfill, resync)."""
        await self._verify(
            commit.did,
            commit.rev,
            lambda key: check_signature(
                commit.did, commit.rev, commit.unsigned, commit.sig, key, self.keys
            ),
        )

    async def _verify(self, did: str, rev: str, check: Callable[[str], _T]) -> _T:
        did_key = await self._signing_key(did, fresh=False)
        try:
            return check(did_key)
        except VerifyError as exc:
            if exc.reason not in ("bad_signature", "bad_signing_key"):
                raise
        fresh = await self._signing_key(did, fresh=True)
        if fresh == did_key:
            raise VerifyError("bad_signature", f"{did} rev {rev} (key unchanged)")
        return check(fresh)

    async def _signing_key(self, did: str, *, fresh: bool) -> str:
        try:
            doc = await self.resolver.resolve(did, fresh=fresh)
        except ResolveError as exc:
            raise VerifyError("unresolvable_did", str(exc)) from None
        if doc.signing_did_key is None:
            raise VerifyError("no_signing_key", f"{did} has no usable #atproto key")
        return doc.signing_did_key
