"""The radio's pure parts: ranking, the seeded draw, the loop arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.radio import (
    ARTIST_BUDGET_S,
    STATIONS,
    Candidate,
    draw_rotation,
    locate,
    period_start,
    rank,
)

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
BY_SLUG = {s.slug: s for s in STATIONS}


def cand(n: int, did: str = "did:plc:a", *, seconds: int = 180, likes: int = 0,
         plays: int = 0, days_old: int = 1, tags: tuple[str, ...] = ()) -> Candidate:  # fmt: skip
    return Candidate(
        uri=f"at://{did}/fm.plyr.track/{n}", did=did, seconds=seconds,
        created_at=AT - timedelta(days=days_old), tags=tags, likes=likes, plays=plays,
    )  # fmt: skip


def test_period_start_is_a_multiple_of_four_hours():
    assert period_start(datetime(2026, 12, 1, 15, 59, 59, tzinfo=UTC)) == AT
    assert period_start(datetime(2026, 12, 1, 16, 0, tzinfo=UTC)) == AT + timedelta(hours=4)


def test_lenses_order_and_slop_filter():
    newest_first = [cand(1, likes=0, plays=50, days_old=1), cand(2, likes=3, days_old=90),
                    cand(3, days_old=200), cand(4, tags=("ai",), likes=9)]  # fmt: skip
    loved = [c.uri[-1] for c in rank(BY_SLUG["loved"], newest_first, AT)]
    assert loved == ["2", "1", "3"]  # likes x3 beat log(plays); the ai-tagged one is out
    assert [c.uri[-1] for c in rank(BY_SLUG["fresh"], newest_first, AT)] == ["1", "2", "3"]
    assert rank(BY_SLUG["deep-cuts"], newest_first, AT)[0].uri.endswith("/2")
    assert [c.uri[-1] for c in rank(BY_SLUG["slop"], newest_first, AT)] == ["4"]


def test_the_draw_is_seeded_by_station_and_period():
    pool = [cand(i, did=f"did:plc:{i % 7}") for i in range(60)]
    loved = BY_SLUG["loved"]
    first = draw_rotation(loved, pool, 100, 40)
    assert draw_rotation(loved, pool, 100, 40) == first
    assert draw_rotation(loved, pool, 101, 40) != first
    assert len(first) == len(set(first)) == 40


def test_artist_budget_and_spacing():
    pool = [cand(i, did="did:plc:big", seconds=600) for i in range(10)]
    pool += [cand(100 + i, did=f"did:plc:{i}") for i in range(10)]
    rotation = draw_rotation(BY_SLUG["loved"], pool, 7, 75)
    big = [c for c in rotation if c.did == "did:plc:big"]
    assert sum(c.seconds for c in big) >= ARTIST_BUDGET_S > sum(c.seconds for c in big[:-1])
    dids = [c.did for c in rotation]
    assert all(dids[i] not in dids[max(0, i - 3) : i] for i in range(len(dids)))
    alone = draw_rotation(BY_SLUG["fresh"], [cand(i, seconds=60) for i in range(5)], 7, 75)
    assert len(alone) == 5  # spacing gives way when one artist is all there is


def test_locate_walks_the_loop_from_its_anchor():
    assert locate([], AT, AT) is None
    at = locate([100, 50, 30], AT, AT + timedelta(seconds=180 * 2 + 120))
    assert at is not None and (at.index, at.progress_s) == (1, 20)
    assert at.started_at == AT + timedelta(seconds=360 + 100)
    assert at.ends_at == at.started_at + timedelta(seconds=50)
