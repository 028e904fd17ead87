"""The counts of one month from the open fields and state histories of the cases.

Both versions of the report start here: the public one suppresses these counts, the
internal one prints them whole beside the counts of the sealed forms. A case is *active*
in the month when it was in an open step (post-closure monitoring included, as in
``cmgit stats``) on any day of it; its status at the month's end is *closed* (closed or
in post-closure monitoring) or *pending*.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..stats import (
    DEFAULT_THRESHOLD,
    IN_FAMILIES,
    NOT_SET,
    RISK_LEVELS,
    UASC,
    by_reason,
    to_day,
)
from ..stats import Programme as Procedure
from ..workflow import CLOSED, MONITORING, Workflow
from .month import Month, Step, add_months, changes, state_on, timeline

# The open fields the report reads.
REPORT_FIELDS = (
    "state_history",
    "risk_level",
    "sex",
    "separation_status",
    "closure_reason",
    "identified_on",
)
SEX_COLUMNS = ("female", "male")
OTHER_SEX = "other or not recorded"
STATUSES = ("closed", "pending")
GROUPS = ("unaccompanied or separated", "children in families", NOT_SET)
# Closures the plan led to, the ones post-closure monitoring is meant for (domain ST14).
PLANNED_REASONS = frozenset({"objectives_met", "reintegrated", "care_arrangement_secured"})
REOPEN_DAYS = 365
ACTIVE = "active"  # the population of the tables whose grand total is the active cases


def procedure(
    workflow: Workflow,
    closure_reasons: Sequence[str],
    settings: Mapping[str, Any],
    caseworkers: Sequence[str],
    profile: str,
) -> Procedure:
    """What the statistics and the report need to know of the workflow and the settings."""
    return Procedure(
        states=tuple(workflow.states),
        open_states=frozenset(workflow.held_states),
        caseload_states=workflow.caseload_states,
        finished_states=frozenset({CLOSED, MONITORING}),
        initial_state=workflow.initial_state,
        registered_state="registered",
        labels={s: workflow.label(s, profile) for s in workflow.states},
        closure_reasons=tuple(closure_reasons),
        caseworkers=tuple(caseworkers),
        threshold=int(settings.get("suppression_threshold", DEFAULT_THRESHOLD)),
        caseload_limit=int(settings.get("caseload_limit", 25)),
    )


@dataclass(frozen=True)
class Figure:
    """One table of counts: what the public version suppresses and the internal one
    prints whole. ``population`` names what its grand total counts, where that is
    published elsewhere in the report too."""

    id: str
    title: str
    dimensions: tuple[str, ...]
    labels: tuple[tuple[str, ...], ...]
    counts: Any  # nested lists of whole numbers, one level a dimension
    row_totals: bool = True
    column_totals: bool = True
    population: str = ""
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "dimensions": list(self.dimensions),
            "labels": [list(labels) for labels in self.labels],
            "counts": self.counts,
            "note": self.note,
        }


@dataclass
class CaseMonth:
    """What one case adds to the month's figures; no date or ID of it is kept."""

    active: bool
    status: str
    risk: str
    sex: str
    group: str
    events: Counter[str] = field(default_factory=Counter)
    closure_reasons: list[str] = field(default_factory=list)
    # Of each closure in the twelve months to the month's end: reopened within a year?
    reopened: list[bool] = field(default_factory=list)
    # Of each planned closure archived in those months: monitored for the full period?
    monitored: list[bool] = field(default_factory=list)


def case_month(
    case: Mapping[str, Any], procedure: Procedure, month: Month, monitoring_months: int
) -> CaseMonth:
    steps = timeline(case.get("state_history"))
    finished = procedure.finished_states
    before = state_on(steps, month.first - dt.timedelta(days=1))
    in_month = [c for c in changes(steps) if month.first <= c[0] <= month.last]
    active = before in procedure.open_states or any(
        target in procedure.open_states for _, _, target in in_month
    )
    at_end = state_on(steps, month.last)
    sex = case.get("sex")
    status = case.get("separation_status")
    found = CaseMonth(
        active,
        "closed" if at_end in finished else "pending",
        str(case["risk_level"]) if case.get("risk_level") in RISK_LEVELS else NOT_SET,
        sex if sex in SEX_COLUMNS else OTHER_SEX,
        GROUPS[0] if status in UASC else GROUPS[1] if status in IN_FAMILIES else GROUPS[2],
    )
    last_closure = _last_closure(steps, finished)
    # An imported case's history starts in the state it was imported in, on the day it
    # entered it: it was identified on its identified_on, before it came into cmgit.
    imported = bool(steps) and steps[0][1] != procedure.initial_state
    identified = to_day(case.get("identified_on")) if imported else None
    if identified is not None and month.first <= identified <= month.last:
        found.events["identified"] += 1
    for day, source, target in in_month:
        if source is None:
            if not imported:
                found.events["identified"] += 1
        elif source == procedure.initial_state and target == procedure.registered_state:
            found.events["registered"] += 1
        elif source in finished and target not in finished:
            found.events["reopened"] += 1
        if source not in finished and target in finished:
            reason = case.get("closure_reason") if day == last_closure else None
            found.closure_reasons.append(reason if isinstance(reason, str) else NOT_SET)
    found.reopened = _reopened(steps, finished, month)
    if case.get("closure_reason") in PLANNED_REASONS:
        found.monitored = _monitored(steps, month, monitoring_months)
    return found


def _last_closure(steps: Sequence[Step], finished: frozenset[str]) -> dt.date | None:
    """The day of the case's latest closure: the one its open closure reason is about."""
    found = None
    for day, source, target in changes(steps):
        if source not in finished and target in finished:
            found = day
    return found


def _reopened(steps: Sequence[Step], finished: frozenset[str], month: Month) -> list[bool]:
    found = []
    moves = changes(steps)
    for n, (day, source, target) in enumerate(moves):
        if not (source not in finished and target in finished):
            continue
        if not month.window_start <= day <= month.last:
            continue
        found.append(
            any(
                later <= min(month.last, day + dt.timedelta(days=REOPEN_DAYS))
                and was in finished
                and now not in finished
                for later, was, now in moves[n + 1 :]
            )
        )
    return found


def _monitored(steps: Sequence[Step], month: Month, monitoring_months: int) -> list[bool]:
    """Of each archiving (the move to closed) in the twelve months: whether the case was in
    post-closure monitoring, just before, for at least the setting's months."""
    found = []
    moves = changes(steps)
    for n, (day, source, target) in enumerate(moves):
        if target != CLOSED or source == CLOSED:
            continue
        if not month.window_start <= day <= month.last:
            continue
        started = moves[n - 1][0] if n and source == MONITORING else None
        found.append(started is not None and add_months(started, monitoring_months) <= day)
    return found


def open_figures(
    cases: Sequence[CaseMonth], procedure: Procedure, *, internal: bool = False
) -> tuple[int, list[Figure]]:
    """The number of cases active in the month and the figures of their open fields, in
    the order they are published.

    Registrations and closures of the month are counted by ``cmgit stats`` too, on the
    same site, where a count may be hidden to protect another: published here as well, it
    would give that one away. So they are in the ``internal`` version only.
    """
    active = [c for c in cases if c.active]
    sexes = (*SEX_COLUMNS, OTHER_SEX)
    risks = (*RISK_LEVELS, NOT_SET)
    by_risk = [[sum(c.risk == r and c.sex == s for c in active) for s in sexes] for r in risks]
    by_group = [
        [sum(c.group == g and c.status == s for c in active) for s in STATUSES] for g in GROUPS
    ]
    events = Counter[str]()
    for c in cases:
        events.update(c.events)
    moves = ("identified", "registered", "reopened") if internal else ("identified", "reopened")
    figures = [
        Figure(
            "risk_by_sex",
            "Cases active in the month by risk level and sex",
            ("risk level", "sex"),
            (risks, sexes),
            by_risk,
            population=ACTIVE,
            note="Risk level as last assessed (Annex 5: High, Medium, Low by Male, Female).",
        ),
        Figure(
            "closed_or_pending",
            "Cases active in the month: closed or pending at its end",
            ("group", "status at the end of the month"),
            (GROUPS, STATUSES),
            by_group,
            population=ACTIVE,
            note="Closed: closed, or closed and in post-closure monitoring.",
        ),
        Figure(
            "movement",
            "New and reopened cases in the month",
            ("event",),
            (moves, ("cases",)),
            [[events[move]] for move in moves],
            row_totals=False,
            column_totals=False,
            note="Each is a different event: the rows are not added up.",
        ),
        rates(cases),
    ]
    if internal:
        figures.append(closures_by_reason(cases, procedure))
    return len(active), figures


def closures_by_reason(cases: Sequence[CaseMonth], procedure: Procedure) -> Figure:
    """Closures in the month by reason, deaths included however few."""
    found = Counter(reason for c in cases for reason in c.closure_reasons)
    rows, counts = by_reason(found, procedure, fold=False)
    return Figure(
        "closures_by_reason",
        "Closures in the month by reason",
        ("closure reason",),
        (tuple(rows), ("closures",)),
        [[n] for n in counts],
        row_totals=False,
    )


def rates(cases: Sequence[CaseMonth]) -> Figure:
    reopened = [flag for c in cases for flag in c.reopened]
    monitored = [flag for c in cases for flag in c.monitored]
    return Figure(
        "rates",
        "Reopening and post-closure monitoring over the twelve months to the month's end",
        ("indicator", "outcome"),
        (("closures reopened within a year", "planned closures monitored in full"), ("yes", "no")),
        [
            [sum(reopened), len(reopened) - sum(reopened)],
            [sum(monitored), len(monitored) - sum(monitored)],
        ],
        column_totals=False,
        note="Reopened: a closure in the twelve months that was reopened within a year of it "
        "(so far). Monitored in full: a case archived after a planned closure (objectives met, "
        "reintegrated, care arrangement secured) that spent at least the setting "
        "post_closure_monitoring_months in post-closure monitoring first.",
    )
