"""Programme statistics from open fields and history, with small-cell suppression.

Pure: open fields and state changes come in, tables of what may be published go out. No
key, file, clock or process is touched here; the site build and ``cmgit stats`` hand in
what they read from git and render what comes back.

The rules (SPEC section 7, domain 7.4):

- every count from 1 to k-1 (k = setting ``suppression_threshold``) is shown as "<k";
- complementary suppression: a row or column whose total is published never has exactly
  one hidden entry, so no hidden count can be worked out by subtraction. Totals count
  as entries of the lines they close, so a total that would reveal the one hidden cell
  of its line is hidden too ("c"). A final exact check over the published equations
  makes sure no hidden entry is determined by them, and hides more if one is;
- medians and percentiles only when n >= 10;
- at most two dimensions a table; no case IDs, staff IDs, dates of single events or
  free text ever reach a table;
- a programme with fewer than 20 open cases publishes only the caseload bands, the
  overdue counts and a single total.

A table never holds the value of a hidden cell: only what may be shown.
"""

from __future__ import annotations

import datetime as dt
import functools
import statistics as pystats
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

DEFAULT_THRESHOLD = 5
MIN_N_DERIVED = 10
SMALL_PROGRAMME = 20
MONTHS_SHOWN = 12
COMPLEMENT = "c"
NOT_SHOWN = "–"
NOT_SET = "not recorded"

RISK_LEVELS = ("high", "medium", "low")
# The open fields the case tables read ("state" and "caseworker" are in every schema).
CASE_FIELDS = (
    "state",
    "caseworker",
    "risk_level",
    "next_follow_up_due",
    "next_review_due",
    "closure_reason",
    "separation_status",
    "sex",
    "age_band",
)
AGE_BANDS = (
    ("0_4", "0–4"),
    ("5_11", "5–11"),
    ("12_14", "12–14"),
    ("15_17", "15–17"),
    ("18_plus", "18 and over"),
)
SEXES = (("female", "female"), ("male", "male"))
UASC = ("unaccompanied", "separated")
IN_FAMILIES = ("with_primary_caregiver", "accompanied_at_risk")
HIGH_SENSITIVITY_REASONS = ("death",)
OTHER = "other"

Shown = int | str
Position = tuple[int, int]


def hidden_mark(threshold: int) -> str:
    return f"<{threshold}"


# -- suppression -------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """A table of counts and which of its totals are published.

    Entries are addressed (i, j) on the table extended by its margins: i == rows is the
    line of column totals, j == columns the column of row totals, and (rows, columns)
    the grand total, which exists only when both margins do.
    """

    cells: tuple[tuple[int, ...], ...]
    row_totals: bool = True
    column_totals: bool = True

    @classmethod
    def of(
        cls, cells: Sequence[Sequence[int]], *, row_totals: bool = True, column_totals: bool = True
    ) -> Grid:
        rows = tuple(tuple(int(v) for v in row) for row in cells)
        if not rows or not rows[0] or any(len(r) != len(rows[0]) for r in rows):
            raise ValueError("a table needs rows of equal, non-zero length")
        if any(v < 0 for r in rows for v in r):
            raise ValueError("counts are never negative")
        return cls(rows, row_totals, column_totals)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.cells), len(self.cells[0])

    @property
    def grand_total(self) -> bool:
        return self.row_totals and self.column_totals

    def value(self, pos: Position) -> int:
        r, c = self.shape
        i, j = pos
        if i < r and j < c:
            return self.cells[i][j]
        if i < r:
            return sum(self.cells[i])
        if j < c:
            return sum(row[j] for row in self.cells)
        return sum(map(sum, self.cells))

    def entries(self) -> list[Position]:
        r, c = self.shape
        found = [(i, j) for i in range(r) for j in range(c)]
        if self.row_totals:
            found += [(i, c) for i in range(r)]
        if self.column_totals:
            found += [(r, j) for j in range(c)]
        if self.grand_total:
            found.append((r, c))
        return found

    def lines(self) -> list[tuple[list[Position], Position]]:
        """The published equations: (entries added up, the total they make)."""
        r, c = self.shape
        found = []
        if self.row_totals:
            found += [([(i, j) for j in range(c)], (i, c)) for i in range(r)]
        if self.column_totals:
            found += [([(i, j) for i in range(r)], (r, j)) for j in range(c)]
        if self.grand_total:
            found.append(([(r, j) for j in range(c)], (r, c)))
            found.append(([(i, c) for i in range(r)], (r, c)))
        return found


@dataclass(frozen=True)
class Suppression:
    """Which entries are hidden: ``primary`` ones shown as "<k" (from ``floor`` to k-1),
    the rest of ``hidden`` as the complementary mark."""

    primary: frozenset[Position]
    hidden: frozenset[Position]
    floor: int = 1

    def shown(self, grid: Grid, pos: Position, threshold: int) -> Shown:
        if pos in self.primary:
            return hidden_mark(threshold)
        if pos in self.hidden:
            return COMPLEMENT
        return grid.value(pos)


def suppress(grid: Grid, threshold: int = DEFAULT_THRESHOLD) -> Suppression:
    """Primary and complementary suppression of a table and its published totals."""
    if threshold < 2:
        raise ValueError("the suppression threshold is at least 2")
    entries = grid.entries()
    primary = {p for p in entries if 0 < grid.value(p) < threshold}
    hidden = set(primary)
    _complete(grid, hidden)
    for _ in range(len(entries)):
        found = exposed(grid, hidden, primary, threshold)
        if not found:
            return Suppression(frozenset(primary), frozenset(hidden))
        _protect(grid, hidden, min(found), threshold)
        _complete(grid, hidden)
    # Small counts that add up to a small total can pin each other down even with every
    # entry hidden ("<3" and "<3" making "<3" can only be 1 + 1 = 2). Then the zeros are
    # hidden as "<k" too, so that no small count has a known lower bound.
    zeros = {p for p in entries if grid.value(p) == 0}
    return Suppression(frozenset(primary | zeros), frozenset(entries), floor=0)


def _complete(grid: Grid, hidden: set[Position]) -> None:
    """Until stable: a line with exactly one hidden entry gets a second one, the smallest
    non-zero visible cell of the line, or, when there is none, the line's total."""
    changed = True
    while changed:
        changed = False
        for parts, total in grid.lines():
            line = [*parts, total]
            if sum(p in hidden for p in line) != 1:
                continue
            candidates = [p for p in parts if p not in hidden and grid.value(p) > 0]
            if candidates:
                hidden.add(min(candidates, key=lambda p: (grid.value(p), p)))
            elif total not in hidden:
                hidden.add(total)
            else:
                continue
            changed = True


def _protect(grid: Grid, hidden: set[Position], pos: Position, threshold: int) -> None:
    """A hidden entry the published figures still pin down: hide one more entry in a line
    through it, a count above the threshold if there is one (it widens the range most),
    else the line's total; with nothing left to hide, the whole table."""
    for parts, total in grid.lines():
        if pos not in parts and pos != total:
            continue
        candidates = [p for p in parts if p not in hidden and grid.value(p) > 0]
        if candidates:
            hidden.add(
                min(candidates, key=lambda p: (grid.value(p) <= threshold, grid.value(p), p))
            )
            return
        if total not in hidden:
            hidden.add(total)
            return
    hidden.update(grid.entries())


INFINITY = float("inf")


def bounds(
    grid: Grid,
    hidden: Iterable[Position],
    primary: Iterable[Position],
    threshold: int,
    floor: int = 1,
) -> dict[Position, tuple[float, float]]:
    """What a reader knows of each hidden entry from its mark alone: "<k" is 1 to k-1
    (0 to k-1 where zeros are hidden too); the complementary mark hides a count of at
    least k, since small counts have their own mark (or 0, where a zero had to be
    hidden)."""
    small = set(primary)
    return {
        p: (floor, threshold - 1)
        if p in small
        else ((threshold, INFINITY) if grid.value(p) >= threshold else (0, INFINITY))
        for p in hidden
    }


def exposed(
    grid: Grid,
    hidden: Iterable[Position],
    primary: Iterable[Position],
    threshold: int,
    floor: int = 1,
) -> set[Position]:
    """Hidden entries whose exact value a reader can work out from everything published:
    the visible counts, the totals and the range each mark gives.

    The published lines say that each row and column adds up to its total. Written
    with the totals negated, every constrained line of the table extended by its margins
    sums to a constant: hidden entries are the edges of a bipartite graph between line
    nodes (lines without a published total all merge into one free node), and every
    other table that fits the published figures differs from the true one by a sum of
    cycles of that graph. Flow decomposition makes this exact for whole numbers: a
    hidden value can differ in some consistent table exactly when one step of +1 or -1
    around a single cycle through it stays within every entry's range. So an entry is
    exposed when no such cycle exists in either direction: a graph search per entry.
    """
    hidden = set(hidden)
    box = bounds(grid, hidden, primary, threshold, floor)
    rows, columns = grid.shape
    free = ("free",)

    def node(kind: str, n: int) -> tuple[Any, ...]:
        if kind == "r":
            constrained = grid.row_totals if n < rows else grid.grand_total
        else:
            constrained = grid.column_totals if n < columns else grid.grand_total
        return (kind, n) if constrained else free

    edges = {}
    for p in hidden:
        i, j = p
        sign = -1 if (i == rows) != (j == columns) else 1  # totals enter negated
        lo, hi = box[p]
        value = grid.value(p) * sign
        y_lo, y_hi = (lo, hi) if sign > 0 else (-hi, -lo)
        edges[p] = (node("r", i), node("c", j), value + 1 <= y_hi, value - 1 >= y_lo)

    def reachable(start: tuple[Any, ...], goal: tuple[Any, ...], skip: Position) -> bool:
        seen = {start}
        todo = [start]
        while todo:
            here = todo.pop()
            if here == goal:
                return True
            for p, (r, c, up, down) in edges.items():
                if p == skip:
                    continue
                for there in ((c,) if r == here and up else ()) + (
                    (r,) if c == here and down else ()
                ):
                    if there not in seen:
                        seen.add(there)
                        todo.append(there)
        return False

    found = set()
    for p, (r, c, up, down) in edges.items():
        if box[p][0] == box[p][1]:
            continue  # the mark alone says it ("<2" is 1): nothing the totals add
        if r == c:
            if not (up or down):
                found.add(p)
            continue
        if not ((up and reachable(c, r, p)) or (down and reachable(r, c, p))):
            found.add(p)
    return found


# -- tables ------------------------------------------------------------------------------


@dataclass
class Table:
    """What may be published of one statistic: labels and shown values only."""

    id: str
    title: str
    dimensions: tuple[str, ...]
    rows: list[str]
    columns: list[str]
    cells: list[list[Shown]]
    row_totals: list[Shown] | None = None
    column_totals: list[Shown] | None = None
    total: Shown | None = None
    note: str = ""
    chart: str = "bars"  # bars, or none

    def __post_init__(self) -> None:
        if not 1 <= len(self.dimensions) <= 2:
            raise ValueError("a published table has one or two dimensions")
        if len(self.cells) != len(self.rows) or any(
            len(row) != len(self.columns) for row in self.cells
        ):
            raise ValueError("table cells do not match its labels")

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "dimensions": list(self.dimensions),
            "rows": self.rows,
            "columns": self.columns,
            "cells": self.cells,
            "row_totals": self.row_totals,
            "column_totals": self.column_totals,
            "total": self.total,
            "note": self.note,
        }

    def grid_rows(self) -> tuple[list[str], list[list[str]]]:
        """Headers and rows as text, totals included: for plain and HTML tables."""
        headers = [self.dimensions[0], *self.columns]
        if self.row_totals is not None:
            headers.append("total")
        body = []
        totals: list[Shown | None] = (
            list(self.row_totals) if self.row_totals is not None else [None] * len(self.rows)
        )
        for label, cells, total in zip(self.rows, self.cells, totals, strict=True):
            body.append([label, *map(str, cells), *([] if total is None else [str(total)])])
        if self.column_totals is not None:
            last = ["total", *map(str, self.column_totals)]
            if self.row_totals is not None:
                last.append("" if self.total is None else str(self.total))
            body.append(last)
        return headers, body


def count_table(
    id: str,
    title: str,
    dimensions: tuple[str, ...],
    rows: Sequence[str],
    columns: Sequence[str],
    counts: Sequence[Sequence[int]],
    threshold: int,
    *,
    row_totals: bool = True,
    column_totals: bool = True,
    note: str = "",
    chart: str = "bars",
) -> Table:
    """A table of counts, suppressed: the only way a count becomes publishable."""
    grid = Grid.of(counts, row_totals=row_totals, column_totals=column_totals)
    return table_of(
        grid,
        suppress(grid, threshold),
        threshold,
        id=id,
        title=title,
        dimensions=dimensions,
        rows=rows,
        columns=columns,
        note=note,
        chart=chart,
    )


def table_of(
    grid: Grid,
    s: Suppression,
    threshold: int,
    *,
    id: str,
    title: str,
    dimensions: tuple[str, ...],
    rows: Sequence[str],
    columns: Sequence[str],
    note: str = "",
    chart: str = "bars",
) -> Table:
    """What ``s`` lets be shown of ``grid``, as a table (the monthly report suppresses a
    table further where another of its tables publishes its total)."""
    r, c = grid.shape
    return Table(
        id,
        title,
        dimensions,
        list(rows),
        list(columns),
        [[s.shown(grid, (i, j), threshold) for j in range(c)] for i in range(r)],
        [s.shown(grid, (i, c), threshold) for i in range(r)] if grid.row_totals else None,
        [s.shown(grid, (r, j), threshold) for j in range(c)] if grid.column_totals else None,
        s.shown(grid, (r, c), threshold) if grid.grand_total else None,
        note,
        chart,
    )


# -- inputs ------------------------------------------------------------------------------


class Change(NamedTuple):
    """One change of state from history: an opaque case key, the day, from, to. (A tuple:
    a programme's history holds hundreds of thousands.)"""

    case: str
    day: dt.date
    source: str | None
    target: str


@dataclass(frozen=True)
class Programme:
    """What the statistics need to know about the procedure and the settings."""

    states: Sequence[str]
    open_states: frozenset[str]
    caseload_states: frozenset[str]
    finished_states: frozenset[str]
    initial_state: str
    registered_state: str
    labels: Mapping[str, str]
    closure_reasons: Sequence[str]
    caseworkers: Sequence[str]
    threshold: int = DEFAULT_THRESHOLD
    caseload_limit: int = 25


@dataclass
class Statistics:
    as_of: dt.date
    threshold: int
    open_cases: int
    tables: list[Table] = field(default_factory=list)
    withheld: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "suppression_threshold": self.threshold,
            "small_programme": self.withheld,
            "tables": [t.as_dict() for t in self.tables],
        }


def history_changes(histories: Iterable[Any]) -> list[Change]:
    """The changes of state written in the cases' state histories ("day state", oldest
    first), each case under an opaque key. An entry that is not one is skipped."""
    found = []
    for n, history in enumerate(histories, start=1):
        if not isinstance(history, list):
            continue
        key, before = f"case-{n}", None
        for entry in history:
            day_text, _, state = entry.partition(" ") if isinstance(entry, str) else ("", "", "")
            day = _day(day_text)
            if day is not None and state:
                found.append(Change(key, day, before, state))
                before = state
    return found


@functools.lru_cache(maxsize=8192)
def _day(text: str) -> dt.date | None:
    """`to_day` of a text, remembered: a programme's dates fall on a few thousand days, and
    its cases and changes of state number hundreds of thousands."""
    return to_day(text)


def to_day(value: Any) -> dt.date | None:
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def compute(
    cases: Sequence[Mapping[str, Any]],
    history: Sequence[Change],
    programme: Programme,
    as_of: dt.date,
) -> Statistics:
    """Every published table, from the open fields of the cases and their state changes."""
    return with_history(
        case_figures(cases, programme, as_of), history_tables(history, programme, as_of)
    )


def case_figures(
    cases: Sequence[Mapping[str, Any]], programme: Programme, as_of: dt.date
) -> Statistics:
    """The tables of the cases' open fields, in publishing order; `with_history` adds those
    of their state changes. (Apart, so the two can be computed on two cores.)"""
    k = programme.threshold
    open_cases = [c for c in cases if c.get("state") in programme.open_states]
    result = Statistics(as_of, k, len(open_cases))
    result.tables.append(
        count_table(
            "open_cases",
            "Open cases",
            ("cases",),
            ["open cases"],
            ["count"],
            [[len(open_cases)]],
            k,
            row_totals=False,
            column_totals=False,
            note="Cases in any step before closed, post-closure monitoring included.",
            chart="none",
        )
    )
    result.tables.append(caseload_bands(cases, programme))
    result.tables.append(overdue(open_cases, as_of, k))
    if len(open_cases) < SMALL_PROGRAMME:
        result.withheld = True
        return result
    result.tables += [
        open_by_step_and_risk(open_cases, programme),
        closure_reasons(cases, programme),
        separation(cases, programme),
        sex_by_age(open_cases, k),
    ]
    return result


def history_tables(history: Sequence[Change], programme: Programme, as_of: dt.date) -> list[Table]:
    return [
        time_in_state(history, programme),
        registrations_and_closures(history, programme, as_of),
    ]


def with_history(figures: Statistics, tables: list[Table]) -> Statistics:
    """``figures`` with the tables of the state changes after the open cases by step; a
    programme too small to publish them gets none."""
    if not figures.withheld:
        at = 1 + next(
            n for n, table in enumerate(figures.tables) if table.id == "open_by_step_and_risk"
        )
        figures.tables[at:at] = tables
    return figures


# -- the statistics ----------------------------------------------------------------------


def _risk_column(case: Mapping[str, Any]) -> int:
    level = case.get("risk_level")
    return RISK_LEVELS.index(level) if level in RISK_LEVELS else len(RISK_LEVELS)


def steps(programme: Programme) -> list[tuple[str, list[str]]]:
    """Step labels of the open states in workflow order; states sharing a label merge."""
    found: dict[str, list[str]] = {}
    for state in programme.states:
        if state in programme.open_states:
            found.setdefault(programme.labels.get(state, state), []).append(state)
    return list(found.items())


def open_by_step_and_risk(open_cases: Sequence[Mapping[str, Any]], programme: Programme) -> Table:
    rows = steps(programme)
    where = {state: n for n, (_, states) in enumerate(rows) for state in states}
    counts = [[0] * (len(RISK_LEVELS) + 1) for _ in rows]
    for case in open_cases:
        counts[where[case["state"]]][_risk_column(case)] += 1
    return count_table(
        "open_by_step_and_risk",
        "Open cases by step and risk level",
        ("step", "risk level"),
        [label for label, _ in rows],
        [*RISK_LEVELS, NOT_SET],
        counts,
        programme.threshold,
    )


def caseload_bands(cases: Sequence[Mapping[str, Any]], programme: Programme) -> Table:
    """Caseworkers by the number of open cases they hold; no staff ID is kept."""
    limit = programme.caseload_limit
    held = Counter(
        c.get("caseworker") for c in cases if c.get("state") in programme.caseload_states
    )
    workers = set(programme.caseworkers) | {w for w in held if w}
    low = min(8, limit)
    bands = [f"{low} or fewer"]
    if limit > low:
        bands.append(f"{low + 1}–{limit}")
    bands.append(f"more than {limit}")
    counts = [0] * len(bands)
    for worker in workers:
        load = held.get(worker, 0)
        counts[0 if load <= low else (len(bands) - 1 if load > limit else 1)] += 1
    return count_table(
        "caseload",
        "Caseworkers by open caseload",
        ("open cases held",),
        bands,
        ["caseworkers"],
        [[n] for n in counts],
        programme.threshold,
        row_totals=False,
        note=f"Guideline: about 8 cases each, never more than the limit of {limit}.",
    )


def overdue(open_cases: Sequence[Mapping[str, Any]], as_of: dt.date, k: int) -> Table:
    counts = [[0] * (len(RISK_LEVELS) + 1) for _ in range(2)]
    for case in open_cases:
        for row, key in enumerate(("next_follow_up_due", "next_review_due")):
            text = case.get(key)
            due = _day(text) if isinstance(text, str) else None
            if due is not None and due < as_of:
                counts[row][_risk_column(case)] += 1
    return count_table(
        "overdue",
        "Follow-ups and reviews overdue",
        ("what", "risk level"),
        ["follow-up overdue", "review overdue"],
        [*RISK_LEVELS, NOT_SET],
        counts,
        k,
        column_totals=False,
        note="Open cases whose next follow-up or review was due before the date of these "
        "figures. A case can be in both rows.",
    )


def stays(history: Sequence[Change]) -> dict[str, list[int]]:
    """Days spent in each state, for every stay that has ended, from the state changes."""
    current: dict[str, tuple[str, dt.date]] = {}
    found: dict[str, list[int]] = defaultdict(list)
    for change in history:
        before = current.get(change.case)
        if before is not None and change.source == before[0]:
            found[before[0]].append(max(0, (change.day - before[1]).days))
        current[change.case] = (change.target, change.day)
    return found


def _days(value: float) -> str:
    rounded = round(value, 1)
    return str(int(rounded)) if rounded == int(rounded) else f"{rounded:.1f}"


def time_in_state(history: Sequence[Change], programme: Programme) -> Table:
    k = programme.threshold
    found = stays(history)
    rows, cells = [], []
    for state in programme.states:
        if state not in programme.open_states:
            continue
        days = sorted(found.get(state, []))
        n = len(days)
        shown_n: Shown = hidden_mark(k) if 0 < n < k else n
        if n >= MIN_N_DERIVED:
            median = _days(pystats.median(days))
            p75 = _days(pystats.quantiles(days, n=4, method="inclusive")[2])
        else:
            median = p75 = NOT_SHOWN
        rows.append(f"{programme.labels.get(state, state)} ({state})")
        cells.append([shown_n, median, p75])
    return Table(
        "time_in_state",
        "Days spent in each state",
        ("state",),
        rows,
        ["stays ended", "median days", "75th percentile days"],
        cells,
        note=f"Completed stays only, from the history of each case. Median and percentile "
        f"only where at least {MIN_N_DERIVED} stays ended; otherwise {NOT_SHOWN}.",
        chart="days",
    )


@functools.lru_cache(maxsize=8192)  # a history's changes fall on a few thousand days
def _month(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def _months_back(as_of: dt.date, count: int) -> list[str]:
    year, month = as_of.year, as_of.month
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{month:02d}")
        month -= 1
        if month == 0:
            year, month = year - 1, 12
    return out[::-1]


def registrations_and_closures(
    history: Sequence[Change], programme: Programme, as_of: dt.date
) -> Table:
    months = _months_back(as_of, MONTHS_SHOWN)
    where = {m: n for n, m in enumerate(months)}
    counts = [[0, 0] for _ in months]
    finished = programme.finished_states
    for change in history:
        row = where.get(_month(change.day))
        if row is None or change.day > as_of:
            continue
        if change.source == programme.initial_state and (
            change.target == programme.registered_state
        ):
            counts[row][0] += 1
        elif change.target in finished and change.source not in finished:
            counts[row][1] += 1
    return count_table(
        "registrations_and_closures",
        "Registrations and closures by month",
        ("month", "event"),
        months,
        ["registrations", "closures"],
        counts,
        programme.threshold,
        row_totals=False,
        note=f"The last {MONTHS_SHOWN} calendar months. A reopened case counts again when "
        "it closes again.",
    )


def by_reason(
    found: Mapping[Any, int], programme: Programme, *, fold: bool = True
) -> tuple[list[str], list[int]]:
    """Row labels and counts of closures by reason: with ``fold``, a high-sensitivity
    reason (death) under "other" unless it counts at least k; unknown reasons as not
    recorded."""
    k = programme.threshold
    sensitive = [r for r in HIGH_SENSITIVITY_REASONS if r in programme.closure_reasons]
    shown = [
        r for r in programme.closure_reasons if not fold or r not in sensitive or found[r] >= k
    ]
    folded = [r for r in sensitive if r not in shown]
    rows = [r.replace("_", " ") for r in shown]
    counts = [found.get(r, 0) for r in shown]
    if folded:
        rows.append(OTHER)
        counts.append(sum(found.get(r, 0) for r in folded))
    rows.append(NOT_SET)
    counts.append(sum(n for r, n in found.items() if r not in programme.closure_reasons))
    return rows, counts


def closure_reasons(cases: Sequence[Mapping[str, Any]], programme: Programme) -> Table:
    k = programme.threshold
    closed = [c for c in cases if c.get("state") in programme.finished_states]
    rows, counts = by_reason(Counter(c.get("closure_reason") for c in closed), programme)
    return count_table(
        "closure_reasons",
        "Closed cases by closure reason",
        ("closure reason",),
        rows,
        ["cases"],
        [[n] for n in counts],
        k,
        row_totals=False,
        note="Cases closed or in post-closure monitoring, by the reason of their latest "
        f'closure. Deaths are counted under "{OTHER}" unless there are at least {k}.',
    )


def separation(cases: Sequence[Mapping[str, Any]], programme: Programme) -> Table:
    groups = ["unaccompanied or separated", "children in families", NOT_SET]
    counts = [[0, 0] for _ in groups]
    for case in cases:
        column = 0 if case.get("state") in programme.open_states else 1
        status = case.get("separation_status")
        row = 0 if status in UASC else 1 if status in IN_FAMILIES else 2
        counts[row][column] += 1
    return count_table(
        "separation",
        "Unaccompanied and separated children and children in families",
        ("group", "status"),
        groups,
        ["open", "closed"],
        counts,
        programme.threshold,
        note="Open: any step before closed, post-closure monitoring included.",
    )


def sex_by_age(open_cases: Sequence[Mapping[str, Any]], k: int) -> Table:
    bands = [code for code, _ in AGE_BANDS]
    sexes = [code for code, _ in SEXES]
    counts = [[0] * (len(SEXES) + 1) for _ in range(len(AGE_BANDS) + 1)]
    for case in open_cases:
        band = case.get("age_band")
        sex = case.get("sex")
        row = bands.index(band) if band in bands else len(bands)
        column = sexes.index(sex) if sex in sexes else len(sexes)
        counts[row][column] += 1
    return count_table(
        "sex_by_age",
        "Open cases by age band and sex",
        ("age band", "sex"),
        [label for _, label in AGE_BANDS] + [NOT_SET],
        [label for _, label in SEXES] + ["other or not recorded"],
        counts,
        k,
    )
