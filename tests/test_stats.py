"""The statistics and their suppression, pure: open fields and history in, tables out.

The suppression is checked against two solvers written here, independently of the one
in cmgit.stats: exact linear algebra over the published totals (no hidden cell may be a
linear combination of what is published), and an integer search that also uses the
ranges the marks give ("<5" is 1 to 4, "c" is a count of at least 5).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

import pytest

from cmgit import stats
from cmgit.stats import Change, Grid, Programme, Suppression, suppress
from cmgit.workflow import STATES

AS_OF = dt.date(2026, 4, 1)
REASONS = (
    "objectives_met",
    "reintegrated",
    "care_arrangement_secured",
    "turned_18",
    "death",
    "transferred",
    "declined_services",
    "inaccessible",
    "no_protection_concern",
    "consent_declined",
    "criteria_not_met",
    "referred_elsewhere",
    "duplicate",
)
CASELOAD = frozenset(STATES[1:8])


def programme(
    k: int = 5, caseworkers: Sequence[str] = ("cw-a", "cw-b"), limit: int = 25
) -> Programme:
    return Programme(
        states=STATES,
        open_states=frozenset(STATES[:-1]),
        caseload_states=CASELOAD,
        finished_states=frozenset({"post_closure_monitoring", "closed"}),
        initial_state="identified",
        registered_state="registered",
        labels={s: f"step {s}" for s in STATES},
        closure_reasons=REASONS,
        caseworkers=tuple(caseworkers),
        threshold=k,
        caseload_limit=limit,
    )


def case(n: int, state: str = "implementation", **fields: Any) -> dict[str, Any]:
    base = {
        "case_id": f"CP-{n:08d}".replace("0", "A"),
        "state": state,
        "caseworker": "cw-a",
        "team": "north",
        "risk_level": "medium",
        "sex": "female",
        "age_band": "5_11",
        "separation_status": "with_primary_caregiver",
        "closure_reason": None,
        "next_follow_up_due": None,
        "next_review_due": None,
    }
    base.update(fields)
    return base


# -- independent checks -------------------------------------------------------------------


def equations(
    grid: Grid, hidden: set[tuple[int, int]]
) -> tuple[list[list[Fraction]], list[tuple[int, int]]]:
    """The published lines as equations over the hidden entries (coefficients only)."""
    rows, cols = grid.shape
    unknowns = sorted(hidden)
    where = {p: n for n, p in enumerate(unknowns)}
    lines: list[tuple[list[tuple[int, int]], tuple[int, int]]] = []
    if grid.row_totals:
        lines += [([(i, j) for j in range(cols)], (i, cols)) for i in range(rows)]
    if grid.column_totals:
        lines += [([(i, j) for i in range(rows)], (rows, j)) for j in range(cols)]
    if grid.row_totals and grid.column_totals:
        lines.append(([(rows, j) for j in range(cols)], (rows, cols)))
        lines.append(([(i, cols) for i in range(rows)], (rows, cols)))
    matrix = []
    for parts, total in lines:
        row = [Fraction(0)] * len(unknowns)
        for p in parts:
            if p in where:
                row[where[p]] += 1
        if total in where:
            row[where[total]] -= 1
        matrix.append(row)
    return matrix, unknowns


def rank(matrix: list[list[Fraction]]) -> int:
    m = [row[:] for row in matrix]
    r = 0
    width = len(m[0]) if m else 0
    for col in range(width):
        pivot = next((i for i in range(r, len(m)) if m[i][col] != 0), None)
        if pivot is None:
            continue
        m[r], m[pivot] = m[pivot], m[r]
        for i in range(len(m)):
            if i != r and m[i][col] != 0:
                f = m[i][col] / m[r][col]
                m[i] = [a - f * b for a, b in zip(m[i], m[r], strict=True)]
        r += 1
    return r


def linearly_determined(grid: Grid, hidden: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Hidden entries that are a linear combination of the published figures: adding the
    unit vector of the entry to the equations does not raise their rank."""
    matrix, unknowns = equations(grid, set(hidden))
    if not unknowns:
        return []
    base = rank(matrix)
    found = []
    for n, p in enumerate(unknowns):
        unit = [Fraction(int(i == n)) for i in range(len(unknowns))]
        if rank([*matrix, unit]) == base:
            found.append(p)
    return found


def another_value_possible(grid: Grid, s: Suppression, k: int, u: tuple[int, int]) -> bool:
    """Whether some table of whole numbers fits everything published (visible counts,
    totals, and the range of every mark) with a different value at ``u``."""
    hidden = sorted(s.hidden)
    cap = 2 * sum(map(sum, grid.cells)) + 2 * k
    domain = {}
    for p in hidden:
        value = grid.value(p)
        if p in s.primary:
            domain[p] = (s.floor, k - 1)
        else:
            domain[p] = (k if value >= k else 0, cap)
    rows, cols = grid.shape
    lines = []
    matrix_lines: list[tuple[list[tuple[int, int]], tuple[int, int]]] = []
    if grid.row_totals:
        matrix_lines += [([(i, j) for j in range(cols)], (i, cols)) for i in range(rows)]
    if grid.column_totals:
        matrix_lines += [([(i, j) for i in range(rows)], (rows, j)) for j in range(cols)]
    if grid.row_totals and grid.column_totals:
        matrix_lines.append(([(rows, j) for j in range(cols)], (rows, cols)))
        matrix_lines.append(([(i, cols) for i in range(rows)], (rows, cols)))
    for parts, total in matrix_lines:
        plus = [p for p in parts if p in domain]
        minus = [total] if total in domain else []
        known = sum(grid.value(p) for p in parts if p not in domain)
        lines.append((plus, minus, (0 if total in domain else grid.value(total)) - known))
    order = [u, *[p for p in hidden if p != u]]
    chosen: dict[tuple[int, int], int] = {}

    def fits() -> bool:
        for plus, minus, constant in lines:
            lo = sum(chosen.get(p, domain[p][0]) for p in plus) - sum(
                chosen.get(p, domain[p][1]) for p in minus
            )
            hi = sum(chosen.get(p, domain[p][1]) for p in plus) - sum(
                chosen.get(p, domain[p][0]) for p in minus
            )
            if not lo <= constant <= hi:
                return False
        return True

    def search(n: int) -> bool:
        if n == len(order):
            return True
        p = order[n]
        lo, hi = domain[p]
        for value in sorted(range(lo, hi + 1), key=lambda v: (abs(v - grid.value(p)), v)):
            if p == u and value == grid.value(u):
                continue
            chosen[p] = value
            if fits() and search(n + 1):
                return True
            del chosen[p]
        return False

    return search(0)


def random_grid(rng: random.Random, max_rows: int, max_cols: int, values: Sequence[int]) -> Grid:
    rows, cols = rng.randint(1, max_rows), rng.randint(1, max_cols)
    cells = [[rng.choice(values) for _ in range(cols)] for _ in range(rows)]
    row_totals, column_totals = rng.random() < 0.8, rng.random() < 0.8
    if not (row_totals or column_totals):
        column_totals = True
    return Grid.of(cells, row_totals=row_totals, column_totals=column_totals)


# -- primary suppression ------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 5, 10])
def test_every_count_below_the_threshold_is_shown_as_less_than_k(k: int) -> None:
    counts = list(range(0, 2 * k + 1))
    table = stats.count_table(
        "t",
        "t",
        ("x",),
        [str(n) for n in counts],
        ["n"],
        [[n] for n in counts],
        k,
        row_totals=False,
        column_totals=False,
    )
    for n, (shown,) in zip(counts, table.cells, strict=True):
        if n == 0:
            assert shown == 0
        elif n < k:
            assert shown == f"<{k}"
        else:
            assert shown == n


def test_threshold_comes_from_the_settings_and_is_at_least_two() -> None:
    with pytest.raises(ValueError):
        suppress(Grid.of([[1]]), 1)
    result = stats.compute([case(n) for n in range(25)], [], programme(k=30), AS_OF)
    assert result.tables[0].cells == [["<30"]]


# -- complementary suppression ------------------------------------------------------------


def published_lines(grid: Grid) -> list[list[tuple[int, int]]]:
    return [[*parts, total] for parts, total in grid.lines()]


def test_no_line_has_exactly_one_hidden_entry() -> None:
    grid = Grid.of([[3, 7, 10], [6, 8, 9], [12, 1, 5]])
    s = suppress(grid, 5)
    assert s.primary == {(0, 0), (2, 1)}
    for line in published_lines(grid):
        assert sum(p in s.hidden for p in line) != 1


def test_next_smallest_cell_is_hidden_beside_a_small_one() -> None:
    grid = Grid.of([[3], [7], [12], [20]], row_totals=False)
    s = suppress(grid, 5)
    assert s.hidden == {(0, 0), (1, 0)}  # 7 is the next smallest; the total stays
    table = stats.count_table(
        "t", "t", ("x",), list("abcd"), ["n"], [[3], [7], [12], [20]], 5, row_totals=False
    )
    assert [row[0] for row in table.cells] == ["<5", "c", 12, 20]
    assert table.column_totals == [42]


def test_a_total_that_would_reveal_its_only_small_cell_is_hidden() -> None:
    # One small count and zeros: the row total would say it; the total goes too.
    grid = Grid.of([[3, 0, 0], [10, 12, 7]])
    s = suppress(grid, 5)
    assert (0, 3) in s.hidden  # the row total of the first row (3) is itself small
    assert not linearly_determined(grid, s.hidden)
    for u in s.hidden:
        assert another_value_possible(grid, s, 5, u)


def test_small_cells_adding_up_with_a_complement_to_k_plus_one_are_protected() -> None:
    # "<5" beside "c" with a visible total of 6 could only be 1 + 5: another cell goes.
    grid = Grid.of([[1], [5], [9]], row_totals=False)
    s = suppress(grid, 5)
    assert len(s.hidden) >= 3 or (1, 0) in s.hidden
    for u in s.hidden:
        assert another_value_possible(grid, s, 5, u)


def test_two_small_cells_at_the_top_of_their_range_are_protected() -> None:
    # "<5" and "<5" with a visible total of 8 could only be 4 and 4.
    grid = Grid.of([[4, 4, 9]], column_totals=False)
    s = suppress(grid, 5)
    for u in s.hidden:
        assert another_value_possible(grid, s, 5, u)


def test_no_suppressed_cell_follows_from_the_totals_by_linear_algebra() -> None:
    """Solve the linear system of the published row and column totals: for each hidden
    entry, its unit vector must not lie in the span of the equations."""
    rng = random.Random(20260401)
    values = (0, 0, 1, 2, 3, 4, 5, 6, 8, 11, 15, 30)
    checked = 0
    for _ in range(400):
        grid = random_grid(rng, 5, 4, values)
        for k in (3, 5):
            s = suppress(grid, k)
            assert not linearly_determined(grid, s.hidden), grid
            for line in published_lines(grid):
                assert sum(p in s.hidden for p in line) != 1
            checked += len(s.hidden)
    assert checked > 500


def test_no_suppressed_cell_can_be_pinned_down_with_whole_numbers() -> None:
    """Stronger than the linear check: a reader who also uses the ranges of the marks and
    that counts are whole numbers still finds another value for every hidden entry."""
    rng = random.Random(7)
    values = (0, 1, 2, 3, 4, 5, 6, 7, 9, 12)
    for _ in range(250):
        grid = random_grid(rng, 3, 3, values)
        k = rng.choice((3, 5))
        s = suppress(grid, k)
        for u in s.hidden:
            if u in s.primary and s.floor == k - 1:
                continue  # "<2" says 1 by itself: a threshold of 2 hides nothing
            assert another_value_possible(grid, s, k, u), (grid, k, u)


def test_a_table_never_holds_a_hidden_value() -> None:
    table = stats.count_table(
        "t", "t", ("a", "b"), ["r1", "r2"], ["c1", "c2"], [[3, 17], [13, 21]], 5
    )
    shown = json.dumps(table.as_dict())
    assert "17" not in shown and "13" not in shown  # complementary cells of the 3
    assert table.cells[0][0] == "<5"


# -- the statistics -----------------------------------------------------------------------


def test_counts_by_step_risk_and_totals() -> None:
    cases = [case(n, "implementation", risk_level="high") for n in range(12)]
    cases += [case(100 + n, "assessment", risk_level="low") for n in range(9)]
    cases += [case(200 + n, "closed", closure_reason="objectives_met") for n in range(6)]
    result = stats.compute(cases, [], programme(), AS_OF)
    tables = {t.id: t for t in result.tables}
    assert tables["open_cases"].cells == [[21]]
    table = tables["open_by_step_and_risk"]
    assert table.dimensions == ("step", "risk level")
    impl = table.rows.index("step implementation")
    assert table.cells[impl][0] == 12
    assert table.row_totals is not None and table.row_totals[impl] == 12
    assert table.total == 21
    reasons = tables["closure_reasons"]
    assert reasons.cells[reasons.rows.index("objectives met")] == [6]


def test_caseload_bands_count_caseworkers_not_cases_and_name_nobody() -> None:
    workers = [f"cw-{n}" for n in range(8)]
    cases = []
    for n, worker in enumerate(workers):
        load = (3, 12, 30, 2, 9, 26, 5, 7)[n]
        cases += [case(1000 * n + m, caseworker=worker) for m in range(load)]
    result = stats.compute(cases, [], programme(caseworkers=[*workers, "cw-idle"]), AS_OF)
    table = next(t for t in result.tables if t.id == "caseload")
    assert table.rows == ["8 or fewer", "9–25", "more than 25"]
    assert table.cells == [[5], ["<5"], ["<5"]]  # 2 with 9-25 and 2 with more than 25
    assert table.column_totals == [9]
    dumped = json.dumps(result.as_dict())
    assert "cw-" not in dumped and "CP-" not in dumped


def test_overdue_follow_ups_and_reviews() -> None:
    cases = [case(n, next_follow_up_due="2026-03-01", risk_level="high") for n in range(7)]
    cases += [case(100 + n, next_review_due="2026-03-31", risk_level="low") for n in range(6)]
    cases += [
        case(200 + n, next_follow_up_due="2026-04-01", next_review_due="2026-05-01")
        for n in range(10)
    ]  # due today or later: not overdue
    table = next(
        t for t in stats.compute(cases, [], programme(), AS_OF).tables if t.id == "overdue"
    )
    assert table.cells[0][:3] == [7, 0, 0]
    assert table.cells[1][:3] == [0, 0, 6]
    assert table.row_totals == [7, 6]


def history(case_key: str, start: dt.date, path: Sequence[tuple[str, int]]) -> list[Change]:
    """A case's state changes: it enters each state after the given number of days."""
    changes = [Change(case_key, start, None, "identified")]
    day, state = start, "identified"
    for target, days in path:
        day = day + dt.timedelta(days=days)
        changes.append(Change(case_key, day, state, target))
        state = target
    return changes


def test_time_in_state_median_and_percentile_only_from_ten_stays() -> None:
    changes: list[Change] = []
    start = dt.date(2025, 6, 1)
    for n in range(10):
        changes += history(f"a{n}", start, [("registered", n + 1), ("assessment", 2 * n + 2)])
    for n in range(9):
        changes += history(
            f"b{n}", start, [("registered", 1), ("immediate_action", 3), ("assessment", 4)]
        )
    table = stats.time_in_state(changes, programme())
    rows = dict(zip(table.rows, table.cells, strict=True))
    identified = rows["step identified (identified)"]
    assert identified[0] == 19
    registered = rows["step registered (registered)"]
    # 10 stays of 2, 4, ..., 20 days and 9 of 3 days: median 3, 75th percentile 11
    assert registered[0] == 19 and registered[1] == "3" and registered[2] == "11"
    immediate = rows["step immediate_action (immediate_action)"]
    assert immediate == [9, stats.NOT_SHOWN, stats.NOT_SHOWN]  # n = 9 < 10
    assessment = rows["step assessment (assessment)"]
    assert assessment == [0, stats.NOT_SHOWN, stats.NOT_SHOWN]  # still in it: no stay ended


def test_time_in_state_counts_fewer_than_k_stays_as_small() -> None:
    changes = history("x", dt.date(2025, 6, 1), [("registered", 3)])
    table = stats.time_in_state(changes, programme())
    assert table.cells[0] == ["<5", stats.NOT_SHOWN, stats.NOT_SHOWN]


def test_registrations_and_closures_by_month() -> None:
    changes: list[Change] = []
    for n in range(6):
        changes += history(f"r{n}", dt.date(2026, 1, 3), [("registered", 2)])
    for n in range(7):
        changes += history(f"c{n}", dt.date(2026, 2, 1), [("registered", 1), ("closed", 20)])
    changes += history("old", dt.date(2024, 1, 1), [("registered", 1)])  # outside the window
    table = stats.registrations_and_closures(changes, programme(), AS_OF)
    rows = dict(zip(table.rows, table.cells, strict=True))
    assert table.rows[-1] == "2026-04" and len(table.rows) == stats.MONTHS_SHOWN
    assert rows["2026-01"] == [6, 0]
    assert rows["2026-02"] == [7, 7]
    assert table.column_totals == [13, 7]
    assert table.row_totals is None  # registrations and closures do not add up


def test_death_is_folded_into_other_below_the_threshold() -> None:
    p = programme()
    closed = [case(n, "closed", closure_reason="objectives_met") for n in range(9)]
    few = stats.closure_reasons(
        [*closed, *(case(90 + n, "closed", closure_reason="death") for n in range(2))], p
    )
    assert "death" not in few.rows
    assert few.cells[few.rows.index(stats.OTHER)] == ["<5"]
    many = stats.closure_reasons(
        [*closed, *(case(90 + n, "closed", closure_reason="death") for n in range(5))], p
    )
    assert many.cells[many.rows.index("death")] == [5]
    assert stats.OTHER not in many.rows


def test_separation_and_sex_by_age() -> None:
    cases = [
        case(n, separation_status="unaccompanied", sex="male", age_band="15_17") for n in range(8)
    ]
    cases += [case(100 + n, separation_status="with_primary_caregiver") for n in range(15)]
    cases += [case(200 + n, "closed", separation_status="separated") for n in range(6)]
    result = stats.compute(cases, [], programme(), AS_OF)
    tables = {t.id: t for t in result.tables}
    sep = tables["separation"]
    assert sep.cells[0] == [8, 6] and sep.cells[1] == [15, 0]
    ages = tables["sex_by_age"]
    assert ages.cells[ages.rows.index("15–17")][1] == 8
    assert ages.cells[ages.rows.index("5–11")][0] == 15


def test_no_table_has_more_than_two_dimensions() -> None:
    cases = [case(n, risk_level=("high", "low")[n % 2]) for n in range(40)]
    for table in stats.compute(cases, [], programme(), AS_OF).tables:
        assert 1 <= len(table.dimensions) <= 2
    with pytest.raises(ValueError):
        stats.Table("t", "t", ("a", "b", "c"), ["r"], ["c"], [[1]])


def test_a_small_programme_publishes_only_caseload_overdue_and_a_total() -> None:
    result = stats.compute(
        [case(n) for n in range(stats.SMALL_PROGRAMME - 1)], [], programme(), AS_OF
    )
    assert result.withheld
    assert [t.id for t in result.tables] == ["open_cases", "caseload", "overdue"]
    bigger = stats.compute([case(n) for n in range(stats.SMALL_PROGRAMME)], [], programme(), AS_OF)
    assert not bigger.withheld and len(bigger.tables) == 9


def test_output_holds_no_case_or_staff_ids_and_no_dates_of_events() -> None:
    cases = [
        case(n, caseworker=f"cw-secret-{n % 3}", next_follow_up_due="2026-02-17") for n in range(30)
    ]
    changes = [
        c
        for n in range(30)
        for c in history(cases[n]["case_id"], dt.date(2025, 11, 9), [("registered", 4)])
    ]
    dumped = json.dumps(stats.compute(cases, changes, programme(), AS_OF).as_dict())
    assert "secret" not in dumped
    assert not any(c["case_id"] in dumped for c in cases)
    assert "2025-11-09" not in dumped and "2026-02-17" not in dumped and "2025-11-13" not in dumped
