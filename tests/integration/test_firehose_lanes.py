"""One slow repo does not stall the firehose: other repos' events are published meanwhile.

The same h as ``test_firehose_verify`` (real PostgreSQL log, cursor and repo state,
the test relay serving frames and DID documents). The slow parts are what an attacker
controls: a DID document host (a ``did:web``; a remote server cannot be made slow for real
here, so the resolver waits for the test to release it) and a handle's server (a real
local HTTP server that never answers, so the lookup runs into its timeout).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from ingest.handles import INVALID_HANDLE, HandleVerifier
from kernel.envelope import Envelope
from kernel.fetch import UpstreamFetcher
from kernel.identity import DidDocument, DidResolver
from testkit.identity import tid
from testkit.records import post_record
from tests.appview_process import wait_until
from tests.integration import test_firehose_verify
from tests.integration.test_firehose_verify import Harness, track_ops

h = test_firehose_verify.h  # the same fixture

PROMPT = 1.0
"""Seconds within which other repos' events must be on the log while one repo waits."""


class HeldResolver(DidResolver):
    """Resolves as usual, but the documents of ``held`` wait until :attr:`release` is set."""

    def __init__(self, fetcher: UpstreamFetcher, plc_url: str, held: str) -> None:
        super().__init__(fetcher, plc_url)
        self.held = held
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    async def resolve(self, did: str, *, fresh: bool = False) -> DidDocument:
        if did == self.held:
            self.asked.set()
            await self.release.wait()
        return await super().resolve(did, fresh=fresh)


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """A local HTTP server that accepts requests and never answers them."""
    hung: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hung.append(writer)
        await reader.read(4096)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in hung:
            writer.close()
        server.close()


def fetcher(h: Harness) -> UpstreamFetcher:
    return UpstreamFetcher(client=h.http, trusted_hosts=frozenset({"127.0.0.1"}))


def titles(envelopes: list[Envelope], did: str) -> list[str]:
    return [e.record["title"] for e in envelopes if e.did == did and e.record]


async def published(h: Harness, did: str, count: int) -> list[Envelope]:
    async def enough() -> list[Envelope] | None:
        mine = [e for e in await h.envelopes() if e.did == did]
        return mine if len(mine) >= count else None

    return await wait_until(enough, timeout=20, what=f"{count} envelopes of {did}")


async def test_a_slow_did_document_holds_only_its_own_repo(h: Harness) -> None:
    slow, bob = h.repo(1), h.repo(2)
    await h.relay.add(slow.commit_frame(1, track_ops(1, "slow one")), 1)
    await h.relay.add(bob.commit_frame(2, track_ops(2, "bob one")), 2)
    await h.relay.add(slow.commit_frame(3, track_ops(3, "slow two")), 3)
    await h.relay.add(bob.commit_frame(4, track_ops(4, "bob two")), 4)
    resolver = HeldResolver(fetcher(h), h.relay.plc_url, slow.did)
    ingest = await h.start(resolver=resolver)

    await asyncio.wait_for(resolver.asked.wait(), 20)
    asked_at = time.monotonic()
    bobs = await published(h, bob.did, 3)  # first-sight identity, two records
    assert time.monotonic() - asked_at < PROMPT
    assert titles(bobs, bob.did) == ["bob one", "bob two"]
    assert [e for e in await h.envelopes() if e.did == slow.did] == []
    # The cursor never passes the unfinished event, however much after it is done.
    await ingest._save_cursor()
    assert (await h.cursor() or 0) < 1

    resolver.release.set()
    await h.until_cursor(4)
    mine = [e for e in await h.envelopes() if e.did == slow.did]
    assert [e.kind for e in mine] == ["identity.changed", "record.created", "record.created"]
    assert titles(mine, slow.did) == ["slow one", "slow two"]
    assert not ingest.stats.rejected


async def test_a_handle_server_that_never_answers_holds_only_its_own_repo(
    h: Harness, silent_server: str
) -> None:
    carol, bob = h.repo(1, "carol.silent.test"), h.repo(2)
    await h.relay.add(carol.commit_frame(1, track_ops(1, "carol one")), 1)
    await h.relay.add(bob.commit_frame(2, track_ops(2, "bob one")), 2)
    await h.relay.add(carol.commit_frame(3, track_ops(3, "carol two")), 3)
    await h.relay.add(bob.commit_frame(4, track_ops(4, "bob two")), 4)
    handles = HandleVerifier(
        fetcher(h),
        hosts=[("silent.test", silent_server), (".test", h.relay.plc_url)],
        timeout_s=3,
    )
    started = time.monotonic()
    ingest = await h.start(handles=handles)

    bobs = await published(h, bob.did, 3)
    waited = time.monotonic() - started
    assert titles(bobs, bob.did) == ["bob one", "bob two"]
    assert waited < 3  # not behind carol's lookup
    assert [e for e in await h.envelopes() if e.did == carol.did] == []
    await ingest._save_cursor()
    assert (await h.cursor() or 0) < 1

    await h.until_cursor(4)  # the lookup timed out: carol goes on, as handle.invalid
    mine = [e for e in await h.envelopes() if e.did == carol.did]
    assert [e.kind for e in mine] == ["identity.changed", "record.created", "record.created"]
    assert mine[0].handle == INVALID_HANDLE
    assert titles(mine, carol.did) == ["carol one", "carol two"]


async def test_a_repo_becoming_known_keeps_its_chain_while_it_waits(h: Harness) -> None:
    """Its next commit touches nothing we keep and would be skipped as an unknown repo's:
    it joins the repo's lane instead, so the commit after it still chains."""
    slow = h.repo(1)
    await h.relay.add(slow.commit_frame(1, track_ops(1, "one")), 1)
    post = [("create", f"app.bsky.feed.post/{tid(2)}", post_record(2))]
    await h.relay.add(slow.commit_frame(2, post), 2)
    await h.relay.add(slow.commit_frame(3, track_ops(3, "three")), 3)
    resolver = HeldResolver(fetcher(h), h.relay.plc_url, slow.did)
    ingest = await h.start(resolver=resolver)
    await asyncio.wait_for(resolver.asked.wait(), 20)
    await wait_until(  # the reader reads on: frames 2 and 3 reach the lane meanwhile
        lambda: asyncio.sleep(0, ingest.stats.events["commit"] >= 3), what="frames read"
    )
    resolver.release.set()
    await h.until_cursor(3)
    assert titles(await h.envelopes(), slow.did) == ["one", "three"]
    assert await ingest.states.desynchronized() == []
