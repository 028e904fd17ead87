"""Data-protection views, keyless: the closed cases past their retention period, and how
many cases the open fields single out. Both read the open fields of every record at HEAD
through the keyless reading cache, as `list` and `due` do; no key is needed or used."""

from __future__ import annotations

import datetime as dt

from .. import privacy, retention
from .core import Core

RETENTION_SETTING = "retention_period_months"


def retention_months(repo: Core) -> int | None:
    """The programme's retention period in months, or None while it is not decided."""
    months = repo.settings.get(RETENTION_SETTING)
    return months if isinstance(months, int) and not isinstance(months, bool) else None


def retention_due(repo: Core, *, today: dt.date) -> list[retention.PastRetention]:
    """The cases whose ``closed_on`` plus the retention period has passed by ``today``;
    none while the period is not set."""
    months = retention_months(repo)
    if months is None:
        return []
    order = repo.schemas.open_fields
    at_id, at_closed = order.index("case_id"), order.index("closed_on")
    rows = repo.open_rows()
    return retention.past_retention(((row[at_id], row[at_closed]) for row in rows), months, today)


def single_out(repo: Core) -> privacy.SingleOut:
    """The single-out report of every case's open fields at HEAD, with the programme's
    suppression threshold as the size below which a group counts as small."""
    threshold = repo.settings.get("suppression_threshold", privacy.DEFAULT_THRESHOLD)
    return privacy.single_out(
        repo.open_rows(), repo.schemas.open_fields, repo.schemas.case_properties, int(threshold)
    )
