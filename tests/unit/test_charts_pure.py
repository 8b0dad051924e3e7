"""api/charts.py: what a chart period is (pure), and the count cursor."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from api.charts import chart_window, parse_chart_date
from api.errors import ApiError
from api.pagination import decode_count_cursor, encode_count_cursor


def utc(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "on", "start", "end"),
    [
        ("day", date(2026, 11, 10), utc(2026, 11, 10), utc(2026, 11, 11)),
        ("day", date(2026, 12, 31), utc(2026, 12, 31), utc(2027, 1, 1)),
        ("week", date(2026, 11, 9), utc(2026, 11, 9), utc(2026, 11, 16)),  # a Monday
        ("week", date(2026, 11, 15), utc(2026, 11, 9), utc(2026, 11, 16)),  # its Sunday
        ("week", date(2026, 12, 31), utc(2026, 12, 28), utc(2027, 1, 4)),  # across the year
        ("month", date(2026, 12, 31), utc(2026, 12, 1), utc(2027, 1, 1)),
        ("month", date(2028, 2, 29), utc(2028, 2, 1), utc(2028, 3, 1)),
    ],
)
def test_calendar_periods_in_utc(period, on, start, end):
    window = chart_window(period, on)
    assert (window.start, window.end) == (start, end)


def test_unknown_period_is_refused():
    with pytest.raises(ValueError, match="year"):
        chart_window("year", date(2026, 1, 1))  # type: ignore[arg-type]


def test_dates_parse_strictly():
    today = date(2026, 12, 5)
    assert parse_chart_date(None, today) == today
    assert parse_chart_date("2026-02-28", today) == date(2026, 2, 28)
    for bad in ("2026-02-30", "20261105", "2026-1-05", "2026-11-05T00:00"):
        with pytest.raises(ApiError) as caught:
            parse_chart_date(bad, today)
        assert caught.value.status == 400


def test_count_cursor_round_trips_and_refuses_foreign_ones():
    assert decode_count_cursor(encode_count_cursor(12, 987654321)) == (12, 987654321)
    for foreign in ("bm9wZQ", encode_count_cursor(True, 1), "WzEsIngiXQ"):
        with pytest.raises(ApiError):
            decode_count_cursor(foreign)
