"""deploy/ runs what ``make cluster`` runs, with commands and variables our code knows.

Every YAML file under deploy/ parses; every appview command (compose ``command``, Kubernetes
``args``) parses with ``plyr-appview``'s own argparse; every ``PLYR_``/``DATABASE_URL``/
``KAFKA_`` variable given to an appview container changes :func:`kernel.config.load_settings`'
result (so it is read, and its value is valid; a value equal to the default must at least be
validated) or is one a role reads itself; the set of roles
equals the cluster supervisor's; every Kubernetes container has resource requests and a
liveness probe, and the API's probe paths are routes of the app.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # no stubs installed; PyYAML comes with moto[server]

from api.app import create_app
from ingest.metrics import METRICS_BIND_ENV
from kernel.config import ConfigError, load_settings
from plyr_appview import cli
from plyr_appview.cluster import ClusterOptions, app_roles

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
KUBERNETES = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
IMAGE = "plyr-appview"
OURS = ("PLYR_", "DATABASE_URL", "KAFKA_BOOTSTRAP")
READ_BY_A_ROLE = {METRICS_BIND_ENV}


def documents(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


class _Parsed(Exception):
    """Raised in place of loading settings: argparse accepted the command line."""


def command_parses(argv: list[str]) -> bool:
    """Whether ``plyr-appview`` accepts ``argv`` (nothing is run)."""

    def parsed() -> None:
        raise _Parsed

    mp = pytest.MonkeyPatch()
    mp.setattr(cli, "load_settings", parsed)
    mp.setattr(cli, "configure_logging", lambda *a, **k: None)
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            cli.main(argv)
    except _Parsed:
        return True
    except SystemExit:
        return False
    finally:
        mp.undo()
    raise AssertionError(f"plyr-appview {argv} neither parsed nor failed")


def compose_roles() -> dict[str, tuple[tuple[str, ...], dict[str, str]]]:
    """Appview services of compose.yaml: name -> (argv, environment)."""
    services = documents(COMPOSE)[0]["services"]
    return {
        name: (tuple(s["command"]), {k: str(v) for k, v in s["environment"].items()})
        for name, s in services.items()
        if "build" in s
    }


def kubernetes_containers() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every container of every workload in deploy/kubernetes: (file:kind/name, container)."""
    for path in KUBERNETES:
        for doc in documents(path):
            spec = doc.get("spec", {})
            pod = spec.get("template", {}).get("spec")
            if pod is None and doc["kind"] == "CronJob":
                pod = spec["jobTemplate"]["spec"]["template"]["spec"]
            for container in (pod or {}).get("containers", []):
                yield f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", container


def secret_env() -> dict[str, str]:
    for path in KUBERNETES:
        for doc in documents(path):
            if doc["kind"] == "Secret" and doc["metadata"]["name"] == IMAGE:
                return {k: str(v) for k, v in doc["stringData"].items()}
    raise AssertionError("no plyr-appview Secret in deploy/kubernetes")


def kubernetes_roles() -> dict[str, tuple[tuple[str, ...], dict[str, str]]]:
    roles = {}
    for where, c in kubernetes_containers():
        if c["image"].split(":")[0] == IMAGE:
            env = {**secret_env(), **{e["name"]: str(e["value"]) for e in c.get("env", [])}}
            roles[where] = (tuple(c["args"]), env)
    return roles


def test_every_deploy_file_parses() -> None:
    files = [COMPOSE, *KUBERNETES]
    assert len(KUBERNETES) >= 2
    for path in files:
        docs = documents(path)
        assert docs, path
        for doc in docs:
            assert isinstance(doc, dict), path
    kinds = {d["kind"] for p in KUBERNETES for d in documents(p)}
    assert {"Deployment", "StatefulSet", "Job", "Service", "Secret"} <= kinds


@pytest.mark.parametrize("source", ["compose", "kubernetes"])
def test_roles_are_what_make_cluster_runs(source: str) -> None:
    roles = compose_roles() if source == "compose" else kubernetes_roles()
    commands = {argv for argv, _ in roles.values()}
    cluster = {spec.argv[3:] for spec in app_roles(ClusterOptions(), plays_worker=True)}
    assert commands == cluster | {("migrate",)}


@pytest.mark.parametrize("source", ["compose", "kubernetes"])
def test_every_command_is_one_of_our_cli(source: str) -> None:
    roles = compose_roles() if source == "compose" else kubernetes_roles()
    for where, (argv, _) in roles.items():
        assert command_parses(list(argv)), f"{where}: plyr-appview {' '.join(argv)}"
    assert not command_parses(["project", "--no-such-flag"])  # the check can fail
    assert not command_parses(["no-such-command"])


def _rejects_garbage(env: Mapping[str, str], name: str) -> bool:
    """Whether ``name`` is read and checked (for values equal to this machine's default)."""
    try:
        load_settings({**env, name: "!not a value!"})
    except ConfigError:
        return True
    return False


def _ours(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(OURS)}


@pytest.mark.parametrize("source", ["compose", "kubernetes"])
def test_every_variable_is_read_by_our_settings(source: str) -> None:
    roles = compose_roles() if source == "compose" else kubernetes_roles()
    for where, (_, env) in roles.items():
        ours = _ours(env)
        assert "DATABASE_URL" in ours and "KAFKA_BOOTSTRAP" in ours, where
        settings = load_settings(ours)  # every value valid (ConfigError otherwise)
        assert settings.log_backend == "kafka", where
        for name in ours:
            if name in READ_BY_A_ROLE:
                continue
            without = {k: v for k, v in ours.items() if k != name}
            assert load_settings(without) != settings or _rejects_garbage(ours, name), (
                f"{where}: {name} changes nothing"
            )


def test_a_made_up_variable_would_be_caught() -> None:
    env = {"DATABASE_URL": "postgresql://h/db", "KAFKA_BOOTSTRAP": "k:9092", "PLYR_NO_SUCH": "1"}
    assert load_settings(env) == load_settings(
        {k: v for k, v in env.items() if k != "PLYR_NO_SUCH"}
    )


def test_kubernetes_containers_have_requests_and_probes() -> None:
    for where, c in kubernetes_containers():
        if "Job" in where:
            continue
        assert c.get("resources", {}).get("requests"), f"{where}: no resource requests"
        assert "livenessProbe" in c, f"{where}: no liveness probe"
        if c.get("ports"):
            assert "readinessProbe" in c, f"{where}: serves a port but has no readiness probe"


def test_api_probe_paths_are_routes() -> None:
    app = create_app(load_settings({}), database_url="postgresql://127.0.0.1/unused")
    routes = set(app.openapi()["paths"])  # included routers are not flat in app.routes
    paths = set()
    for _, c in kubernetes_containers():
        if c["image"].split(":")[0] == IMAGE and tuple(c["args"]) == ("serve",):
            for probe in ("livenessProbe", "readinessProbe"):
                paths.add(c[probe]["httpGet"]["path"])
    assert paths == {"/health", "/ready"}
    assert paths <= routes, paths - routes
