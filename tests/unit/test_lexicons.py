"""Tests for `lexicons`: the packaged schemas, record validation and string formats."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import pytest

from lexicons import (
    FORMAT_CHECKS,
    LexiconError,
    LexiconRegistry,
    LexiconSchemaError,
    RecordInvalid,
    UnknownLexicon,
    ValidationError,
    default_registry,
    is_known,
    record_nsids,
    validate_record,
    validate_value,
)
from lexicons.compiled import compile_check, compile_record_check, record_validator

ARTIST_DID = "did:plc:7iza6de2dwap2sbkpav7c6c6"
LISTENER_DID = "did:web:listener.example.com"
TRACK_URI = f"at://{ARTIST_DID}/fm.plyr.track/3lbn6qkz7ak2c"
TRACK_CID = "bafyreiblxc7xewoe5ihnv323qvjci7qg3xuzhfm5huz6jivtf4zocfcmbi"
OTHER_CID = "bafyreigkwjseqkf4yhzcayjp3zkzqzg2frn7brxoxxfnxnfezcgj7tzze4"
AUDIO_CID = "bafkreido3cizzyqescs6hlmggcspvnuuouuxvpih3nzzddov6nx47lvrdm"
IMAGE_CID = "bafkreidbaxlmy5vpiabsl2knlcgoken6lp63w45ug7ofd3fehel5pjb6hu"
CREATED_AT = "2026-08-20T18:04:05.123Z"


def blob(cid: str, mime_type: str, size: int) -> dict[str, Any]:
    return {"$type": "blob", "ref": {"$link": cid}, "mimeType": mime_type, "size": size}


def track_record() -> dict[str, Any]:
    return {
        "$type": "fm.plyr.track",
        "title": "Tidal Memory (Extended Mix)",
        "artist": "Nadia Okonkwo",
        "album": "Low Tide Recordings",
        "fileType": "flac",
        "duration": 412,
        "audioUrl": "https://cdn.plyr.fm/audio/3f2a9c.flac",
        "imageUrl": "https://cdn.plyr.fm/images/3f2a9c.jpg",
        "audioBlob": blob(AUDIO_CID, "audio/flac", 48_211_334),
        "features": [
            {"did": "did:plc:ewvi7nxzyoun6zhxrhs64oiz"},
            {
                "did": "did:plc:44ybard66vv44zksje25o7dz",
                "handle": "kwame.bsky.social",
                "displayName": "Kwame Mensah",
            },
        ],
        "labels": {
            "$type": "com.atproto.label.defs#selfLabels",
            "values": [{"val": "graphic-media"}],
        },
        "supportGate": {"type": "any"},
        "description": "Recorded live at the harbour, 4am. Thanks to everyone who stayed.",
        "createdAt": CREATED_AT,
    }


def like_record() -> dict[str, Any]:
    return {
        "$type": "fm.plyr.like",
        "subject": {"uri": TRACK_URI, "cid": TRACK_CID},
        "createdAt": CREATED_AT,
    }


def comment_record() -> dict[str, Any]:
    return {
        "$type": "fm.plyr.comment",
        "subject": {"uri": TRACK_URI, "cid": TRACK_CID},
        "text": "the drop at 2:14 🔥",
        "timestampMs": 134_000,
        "createdAt": CREATED_AT,
        "updatedAt": "2026-08-20T18:10:00+02:00",
    }


def list_record() -> dict[str, Any]:
    return {
        "$type": "fm.plyr.list",
        "name": "late night drives",
        "listType": "playlist",
        "items": [
            {"subject": {"uri": TRACK_URI, "cid": TRACK_CID}},
            {
                "subject": {
                    "uri": "at://did:plc:44ybard66vv44zksje25o7dz/fm.plyr.track/3lc2xyoukrs2a",
                    "cid": OTHER_CID,
                }
            },
        ],
        "createdAt": CREATED_AT,
    }


def plyr_profile_record() -> dict[str, Any]:
    return {
        "$type": "fm.plyr.actor.profile",
        "avatar": "https://cdn.plyr.fm/avatars/nadia.png",
        "bio": "Ambient and deep house from the coast. Bookings via DM.",
        "createdAt": CREATED_AT,
    }


def bsky_profile_record() -> dict[str, Any]:
    return {
        "$type": "app.bsky.actor.profile",
        "displayName": "Nadia Okonkwo",
        "description": "producer · dj · tide watcher",
        "avatar": blob(IMAGE_CID, "image/jpeg", 183_442),
        "pinnedPost": {
            "uri": f"at://{ARTIST_DID}/app.bsky.feed.post/3lbn6qkz7ak2c",
            "cid": OTHER_CID,
        },
        "createdAt": CREATED_AT,
    }


def rejection(nsid: str, record: Any, *, rkey: str | None = None) -> RecordInvalid:
    with pytest.raises(RecordInvalid) as info:
        validate_record(nsid, record, rkey=rkey)
    assert info.value.nsid == nsid
    return info.value


# --- the packaged lexicons -------------------------------------------------------------


def test_record_nsids_lists_the_packaged_record_lexicons() -> None:
    assert record_nsids() == (
        "app.bsky.actor.profile",
        "fm.plyr.actor.profile",
        "fm.plyr.comment",
        "fm.plyr.like",
        "fm.plyr.list",
        "fm.plyr.track",
        "fm.teal.actor.status",
        "fm.teal.feed.play",
    )


def test_every_schema_file_is_loaded_under_its_nsid() -> None:
    schema_dir = files("lexicons").joinpath("schemas")
    stems = sorted(
        entry.name.removesuffix(".json")
        for entry in schema_dir.iterdir()
        if entry.name.endswith(".json")
    )
    assert list(default_registry().nsids()) == stems
    assert "com.atproto.repo.strongRef" in stems
    assert "com.atproto.label.defs" in stems


def test_default_registry_is_loaded_once() -> None:
    assert default_registry() is default_registry()


def test_is_known() -> None:
    assert is_known("fm.plyr.track")
    assert is_known("com.atproto.label.defs")
    assert not is_known("fm.plyr.stg.track")
    assert not is_known("app.bsky.feed.post")


def test_exception_tree() -> None:
    assert issubclass(RecordInvalid, ValidationError)
    assert issubclass(ValidationError, LexiconError)
    assert issubclass(UnknownLexicon, LexiconError)
    assert issubclass(LexiconSchemaError, LexiconError)
    assert not issubclass(UnknownLexicon, ValidationError)


# --- valid records ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nsid", "record"),
    [
        ("fm.plyr.track", track_record()),
        ("fm.plyr.like", like_record()),
        ("fm.plyr.comment", comment_record()),
        ("fm.plyr.list", list_record()),
        ("fm.plyr.actor.profile", plyr_profile_record()),
        ("app.bsky.actor.profile", bsky_profile_record()),
    ],
)
def test_valid_records_pass(nsid: str, record: dict[str, Any]) -> None:
    validate_record(nsid, record)


def test_minimal_track_passes() -> None:
    validate_record(
        "fm.plyr.track",
        {"title": "x", "artist": "y", "fileType": "mp3", "createdAt": "2026-01-01T00:00:00Z"},
    )


def test_teal_scrobbles_pass() -> None:
    artist = {"artistName": "Nadia Okonkwo", "artistMbId": "mbid:1f9df192-a621-4f54"}
    validate_record(
        "fm.teal.feed.play",
        {
            "$type": "fm.teal.feed.play",
            "trackName": "Tidal Memory",
            "artists": [artist],
            "duration": 412,
            "originUri": "https://plyr.fm/track/812",
            "musicServiceUri": "https://plyr.fm",
            "submissionClientAgent": "plyr.fm/1.0",
            "playedTime": CREATED_AT,
        },
    )
    validate_record(
        "fm.teal.actor.status",
        {
            "time": CREATED_AT,
            "expiry": "2026-08-20T18:14:05.123Z",
            "item": {"trackName": "Tidal Memory", "artists": [artist]},
        },
        rkey="self",
    )


def test_unknown_fields_pass() -> None:
    record = track_record()
    record["bpm"] = 124
    record["features"][0]["role"] = "vocals"
    record["supportGate"]["tier"] = {"any": ["thing"]}
    validate_record("fm.plyr.track", record)


def test_open_union_accepts_unlisted_type() -> None:
    record = track_record()
    record["labels"] = {"$type": "com.example.labels#tags", "tags": ["whatever"]}
    validate_record("fm.plyr.track", record)


def test_grapheme_limit_counts_graphemes_not_code_points() -> None:
    record = list_record()
    record["name"] = "e\u0301" * 64  # 128 code points, 192 bytes, 64 graphemes
    validate_record("fm.plyr.list", record)


def test_legacy_blob_without_size_passes() -> None:
    record = bsky_profile_record()
    record["avatar"] = {"cid": IMAGE_CID, "mimeType": "image/png"}
    validate_record("app.bsky.actor.profile", record)


def test_record_without_type_field_passes() -> None:
    record = like_record()
    del record["$type"]
    validate_record("fm.plyr.like", record)


# --- rejections ------------------------------------------------------------------------


def test_missing_required_field() -> None:
    record = track_record()
    del record["title"]
    error = rejection("fm.plyr.track", record)
    assert error.path == "title"
    assert str(error) == "title: is required"


def test_missing_required_field_in_nested_ref() -> None:
    record = like_record()
    del record["subject"]["cid"]
    assert str(rejection("fm.plyr.like", record)) == "subject.cid: is required"


def test_string_too_long_in_bytes() -> None:
    record = track_record()
    record["title"] = "a" * 300
    error = rejection("fm.plyr.track", record)
    assert (error.path, error.reason) == ("title", "must be at most 256 bytes, got 300")
    assert str(error) == "title: must be at most 256 bytes, got 300"


def test_string_length_counts_utf8_bytes() -> None:
    record = track_record()
    record["title"] = "é" * 129  # 129 characters, 258 bytes
    assert str(rejection("fm.plyr.track", record)) == "title: must be at most 256 bytes, got 258"


def test_string_too_short() -> None:
    record = track_record()
    record["fileType"] = ""
    assert str(rejection("fm.plyr.track", record)) == "fileType: must be at least 1 byte, got 0"


def test_grapheme_limit() -> None:
    record = list_record()
    record["name"] = "x" * 65
    error = rejection("fm.plyr.list", record)
    assert str(error) == "name: must be at most 64 graphemes, got 65"


def test_grapheme_limit_on_profile_bio() -> None:
    record = plyr_profile_record()
    record["bio"] = "🌊" * 257  # 1028 bytes: within maxLength 2560, over maxGraphemes 256
    assert str(rejection("fm.plyr.actor.profile", record)) == (
        "bio: must be at most 256 graphemes, got 257"
    )


@pytest.mark.parametrize(
    "created_at",
    [
        "2026-08-20 18:04:05Z",
        "2026-08-20t18:04:05Z",
        "2026-08-20T18:04:05",
        "2026-08-20T18:04:05-00:00",
        "2026-02-30T18:04:05Z",
        "2026-08-20",
        "1755713045",
    ],
)
def test_bad_datetime(created_at: str) -> None:
    record = comment_record()
    record["createdAt"] = created_at
    error = rejection("fm.plyr.comment", record)
    assert error.path == "createdAt"
    assert error.reason == (
        f"must be a valid datetime (RFC 3339 with uppercase T and a timezone), got {created_at!r}"
    )


def test_bad_did_in_featured_artist() -> None:
    record = track_record()
    record["features"].append({"did": "kwame.bsky.social"})
    error = rejection("fm.plyr.track", record)
    assert error.path == "features[2].did"
    assert str(error) == "features[2].did: must be a valid DID, got 'kwame.bsky.social'"


def test_bad_handle_in_featured_artist() -> None:
    record = track_record()
    record["features"][1]["handle"] = "@kwame"
    assert str(rejection("fm.plyr.track", record)) == (
        "features[1].handle: must be a valid handle, got '@kwame'"
    )


def test_bad_at_uri_in_strong_ref() -> None:
    record = like_record()
    record["subject"]["uri"] = "https://plyr.fm/track/812"
    assert str(rejection("fm.plyr.like", record)) == (
        "subject.uri: must be a valid AT-URI, got 'https://plyr.fm/track/812'"
    )


def test_bad_cid_in_list_item() -> None:
    record = list_record()
    record["items"][1]["subject"]["cid"] = "not-a-cid"
    assert str(rejection("fm.plyr.list", record)) == (
        "items[1].subject.cid: must be a valid CID, got 'not-a-cid'"
    )


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("duration", "412", "must be an integer, got string"),
        ("duration", 412.0, "must be an integer, got float"),
        ("duration", True, "must be an integer, got boolean"),
        ("title", 42, "must be a string, got integer"),
        ("features", {"did": ARTIST_DID}, "must be an array, got object"),
        ("supportGate", "any", "must be an object, got string"),
        ("album", None, "must not be null"),
    ],
)
def test_wrong_type(field: str, value: object, reason: str) -> None:
    record = track_record()
    record[field] = value
    assert str(rejection("fm.plyr.track", record)) == f"{field}: {reason}"


def test_record_must_be_an_object() -> None:
    assert str(rejection("fm.plyr.like", ["not", "a", "record"])) == (
        "record: must be an object, got array"
    )


def test_type_field_must_match_collection() -> None:
    record = like_record()
    record["$type"] = "fm.plyr.comment"
    assert str(rejection("fm.plyr.like", record)) == (
        "$type: must be 'fm.plyr.like', got 'fm.plyr.comment'"
    )


def test_blob_with_wrong_mime_type() -> None:
    record = track_record()
    record["audioBlob"] = blob(AUDIO_CID, "image/png", 1000)
    error = rejection("fm.plyr.track", record)
    assert str(error) == "audioBlob: MIME type 'image/png' is not accepted (accepts audio/*)"


def test_profile_avatar_rejects_gif() -> None:
    record = bsky_profile_record()
    record["avatar"] = blob(IMAGE_CID, "image/gif", 1000)
    assert str(rejection("app.bsky.actor.profile", record)) == (
        "avatar: MIME type 'image/gif' is not accepted (accepts image/png, image/jpeg)"
    )


def test_blob_too_big() -> None:
    record = track_record()
    record["audioBlob"] = blob(AUDIO_CID, "audio/mpeg", 104_857_601)
    assert str(rejection("fm.plyr.track", record)) == (
        "audioBlob: blob must be at most 104857600 bytes, got 104857601"
    )


@pytest.mark.parametrize(
    ("audio_blob", "message"),
    [
        ("https://cdn.plyr.fm/a.mp3", "audioBlob: must be a blob, got string"),
        (
            {"ref": {"$link": AUDIO_CID}, "mimeType": "audio/mpeg", "size": 1},
            'audioBlob: must be a blob (an object with "$type": "blob")',
        ),
        (
            blob("bafkrei", "audio/mpeg", 1),
            "audioBlob.ref.$link: must be a valid CID, got 'bafkrei'",
        ),
        (
            {"$type": "blob", "ref": AUDIO_CID, "mimeType": "audio/mpeg", "size": 1},
            'audioBlob.ref: must be a CID link ({"$link": cid}), got string',
        ),
        (
            blob(AUDIO_CID, "audio/mpeg", -1),
            "audioBlob.size: must be a non-negative integer, got -1",
        ),
    ],
)
def test_malformed_blob(audio_blob: object, message: str) -> None:
    record = track_record()
    record["audioBlob"] = audio_blob
    assert str(rejection("fm.plyr.track", record)) == message


def test_union_member_missing_type() -> None:
    record = track_record()
    record["labels"] = {"values": [{"val": "nudity"}]}
    error = rejection("fm.plyr.track", record)
    assert error.path == "labels"
    assert error.reason == (
        "union value is missing $type (expected one of com.atproto.label.defs#selfLabels)"
    )


def test_union_member_is_validated_against_its_definition() -> None:
    record = track_record()
    record["labels"]["values"].append({"val": "x" * 129})
    assert str(rejection("fm.plyr.track", record)) == (
        "labels.values[1].val: must be at most 128 bytes, got 129"
    )


def test_array_too_long() -> None:
    record = track_record()
    record["features"] = [{"did": f"did:plc:artist{n}"} for n in range(11)]
    assert str(rejection("fm.plyr.track", record)) == (
        "features: must have at most 10 items, got 11"
    )


def test_self_labels_array_too_long() -> None:
    record = bsky_profile_record()
    record["labels"] = {
        "$type": "com.atproto.label.defs#selfLabels",
        "values": [{"val": f"label-{n}"} for n in range(11)],
    }
    assert str(rejection("app.bsky.actor.profile", record)) == (
        "labels.values: must have at most 10 items, got 11"
    )


def test_integer_below_minimum() -> None:
    record = comment_record()
    record["timestampMs"] = -1
    error = rejection("fm.plyr.comment", record)
    assert (error.path, error.reason) == ("timestampMs", "must be at least 0, got -1")


def test_integer_outside_64_bits() -> None:
    record = track_record()
    record["duration"] = 2**63
    assert str(rejection("fm.plyr.track", record)) == (
        "duration: must fit in a signed 64-bit integer"
    )


def test_lone_surrogate_is_rejected() -> None:
    record = comment_record()
    record["text"] = "broken \ud800 text"
    assert str(rejection("fm.plyr.comment", record)) == (
        "text: must be valid Unicode (found a lone surrogate)"
    )


def test_record_key_must_suit_the_lexicon() -> None:
    validate_record("fm.plyr.actor.profile", plyr_profile_record(), rkey="self")
    validate_record("fm.plyr.like", like_record(), rkey="3lbn6qkz7ak2c")
    assert str(rejection("fm.plyr.actor.profile", plyr_profile_record(), rkey="main")) == (
        "rkey: must be 'self', got 'main'"
    )
    assert str(rejection("fm.plyr.like", like_record(), rkey="my-like")) == (
        "rkey: must be a valid TID, got 'my-like'"
    )


def test_unknown_lexicon() -> None:
    with pytest.raises(UnknownLexicon) as info:
        validate_record("fm.plyr.stg.track", track_record())
    assert info.value.name == "fm.plyr.stg.track"
    assert str(info.value) == "unknown lexicon: fm.plyr.stg.track"


def test_non_record_lexicon_is_not_a_collection() -> None:
    with pytest.raises(UnknownLexicon) as info:
        validate_record("com.atproto.label.defs", {"values": []})
    assert str(info.value) == "not a record lexicon: com.atproto.label.defs"


def test_validate_value_checks_a_definition() -> None:
    validate_value("com.atproto.repo.strongRef", {"uri": TRACK_URI, "cid": TRACK_CID})
    with pytest.raises(ValidationError) as info:
        validate_value("com.atproto.label.defs#label", {"src": ARTIST_DID, "uri": TRACK_URI})
    assert not isinstance(info.value, RecordInvalid)
    assert str(info.value) == "val: is required"
    with pytest.raises(ValidationError, match=r"^value: must be an object, got string$"):
        validate_value("com.atproto.repo.strongRef", TRACK_URI)


# --- a registry built in the test, for the types plyr records don't use -----------------


KITCHEN = {
    "lexicon": 1,
    "id": "com.example.kitchen",
    "defs": {
        "main": {
            "type": "record",
            "key": "any",
            "record": {
                "type": "object",
                "required": ["kind"],
                "nullable": ["note"],
                "properties": {
                    "kind": {"type": "string", "enum": ["sink", "stove"]},
                    "version": {"type": "integer", "const": 2},
                    "rating": {"type": "integer", "minimum": 1, "maximum": 5},
                    "public": {"type": "boolean", "const": True},
                    "note": {"type": "string", "minGraphemes": 2},
                    "sig": {"type": "bytes", "maxLength": 4},
                    "root": {"type": "cid-link"},
                    "extra": {"type": "unknown"},
                    "tags": {"type": "array", "items": {"type": "string"}, "minLength": 1},
                    "lang": {"type": "string", "format": "language"},
                    "part": {"type": "union", "refs": ["#tap", "#burner"], "closed": True},
                },
            },
        },
        "tap": {"type": "object", "properties": {"hot": {"type": "boolean"}}},
        "burner": {
            "type": "object",
            "required": ["watts"],
            "properties": {"watts": {"type": "integer"}},
        },
    },
}


def kitchen_registry(*extra: object) -> LexiconRegistry:
    return LexiconRegistry.from_documents([KITCHEN, *extra])


def kitchen_record() -> dict[str, Any]:
    return {
        "kind": "sink",
        "version": 2,
        "rating": 5,
        "public": True,
        "note": None,
        "sig": {"$bytes": "3q2+7w"},
        "root": {"$link": TRACK_CID},
        "extra": {"$type": "com.example.whatever", "n": 1},
        "tags": ["steel"],
        "lang": "pt-BR",
        "part": {"$type": "com.example.kitchen#burner", "watts": 2000},
    }


def kitchen_rejection(record: dict[str, Any]) -> str:
    with pytest.raises(RecordInvalid) as info:
        validate_record("com.example.kitchen", record, registry=kitchen_registry())
    return str(info.value)


def test_custom_registry_valid_record() -> None:
    validate_record("com.example.kitchen", kitchen_record(), registry=kitchen_registry())
    assert not is_known("com.example.kitchen")


KITCHEN_REJECTIONS: list[tuple[str, object, str]] = [
    ("kind", "fridge", "kind: must be one of 'sink', 'stove'; got 'fridge'"),
    ("version", 3, "version: must be 2, got 3"),
    ("rating", 6, "rating: must be at most 5, got 6"),
    ("public", False, "public: must be true"),
    ("note", "a", "note: must be at least 2 graphemes, got 1"),
    ("sig", {"$bytes": "3q2+7wA"}, "sig: must be at most 4 bytes, got 5"),
    ("sig", {"$bytes": "not base64!"}, "sig.$bytes: must be valid base64"),
    ("sig", {"$bytes": "3q2é"}, "sig.$bytes: must be valid base64"),
    ("sig", "3q2+7w", 'sig: must be bytes ({"$bytes": base64}), got string'),
    ("root", {"$link": "bafy"}, "root.$link: must be a valid CID, got 'bafy'"),
    ("extra", "text", "extra: must be an object, got string"),
    ("tags", [], "tags: must have at least 1 item, got 0"),
    ("tags", ["ok", 7], "tags[1]: must be a string, got integer"),
    ("lang", "english language", "lang: must be a valid language tag, got 'english language'"),
    (
        "part",
        {"$type": "com.example.kitchen#oven"},
        "part.$type: 'com.example.kitchen#oven' is not one of the allowed types "
        "(com.example.kitchen#tap, com.example.kitchen#burner)",
    ),
    (
        "part",
        {"$type": "com.example.kitchen#burner", "watts": "lots"},
        "part.watts: must be an integer, got string",
    ),
]


@pytest.mark.parametrize(("field", "value", "message"), KITCHEN_REJECTIONS)
def test_custom_registry_rejections(field: str, value: object, message: str) -> None:
    assert kitchen_rejection({"kind": "stove", field: value}) == message


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {
                "lexicon": 1,
                "id": "com.example.a",
                "defs": {
                    "main": {"type": "object", "properties": {"x": {"type": "ref", "ref": "#nope"}}}
                },
            },
            "com.example.a#main.x: ref com.example.a#nope does not resolve",
        ),
        (
            {"lexicon": 1, "id": "com.example.a", "defs": {"main": {"type": "unknown"}}},
            "com.example.a#main: a named definition cannot be of type 'unknown'",
        ),
        (
            {"lexicon": 1, "id": "com.example.a", "defs": {"main": {"type": "float"}}},
            "com.example.a#main: unsupported type 'float'",
        ),
        (
            {
                "lexicon": 1,
                "id": "com.example.a",
                "defs": {"main": {"type": "string", "format": "email"}},
            },
            "com.example.a#main: unknown string format 'email'",
        ),
        (
            {"lexicon": 1, "id": "not an nsid", "defs": {}},
            "lexicon id must be an NSID, got 'not an nsid'",
        ),
        (KITCHEN, "duplicate lexicon com.example.kitchen"),
    ],
)
def test_malformed_lexicons_are_refused(document: object, message: str) -> None:
    with pytest.raises(LexiconSchemaError) as info:
        kitchen_registry(document)
    assert str(info.value) == message


def test_endpoint_lexicons_load_but_are_not_collections() -> None:
    query = {
        "lexicon": 1,
        "id": "com.example.getKitchen",
        "defs": {"main": {"type": "query", "output": {"encoding": "application/json"}}},
    }
    registry = kitchen_registry(query)
    assert registry.is_known("com.example.getKitchen")
    assert registry.record_nsids() == ("com.example.kitchen",)
    with pytest.raises(UnknownLexicon):
        validate_record("com.example.getKitchen", {}, registry=registry)


# --- string formats --------------------------------------------------------------------


FORMAT_SAMPLES: dict[str, tuple[list[str], list[str]]] = {
    "datetime": (
        ["1985-04-12T23:20:50.123Z", "1985-04-12T23:20:50Z", "0010-12-31T23:00:00.000+07:00"],
        ["1985-04-12T23:20:50.123", "1985-04-12T23:20:50.123z", "0000-01-01T00:00:00+01:00"],
    ),
    "did": (
        ["did:plc:7iza6de2dwap2sbkpav7c6c6", "did:web:localhost%3A1234", "did:m:v"],
        ["did:METHOD:val", "did:method:", "did:method:val%", "DID:plc:abc", "alice.test"],
    ),
    "handle": (
        ["alice.bsky.social", "XX.LCS.MIT.EDU", "xn--bcher-kva.tld", "8.cn"],
        ["alice", "john..test", "thing.0aa", "127.0.0.1", "-john.test", "bücher.test"],
    ),
    "at-identifier": (["alice.test", "did:plc:abc"], ["@alice.test", "did:plc:"]),
    "at-uri": (
        [TRACK_URI, "at://alice.test", "at://did:plc:abc/fm.plyr.like"],
        [
            "at://did:plc:abc/",
            "at://did:plc:abc/fm.plyr.track/3lbn6qkz7ak2c/x",
            "at://did:plc:abc/track/1",
            "at://did:plc:abc/fm.plyr.track/..",
            "at://did:plc:abc#frag",
            "AT://did:plc:abc",
        ],
    ),
    "nsid": (
        ["fm.plyr.track", "com.example.fooBarV2", "cn.8.lex.stuff"],
        ["fm.plyr", "com.example.foo.*", "com.example.fooBar.2", "1.0.0.127.record"],
    ),
    "tid": (["3lbn6qkz7ak2c", "a222222222222"], ["3lbn6qkz7ak2", "kjzfcijpj2z2a", "0000000000000"]),
    "record-key": (["self", "3lbn6qkz7ak2c", "literal:self", "~1.2-3_"], [".", "..", "a/b", ""]),
    "cid": (
        # Any multibase passes the syntax (base32upper here); only `b...` must decode.
        [TRACK_CID, AUDIO_CID, TRACK_CID.upper()],
        [
            "bafyrei",
            "Qm" + "1" * 44,
            # CIDv0 is not allowed in atproto (interop vector cid_syntax_invalid.txt)
            "QmPZ9gcCEpqKTo6aq61g2nXGUhM4iCL3ewB6LDXZCtioEB",
            TRACK_CID[:-1],
            "xyz",
            # decodes, but the multihash digest is one byte short
            "bafyreiblxc7xewoe5ihnv323qvjci7qg3xuzhfm5huz6jivtf4zocfcm",
            # decodes, but claims CID version 2
            "bajyreiblxc7xewoe5ihnv323qvjci7qg3xuzhfm5huz6jivtf4zocfcmbi",
        ],
    ),
    "uri": (
        ["https://plyr.fm/track/1", "mbid:1f9df192-a621", "at://alice.test"],
        ["plyr.fm/track/1", "https://", "https://plyr.fm/a b", "1http://x"],
    ),
    "language": (["en", "pt-BR", "zh-Hant", "i-navajo"], ["e", "en-", "123", "a-DE"]),
}


def test_every_format_has_samples() -> None:
    assert set(FORMAT_SAMPLES) == set(FORMAT_CHECKS)


@pytest.mark.parametrize(
    ("name", "value", "valid"),
    [
        (name, value, valid)
        for name, (good, bad) in FORMAT_SAMPLES.items()
        for valid, values in ((True, good), (False, bad))
        for value in values
    ],
)
def test_format_check(name: str, value: str, valid: bool) -> None:
    assert FORMAT_CHECKS[name](value) is valid


def test_common_cid_fast_path_agrees_with_full_decoding():
    import os

    import cbrrr

    from lexicons.formats import _COMMON_CID, is_cid

    for size in (1, 64, 4096):
        data = os.urandom(size)
        for cid in (
            cbrrr.CID.cidv1_dag_cbor_sha256_32_from(data),
            cbrrr.CID.cidv1_raw_sha256_32_from(data),
        ):
            text = cid.encode()
            assert _COMMON_CID.fullmatch(text)
            assert is_cid(text)
    assert not is_cid("bafyrei" + "0" * 52)  # '0' is not base32
    assert not is_cid("bafyreia" + "a" * 49)  # too short


# --- compiled validators agree with the reference ----------------------------------------

# Values that break some rule somewhere: wrong types, null, limits, formats, odd shapes.
MUTANTS: list[object] = [
    None,
    "",
    "x",
    "x" * 300,
    "é" * 200,
    "\ud800",
    "2026-02-30T00:00:00Z",
    CREATED_AT,
    "did:plc:abc",
    "not a uri",
    TRACK_URI,
    TRACK_CID,
    0,
    -1,
    7,
    2**63,
    True,
    1.5,
    [],
    ["x"],
    [None],
    {},
    {"$link": TRACK_CID},
    {"$link": "bafy"},
    {"$bytes": "3q2+7w"},
    {"$type": "blob"},
    blob(AUDIO_CID, "audio/mpeg", 5),
    blob(IMAGE_CID, "image/png", 200_000_000),
    {"cid": AUDIO_CID, "mimeType": "audio/mpeg"},
    {"$type": "com.example.kitchen#burner", "watts": 1},
    {"$type": "com.atproto.label.defs#selfLabels", "values": []},
    {"uri": TRACK_URI, "cid": TRACK_CID},
]


def mutations(value: Any) -> Any:
    """``value`` with one field (at any depth) replaced by each mutant, or removed."""
    if isinstance(value, dict):
        for key in value:
            for mutant in MUTANTS:
                yield {**value, key: mutant}
            yield {k: v for k, v in value.items() if k != key}
            for inner in mutations(value[key]):
                yield {**value, key: inner}
    elif isinstance(value, list):
        for index, item in enumerate(value):
            for mutant in MUTANTS[:12]:
                yield [*value[:index], mutant, *value[index + 1 :]]
            for inner in mutations(item):
                yield [*value[:index], inner, *value[index + 1 :]]


def reference_outcome(nsid: str, record: Any, registry: LexiconRegistry) -> str | None:
    try:
        validate_record(nsid, record, registry=registry)
    except RecordInvalid as exc:
        return str(exc)
    return None


def compiled_outcome(nsid: str, record: Any, registry: LexiconRegistry) -> str | None:
    try:
        record_validator(nsid, registry=registry)(record)
    except RecordInvalid as exc:
        return str(exc)
    return None


def agreement_corpus() -> list[tuple[str, Any, LexiconRegistry]]:
    from testkit.events import catalog_event_mix

    plyr = default_registry()
    kitchen = kitchen_registry()
    valid = [
        ("fm.plyr.track", track_record(), plyr),
        ("fm.plyr.like", like_record(), plyr),
        ("fm.plyr.comment", comment_record(), plyr),
        ("fm.plyr.list", list_record(), plyr),
        ("fm.plyr.actor.profile", plyr_profile_record(), plyr),
        ("app.bsky.actor.profile", bsky_profile_record(), plyr),
        ("com.example.kitchen", kitchen_record(), kitchen),
        (
            "com.example.kitchen",
            {**kitchen_record(), "part": {"$type": "com.example.kitchen#tap", "hot": True}},
            kitchen,
        ),
    ]
    corpus: list[tuple[str, Any, LexiconRegistry]] = list(valid)
    for nsid, record, registry in valid:
        corpus += [(nsid, mutant, registry) for mutant in mutations(record)]
        corpus += [(nsid, mutant, registry) for mutant in MUTANTS]
        corpus.append((nsid, {**record, "$type": "fm.plyr.other"}, registry))
    corpus += [
        (e.collection, e.record, plyr) for e in catalog_event_mix(400) if e.record is not None
    ]
    return corpus


def test_compiled_validators_agree_with_the_reference() -> None:
    corpus = agreement_corpus()
    outcomes = {"valid": 0, "invalid": 0}
    for nsid, record, registry in corpus:
        expected = reference_outcome(nsid, record, registry)
        # The predicate alone says the same (so valid records never reach the reference)...
        assert compile_record_check(nsid, registry)(record) is (expected is None), (
            nsid,
            record,
            expected,
        )
        # ...and the validator raises the reference's error, path and reason included.
        assert compiled_outcome(nsid, record, registry) == expected
        outcomes["valid" if expected is None else "invalid"] += 1
    assert outcomes["valid"] > 400 and outcomes["invalid"] > 2000


def test_compiled_validators_cover_the_rejection_cases_above() -> None:
    kitchen = kitchen_registry()
    for nsid, record in [
        ("fm.plyr.track", {**track_record(), "duration": "412"}),
        ("fm.plyr.track", {**track_record(), "title": "x" * 300}),
        ("fm.plyr.track", {**track_record(), "title": "\ud800"}),
        ("fm.plyr.track", {**track_record(), "duration": 2**64}),
        ("fm.plyr.track", {**track_record(), "audioBlob": "https://cdn.plyr.fm/a.mp3"}),
        ("fm.plyr.like", {**like_record(), "subject": {"uri": "at://x"}}),
    ]:
        expected = reference_outcome(nsid, record, default_registry())
        assert expected is not None
        assert compiled_outcome(nsid, record, default_registry()) == expected
    for field, value, message in KITCHEN_REJECTIONS:
        record = {"kind": "stove", field: value}
        assert not compile_record_check("com.example.kitchen", kitchen)(record)
        assert compiled_outcome("com.example.kitchen", record, kitchen) == message


def test_compiled_check_of_a_definition() -> None:
    registry = default_registry()
    check = compile_check("com.atproto.repo.strongRef", registry)
    assert check({"uri": TRACK_URI, "cid": TRACK_CID})
    assert not check({"uri": TRACK_URI})
    assert not check(TRACK_URI)
    assert not check(None)
    label = compile_check("com.atproto.label.defs#label", registry)
    assert not label({"src": ARTIST_DID, "uri": TRACK_URI})


def test_record_validator_is_built_once_per_collection() -> None:
    assert record_validator("fm.plyr.track") is record_validator("fm.plyr.track")
    with pytest.raises(UnknownLexicon):
        record_validator("fm.plyr.stg.track")
