"""The hostile input suite: its size (short by default, full with ``PLYR_HOSTILE=full``),
the tally every case reports to, and the summary table printed at the end of the run.

Each entry point is driven through hypothesis from a worker thread
(:func:`drive`): hypothesis generates and shrinks in that thread, and every case runs on
the test's own event loop, where the real pools and sockets live. A case reports one
outcome to the :class:`Tally`: accepted, or rejected with the reason the entry point
itself classified it by (its counter, its error class, its HTTP error code). An outcome
the suite cannot classify fails the test.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

FULL = os.environ.get("PLYR_HOSTILE", "short").lower() == "full"
"""``make hostile`` sets ``PLYR_HOSTILE=full``: at least 10,000 generated cases in all."""


def examples(full: int) -> int:
    """Hypothesis examples for a property: ``full`` in the full run, a few in the short one."""
    return full if FULL else max(8, full // 40)


@dataclass
class Tally:
    """Cases per entry point and outcomes per (entry point, outcome)."""

    cases: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    forged_accepted: list[str] = field(default_factory=list)

    def note(self, entry: str, outcome: str) -> None:
        self.cases[entry] += 1
        self.outcomes[(entry, outcome)] += 1

    def table(self) -> list[str]:
        lines = [f"{'entry point':<22} {'outcome':<60} {'cases':>7}"]
        for entry in sorted(self.cases):
            for (e, outcome), n in sorted(self.outcomes.items()):
                if e == entry:
                    lines.append(f"{entry:<22} {outcome[:60]:<60} {n:>7}")
            lines.append(f"{entry:<22} {'= total':<60} {self.cases[entry]:>7}")
        lines.append(f"{'all entry points':<22} {'= total':<60} {sum(self.cases.values()):>7}")
        lines.append(f"forged events accepted: {len(self.forged_accepted)}")
        return lines


_TALLY = Tally()


@pytest.fixture(scope="session")
def tally() -> Tally:
    """The run's tally (printed by :func:`pytest_terminal_summary`)."""
    return _TALLY


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _TALLY.cases:
        return
    mode = "full" if FULL else "short (PLYR_HOSTILE=full for the full run)"
    terminalreporter.write_sep("=", f"hostile input suite: {mode}")
    for line in _TALLY.table():
        terminalreporter.write_line(line)


async def drive(
    strategy: st.SearchStrategy[Any],
    case: Callable[[Any], Coroutine[Any, Any, None]],
    *,
    max_examples: int,
) -> None:
    """Run ``case`` on this loop for every example hypothesis draws from ``strategy``.

    Hypothesis runs in a worker thread (so it may shrink a failure as usual); each example
    is handed to this loop and awaited there. No example database: runs are reproducible
    from the printed seed, and nothing is written into the tree.
    """
    loop = asyncio.get_running_loop()

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(value: Any) -> None:
        asyncio.run_coroutine_threadsafe(case(value), loop).result(timeout=120)

    await asyncio.to_thread(run)
