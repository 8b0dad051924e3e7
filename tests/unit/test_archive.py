"""The archive's pure parts: manifest, envelope columns, trim eligibility, result text."""

from __future__ import annotations

import pytest

from kernel.archive.manifest import Manifest, ManifestError, Segment, segment_name
from kernel.archive.query import QueryResult, format_result
from kernel.archive.trim import trimmable
from kernel.archive.writer import envelope_columns
from kernel.envelope import Envelope


def seg(partition: int, first: int, last: int, count: int | None = None, size: int = 100):
    return Segment("plyr.repo", partition, first, last, count or last - first + 1, size)


def test_segment_names_are_deterministic_and_sort_by_offset():
    assert segment_name("plyr.repo", 3, 120) == seg(3, 120, 130).name
    names = [segment_name("plyr.repo", 0, o) for o in (9, 10, 100, 2**40)]
    assert sorted(names) == names


def test_manifest_replaces_a_rewritten_segment_and_round_trips():
    manifest = Manifest().with_segment(seg(1, 10, 19)).with_segment(seg(0, 0, 9))
    manifest = manifest.with_segment(seg(1, 0, 9)).with_segment(seg(1, 10, 24))
    assert [(s.partition, s.first_offset, s.last_offset) for s in manifest.segments] == [
        (0, 0, 9),
        (1, 0, 9),
        (1, 10, 24),
    ]
    assert manifest.end_offset("plyr.repo", 1) == 25
    assert manifest.end_offset("plyr.repo", 2) == 0
    assert manifest.end_offset("plyr.plays", 0) == 0
    assert Manifest.from_bytes(manifest.to_bytes()) == manifest
    assert Manifest.from_bytes(None) == Manifest()


@pytest.mark.parametrize(
    "raw",
    [b"nope", b"[]", b'{"version": 99, "segments": []}', b'{"version": 1, "segments": [{}]}'],
)
def test_unreadable_manifest_is_an_error(raw):
    with pytest.raises(ManifestError):
        Manifest.from_bytes(raw)


def test_envelope_columns():
    env = Envelope(
        kind="record.created",
        did="did:plc:a",
        source="t",
        time="t",
        rev="1",
        collection="fm.plyr.track",
        rkey="r1",
        record={},
    )
    assert envelope_columns(env.to_bytes()) == (
        "record.created",
        "did:plc:a",
        "fm.plyr.track",
        "at://did:plc:a/fm.plyr.track/r1",
    )
    # A kind this version does not know is still described; the uri is built if absent.
    assert envelope_columns(
        b'{"v":1,"kind":"play.reported","did":"did:plc:b","collection":"c","rkey":"k"}'
    ) == ("play.reported", "did:plc:b", "c", "at://did:plc:b/c/k")
    for raw in (b"\xff\x00", b"[1]", b'{"v":2,"kind":"x"}', b'"text"', b'{"v":1,"did":5}'):
        assert envelope_columns(raw)[1] is None


def test_trimmable_needs_a_dense_segment_of_the_recorded_size():
    good, gap, wrong_size, missing = (
        seg(0, 0, 9),
        seg(0, 10, 19, count=8),
        seg(1, 0, 9),
        seg(2, 0, 9),
    )
    manifest = Manifest((good, gap, wrong_size, missing))
    sizes = {good.name: 100, gap.name: 100, wrong_size.name: 99, missing.name: None}
    assert trimmable(manifest, "plyr.repo", sizes) == [good]
    assert trimmable(manifest, "plyr.plays", sizes) == []


def test_format_result():
    result = QueryResult(["day", "n", "v"], [("2026-11-01", 3, None), ("a\tb", 1, b"\xff")])
    assert format_result(result) == ["day\tn\tv", "2026-11-01\t3\t", "a b\t1\t\\xff"]
