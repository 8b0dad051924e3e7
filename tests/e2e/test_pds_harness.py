"""The local PDS harness itself: a real PLC + PDS, XRPC writes, and what the firehose shows.

These tests also pin the protocol facts the ingest side relies on for this PDS version
(field names of #commit / #identity / #account / #sync, getBlob behaviour).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import libipld
import pytest

from testkit import pds as pds_module
from testkit.pds import LocalPds, PdsStartError, start_pds
from tests.e2e.atp_client import (
    Account,
    AtpClient,
    FirehoseEvent,
    FirehoseRecorder,
    XrpcError,
    cid_str,
)

pytestmark = pytest.mark.e2e

TRACK = "fm.plyr.track"
WAIT = 15.0
_MISSING = object()

# A tiny but well-formed MP3: an empty ID3v2.4 tag, then MPEG-1 Layer III frame headers.
# (The PDS sniffs uploads; bytes that start like an ID3 tag but are malformed give a 500.)
MP3_BYTES = b"ID3\x04\x00\x00\x00\x00\x00\x00" + (b"\xff\xfb\x90\x64" + bytes(413)) * 60


def track(title: str, **extra: object) -> dict[str, object]:
    return {
        "$type": TRACK,
        "title": title,
        "artist": "The Harness",
        "fileType": "mp3",
        "createdAt": "2026-11-21T12:00:00.000Z",
        **extra,
    }


@pytest.fixture(scope="module")
async def harness_pds(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalPds]:
    pds = await asyncio.to_thread(start_pds, tmp_path_factory.mktemp("pds-harness") / "atp")
    try:
        yield pds
    finally:
        await asyncio.to_thread(pds.stop)


@pytest.fixture
async def atp(harness_pds: LocalPds) -> AsyncIterator[AtpClient]:
    async with AtpClient.for_pds(harness_pds) as client:
        yield client


@pytest.fixture
async def firehose(harness_pds: LocalPds) -> AsyncIterator[FirehoseRecorder]:
    async with FirehoseRecorder(harness_pds.firehose_url, cursor=0) as recorder:
        yield recorder


def event_of(kind: str, did: str, **fields: object) -> Callable[[FirehoseEvent], bool]:
    """Predicate: a ``kind`` event about ``did`` whose body has these field values."""

    def predicate(event: FirehoseEvent) -> bool:
        return (
            event.type == kind
            and event.did == did
            and all(event.body.get(k, _MISSING) == v for k, v in fields.items())
        )

    return predicate


def ops_for(
    events: list[FirehoseEvent], did: str, path: str
) -> list[tuple[FirehoseEvent, dict[str, Any]]]:
    """(commit event, op) pairs touching ``path`` in ``did``'s repo, in firehose order."""
    found: list[tuple[FirehoseEvent, dict[str, Any]]] = []
    for event in events:
        if event.type == "#commit" and event.did == did:
            found.extend((event, op) for op in event.body["ops"] if op["path"] == path)
    return found


async def wait_account_created(firehose: FirehoseRecorder, account: Account) -> None:
    for kind in ("#identity", "#account", "#commit", "#sync"):
        await firehose.wait_for(event_of(kind, account.did), timeout=WAIT)


def block_for(commit: FirehoseEvent, cid: str) -> dict[str, object]:
    """The record block with ``cid`` from a commit's CAR slice."""
    _header, blocks = libipld.decode_car(commit.body["blocks"])
    for raw_cid, block in blocks.items():
        if libipld.encode_cid(raw_cid) == cid:
            return block
    raise AssertionError(f"block {cid} not in commit seq={commit.seq}")


async def test_network_info(harness_pds: LocalPds, atp: AtpClient) -> None:
    assert harness_pds.running
    assert harness_pds.pds_url.startswith("http://127.0.0.1:")
    assert harness_pds.plc_url.startswith("http://127.0.0.1:")
    assert harness_pds.firehose_url.startswith("ws://127.0.0.1:")
    assert harness_pds.firehose_url.endswith("/xrpc/com.atproto.sync.subscribeRepos")
    assert harness_pds.pds_did == "did:web:localhost"
    assert harness_pds.handle_domain == ".test"
    description = await atp.query("com.atproto.server.describeServer")
    assert description["did"] == harness_pds.pds_did
    assert harness_pds.handle_domain in description["availableUserDomains"]


async def test_record_lifecycle_identity_and_account_events(
    harness_pds: LocalPds, atp: AtpClient, firehose: FirehoseRecorder
) -> None:
    alice = await atp.create_account("alice")
    bob = await atp.create_account("bob")
    assert alice.handle == "alice.test"
    assert alice.did.startswith("did:plc:")
    assert alice.did != bob.did
    await wait_account_created(firehose, alice)
    await wait_account_created(firehose, bob)

    # Account creation: #identity(handle), #account(active), an empty #commit, #sync.
    created = [e for e in firehose.events if e.did == alice.did]
    assert [e.type for e in created[:4]] == ["#identity", "#account", "#commit", "#sync"]
    identity, account, genesis, sync = created[:4]
    assert identity.body["handle"] == "alice.test"
    assert account.body["active"] is True
    assert genesis.body["ops"] == [] and genesis.body["since"] is None
    assert sync.body["rev"] == genesis.body["rev"]
    assert isinstance(sync.body["blocks"], bytes)

    # create -> update -> delete of one fm.plyr.track record.
    uri, cid_v1 = await atp.create_record(alice, TRACK, track("First take"))
    rkey = uri.rsplit("/", 1)[-1]
    assert uri == f"at://{alice.did}/{TRACK}/{rkey}"
    stored = await atp.get_record(alice.did, TRACK, rkey)
    assert stored is not None and stored["cid"] == cid_v1
    assert stored["value"]["title"] == "First take"

    uri_v2, cid_v2 = await atp.put_record(alice, TRACK, rkey, track("Second take"))
    assert uri_v2 == uri and cid_v2 != cid_v1
    await atp.delete_record(alice, TRACK, rkey)
    assert await atp.get_record(alice.did, TRACK, rkey) is None

    path = f"{TRACK}/{rkey}"
    await firehose.wait_until(lambda events: len(ops_for(events, alice.did, path)) >= 3, WAIT)
    ops = ops_for(firehose.events, alice.did, path)
    assert [op["action"] for _, op in ops] == ["create", "update", "delete"]
    (c_evt, c_op), (u_evt, u_op), (d_evt, d_op) = ops
    assert cid_str(c_op["cid"]) == cid_v1
    assert cid_str(u_op["cid"]) == cid_v2
    assert d_op["cid"] is None
    # This PDS already emits sync 1.1 fields: prev on update/delete ops, prevData on commits.
    assert "prev" not in c_op
    assert cid_str(u_op["prev"]) == cid_v1
    assert cid_str(d_op["prev"]) == cid_v2
    for evt in (c_evt, u_evt, d_evt):
        assert evt.body["repo"] == alice.did
        assert {"seq", "rev", "since", "commit", "blocks", "ops", "time", "prevData"} <= set(
            evt.body
        )
        assert evt.body["rebase"] is False and evt.body["tooBig"] is False
    assert u_evt.body["since"] == c_evt.body["rev"]
    assert d_evt.body["since"] == u_evt.body["rev"]
    assert c_evt.seq is not None and u_evt.seq is not None and d_evt.seq is not None
    assert c_evt.seq < u_evt.seq < d_evt.seq
    assert block_for(c_evt, cid_v1)["title"] == "First take"
    assert block_for(u_evt, cid_v2)["title"] == "Second take"

    # Handle change -> #identity carrying the new handle.
    await atp.update_handle(bob, "bob-renamed.test")
    assert bob.handle == "bob-renamed.test"
    renamed = await firehose.wait_for(
        lambda e: (
            e.type == "#identity"
            and e.did == bob.did
            and e.body.get("handle") == "bob-renamed.test"
        ),
        WAIT,
    )
    assert await atp.resolve_handle("bob-renamed.test") == bob.did

    # Deactivate / activate -> #account events.
    await atp.deactivate_account(bob)
    deactivated = await firehose.wait_for(
        lambda e: e.type == "#account" and e.did == bob.did and e.body["active"] is False, WAIT
    )
    assert deactivated.body["status"] == "deactivated"
    assert deactivated.seq is not None and renamed.seq is not None
    assert deactivated.seq > renamed.seq
    await atp.activate_account(bob)
    reactivated = await firehose.wait_for(
        lambda e: (
            e.type == "#account"
            and e.did == bob.did
            and e.body["active"] is True
            and (e.seq or 0) > (deactivated.seq or 0)
        ),
        WAIT,
    )
    assert "status" not in reactivated.body
    status = await atp.check_account_status(bob)
    assert status["activated"] is True

    seqs: list[int] = [e.body["seq"] for e in firehose.events]
    assert all(isinstance(s, int) for s in seqs)
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


async def test_blob_upload_record_and_get_blob(atp: AtpClient, firehose: FirehoseRecorder) -> None:
    carol = await atp.create_account("carol")
    blob = await atp.upload_blob(carol, MP3_BYTES, "audio/mpeg")
    assert set(blob) == {"$type", "ref", "mimeType", "size"}
    assert blob["$type"] == "blob"
    assert blob["mimeType"] == "audio/mpeg"
    assert blob["size"] == len(MP3_BYTES)
    blob_cid = blob["ref"]["$link"]
    assert blob_cid.startswith("bafkrei")  # raw codec, sha-256

    # Until a record references it the blob is temporary and not served.
    early = await atp.get_blob(carol.did, blob_cid)
    assert early.status_code == 400
    assert early.json()["error"] == "InvalidRequest"

    uri, cid = await atp.create_record(carol, TRACK, track("With audio", audioBlob=blob))
    rkey = uri.rsplit("/", 1)[-1]
    stored = await atp.get_record(carol.did, TRACK, rkey)
    assert stored is not None
    assert stored["value"]["audioBlob"] == blob

    response = await atp.get_blob(carol.did, blob_cid)
    assert response.status_code == 200
    assert response.content == MP3_BYTES
    assert response.headers["content-type"] == "audio/mpeg"
    assert response.headers["content-length"] == str(len(MP3_BYTES))
    assert response.headers["cache-control"] == "private"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-disposition"] == f'attachment; filename="{blob_cid}"'
    assert "accept-ranges" not in response.headers

    # Range is ignored: still 200 with the whole body.
    ranged = await atp.get_blob(carol.did, blob_cid, headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 200
    assert ranged.content == MP3_BYTES
    assert "content-range" not in ranged.headers

    missing = await atp.get_blob(
        carol.did, "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    )
    assert missing.status_code == 400

    # In the firehose the record's blob ref is a CID link inside the CAR block.
    commit = await firehose.wait_for(
        lambda e: (
            e.type == "#commit"
            and e.did == carol.did
            and any(op["path"] == f"{TRACK}/{rkey}" for op in e.body["ops"])
        ),
        WAIT,
    )
    block = block_for(commit, cid)
    audio = block["audioBlob"]
    assert isinstance(audio, dict)
    assert cid_str(audio["ref"]) == blob_cid
    assert audio["mimeType"] == "audio/mpeg" and audio["size"] == len(MP3_BYTES)


async def test_account_deletion(
    harness_pds: LocalPds, atp: AtpClient, firehose: FirehoseRecorder
) -> None:
    dave = await atp.create_account("dave")
    erin = await atp.create_account("erin")
    await wait_account_created(firehose, dave)
    await wait_account_created(firehose, erin)
    await atp.create_record(dave, TRACK, track("Soon gone"))

    # Admin route.
    await atp.delete_account(dave)
    # User route: requestAccountDelete -> token (read from the PDS database) -> deleteAccount.
    await atp.request_account_delete(erin)
    token = harness_pds.email_token(erin.did, "delete_account")
    assert token
    await atp.delete_account_with_token(erin, token)

    for account in (dave, erin):
        deleted = await firehose.wait_for(event_of("#account", account.did, status="deleted"), WAIT)
        assert deleted.body["active"] is False
        with pytest.raises(XrpcError):
            await atp.get_latest_commit(account.did)
    assert {r["did"] for r in await atp.list_repos()}.isdisjoint({dave.did, erin.did})

    # The PDS drops a deleted account's earlier events from its sequencer: a replay from
    # cursor 0 only shows the final #account event for it.
    async with FirehoseRecorder(harness_pds.firehose_url, cursor=0) as replay:
        await replay.wait_for(
            lambda e: (
                e.type == "#account" and e.did == erin.did and e.body.get("status") == "deleted"
            ),
            WAIT,
        )
        for account in (dave, erin):
            kinds = [(e.type, e.body.get("status")) for e in replay.events if e.did == account.did]
            assert kinds == [("#account", "deleted")]


async def test_node_exits_when_parent_pipe_closes(tmp_path: Path) -> None:
    pds = await asyncio.to_thread(start_pds, tmp_path / "atp")
    try:
        assert pds._process.stdin is not None
        pds._process.stdin.close()  # what happens when the Python process dies
        code = await asyncio.to_thread(pds._process.wait, 20)
        assert code == 0
    finally:
        assert await asyncio.to_thread(pds.stop) == 0
    assert not pds.running


async def test_stop_is_idempotent(tmp_path: Path) -> None:
    with await asyncio.to_thread(start_pds, tmp_path / "atp") as pds:
        assert pds.startup_seconds < 60
    assert not pds.running
    assert pds.stop() == 0


def test_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "leftover").write_text("x")
    with pytest.raises(PdsStartError, match="not empty"):
        start_pds(busy)

    fake_atp = tmp_path / "atp"
    fake_atp.mkdir()
    (fake_atp / "start_pds.js").write_text("")
    monkeypatch.setattr(pds_module, "ATP_DIR", fake_atp)
    monkeypatch.setattr(pds_module, "START_SCRIPT", fake_atp / "start_pds.js")
    with pytest.raises(PdsStartError, match=r"npm ci --prefix tests/e2e/atp"):
        start_pds(tmp_path / "data")


def test_startup_failure_reports_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "atp"
    (broken / "node_modules" / "@atproto" / "dev-env").mkdir(parents=True)
    (broken / "node_modules" / "@atproto" / "dev-env" / "package.json").write_text("{}")
    (broken / "start_pds.js").write_text("console.error('boom: no network today'); process.exit(3)")
    monkeypatch.setattr(pds_module, "ATP_DIR", broken)
    monkeypatch.setattr(pds_module, "START_SCRIPT", broken / "start_pds.js")
    with pytest.raises(PdsStartError, match=r"(?s)exited with code 3.*boom: no network today"):
        start_pds(tmp_path / "data", timeout=30)


def test_startup_timeout_kills_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slow = tmp_path / "atp"
    (slow / "node_modules" / "@atproto" / "dev-env").mkdir(parents=True)
    (slow / "node_modules" / "@atproto" / "dev-env" / "package.json").write_text("{}")
    (slow / "start_pds.js").write_text(
        "console.error('warming up'); setInterval(() => {}, 1000); process.on('SIGTERM', () => {})"
    )
    monkeypatch.setattr(pds_module, "ATP_DIR", slow)
    monkeypatch.setattr(pds_module, "START_SCRIPT", slow / "start_pds.js")
    started: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def recording_popen(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        process: subprocess.Popen[bytes] = real_popen(*args, **kwargs)  # type: ignore[call-overload]
        started.append(process)
        return process

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    monkeypatch.setattr(pds_module, "DEFAULT_STOP_TIMEOUT", 1.0)  # SIGTERM is ignored above
    with pytest.raises(PdsStartError, match=r"(?s)did not print READY.*warming up"):
        start_pds(tmp_path / "data", timeout=2)
    assert len(started) == 1 and started[0].poll() is not None
