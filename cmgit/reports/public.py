"""The public version: the month's figures suppressed as ``cmgit stats`` suppresses, at
most two dimensions a table, rendered as canonical JSON.

The number of cases active in the month is published once, at the top; two tables count
the same cases, so their grand totals equal it. A table whose suppression hid that total
would still give it away through the other, so such a table is suppressed again with
the total shown, and checked with ``stats.exposed``: hidden more where a hidden count
would follow, and withheld whole where even that is not enough.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import stats
from ..stats import Grid, Suppression, Table
from .figures import ACTIVE, Figure
from .month import Month

MIN_ACTIVE = stats.SMALL_PROGRAMME
PERCENT_OF = "rates"  # the figure whose rows give a rate each


@dataclass
class PublicReport:
    month: Month
    commit: str
    programme: str
    threshold: int
    active: stats.Shown
    small_programme: bool
    tables: list[Table] = field(default_factory=list)
    withheld: list[str] = field(default_factory=list)
    rates: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "report": "monthly",
            "version": "public",
            "month": self.month.label,
            "programme": self.programme,
            "commit": self.commit,
            "suppression_threshold": self.threshold,
            "active_cases": self.active,
            "small_programme": self.small_programme,
            "tables": [t.as_dict() for t in self.tables],
            "rates": self.rates,
            "withheld": self.withheld,
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON: the same report, the same bytes."""
        return (json.dumps(self.as_dict(), indent=2, ensure_ascii=False) + "\n").encode()


def public_report(
    month: Month,
    commit: str,
    programme: str,
    active: int,
    figures: Sequence[Figure],
    threshold: int,
) -> PublicReport:
    """The published version of a month's figures. With fewer active cases than a small
    programme has (or than the threshold), only their number is published."""
    small = active < max(MIN_ACTIVE, threshold)
    shown: stats.Shown = stats.hidden_mark(threshold) if 0 < active < threshold else active
    report = PublicReport(month, commit, programme, threshold, shown, small)
    if small:
        return report
    for figure in figures:
        table = published(figure, threshold, total_shown=figure.population == ACTIVE)
        if table is None:
            report.withheld.append(figure.id)
            continue
        report.tables.append(table)
        if figure.id == PERCENT_OF:
            report.rates = percentages(table)
    return report


def published(figure: Figure, threshold: int, *, total_shown: bool = False) -> Table | None:
    """The figure as a suppressed table; None when it cannot be published safely.
    ``total_shown``: its grand total is published elsewhere, so it must stay shown."""
    if len(figure.dimensions) > 2:
        raise ValueError("a published table has at most two dimensions")
    grid = Grid.of(figure.counts, row_totals=figure.row_totals, column_totals=figure.column_totals)
    suppression: Suppression | None = stats.suppress(grid, threshold)
    if total_shown and grid.grand_total and suppression is not None:
        suppression = with_total_shown(grid, suppression, threshold)
    if suppression is None:
        return None
    rows, columns = figure.labels
    return stats.table_of(
        grid,
        suppression,
        threshold,
        id=figure.id,
        title=figure.title,
        dimensions=figure.dimensions,
        rows=rows,
        columns=columns,
        note=figure.note,
    )


def with_total_shown(grid: Grid, s: Suppression, threshold: int) -> Suppression | None:
    """``s`` with the grand total shown, if no hidden entry then follows from what is
    published; else every other entry hidden (zeros as small counts); else None."""
    r, c = grid.shape
    total = (r, c)
    if total not in s.hidden:
        return s
    entries = set(grid.entries()) - {total}
    zeros = {p for p in entries if grid.value(p) == 0}
    for primary, hidden, floor in (
        (s.primary, s.hidden - {total}, s.floor),
        (s.primary | zeros, entries, 0),
    ):
        if not stats.exposed(grid, hidden, primary, threshold, floor):
            return Suppression(frozenset(primary), frozenset(hidden), floor)
    return None


def percentages(table: Table) -> dict[str, str]:
    """Each row's share of "yes", where at least ``MIN_N_DERIVED`` count and both of its
    counts are shown (a rate beside its total would give a hidden count away)."""
    found = {}
    totals: list[stats.Shown | None] = (
        list(table.row_totals) if table.row_totals is not None else [None] * len(table.rows)
    )
    for label, (yes, no), total in zip(table.rows, table.cells, totals, strict=True):
        ok = all(isinstance(v, int) for v in (yes, no, total))
        n = total if isinstance(total, int) else 0
        found[label] = (
            f"{round(100 * int(yes) / n)}%" if ok and n >= stats.MIN_N_DERIVED else stats.NOT_SHOWN
        )
    return found
