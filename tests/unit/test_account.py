"""The one account-status rule (``kernel.account``)."""

from __future__ import annotations

import pytest

from kernel.account import account_status, is_active


@pytest.mark.parametrize(
    ("status", "active", "expected"),
    [
        (None, True, "active"),
        ("throttled", True, "active"),
        (None, False, "deactivated"),
        ("active", False, "deactivated"),
        ("takendown", False, "takendown"),
        ("deleted", False, "deleted"),
        ("suspended", None, "suspended"),
        (None, None, "active"),
    ],
)
def test_account_status(status: str | None, active: bool | None, expected: str) -> None:
    assert account_status(status, active) == expected
    assert is_active(status, active) is (expected == "active")
