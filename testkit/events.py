"""Catalog event mixes: deterministic repo-topic envelope streams (projector tests, bench)."""

from __future__ import annotations

from typing import Any

from testkit.records import (
    TRACK,
    bsky_profile_record,
    comment_record,
    fake_cid,
    like_record,
    list_record,
    plyr_profile_record,
    track_record,
)


def catalog_event_mix(count: int, *, seed: int = 7, artists: int | None = None) -> list[Any]:
    """A realistic, deterministic stream of ``count`` repo-topic envelopes.

    Per artist: identity, Bluesky and plyr profiles, tracks (some on albums, some edited or
    deleted), plus likes and comments on anyone's tracks (sometimes before the track
    exists), playlists and album lists, and the odd handle change or deactivation.
    """
    import random

    from kernel.envelope import Envelope, Kind

    rng = random.Random(seed)
    n_artists = artists or max(4, count // 40)
    dids = [f"did:plc:{i:024d}" for i in range(n_artists)]
    counter = 0
    tracks: list[str] = []
    own: dict[str, list[str]] = {d: [] for d in dids}
    out: list[Any] = []

    def next_rev() -> tuple[str, str]:
        nonlocal counter
        counter += 1
        seconds = counter // 1000
        time = f"2026-11-01T{seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        return f"3l{counter:011d}", f"{time}.{counter % 1000:03d}Z"

    def record(kind: Kind, did: str, collection: str, rkey: str, rec: Any) -> Envelope:
        rev, time = next_rev()
        return Envelope(
            kind=kind,
            did=did,
            source="bench",
            time=time,
            rev=rev,
            collection=collection,
            rkey=rkey,
            cid=fake_cid(rev),
            record=rec,
        )

    for did in dids:
        _, time = next_rev()
        out.append(
            Envelope(
                kind="identity.changed",
                did=did,
                source="bench",
                time=time,
                handle=f"{did[-6:]}.test",
            )
        )
        if len(out) >= count:
            break
    while len(out) < count:
        did = rng.choice(dids)
        roll = rng.random()
        if roll < 0.25:
            rkey = f"t{counter}"
            album = rng.choice([None, None, "First Light", "Second Wind", "Tōkyō Nights"])
            extra: dict[str, Any] = {"album": album} if album else {}
            if rng.random() < 0.5:
                extra["audioBlob"] = {
                    "$type": "blob",
                    "ref": {"$link": fake_cid(counter)},
                    "mimeType": "audio/mpeg",
                    "size": 4_000_000,
                }
            out.append(
                record("record.created", did, TRACK, rkey, track_record(f"Song {counter}", **extra))
            )
            uri = f"at://{did}/{TRACK}/{rkey}"
            tracks.append(uri)
            own[did].append(rkey)
        elif roll < 0.60:
            # Sometimes a like of a track that does not exist yet (or never will).
            subject = (
                rng.choice(tracks)
                if tracks and rng.random() < 0.95
                else (f"at://{rng.choice(dids)}/{TRACK}/future{counter}")
            )
            out.append(
                record("record.created", did, "fm.plyr.like", f"l{counter}", like_record(subject))
            )
        elif roll < 0.72 and tracks:
            out.append(
                record(
                    "record.created",
                    did,
                    "fm.plyr.comment",
                    f"c{counter}",
                    comment_record(rng.choice(tracks), f"comment {counter}"),
                )
            )
        elif roll < 0.77 and tracks:
            items = rng.sample(tracks, min(len(tracks), rng.randint(1, 12)))
            kind = rng.choice(["playlist", "playlist", "album", "liked"])
            name = (
                rng.choice(["Road Mix", "First Light", "Late Night"])
                if kind != "liked"
                else "Liked"
            )
            out.append(
                record(
                    "record.created",
                    did,
                    "fm.plyr.list",
                    f"p{counter}",
                    list_record(items, name, kind),
                )
            )
        elif roll < 0.82:
            out.append(
                record(
                    "record.created",
                    did,
                    "app.bsky.actor.profile",
                    "self",
                    bsky_profile_record(f"Artist {counter}", fake_cid(f"avatar{counter}")),
                )
            )
        elif roll < 0.86:
            out.append(
                record(
                    "record.created",
                    did,
                    "fm.plyr.actor.profile",
                    "self",
                    plyr_profile_record(f"bio {counter}"),
                )
            )
        elif roll < 0.93 and own[did]:
            rkey = rng.choice(own[did])
            out.append(
                record(
                    "record.updated",
                    did,
                    TRACK,
                    rkey,
                    track_record(f"Song {rkey} (edit)", album="Second Wind"),
                )
            )
        elif roll < 0.96 and own[did]:
            rkey = own[did].pop(rng.randrange(len(own[did])))
            uri = f"at://{did}/{TRACK}/{rkey}"
            tracks.remove(uri)
            out.append(record("record.deleted", did, TRACK, rkey, None))
        elif roll < 0.99:
            _, time = next_rev()
            out.append(
                Envelope(
                    kind="identity.changed",
                    did=did,
                    source="bench",
                    time=time,
                    handle=f"new{counter}.test",
                )
            )
        else:
            _, time = next_rev()
            active = rng.random() < 0.5
            out.append(
                Envelope(
                    kind="account.changed",
                    did=did,
                    source="bench",
                    time=time,
                    active=active,
                    status=None if active else "deactivated",
                )
            )
    return out
