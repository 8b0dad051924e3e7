"""Track tags: the one rule for where they come from and how they are normalised.

plyr.fm keeps its tags in its own database; on the network a track record may carry a
non-lexicon ``tags`` array of strings. A tag is normalised by :func:`normalise_tag`:
whitespace runs become one space, ends trimmed, lower case, cut to 64 characters; empty
tags are dropped. :func:`record_tags` applies it to a record's array, keeps the first
occurrence of each tag in record order and at most 10 of them. The catalog
(``track.tags``), search (``search_tag``) and the API (tag filters given by users) all
use these two functions, so a tag means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["MAX_TAGS", "MAX_TAG_LENGTH", "normalise_tag", "record_tags"]

MAX_TAGS = 10
MAX_TAG_LENGTH = 64


def normalise_tag(value: str) -> str:
    """A tag as stored and compared (``""`` when nothing is left of it)."""
    return " ".join(value.split()).lower()[:MAX_TAG_LENGTH]


def record_tags(record: Mapping[str, object]) -> tuple[str, ...]:
    """The normalised tags of a record's ``tags`` array (first 10 distinct, record order)."""
    raw = record.get("tags")
    if not isinstance(raw, list):
        return ()
    tags: list[str] = []
    for item in raw:
        if isinstance(item, str):
            tag = normalise_tag(item)
            if tag and tag not in tags:
                tags.append(tag)
                if len(tags) == MAX_TAGS:
                    break
    return tuple(tags)
