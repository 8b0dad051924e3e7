"""Handle syntax, the resolution answers, and the verifier's cache (no network: DNS through
the fetcher's TXT seam, HTTP through an in-memory transport)."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from ingest.handles import (
    INVALID_HANDLE,
    HandleVerifier,
    did_from_txt,
    did_from_well_known,
    normalize_handle,
)
from kernel.config import ConfigError, load_settings
from kernel.fetch import UpstreamError, UpstreamFetcher

ALICE = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
BOB = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("alice.test", "alice.test"),
        ("Alice.Bsky.Social", "alice.bsky.social"),
        ("xn--ls8h.test", "xn--ls8h.test"),
        ("a.b-c.d9", "a.b-c.d9"),
        ("jo@hn.test", None),
        ("-john.test", None),
        ("john-.test", None),
        ("did:thing", None),
        ("john", None),
        ("john.test.", None),
        ("john..test", None),
        ("john.123", None),  # the TLD may not start with a digit
        ("john.invalid", None),  # reserved TLDs never resolve
        ("handle.invalid", None),
        ("john.local", None),
        ("john.onion", None),
        ("a" * 64 + ".test", None),  # a label of more than 63
        (".".join(["a" * 60] * 5), None),  # more than 253 in all
        ("", None),
        (None, None),
    ],
)
def test_handle_syntax(value: str | None, expected: str | None) -> None:
    assert normalize_handle(value) == expected


def test_txt_answers() -> None:
    assert did_from_txt([f"did={ALICE}"]) == ALICE
    assert did_from_txt(["v=spf1 -all", f" did={ALICE} "]) == ALICE
    assert did_from_txt([f"did={ALICE}", f"did={ALICE}"]) == ALICE
    assert did_from_txt([f"did={ALICE}", f"did={BOB}"]) is None  # ambiguous
    assert did_from_txt([]) is None
    assert did_from_txt(["did=not a did"]) is None


def test_well_known_answers() -> None:
    assert did_from_well_known(f"{ALICE}\n".encode()) == ALICE
    assert did_from_well_known(b"<html>hello</html>") is None
    assert did_from_well_known(b"\xff\xfe") is None
    assert did_from_well_known(b"") is None


class Net:
    """DNS TXT and HTTPS answers by name, counting the questions."""

    def __init__(self) -> None:
        self.txt: dict[str, list[str]] = {}
        self.web: dict[str, str] = {}
        self.asked: Counter[str] = Counter()
        self.hosts_seen: list[tuple[str, str]] = []

    async def txt_lookup(self, name: str) -> list[str]:
        self.asked[name] += 1
        await asyncio.sleep(0)
        if name == "_atproto.broken-dns.test":
            raise UpstreamError("SERVFAIL")
        return self.txt.get(name, [])

    async def lookup(self, host: str, port: int) -> list[str]:
        return ["93.184.216.34"]  # every name is public here

    def handler(self, request: httpx.Request) -> httpx.Response:
        host = request.headers["host"]
        self.asked[f"https://{host}"] += 1
        self.hosts_seen.append((request.url.host, host))
        body = self.web.get(host)
        if not body:
            return httpx.Response(404, stream=httpx.ByteStream(b"not found"))
        return httpx.Response(200, stream=httpx.ByteStream(body.encode()))

    def verifier(self, **kw: object) -> HandleVerifier:
        client = httpx.AsyncClient(transport=httpx.MockTransport(self.handler))
        fetcher = UpstreamFetcher(
            client=client,
            trusted_hosts=frozenset({"pds.lan"}),
            lookup=self.lookup,
            txt_lookup=self.txt_lookup,
        )
        return HandleVerifier(fetcher, **kw)  # type: ignore[arg-type]


async def test_dns_first_then_https_and_mismatch_is_invalid() -> None:
    net = Net()
    net.txt["_atproto.dns.test"] = [f"did={ALICE}"]
    net.web["web.test"] = ALICE
    net.web["thief.test"] = BOB
    v = net.verifier()
    assert await v.verify(ALICE, "DNS.test") == "dns.test"
    assert net.asked["https://dns.test"] == 0  # TXT answered: no HTTPS asked
    assert await v.verify(ALICE, "web.test") == "web.test"
    assert await v.verify(ALICE, "thief.test") == INVALID_HANDLE  # points at bob
    assert await v.verify(ALICE, "nobody.test") == INVALID_HANDLE
    assert await v.verify(ALICE, "broken-dns.test") == INVALID_HANDLE  # DNS fails, no HTTPS
    assert await v.verify(ALICE, "jo@hn.test") == INVALID_HANDLE
    assert await v.verify(ALICE, None) == INVALID_HANDLE
    assert "_atproto.jo@hn.test" not in net.asked  # bad syntax is never looked up


async def test_results_are_cached_for_their_ttl_and_fresh_asks_again() -> None:
    net = Net()
    net.web["web.test"] = ALICE
    v = net.verifier(ttl=3600, failure_ttl=3600, min_refresh=0)
    for _ in range(3):
        assert await v.verify(ALICE, "web.test") == "web.test"
        assert await v.verify(ALICE, "nobody.test") == INVALID_HANDLE  # failures cached too
    assert (net.asked["https://web.test"], net.asked["https://nobody.test"]) == (1, 1)
    net.web["web.test"] = BOB  # the handle moved
    assert await v.verify(ALICE, "web.test") == "web.test"  # cached
    assert await v.verify(ALICE, "web.test", fresh=True) == INVALID_HANDLE  # an #identity
    assert net.asked["https://web.test"] == 2
    burst = net.verifier(min_refresh=3600)  # a burst of #identity events: one lookup
    for _ in range(3):
        await burst.verify(ALICE, "web.test", fresh=True)
    assert burst.lookups == 1
    # A handle that failed (its account was deactivated) is asked again by the #identity of
    # the reactivation, however soon it comes.
    assert await burst.verify(BOB, "back.test", fresh=True) == INVALID_HANDLE
    net.web["back.test"] = BOB
    assert await burst.verify(BOB, "back.test", fresh=True) == "back.test"
    assert await burst.verify(BOB, "back.test") == "back.test"
    assert net.asked["https://back.test"] == 2
    expired = net.verifier(ttl=0, failure_ttl=0)
    await expired.verify(ALICE, "nobody.test")
    await expired.verify(ALICE, "nobody.test")
    assert net.asked["https://nobody.test"] == 3


async def test_one_lookup_in_flight_per_handle() -> None:
    net = Net()
    net.web["web.test"] = ALICE
    v = net.verifier()
    results = await asyncio.gather(*(v.verify(ALICE, "web.test") for _ in range(5)))
    assert results == ["web.test"] * 5
    assert v.lookups == 1 and net.asked["https://web.test"] == 1


async def test_a_trusted_server_answers_for_its_suffix_with_the_handle_as_host() -> None:
    net = Net()
    net.web["alice.lan.test"] = ALICE
    v = net.verifier(hosts=[(".lan.test", "http://pds.lan:2583")])
    assert await v.verify(ALICE, "alice.lan.test") == "alice.lan.test"
    assert net.hosts_seen == [("93.184.216.34", "alice.lan.test")]
    assert "_atproto.alice.lan.test" not in net.asked  # no DNS for such handles


async def test_a_handle_aimed_at_our_network_is_refused() -> None:
    """``https://<handle>/`` is address-checked: a handle resolving to loopback is not asked."""
    net = Net()
    net.web["evil.test"] = ALICE

    async def loopback(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    net.lookup = loopback  # type: ignore[method-assign]
    v = net.verifier()
    assert await v.verify(ALICE, "evil.test") == INVALID_HANDLE
    assert net.asked["https://evil.test"] == 0


def test_handle_hosts_setting() -> None:
    settings = load_settings(
        {"PLYR_HANDLE_HOSTS": ".test=http://localhost:2583/, .lan=https://pds"}
    )
    assert settings.handle_hosts == ((".test", "http://localhost:2583"), (".lan", "https://pds"))
    assert load_settings({}).handle_hosts == ()
    with pytest.raises(ConfigError):
        load_settings({"PLYR_HANDLE_HOSTS": "test=http://localhost"})
    with pytest.raises(ConfigError):
        load_settings({"PLYR_HANDLE_HOSTS": ".test=ftp://localhost"})


async def test_a_caller_cancelled_mid_lookup_leaves_the_others_their_answer() -> None:
    """The backfill worker waits on the same lookup as a repo's lane: a cancelled lane
    must neither cancel its wait nor leave it hanging."""
    net = Net()
    net.web["slow.test"] = ALICE
    opened = asyncio.Event()
    v = net.verifier()
    real_lookup = v._lookup

    async def slow_lookup(handle: str) -> str | None:
        await opened.wait()
        return await real_lookup(handle)

    v._lookup = slow_lookup  # type: ignore[method-assign]
    first = asyncio.create_task(v.verify(ALICE, "slow.test"))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(v.verify(ALICE, "slow.test"))
    await asyncio.sleep(0.01)
    first.cancel()
    opened.set()
    assert await asyncio.wait_for(second, 2) == "slow.test"
    assert v.lookups == 1
