"""Which closed cases are past their retention period: pure, from open values."""

from __future__ import annotations

import datetime as dt

from cmgit.retention import PastRetention, past_retention

TODAY = dt.date(2030, 6, 15)


def test_a_case_is_due_the_day_after_its_retention_ends() -> None:
    cases = [
        ("CP-00000001", "2028-06-14"),  # ended yesterday
        ("CP-00000002", "2028-06-15"),  # ends today: still kept
        ("CP-00000003", "2026-01-31"),  # the longest past, first
        ("CP-00000004", None),  # never closed
        ("CP-00000005", ["2026-01-01"]),  # not a date: a record cmgit did not write
    ]
    due = past_retention(cases, 24, TODAY)
    assert [d.case_id for d in due] == ["CP-00000003", "CP-00000001"]
    assert due[1] == PastRetention("CP-00000001", dt.date(2028, 6, 14), dt.date(2030, 6, 14), 1)
    assert due[1].as_dict() == {
        "case_id": "CP-00000001",
        "closed_on": "2028-06-14",
        "retention_ends_on": "2030-06-14",
        "days_past": 1,
    }


def test_the_end_is_counted_as_guard_g35_counts_it() -> None:
    # Closed on 31 January, one month: the retention ends on the last day of February.
    (due,) = past_retention([("CP-00000001", "2030-01-31")], 1, dt.date(2030, 3, 1))
    assert due.ends_on == dt.date(2030, 2, 28) and due.days_past == 1
    assert past_retention([("CP-00000001", "2030-01-31")], 1, dt.date(2030, 2, 28)) == []


def test_ties_are_in_case_order() -> None:
    cases = [("CP-00000002", "2020-01-01"), ("CP-00000001", "2020-01-01")]
    assert [d.case_id for d in past_retention(cases, 12, TODAY)] == ["CP-00000001", "CP-00000002"]
