"""The month a report covers, and a case's state history read day by day."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from ..stats import to_day

MONTH_FORMAT = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")
# Rates (reopening, monitoring) look back over a year: one month holds too few cases.
WINDOW_MONTHS = 12


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month, e.g. ``Month(2026, 3)`` for March 2026."""

    year: int
    number: int

    @classmethod
    def parse(cls, text: str) -> Month:
        found = MONTH_FORMAT.match(text)
        if found is None or int(found.group(1)) < 1:
            raise UsageError("the month is not in the form YYYY-MM", hint="for example: 2026-03")
        return cls(int(found.group(1)), int(found.group(2)))

    @classmethod
    def of(cls, day: dt.date) -> Month:
        return cls(day.year, day.month)

    @classmethod
    def last_complete(cls, today: dt.date) -> Month:
        """The latest month that has ended before ``today``."""
        return cls.of(today).shifted(-1)

    def shifted(self, months: int) -> Month:
        index = self.year * 12 + self.number - 1 + months
        return Month(index // 12, index % 12 + 1)

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.number:02d}"

    @property
    def first(self) -> dt.date:
        return dt.date(self.year, self.number, 1)

    @property
    def last(self) -> dt.date:
        return self.shifted(1).first - dt.timedelta(days=1)

    @property
    def window_start(self) -> dt.date:
        """The first day of the twelve months that end with this one."""
        return self.shifted(1 - WINDOW_MONTHS).first

    def has_ended(self, today: dt.date) -> bool:
        return self.last < today


Step = tuple[dt.date, str]


def timeline(history: Any) -> list[Step]:
    """The (day, state) entries of a state history ("YYYY-MM-DD state"), oldest first; an
    entry that is not one is skipped."""
    if not isinstance(history, list):
        return []
    found = []
    for entry in history:
        if not isinstance(entry, str):
            continue
        day_text, _, state = entry.partition(" ")
        day = to_day(day_text)
        if day is not None and state:
            found.append((day, state))
    return found


def state_on(steps: Sequence[Step], day: dt.date) -> str | None:
    """The state at the end of ``day``; None before the case was identified."""
    current = None
    for when, state in steps:
        if when > day:
            break
        current = state
    return current


def changes(steps: Sequence[Step]) -> list[tuple[dt.date, str | None, str]]:
    """Each change of state: day, from (None for the first), to."""
    found: list[tuple[dt.date, str | None, str]] = []
    before: str | None = None
    for day, state in steps:
        found.append((day, before, state))
        before = state
    return found


def add_months(day: dt.date, months: int) -> dt.date:
    """The same day ``months`` later, or the month's last day where it has none."""
    target = Month.of(day).shifted(months)
    return min(dt.date(target.year, target.number, 1) + dt.timedelta(days=day.day - 1), target.last)
