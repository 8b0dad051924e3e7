"""`make test` on a machine with no PostgreSQL server: testkit starts the embedded one."""

from __future__ import annotations

import socket
from pathlib import Path

import psycopg

from testkit.brokers import create_database, drop_database, reachable_or_embedded


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_server_at_the_address_starts_the_embedded_one(tmp_path: Path) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{_closed_port()}/postgres"
    admin = reachable_or_embedded(nowhere, tmp_path / "pg")
    assert admin != nowhere
    name, url = create_database(admin)
    try:
        with psycopg.connect(url) as conn:
            # Migrated, with the contrib extensions search needs.
            assert conn.execute("SELECT count(*) FROM schema_migration").fetchone() != (0,)
            extensions = {r[0] for r in conn.execute("SELECT extname FROM pg_extension")}
            assert {"pg_trgm", "unaccent"} <= extensions
    finally:
        drop_database(name, admin)


def test_a_server_that_answers_is_used_as_it_is() -> None:
    from testkit.brokers import DEFAULT_ADMIN_URL

    assert reachable_or_embedded(DEFAULT_ADMIN_URL, Path("unused")) == DEFAULT_ADMIN_URL
