"""Track charts: the tracks of one calendar day, week or month, ranked by plays or likes.

What a period is: a **calendar** period in UTC, not a rolling window (``/tracks/top``
keeps plyr's rolling windows). ``day`` is a UTC date, ``week`` an ISO week (Monday
00:00 UTC to the next Monday), ``month`` a calendar month. Any past period can be asked
for by a date inside it (``date=YYYY-MM-DD``); without one, the current period so far.
A chart is therefore stable once its period has ended, which is what a chart is for.

What counts: ``plays`` counted in the period (``play_hourly`` buckets, which align with
UTC days), ``likes`` created in it; only tracks visible in lists, with at least one.
Ranks are competition ranks (equal counts share a rank; the next rank skips), computed
over the whole chart, so a page after a cursor still carries the right ranks.

Pagination is keyset: entries are ordered by (count, track id) descending and the cursor
(:func:`api.pagination.encode_count_cursor`) is the last entry's pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from psycopg import AsyncConnection

from api.catalog import rows
from api.errors import ApiError
from api.views import TRACK_COLUMNS, TRACK_FROM
from api.visibility import Visibility

__all__ = [
    "BY",
    "PERIODS",
    "By",
    "ChartWindow",
    "Period",
    "chart_rows",
    "chart_window",
    "parse_chart_date",
]

Period = Literal["day", "week", "month"]
By = Literal["plays", "likes"]
PERIODS: tuple[Period, ...] = ("day", "week", "month")
BY: tuple[By, ...] = ("plays", "likes")


@dataclass(frozen=True, slots=True)
class ChartWindow:
    """The half-open UTC interval ``[start, end)`` of a chart's period."""

    period: Period
    start: datetime
    end: datetime


def chart_window(period: Period, on: date) -> ChartWindow:
    """Pure: the calendar ``period`` containing the UTC date ``on``."""
    if period == "day":
        first, last = on, on + timedelta(days=1)
    elif period == "week":
        first = on - timedelta(days=on.weekday())
        last = first + timedelta(days=7)
    elif period == "month":
        first = on.replace(day=1)
        last = (first + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown chart period {period!r}")

    def midnight(d: date) -> datetime:
        return datetime(d.year, d.month, d.day, tzinfo=UTC)

    return ChartWindow(period, midnight(first), midnight(last))


def parse_chart_date(text: str | None, today: date) -> date:
    """``YYYY-MM-DD`` (``None``: ``today``); :class:`ApiError` 400 otherwise."""
    if text is None:
        return today
    try:
        if len(text) != 10:
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise ApiError(400, "invalid_date", "date: expected YYYY-MM-DD") from None


_COUNTS: dict[By, str] = {
    "plays": (
        "SELECT track_uri AS uri, sum(plays)::bigint AS n FROM play_hourly"
        " WHERE hour >= %(start)s AND hour < %(end)s GROUP BY track_uri"
    ),
    "likes": (
        'SELECT subject_uri AS uri, count(*)::bigint AS n FROM "like"'
        " WHERE created_at >= %(start)s AND created_at < %(end)s GROUP BY subject_uri"
    ),
}


async def chart_rows(
    conn: AsyncConnection,
    vis: Visibility,
    window: ChartWindow,
    by: By,
    *,
    limit: int,
    after: tuple[int, int] | None = None,
) -> list[dict[str, Any]]:
    """Up to ``limit`` joined track rows of the chart, each with ``chart_count`` and
    ``chart_rank``, after the ``(count, id)`` of ``after`` if given."""
    keyset = "(r.n, r.id) < (%(count)s, %(id)s)" if after is not None else "true"
    sql = (
        f"WITH counts AS ({_COUNTS[by]}),"
        " ranked AS (SELECT t.id, c.n, rank() OVER (ORDER BY c.n DESC) AS rank"
        f"  FROM counts c JOIN track t ON t.uri = c.uri WHERE c.n > 0 AND {vis.track('list')})"
        f" SELECT {TRACK_COLUMNS}, r.n AS chart_count, r.rank AS chart_rank"
        f" FROM {TRACK_FROM} JOIN ranked r ON r.id = t.id WHERE {keyset}"
        f" ORDER BY r.n DESC, r.id DESC LIMIT {int(limit)}"
    )
    params: dict[str, Any] = {"start": window.start, "end": window.end}
    if after is not None:
        params["count"], params["id"] = after
    return await rows(conn, sql, params)
