"""Every refusal says what is missing and what to do next.

A guard's refusal names the form (or field) to record and never reads as success; a
schema error gives the allowed values or an example, never the value given; an illegal
move lists the moves there are; an unknown name suggests the nearest.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cmgit import config
from cmgit.audit import config_in_force
from cmgit.errors import SchemaError
from cmgit.guards import Situation
from cmgit.schema import SchemaSet
from cmgit.site.markup import anchor, md_cell
from cmgit.site.reference import reference_pages
from cmgit.site.source import open_source
from cmgit.workflow import Workflow

from .conftest import CANARY, Programme, form

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = SchemaSet.load(ROOT / "schemas")
DATA = yaml.safe_load((ROOT / config.WORKFLOW_FILE).read_text(encoding="utf-8"))
FLOW = Workflow(DATA)
FORMS = set(SCHEMAS.sealed_fields)
SETTINGS = set(SCHEMAS.schemas["urn:cmgit:schema:settings"]["properties"])
# A refusal states what the case lacks before its colon, in the negative.
NEGATIVE = re.compile(r"\b(no|not|cannot|without|missing|still)\b", re.IGNORECASE)
WORD = re.compile(r"[a-z][a-z0-9_]*")


def field_names(node: Any) -> set[str]:
    """Every property name anywhere in a schema."""
    found: set[str] = set()
    if isinstance(node, dict):
        found |= set(node.get("properties", {}))
        for value in node.values():
            found |= field_names(value)
    elif isinstance(node, list):
        for value in node:
            found |= field_names(value)
    return found


# Field names that are identifiers, not English words such as "status" or "date".
FIELDS = {
    name
    for doc in SCHEMAS.schemas.values()
    for name in field_names(doc)
    if "_" in name and name not in FORMS
}
# Where no form is to blame (role, scope, reassignment), the refusal gives the command.
COMMAND = re.compile(r"cmgit [a-z]+ |--[a-z]+(-[a-z]+)* [A-Z]+")


def forms_in_condition(node: Any) -> set[str]:
    """The forms a guard's schema condition requires or constrains: the ones the refusal
    must name (the open fields it reads are summaries of forms, named otherwise)."""
    found: set[str] = set()
    if isinstance(node, dict):
        found |= set(node.get("required", ())) | set(node.get("properties", {}))
        for key in ("then", "allOf", "anyOf", "oneOf"):
            found |= forms_in_condition(node.get(key))
    elif isinstance(node, list):
        for value in node:
            found |= forms_in_condition(value)
    return found & FORMS


@pytest.mark.parametrize("code", list(DATA["guards"]))
def test_every_guard_refuses_in_the_negative_and_names_what_to_record(code: str) -> None:
    guard = DATA["guards"][code]
    refusal = guard.get("refusal")
    assert refusal, f"{code} has no refusal text"
    statement, colon, action = refusal.partition(": ")
    assert colon and action, f"{code}: a refusal reads 'what is missing: what to do'"
    assert NEGATIVE.search(statement), f"{code}: '{statement}' reads as if the rule held"
    assert guard["summary"].rstrip(".") not in refusal, f"{code} repeats its summary"
    if "check" in guard:  # the check's reason goes in parentheses after the statement
        assert "(" not in statement, f"{code}: parentheses would nest"
    words = set(WORD.findall(refusal))
    assert words & (FORMS | FIELDS | SETTINGS) or COMMAND.search(action), (
        f"{code} names no form, field or setting, nor a command to run"
    )
    if "schema" in guard:
        missing = forms_in_condition(guard["schema"]) - words
        assert not missing, f"{code} does not name the form(s) {sorted(missing)}"


def test_a_workflow_without_refusal_texts_still_loads_and_refuses_with_the_summary() -> None:
    """Repositories made before refusals existed stay valid and keep their old wording."""
    old = json.loads(json.dumps(DATA))
    for guard in old["guards"].values():
        guard.pop("refusal")
    SCHEMAS.validate(old, "urn:cmgit:schema:workflow", what="workflow")
    flow = Workflow(old)
    record = {"case_id": "CP-7K2M9QX4", "risk_level": None}
    failures = flow.evaluate(["G10"], situation(record), lambda g, d: False)
    assert [str(f) for f in failures] == ["G10: The risk level is set."]


def situation(record: dict[str, Any], today: dt.date = dt.date(2026, 4, 1)) -> Situation:
    return Situation(
        record=record,
        before=record,
        actor_id="sv-north",
        actor_role="supervisor",
        today=today,
        settings={},
        active_caseworkers=frozenset(),
        caseload={},
        authorisers=FLOW.authorisers,
        reason="turned_18",
    )


def test_a_named_check_gives_its_reason_between_what_is_missing_and_what_to_do() -> None:
    record = {
        "case_id": "CP-7K2M9QX4",
        "registration": {"child": {"date_of_birth": "2010-06-01"}},
        "closure": {"closure_date": "2026-04-01"},
    }
    failures = FLOW.evaluate(["G24"], situation(record), lambda g, d: True)
    assert [str(f) for f in failures] == [
        "G24: The case cannot close at 18 yet (the young person is not yet 18 today): the "
        "registration form must show the young person is 18 today by its date_of_birth, "
        "and the closure form give no continue_past_18_reason; wait for the birthday, or "
        "correct the form."
    ]


# -- schema errors: allowed values and examples, never the value ----------------------


def schema_problems(doc: Any, schema_id: str) -> list[str]:
    with pytest.raises(SchemaError) as refused:
        SCHEMAS.validate(doc, schema_id, what="form")
    text = str(refused.value)
    assert CANARY not in text
    return refused.value.problems


def test_schema_errors_say_what_is_expected() -> None:
    consent = form("consent", drop_id=False)["consent"]
    consent.update(
        decision=f"maybe {CANARY}",
        decision_on=f"1st March {CANARY}",
        recorded_by=f"Case Worker {CANARY}",
        given_by_role=3,
        decison=f"{CANARY}",
    )
    del consent["method"]
    problems = schema_problems(consent, "urn:cmgit:form:consent")
    assert sorted(problems) == sorted(
        [
            "at /: missing: method",
            "at /decision: expected one of: granted, declined, withdrawn",
            "at /decision_on: expected a date such as 2026-03-01",
            "at /given_by_role: expected a string",
            "at /given_by_role: expected one of: child, parent, caregiver, legal_guardian, "
            "legal_representative",
            "at /recorded_by: expected a staff ID such as cw-001",
            "at /: unknown field decison: the nearest the form has is decision",
        ]
    )


def test_an_unknown_field_with_no_near_name_lists_the_fields() -> None:
    problems = schema_problems(
        {**form("note", drop_id=False)["note"], "religion": CANARY}, "urn:cmgit:form:note"
    )
    fields = ", ".join(SCHEMAS.schemas["urn:cmgit:form:note"]["properties"])
    assert problems == [f"at /: unknown field religion: no such field here; fields: {fields}"]


def test_a_name_that_is_no_code_is_not_shown() -> None:
    problems = schema_problems(
        {**form("note", drop_id=False)["note"], f"Amina {CANARY}": 1}, "urn:cmgit:form:note"
    )
    assert problems == ["at /: an unknown field"]


# -- through the command line ------------------------------------------------------------


def test_a_refused_move_prints_each_refusal_with_the_form_to_record(
    programme: Programme,
) -> None:
    case_id = programme.new_case()
    before = programme.state()
    result = programme.cli("move", case_id, "registered")
    assert result.exit_code == 4, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == f"Error: {case_id}: move identified -> registered (T01) refused"
    assert (
        "  G04: No registration form is recorded: record one "
        "(cmgit record ID registration --from FILE)."
    ) in lines
    assert (
        "  G02: No consent to registration_and_services is granted by both the child and a "
        "parent, caregiver or legal guardian: record a consent form for each "
        "(cmgit record ID consent --from FILE)."
    ) in lines
    assert programme.state() == before


def test_a_schema_error_prints_the_allowed_values_and_an_example(
    programme: Programme,
) -> None:
    case_id = programme.new_case()
    doc = form("consent")
    doc["consent"].update(decision="maybe", decision_on="1st March")
    before = programme.state()
    result = programme.cli("record", case_id, "consent", "--from", programme.form_file("c", doc))
    assert result.exit_code == 3, result.output
    assert "at /consent/0/decision: expected one of: granted, declined, withdrawn" in (
        result.stderr
    )
    assert "at /consent/0/decision_on: expected a date such as 2026-03-01" in result.stderr
    assert "maybe" not in result.stderr and "1st March" not in result.stderr
    assert programme.state() == before


def test_a_plan_action_status_lists_the_statuses(programme: Programme) -> None:
    case_id = programme.walk("case_planning")
    doc = form("case_plan")
    doc["case_plan"]["actions"][0]["status"] = "done"
    result = programme.cli(
        "record", case_id, "case_plan", "--from", programme.form_file("plan", doc)
    )
    assert result.exit_code == 3, result.output
    assert re.search(
        r"at /case_plan/\d+/actions/0/status: expected one of: "
        r"not_started, in_progress, achieved, partly_achieved, not_achieved, dropped$",
        result.stderr,
        re.MULTILINE,
    ), result.stderr


def test_an_illegal_move_lists_the_moves_allowed_from_the_state(programme: Programme) -> None:
    case_id = programme.new_case()
    result = programme.cli("move", case_id, "implementation")
    assert result.exit_code == 4, result.output
    assert result.stderr == (
        f"Error: {case_id}: illegal transition: no move from identified to implementation; "
        "from identified: registered (T01), closed (T02; supervisor or programme_manager) "
        "(see the transition table: cmgit workflow)\n"
    )


def test_unknown_names_suggest_the_nearest_and_list_the_valid_ones(
    programme: Programme,
) -> None:
    case_id = programme.new_case()
    events = ", ".join(DATA["events"])
    path = programme.form_file("consent", form("consent"))
    result = programme.cli("record", case_id, "consnet", "--from", path)
    assert result.exit_code == 2, result.output
    assert result.stderr == f"Error: unknown form (did you mean consent? forms: {events})\n"

    result = programme.cli("move", case_id, "registred")
    assert result.exit_code == 2, result.output
    states = ", ".join(DATA["states"])
    assert result.stderr == f"Error: unknown state (did you mean registered? states: {states})\n"

    result = programme.cli("move", case_id, "closed", "--reason", "duplicated", as_="sv-north")
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        "Error: T02 takes no such --reason (did you mean duplicate? reasons: "
        "consent_declined, criteria_not_met, referred_elsewhere, duplicate)\n"
    )

    # A name far from every form gets the list alone.
    result = programme.cli("record", case_id, "xyz", "--from", path)
    assert result.stderr == f"Error: unknown form (forms: {events})\n"


def test_a_form_file_holding_a_misspelt_form_suggests_the_nearest(
    programme: Programme,
) -> None:
    case_id = programme.new_case()
    path = programme.form_file("closure", {"closur": form("closure")["closure"]})
    result = programme.cli("move", case_id, "closed", "--reason", "duplicate", "--from", path)
    assert result.exit_code == 3, result.output
    assert "(did you mean closure? allowed: identification, consent, " in result.stderr


def test_the_guards_page_shows_each_refusal_beside_its_summary(programme: Programme) -> None:
    source = open_source(programme.root, in_force=config_in_force)
    page = reference_pages(source)["reference/guards.md"]
    assert "| Rule | What a refusal says |" in page
    rows = {line.split("</span>", 1)[0]: line for line in page.splitlines() if "</span>" in line}
    for code, guard in DATA["guards"].items():
        row = rows[f'| <span id="{anchor(code)}">']
        assert f"| {md_cell(guard['summary'])} | {md_cell(guard['refusal'])} |" in row, code


def test_workflow_json_gives_each_guard_its_refusal(programme: Programme) -> None:
    result = programme.cli("workflow", "--guards", "--json", as_=None)
    guards = {g["code"]: g for g in json.loads(result.stdout)}
    assert guards["G10"]["refusal"] == (
        "No risk level is recorded: record a risk_assessment form "
        "(cmgit record ID risk_assessment --from FILE)."
    )
    assert guards["G10"]["summary"] == "The risk level is set."


def test_a_date_given_as_a_number_is_told_what_a_date_looks_like() -> None:
    consent = {**form("consent", drop_id=False)["consent"], "decision_on": 20260301}
    problems = schema_problems(consent, "urn:cmgit:form:consent")
    assert problems == ["at /decision_on: expected a date such as 2026-03-01"]


def test_a_repository_schema_without_examples_gives_the_description() -> None:
    """Repositories made before the examples were added describe the field instead."""
    docs = json.loads(json.dumps(SCHEMAS.schemas))
    del docs["urn:cmgit:schema:common"]["$defs"]["date"]["examples"]
    consent = {**form("consent", drop_id=False)["consent"], "decision_on": "soon"}
    with pytest.raises(SchemaError) as refused:
        SchemaSet(docs).validate(consent, "urn:cmgit:form:consent", what="form")
    assert refused.value.problems == [
        "at /decision_on: expected a date (Calendar date, YYYY-MM-DD)"
    ]


def test_a_reason_that_only_repeats_the_statement_is_left_out() -> None:
    failures = FLOW.evaluate(["G08"], situation({"case_id": "CP-7K2M9QX4"}), lambda g, d: True)
    assert [str(f) for f in failures] == [f"G08: {DATA['guards']['G08']['refusal']}"]
    assert "(" not in DATA["guards"]["G08"]["refusal"].partition(": ")[0]
