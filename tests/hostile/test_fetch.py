"""Hostile URLs and DID documents through the guarded fetcher (:mod:`kernel.fetch`).

Names resolve through the fetcher's ``lookup`` hook (no real DNS); the network is an
``httpx.MockTransport`` that records every connection the fetcher makes. The invariant,
for every generated case: a connection is made only to a public address, and every
refusal is an :class:`~kernel.fetch.UpstreamRefused`.
"""

from __future__ import annotations

import ipaddress

import httpx
import pytest
from hypothesis import strategies as st

from kernel.fetch import UpstreamError, UpstreamFetcher, UpstreamRefused, is_public_address
from kernel.identity import ResolveError, parse_did_document, resolve_did
from tests.hostile.conftest import Tally, drive, examples

ENTRY = "kernel.fetch"
PUBLIC = "93.184.216.34"

NON_PUBLIC = [
    "127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
    "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::", "fe80::1",
    "fc00::1", "fd00:ec2::254", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe",
]  # fmt: skip
LITERAL_TRICKS = [
    "http://2130706433/", "http://0177.0.0.1/", "http://0x7f.0.0.1/", "http://127.1/",
    "http://[::ffff:7f00:1]/", "http://localhost/", "http://user:pw@example.test/",
    "file:///etc/passwd", "gopher://example.test/", "http:///path", "//example.test/x",
    "http://169.254.169.254.nip.io/", "http://[fd00:ec2::254]/latest/meta-data/",
]  # fmt: skip


class Net:
    """Names → addresses for the lookup hook; records where connections went."""

    def __init__(self) -> None:
        self.names: dict[str, list[str]] = {"public.test": [PUBLIC]}
        self.redirects: dict[str, str] = {}
        self.connections: list[str] = []

    async def lookup(self, host: str, port: int) -> list[str]:
        return self.names.get(host, ["127.0.0.1"] if host == "localhost" else [])

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.connections.append(request.url.host)
        target = self.redirects.get(request.url.path)
        if target is not None:
            return httpx.Response(302, headers={"location": target})
        return httpx.Response(200, stream=httpx.ByteStream(b"ok"))


@pytest.fixture
async def net() -> Net:
    return Net()


def fetcher_for(net: Net, client: httpx.AsyncClient) -> UpstreamFetcher:
    return UpstreamFetcher(client=client, lookup=net.lookup, timeout_s=5)


async def attempt(net: Net, tally: Tally, kind: str, url: str) -> str:
    async with httpx.AsyncClient(transport=httpx.MockTransport(net.handle)) as client:
        fetcher = fetcher_for(net, client)
        try:
            await fetcher.get_bytes(url, allow_trusted=True, limit=1000)
            outcome = "fetched"
        except UpstreamRefused:
            outcome = "refused"
        except UpstreamError as exc:  # e.g. a name with no addresses
            outcome = "failed: " + str(exc).split(":")[0][:30]
    for host in net.connections:
        address = host.strip("[]")
        assert is_public_address(address), f"{kind} {url}: connected to {address}"
    tally.note(ENTRY, f"{kind} → {outcome}")
    return outcome


def non_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not is_public_address(str(address))


addresses = st.sampled_from(NON_PUBLIC) | st.ip_addresses().map(str)


async def test_names_resolving_anywhere(net: Net, tally: Tally) -> None:
    async def case(spec: tuple[list[str], str]) -> None:
        resolved, how = spec
        net.connections.clear()
        net.names["evil.test"] = resolved
        if how == "direct":
            url, kind = "http://evil.test/x", "name resolving to"
        else:  # a public host redirecting to the name
            net.redirects["/go"] = "http://evil.test/x"
            url, kind = "http://public.test/go", "redirect to name resolving to"
        outcome = await attempt(net, tally, kind + " " + _class(resolved), url)
        if any(not is_public_address(a) for a in resolved):
            assert outcome == "refused", (resolved, outcome)

    spec = st.tuples(
        st.lists(addresses, min_size=1, max_size=3), st.sampled_from(["direct", "redirect"])
    )
    await drive(spec, case, max_examples=examples(1500))


def _class(resolved: list[str]) -> str:
    bad = [a for a in resolved if not is_public_address(a)]
    if not bad:
        return "public addresses"
    ip = ipaddress.ip_address(bad[0])
    for name in ("loopback", "link_local", "private", "multicast", "unspecified", "reserved"):
        if getattr(ip, name, False):
            return f"a {name.replace('_', '-')} address"
    return "a non-public address"


async def test_literal_and_scheme_tricks(net: Net, tally: Tally) -> None:
    for url in LITERAL_TRICKS + [f"http://{a if ':' not in a else f'[{a}]'}/" for a in NON_PUBLIC]:
        net.connections.clear()
        outcome = await attempt(net, tally, "corpus URL", url)
        assert outcome != "fetched", url
        net.redirects["/hop"] = url
        net.connections.clear()
        # (A relative Location such as ``http:///path`` stays on the public host: only the
        # no-connection-to-a-non-public-address invariant of ``attempt`` applies.)
        await attempt(net, tally, "redirect to corpus URL", "http://public.test/hop")


async def test_hostile_did_documents(net: Net, tally: Tally) -> None:
    """did:web on a private name is refused; a document naming a private PDS is refused
    by the pin every caller does before fetching from it."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(net.handle)) as client:
        fetcher = fetcher_for(net, client)
        for address in NON_PUBLIC:
            net.names["web.test"] = [address]
            with pytest.raises(ResolveError):
                await resolve_did(fetcher, "https://plc.test", "did:web:web.test")
            tally.note(ENTRY, "did:web on a non-public name → refused")
            host = f"[{address}]" if ":" in address else address
            doc = parse_did_document(
                "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa",
                {
                    "id": "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa",
                    "service": [
                        {
                            "id": "#atproto_pds",
                            "type": "AtprotoPersonalDataServer",
                            "serviceEndpoint": f"http://{host}:2583",
                        }
                    ],
                },
            )
            assert doc.pds_url is not None
            with pytest.raises(UpstreamRefused):
                await fetcher.pin(doc.pds_url, allow_trusted=True)
            tally.note(ENTRY, "DID document naming a non-public PDS → refused")
        for junk in (b"", b"[]", b"null", b'{"id": 1}', b"{" * 10_000):
            with pytest.raises(ResolveError):
                parse_did_document("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", junk)
            tally.note(ENTRY, "malformed DID document → ResolveError")
    assert all(is_public_address(h.strip("[]")) for h in net.connections)
