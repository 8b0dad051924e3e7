"""Account status: the one rule that turns ``#account``'s ``(active, status)`` into a status.

The firehose's ``#account`` event carries ``active`` (required) and, when the account is
not active, an optional ``status`` saying why (``takendown``, ``suspended``, ``deleted``,
``deactivated``, ``desynchronized``, ``throttled``…). Every part of the product (ingest,
the catalog, search, moderation) asks this module, so they cannot disagree.
"""

from __future__ import annotations

__all__ = ["ACTIVE", "DEACTIVATED", "DELETED", "account_status", "is_active"]

ACTIVE = "active"
DEACTIVATED = "deactivated"
DELETED = "deleted"


def account_status(status: str | None, active: bool | None) -> str:
    """The account's status.

    ``active=True`` is ``active`` whatever ``status`` says (the spec gives a status only
    for inactive accounts, so a ``throttled`` account that is active stays visible).
    ``active=False`` is the given reason, or ``deactivated`` when none (or a contradictory
    ``active``) is given. ``active=None`` (an event without the flag: Jetstream's older
    shape, a status we stored) lets ``status`` decide, and no status at all means active.
    """
    if active is True:
        return ACTIVE
    if active is False:
        return status if status and status != ACTIVE else DEACTIVATED
    return status or ACTIVE


def is_active(status: str | None, active: bool | None) -> bool:
    """Whether the account's records may be shown."""
    return account_status(status, active) == ACTIVE
