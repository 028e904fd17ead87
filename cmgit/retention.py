"""Which closed cases have passed the end of their retention period, from open fields.

A case's retention ends ``retention_period_months`` after its ``closed_on``, counted as
guard G35 counts it (the same day of the month, or the month's last day): the day after
that end, the case can no longer be reopened, and it is due for disposal. Pure: open
values and today in, the cases due out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .guards import add_months, to_date


@dataclass(frozen=True)
class PastRetention:
    """A case whose retention period has ended: closed on ``closed_on``, kept until
    ``ends_on``, and ``days_past`` days past that end on the day asked about."""

    case_id: str
    closed_on: dt.date
    ends_on: dt.date
    days_past: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "closed_on": self.closed_on.isoformat(),
            "retention_ends_on": self.ends_on.isoformat(),
            "days_past": self.days_past,
        }


def past_retention(
    cases: Iterable[tuple[str, Any]], months: int, today: dt.date
) -> list[PastRetention]:
    """Of ``cases`` (case ID and its open ``closed_on``), those whose retention of
    ``months`` ended before ``today``, longest past first. A case never closed, or with a
    ``closed_on`` that is not a date (a record cmgit did not write), is never due."""
    found = []
    for case_id, closed_text in cases:
        closed = to_date(closed_text)
        if closed is None:
            continue
        ends = add_months(closed, months)
        if today > ends:
            found.append(PastRetention(case_id, closed, ends, (today - ends).days))
    found.sort(key=lambda due: (-due.days_past, due.case_id))
    return found
