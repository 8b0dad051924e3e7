from datetime import UTC, datetime

import pytest

from api.errors import ApiError
from api.pagination import decode_cursor, encode_cursor
from projectors.base import track_id


def test_cursor_round_trip():
    when = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    assert decode_cursor(encode_cursor(when, 42)) == (when, 42)


@pytest.mark.parametrize("bad", ["", "!!!", "bm9wZQ", "WzEsMl0"])
def test_foreign_cursors_are_a_400(bad):
    with pytest.raises(ApiError) as info:
        decode_cursor(bad)
    assert info.value.status == 400


def test_track_ids_are_stable_and_js_safe():
    uri = "at://did:plc:abcdefghijklmnopqrstuvwx/fm.plyr.track/3kabc"
    assert track_id(uri) == track_id(uri)
    assert 0 < track_id(uri) < 2**53
    assert track_id(uri) != track_id(uri + "x")
