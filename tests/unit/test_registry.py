"""projectors/registry.py: one registry of projectors, configured from Settings."""

from __future__ import annotations

import pytest

from kernel.config import Settings
from projectors import registry
from projectors.moderation import ModerationProjector
from projectors.plays import PlaysProjector


def test_every_projector_is_registered_with_its_topics():
    assert {s.name: s.topics for s in registry.PROJECTORS} == {
        "catalog": ("repo",),
        "search": ("repo",),
        "moderation": ("labels", "repo"),
        "plays": ("plays", "repo"),
    }


def test_each_factory_builds_its_projector():
    settings = Settings()
    for name in registry.names():
        assert registry.spec(name).build(settings).name == name


def test_moderation_trusts_the_configured_labelers_and_operator():
    settings = Settings(labelers=("did:plc:labeler",), operator_did="did:plc:operator")
    projector = registry.spec("moderation").build(settings)
    assert isinstance(projector, ModerationProjector)
    assert projector.trusted == {"did:plc:labeler", "did:plc:operator"}


def test_plays_qualifies_only_in_embedded_mode():
    # Kafka mode: the faust stream worker qualifies; the projector stores play.counted only.
    embedded = registry.spec("plays").build(Settings())
    kafka = registry.spec("plays").build(
        Settings(log_backend="kafka", kafka_bootstrap="127.0.0.1:9092")
    )
    assert isinstance(embedded, PlaysProjector) and isinstance(kafka, PlaysProjector)
    assert (embedded.qualify_reports, kafka.qualify_reports) == (True, False)


def test_unknown_names_are_refused():
    with pytest.raises(LookupError, match="catalog, search, moderation, plays"):
        registry.spec("charts")


def test_the_cli_rebuilds_only_registered_projectors(capsys):
    from plyr_appview.cli import main

    assert main(["rebuild", "charts"]) == 2
    assert "no projector 'charts'" in capsys.readouterr().err
