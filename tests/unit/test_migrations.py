from pathlib import Path

import pytest

from kernel.db import MIGRATIONS_DIR, MigrationError, _migrations


def test_repository_migrations_are_well_formed():
    found = _migrations(MIGRATIONS_DIR)
    assert found and found[0].name.startswith("0001_")
    assert [m.number for m in found] == sorted(m.number for m in found)


def test_duplicate_numbers_and_bad_names_are_refused(tmp_path: Path):
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="share a number"):
        _migrations(tmp_path)
    (tmp_path / "0001_b.sql").unlink()
    (tmp_path / "2_bad.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_slug"):
        _migrations(tmp_path)
