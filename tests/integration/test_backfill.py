"""Backfill against a stand-in PDS + PLC (an ASGI app): discovery, verify, diff, retries,
giving up, and the gapless cut-over with live envelopes held by RepoStates.

The real PDS path is covered by ``tests/e2e/test_backfill_e2e.py``; this one injects the
failures a real PDS will not produce on demand (5xx, forged repos).
"""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ingest.backfill import Backfill, BackfillOptions
from ingest.commits import CollectionFilter
from ingest.discovery import DiscoveredRepo, discover_repos
from ingest.errors import BackfillError
from ingest.handles import HandleVerifier
from ingest.progress import BackfillProgress
from ingest.repos import RepoStates
from kernel.db import open_pool
from kernel.envelope import Envelope
from kernel.fetch import UpstreamFetcher
from kernel.identity import DidResolver
from kernel.log.postgres import PostgresLog
from testkit.identity import SigningKey, did_for, service_did_document, tid
from testkit.records import track_record
from testkit.repos import repo_car
from tests.appview_process import wait_until

TOPIC = "plyr.repo"
PDS = "http://pds.test"
TRUSTED = frozenset({"pds.test"})  # PLYR_TRUSTED_HOSTS: a PDS (and PLC) on the LAN


def guarded(http: httpx.AsyncClient, trusted: frozenset[str]) -> UpstreamFetcher:
    """The product's guarded fetcher over the in-process network, where every name is LAN."""

    async def lan(host: str, port: int) -> list[str]:
        return ["10.0.0.7"]

    return UpstreamFetcher(client=http, trusted_hosts=trusted, lookup=lan)


class FakeNetwork:
    """Repos (did → records, key, rev) served as a PDS and their DID documents as PLC."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, Any]] = {}
        self.failures: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.on_get_repo: Callable[[str], Any] | None = None

    def add(self, name: str, records: dict[str, dict[str, Any]], rev: int = 1, **kw: Any) -> str:
        did = did_for(name)
        self.repos[did] = {"records": records, "key": SigningKey(), "rev": rev, **kw}
        return did

    def app(self) -> Starlette:
        async def plc(request: Request) -> Response:
            did = request.path_params["did"]
            repo = self.repos.get(did)
            if repo is None:
                return JSONResponse({"message": "not found"}, 404)
            doc = service_did_document(
                did,
                handle=f"{did[-6:]}.test",
                pds_url=repo.get("pds", PDS),
                key=repo.get("doc_key", repo["key"]),
            )
            return JSONResponse(doc)

        async def atproto_did(request: Request) -> Response:
            # The PDS answers for its own handles (<last 6 of the DID>.test), by Host.
            host = request.headers.get("host", "")
            did = next((d for d in self.repos if f"{d[-6:]}.test" == host), None)
            if did is None:
                return Response("no such handle", 404)
            return Response(did, media_type="text/plain")

        async def get_repo(request: Request) -> Response:
            did = request.query_params["did"]
            self.calls[did] += 1
            if self.on_get_repo is not None:
                await self.on_get_repo(did)
            if self.failures[did] > 0:
                self.failures[did] -= 1
                return JSONResponse({"error": "InternalServerError"}, 500)
            repo = self.repos.get(did)
            if repo is None:
                return JSONResponse({"error": "RepoNotFound"}, 400)
            car = repo_car(did, repo["records"], repo["key"], rev=tid(repo["rev"]))
            return Response(car, media_type="application/vnd.ipld.car")

        async def list_repos(request: Request) -> Response:
            return JSONResponse({"repos": [{"did": d, "active": True} for d in self.repos]})

        async def by_collection(request: Request) -> Response:
            return JSONResponse({"error": "MethodNotImplemented"}, 501)

        return Starlette(
            routes=[
                Route("/xrpc/com.atproto.sync.getRepo", get_repo),
                Route("/xrpc/com.atproto.sync.listRepos", list_repos),
                Route("/xrpc/com.atproto.sync.listReposByCollection", by_collection),
                Route("/.well-known/atproto-did", atproto_did),
                Route("/{did}", plc),
            ]
        )


def tracks(*names: str) -> dict[str, dict[str, Any]]:
    return {f"fm.plyr.track/{n}": track_record(n) for n in names}


async def published(log: PostgresLog) -> list[Envelope]:
    out: list[tuple[int, int, Envelope]] = []
    for partition in range(log.partitions(TOPIC)):
        for msg in await log.read(TOPIC, partition, 0, max_messages=10_000, timeout=0):
            out.append((msg.timestamp_ms, msg.offset, Envelope.from_bytes(msg.value)))
    return [e for _, _, e in out]


def of(envelopes: list[Envelope], did: str) -> list[tuple[str, str | None]]:
    return [(e.kind, e.rkey) for e in envelopes if e.did == did]


@pytest.fixture
async def env(pg_url: str) -> AsyncIterator[dict[str, Any]]:
    pool = await open_pool(pg_url, max_size=10)
    log = PostgresLog(pool, partitions=1, topics=[TOPIC])
    await log.start()
    states = RepoStates(pool)
    await states.load()
    net = FakeNetwork()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=net.app()))
    fetcher = guarded(http, TRUSTED)
    backfill = Backfill(
        pool=pool,
        log=log,
        topic=TOPIC,
        keep=CollectionFilter.of(["fm.plyr.*"]),
        states=states,
        resolver=DidResolver(fetcher, PDS, failure_ttl=0.0),
        fetcher=fetcher,
        handles=HandleVerifier(fetcher, hosts=[(".test", PDS)]),
        options=BackfillOptions(attempts=3, backoff_base=0.01, backoff_cap=0.05),
    )
    try:
        yield {
            "pool": pool,
            "log": log,
            "states": states,
            "net": net,
            "backfill": backfill,
            "http": http,
            "fetcher": fetcher,
        }
    finally:
        await http.aclose()
        await log.close()
        await pool.close()


async def test_discover_backfill_retry_give_up_and_skip(env: dict[str, Any]) -> None:
    net: FakeNetwork = env["net"]
    alice = net.add("alice", {**tracks("a1", "a2"), "app.bsky.feed.post/p1": {"text": "x"}})
    carol = net.add("carol", {"app.bsky.feed.post/p1": {"text": "only bsky"}})
    flaky = net.add("flaky", tracks("f1"))
    net.failures[flaky] = 2
    forged = net.add("forged", tracks("x1"), doc_key=SigningKey())
    dead = net.add("dead", tracks("d1"))
    net.failures[dead] = 99

    found = await discover_repos(env["fetcher"], PDS, ["fm.plyr.track"])
    assert {r.did for r in found} == {alice, carol, flaky, forged, dead}
    assert all(r.probe for r in found)  # listRepos: probe before holding

    stream = io.StringIO()
    result = await env["backfill"].run(
        found, run_source="pds.test", progress=BackfillProgress(5, stream)
    )
    assert (result.done, result.failed, result.skipped, result.records) == (3, 2, 1, 3)
    assert result.errors == {"bad_signature": 1, "http_500": 1}
    log = await published(env["log"])
    assert of(log, alice) == [
        ("identity.changed", None),
        ("record.created", "a1"),
        ("record.created", "a2"),
    ]
    assert all(e.backfill for e in log)
    # Repos run in parallel: alice's identity is the first of hers, not of the whole log.
    assert next(e for e in log if e.did == alice).handle == f"{alice[-6:]}.test"
    assert of(log, flaky) == [("identity.changed", None), ("record.created", "f1")]
    assert of(log, carol) == of(log, forged) == of(log, dead) == []
    assert net.calls[flaky] == 4  # probe fails twice, probe, then the real fetch
    assert net.calls[dead] == 3

    states: RepoStates = env["states"]
    assert (await states.get(alice)).status == "active"  # type: ignore[union-attr]
    assert (await states.get(alice)).rev == tid(1)  # type: ignore[union-attr]
    assert await states.get(carol) is None  # nothing for us: not tracked
    async with env["pool"].connection() as conn:
        cur = await conn.execute("SELECT did, status FROM backfill_repo ORDER BY did")
        outcome = dict(await cur.fetchall())
        cur = await conn.execute("SELECT finished_at IS NOT NULL, done, failed FROM backfill_run")
        assert await cur.fetchone() == (True, 3, 2)
    assert outcome[carol] == "skipped" and outcome[dead] == "failed"
    assert outcome[forged] == "failed"
    assert "5 records" not in stream.getvalue() and "backfill progress" not in stream.getvalue()


async def test_a_rotated_key_is_looked_up_again_once(env: dict[str, Any]) -> None:
    """The backfill verifies with the firehose's verifier: a stale cached key is refreshed."""
    net: FakeNetwork = env["net"]
    erin = net.add("erin", tracks("e1"), doc_key=SigningKey())
    backfill: Backfill = env["backfill"]
    await backfill._resolver.resolve(erin)  # cache the old key
    del net.repos[erin]["doc_key"]  # the document now names the key that signed the repo
    result = await backfill.run([DiscoveredRepo(erin)])
    assert (result.done, result.failed, dict(result.errors)) == (1, 0, {})
    assert of(await published(env["log"]), erin) == [
        ("identity.changed", None),
        ("record.created", "e1"),
    ]


@pytest.mark.parametrize(
    "pds",
    [
        "http://127.0.0.1:2583",
        "http://169.254.169.254",
        "http://[::ffff:169.254.169.254]",
        "http://lan-pds.test",  # a name that resolves to a private address
    ],
)
async def test_a_did_document_cannot_aim_backfill_at_our_network(
    env: dict[str, Any], pds: str
) -> None:
    net: FakeNetwork = env["net"]
    eve = net.add("eve", tracks("e1"), pds=pds)
    result = await env["backfill"].run([DiscoveredRepo(eve)])
    assert (result.done, result.failed, dict(result.errors)) == (0, 1, {"refused": 1})
    assert net.calls[eve] == 0  # refused before any request
    assert of(await published(env["log"]), eve) == []
    async with env["pool"].connection() as conn:
        cur = await conn.execute("SELECT status FROM backfill_repo WHERE did = %s", (eve,))
        assert await cur.fetchone() == ("failed",)


async def test_a_trusted_host_may_be_private(env: dict[str, Any]) -> None:
    net: FakeNetwork = env["net"]
    fay = net.add("fay", tracks("f1"), pds="http://127.0.0.1:2583")
    fetcher = guarded(env["http"], TRUSTED | {"127.0.0.1"})
    backfill = Backfill(
        pool=env["pool"],
        log=env["log"],
        topic=TOPIC,
        keep=CollectionFilter.of(["fm.plyr.*"]),
        states=env["states"],
        resolver=DidResolver(fetcher, PDS),
        fetcher=fetcher,
    )
    result = await backfill.run([DiscoveredRepo(fay)])
    assert (result.done, result.failed) == (1, 0)
    assert net.calls[fay] == 1
    assert of(await published(env["log"]), fay) == [
        ("identity.changed", None),
        ("record.created", "f1"),
    ]


async def test_resync_diffs_against_published_records(env: dict[str, Any]) -> None:
    net: FakeNetwork = env["net"]
    bob = net.add("bob", tracks("b1", "b2", "b3"))
    backfill: Backfill = env["backfill"]
    await backfill.run([DiscoveredRepo(bob)])
    repo = net.repos[bob]
    repo["records"] = {
        **tracks("b1"),  # unchanged
        "fm.plyr.track/b2": track_record("b2 renamed"),  # updated
        **tracks("b4"),  # created; b3 deleted
    }
    repo["rev"] = 2
    before = len(await published(env["log"]))
    result = await backfill.run([DiscoveredRepo(bob)])
    assert result.records == 3
    new = (await published(env["log"]))[before:]
    assert of(new, bob) == [
        ("identity.changed", None),
        ("record.updated", "b2"),
        ("record.created", "b4"),
        ("record.deleted", "b3"),
    ]
    assert {e.rev for e in new} == {tid(2)}
    async with env["pool"].connection() as conn:
        cur = await conn.execute(
            "SELECT rkey FROM repo_record WHERE did = %s ORDER BY rkey", (bob,)
        )
        assert [r[0] for r in await cur.fetchall()] == ["b1", "b2", "b4"]


async def test_cut_over_publishes_held_live_events_newer_than_the_backfill(env: dict[str, Any]):
    net: FakeNetwork = env["net"]
    states: RepoStates = env["states"]
    dan = net.add("dan", tracks("d1"), rev=5)

    def live(rkey: str, rev: int) -> Envelope:
        return Envelope(
            kind="record.created",
            did=dan,
            source="firehose:x",
            time="t",
            rev=tid(rev),
            collection="fm.plyr.track",
            rkey=rkey,
            cid="bafy",
            record=track_record(rkey),
        )

    async def while_fetching(did: str) -> None:
        # The firehose sees commits while getRepo runs: one already in the snapshot
        # (rev 4), one after it (rev 6).
        assert states.is_backfilling(did)
        states.hold(did, [live("old", 4)], tid(4), None)
        states.hold(did, [live("new", 6)], tid(6), None)

    net.on_get_repo = while_fetching
    await env["backfill"].run([DiscoveredRepo(dan)])
    assert of(await published(env["log"]), dan) == [
        ("identity.changed", None),
        ("record.created", "d1"),
        ("record.created", "new"),
    ]
    assert not states.is_backfilling(dan)
    assert (await states.get(dan)).rev == tid(6)  # type: ignore[union-attr]
    async with env["pool"].connection() as conn:
        cur = await conn.execute(
            "SELECT rkey FROM repo_record WHERE did = %s ORDER BY rkey", (dan,)
        )
        assert [r[0] for r in await cur.fetchall()] == ["d1", "new"]


async def test_resync_loop_picks_up_desynchronized_repos(env: dict[str, Any]) -> None:
    import asyncio

    net: FakeNetwork = env["net"]
    states: RepoStates = env["states"]
    eve = net.add("eve", tracks("e1"))
    await states.set_status(eve, "desynchronized", "test")
    stop = asyncio.Event()
    task = asyncio.create_task(env["backfill"].resync_forever(stop))
    from tests.appview_process import wait_until

    async def synced() -> bool:
        state = await states.get(eve)
        return state is not None and state.status == "active"

    await wait_until(synced, what="resynced", timeout=10)
    stop.set()
    await task
    assert of(await published(env["log"]), eve)[-1] == ("record.created", "e1")


async def test_a_repo_first_seen_live_gets_its_earlier_profile_from_the_signed_repo(
    env: dict[str, Any],
) -> None:
    """The firehose marks a repo it sees for the first time; the resync worker reads the
    profile written before (a record kept only for known repos) from ``getRepo``, verified,
    and publishes it as an ordinary record event; the mark is cleared. The tracks are left
    to the live stream (their revs stay their commits'), and the repo's rev does not move."""
    net: FakeNetwork = env["net"]
    profile = {"$type": "app.bsky.actor.profile", "displayName": "Early Bird"}
    gil = net.add("gil", {"app.bsky.actor.profile/self": profile, **tracks("g1")}, rev=7)
    states: RepoStates = env["states"]
    await states.advance(gil, tid(3), None)  # the live stream published its first track
    await states.mark_first_sight(gil)
    assert await states.first_sighted() == [gil]
    fetcher = guarded(env["http"], TRUSTED)
    backfill = Backfill(
        pool=env["pool"],
        log=env["log"],
        topic=TOPIC,
        keep=CollectionFilter.of(["fm.plyr.*"]),
        keep_known=CollectionFilter.of(["fm.plyr.*", "app.bsky.actor.profile"]),
        states=states,
        resolver=DidResolver(fetcher, PDS),
        fetcher=fetcher,
        handles=HandleVerifier(fetcher, hosts=[(".test", PDS)]),
        options=BackfillOptions(resync_interval=0.05),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(backfill.resync_forever(stop))

    async def profile_published() -> list[Envelope] | None:
        found = [e for e in await published(env["log"]) if e.did == gil]
        return found if any(e.collection == "app.bsky.actor.profile" for e in found) else None

    try:
        log = await wait_until(profile_published, what="the earlier profile")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    (event,) = log
    assert (event.kind, event.collection, event.rkey) == (
        "record.created",
        "app.bsky.actor.profile",
        "self",
    )
    assert event.backfill and event.rev == tid(7)  # proven by the signed commit at rev 7
    assert event.record is not None and event.record["displayName"] == "Early Bird"
    assert await states.first_sighted() == []
    state = await states.get(gil)
    assert state is not None and (state.rev, state.status) == (tid(3), "active")


async def test_earlier_records_of_a_forged_repo_are_not_published(env: dict[str, Any]) -> None:
    net: FakeNetwork = env["net"]
    profile = {"$type": "app.bsky.actor.profile", "displayName": "Mallory"}
    mal = net.add("mal", {"app.bsky.actor.profile/self": profile}, doc_key=SigningKey())
    fetcher = guarded(env["http"], TRUSTED)
    backfill = Backfill(
        pool=env["pool"],
        log=env["log"],
        topic=TOPIC,
        keep=CollectionFilter.of(["fm.plyr.*"]),
        keep_known=CollectionFilter.of(["fm.plyr.*", "app.bsky.actor.profile"]),
        states=env["states"],
        resolver=DidResolver(fetcher, PDS),
        fetcher=fetcher,
    )
    with pytest.raises(BackfillError) as caught:
        await backfill.read_earlier(mal)
    assert caught.value.reason == "bad_signature"
    assert of(await published(env["log"]), mal) == []
