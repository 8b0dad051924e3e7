"""The search projector through the generic runner: the required projector cases,
derived albums, playlists, artists and tags, on a real PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from kernel.envelope import Envelope, Kind
from kernel.log import Message
from projectors.base import OffsetConflict
from projectors.runner import apply_batch, load_offset
from projectors.search import SearchProjector
from testkit.records import track_record

DID = "did:plc:abcdefghijklmnopqrstuvwx"
OTHER = "did:plc:zzzzzzzzzzzzzzzzzzzzzzzz"
TOPIC = "plyr.repo"
CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"


def track(
    kind: Kind, rkey: str = "t1", rev: str = "3l1", did: str = DID, **record: Any
) -> Envelope:
    title = record.pop("title", "Song")
    return Envelope(
        kind=kind,
        did=did,
        source="test",
        time="t",
        rev=rev,
        collection="fm.plyr.track",
        rkey=rkey,
        cid=f"bafy{rev}",
        record=None if kind == "record.deleted" else track_record(title, **record),
    )


def lst(kind: Kind, rkey: str, rev: str, name: str | None, list_type: str, items: int = 1):
    record = {
        "$type": "fm.plyr.list",
        "listType": list_type,
        "items": [
            {"subject": {"uri": f"at://{DID}/fm.plyr.track/t{i}", "cid": CID}} for i in range(items)
        ],
        "createdAt": "2026-11-01T00:00:00Z",
    }
    if name is not None:
        record["name"] = name
    return Envelope(
        kind=kind,
        did=DID,
        source="test",
        time="t",
        rev=rev,
        collection="fm.plyr.list",
        rkey=rkey,
        cid=f"bafy{rev}",
        record=None if kind == "record.deleted" else record,
    )


def profile(rev: str, name: str | None, did: str = DID) -> Envelope:
    record: dict[str, Any] = {"$type": "app.bsky.actor.profile"}
    if name is not None:
        record["displayName"] = name
    return Envelope(
        kind="record.updated",
        did=did,
        source="t",
        time="t",
        rev=rev,
        collection="app.bsky.actor.profile",
        rkey="self",
        cid="bafyp",
        record=record,
    )


def messages(envelopes: list[Envelope | bytes], start: int = 0) -> list[Message]:
    return [
        Message(TOPIC, 0, start + i, b"k", e.to_bytes() if isinstance(e, Envelope) else e, 0)
        for i, e in enumerate(envelopes)
    ]


async def project(pool, envelopes, start: int | None = None) -> int:
    projector = SearchProjector()
    offset = await load_offset(pool, projector.name, TOPIC, 0)
    return await apply_batch(
        pool, projector, messages(envelopes, offset if start is None else start), offset
    )


async def docs(pool) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT doc_type, doc_key, title, alt, slug, track_count, image_url, norm"
            " FROM search_doc ORDER BY doc_type, doc_key"
        )
        rows: list[tuple[Any, ...]] = await cur.fetchall()
        cur = await conn.execute("SELECT track_uri, tag FROM search_tag ORDER BY 1, 2")
        tags: list[tuple[Any, ...]] = await cur.fetchall()
        return rows + tags


def titles(rows, doc_type: str) -> list[str]:
    return [r[2] for r in rows if r[0] == doc_type]


async def test_replay_twice_is_once(pool):
    batch = [
        track("record.created", rev="3l1", title="One", album="First"),
        track("record.updated", rev="3l2", title="One (edit)", album="First"),
        profile("3l3", "Alice"),
        lst("record.created", "l1", "3l4", "Road Mix", "playlist"),
    ]
    await project(pool, batch)
    once = await docs(pool)
    await project(pool, batch)  # the same events again, at later offsets
    assert await docs(pool) == once
    assert titles(once, "track") == ["One (edit)"]
    assert titles(once, "album") == ["First"]
    assert titles(once, "artist") == ["Alice"]
    assert titles(once, "playlist") == ["Road Mix"]


async def test_out_of_order_update_before_create(pool):
    await project(
        pool,
        [
            track("record.updated", rev="3l2", title="Newer"),
            track("record.created", rev="3l1", title="Older"),
            profile("3l5", "New name"),
            profile("3l4", "Old name"),
        ],
    )
    rows = await docs(pool)
    assert titles(rows, "track") == ["Newer"]
    assert titles(rows, "artist") == ["New name"]


async def test_duplicates(pool):
    e = track("record.created", rev="3l1", title="One", album="A", tags=["Rock", "rock", " Jazz "])
    await project(pool, [e, e, e])
    rows = await docs(pool)
    assert titles(rows, "track") == ["One"]
    assert next(r for r in rows if r[0] == "album")[5] == 1  # track_count
    assert [r[1] for r in rows if len(r) == 2] == ["jazz", "rock"]


async def test_insert_delete_insert(pool):
    await project(
        pool,
        [
            track("record.created", rev="3l1", title="One", album="A"),
            track("record.deleted", rev="3l2"),
            track("record.created", rev="3l3", title="Again"),
        ],
    )
    rows = await docs(pool)
    assert titles(rows, "track") == ["Again"]
    assert titles(rows, "album") == []  # its only member moved out of the album


async def test_delete_wins_over_late_older_create(pool):
    await project(pool, [track("record.deleted", rev="3l2"), track("record.created", rev="3l1")])
    assert titles(await docs(pool), "track") == []


async def test_crash_before_commit_leaves_offset_and_rows_unmoved(pool):
    class Crashing(SearchProjector):
        async def write(self, conn, steps):
            await super().write(conn, steps)  # every row of the batch is written...
            raise RuntimeError("crash")  # ...and the worker dies before the commit

    batch = messages([track("record.created", rev="3l1"), track("record.created", "boom", "3l2")])
    with pytest.raises(RuntimeError):
        await apply_batch(pool, Crashing(), batch, await load_offset(pool, "search", TOPIC, 0))
    assert await docs(pool) == []
    assert await load_offset(pool, "search", TOPIC, 0) == 0


async def test_offsets_are_compare_and_set(pool):
    batch = messages([track("record.created", rev="3l1")])
    await load_offset(pool, "search", TOPIC, 0)
    assert await apply_batch(pool, SearchProjector(), batch, 0) == 1
    with pytest.raises(OffsetConflict):
        await apply_batch(pool, SearchProjector(), batch, 0)


async def test_invalid_records_are_dead_lettered_without_partial_writes(pool):
    await project(
        pool,
        [
            track("record.created", "bad", "3l1", title="x" * 300),
            b"not json",
            track("record.created", "good", "3l2", title="Fine"),
        ],
    )
    assert titles(await docs(pool), "track") == ["Fine"]
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM search_record")
        assert (await cur.fetchone())[0] == 1
        cur = await conn.execute("SELECT count(*) FROM dead_letter WHERE projector = 'search'")
        assert (await cur.fetchone())[0] == 2
    assert await load_offset(pool, "search", TOPIC, 0) == 3


async def test_albums_from_tracks_and_lists_share_the_catalog_slug(pool):
    await project(
        pool,
        [
            track("record.created", "t1", "3l1", title="A", album="Blue Hour!"),
            track("record.created", "t2", "3l2", title="B", album="blue hour"),
            lst("record.created", "l1", "3l3", "Blue Hour", "album", items=2),
        ],
    )
    rows = [r for r in await docs(pool) if r[0] == "album"]
    assert len(rows) == 1
    _, key, title, _, slug, count, _, norm = rows[0]
    assert (key, title, slug, count, norm) == (
        f"{DID} blue-hour",
        "Blue Hour",
        "blue-hour",
        2,
        "blue hour",
    )
    # the list goes away: the title falls back to the earliest track's album string
    await project(pool, [lst("record.deleted", "l1", "3l4", None, "album")])
    rows = [r for r in await docs(pool) if r[0] == "album"]
    assert rows[0][2] in ("Blue Hour!", "blue hour") and rows[0][5] == 2
    await project(
        pool, [track("record.deleted", "t1", "3l5"), track("record.deleted", "t2", "3l6")]
    )
    assert titles(await docs(pool), "album") == []


async def test_list_changing_type_moves_between_playlist_and_album(pool):
    await project(pool, [lst("record.created", "l1", "3l1", "Mix", "playlist", items=3)])
    rows = await docs(pool)
    assert titles(rows, "playlist") == ["Mix"] and titles(rows, "album") == []
    await project(pool, [lst("record.updated", "l1", "3l2", "Mix", "album", items=3)])
    rows = await docs(pool)
    assert titles(rows, "playlist") == [] and titles(rows, "album") == ["Mix"]
    await project(pool, [lst("record.updated", "l1", "3l3", "Liked", "liked", items=3)])
    rows = await docs(pool)
    assert titles(rows, "playlist") == [] and titles(rows, "album") == []


async def test_artist_document_from_identity_profile_and_tracks(pool):
    await project(
        pool,
        [
            Envelope(kind="identity.changed", did=DID, source="t", time="t", handle="al.test"),
            track("record.created", rev="3l1", artist="Al From Tracks"),
        ],
    )
    rows = [r for r in await docs(pool) if r[0] == "artist"]
    assert [(r[2], r[3]) for r in rows] == [("Al From Tracks", "al.test")]
    await project(pool, [profile("3l2", "Al Bsky")])
    rows = [r for r in await docs(pool) if r[0] == "artist"]
    assert [(r[2], r[3]) for r in rows] == [("Al Bsky", "al.test")]
    await project(pool, [profile("3l3", None)])  # displayName removed: back to the track name
    assert titles(await docs(pool), "artist") == ["Al From Tracks"]


async def test_deleted_account_is_purged(pool):
    await project(
        pool,
        [
            track("record.created", rev="3l1", album="A", tags=["x"]),
            track("record.created", rev="3l1", did=OTHER, title="Other"),
            Envelope(kind="account.changed", did=DID, source="t", time="t", status="deleted"),
        ],
    )
    rows = await docs(pool)
    assert titles(rows, "track") == ["Other"]
    assert titles(rows, "album") == [] and [r for r in rows if len(r) == 2] == []
    assert titles(rows, "artist") == ["Some Artist"]  # OTHER's


async def test_albums_follow_the_catalog_rule(pool):
    """Search's album documents are the catalog's albums: same title, image, track_count.

    Search used to count max(titled tracks, list items): a list naming three tracks of
    which one exists counted 3; the catalog counts the tracks on the album (here t0,
    untitled but listed first, and t9 titled "Night"), which the album page shows.
    """
    from projectors.catalog import CatalogProjector

    events = [
        track("record.created", "t0", "3l1", title="Listed", imageUrl="https://img.test/0"),
        track("record.created", "t9", "3l2", title="Titled", album="night!"),
        lst("record.created", "l2", "3l3", "Night", "album", items=3),
        lst("record.created", "l1", "3l4", "NIGHT", "album", items=1),
    ]
    await project(pool, events)
    catalog = CatalogProjector()
    offset = await load_offset(pool, catalog.name, TOPIC, 0)
    await apply_batch(pool, catalog, messages(events, offset), offset)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT slug, title, image_url, track_count, list_uri FROM album ORDER BY slug"
        )
        albums = await cur.fetchall()
        cur = await conn.execute(
            "SELECT slug, title, image_url, track_count, uri FROM search_doc"
            " WHERE doc_type = 'album' ORDER BY slug"
        )
        docs_ = await cur.fetchall()
    assert albums == docs_
    assert [(r[0], r[1], r[3]) for r in docs_] == [("night", "NIGHT", 2)]


async def test_an_untitled_track_joins_the_album_list_that_names_it_whenever_it_arrives(pool):
    await project(pool, [lst("record.created", "l1", "3l1", "Dawn", "album", items=1)])
    assert [r[5] for r in await docs(pool) if r[0] == "album"] == [0]
    await project(pool, [track("record.created", "t0", "3l2", imageUrl="https://img.test/0")])
    assert [(r[5], r[6]) for r in await docs(pool) if r[0] == "album"] == [
        (1, "https://img.test/0")
    ]
    await project(pool, [track("record.deleted", "t0", "3l3")])
    assert [(r[5], r[6]) for r in await docs(pool) if r[0] == "album"] == [(0, None)]
