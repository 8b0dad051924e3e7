"""What ingest puts in ``account.changed``: the status from kernel.account, for every source.

The firehose and Jetstream used to write ``status or ("active" if active else None)``:
an active account with a status kept that status, an inactive one without a status had
none. Both now write :func:`kernel.account.account_status`.
"""

from __future__ import annotations

import pytest

from ingest.commits import account_envelope
from ingest.frames import AccountEvent
from ingest.jetstream import JetstreamAccount, event_envelope

DID = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
CASES = [
    (True, None, "active"),
    (True, "throttled", "active"),  # was "throttled"
    (False, None, "deactivated"),  # was no status
    (False, "active", "deactivated"),  # was "active"
    (False, "takendown", "takendown"),
    (False, "deleted", "deleted"),
]


@pytest.mark.parametrize(("active", "status", "expected"), CASES)
def test_firehose_account_envelope(active: bool, status: str | None, expected: str) -> None:
    event = AccountEvent(7, DID, active, status, "2026-01-01T00:00:00.000Z")
    env = account_envelope(event, "firehose:relay.test")
    assert (env.kind, env.did, env.seq, env.active, env.status) == (
        "account.changed",
        DID,
        7,
        active,
        expected,
    )


@pytest.mark.parametrize(("active", "status", "expected"), CASES)
def test_jetstream_account_envelope(active: bool, status: str | None, expected: str) -> None:
    env = event_envelope(JetstreamAccount(DID, 1_700_000_000_000_000, active, status), "js")
    assert (env.kind, env.active, env.status) == ("account.changed", active, expected)
