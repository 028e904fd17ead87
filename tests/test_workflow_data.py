"""The procedure is data: schemas/workflow.yaml and the programme settings decide what
cmgit allows, and the keyless views (`list`, `due`, `log`) say what the records say."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
import random
import re
import tokenize
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import Result

from cmgit import demo, entries, ids, workflow

from .conftest import CANARY, Programme

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_FILE = "schemas/workflow.yaml"
DATA = yaml.safe_load((ROOT / WORKFLOW_FILE).read_text())
GUARDS = set(DATA["guards"])
CODE_LINE = re.compile(r"^  (G[A-Z0-9]+[a-z]*): (.*)$")
CODE_WORD = re.compile(r"\bG(?:[A-D]|\d{2}[a-z]?)\b")


def failing_codes(stderr: str) -> list[str]:
    return [
        m.group(1)
        for line in stderr.splitlines()
        if (m := CODE_LINE.match(line)) and not m.group(2).endswith("(warning)")
    ]


def roles_of(spec: str | list[str]) -> set[str]:
    return set(DATA["role_groups"][spec]) if isinstance(spec, str) else set(spec)


def guards_named(item: dict[str, Any]) -> set[str]:
    named = set(item.get("guards", ()))
    if item.get("four_eyes"):
        named.add(item["four_eyes"])
    for extra in (item.get("reasons") or {}).values():
        named |= set(extra)
    return named


def at(journey: demo.Journey, days: int = 1) -> str:
    return (journey.day + dt.timedelta(days=days)).isoformat()


def git_commit(programme: Programme, message: str) -> None:
    programme.git("-c", "user.name=x", "-c", "user.email=x@x", "commit", "-q", "-a", "-m", message)


# -- (a) codes, roles and transitions come from the data ---------------------------------


def test_every_name_the_data_uses_is_defined() -> None:
    states = set(DATA["states"])
    assert states == set(workflow.STATES)
    assert DATA["initial_state"] == workflow.INITIAL_STATE
    roles = set(DATA["roles"])
    for group in DATA["role_groups"].values():
        assert set(group) <= roles
    for tid, t in DATA["transitions"].items():
        assert guards_named(t) <= GUARDS, tid
        assert roles_of(t["by"]) <= roles, tid
        assert set(t["from"]) <= states and t["to"] in states, tid
        assert set(t.get("effects", ())) <= set(workflow.EFFECTS), tid
    for name, event in DATA["events"].items():
        assert set(event.get("guards", ())) <= GUARDS, name
        assert roles_of(event["by"]) <= roles and set(event["states"]) <= states, name
    assert set(DATA["assignment"]["guards"]) <= GUARDS
    for code, guard in DATA["guards"].items():
        assert ("check" in guard) != ("schema" in guard), code
        assert guard["severity"] in ("hard", "warn", "override"), code
        if "check" in guard:
            # The template names the latest version of each check: fixes reach new
            # repositories, and `cmgit migrate` brings them to earlier ones.
            latest = workflow.checks.latest_version(guard["check"])
            assert guard.get("version", 1) == latest, code
    for profile in DATA["display_profiles"].values():
        assert set(profile["labels"]) == states


def test_code_names_no_guard_the_data_does_not_define() -> None:
    """Guard codes written in the code (GA, GB, GD, G03c...) are all defined in the data,
    in the modules of the packages (store, site) too."""
    named: dict[str, set[str]] = {}
    for source in sorted((ROOT / "cmgit").rglob("*.py")):
        tokens = tokenize.generate_tokens(io.StringIO(source.read_text()).readline)
        for token in tokens:
            if token.type == tokenize.STRING:
                for code in CODE_WORD.findall(token.string):
                    named.setdefault(code, set()).add(source.name)
    assert {"GA", "GB", "GD", "G03c"} <= set(named)
    assert set(named) <= GUARDS, {c: f for c, f in named.items() if c not in GUARDS}


def test_loaded_workflow_is_the_data(programme: Programme) -> None:
    flow = programme.repo().workflow
    assert flow.scopes == {r: v["scope"] for r, v in DATA["roles"].items()}
    assert set(flow.guards) == GUARDS
    assert {c: g.severity for c, g in flow.guards.items()} == {
        c: g["severity"] for c, g in DATA["guards"].items()
    }
    assert set(flow.transitions) == set(DATA["transitions"])
    for tid, t in DATA["transitions"].items():
        loaded = flow.transitions[tid]
        assert (
            loaded.sources,
            loaded.target,
            set(loaded.by),
            loaded.guards,
            loaded.four_eyes,
            loaded.effects,
        ) == (
            tuple(t["from"]),
            t["to"],
            roles_of(t["by"]),
            tuple(t.get("guards", ())),
            t.get("four_eyes"),
            tuple(t.get("effects", ())),
        )
        reasons = {r: tuple(g) for r, g in t["reasons"].items()} if "reasons" in t else None
        assert loaded.reasons == reasons
    for name, event in DATA["events"].items():
        assert (set(flow.events[name].states), set(flow.events[name].by)) == (
            set(event["states"]),
            roles_of(event["by"]),
        )
    assert flow.caseload_states == {s for s, v in DATA["states"].items() if v["caseload"]}


def test_refusals_name_only_the_guards_of_the_transition(programme: Programme) -> None:
    """Sweep every move out of every state, by the caseworker and by the supervisor: each
    refusal lists codes of the data, and only those the transition (and its reason) has."""
    places = (
        "identified",
        "registered",
        "immediate_action",
        "assessment",
        "case_planning",
        "implementation",
        "follow_up_review",
        "closure_pending",
        "post_closure_monitoring",
        "archived",
    )
    flow = programme.repo().workflow
    seen: set[str] = set()
    for number, place in enumerate(places):
        journey = programme.journey(
            days_before=demo.DURATION[place] + 10, seed=300 + number, separation="unaccompanied"
        )
        demo.walk(journey, place)
        source = "closed" if place == "archived" else place
        targets = [t["to"] for t in DATA["transitions"].values() if source in t["from"]]
        for target in dict.fromkeys([*targets, "case_planning"]):
            transition = flow.find(source, target)
            reason = next(iter(transition.reasons)) if transition and transition.reasons else None
            for actor in ("cw-north-1", "sv-north"):
                args = ["move", journey.case_id, target]
                if reason:
                    args += ["--reason", reason]
                before = programme.state()
                result = programme.cli(*args, as_=actor, today=at(journey))
                if result.exit_code == 0:
                    # Put the case back where the sweep found it (a scratch repository).
                    programme.git("reset", "-q", "--hard", before[0])
                    continue
                assert programme.state() == before
                assert result.exit_code in (2, 3, 4), result.output
                assert CANARY not in result.output
                if transition is None:
                    assert "illegal transition" in result.stderr
                    continue
                codes = set(failing_codes(result.stderr))
                allowed = {
                    "GA",
                    *transition.guards,
                    *(transition.reasons or {}).get(reason or "", ()),
                    *([transition.four_eyes] if transition.four_eyes else []),
                }
                assert codes <= GUARDS
                assert codes <= allowed, (transition.id, codes, result.stderr)
                seen |= codes
        assert programme.git("status", "--porcelain") == ""
    assert len(seen) >= 10, seen


# -- (b) behaviour follows the settings ---------------------------------------------------


def ready_to_register(programme: Programme, seed: int, days_before: int = 40) -> demo.Journey:
    journey = programme.journey(
        days_before=days_before, seed=seed, separation="with_primary_caregiver"
    )
    journey.identify()
    journey.consents()
    journey.record(
        "registration", journey.forms.registration(journey.cw, journey.day, journey.criteria)
    )
    return journey


def test_caseload_limit_and_supervisor_override(programme: Programme) -> None:
    refused = programme.cli("settings", "set", "caseload_limit", "1", as_="cw-north-1")
    assert refused.exit_code != 0
    result = programme.cli("settings", "set", "caseload_limit", "1", as_="pm-001")
    assert result.exit_code == 0, result.output
    shown = json.loads(programme.cli("settings", "show", "--json", as_=None).stdout)
    assert shown["caseload_limit"] == 1

    first = ready_to_register(programme, 401)
    result = programme.cli("move", first.case_id, "registered", today=at(first))
    assert result.exit_code == 0, result.output

    second = ready_to_register(programme, 402)
    case_id = second.case_id
    reason = "language_or_culture: CANARY-OVERRIDE only worker who speaks the language"
    for actor, extra in (
        ("cw-north-1", []),
        ("sv-north", []),
        ("cw-north-1", ["--override-caseload", reason]),
    ):
        before = programme.state()
        result = programme.cli("move", case_id, "registered", *extra, as_=actor, today=at(second))
        assert result.exit_code == 4, result.output
        assert failing_codes(result.stderr) == ["G03c"]
        assert programme.state() == before
    result = programme.cli(
        "move",
        case_id,
        "registered",
        "--override-caseload",
        reason,
        as_="sv-north",
        today=at(second),
    )
    assert result.exit_code == 0, result.output
    message = programme.git("log", "-1", "--format=%B")
    assert "Cmgit-Guard: G03c overridden language_or_culture" in message
    assert "Cmgit-Transition: T01" in message
    assert "CANARY-OVERRIDE" not in programme.git("log", "--all", "--format=%B")
    assert CANARY not in programme.git("log", "--all", "--format=%B")
    doc = json.loads(programme.cli("show", case_id, "--json", as_="sv-north").stdout)
    assert doc["state"] == "registered"
    assert doc["assignment"][-1]["caseload_override_reason"] == reason

    # The limit counts open cases only: a third case for another caseworker is fine.
    third = programme.journey(
        "cw-north-2", days_before=40, seed=403, separation="with_primary_caregiver"
    )
    third.identify()
    third.register()
    # Reassignment to a full caseworker is refused the same way.
    before = programme.state()
    result = programme.cli(
        "assign",
        third.case_id,
        "cw-north-1",
        "--reason",
        "caseload_balancing",
        as_="sv-north",
        today=at(third),
    )
    assert result.exit_code == 4 and failing_codes(result.stderr) == ["G03c"]
    assert programme.state() == before


def test_closure_notice_days_sets_when_closure_may_come(programme: Programme) -> None:
    journey = programme.journey(days_before=140, seed=410, separation="with_primary_caregiver")
    demo.walk(journey, "closure_pending")
    discussed = journey.day
    journey.wait(20)
    conference = journey.record(
        "case_conference", journey.forms.conference("sv-north", journey.day)
    )
    closure = journey.forms.closure(journey.cw, discussed, "objectives_met")
    closure["case_conference_id"] = conference
    journey.record("closure", closure)
    monitoring = programme.form_file(
        "m", {"post_closure_monitoring": journey.forms.monitoring(journey.day)}
    )

    def authorise() -> Result:
        return programme.cli(
            "move",
            journey.case_id,
            "post_closure_monitoring",
            "--from",
            monitoring,
            as_="sv-north",
            today=journey.day.isoformat(),
        )

    for days, accepted in ((None, False), (21, False), (20, True)):
        if days is not None:
            result = programme.cli(
                "settings", "set", "closure_notice_days", str(days), as_="pm-001"
            )
            assert result.exit_code == 0, result.output
        before = programme.state()
        result = authorise()
        if accepted:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code == 4, result.output
            assert failing_codes(result.stderr) == ["G25"]
            assert f"the notice period is {days or 30}" in result.stderr
            assert programme.state() == before
    doc = json.loads(programme.cli("show", journey.case_id, "--json", as_="sv-north").stdout)
    assert doc["state"] == "post_closure_monitoring"


# -- (c) editing the workflow data changes behaviour --------------------------------------


def uasc_without_bia(programme: Programme) -> demo.Journey:
    journey = programme.journey(days_before=40, seed=420, separation="unaccompanied")
    journey.identify()
    journey.register()
    journey.wait(2)
    journey.move("assessment")
    f = journey.forms
    journey.record("risk_assessment", f.risk_assessment(journey.cw, journey.day, "medium"))
    journey.wait(3)
    journey.record(
        "assessment", f.assessment(journey.cw, journey.day - dt.timedelta(days=3), journey.day)
    )
    journey.record("ftr", f.ftr(journey.day))
    referral = f.referral(journey.cw, journey.day, "child_protection_authority")
    referral["consent_ref"] = journey.consent_ids[0]  # the id cmgit gave the consent
    journey.record("referral", referral)
    return journey


def test_dropping_a_guard_from_the_data_is_acted_on_only_when_in_force(
    programme: Programme,
) -> None:
    journey = uasc_without_bia(programme)
    move = ("move", journey.case_id, "case_planning")
    before = programme.state()
    result = programme.cli(*move, today=at(journey))
    assert result.exit_code == 4 and failing_codes(result.stderr) == ["G11"]
    assert programme.state() == before

    path = programme.root / WORKFLOW_FILE
    text = path.read_text()
    line = next(x for x in text.splitlines() if x.startswith("  T07:"))
    assert "G11, " in line
    path.write_text(text.replace(line, line.replace("G11, ", "")))
    # Not committed yet: cmgit reads its configuration from HEAD, not the work tree.
    result = programme.cli(*move, today=at(journey))
    assert result.exit_code == 4 and failing_codes(result.stderr) == ["G11"]

    # Committed with plain git, by nobody entitled to change the procedure: not in force.
    git_commit(programme, "workflow: T07 without G11 (reviewed)")
    before = programme.state()
    result = programme.cli(*move, today=at(journey))
    assert result.exit_code == 6 and "which cmgit audit flags" in result.stderr
    assert programme.state() == before
    shown = json.loads(programme.cli("workflow", "--json").stdout)
    assert "G11" in next(t for t in shown if t["id"] == "T07")["guards"]


def test_workflow_naming_an_undefined_guard_is_refused(programme: Programme) -> None:
    journey = uasc_without_bia(programme)
    path = programme.root / WORKFLOW_FILE
    text = path.read_text()
    line = next(x for x in text.splitlines() if x.startswith("  T07:"))
    path.write_text(text.replace(line, line.replace("G13]", "G13, G99]")))
    git_commit(programme, "workflow: a guard that does not exist")
    before = programme.state()
    result = programme.cli("move", journey.case_id, "case_planning", today=at(journey))
    assert result.exit_code == 6 and "which cmgit audit flags" in result.stderr
    for args in (("list", "--json"), ("due", "--json")):
        result = programme.cli(*args, as_=None, today=at(journey))
        assert result.exit_code == 0 and "which cmgit audit flags" in result.stderr
    assert programme.state() == before
    result = programme.cli("audit", as_=None)
    assert result.exit_code == 6 and programme.git("rev-parse", "--short=12", "HEAD").strip() in (
        result.stdout
    )


# -- (d) list and due agree with the open fields at HEAD ----------------------------------


def open_fields_at_head(programme: Programme) -> dict[str, dict[str, Any]]:
    """The open fields of every record committed at HEAD, parsed here with plain YAML: the
    open file holds nothing else, the forms are in the case's sealed entries."""
    found = {}
    sealed = set(programme.git("ls-tree", "-r", "--name-only", "HEAD", entries.SEALED_DIR).split())
    for path in programme.git("ls-tree", "-r", "--name-only", "HEAD", "records").split():
        if not path.endswith(".yaml"):
            continue
        fields = yaml.safe_load(programme.git("show", f"HEAD:{path}"))
        assert path == ids.record_path(fields["case_id"])
        assert "sealed" not in fields and entries.entry_path(fields["case_id"], 1) in sealed
        found[fields["case_id"]] = fields
    return found


def test_list_and_due_agree_with_the_records(programme: Programme) -> None:
    today = dt.date(2026, 4, 1)
    places = (
        ("identified", "cw-north-1", "sv-north"),
        ("registered", "cw-north-2", "sv-north"),
        ("immediate_action", "cw-north-1", "sv-north"),
        ("assessment", "cw-south-1", "sv-south"),
        ("implementation", "cw-north-2", "sv-north"),
        ("follow_up_review", "cw-north-1", "sv-north"),
        ("closure_pending", "cw-south-1", "sv-south"),
        ("post_closure_monitoring", "cw-north-2", "sv-north"),
        ("closed_no_concern", "cw-north-1", "sv-north"),
    )
    for number, (place, worker, supervisor) in enumerate(places):
        journey = programme.journey(
            worker,
            supervisor,
            seed=500 + number,
            days_before=demo.DURATION[place] + random.Random(number).randint(5, 40),
        )
        demo.walk(journey, place, today)
    records = open_fields_at_head(programme)
    assert len(records) == len(places)

    def listed(*args: str, on: dt.date = today) -> list[dict[str, Any]]:
        result = programme.cli("list", "--json", *args, as_=None, today=on.isoformat())
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    rows = listed()
    assert [r["case_id"] for r in rows] == sorted(records)
    for row in rows:
        step = row.pop("step")
        assert row == records[row["case_id"]]
        assert step == DATA["display_profiles"]["iag6"]["labels"][row["state"]]
    assert {r["state"] for r in rows} >= {"identified", "closed", "implementation"}
    assert {r["case_id"] for r in listed("--state", "implementation", "--state", "closed")} == {
        c for c, f in records.items() if f["state"] in ("implementation", "closed")
    }
    assert {r["case_id"] for r in listed("--team", "south")} == {
        c for c, f in records.items() if f["team"] == "south"
    }
    assert {r["case_id"] for r in listed("--caseworker", "cw-north-2")} == {
        c for c, f in records.items() if f["caseworker"] == "cw-north-2"
    }

    rank = {"high": 0, "medium": 1, "low": 2, None: 3}
    for on, within in (
        (today, 7),
        (today + dt.timedelta(days=20), 0),
        (today + dt.timedelta(days=100), 30),
    ):

        def overdue(fields: dict[str, Any], on: dt.date = on) -> bool:
            return any(
                fields[k] and dt.date.fromisoformat(fields[k]) < on
                for k in ("next_follow_up_due", "next_review_due")
            )

        assert {r["case_id"] for r in listed("--overdue", on=on)} == {
            c for c, f in records.items() if overdue(f)
        }
        result = programme.cli(
            "due", "--within", str(within), "--json", as_=None, today=on.isoformat()
        )
        assert result.exit_code == 0, result.output
        due = json.loads(result.stdout)
        expected = []
        for case_id, fields in records.items():
            for kind, key in (("follow_up", "next_follow_up_due"), ("review", "next_review_due")):
                when = fields[key] and dt.date.fromisoformat(fields[key])
                if when and when <= on + dt.timedelta(days=within):
                    expected.append(
                        {
                            "case_id": case_id,
                            "kind": kind,
                            "due_on": fields[key],
                            "days_overdue": (on - when).days,
                            "risk_level": fields["risk_level"],
                            "state": fields["state"],
                            "team": fields["team"],
                            "caseworker": fields["caseworker"],
                        }
                    )
        key = lambda r: (r["case_id"], r["kind"])  # noqa: E731
        assert sorted(due, key=key) == sorted(expected, key=key)
        assert [rank[r["risk_level"]] for r in due] == sorted(rank[r["risk_level"]] for r in due)
        assert not [r for r in due if r["state"] in ("identified", "closed")]
    assert (
        len(
            json.loads(
                programme.cli(
                    "due", "--within", "30", "--json", as_=None, today="2026-07-10"
                ).stdout
            )
        )
        > 0
    )


# -- (e) the log reproduces a whole path ---------------------------------------------------


def test_log_reproduces_the_path_of_a_reopened_case(programme: Programme) -> None:
    journey = programme.journey(
        days_before=demo.DURATION["reopened"] + 10, seed=600, separation="with_primary_caregiver"
    )
    demo.walk(journey, "reopened")
    case_id = journey.case_id
    result = programme.cli("log", case_id, "--json", as_=None)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    moves = [r for r in rows if r["action"] == "move"]
    path = ["identified", *(r["to"] for r in moves)]
    assert path == [
        "identified",
        "registered",
        "assessment",
        "case_planning",
        "implementation",
        "follow_up_review",
        "closure_pending",
        "post_closure_monitoring",
        "closed",
        "registered",
    ]
    assert [r["from"] for r in moves] == path[:-1]
    assert [r["transition"] for r in moves] == [
        "T01",
        "T03",
        "T07",
        "T09",
        "T11",
        "T19",
        "T20",
        "T23",
        "T25",
    ]
    by = {r["transition"]: (r["actor"], r["role"]) for r in moves}
    for tid in ("T09", "T20", "T23", "T25"):
        assert by[tid] == ("sv-north", "supervisor")
    for tid in ("T01", "T03", "T07", "T11", "T19"):
        assert by[tid] == ("cw-north-1", "caseworker")
    assert next(r for r in moves if r["transition"] == "T19")["reason"] == "objectives_met"
    assert rows[0]["action"] == "new" and rows[0]["to"] == "identified"
    assert [r["version"] for r in rows] == list(range(1, len(rows) + 1))
    dates = [r["date"] for r in rows]
    assert dates == sorted(dates) and dates[-1] == journey.day.isoformat()
    commits = programme.git("rev-list", "--reverse", "HEAD", "--", ids.record_path(case_id)).split()
    assert [r["commit"] for r in rows] == commits

    text = programme.cli("log", case_id, as_=None).stdout
    arrows = [line for line in text.splitlines()[1:] if " -> " in line]
    pairs = [
        tuple(line.split(" -> ")[0].split()[-1:] + line.split(" -> ")[1].split()[:1])
        for line in arrows
    ]
    assert pairs == list(itertools.pairwise(path))
    doc = json.loads(programme.cli("show", case_id, "--json", as_="sv-north").stdout)
    assert doc["state"] == "registered" and doc["episode"] == 2
    assert doc["previous_episodes"][0]["episode"] == 1
    assert doc["previous_episodes"][0]["closure"]["closure_reason"] == "objectives_met"
    assert CANARY not in programme.git("log", "--format=%B")


# -- (f) every transition of the table can be taken ----------------------------------------


def test_find_picks_the_transition_by_reason(programme: Programme) -> None:
    flow = programme.repo().workflow
    for tid, t in DATA["transitions"].items():
        for source in t["from"]:
            for reason in t.get("reasons") or [None]:
                found = flow.find(source, t["to"], reason)
                assert found is not None
                if found.id != tid:
                    # Only where the data gives one reason to two transitions (turned_18
                    # from closure_pending: T22 and T26) does the first one win.
                    assert reason in (found.reasons or {}), (tid, source, reason, found.id)
                    assert list(DATA["transitions"]).index(found.id) < list(
                        DATA["transitions"]
                    ).index(tid)


@pytest.mark.parametrize("place", ["closure_pending", "post_closure_monitoring"])
def test_death_closes_a_case_from_every_state_of_t26(programme: Programme, place: str) -> None:
    journey = programme.journey(
        days_before=demo.DURATION[place] + 10, seed=700, separation="with_primary_caregiver"
    )
    demo.walk(journey, place)
    result = programme.cli(
        "move", journey.case_id, "closed", "--reason", "death", as_="sv-north", today=at(journey)
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith("(T26)")


def test_turned_18_proposes_closure_from_review(programme: Programme) -> None:
    journey = programme.journey(
        days_before=demo.DURATION["follow_up_review"] + 10,
        seed=710,
        separation="with_primary_caregiver",
        age=17,
    )
    demo.walk(journey, "follow_up_review")
    journey.wait(2)
    registration = journey.forms.registration(journey.cw, journey.day, journey.criteria)
    born = journey.day - dt.timedelta(days=18 * 366)
    registration["child"]["date_of_birth"] = born.isoformat()
    journey.record("registration", registration)
    closure = programme.form_file(
        "c", {"closure": journey.forms.closure(journey.cw, journey.day, "turned_18")}
    )
    result = programme.cli(
        "move",
        journey.case_id,
        "closure_pending",
        "--reason",
        "turned_18",
        "--from",
        closure,
        today=journey.day.isoformat(),
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith("(T19b)")


def test_close_without_registration_after_registration_was_typed(programme: Programme) -> None:
    """G21: the registration form holds required personal fields; closing a case that was
    never registered (T02) drops it whole rather than refusing forever."""
    journey = programme.journey(days_before=30, seed=720)
    journey.identify()
    journey.consents(adult_decision="declined")
    journey.record(
        "registration", journey.forms.registration(journey.cw, journey.day, journey.criteria)
    )
    result = programme.cli(
        "move",
        journey.case_id,
        "closed",
        "--reason",
        "consent_declined",
        as_="sv-north",
        today=at(journey),
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(programme.cli("show", journey.case_id, "--json", as_="sv-north").stdout)
    assert "registration" not in doc and doc["state"] == "closed"
    assert CANARY + "-NAME" not in json.dumps(doc)


def test_reopen_after_consent_was_withdrawn(programme: Programme) -> None:
    """T25 needs fresh consent (G02) when the last one was withdrawn."""
    journey = programme.journey(days_before=200, seed=730, separation="with_primary_caregiver")
    demo.walk(journey, "implementation")
    doc = json.loads(programme.cli("show", journey.case_id, "--json").stdout)
    withdrawn = {
        **doc["consent"][1],
        "decision": "withdrawn",
        "withdrawn_on": journey.day.isoformat(),
    }
    journey.record("consent", withdrawn)
    journey.close(
        "declined_services",
        form=journey.forms.closure(journey.cw, journey.day, "declined_services"),
    )
    journey.wait(30)
    f = journey.forms
    consent = f.consent(journey.cw, "parent", journey.day)
    reopen = f.reopen("sv-north", journey.day)
    today = journey.day.isoformat()
    # The withdrawn consent fails G02, and nothing given since closure satisfies G02f.
    alone = programme.form_file("r", {"reopen": reopen})
    before = programme.state()
    result = programme.cli(
        "move", journey.case_id, "registered", "--from", alone, as_="sv-north", today=today
    )
    assert result.exit_code == 4 and failing_codes(result.stderr) == ["G02", "G02f"]
    assert programme.state() == before
    # Fresh consent is the one thing a closed case takes before it reopens.
    for given in (consent, f.consent(journey.cw, "child", journey.day)):
        result = programme.cli(
            "record",
            journey.case_id,
            "consent",
            "--from",
            programme.form_file("c", {"consent": given}),
            today=today,
        )
        assert result.exit_code == 0, result.output
    note = programme.cli(
        "record", journey.case_id, "note", "--from", programme.form_file("note"), today=today
    )
    assert note.exit_code == 4 and "GD" in note.stderr
    result = programme.cli(
        "move", journey.case_id, "registered", "--from", alone, as_="sv-north", today=today
    )
    assert result.exit_code == 0, result.output
    message = programme.git("log", "-1", "--format=%B")
    assert "Cmgit-Transition: T25" in message and "Cmgit-Form: reopen" in message
    doc = json.loads(programme.cli("show", journey.case_id, "--json", as_="sv-north").stdout)
    assert doc["state"] == "registered" and doc["episode"] == 2
    assert doc["consent"][-1]["decision"] == "granted"
