"""The one tag rule (kernel/tags.py) the catalog, search and the API share."""

from __future__ import annotations

import pytest

from kernel.tags import normalise_tag, record_tags


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ()),
        ("rock", ()),
        (["Rock", "rock", "  Hip   Hop ", 3, ""], ("rock", "hip hop")),
        ([f"t{i}" for i in range(20)], tuple(f"t{i}" for i in range(10))),
        (["x" * 100], ("x" * 64,)),
        (
            ["a", "A", "  a  "] + [f"t{i}" for i in range(9)] + ["late"],
            ("a", *tuple(f"t{i}" for i in range(9))),
        ),
    ],
)
def test_record_tags(raw, expected):
    assert record_tags({"tags": raw} if raw is not None else {}) == expected


def test_a_user_given_tag_normalises_like_a_record_tag():
    assert (
        normalise_tag("  Lo-Fi\tBeats ")
        == "lo-fi beats"
        == record_tags({"tags": ["LO-FI  beats"]})[0]
    )
    assert normalise_tag(" \n ") == ""
