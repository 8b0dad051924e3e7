"""The play window rule (projectors/plays_qualify.py): inside, at the edge, after;
duplicate play ids; out of order; too late; self-plays; the window clamp."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from projectors.plays_qualify import (
    LATENESS,
    PlayReport,
    Window,
    qualify,
    window_for,
)

ARTIST = "did:plc:artistartistartistartist"
LISTENER = "cookie:0f1e2d3c"
TRACK = f"at://{ARTIST}/fm.plyr.track/t1"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def report(
    seconds: float,
    play_id: str | None = None,
    *,
    duration: int | None = 120,
    listener: str = LISTENER,
) -> PlayReport:
    return PlayReport(
        play_id=play_id or f"p{seconds}",
        listener=listener,
        track_uri=TRACK,
        artist_did=ARTIST,
        at=T0 + timedelta(seconds=seconds),
        duration_s=duration,
    )


def run(*reports: PlayReport) -> list[str]:
    """Feed reports in order from an empty state; the reasons, in order."""
    state: tuple[Window, ...] = ()
    reasons: list[str] = []
    for r in reports:
        state, play, reason = qualify(state, r)
        assert (play is not None) == (reason == "counted")
        reasons.append(reason)
    return reasons


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [
        (None, 300),
        (0, 300),
        (-5, 300),
        (10, 30),
        (30, 30),
        (200, 200),
        (3600, 3600),
        (86_400, 3600),
    ],
)
def test_window_is_duration_clamped_to_30s_1h_or_5min_unknown(duration, seconds):
    assert window_for(duration) == timedelta(seconds=seconds)


def test_first_report_counts_with_its_window():
    state, play, reason = qualify((), report(0))
    assert reason == "counted"
    assert play is not None and play.window_end == T0 + timedelta(seconds=120)
    assert play.self_play is False and play.source == "api"
    assert state == (Window(T0, T0 + timedelta(seconds=120), "p0"),)


def test_inside_window_is_a_repeat_at_the_edge_and_after_it_counts():
    assert run(report(0), report(60), report(119.999), report(120), report(500)) == [
        "counted",
        "repeat",
        "repeat",
        "counted",
        "counted",
    ]


def test_unknown_duration_uses_five_minutes():
    assert run(
        report(0, duration=None), report(299, duration=None), report(300, duration=None)
    ) == ["counted", "repeat", "counted"]


def test_short_track_window_is_at_least_30s():
    assert run(report(0, duration=5), report(29, duration=5), report(30, duration=5)) == [
        "counted",
        "repeat",
        "counted",
    ]


def test_duplicate_play_id_is_not_counted_again_even_after_the_window():
    # A redelivered report keeps its id; the same id at a later time is still a duplicate.
    assert run(report(0, "a"), report(0, "a"), report(1000, "a")) == [
        "counted",
        "duplicate",
        "duplicate",
    ]


def test_a_refused_report_is_refused_again_on_redelivery():
    assert run(report(0, "a"), report(10, "b"), report(10, "b")) == ["counted", "repeat", "repeat"]


def test_listeners_and_tracks_are_separate_states():
    # The state is per listener and track: the caller keeps one per pair; each starts empty.
    assert run(report(0))[0] == "counted"
    assert run(report(1, listener="did:plc:other"))[0] == "counted"


def test_out_of_order_inside_a_counted_window_is_a_repeat():
    # Counted at 100 (covers 100..220); a late report at 150 falls inside it.
    assert run(report(100), report(150)) == ["counted", "repeat"]


def test_out_of_order_in_a_wide_enough_gap_counts():
    # Counted 0 (0..120) and 1000 (1000..1120); a late report at 500 fits (500..620).
    state, _, _ = qualify((), report(0))
    state, _, _ = qualify(state, report(1000))
    state, play, reason = qualify(state, report(500))
    assert reason == "counted" and play is not None
    assert [w.start for w in state] == [T0 + timedelta(seconds=s) for s in (0, 500, 1000)]


def test_out_of_order_before_the_first_counted_play_counts_if_its_window_fits():
    assert run(report(1000), report(800)) == ["counted", "counted"]  # 800..920 < 1000
    assert run(report(1000), report(900)) == ["counted", "overlaps_later"]  # 900..1020


def test_out_of_order_whose_window_would_overlap_a_later_counted_play_is_refused():
    # In order, 950 would have counted and 1000 been the repeat; 1000 is already counted.
    assert run(report(0), report(1000), report(950)) == ["counted", "counted", "overlaps_later"]
    # Its window may end exactly where the next one starts.
    assert run(report(0), report(1000), report(880)) == ["counted", "counted", "counted"]


def test_out_of_order_never_leaves_two_counted_plays_within_a_window():
    # Any arrival order of these reports: counted plays stay at least a window apart.
    times = [0, 50, 130, 170, 260, 400, 390, 10]
    for rotation in range(len(times)):
        order = times[rotation:] + times[:rotation]
        state: tuple[Window, ...] = ()
        for s in order:
            state, _, _ = qualify(state, report(s))
        starts = sorted(w.start for w in state)
        assert all(b - a >= timedelta(seconds=120) for a, b in itertools.pairwise(starts))


def test_too_late_reports_are_refused_and_old_windows_pruned():
    old = report(0)
    new = report(LATENESS.total_seconds() + 1000)
    state, _, _ = qualify((), old)
    state, _, _ = qualify(state, new)
    state, play, reason = qualify(state, report(500))
    assert (play, reason) == (None, "too_late")
    assert [w.play_id for w in state] == [new.play_id]  # the old window is behind the horizon


def test_state_order_does_not_matter():
    a = qualify((), report(0)).state
    b = qualify(a, report(1000)).state
    reversed_state = tuple(reversed(b))
    assert qualify(reversed_state, report(1050)) == qualify(b, report(1050))


def test_self_play_is_counted_and_flagged():
    _, play, reason = qualify((), report(0, listener=ARTIST))
    assert reason == "counted" and play is not None and play.self_play is True
