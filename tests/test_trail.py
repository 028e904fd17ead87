"""The audit trail shows each decision, keylessly (message form 2): every transition
commit names its authoriser where one is needed, the caseworker before a reassignment,
and every guard of the transition with its result; `log`, `log --json` and
`audit --json` show them, and audit judges them against the workflow in force."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cmgit import ids, trail
from cmgit.history import format_message
from cmgit.store import setup, unit
from cmgit.trail import FORMAT_TRAILER, MESSAGE_FORM

from .conftest import CANARY, Programme, build_programme
from .test_audit import audit, forge, rules
from .test_hooks import run_git
from .test_signing import require_signatures
from .test_sync import in_office, offices
from .test_workflow_data import at, ready_to_register

Trailers = list[tuple[str, str]]


def log_rows(programme: Programme, case_id: str) -> list[dict]:  # type: ignore[type-arg]
    result = programme.cli("log", case_id, "--json", as_=None)
    assert result.exit_code == 0, result.output
    rows: list[dict] = json.loads(result.stdout)  # type: ignore[type-arg]
    return rows


def trailers_of(programme: Programme, commit: str = "HEAD") -> Trailers:
    lines = programme.git("log", "-1", "--format=%B", commit).strip().split("\n")[2:]
    return [(key, value) for key, _, value in (line.partition(": ") for line in lines)]


def remake(programme: Programme, edit: Trailers) -> str:
    """The last commit made again by plain git with the trailers ``edit`` gives: what an
    insider could push in its place."""
    path = programme.git("show", "--name-only", "--format=", "HEAD").strip()
    data = (programme.root / path).read_bytes()
    subject = programme.git("log", "-1", "--format=%s").strip()
    actor = dict(trailers_of(programme))["Cmgit-Actor"]
    programme.git("reset", "-q", "--hard", "HEAD~1")
    (programme.root / ".git" / "cmgit" / "audit-verified").unlink(missing_ok=True)
    return forge(programme, {path: data}, subject, edit, actor)


def replaced(trailers: Trailers, old: str, new: str | None) -> Trailers:
    """``trailers`` with the guard trailer ``old`` replaced by ``new`` (or dropped)."""
    assert (trail.GUARD, old) in trailers, trailers
    return [
        (key, new if value == old else value)
        for key, value in trailers
        if not (value == old and new is None)
    ]


def test_each_move_names_its_authoriser_and_lists_every_guard(programme: Programme) -> None:
    case_id = programme.walk("post_closure_monitoring")
    flow = programme.repo().workflow
    moves = [r for r in log_rows(programme, case_id) if r["action"] == "move"]
    assert [r["transition"] for r in moves][-3:] == ["T11", "T19", "T20"]
    for row in moves:
        transition = flow.transitions[row["transition"]]
        expected = trail.expected_guards(flow, transition, row["reason"])
        assert [g.split(" ")[0] for g in row["guards"]] == expected, row
        assert all(g.split(" ")[1] in ("pass", "warn") for g in row["guards"]), row
        if transition.four_eyes:
            assert row["authoriser"] == row["actor"] == "sv-north"
        else:
            assert "authoriser" not in row
    closure = moves[-1]
    assert closure["proposer"] == "cw-north-1"  # the closure form names who proposed it
    assert trailers_of(programme, closure["commit"])[-1] == (FORMAT_TRAILER, MESSAGE_FORM)

    text = programme.cli("log", case_id, as_=None).stdout
    last = text.strip().splitlines()[-1]
    assert "authoriser sv-north; proposer cw-north-1; G24 pass, G25 pass" in last

    code, report = audit(programme)
    assert code == 0, report["violations"]
    decided = {row["commit"]: row for row in report["decisions"]}
    assert decided[closure["commit"]]["guards"] == closure["guards"]
    assert decided[closure["commit"]]["authoriser"] == "sv-north"
    assert CANARY not in programme.git("log", "--format=%B")


def register_over_the_limit(programme: Programme) -> tuple[str, str]:
    """A second case for cw-north-1 where the caseload limit is one: (case, its day)."""
    result = programme.cli("settings", "set", "caseload_limit", "1", as_="pm-001")
    assert result.exit_code == 0, result.output
    first = ready_to_register(programme, 401)
    assert programme.cli("move", first.case_id, "registered", today=at(first)).exit_code == 0
    second = ready_to_register(programme, 402)
    return second.case_id, at(second)


def test_an_override_is_recorded_with_its_reason_code(programme: Programme) -> None:
    case_id, day = register_over_the_limit(programme)
    before = programme.state()
    words = f"{CANARY} the only worker who speaks the language"
    refused = programme.cli(
        "move", case_id, "registered", "--override-caseload", words, as_="sv-north", today=day
    )
    assert refused.exit_code == 2
    assert "--override-caseload starts with a reason code of G03c, one of:" in refused.output
    assert "language_or_culture" in refused.output and CANARY not in refused.output
    assert programme.state() == before

    override = f"language_or_culture: {words}"
    result = programme.cli(
        "move", case_id, "registered", "--override-caseload", override, as_="sv-north", today=day
    )
    assert result.exit_code == 0, result.output
    guards = [value for key, value in trailers_of(programme) if key == trail.GUARD]
    assert guards == [
        "G01 pass",
        "G02 pass",
        "G03 pass",
        "G03c overridden language_or_culture",
        "G04 pass",
    ]
    assert CANARY not in programme.git("log", "--format=%B")
    row = log_rows(programme, case_id)[-1]
    assert "G03c overridden language_or_culture" in row["guards"]
    code, report = audit(programme)
    assert code == 0, report["violations"]
    assert report["decisions"][-1]["guards"] == guards


def test_an_override_the_limit_did_not_need_is_a_pass(programme: Programme) -> None:
    journey = ready_to_register(programme, 403)
    result = programme.cli(
        "move",
        journey.case_id,
        "registered",
        "--override-caseload",
        "emergency",
        as_="sv-north",
        today=at(journey),
    )
    assert result.exit_code == 0, result.output
    assert (trail.GUARD, "G03c pass") in trailers_of(programme)


def test_a_reassignment_names_both_caseworkers(programme: Programme) -> None:
    case_id = programme.walk("assessment")
    result = programme.cli(
        "assign", case_id, "cw-north-2", "--reason", "caseload_balancing", as_="sv-north"
    )
    assert result.exit_code == 0, result.output
    trailers = dict(trailers_of(programme))
    assert trailers["Cmgit-Staff"] == "cw-north-2"
    assert trailers[trail.PREVIOUS] == "cw-north-1"
    assert trailers[trail.AUTHORISER] == "sv-north"
    row = log_rows(programme, case_id)[-1]
    assert (row["previous_caseworker"], row["detail"]) == ("cw-north-1", "cw-north-2")
    assert row["guards"] == ["G03 pass", "G03c pass"]
    assert "previous caseworker cw-north-1" in programme.cli("log", case_id, as_=None).stdout
    code, report = audit(programme)
    assert code == 0, report["violations"]
    assert report["decisions"][-1]["previous_caseworker"] == "cw-north-1"

    # Forged: a reassignment to a coordinator, listing G03 as passed, and naming
    # someone else as the caseworker before.
    path = ids.record_path(case_id)
    data = (programme.root / path).read_text().replace("cw-north-2", "co-north")
    forged = [
        (k, {"cw-north-2": "co-north", "cw-north-1": "cw-south-1"}.get(v, v))
        for k, v in trailers_of(programme)
    ]
    programme.git("reset", "-q", "--hard", "HEAD~1")
    forge(programme, {path: data.encode()}, f"{case_id}: assign co-north", forged, "sv-north")
    code, report = audit(programme)
    assert code == 6
    details = [v["detail"] for v in report["violations"]]
    summary = programme.repo().workflow.guards["G03"].summary
    assert f"{case_id}: reassignment without G03 ({summary})" in details
    assert f"{case_id}: the caseworker before the reassignment is not the one named" in details


def registered_case(programme: Programme) -> str:
    journey = ready_to_register(programme, 404)
    result = programme.cli("move", journey.case_id, "registered", today=at(journey))
    assert result.exit_code == 0, result.output
    assert audit(programme)[0] == 0
    return journey.case_id


@pytest.mark.parametrize(
    ("old", "new", "detail"),
    [
        (
            "G02 pass",
            None,
            "the guards listed are not those of the workflow, each once in its order "
            "(G02 not listed)",
        ),
        ("G01 pass", "G01 warn", "G01 listed warn: a hard guard allows no such result"),
        (
            "G03c pass",
            "G03c overridden caseload_was_fine",
            "G03c overridden without a reason the workflow allows",
        ),
        ("G03c pass", "G03c overridden emergency", "G03c overridden by a caseworker"),
        ("G04 pass", "G04 pass G04", "G04 listed pass G04: a hard guard allows no such result"),
    ],
)
def test_audit_flags_a_forged_guard_listing(
    programme: Programme, old: str, new: str | None, detail: str
) -> None:
    case_id = registered_case(programme)
    remake(programme, replaced(trailers_of(programme), old, new))
    code, report = audit(programme)
    assert code == 6
    assert rules(report) == {"guards"}
    assert f"{case_id}: {detail}" in [v["detail"] for v in report["violations"]]


def test_audit_flags_a_guard_listed_pass_that_the_open_fields_fail(programme: Programme) -> None:
    case_id = programme.walk("case_planning")
    t07 = next(r for r in log_rows(programme, case_id) if r["transition"] == "T07")
    assert "G10 pass" in t07["guards"]  # G10 reads risk_level, an open field
    path = ids.record_path(case_id)
    text = programme.git("show", f"{t07['commit']}:{path}")
    level = next(line for line in text.splitlines() if line.startswith("risk_level: "))
    edit = trailers_of(programme, t07["commit"])
    subject = programme.git("log", "-1", "--format=%s", t07["commit"]).strip()
    programme.git("reset", "-q", "--hard", f"{t07['commit']}~1")
    forged = text.replace(level, "risk_level: unknown").encode()
    forge(programme, {path: forged}, subject, edit, "cw-north-1")
    code, report = audit(programme)
    assert code == 6
    assert [v["rule"] for v in report["violations"]] == ["guard"]
    assert f"{case_id}: T07 without G10 (" in report["violations"][0]["detail"]


def test_audit_flags_the_authoriser_a_transition_does_not_have(programme: Programme) -> None:
    case_id = registered_case(programme)
    edit = trailers_of(programme)
    edit.insert(-3, (trail.AUTHORISER, "cw-north-1"))
    remake(programme, edit)
    code, report = audit(programme)
    assert code == 6
    assert [(v["rule"], v["detail"]) for v in report["violations"]] == [
        ("authoriser", f"{case_id}: an authoriser is named where the transition needs none")
    ]


def test_a_transition_of_form_1_after_form_2_is_flagged(programme: Programme) -> None:
    case_id = registered_case(programme)
    form_1 = [(k, v) for k, v in trailers_of(programme) if k not in (trail.GUARD, FORMAT_TRAILER)]
    remake(programme, form_1)
    code, report = audit(programme)
    assert code == 6
    assert [(v["rule"], v["detail"]) for v in report["violations"]] == [
        ("message", "a transition of message form 1 after form 2")
    ]
    assert case_id


def test_signed_where_no_signature_is_required_only_under_form_2(
    programme: Programme, tmp_path: Path
) -> None:
    pm_key, cw_key = require_signatures(programme, tmp_path)
    assert audit(programme)[0] == 0
    result = programme.cli(
        "settings",
        "set",
        "require_signed_commits",
        "false",
        as_="pm-001",
        env={"CMGIT_SIGNING_KEY": str(pm_key)},
    )
    assert result.exit_code == 0, result.output
    # cmgit signs exactly where required: with a key at hand, nothing is signed now.
    result = programme.cli(
        "new",
        "--from",
        programme.form_file("identification"),
        env={"CMGIT_SIGNING_KEY": str(cw_key)},
    )
    assert result.exit_code == 0, result.output
    assert programme.git("log", "-1", "--format=%G?").strip() == "N"
    assert audit(programme)[0] == 0
    case_id = result.stdout.strip()
    path = ids.record_path(case_id)
    data = (programme.root / path).read_bytes()
    edit = trailers_of(programme)
    subject = programme.git("log", "-1", "--format=%s").strip()
    for form_trailers, flagged in ((edit, True), (edit[:-1], False)):
        programme.git("reset", "-q", "--hard", "HEAD~1")
        (programme.root / ".git" / "cmgit" / "audit-verified").unlink(missing_ok=True)
        forge(programme, {path: data}, subject, form_trailers, "cw-north-1", sign_with=cw_key)
        code, report = audit(programme)
        assert (code == 6) is flagged, report
        if flagged:
            assert [(v["rule"], v["detail"]) for v in report["violations"]] == [
                ("signature", "signed where the programme requires no signatures (form 2)")
            ]


def test_a_form_1_history_still_audits_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A programme whose history cmgit wrote before form 2: messages naming no form,
    without the decisions, overrides and warnings named on their own."""

    def form_1(subject: str, trailers: Trailers) -> str:
        dropped = {trail.GUARD, trail.AUTHORISER, trail.PROPOSER, trail.PREVIOUS}
        kept = [(k, v) for k, v in trailers if k not in dropped]
        warned = [("Cmgit-Warning", v.split(" ")[0]) for k, v in trailers if v.endswith(" warn")]
        return format_message(subject, [*kept[:-2], *warned, *kept[-2:]])

    with monkeypatch.context() as patch:
        patch.setattr(unit, "generated_message", form_1)
        patch.setattr(setup, "generated_message", form_1)
        old = build_programme(tmp_path / "old")
        old.walk("post_closure_monitoring")
    assert FORMAT_TRAILER not in old.git("log", "--format=%B")
    code, report = audit(old)
    assert code == 0, report["violations"]
    assert report["decisions"] == []
    # Its next transitions are of form 2, and audit judges them by it.
    case_id = old.walk("assessment", seed=2)
    moves = [r for r in log_rows(old, case_id) if r["action"] == "move"]
    assert [r["guards"] for r in moves] == [
        ["G01 pass", "G02 pass", "G03 pass", "G03c pass", "G04 pass"],
        [],
    ]
    code, report = audit(old)
    assert code == 0, report["violations"]
    assert [row["commit"] for row in report["decisions"]] == [r["commit"] for r in moves]


def test_sync_replays_a_reassignment_with_its_decisions(
    programme: Programme, tmp_path: Path
) -> None:
    case_id = programme.walk("assessment")
    _, a, b = offices(programme, tmp_path)
    note = programme.form_file("note")
    assert in_office(programme, a, "record", case_id, "note", "--from", note).exit_code == 0
    assigned = in_office(
        programme, b, "assign", case_id, "cw-north-2", "--reason", "staff_departure", as_="sv-north"
    )
    assert assigned.exit_code == 0, assigned.output
    before = run_git(b, "log", "-1", "--format=%B").stdout
    assert in_office(programme, a, "sync").exit_code == 0
    synced = in_office(programme, b, "sync", as_="sv-north")
    assert synced.exit_code == 0, synced.output
    replayed = run_git(b, "log", "-1", "--format=%B").stdout
    assert replayed != run_git(a, "log", "-1", "--format=%B").stdout  # b's commit, made again
    assert [line for line in replayed.splitlines() if "Version" not in line] == [
        line for line in before.splitlines() if "Version" not in line
    ]
    assert "Cmgit-Guard: G03c pass" in replayed
    audited = in_office(programme, b, "audit", "--json", as_=None)
    assert audited.exit_code == 0, audited.output
    assert json.loads(audited.stdout)["decisions"][-1]["previous_caseworker"] == "cw-north-1"
