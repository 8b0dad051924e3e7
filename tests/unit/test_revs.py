"""Revs compare in byte order everywhere (kernel/revs.py), as Python compares them."""

from __future__ import annotations

import re

from kernel.revs import rev_sql
from projectors import like


def test_rev_sql_compares_bytes():
    assert rev_sql("t.rev", "<=", "x.rev") == 't.rev COLLATE "C" <= x.rev COLLATE "C"'


def test_every_rev_comparison_of_the_record_tables_is_bytewise():
    for statement in (like.TABLE.upsert_sql, like.TABLE.delete_sql):
        ordered = re.findall(r" [<>]=? ", statement)  # the only order comparisons are of revs
        assert ordered
        assert statement.count('COLLATE "C"') == 2 * len(ordered)
