"""Random walks over the workflow: random moves and forms by random staff on random days.

Whatever is tried, after every step: every case is in one of the canonical states; an
accepted move is an edge of the transition table in schemas/workflow.yaml and added
exactly one commit; a refused command (any non-zero exit) left HEAD, the work tree and
the index as they were; nothing ends in an internal error.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmgit import demo, entries, ids, workflow

from .conftest import CANARY, STAFF, Programme, form

DATA = yaml.safe_load(
    (Path(__file__).resolve().parent.parent / "schemas" / "workflow.yaml").read_text()
)
EDGES = {(source, t["to"]) for t in DATA["transitions"].values() for source in t["from"]}
NEXT: dict[str, list[tuple[str, list[str]]]] = {}
for _t in DATA["transitions"].values():
    for _source in _t["from"]:
        NEXT.setdefault(_source, []).append((_t["to"], list(_t.get("reasons") or [])))
REASONS = sorted({r for t in DATA["transitions"].values() for r in t.get("reasons") or ()})
STAFF_IDS = [s[0] for s in STAFF]
EXPECTED_EXITS = {0, 2, 3, 4, 5}
START = dt.date(2025, 9, 1)

Maker = Callable[[demo.Forms, str, dt.date, random.Random], dict[str, Any]]


def _consent(f: demo.Forms, who: str, day: dt.date, r: random.Random) -> dict[str, Any]:
    return f.consent(
        who,
        r.choice(("child", "parent", "caregiver", "legal_guardian")),
        day,
        decision=r.choice(("granted", "granted", "declined")),
    )


def _assessment(f: demo.Forms, who: str, day: dt.date, r: random.Random) -> dict[str, Any]:
    return f.assessment(
        who,
        day - dt.timedelta(days=2),
        day,
        phase=r.choice(("initial", "comprehensive", "reassessment")),
        outcome=r.choice(("open_case", "open_case", "no_further_action")),
        level=r.choice(("low", "medium", "high")),
    )


def _referral(f: demo.Forms, who: str, day: dt.date, r: random.Random) -> dict[str, Any]:
    item = f.referral(
        who, day, r.choice(("medical_health", "education", "child_protection_authority"))
    )
    item["urgency"] = r.choice(("urgent", "routine"))
    return item


def _plan(f: demo.Forms, who: str, day: dt.date, r: random.Random) -> dict[str, Any]:
    return f.case_plan(who, day, achieved=r.random() < 0.5)


def _closure(f: demo.Forms, who: str, day: dt.date, r: random.Random) -> dict[str, Any]:
    reason = r.choice(REASONS_CLOSURE)
    item = f.closure(who, day - dt.timedelta(days=r.choice((0, 10, 40))), reason)
    if r.random() < 0.5:
        item["case_conference_id"] = "case_conference-1"
    return item


REASONS_CLOSURE = (
    "objectives_met",
    "reintegrated",
    "death",
    "inaccessible",
    "turned_18",
    "consent_declined",
    "no_protection_concern",
    "declined_services",
)

FORMS: dict[str, Maker] = {
    "identification": lambda f, who, day, r: f.identification(who, day),
    "consent": _consent,
    "registration": lambda f, who, day, r: f.registration(
        who,
        day,
        ["unaccompanied_or_separated", "child_labour"][: r.randint(0, 2)]
        or ["other_protection_risk"],
    ),
    "risk_assessment": lambda f, who, day, r: f.risk_assessment(
        who, day, r.choice(("low", "medium", "high")), immediate=r.random() < 0.3
    ),
    "immediate_action": lambda f, who, day, r: f.immediate_action(who, day, done=r.random() < 0.5),
    "assessment": _assessment,
    "bia": lambda f, who, day, r: f.bia(who, day),
    "ftr": lambda f, who, day, r: f.ftr(day),
    "referral": _referral,
    "case_plan": _plan,
    "follow_up": lambda f, who, day, r: f.follow_up(
        who,
        day - dt.timedelta(days=r.choice((0, 0, 3, 400))),
        successful=r.random() < 0.7,
        phase=r.choice(("in_case", "post_closure")),
    ),
    "review": lambda f, who, day, r: f.review(
        who, day, r.choice(("continue_plan", "revise_plan", "reassess", "propose_closure"))
    ),
    "closure": _closure,
    "case_conference": lambda f, who, day, r: f.conference(who, day),
    "post_closure_monitoring": lambda f, who, day, r: f.monitoring(
        day - dt.timedelta(days=r.choice((0, 100))), outcome=r.choice((None, "no_concerns"))
    ),
    "note": lambda f, who, day, r: {
        **form("note")["note"],
        "written_on": day.isoformat(),
        "written_by": who,
    },
    "reopen": lambda f, who, day, r: f.reopen(who, day),
}


def fresh_programme(template: Programme, base: Path) -> Programme:
    shutil.copytree(template.root.parent, base, symlinks=True)
    return Programme(base / "cases", base / "keys", base / "work")


def listed(programme: Programme, today: str) -> dict[str, dict[str, Any]]:
    result = programme.cli("list", "--json", as_=None, today=today)
    assert result.exit_code == 0, result.output
    return {r["case_id"]: r for r in json.loads(result.stdout)}


# The form that usually goes with a move to this state (closure with its reason, the
# monitoring plan, the reopen form); other moves take a random form or none.
MOVE_FORMS = {
    "closure_pending": "closure",
    "post_closure_monitoring": "post_closure_monitoring",
    "closed": "closure",
}


def form_for(source: str, target: str) -> str | None:
    if (source, target) in (("closed", "registered"), ("post_closure_monitoring", "assessment")):
        return "reopen"
    if (source, target) == ("post_closure_monitoring", "closed"):
        return "post_closure_monitoring"
    return MOVE_FORMS.get(target)


step_strategy = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(("move", "move", "move", "record", "record", "assign")),
        "case": st.sampled_from((0, 1, 1, 1, 2)),
        "actor": st.sampled_from(STAFF_IDS),
        "who": st.sampled_from(("caseworker", "caseworker", "supervisor", "supervisor", "anyone")),
        "legal": st.sampled_from((True, True, False)),
        "target": st.sampled_from(workflow.STATES),
        "reason": st.one_of(st.none(), st.sampled_from(REASONS)),
        "form": st.one_of(st.none(), st.sampled_from(sorted(FORMS))),
        "days": st.integers(0, 40),
        "pick": st.integers(0, 1000),
    }
)


@settings(
    max_examples=8,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)
@given(
    seed=st.integers(0, 10_000),
    start=st.sampled_from(
        (
            "registered",
            "assessment",
            "implementation",
            "follow_up_review",
            "closure_pending",
            "post_closure_monitoring",
        )
    ),
    steps=st.lists(step_strategy, min_size=1, max_size=12),
)
def test_random_walks_keep_the_workflow_invariants(
    programme_template: Programme,
    tmp_path_factory: pytest.TempPathFactory,
    seed: int,
    start: str,
    steps: list[dict[str, Any]],
) -> None:
    programme = fresh_programme(programme_template, tmp_path_factory.mktemp("walk") / "p")
    rng = random.Random(seed)
    forms = demo.Forms(rng, seed % 1000)
    # Three cases: one just identified, one walked to `start`, one in the south team.
    cases = []
    for number, (worker, supervisor, place) in enumerate(
        (
            ("cw-north-1", "sv-north", "identified"),
            ("cw-north-2", "sv-north", start),
            ("cw-south-1", "sv-south", "registered"),
        )
    ):
        journey = programme.journey(
            worker, supervisor, seed=seed + number, days_before=(dt.date(2026, 4, 1) - START).days
        )
        demo.walk(journey, place)
        journey.repo.git.close()  # its `git cat-file` would outlive the example
        cases.append(journey.case_id)
    day = START + dt.timedelta(days=300)
    head = programme.git("rev-parse", "HEAD").strip()
    rows = listed(programme, day.isoformat())
    assert set(rows) == set(cases)

    for step in steps:
        day += dt.timedelta(days=step["days"])
        today = day.isoformat()
        case_id = cases[step["case"]]
        source = rows[case_id]["state"]
        # Mostly the people who would act on the case; sometimes anyone at all.
        actor = {
            "caseworker": rows[case_id]["caseworker"],
            "supervisor": f"sv-{rows[case_id]['team']}",
            "anyone": step["actor"],
        }[step["who"]]
        target, reason = step["target"], step["reason"]
        form_name = step["form"]
        if step["legal"] and NEXT.get(source):
            target, reasons = NEXT[source][step["pick"] % len(NEXT[source])]
            reason = reasons[step["pick"] % len(reasons)] if reasons else None
            form_name = form_for(source, target) or form_name
        args: list[str]
        if step["kind"] == "move":
            args = ["move", case_id, target]
            if reason:
                args += ["--reason", reason]
            if form_name:
                body = FORMS[form_name](forms, actor, day, rng)
                if form_name == "closure" and reason:
                    body["closure_reason"] = reason
                args += ["--from", programme.form_file(form_name, {form_name: body})]
        elif step["kind"] == "record":
            form_name = form_name or "follow_up"
            body = FORMS[form_name](forms, actor, day, rng)
            args = [
                "record",
                case_id,
                form_name,
                "--from",
                programme.form_file(form_name, {form_name: body}),
            ]
        else:
            worker = rng.choice(("cw-north-1", "cw-north-2", "cw-south-1", "sv-north"))
            args = [
                "assign",
                case_id,
                worker,
                "--reason",
                rng.choice(DATA["assignment"]["reasons"]),
            ]

        before = programme.state()
        assert before[0] == head
        result = programme.cli(*args, as_=actor, today=today)
        assert result.exit_code in EXPECTED_EXITS, (args, result.output)
        assert "Traceback" not in result.output and "internal error" not in result.output
        assert CANARY not in result.stderr
        now = listed(programme, today)
        assert set(now) == set(cases)
        after = {c: r["state"] for c, r in now.items()}
        assert set(after.values()) <= set(workflow.STATES)

        if result.exit_code != 0:
            assert programme.state() == before, (args, result.output)
            assert now == rows
            continue

        new_head = programme.git("rev-parse", "HEAD").strip()
        assert programme.git("rev-list", "--count", f"{head}..{new_head}").strip() == "1"
        assert programme.git("rev-parse", f"{new_head}^").strip() == head
        assert programme.git("status", "--porcelain", "--untracked-files=all") == ""
        # The case's open file, and the one sealed entry of its new version if its forms
        # changed.
        changed = programme.git("show", "--name-only", "--format=", new_head).split()
        version = rows[case_id]["version"] + 1
        assert changed[0] == ids.record_path(case_id)
        assert changed[1:] in ([], [entries.entry_path(case_id, version)])
        message = programme.git("log", "-1", "--format=%B")
        assert CANARY not in message
        assert f"Cmgit-Actor: {actor}" in message
        assert {c: r for c, r in now.items() if c != case_id} == {
            c: r for c, r in rows.items() if c != case_id
        }
        assert now[case_id]["version"] == rows[case_id]["version"] + 1
        if step["kind"] == "move":
            assert (source, target) in EDGES, (source, target)
            assert after[case_id] == target
            log = json.loads(programme.cli("log", case_id, "--json", as_=None).stdout)
            assert (log[-1]["from"], log[-1]["to"], log[-1]["commit"]) == (source, target, new_head)
            assert log[-1]["transition"] in DATA["transitions"]
            assert source in DATA["transitions"][log[-1]["transition"]]["from"]
            assert now[case_id]["state_since"] == today
            assert now[case_id]["state_history"] == [
                *rows[case_id]["state_history"],
                f"{today} {target}",
            ]
        else:
            assert after[case_id] == source
            assert now[case_id]["state_history"] == rows[case_id]["state_history"]
        head, rows = new_head, now
