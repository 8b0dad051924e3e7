"""The projectors this appview runs: one registry of name → factory and topics.

``plyr-appview project`` runs every registered projector on its topics, ``project --group``
gives each its Kafka consumer group, ``rebuild NAME`` replays one, and ``dead-letters
replay`` finds the projector a dead letter belongs to, all through :func:`spec`. A
factory gets what it needs from :class:`~kernel.config.Settings`, passed in by the
wiring: no projector reads the environment itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kernel.config import Settings
from projectors.base import Projector
from projectors.catalog import CatalogProjector
from projectors.moderation import ModerationProjector, trusted_sources
from projectors.plays import PlaysProjector
from projectors.search import SearchProjector

__all__ = ["PROJECTORS", "ProjectorSpec", "names", "spec"]


@dataclass(frozen=True, slots=True)
class ProjectorSpec:
    """A registered projector: its name, the logical topics it reads and its factory."""

    name: str
    topics: tuple[str, ...]
    """Logical topics (``repo``, ``labels``): one instance reads all of them, with
    separate offsets per topic, and a rebuild replays all of them."""
    factory: Callable[[Settings], Projector]

    def build(self, settings: Settings) -> Projector:
        """A projector instance configured from ``settings``."""
        projector = self.factory(settings)
        assert projector.name == self.name, (projector.name, self.name)
        return projector


def _catalog(settings: Settings) -> Projector:
    del settings
    return CatalogProjector()


def _search(settings: Settings) -> Projector:
    del settings
    return SearchProjector()


def _plays(settings: Settings) -> Projector:
    # Kafka mode: the faust stream worker (projectors.plays_stream) qualifies the reports
    # and this projector only stores its play.counted events; qualifying here as well would
    # do the work twice. Embedded mode: this projector qualifies (state in PostgreSQL).
    return PlaysProjector(
        qualify_reports=settings.log_backend != "kafka", frontend_url=settings.frontend_url
    )


def _moderation(settings: Settings) -> Projector:
    # Which sources' labels count: the configured labelers and the operator.
    return ModerationProjector(trusted_sources(settings))


PROJECTORS: tuple[ProjectorSpec, ...] = (
    ProjectorSpec("catalog", ("repo",), _catalog),
    ProjectorSpec("search", ("repo",), _search),
    ProjectorSpec("moderation", ("labels", "repo"), _moderation),
    ProjectorSpec("plays", ("plays", "repo"), _plays),  # repo: account deletions
)


def names() -> tuple[str, ...]:
    """The registered projector names."""
    return tuple(s.name for s in PROJECTORS)


def spec(name: str) -> ProjectorSpec:
    """The registered projector ``name``; :class:`LookupError` if there is none."""
    for entry in PROJECTORS:
        if entry.name == name:
            return entry
    raise LookupError(f"no projector {name!r} (known: {', '.join(names())})")
