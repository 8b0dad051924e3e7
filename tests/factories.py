"""Builders for protocol test data: records, CAR files and subscribeRepos frames."""

from __future__ import annotations

from typing import Any

import cbrrr

TRACK = "fm.plyr.track"


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def block(obj: Any) -> tuple[cbrrr.CID, bytes]:
    """DAG-CBOR bytes of ``obj`` (atjson form) and their CID."""
    data = cbrrr.encode_dag_cbor(obj, atjson_mode=True)
    return cbrrr.CID.cidv1_dag_cbor_sha256_32_from(data), data


def make_car(roots: list[cbrrr.CID], blocks: list[tuple[cbrrr.CID, bytes]]) -> bytes:
    header = cbrrr.encode_dag_cbor({"version": 1, "roots": roots})
    out = bytearray(encode_varint(len(header)) + header)
    for cid, data in blocks:
        raw = bytes(cid)
        out += encode_varint(len(raw) + len(data)) + raw + data
    return bytes(out)


def track_record(title: str = "Song", **extra: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "$type": TRACK,
        "title": title,
        "artist": "Some Artist",
        "fileType": "mp3",
        "createdAt": "2026-11-01T12:00:00.000Z",
    }
    record.update(extra)
    return record


def frame(kind: str, body: dict[str, Any]) -> bytes:
    return cbrrr.encode_dag_cbor({"op": 1, "t": kind}) + cbrrr.encode_dag_cbor(body)


def commit_frame(
    seq: int,
    repo: str,
    rev: str,
    ops: list[tuple[str, str, dict[str, Any] | None]],
    *,
    time: str = "2026-11-01T12:00:00.000Z",
    extra_blocks: int = 0,
) -> bytes:
    """A ``#commit`` frame; ``ops`` are (action, collection/rkey, record or None)."""
    blocks: list[tuple[cbrrr.CID, bytes]] = []
    op_list: list[dict[str, Any]] = []
    for action, path, record in ops:
        cid = None
        if record is not None:
            cid, data = block(record)
            blocks.append((cid, data))
        op_list.append({"action": action, "path": path, "cid": cid})
    for i in range(extra_blocks):  # stand-ins for MST nodes
        blocks.append(block({"e": [], "l": None, "n": i}))
    data_cid, _ = block({"n": seq})
    commit_cid, commit_data = block(
        {
            "did": repo,
            "version": 3,
            "data": {"$link": data_cid.encode()},
            "rev": rev,
            "prev": None,
            "sig": {"$bytes": "AAAA"},
        }
    )
    blocks.insert(0, (commit_cid, commit_data))
    body = {
        "seq": seq,
        "rebase": False,
        "tooBig": False,
        "repo": repo,
        "commit": commit_cid,
        "rev": rev,
        "since": None,
        "blocks": make_car([commit_cid], blocks),
        "ops": op_list,
        "blobs": [],
        "time": time,
    }
    return frame("#commit", body)


def identity_frame(seq: int, did: str, handle: str | None) -> bytes:
    return frame(
        "#identity", {"seq": seq, "did": did, "handle": handle, "time": "2026-11-01T12:00:00.000Z"}
    )


def account_frame(seq: int, did: str, active: bool, status: str | None = None) -> bytes:
    body: dict[str, Any] = {
        "seq": seq,
        "did": did,
        "active": active,
        "time": "2026-11-01T12:00:00.000Z",
    }
    if status is not None:
        body["status"] = status
    return frame("#account", body)


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


def mst_layer(key: str) -> int:
    """The MST layer of a key: leading zero bits of sha256(key), counted in pairs."""
    import hashlib

    zeros = 0
    for byte in hashlib.sha256(key.encode()).digest():
        if byte == 0:
            zeros += 8
            continue
        zeros += 8 - byte.bit_length()
        break
    return zeros // 2


def build_mst(entries: dict[str, cbrrr.CID], out: list[tuple[cbrrr.CID, bytes]]) -> cbrrr.CID:
    """Build the MST of ``entries`` (key → record CID); append node blocks to ``out``; root CID."""
    keys = sorted(entries)
    layers = {k: mst_layer(k) for k in keys}
    top = max(layers.values(), default=0)

    def node(items: list[str], layer: int) -> cbrrr.CID:
        left: list[str] = []
        chunks: list[tuple[str, list[str]]] = []
        for key in items:
            if layers[key] == layer:
                chunks.append((key, []))
            elif chunks:
                chunks[-1][1].append(key)
            else:
                left.append(key)
        e: list[dict[str, Any]] = []
        previous = b""
        for key, below in chunks:
            raw = key.encode()
            prefix = 0
            while prefix < min(len(raw), len(previous)) and raw[prefix] == previous[prefix]:
                prefix += 1
            e.append(
                {
                    "p": prefix,
                    "k": raw[prefix:],
                    "v": entries[key],
                    "t": node(below, layer - 1) if below else None,
                }
            )
            previous = raw
        data = cbrrr.encode_dag_cbor({"l": node(left, layer - 1) if left else None, "e": e})
        cid = cbrrr.CID.cidv1_dag_cbor_sha256_32_from(data)
        out.append((cid, data))
        return cid

    return node(keys, top)


def signed_commit(did: str, data: cbrrr.CID, rev: str, key: SigningKey) -> tuple[cbrrr.CID, bytes]:
    """A version-3 commit block for MST root ``data``, signed with ``key``."""
    unsigned = {"did": did, "version": 3, "data": data, "rev": rev, "prev": None}
    signature = key.sign(cbrrr.encode_dag_cbor(unsigned))
    data_bytes = cbrrr.encode_dag_cbor({**unsigned, "sig": signature})
    return cbrrr.CID.cidv1_dag_cbor_sha256_32_from(data_bytes), data_bytes


def repo_car(
    did: str,
    records: dict[str, dict[str, Any]],
    key: SigningKey,
    *,
    rev: str | None = None,
) -> bytes:
    """A whole-repo CAR as ``getRepo`` serves it: signed commit root, MST nodes, records.

    ``records`` maps ``collection/rkey`` to the record (atjson form).
    """
    blocks: list[tuple[cbrrr.CID, bytes]] = []
    entries: dict[str, cbrrr.CID] = {}
    for path, value in records.items():
        cid, data = block(value)
        entries[path] = cid
        blocks.append((cid, data))
    mst_blocks: list[tuple[cbrrr.CID, bytes]] = []
    root = build_mst(entries, mst_blocks)
    commit_cid, commit_data = signed_commit(did, root, rev or tid(len(records)), key)
    return make_car([commit_cid], [(commit_cid, commit_data), *mst_blocks, *blocks])


def signed_label(key: SigningKey, **fields: Any) -> dict[str, Any]:
    """A ``com.atproto.label.defs#label`` (``ver`` 1) signed with ``key`` (``sig`` as bytes)."""
    label: dict[str, Any] = {"ver": 1, **fields}
    label = {k: v for k, v in label.items() if v is not None}
    return {**label, "sig": key.sign(cbrrr.encode_dag_cbor(label))}


def labels_frame(seq: int, labels: list[dict[str, Any]]) -> bytes:
    """A standard CBOR ``#labels`` frame of ``subscribeLabels``."""
    return frame("#labels", {"seq": seq, "labels": labels})


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
        return format_did_key("ES256K" if self.curve == "secp256k1" else "ES256", raw)

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


class SignedRepo:
    """One repo that emits signed ``#commit`` frames chaining with ``prevData`` (sync 1.1),
    each carrying a real MST, as a PDS sends them.

    The repo keeps its records' CIDs by path; each commit applies its ops, rebuilds the MST
    (:func:`tests.factories.build_mst`) and puts in the CAR the signed commit, the MST nodes
    that are new in this commit (those on the paths of the changed keys) and the record
    blocks. ``records`` seeds that many older records (likes sharing one CID) so the tree has
    the depth of a lived-in repo (about 5 new nodes per single-op commit at 100).
    """

    def __init__(self, did: str, key: SigningKey | None = None, *, records: int = 0) -> None:
        self.did = did
        self.key = key or SigningKey()
        self.revs = 0
        self.rev: str | None = None
        old, _ = block({"$type": "app.bsky.feed.like", "n": 0})
        self.entries: dict[str, cbrrr.CID] = {
            f"app.bsky.feed.like/{tid(n)}": old for n in range(records)
        }
        nodes: list[tuple[cbrrr.CID, bytes]] = []
        self.data_cid = build_mst(self.entries, nodes)
        self._nodes = {bytes(cid) for cid, _ in nodes}

    def next_rev(self) -> str:
        self.revs += 1
        return tid((1_700_000_000_000_000 << 10) + self.revs * 1024)

    def commit_frame(
        self,
        seq: int,
        ops: list[tuple[str, str, dict[str, Any] | None]],
        *,
        time: str = FIXED_TIME,
        sign_with: SigningKey | None = None,
        prev_data: cbrrr.CID | bool | None = True,
        rev: str | None = None,
        omit_record_blocks: bool = False,
        mst: dict[str, cbrrr.CID | None] | None = None,
        omit_path_node: bool = False,
        every_node: bool = False,
    ) -> bytes:
        """A signed ``#commit`` frame; ``ops`` are (action, collection/rkey, record or None).

        ``sign_with`` forges (another key); ``prev_data`` True chains onto the previous
        commit, a CID claims another one, False/None omits it; ``omit_record_blocks``
        leaves the record blocks out of the CAR. Lies about the tree: ``mst`` overrides
        what the signed MST maps paths to after the ops (a CID, or ``None``: absent), and
        ``omit_path_node`` leaves the deepest new MST node out of the CAR; ``every_node``
        puts every node of the tree in it, not only the new ones (so a lie is in the tree,
        not in missing blocks).
        """
        rev = rev or self.next_rev()
        records: list[tuple[cbrrr.CID, bytes]] = []
        op_list: list[dict[str, Any]] = []
        for action, path, record in ops:
            cid = None
            if record is not None:
                cid, data = block(record)
                if not omit_record_blocks:
                    records.append((cid, data))
                self.entries[path] = cid
            elif action == "delete":
                self.entries.pop(path, None)
            op_list.append({"action": action, "path": path, "cid": cid, "prev": None})
        for path, value in (mst or {}).items():
            if value is None:
                self.entries.pop(path, None)
            else:
                self.entries[path] = value
        nodes: list[tuple[cbrrr.CID, bytes]] = []
        data_cid = build_mst(self.entries, nodes)  # children first, the root last
        new = [(c, d) for c, d in nodes if every_node or bytes(c) not in self._nodes]
        self._nodes = {bytes(cid) for cid, _ in nodes}
        if omit_path_node and new:
            new = new[1:]
        unsigned: dict[str, Any] = {
            "did": self.did,
            "version": 3,
            "data": data_cid,
            "rev": rev,
            "prev": None,
        }
        sig = (sign_with or self.key).sign(cbrrr.encode_dag_cbor(unsigned))
        commit_data = cbrrr.encode_dag_cbor({**unsigned, "sig": sig})
        commit_cid = cbrrr.CID.cidv1_dag_cbor_sha256_32_from(commit_data)
        body: dict[str, Any] = {
            "seq": seq,
            "rebase": False,
            "tooBig": False,
            "repo": self.did,
            "commit": commit_cid,
            "rev": rev,
            "since": self.rev,
            "blocks": make_car([commit_cid], [(commit_cid, commit_data), *new, *records]),
            "ops": op_list,
            "blobs": [],
            "time": time,
        }
        claimed = self.data_cid if prev_data is True else prev_data
        if isinstance(claimed, cbrrr.CID):
            body["prevData"] = claimed
        self.rev, self.data_cid = rev, data_cid
        return cbrrr.encode_dag_cbor({"op": 1, "t": "#commit"}) + cbrrr.encode_dag_cbor(body)


def post_record(n: int) -> dict[str, Any]:
    """An ``app.bsky.feed.post`` of typical size."""
    return {
        "$type": "app.bsky.feed.post",
        "text": f"post number {n}: " + "lorem ipsum dolor sit amet " * 4,
        "langs": ["en"],
        "createdAt": FIXED_TIME,
    }


def info_frame(name: str, message: str | None = None) -> bytes:
    return cbrrr.encode_dag_cbor({"op": 1, "t": "#info"}) + cbrrr.encode_dag_cbor(
        {"name": name, "message": message}
    )


def error_frame(error: str, message: str | None = None) -> bytes:
    return cbrrr.encode_dag_cbor({"op": -1}) + cbrrr.encode_dag_cbor(
        {"error": error, "message": message}
    )


# --- catalog event mixes (projector tests and bench) -------------------------------------


def fake_cid(seed: object) -> str:
    """A syntactically valid CID (of a tiny DAG-CBOR block) that differs per ``seed``."""
    return block({"seed": str(seed)})[0].encode()


SUBJECT_CID = fake_cid("subject")


def like_record(subject_uri: str, **extra: Any) -> dict[str, Any]:
    """An ``fm.plyr.like`` record."""
    record: dict[str, Any] = {
        "$type": "fm.plyr.like",
        "subject": {"uri": subject_uri, "cid": SUBJECT_CID},
        "createdAt": "2026-11-02T12:00:00.000Z",
    }
    record.update(extra)
    return record


def comment_record(subject_uri: str, text: str = "nice", **extra: Any) -> dict[str, Any]:
    """An ``fm.plyr.comment`` record."""
    record: dict[str, Any] = {
        "$type": "fm.plyr.comment",
        "subject": {"uri": subject_uri, "cid": SUBJECT_CID},
        "text": text,
        "timestampMs": 1000,
        "createdAt": "2026-11-02T12:00:00.000Z",
    }
    record.update(extra)
    return record


def list_record(items: list[str], name: str = "Mix", list_type: str = "playlist") -> dict[str, Any]:
    """An ``fm.plyr.list`` record over the given subject URIs."""
    return {
        "$type": "fm.plyr.list",
        "name": name,
        "listType": list_type,
        "items": [{"subject": {"uri": u, "cid": SUBJECT_CID}} for u in items],
        "createdAt": "2026-11-03T12:00:00.000Z",
    }


def bsky_profile_record(display_name: str, avatar_cid: str | None = None) -> dict[str, Any]:
    """An ``app.bsky.actor.profile`` record."""
    record: dict[str, Any] = {"$type": "app.bsky.actor.profile", "displayName": display_name}
    if avatar_cid is not None:
        record["avatar"] = {
            "$type": "blob",
            "ref": {"$link": avatar_cid},
            "mimeType": "image/jpeg",
            "size": 1000,
        }
    return record


def plyr_profile_record(bio: str, avatar: str | None = None) -> dict[str, Any]:
    """An ``fm.plyr.actor.profile`` record."""
    record: dict[str, Any] = {
        "$type": "fm.plyr.actor.profile",
        "bio": bio,
        "createdAt": "2026-11-01T12:00:00.000Z",
    }
    if avatar is not None:
        record["avatar"] = avatar
    return record


def catalog_event_mix(count: int, *, seed: int = 7, artists: int | None = None) -> list[Any]:
    """A realistic, deterministic stream of ``count`` repo-topic envelopes.

    Per artist: identity, Bluesky and plyr profiles, tracks (some on albums, some edited or
    deleted), plus likes and comments on anyone's tracks (sometimes before the track
    exists), playlists and album lists, and the odd handle change or deactivation.
    """
    import random

    from kernel.envelope import Envelope

    rng = random.Random(seed)
    n_artists = artists or max(4, count // 40)
    dids = [f"did:plc:{i:024d}" for i in range(n_artists)]
    counter = 0
    tracks: list[str] = []
    own: dict[str, list[str]] = {d: [] for d in dids}
    out: list[Any] = []

    def next_rev() -> tuple[str, str]:
        nonlocal counter
        counter += 1
        seconds = counter // 1000
        time = f"2026-11-01T{seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        return f"3l{counter:011d}", f"{time}.{counter % 1000:03d}Z"

    def record(kind: str, did: str, collection: str, rkey: str, rec: Any) -> Any:
        rev, time = next_rev()
        return Envelope(
            kind=kind,  # type: ignore[arg-type]
            did=did,
            source="bench",
            time=time,
            rev=rev,
            collection=collection,
            rkey=rkey,
            cid=fake_cid(rev),
            record=rec,
        )

    for did in dids:
        _, time = next_rev()
        out.append(
            Envelope(
                kind="identity.changed",
                did=did,
                source="bench",
                time=time,
                handle=f"{did[-6:]}.test",
            )
        )
        if len(out) >= count:
            break
    while len(out) < count:
        did = rng.choice(dids)
        roll = rng.random()
        if roll < 0.25:
            rkey = f"t{counter}"
            album = rng.choice([None, None, "First Light", "Second Wind", "Tōkyō Nights"])
            extra: dict[str, Any] = {"album": album} if album else {}
            if rng.random() < 0.5:
                extra["audioBlob"] = {
                    "$type": "blob",
                    "ref": {"$link": fake_cid(counter)},
                    "mimeType": "audio/mpeg",
                    "size": 4_000_000,
                }
            out.append(
                record("record.created", did, TRACK, rkey, track_record(f"Song {counter}", **extra))
            )
            uri = f"at://{did}/{TRACK}/{rkey}"
            tracks.append(uri)
            own[did].append(rkey)
        elif roll < 0.60:
            # Sometimes a like of a track that does not exist yet (or never will).
            subject = (
                rng.choice(tracks)
                if tracks and rng.random() < 0.95
                else (f"at://{rng.choice(dids)}/{TRACK}/future{counter}")
            )
            out.append(
                record("record.created", did, "fm.plyr.like", f"l{counter}", like_record(subject))
            )
        elif roll < 0.72 and tracks:
            out.append(
                record(
                    "record.created",
                    did,
                    "fm.plyr.comment",
                    f"c{counter}",
                    comment_record(rng.choice(tracks), f"comment {counter}"),
                )
            )
        elif roll < 0.77 and tracks:
            items = rng.sample(tracks, min(len(tracks), rng.randint(1, 12)))
            kind = rng.choice(["playlist", "playlist", "album", "liked"])
            name = (
                rng.choice(["Road Mix", "First Light", "Late Night"])
                if kind != "liked"
                else "Liked"
            )
            out.append(
                record(
                    "record.created",
                    did,
                    "fm.plyr.list",
                    f"p{counter}",
                    list_record(items, name, kind),
                )
            )
        elif roll < 0.82:
            out.append(
                record(
                    "record.created",
                    did,
                    "app.bsky.actor.profile",
                    "self",
                    bsky_profile_record(f"Artist {counter}", fake_cid(f"avatar{counter}")),
                )
            )
        elif roll < 0.86:
            out.append(
                record(
                    "record.created",
                    did,
                    "fm.plyr.actor.profile",
                    "self",
                    plyr_profile_record(f"bio {counter}"),
                )
            )
        elif roll < 0.93 and own[did]:
            rkey = rng.choice(own[did])
            out.append(
                record(
                    "record.updated",
                    did,
                    TRACK,
                    rkey,
                    track_record(f"Song {rkey} (edit)", album="Second Wind"),
                )
            )
        elif roll < 0.96 and own[did]:
            rkey = own[did].pop(rng.randrange(len(own[did])))
            uri = f"at://{did}/{TRACK}/{rkey}"
            tracks.remove(uri)
            out.append(record("record.deleted", did, TRACK, rkey, None))
        elif roll < 0.99:
            _, time = next_rev()
            out.append(
                Envelope(
                    kind="identity.changed",
                    did=did,
                    source="bench",
                    time=time,
                    handle=f"new{counter}.test",
                )
            )
        else:
            _, time = next_rev()
            active = rng.random() < 0.5
            out.append(
                Envelope(
                    kind="account.changed",
                    did=did,
                    source="bench",
                    time=time,
                    active=active,
                    status=None if active else "deactivated",
                )
            )
    return out
