"""kernel.progress: the one renderer of long work (backfill, rebuild, archive)."""

from __future__ import annotations

import io

from kernel.progress import ProgressBar


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_redrawn_in_place_and_ended_once() -> None:
    out = Tty()
    bar = ProgressBar("rebuild catalog", 200, "events", stream=out)
    bar.update(50, force=True)
    bar.finish(200, detail="9,000 events/s")
    text = out.getvalue()
    assert text.startswith("\rrebuild catalog [#######.......................] 50/200 events")
    assert text.endswith(
        "\rrebuild catalog [##############################] 200/200 events  9,000 events/s\n"
    )


def test_an_unknown_total_shows_the_count_alone() -> None:
    assert ProgressBar("archive", None, "events").line(1234) == "archive 1,234 events"


def test_elsewhere_progress_is_a_log_line_not_carriage_returns(caplog) -> None:
    out = io.StringIO()
    bar = ProgressBar("backfill", 5, "repos", stream=out, interval=3600)
    with caplog.at_level("INFO", logger="kernel.progress"):
        bar.update(1)
        bar.update(2)  # not due yet
        bar.finish(5)
    assert out.getvalue() == ""
    assert [r.__dict__["done"] for r in caplog.records] == [1, 5]
