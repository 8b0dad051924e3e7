"""Search ranking on a small corpus projected from records: typos, accents, punctuation,
CJK, prefix-as-you-type, plyr's tiers, lookups, and visibility."""

from __future__ import annotations

from typing import Any

import pytest

from api.search import search
from kernel.db import open_pool
from kernel.envelope import Envelope
from kernel.log import Message
from projectors.base import track_id
from projectors.moderation import ModerationProjector
from projectors.runner import apply_batch, load_offset
from projectors.search import SearchProjector
from testkit.records import track_record

OPERATOR = "did:plc:operatoroperatoroperator"
ARTISTS = {
    "did:plc:metallica000000000000000": ("metallica.test", "Metallica"),
    "did:plc:beyonce00000000000000000": ("beyonce.test", "Beyoncé"),
    "did:plc:acdc00000000000000000000": ("acdc.test", "AC/DC"),
    "did:plc:rem000000000000000000000": ("rem.test", "R.E.M."),
    "did:plc:sigurros0000000000000000": ("sigurros.test", "Sigur Rós"),
    "did:plc:utada0000000000000000000": ("utada.test", "宇多田ヒカル"),
    "did:plc:mixed0000000000000000000": ("mixed.test", "Various"),
}
TRACKS = [
    ("did:plc:metallica000000000000000", "t1", "Enter Sandman", "Metallica"),
    ("did:plc:metallica000000000000000", "t2", "Master of Puppets", "Master of Puppets"),
    ("did:plc:beyonce00000000000000000", "t1", "Halo", None),
    ("did:plc:acdc00000000000000000000", "t1", "Back in Black", "Back in Black"),
    ("did:plc:rem000000000000000000000", "t1", "Losing My Religion", None),
    ("did:plc:sigurros0000000000000000", "t1", "Hoppípolla", "Takk..."),
    ("did:plc:utada0000000000000000000", "t1", "千と千尋の神隠し", None),
    ("did:plc:mixed0000000000000000000", "t1", "Love", None),
    ("did:plc:mixed0000000000000000000", "t2", "Lovely Day", None),
    ("did:plc:mixed0000000000000000000", "t3", "Love Will Tear Us Apart", None),
    ("did:plc:mixed0000000000000000000", "t4", "Glove Box", None),
    ("did:plc:mixed0000000000000000000", "t5", "Metal Machine Music", None),
    ("did:plc:mixed0000000000000000000", "t6", "Saint Me", None),
    ("did:plc:mixed0000000000000000000", "t7", "Explicit Song", None),
]
CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
TOPIC_REPO = "plyr.repo"
TOPIC_LABELS = "plyr.labels"


def uri(did: str, rkey: str, collection: str = "fm.plyr.track") -> str:
    return f"at://{did}/{collection}/{rkey}"


def corpus() -> list[Envelope]:
    out: list[Envelope] = []
    for did, (handle, name) in ARTISTS.items():
        out.append(Envelope(kind="identity.changed", did=did, source="t", time="t", handle=handle))
        out.append(
            Envelope(
                kind="record.created",
                did=did,
                source="t",
                time="t",
                rev="3a0",
                collection="app.bsky.actor.profile",
                rkey="self",
                cid="bafyp",
                record={"$type": "app.bsky.actor.profile", "displayName": name},
            )
        )
    for i, (did, rkey, title, album) in enumerate(TRACKS):
        extra: dict[str, Any] = {"album": album} if album else {}
        if title == "Explicit Song":
            extra["labels"] = {
                "$type": "com.atproto.label.defs#selfLabels",
                "values": [{"val": "porn"}],
            }
        out.append(
            Envelope(
                kind="record.created",
                did=did,
                source="t",
                time="t",
                rev=f"3b{i:02d}",
                collection="fm.plyr.track",
                rkey=rkey,
                cid=f"bafy{i}",
                record=track_record(title, artist=ARTISTS[did][1], **extra),
            )
        )
    out.append(
        Envelope(
            kind="record.created",
            did="did:plc:mixed0000000000000000000",
            source="t",
            time="t",
            rev="3c00",
            collection="fm.plyr.list",
            rkey="p1",
            cid="bafyl",
            record={
                "$type": "fm.plyr.list",
                "name": "Road Trip Mix",
                "listType": "playlist",
                "items": [
                    {"subject": {"uri": uri("did:plc:acdc00000000000000000000", "t1"), "cid": CID}}
                ],
                "createdAt": "2026-11-02T00:00:00Z",
            },
        )
    )
    return out


async def project(pool: Any, projector: Any, topic: str, envelopes: list[Envelope]) -> None:
    offset = await load_offset(pool, projector.name, topic, 0)
    messages = [
        Message(topic, 0, offset + i, e.key, e.to_bytes(), 0) for i, e in enumerate(envelopes)
    ]
    await apply_batch(pool, projector, messages, offset)


def label(uri_: str, val: str, **extra: Any) -> Envelope:
    body = {"src": OPERATOR, "uri": uri_, "val": val, "cts": "2026-11-01T00:00:00Z", **extra}
    return Envelope(kind="label.applied", did=OPERATOR, source="t", time="t", label=body)


@pytest.fixture
async def pool(pg_url):
    p = await open_pool(pg_url)
    events = corpus()
    await project(p, SearchProjector(), TOPIC_REPO, events)
    await project(p, ModerationProjector([OPERATOR]), TOPIC_REPO, events)
    yield p
    await p.close()


async def run(pool, q: str, **kwargs: Any) -> dict[str, Any]:
    async with pool.connection() as conn:
        return await search(conn, q, **kwargs)


def titles(result: dict[str, Any], kind: str) -> list[str]:
    key = {"track": "title", "album": "title", "artist": "display_name", "playlist": "name"}
    return [r[key.get(kind, "name")] for r in result["results"] if r["type"] == kind]


@pytest.mark.parametrize(
    ("query", "kind", "expected"),
    [
        ("Metalica", "artist", "Metallica"),  # typo
        ("metallica", "artist", "Metallica"),
        ("beyonce", "artist", "Beyoncé"),  # accent-stripped
        ("Beyoncé", "artist", "Beyoncé"),
        ("AC/DC", "artist", "AC/DC"),  # punctuation, both ways
        ("acdc", "artist", "AC/DC"),
        ("ac/dc", "artist", "AC/DC"),
        ("R.E.M.", "artist", "R.E.M."),
        ("rem", "artist", "R.E.M."),
        ("sigur ros", "artist", "Sigur Rós"),
        ("Sigur Rós", "artist", "Sigur Rós"),
        ("hoppipolla", "track", "Hoppípolla"),
        ("千と千尋の神隠し", "track", "千と千尋の神隠し"),  # CJK exact
        ("千と千尋", "track", "千と千尋の神隠し"),  # CJK prefix
        ("尋の神隠", "track", "千と千尋の神隠し"),  # CJK substring (trigram index)
        ("宇多田", "artist", "宇多田ヒカル"),
        ("losing my relgion", "track", "Losing My Religion"),  # typo in a longer title
        ("master of puppets", "album", "Master of Puppets"),
        ("takk", "album", "Takk..."),
        ("road trip", "playlist", "Road Trip Mix"),
    ],
)
async def test_corpus_finds_the_expected_item_first(pool, query, kind, expected):
    result = await run(pool, query)
    found = titles(result, kind)
    assert found and found[0] == expected, result


async def test_exact_beats_longer_prefix_beats_substring(pool):
    result = await run(pool, "love", types={"tracks"})
    # exact, then prefixes (the whole word "love" before "lovely": plyr's word_similarity
    # tie-break inside a tier), then substrings
    assert titles(result, "track") == [
        "Love",
        "Love Will Tear Us Apart",
        "Lovely Day",
        "Glove Box",
    ]
    relevance = [r["relevance"] for r in result["results"]]
    assert relevance[0] == 5.0
    assert 3.0 <= relevance[2] < relevance[1] <= 4.0
    assert 1.5 <= relevance[3] < 2.5


async def test_two_letter_prefix_matches_word_starts(pool):
    result = await run(pool, "me")
    assert titles(result, "artist")[0] == "Metallica"
    tracks = titles(result, "track")
    # title prefix first, then a later word starting with "me"; never a mid-word "me"
    assert tracks[0] == "Metal Machine Music"
    assert "Saint Me" in tracks
    assert "Enter Sandman" not in tracks


async def test_prefix_as_you_type(pool):
    for typed in ("Ent", "Ente", "Enter", "Enter S", "Enter San"):
        assert titles(await run(pool, typed, types={"tracks"}), "track")[0] == "Enter Sandman"


async def test_results_are_grouped_by_type_with_counts_and_plyr_shapes(pool):
    result = await run(pool, "metallica")
    assert set(result["counts"]) == {"tracks", "artists", "albums", "tags", "playlists"}
    assert result["counts"]["artists"] == 1
    assert result["counts"]["albums"] == 1  # "Metallica" album of Enter Sandman
    assert result["counts"]["tags"] == 0
    relevances = [r["relevance"] for r in result["results"]]
    assert relevances == sorted(relevances, reverse=True)
    artist = next(r for r in result["results"] if r["type"] == "artist")
    assert artist == {
        "type": "artist",
        "did": "did:plc:metallica000000000000000",
        "handle": "metallica.test",
        "display_name": "Metallica",
        "avatar_url": None,
        "relevance": 5.0,
    }
    album = next(r for r in result["results"] if r["type"] == "album")
    assert set(album) == {
        "type", "id", "title", "slug", "artist_handle", "artist_display_name", "image_url",
        "relevance",
    }  # fmt: skip
    assert album["slug"] == "metallica" and album["artist_handle"] == "metallica.test"


async def test_type_filter_and_limit(pool):
    result = await run(pool, "love", types={"tracks"}, limit=2)
    assert result["counts"]["tracks"] == 2 and result["counts"]["artists"] == 0
    assert {r["type"] for r in result["results"]} == {"track"}


async def test_lookup_by_handle_did_and_at_uri(pool):
    by_handle = await run(pool, "metallica.test", types={"artists"})
    assert titles(by_handle, "artist") == ["Metallica"]
    assert by_handle["results"][0]["relevance"] == 5.0
    by_did = await run(pool, "did:plc:rem000000000000000000000")
    assert titles(by_did, "artist") == ["R.E.M."]
    track_uri = uri("did:plc:acdc00000000000000000000", "t1")
    by_uri = await run(pool, track_uri)
    assert by_uri["results"][0]["id"] == track_id(track_uri)
    by_handle_uri = await run(pool, "at://acdc.test/fm.plyr.track/t1".replace("t1", ""))
    assert by_handle_uri["results"] == []  # no rkey: not a track lookup
    by_authority = await run(pool, "at://acdc.test")
    assert titles(by_authority, "artist") == ["AC/DC"]


async def test_a_known_handle_is_a_lookup_else_text(pool):
    # every type asked: the handle's artist alone, as for a DID
    for q in ("metallica.test", "@Metallica.TEST"):
        result = await run(pool, q)
        assert [r["type"] for r in result["results"]] == ["artist"], q
        assert titles(result, "artist") == ["Metallica"]
    # handle-shaped but nobody's handle: an ordinary text query
    assert titles(await run(pool, "R.E.M"), "artist") == ["R.E.M."]
    assert titles(await run(pool, "metallica.tes"), "artist")[0] == "Metallica"


async def test_moderation_hides_from_search(pool):
    halo = uri("did:plc:beyonce00000000000000000", "t1")
    assert titles(await run(pool, "halo"), "track") == ["Halo"]
    await project(pool, ModerationProjector([OPERATOR]), TOPIC_LABELS, [label(halo, "!takedown")])
    assert titles(await run(pool, "halo"), "track") == []
    # copyright hides from search too
    sandman = uri("did:plc:metallica000000000000000", "t1")
    await project(
        pool,
        ModerationProjector([OPERATOR]),
        TOPIC_LABELS,
        [label(sandman, "copyright-violation")],
    )
    assert "Enter Sandman" not in titles(await run(pool, "enter sandman"), "track")


async def test_adult_self_label_hidden_unless_opted_in(pool):
    assert titles(await run(pool, "explicit song"), "track") == []
    opted_in = await run(pool, "explicit song", adult_ok=True)
    assert titles(opted_in, "track") == ["Explicit Song"]


async def test_inactive_accounts_are_hidden(pool):
    # catalog account status (artist table) ...
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO artist (did, account_status) VALUES (%s, 'takendown')",
            ("did:plc:acdc00000000000000000000",),
        )
    result = await run(pool, "back in black")
    assert titles(result, "track") == [] and titles(result, "album") == []
    assert titles(await run(pool, "acdc"), "artist") == []
    # ... and the moderation read model's own account status
    deactivated = Envelope(
        kind="account.changed",
        did="did:plc:rem000000000000000000000",
        source="t",
        time="t",
        active=False,
        status="deactivated",
    )
    await project(pool, ModerationProjector([OPERATOR]), TOPIC_REPO, [deactivated])
    assert titles(await run(pool, "rem"), "artist") == []
    assert titles(await run(pool, "losing my religion"), "track") == []
