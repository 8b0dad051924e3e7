"""FirehoseIngest against the test relay: verification, bad input, chain, cursor, events.

Real PostgreSQL (log, cursor, repo state) and a real websocket server speaking the
``subscribeRepos`` protocol (``tests/firehose_server.py``), which also serves the DID
documents, so every commit here is signature-checked against a key the test controls.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import cbrrr
import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from ingest.commits import CollectionFilter
from ingest.firehose import FirehoseIngest
from ingest.frames import SyncEvent, decode_frame
from ingest.handles import INVALID_HANDLE, HandleVerifier
from ingest.metrics import IngestMetrics, render
from ingest.repos import RepoStates
from kernel.config import DEFAULT_COLLECTIONS
from kernel.db import open_pool
from kernel.envelope import Envelope
from kernel.fetch import UpstreamFetcher
from kernel.identity import DidResolver
from kernel.log import Position
from kernel.log.postgres import PostgresLog
from testkit.car import block, make_car
from testkit.firehose_server import FirehoseServer
from testkit.frames import account_frame, error_frame, frame, identity_frame, info_frame
from testkit.identity import FIXED_TIME, SigningKey, did_document, plc_did, tid
from testkit.records import post_record, track_record
from testkit.repos import SignedRepo, signed_commit
from tests.appview_process import wait_until

TOPIC = "plyr.repo"
KEEP = CollectionFilter.of(DEFAULT_COLLECTIONS)  # exact NSIDs, as configured by default
KEEP_KNOWN = CollectionFilter.of((*DEFAULT_COLLECTIONS, "app.bsky.actor.profile"))


@dataclass
class Harness:
    relay: FirehoseServer
    pool: AsyncConnectionPool
    log: PostgresLog
    http: httpx.AsyncClient
    metrics: IngestMetrics
    ingest: FirehoseIngest | None = None
    task: asyncio.Task[None] | None = None
    stop: asyncio.Event | None = None

    def repo(self, n: int, handle: str | None = None) -> SignedRepo:
        repo = SignedRepo(plc_did(n), records=20)
        self.publish_doc(repo, handle or f"user{n}.test")
        return repo

    def publish_doc(self, repo: SignedRepo, handle: str, *, resolves: bool = True) -> None:
        """The DID document claims ``handle``; with ``resolves`` the handle points back."""
        self.relay.docs[repo.did] = did_document(repo.did, repo.key, handle, "http://127.0.0.1:1")
        if resolves:
            self.relay.handles[handle] = repo.did

    async def start(
        self, *, resolver: DidResolver | None = None, handles: HandleVerifier | None = None
    ) -> FirehoseIngest:
        self.stop = asyncio.Event()
        fetcher = UpstreamFetcher(client=self.http, trusted_hosts=frozenset({"127.0.0.1"}))
        self.ingest = FirehoseIngest(
            url=self.relay.url,
            keep=KEEP,
            keep_known=KEEP_KNOWN,
            log=self.log,
            topic=TOPIC,
            pool=self.pool,
            plc_url=self.relay.plc_url,
            fetcher=fetcher,
            # The relay answers /.well-known/atproto-did for .test handles, as a PDS does.
            handles=handles or HandleVerifier(fetcher, hosts=[(".test", self.relay.plc_url)]),
            resolver=resolver,
            states=RepoStates(self.pool),
            stats=self.metrics.stats_for(
                f"firehose:127.0.0.1:{self.relay.url.split(':')[2].split('/')[0]}"
            ),
        )
        self.task = asyncio.create_task(self.ingest.run(self.stop))
        return self.ingest

    async def halt(self) -> None:
        assert self.stop is not None and self.task is not None
        self.stop.set()
        await asyncio.wait_for(self.task, 10)

    async def envelopes(self) -> list[Envelope]:
        out: list[Envelope] = []
        for partition in range(self.log.partitions(TOPIC)):
            for message in await self.log.read(TOPIC, partition, 0, max_messages=10_000, timeout=0):
                out.append(Envelope.from_bytes(message.value))
        return out

    async def cursor(self) -> int | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT cursor FROM ingest_cursor")
            row = await cur.fetchone()
        return int(row[0]) if row else None

    async def until_cursor(self, seq: int) -> None:
        async def reached() -> bool:
            return (await self.cursor() or 0) >= seq

        await wait_until(reached, timeout=20, what=f"cursor {seq}")


@pytest.fixture
async def h(pg_url: str) -> AsyncIterator[Harness]:
    pool = await open_pool(pg_url, max_size=8)
    log = PostgresLog(pool, partitions=2, topics=[TOPIC])
    await log.start()
    async with FirehoseServer() as relay, httpx.AsyncClient() as http:
        harness = Harness(relay, pool, log, http, IngestMetrics())
        try:
            yield harness
        finally:
            if harness.task is not None and not harness.task.done():
                await harness.halt()
            await log.close()
            await pool.close()


def track_ops(n: int, title: str = "Song") -> list[tuple[str, str, dict | None]]:
    return [("create", f"fm.plyr.track/{tid(n)}", track_record(title))]


def sync_frame(
    repo: SignedRepo,
    seq: int,
    *,
    data: cbrrr.CID | None = None,
    sign_with: SigningKey | None = None,
    blocks: bytes | None = None,
) -> bytes:
    """A ``#sync`` at the repo's next rev: its signed commit (MST root ``data``) in a CAR."""
    rev = repo.next_rev()
    cid, commit = signed_commit(
        repo.did, data or block({"sync": seq})[0], rev, sign_with or repo.key
    )
    car = make_car([cid], [(cid, commit)]) if blocks is None else blocks
    return frame(
        "#sync", {"seq": seq, "did": repo.did, "rev": rev, "blocks": car, "time": FIXED_TIME}
    )


async def test_forged_commit_is_rejected_and_later_good_ones_published(h: Harness) -> None:
    alice = h.repo(1)
    await h.relay.add(alice.commit_frame(1, track_ops(1, "first")), 1)
    # Signed by someone else's key: must be refused, even after re-resolving the DID.
    await h.relay.add(alice.commit_frame(2, track_ops(2, "forged"), sign_with=SigningKey()), 2)
    # A good commit after it, chaining onto the forged one's data (so it is not a chain break
    # for the relay either; our state never saw the forged data: the repo is desynchronized).
    await h.relay.add(alice.commit_frame(3, track_ops(3, "third")), 3)
    ingest = await h.start()
    await h.until_cursor(3)

    titles = [e.record["title"] for e in await h.envelopes() if e.record]
    assert titles == ["first", "third"]
    assert ingest.stats.rejected["bad_signature"] == 1
    assert ingest.stats.published == 3  # first sight identity + two tracks
    text = render(h.metrics.registry).decode()
    assert 'reason="bad_signature"' in text and "plyr_ingest_published_total" in text
    assert await ingest.states.desynchronized() == [alice.did]
    # What was published is remembered for later resync diffs; the forged record is not.
    async with h.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT rkey FROM repo_record WHERE did = %s ORDER BY rkey", (alice.did,)
        )
        assert [r[0] for r in await cur.fetchall()] == [tid(1), tid(3)]


async def test_ops_the_signed_mst_does_not_hold_are_rejected(h: Harness) -> None:
    """Each commit here is signed by the repo's key; only the ops are lies about its tree."""
    alice = h.repo(1)
    await h.relay.add(alice.commit_frame(1, track_ops(1, "one")), 1)
    elsewhere, _ = block(track_record("what the tree holds"))
    path = f"fm.plyr.track/{tid(2)}"
    await h.relay.add(alice.commit_frame(2, track_ops(2, "claimed"), mst={path: elsewhere}), 2)
    await h.relay.add(alice.commit_frame(3, track_ops(3, "pathless"), omit_path_node=True), 3)
    gone = f"fm.plyr.track/{tid(1)}"
    await h.relay.add(
        alice.commit_frame(
            4, [("delete", gone, None)], mst={gone: alice.entries[gone]}, every_node=True
        ),
        4,
    )
    await h.relay.add(alice.commit_frame(5, track_ops(5, "five")), 5)
    ingest = await h.start()
    await h.until_cursor(5)

    published = [(e.kind, e.rkey) for e in await h.envelopes() if e.collection]
    assert published == [("record.created", tid(1)), ("record.created", tid(5))]
    assert ingest.stats.rejected["mst_proof_mismatch"] == 2
    assert ingest.stats.rejected["mst_proof_missing"] == 1
    text = render(h.metrics.registry).decode()
    assert 'reason="mst_proof_mismatch"' in text
    async with h.pool.connection() as conn:
        cur = await conn.execute("SELECT rkey FROM repo_record WHERE did = %s", (alice.did,))
        assert sorted(r[0] for r in await cur.fetchall()) == [tid(1), tid(5)]


async def test_bad_input_is_counted_and_ingest_goes_on(h: Harness) -> None:
    alice = h.repo(1)
    good = alice.commit_frame(1, track_ops(1, "one"))
    await h.relay.add(b"\x00\x01garbage", None)
    await h.relay.add(good[:-40], None)  # truncated
    await h.relay.add(good + b"\x00" * (6 * 1024 * 1024), None)  # oversized frame
    await h.relay.add(b"\xa2atg#commitbop\x01" + b"\xff" * 50, None)  # commit header, junk body
    await h.relay.add(good, 1)
    # A record block missing from the CAR (the op names a CID the commit does not carry).
    await h.relay.add(alice.commit_frame(2, track_ops(2, "gone"), omit_record_blocks=True), 2)
    # A commit whose CAR has a block not matching its CID.
    bad = bytearray(alice.commit_frame(3, track_ops(3, "tampered")))
    bad[bad.index(b"tampered")] ^= 0x20
    await h.relay.add(bytes(bad), 3)
    await h.relay.add(alice.commit_frame(4, track_ops(4, "four")), 4)
    ingest = await h.start()
    await h.until_cursor(4)

    titles = [e.record["title"] for e in await h.envelopes() if e.record]
    assert titles == ["one", "four"]
    assert ingest.stats.rejected["undecodable"] == 3
    assert ingest.stats.rejected["oversized_frame"] == 1
    assert ingest.stats.rejected["bad_record"] == 1
    assert ingest.stats.rejected["bad_car"] == 1
    assert h.relay.connections == 1  # never disconnected over bad input


async def test_replayed_and_older_revs_are_dropped(h: Harness) -> None:
    alice = h.repo(1)
    first = alice.commit_frame(1, track_ops(1, "one"))
    second = alice.commit_frame(2, track_ops(2, "two"))
    await h.relay.add(first, 1)
    await h.relay.add(second, 2)
    await h.relay.add(first, 3)  # the same commit again (a relay replay)
    ingest = await h.start()
    await h.until_cursor(2)
    await wait_until(
        lambda: asyncio.sleep(0, ingest.stats.rejected["stale_rev"] >= 1), what="stale rev"
    )
    titles = [e.record["title"] for e in await h.envelopes() if e.record]
    assert titles == ["one", "two"]


async def test_broken_chain_marks_the_repo_desynchronized(h: Harness) -> None:
    alice = h.repo(1)
    bob = h.repo(2)
    await h.relay.add(alice.commit_frame(1, track_ops(1)), 1)
    await h.relay.add(bob.commit_frame(2, track_ops(2)), 2)
    alice.commit_frame(99, track_ops(99))  # a commit we never see: alice's chain breaks
    await h.relay.add(alice.commit_frame(3, track_ops(3, "after gap")), 3)
    await h.relay.add(bob.commit_frame(4, track_ops(4, "bob chained")), 4)
    # A known repo's commit outside our collections still moves its chain.
    await h.relay.add(
        bob.commit_frame(5, [("create", f"app.bsky.feed.post/{tid(5)}", post_record(5))]), 5
    )
    await h.relay.add(bob.commit_frame(6, track_ops(6, "bob again")), 6)
    ingest = await h.start()
    await h.until_cursor(6)
    assert await ingest.states.desynchronized() == [alice.did]
    titles = [e.record["title"] for e in await h.envelopes() if e.record]
    assert "after gap" in titles and "bob again" in titles  # verified, still published


async def test_key_rotation_is_followed_by_re_resolving(h: Harness) -> None:
    alice = h.repo(1)
    await h.relay.add(alice.commit_frame(1, track_ops(1, "old key")), 1)
    ingest = await h.start()
    await h.until_cursor(1)
    alice.key = SigningKey(curve="p256")  # rotated (and to the other curve)
    h.publish_doc(alice, "user1.test")
    await h.relay.add(alice.commit_frame(2, track_ops(2, "new key")), 2)
    await h.until_cursor(2)
    titles = [e.record["title"] for e in await h.envelopes() if e.record]
    assert titles == ["old key", "new key"]
    assert not ingest.stats.rejected


async def test_identity_and_account_events_of_known_repos_follow_their_records(
    h: Harness,
) -> None:
    alice = h.repo(1)
    stranger = plc_did(50)
    await h.relay.add(alice.commit_frame(1, track_ops(1)), 1)
    ingest = await h.start()
    await h.until_cursor(1)
    h.publish_doc(alice, "renamed.test")  # the #identity event says: the document changed
    await h.relay.add(identity_frame(2, alice.did, "renamed.test"), 2)
    await h.relay.add(identity_frame(3, stranger, "nobody.test"), 3)
    await h.relay.add(account_frame(4, alice.did, False, "deactivated"), 4)
    await h.relay.add(account_frame(5, stranger, False, "takendown"), 5)
    await h.relay.add(account_frame(6, alice.did, True), 6)
    await h.until_cursor(6)
    mine = [e for e in await h.envelopes() if e.did == alice.did]
    assert [e.kind for e in mine] == [
        "identity.changed",
        "record.created",
        "identity.changed",
        "account.changed",
        "account.changed",
    ]
    assert mine[0].handle == "user1.test" and mine[2].handle == "renamed.test"
    assert (mine[3].active, mine[3].status) == (False, "deactivated")
    assert (mine[4].active, mine[4].status) == (True, "active")
    assert all(e.did == alice.did for e in await h.envelopes())
    state = await ingest.states.get(alice.did)
    assert state is not None and (state.handle, state.account_status) == ("renamed.test", "active")


async def test_handles_are_published_only_once_they_resolve_back(h: Harness) -> None:
    """Verify ok, mismatch (the handle names another DID), unreachable, bad syntax, and a
    relay's ``#identity`` handle that the DID document does not claim."""
    ok, thief, gone, bad = h.repo(1), h.repo(2), h.repo(3), h.repo(4)
    h.relay.handles["victim.test"] = plc_did(99)  # the handle belongs to someone else
    h.publish_doc(thief, "victim.test", resolves=False)
    h.publish_doc(gone, "nowhere.test", resolves=False)  # the server knows no such handle
    h.publish_doc(bad, "-john.test", resolves=False)
    for seq, repo in enumerate((ok, thief, gone, bad), start=1):
        await h.relay.add(repo.commit_frame(seq, track_ops(seq)), seq)
    await h.relay.add(identity_frame(5, ok.did, "claimed-by-relay.test"), 5)
    ingest = await h.start()
    await h.until_cursor(5)
    handles = [(e.did, e.handle) for e in await h.envelopes() if e.kind == "identity.changed"]
    assert sorted(handles) == sorted(
        [
            (ok.did, "user1.test"),
            (thief.did, INVALID_HANDLE),
            (gone.did, INVALID_HANDLE),
            (bad.did, INVALID_HANDLE),
            (ok.did, "user1.test"),  # the document's handle, not the relay's say-so
        ]
    )
    state = await ingest.states.get(thief.did)
    assert state is not None and state.handle == INVALID_HANDLE


async def test_an_unreachable_handle_host_reads_as_invalid(h: Harness) -> None:
    """The handle's server does not answer at all (nothing listens): ``handle.invalid``."""
    alice = h.repo(1)
    await h.relay.add(alice.commit_frame(1, track_ops(1)), 1)
    h.stop = asyncio.Event()
    fetcher = UpstreamFetcher(client=h.http, trusted_hosts=frozenset({"127.0.0.1"}))
    h.ingest = FirehoseIngest(
        url=h.relay.url,
        keep=KEEP,
        log=h.log,
        topic=TOPIC,
        pool=h.pool,
        plc_url=h.relay.plc_url,
        fetcher=fetcher,
        handles=HandleVerifier(fetcher, hosts=[(".test", "http://127.0.0.1:9")], timeout_s=2),
    )
    h.task = asyncio.create_task(h.ingest.run(h.stop))
    await h.until_cursor(1)
    (identity,) = [e for e in await h.envelopes() if e.kind == "identity.changed"]
    assert identity.handle == INVALID_HANDLE


async def test_outdated_cursor_marks_every_repo_for_resync(h: Harness) -> None:
    alice, bob = h.repo(1), h.repo(2)
    await h.relay.add(alice.commit_frame(1, track_ops(1)), 1)
    await h.relay.add(bob.commit_frame(2, track_ops(2)), 2)
    await h.relay.add(info_frame("OutdatedCursor", "cursor too old"), None)
    await h.relay.add(alice.commit_frame(3, [("delete", f"fm.plyr.track/{tid(1)}", None)]), 3)
    carol = h.repo(3)
    await h.relay.add(carol.commit_frame(4, track_ops(4)), 4)
    await h.relay.add(sync_frame(carol, 5), 5)
    await h.relay.add(
        carol.commit_frame(6, [("create", f"fm.plyr.newthing/{tid(6)}", {"a": 1})]), 6
    )
    ingest = await h.start()
    await h.until_cursor(6)
    assert sorted(await ingest.states.desynchronized()) == sorted([alice.did, bob.did, carol.did])
    async with h.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT did, status_reason FROM repo_state WHERE status = 'desynchronized'"
        )
        reasons: dict[str, str] = dict(await cur.fetchall())
    assert reasons[alice.did] == "OutdatedCursor" and reasons[carol.did].startswith("#sync")
    assert ingest.stats.rejected["unknown_collection"] == 1
    assert ingest.stats.events["info"] == 1


async def test_sync_events_are_verified_before_they_cost_a_resync(h: Harness) -> None:
    alice, bob = h.repo(1), h.repo(2)
    await h.relay.add(alice.commit_frame(1, track_ops(1)), 1)
    await h.relay.add(bob.commit_frame(2, track_ops(2)), 2)
    # Forged (another key), then a CAR that is not one: refused and counted, no resync.
    await h.relay.add(sync_frame(alice, 3, sign_with=SigningKey()), 3)
    await h.relay.add(sync_frame(alice, 4, blocks=b"\x05junk"), 4)
    # Genuine, with the records we already hold (same MST root): only the rev moves.
    same = sync_frame(alice, 5, data=alice.data_cid)
    await h.relay.add(same, 5)
    # Genuine, with other records: bob must be resynced.
    await h.relay.add(sync_frame(bob, 6), 6)
    ingest = await h.start()
    await h.until_cursor(6)
    assert await ingest.states.desynchronized() == [bob.did]
    assert ingest.stats.rejected["bad_signature"] == 1
    assert ingest.stats.rejected["bad_car"] == 1
    state = await ingest.states.get(alice.did)
    synced = decode_frame(same)
    assert isinstance(synced, SyncEvent)
    assert state is not None and state.status == "active" and state.rev == synced.rev


async def test_error_frame_reconnects_with_the_cursor(h: Harness) -> None:
    alice = h.repo(1)
    await h.relay.add(alice.commit_frame(1, track_ops(1, "one")), 1)
    await h.relay.add(error_frame("ConsumerTooSlow", "slow"), None, once=True)
    ingest = await h.start()
    await h.until_cursor(1)
    await wait_until(
        lambda: asyncio.sleep(0, h.relay.connections >= 2), timeout=20, what="reconnect"
    )
    assert h.relay.cursors[:2] == [None, 1]
    assert ingest.stats.reconnects >= 1
    await h.relay.add(alice.commit_frame(2, track_ops(2, "two")), 2)
    await h.until_cursor(2)
    titles = [e.record["title"] for e in await h.envelopes() if e.record]
    assert titles == ["one", "two"]


async def test_backfilling_repo_envelopes_are_held_then_handed_over(h: Harness) -> None:
    alice = h.repo(1)
    await h.relay.add(alice.commit_frame(1, track_ops(1, "live one")), 1)
    ingest = await h.start()
    await h.until_cursor(1)
    await ingest.states.begin_backfill(alice.did)
    await h.relay.add(alice.commit_frame(2, track_ops(2, "held")), 2)
    await h.relay.add(account_frame(3, alice.did, False, "deactivated"), 3)
    await h.until_cursor(3)
    assert [e.record["title"] for e in await h.envelopes() if e.record] == ["live one"]
    assert await ingest.states.backfilling() == [alice.did]

    async def publish(batch: list[Envelope]) -> None:
        await h.log.append(TOPIC, [(e.key, e.to_bytes()) for e in batch])

    handed = await ingest.states.end_backfill(alice.did, "2222222222222", None, publish)
    assert [e.kind for e in handed] == ["record.created", "account.changed"]
    assert [e.record["title"] for e in await h.envelopes() if e.record] == ["live one", "held"]
    # Live again: the next commit chains onto the held one and is published directly.
    await h.relay.add(alice.commit_frame(4, track_ops(4, "after")), 4)
    await h.until_cursor(4)
    assert [e.record["title"] for e in await h.envelopes() if e.record][-1] == "after"
    assert await ingest.states.desynchronized() == []


async def test_unrelated_traffic_moves_the_cursor_without_publishing(h: Harness) -> None:
    others = [SignedRepo(plc_did(100 + i)) for i in range(5)]  # no DID docs: never resolved
    for seq in range(1, 51):
        repo = others[seq % 5]
        await h.relay.add(
            repo.commit_frame(
                seq, [("create", f"app.bsky.feed.post/{tid(seq)}", post_record(seq))]
            ),
            seq,
        )
    ingest = await h.start()
    await h.until_cursor(50)
    assert await h.envelopes() == []
    assert ingest.stats.events["commit"] == 50 and not ingest.stats.rejected
    assert ingest.resolver.resolutions == 0


async def test_status_lines_and_metrics_endpoint_show_cursor_lag_and_counters(h: Harness) -> None:
    from ingest.metrics import ingest_status, serve_metrics

    alice = h.repo(1)
    await h.relay.add(alice.commit_frame(1, track_ops(1)), 1)
    await h.relay.add(b"junk", None)
    await h.relay.add(alice.commit_frame(2, track_ops(2)), 2)
    await h.start()
    await h.until_cursor(2)

    async def counted() -> list[str] | None:
        lines = await ingest_status(h.pool)
        return lines if "undecodable=1" in lines[0] else None

    lines = await wait_until(counted, what="counters saved")
    assert "cursor=2" in lines[0] and "published=3" in lines[0] and "lag=" in lines[0]
    assert lines[-1] == "  repos: active=1"
    server = serve_metrics(h.metrics.registry, "127.0.0.1", 0)
    try:
        text = (await h.http.get(f"http://127.0.0.1:{server.port}/metrics")).text
    finally:
        server.close()
    assert "plyr_ingest_cursor{" in text and "plyr_ingest_lag_seconds{" in text
    assert 'plyr_ingest_rejected_total{reason="undecodable"' in text


async def test_cursor_never_passes_an_event_the_log_did_not_acknowledge(h: Harness) -> None:
    """The log refuses one append (fault injected around the real log): the cursor stays
    before that frame, the consumer reconnects from it, and the event is published."""
    from kernel.log import LogError

    real_append = h.log.append
    failures: list[int] = []

    async def flaky_append(topic: str, items: Sequence[tuple[bytes, bytes]]) -> list[Position]:
        if any(b'"title":"two"' in value for _, value in items) and not failures:
            failures.append(await h.cursor() or 0)
            raise LogError("injected: broker unavailable")
        return await real_append(topic, items)

    h.log.append = flaky_append  # type: ignore[method-assign]
    alice = h.repo(1)
    await h.relay.add(alice.commit_frame(1, track_ops(1, "one")), 1)
    await h.relay.add(alice.commit_frame(2, track_ops(2, "two")), 2)
    await h.relay.add(alice.commit_frame(3, track_ops(3, "three")), 3)
    ingest = await h.start()
    await h.until_cursor(3)
    assert failures == [1]  # when the append failed, the saved cursor was still 1
    assert h.relay.cursors[:2] == [None, 1]  # and the consumer came back from there
    titles = [e.record["title"] for e in await h.envelopes() if e.record]
    assert titles == ["one", "two", "three"]
    assert ingest.stats.reconnects == 1


async def test_a_first_run_saves_where_it_started_before_its_first_frame(h: Harness) -> None:
    """A consumer that never saved a cursor, killed while handling its first frame, resumes
    from just before that frame: not at the live tail, past the events in between."""
    real_append = h.log.append
    appending = asyncio.Event()

    async def hang(topic: str, items: Sequence[tuple[bytes, bytes]]) -> list[Position]:
        appending.set()
        await asyncio.Event().wait()  # never returns: the process dies here
        raise AssertionError("unreachable")

    h.log.append = hang  # type: ignore[method-assign]
    alice = h.repo(1)
    await h.relay.add(alice.commit_frame(7, track_ops(7, "first")), 7)
    await h.start()
    await asyncio.wait_for(appending.wait(), 10)
    assert await h.cursor() == 6  # saved before the frame was handled
    assert h.task is not None
    h.task.cancel()  # the kill: nothing of the frame reached the log
    with contextlib.suppress(asyncio.CancelledError):
        await h.task
    h.task = None
    assert await h.envelopes() == []

    h.log.append = real_append  # type: ignore[method-assign]
    await h.relay.add(alice.commit_frame(8, track_ops(8, "second")), 8)
    await h.start()
    await h.until_cursor(8)
    assert h.relay.cursors[-1] == 6
    titles = [e.record["title"] for e in await h.envelopes() if e.record]
    assert titles == ["first", "second"]


async def test_profiles_are_kept_only_for_repos_we_index(h: Harness) -> None:
    alice, bob = h.repo(1), h.repo(2)
    profile = {"$type": "app.bsky.actor.profile", "displayName": "Bob"}
    await h.relay.add(bob.commit_frame(1, [("create", "app.bsky.actor.profile/self", profile)]), 1)
    await h.relay.add(alice.commit_frame(2, track_ops(2, "song")), 2)
    await h.relay.add(
        alice.commit_frame(
            3, [("create", "app.bsky.actor.profile/self", {**profile, "displayName": "Alice"})]
        ),
        3,
    )
    await h.start()
    await h.until_cursor(3)
    published = [(e.did, e.collection) for e in await h.envelopes() if e.collection]
    assert published == [
        (alice.did, "fm.plyr.track"),
        (alice.did, "app.bsky.actor.profile"),
    ]
