"""Pure parts of search: record → document, query classification, SQL shape."""

from __future__ import annotations

import re

import pytest

from api.search import (
    TYPES,
    _compiled,
    _handle,
    _lookup_keys,
    _lookup_statement,
    _statement,
    _Terms,
    tag_id,
)
from kernel.envelope import Envelope
from projectors.base import InvalidEvent
from projectors.search import list_doc, track_doc
from testkit.records import track_record

DID = "did:plc:abcdefghijklmnopqrstuvwx"


def envelope(collection: str, record: dict) -> Envelope:
    return Envelope(
        kind="record.created",
        did=DID,
        source="t",
        time="t",
        rev="3l1",
        collection=collection,
        rkey="r1",
        cid="bafy",
        record=record,
    )


def test_track_doc_keeps_what_search_needs():
    doc = track_doc(
        envelope(
            "fm.plyr.track",
            track_record("Enter Sandman", album="  ", imageUrl="https://i/x.jpg", tags=["Metal"]),
        )
    )
    assert (doc.title, doc.album, doc.image_url, doc.tags) == (
        "Enter Sandman",
        None,  # a blank album is no album
        "https://i/x.jpg",
        ("metal",),
    )
    assert doc.uri == f"at://{DID}/fm.plyr.track/r1"


def test_invalid_track_is_an_invalid_event():
    with pytest.raises(InvalidEvent, match="title"):
        track_doc(envelope("fm.plyr.track", track_record("x" * 300)))


def test_list_doc():
    record = {
        "$type": "fm.plyr.list",
        "name": "Mix",
        "listType": "playlist",
        "items": [],
        "createdAt": "2026-11-01T00:00:00Z",
    }
    doc = list_doc(envelope("fm.plyr.list", record))
    assert (doc.name, doc.list_type, doc.item_count) == ("Mix", "playlist", 0)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("metallica", None),
        ("did:plc:abc", {"artists": ["did:plc:abc"]}),
        ("at://did:plc:abc", {"artists": ["did:plc:abc"]}),
        ("at://alice.test", {"artists": ["alice.test"]}),
        ("at://did:plc:abc/fm.plyr.track/3k", {"tracks": ["at://did:plc:abc/fm.plyr.track/3k"]}),
        (
            "at://did:plc:abc/fm.plyr.list/3k",
            {
                "playlists": ["at://did:plc:abc/fm.plyr.list/3k"],
                "albums_by_list": ["at://did:plc:abc/fm.plyr.list/3k"],
            },
        ),
        ("at://did:plc:abc/app.bsky.feed.post/3k", {}),
    ],
)
def test_lookup_keys(query, expected):
    assert _lookup_keys(query) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("alice.bsky.social", "alice.bsky.social"),
        (" @Alice.Test ", "Alice.Test"),
        ("r.e.m", "r.e.m"),  # handle-shaped: looked up, text search if nobody has it
        ("R.E.M.", None),  # a trailing dot is no handle
        ("alice", None),
        ("alice bsky.social", None),
        ("alice.123", None),  # the last label cannot start with a digit
        ("did:plc:abc", None),
    ],
)
def test_handle_shaped_queries(query, expected):
    assert _handle(query) == expected


def test_terms_patterns_escape_like_wildcards():
    params = _Terms("100%_a").params(5)
    assert params["prefix"] == "100\\%\\_a%"
    assert params["infix"] == "%100\\%\\_a%"
    assert params["word"] == "% 100\\%\\_a%"
    assert params["hi"] > params["lo"] and params["hi"].startswith(params["lo"])
    assert params["limit"] == 5
    assert _Terms("me").short and not _Terms("mee").short
    assert [_Terms(q).shape for q in ("m", "me", "mee")] == ["one", "short", "long"]


def test_statements_are_numbered_once_per_shape():
    sql, names = _compiled(TYPES, "long", False)
    assert "%(" not in sql and "%%" not in sql and "<% " in sql
    assert names[0] == "q" and "$1" in sql and f"${len(names)}" in sql
    assert set(names) == {"q", "prefix", "infix", "lo", "hi", "limit"}
    assert _compiled(TYPES, "long", False) is _compiled(TYPES, "long", False)
    assert "word" in _compiled(("tracks",), "short", False)[1]
    assert "infix" not in _compiled(("tracks",), "one", False)[1]


@pytest.mark.parametrize("kind", ["tracks", "artists", "albums", "playlists"])
def test_tiers_are_index_shaped(kind):
    long_sql = _statement((kind,), "long", False)
    short_sql = _statement((kind,), "short", False)
    for sql in (long_sql, short_sql):
        assert "~>=~ %(lo)s" in sql and "~<~ %(hi)s" in sql  # prefix as a btree range
        assert "plyr_hidden('search', false)" in sql  # moderation in every tier
        assert "inactive" in sql  # catalog account status
    assert "<%% " in long_sql and "LIKE %(infix)s" in long_sql  # fuzzy and substring tiers
    assert "<%%" not in short_sql and "%(infix)s" not in short_sql  # no trigram tiers
    assert "LIKE %(word)s" in short_sql  # word starts instead
    assert "adult" not in long_sql
    assert "plyr_hidden('search', true)" in _statement((kind,), "one", True)


def test_artist_tiers_have_one_index_branch_per_column():
    sql = _statement(("artists",), "long", False)
    for column in ("d.norm", "d.alt_norm"):
        assert f"%(q)s <%% {column} AND" in sql  # the fuzzy tier, per column
        assert f"{column} LIKE %(infix)s AND NOT" in sql  # the substring tier, per column
    # the handle branches leave out doc_type, so no btree scan of every artist competes
    assert "d.doc_type = 'artist' AND %(q)s <%% d.alt_norm" not in sql


def test_one_statement_for_every_type():
    sql = _statement(TYPES, "long", False)
    assert sql.count("AS MATERIALIZED (SELECT subject FROM plyr_hidden") == 1  # read once
    assert sql.count("UNION ALL") >= len(TYPES) - 1
    for index in range(len(TYPES)):
        assert f"SELECT {index} AS kind" in sql
    lookup = _lookup_statement(("artists", "tracks"), False)
    assert "%(k0)s" in lookup and "%(k1)s" in lookup


def test_tag_ids_are_stable_53_bit():
    assert tag_id("rock") == tag_id("rock") != tag_id("jazz")
    assert 0 <= tag_id("rock") < 2**53


def test_no_unbalanced_placeholders():
    sql = _statement(TYPES, "long", False)
    # every % is a psycopg placeholder or an escaped %%
    assert not re.search(r"%(?!\(\w+\)s|%)", sql.replace("%%", ""))
