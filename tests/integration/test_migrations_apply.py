import psycopg

from kernel.db import apply_migrations, pending_migrations


def test_migrations_apply_once_and_restart_is_idempotent(pg_url):
    # pg_url is already migrated by the fixture: a second start applies nothing.
    assert apply_migrations(pg_url) == []
    assert pending_migrations(pg_url) == []
    with psycopg.connect(pg_url) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM schema_migration ORDER BY number")]
    assert names and names[0] == "0001_log_and_offsets.sql"
