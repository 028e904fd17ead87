"""The monthly report, pure: open fields, state histories and sealed forms in, tables out.

The property test draws whole programmes (cases with random histories) and checks what
the public version publishes with the two solvers of tests/test_stats.py, written apart
from cmgit.stats: no published count from 1 to k-1, and no hidden count that follows from
the published totals, the number of active cases included.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmgit import reports, stats
from cmgit.errors import UsageError
from cmgit.reports import Month
from cmgit.reports.figures import ACTIVE
from cmgit.stats import Grid, Suppression

from .test_stats import another_value_possible, linearly_determined
from .test_stats import programme as procedure

MARCH = Month(2026, 3)
# Plausible next states: a walk through them makes a case's state history.
NEXT = {
    "identified": ("registered", "registered", "closed"),
    "registered": ("assessment", "assessment", "closed"),
    "assessment": ("case_planning", "immediate_action", "closed"),
    "immediate_action": ("case_planning",),
    "case_planning": ("implementation",),
    "implementation": ("follow_up_review",),
    "follow_up_review": ("closure_pending", "implementation"),
    "closure_pending": ("post_closure_monitoring", "post_closure_monitoring", "closed"),
    "post_closure_monitoring": ("closed", "closed", "assessment"),
    "closed": ("registered",),
}
PLANNED = ("objectives_met", "reintegrated", "care_arrangement_secured")


def history(rng: random.Random, start: dt.date, end: dt.date) -> list[str]:
    state, day = "identified", start
    found = [f"{day.isoformat()} {state}"]
    while rng.random() < 0.85:
        day += dt.timedelta(days=rng.choice((0, 3, 10, 25, 40, 95)))
        if day > end:
            break
        state = rng.choice(NEXT[state])
        found.append(f"{day.isoformat()} {state}")
    return found


def random_case(rng: random.Random, end: dt.date = MARCH.last) -> dict[str, Any]:
    start = end - dt.timedelta(days=rng.randint(0, 500))
    steps = history(rng, start, end)
    closed = steps[-1].endswith(("closed", "post_closure_monitoring"))
    return {
        "state_history": steps,
        "risk_level": rng.choice(("high", "medium", "medium", "low", None)),
        "sex": rng.choice(("female", "male", "female", "male", "other", None)),
        "separation_status": rng.choice(
            ("unaccompanied", "separated", "with_primary_caregiver", None)
        ),
        "closure_reason": rng.choice((*PLANNED, "death", "turned_18")) if closed else None,
    }


def build(
    cases: list[dict[str, Any]], month: Month = MARCH, k: int = 5
) -> tuple[list[reports.Figure], reports.PublicReport]:
    proc = procedure(k)
    rows = [reports.case_month(case, proc, month, 3) for case in cases]
    active, figures = reports.open_figures(rows, proc)
    return figures, reports.public_report(month, "c0ffee", "Test", active, figures, k)


def shown_entries(table: stats.Table) -> dict[tuple[int, int], stats.Shown]:
    """Every entry of a published table on its extended grid, as shown."""
    r, c = len(table.rows), len(table.columns)
    found = {(i, j): table.cells[i][j] for i in range(r) for j in range(c)}
    if table.row_totals is not None:
        found.update({(i, c): v for i, v in enumerate(table.row_totals)})
    if table.column_totals is not None:
        found.update({(r, j): v for j, v in enumerate(table.column_totals)})
    if table.total is not None:
        found[(r, c)] = table.total
    return found


def check_published(figures: list[reports.Figure], rep: reports.PublicReport, k: int) -> None:
    assert not (isinstance(rep.active, int) and 0 < rep.active < k)
    by_id = {f.id: f for f in figures}
    for table in rep.tables:
        figure = by_id[table.id]
        assert len(table.dimensions) <= 2
        grid = Grid.of(
            figure.counts, row_totals=figure.row_totals, column_totals=figure.column_totals
        )
        entries = shown_entries(table)
        assert set(entries) == set(grid.entries())
        for pos, value in entries.items():
            if isinstance(value, int):
                assert value == grid.value(pos)
                assert not 0 < value < k, (table.id, pos, value)
            else:
                assert value in (stats.hidden_mark(k), stats.COMPLEMENT)
        hidden = {p for p, v in entries.items() if isinstance(v, str)}
        if figure.population == ACTIVE:
            # The number of active cases is published at the top: the total stays shown.
            assert entries[grid.shape] == rep.active
        assert not linearly_determined(grid, hidden), table.id
        primary = {p for p in hidden if entries[p] == stats.hidden_mark(k)}
        floor = 0 if any(grid.value(p) == 0 for p in primary) else 1
        if len(hidden) <= 8 and sum(map(sum, grid.cells)) <= 80:
            s = Suppression(frozenset(primary), frozenset(hidden), floor)
            for u in hidden:
                if u in primary and (floor, k - 1) == (k - 1, k - 1):
                    continue
                assert another_value_possible(grid, s, k, u), (table.id, u)
    for label, rate in rep.rates.items():
        row = next(t for t in rep.tables if t.id == "rates").rows.index(label)
        table = next(t for t in rep.tables if t.id == "rates")
        if rate != stats.NOT_SHOWN:
            assert all(isinstance(v, int) for v in table.cells[row])
            assert isinstance(table.row_totals, list)
            total = table.row_totals[row]
            assert isinstance(total, int) and total >= stats.MIN_N_DERIVED


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    size=st.integers(0, 140),
    k=st.sampled_from((3, 5, 10)),
    shift=st.integers(-14, 0),
)
def test_no_published_cell_is_small_or_recoverable_from_the_totals(
    seed: int, size: int, k: int, shift: int
) -> None:
    rng = random.Random(seed)
    cases = [random_case(rng) for _ in range(size)]
    figures, rep = build(cases, MARCH.shifted(shift), k)
    check_published(figures, rep, k)


def test_many_seeded_programmes_publish_nothing_small() -> None:
    """The same property over a fixed sweep, so a failure repeats without hypothesis."""
    for seed in range(40):
        rng = random.Random(seed)
        k = rng.choice((3, 5))
        cases = [random_case(rng) for _ in range(rng.randint(15, 200))]
        figures, rep = build(cases, MARCH, k)
        check_published(figures, rep, k)
    assert rep.tables


def test_the_same_month_gives_the_same_bytes_whatever_the_order_of_the_cases() -> None:
    rng = random.Random(3)
    cases = [random_case(rng) for _ in range(120)]
    first = build(cases)[1].to_bytes()
    rng.shuffle(cases)
    assert build(cases)[1].to_bytes() == first
    doc = json.loads(first)
    assert doc["month"] == "2026-03" and doc["commit"] == "c0ffee"
    assert set(doc) == {
        "report",
        "version",
        "month",
        "programme",
        "commit",
        "suppression_threshold",
        "active_cases",
        "small_programme",
        "tables",
        "rates",
        "withheld",
    }


def test_a_small_programme_publishes_only_the_number_of_active_cases() -> None:
    rng = random.Random(5)
    cases = [random_case(rng, MARCH.last) for _ in range(8)]
    _, rep = build(cases)
    assert rep.small_programme and rep.tables == [] and rep.rates == {}


# -- the month and the histories ----------------------------------------------------------


def test_month_parsing_and_arithmetic() -> None:
    assert Month.parse("2026-03") == MARCH
    assert (MARCH.first, MARCH.last) == (dt.date(2026, 3, 1), dt.date(2026, 3, 31))
    assert Month(2024, 2).last == dt.date(2024, 2, 29)
    assert MARCH.shifted(-3) == Month(2025, 12)
    assert MARCH.window_start == dt.date(2025, 4, 1)
    assert Month.last_complete(dt.date(2026, 4, 1)) == MARCH
    assert MARCH.has_ended(dt.date(2026, 4, 1)) and not MARCH.has_ended(dt.date(2026, 3, 31))
    for bad in ("2026-3", "2026-13", "26-03", "2026-03-01", "march", "0000-01"):
        with pytest.raises(UsageError):
            Month.parse(bad)


def case_of(*steps: str, **fields: Any) -> dict[str, Any]:
    return {"state_history": list(steps), **fields}


def test_a_case_is_active_when_open_on_any_day_of_the_month() -> None:
    proc = procedure()
    before = case_of("2026-01-05 identified", "2026-02-01 registered", "2026-02-20 closed")
    during = case_of("2026-01-05 identified", "2026-03-31 registered")
    later = case_of("2026-04-01 identified")
    monitored = case_of("2026-01-05 identified", "2026-02-01 post_closure_monitoring")
    found = [reports.case_month(c, proc, MARCH, 3) for c in (before, during, later, monitored)]
    assert [c.active for c in found] == [False, True, False, True]
    assert [c.status for c in found[1:2] + found[3:]] == ["pending", "closed"]


def test_events_closures_reopening_and_monitoring() -> None:
    proc = procedure()
    case = case_of(
        "2025-05-01 identified",
        "2025-05-02 registered",
        "2025-06-01 closure_pending",
        "2025-07-01 post_closure_monitoring",
        "2025-10-01 closed",
        "2026-03-02 registered",
        "2026-03-20 closure_pending",
        "2026-03-21 closed",
        closure_reason="objectives_met",
    )
    month = reports.case_month(case, proc, MARCH, 3)
    assert month.events == {"reopened": 1}
    assert month.closure_reasons == ["objectives_met"]
    assert month.reopened == [True, False]  # the July closure reopened within a year
    # Archived in October after three months' monitoring; in March without any.
    assert month.monitored == [True, False]
    short = reports.case_month(case, proc, MARCH, 4)
    assert short.monitored == [False, False]


def test_closure_reason_only_for_the_latest_closure() -> None:
    proc = procedure()
    case = case_of(
        "2026-03-01 identified",
        "2026-03-02 closed",
        "2026-03-05 registered",
        "2026-03-09 closed",
        closure_reason="duplicate",
    )
    found = reports.case_month(case, proc, MARCH, 3)
    assert found.closure_reasons == [stats.NOT_SET, "duplicate"]
    assert found.events == {"identified": 1, "reopened": 1}


def test_an_imported_case_counts_as_identified_on_its_identified_on() -> None:
    """An import starts a case's history in its state on the day it entered it: that is
    no identification; its identified_on is, when the case was identified at all."""
    proc = procedure()
    imported = case_of("2026-03-10 registered", identified_on="2026-01-05")
    assert reports.case_month(imported, proc, MARCH, 3).events == {}
    assert reports.case_month(imported, proc, MARCH, 3).active
    january = reports.Month.parse("2026-01")
    assert reports.case_month(imported, proc, january, 3).events == {"identified": 1}
    closed = case_of("2026-03-10 closed", identified_on="2026-03-01", closure_reason="duplicate")
    found = reports.case_month(closed, proc, MARCH, 3)
    assert found.events == {"identified": 1} and found.closure_reasons == ["duplicate"]


def test_registrations_and_closures_of_the_month_are_internal_only() -> None:
    """`cmgit stats` publishes them by month on the same site, where one may be hidden to
    protect another: the public report leaves them out; deaths are not folded inside."""
    proc = procedure()
    cases = [
        reports.case_month(
            case_of("2026-03-01 identified", "2026-03-02 closed", closure_reason="death"),
            proc,
            MARCH,
            3,
        )
    ]
    public = {f.id: f for f in reports.open_figures(cases, proc)[1]}
    internal = {f.id: f for f in reports.open_figures(cases, proc, internal=True)[1]}
    assert "closures_by_reason" not in public
    assert "registered" not in public["movement"].labels[0]
    assert "registered" in internal["movement"].labels[0]
    reasons = internal["closures_by_reason"]
    assert reasons.counts[reasons.labels[0].index("death")] == [1]


def test_a_table_whose_total_cannot_be_shown_safely_is_withheld() -> None:
    # One entry: the total is the entry, so showing it shows the small count.
    figure = reports.Figure("t", "t", ("a", "b"), (("r",), ("c",)), [[3]], population=ACTIVE)
    assert reports.published(figure, 5, total_shown=True) is None
    assert reports.published(figure, 5) is not None


def test_no_public_table_has_three_dimensions() -> None:
    figure = reports.Figure("t", "t", ("a", "b", "c"), (("r",), ("c",), ("d",)), [[[7]]])
    with pytest.raises(ValueError):
        reports.published(figure, 5)


# -- the sealed forms ---------------------------------------------------------------------


def forms() -> dict[str, Any]:
    return {
        "identification": {"identification_source": "other_agency_referral"},
        "registration": {"initial_protection_concerns": ["poverty"], "child": {"full_name": "X"}},
        "assessment": [
            {"completed_on": "2026-01-10", "protection_concerns": ["neglect"]},
            {"completed_on": "2026-03-10", "protection_concerns": ["early_marriage", "gbv"]},
            {"completed_on": "2026-04-10", "protection_concerns": ["recruitment"]},
        ],
        "referral": [
            {"referred_on": "2026-02-01", "service_type": "education", "status": "completed"},
            {"referred_on": "2026-03-03", "service_type": "medical_health", "status": "pending"},
            {"referred_on": "2026-04-03", "service_type": "legal_aid_representation"},
        ],
        "bia": [{"conducted_on": "2026-02-01"}],
        "bid": [{"panel_date": "2026-03-15", "decision": "family_reunification"}],
        "ftr": {"status": "reunified", "reunified_on": "2026-03-30"},
        "post_closure_monitoring": {"ended_on": "2026-03-01", "monitoring_outcome": "no_concerns"},
    }


def test_sealed_facts_are_codes_as_of_the_end_of_the_month() -> None:
    facts = reports.sealed_facts(forms(), MARCH)
    assert facts.concerns == ("early_marriage", "gbv")
    assert facts.referrals_in_month == (("medical_health", "pending"),)
    assert facts.referred_to == ("education", "medical_health")
    assert facts.referred_in and facts.bia_done
    assert facts.bid_decisions == ("family_reunification",)
    assert facts.ftr_status == "reunified" and facts.reunified_in_month
    assert facts.monitoring_outcome == "no_concerns"
    earlier = reports.sealed_facts(forms(), Month(2025, 12))
    assert earlier.concerns == ("poverty",)  # no assessment yet: those of registration
    assert earlier.referred_to == () and not earlier.bia_done and earlier.bid_decisions == ()


def test_internal_figures_hold_the_annex_5_table_in_three_dimensions() -> None:
    proc = procedure()
    month = reports.case_month(
        case_of("2026-01-01 identified", "2026-01-02 registered", sex="female", risk_level="high"),
        proc,
        MARCH,
        3,
    )
    figures = {
        f.id: f for f in reports.sealed_figures([(month, reports.sealed_facts(forms(), MARCH))])
    }
    annex = figures["annex5_concern_sex_risk"]
    categories = annex.labels[0]
    assert len(annex.dimensions) == 3
    # early_marriage is a social problem; gbv is outside Annex 5's categories: "other".
    assert annex.counts[categories.index("social_problem")][0][0] == 1
    assert annex.counts[categories.index("other")][0][0] == 1
    assert sum(v for plane in annex.counts for row in plane for v in row) == 2
    own = figures["own_and_referred"]
    assert own.counts == [[0, 0], [0, 1]]
    assert figures["referrals_by_service_and_status"].counts == [[1]]
    body = reports.internal_report(MARCH, "c0ffee", "Test", 1, list(figures.values()), 0)
    assert body == reports.internal_report(MARCH, "c0ffee", "Test", 1, list(figures.values()), 0)
    assert b'"X"' not in body  # no name reaches it
