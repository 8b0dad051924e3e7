"""deps: the remembered base URL is the one Starlette derives from the request."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from starlette.requests import Request

from api.deps import reader_for


def scope(app: Any, headers: list[tuple[bytes, bytes]], **extra: Any) -> dict[str, Any]:
    return {
        "type": "http", "method": "GET", "path": "/tracks/1", "query_string": b"",
        "scheme": "http", "server": ("127.0.0.1", 8000), "root_path": "", "headers": headers,
        "app": app, **extra,
    }  # fmt: skip


SCOPES: list[tuple[list[tuple[bytes, bytes]], dict[str, Any]]] = [
    ([(b"host", b"api.example")], {}),
    ([(b"host", b"api.example:8443")], {"scheme": "https"}),
    ([(b"host", b"bad host:xx")], {}),  # invalid: Starlette falls back to the server
    ([(b"accept", b"*/*")], {}),  # no Host at all
    ([], {"server": ("::1", 80)}),
    ([(b"host", b"api.example")], {"root_path": "/v1"}),
    ([(b"host", b"api.example")], {"server": ["127.0.0.1", 80]}),  # a list, as some servers
    ([(b"host", b"other.example"), (b"host", b"api.example")], {}),
]


def test_base_url_is_starlettes_for_every_scope_and_stays_bounded():
    app = SimpleNamespace(state=SimpleNamespace(pool=None, public_url=None))
    for _ in range(2):  # the second round from what was remembered
        for headers, extra in SCOPES:
            s = scope(app, headers, **extra)
            expected = str(Request(s).base_url).rstrip("/")
            assert reader_for(Request(s)).api_base == expected, (headers, extra)
    for i in range(600):  # every Host a client may send: the memo does not grow past bound
        reader_for(Request(scope(app, [(b"host", f"h{i}.example".encode())])))
    assert len(app.state.base_urls) <= 256


def test_public_url_wins():
    app = SimpleNamespace(state=SimpleNamespace(pool=None, public_url="https://plyr.example"))
    assert reader_for(Request(scope(app, [(b"host", b"x")]))).api_base == "https://plyr.example"
