"""Form templates: `cmgit form list`, `cmgit form template FORM` and `--template`.

The template module is tested over every form of the case-repository template (each
example validates; each template loads back to it); the command line on a real
repository; and one case is walked from identification to its archive using only the
templates cmgit prints, filled in by a script.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from typing import Any

import pytest
import yaml

from cmgit import formtemplate, guards, yamlio
from cmgit.config import load_workflow
from cmgit.schema import SchemaSet
from cmgit.template import template_root
from cmgit.workflow import Workflow

from .conftest import CANARY, TODAY, Programme

SCHEMAS = template_root() / "schemas"


@pytest.fixture(scope="module")
def schemas() -> SchemaSet:
    return SchemaSet.load(SCHEMAS)


@pytest.fixture(scope="module")
def flow(schemas: SchemaSet) -> Workflow:
    return load_workflow((SCHEMAS / "workflow.yaml").read_bytes(), schemas)


@pytest.fixture(scope="module")
def forms(schemas: SchemaSet, flow: Workflow) -> dict[str, formtemplate.FormInfo]:
    return formtemplate.catalogue(schemas, flow)


def item_schema_id(schemas: SchemaSet, form: str) -> str:
    node = schemas.case_properties[form]
    return str(node.get("items", node)["$ref"])


# -- the module, over every form -------------------------------------------------------


def test_every_forms_example_validates_against_its_schema(
    schemas: SchemaSet, forms: dict[str, formtemplate.FormInfo]
) -> None:
    assert set(forms) == set(schemas.editable_fields)
    for name in forms:
        for optional in (False, True):
            doc = formtemplate.example(schemas, name, TODAY, optional=optional)
            schemas.validate(doc, item_schema_id(schemas, name), what=name)


def test_every_template_loads_back_to_its_example_without_what_cmgit_fills(
    schemas: SchemaSet, forms: dict[str, formtemplate.FormInfo]
) -> None:
    for name, info in forms.items():
        text = formtemplate.template(schemas, info, TODAY)
        loaded = yamlio.load(text)
        assert list(loaded) == [name]
        typed = schemas.coerce(loaded[name], formtemplate.form_schema(schemas, name), what=name)
        wanted = formtemplate.example(schemas, name, TODAY)
        expected = {k: v for k, v in wanted.items() if k not in info.filled}
        assert (typed or {}) == expected, name
        # every line a comment, the form's name, or indented under it
        assert all(re.match(r"#|  |" + name + ":$", line) for line in text.splitlines()), name


def test_the_fields_cmgit_fills_carry_one_comment_in_every_form(
    schemas: SchemaSet, forms: dict[str, formtemplate.FormInfo]
) -> None:
    notes: set[str] = set()
    for info in forms.values():
        text = formtemplate.template(schemas, info, TODAY)
        for field in info.filled:
            line = next(li for li in text.splitlines() if li.startswith(f"  # {field}: "))
            notes.add(line.split(": ", 1)[1].split(";")[0])
    assert notes == {"filled in by cmgit"}
    assert forms["follow_up"].filled == ("follow_up_id",)
    assert forms["consent"].filled == ("consent_id",)
    assert forms["closure"].filled == (
        "authorised_by",
        "authorised_role",
        "authorised_on",
        "closure_date",
        "post_closure_monitoring_required",
    )
    assert forms["case_plan"].filled == ("plan_id", "signed_by_supervisor")
    assert forms["reopen"].filled == ("reopen_id", "authorised_by")


def test_a_template_explains_each_field(
    schemas: SchemaSet, forms: dict[str, formtemplate.FormInfo]
) -> None:
    text = formtemplate.template(schemas, forms["follow_up"], "2026-03-01")
    lines = text.splitlines()
    assert (
        lines[0] == "# Follow-up: A follow-up visit or contact, during the case or after closure."
    )
    assert "follow_up:" in lines
    assert "  # follow_up_id: filled in by cmgit" in lines
    assert "  # Day of the contact. Required, a date such as 2026-03-01." in lines
    assert '  date: "2026-03-01"' in lines
    assert (
        "  # Whether the case was open or closed at the time. Required, one of: in_case," in lines
    )
    assert "  # Whether contact was made. Required, true or false." in lines
    assert "  # Problems noticed. Optional, free narrative text." in lines
    assert "  # issues_identified: write here" in lines
    # a nested optional block is commented out as a whole, its own optional parts twice
    assert "  # observations:" in lines
    assert "  #   # living_situation:" in lines
    assert "  #   #   status: ok" in lines
    plan = formtemplate.template(schemas, forms["case_plan"], "2026-03-01").splitlines()
    assert (
        "  # plan_id: filled in by cmgit; to change an item already recorded, give its id here"
        in plan
    )
    assert "    - # Number of the objective. Required, short code typed by staff: a need or" in plan


def test_the_commands_come_from_the_workflow(
    schemas: SchemaSet, flow: Workflow, forms: dict[str, formtemplate.FormInfo]
) -> None:
    assert forms["identification"].commands() == [
        "cmgit new --from FILE",
        "cmgit record ID identification --from FILE",
    ]
    assert forms["note"].commands() == ["cmgit record ID note --from FILE"]
    assert forms["closure"].commands() == [
        "cmgit record ID closure --from FILE",
        "cmgit move ID closure_pending|post_closure_monitoring|closed --from FILE",
    ]
    assert forms["reopen"].commands() == ["cmgit move ID registered|assessment --from FILE"]
    assert forms["reopen"].repeated and forms["reopen"].id_field == "reopen_id"
    assert forms["assignment"].written_by_cmgit
    assert forms["assignment"].commands() == ["cmgit assign ID STAFF --reason CODE"]
    whole = formtemplate.template(schemas, forms["assignment"], TODAY).splitlines()
    assert whole[1] == "# Every field is filled in by cmgit: cmgit assign ID STAFF --reason CODE."
    assert "  # assignment_id: filled in by cmgit" in whole
    # a programme that records closure only with its moves: the list follows the data
    doc = yaml.safe_load((SCHEMAS / "workflow.yaml").read_text())
    del doc["events"]["closure"]
    other = formtemplate.catalogue(schemas, Workflow(doc))
    assert other["closure"].commands() == [
        "cmgit move ID closure_pending|post_closure_monitoring|closed --from FILE"
    ]


def test_the_forms_named_checks_read_exist() -> None:
    assert set(formtemplate.CHECK_READS) <= set(guards.CHECKS)
    names = set(SchemaSet.load(SCHEMAS).editable_fields)
    assert {f for read in formtemplate.CHECK_READS.values() for f in read} <= names


def test_the_nearest_form_name() -> None:
    names = ["follow_up", "case_plan", "closure"]
    assert formtemplate.nearest("followup", names) == "follow_up"
    assert formtemplate.nearest("zzz", names) is None


# -- the command line ------------------------------------------------------------------


def test_form_list_names_every_form_and_how_it_is_recorded(programme: Programme) -> None:
    result = programme.cli("form", "list", as_=None)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "identification: Identification (one form). How and when the child first came to the "
        "programme's"
    )
    assert "    cmgit new --from FILE" in lines
    assert "    cmgit record ID follow_up --from FILE" in lines
    assert "    cmgit assign ID STAFF --reason CODE" in lines
    listed = programme.cli("form", "list", "--json", as_=None)
    rows = {row["form"]: row for row in json.loads(listed.stdout)}
    assert rows["follow_up"]["repeated"] is True and rows["closure"]["repeated"] is False
    assert rows["follow_up"]["filled_by_cmgit"] == ["follow_up_id"]
    assert rows["reopen"]["move_to"] == ["registered", "assessment"]


def test_an_unknown_form_names_the_nearest_and_the_forms(programme: Programme) -> None:
    before = programme.state()
    result = programme.cli("form", "template", "folow_up", as_=None)
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "Error: unknown form; did you mean follow_up? (forms: identification, consent, "
    )
    record = programme.cli("record", "CP-7K2M9QX4", "folow_up", "--template")
    assert record.exit_code == 2 and "did you mean follow_up?" in record.stderr
    assert programme.state() == before


def test_form_template_writes_a_new_file_only(programme: Programme) -> None:
    target = programme.work / "visit.yaml"
    result = programme.cli("form", "template", "follow_up", "-o", str(target), as_=None)
    assert result.exit_code == 0 and result.stdout == ""
    printed = programme.cli("form", "template", "follow_up", as_=None).stdout
    assert target.read_text() == printed
    again = programme.cli("form", "template", "note", "-o", str(target), as_=None)
    assert again.exit_code == 2
    assert again.stderr == (
        "Error: the file given to -o exists (name a new file, or print to the screen)\n"
    )
    assert target.read_text() == printed


def test_template_options_print_the_form_and_change_nothing(programme: Programme) -> None:
    case_id = programme.new_case()
    before = programme.state()
    record = programme.cli("record", case_id, "follow_up", "--template")
    assert record.exit_code == 0, record.output
    assert record.stdout == programme.cli("form", "template", "follow_up").stdout.replace(
        "Record it with: cmgit record ID follow_up --from FILE, or cmgit move ID closed --from\n"
        "# FILE.",
        f"Record it with: cmgit record {case_id} follow_up --from FILE.",
    )
    new = programme.cli("new", "--template")
    assert new.exit_code == 0
    assert new.stdout.startswith(
        "# The same file may hold the registration form too: add it with cmgit form template\n"
        "# registration >> FILE.\n# Identification: "
    )
    move = programme.cli("move", case_id, "registered", "--template")
    assert move.exit_code == 0
    note = " ".join(line[2:] for line in move.stdout.splitlines()[:3])
    assert note.startswith(
        "The move identified -> registered (T01) reads these forms: registration, consent. "
        "--from brings one of them: keep the one to record with the move, and record the "
        f"others first with cmgit record {case_id} FORM --from FILE."
    )
    assert "\nregistration:\n" in move.stdout and "\nconsent:\n" in move.stdout
    plain = programme.cli("move", case_id, "closed", "--template", as_="sv-north")
    assert plain.exit_code == 2
    assert "T02 needs --reason, one of: consent_declined" in plain.stderr
    illegal = programme.cli("move", case_id, "implementation", "--template")
    assert illegal.exit_code == 4 and "no move from identified to implementation" in illegal.stderr
    moved_by_hand = programme.cli("record", case_id, "reopen", "--template")
    assert moved_by_hand.exit_code == 2
    assert moved_by_hand.stderr == (
        "Error: cmgit record does not take the reopen form "
        "(cmgit move ID registered|assessment --from FILE)\n"
    )
    missing = programme.cli("record", case_id, "note")
    assert missing.exit_code == 2
    assert missing.stderr == (
        "Error: give the form file with --from FILE (--template prints the form to fill in)\n"
    )
    assert programme.state() == before


def test_the_templates_of_events_are_accepted_as_they_are(programme: Programme) -> None:
    """Printed and given back unchanged, each form's template is recorded by the command
    that takes it: `new`, and `record` of every event, on a case just identified, under
    way or with its closure proposed, the first that takes it."""
    intake = programme.work / "intake.yaml"
    intake.write_text(programme.cli("new", "--template").stdout)
    made = programme.cli("new", "--from", str(intake))
    assert made.exit_code == 0, made.output
    cases = {
        "identified": made.stdout.strip(),
        "implementation": programme.walk("implementation"),
        "closure_pending": programme.walk("closure_pending", seed=2),
    }
    flow = programme.repo().workflow
    for name, event in flow.events.items():
        case_id = next(cases[state] for state in cases if state in event.states)
        path = programme.work / f"{name}.yaml"
        path.write_text(programme.cli("record", case_id, name, "--template").stdout)
        result = programme.cli("record", case_id, name, "--from", str(path))
        assert result.exit_code == 0, (name, result.output)
        assert result.stdout.startswith(f"{case_id}: recorded ")


# -- one case from identification to its archive, from the templates alone --------------


class Desk:
    """A caseworker's desk: templates printed by cmgit, filled in by a script."""

    def __init__(self, programme: Programme):
        self.programme = programme
        self.day = dt.date(2025, 6, 2)
        self.case_id = ""
        self.files = 0

    def run(self, *args: str, as_: str = "cw-north-1") -> str:
        result = self.programme.cli(*args, as_=as_, today=self.day.isoformat())
        assert result.exit_code == 0, (args, result.output)
        return result.stdout

    def wait(self, days: int) -> None:
        self.day += dt.timedelta(days=days)

    def fill(self, form: str, *, uncomment: tuple[str, ...] = (), **fields: Any) -> str:
        """`cmgit form template FORM`, optional fields uncommented as a person would,
        loaded, the fields set, and written back as the form file."""
        text = self.run("form", "template", form)
        for name in uncomment:
            text = uncommented(text, name)
        doc = yaml.safe_load(text)
        body = doc[form]
        for path, value in fields.items():
            *parents, last = path.split("__")
            node = body
            for part in parents:
                node = node[int(part)] if isinstance(node, list) else node[part]
            node[last] = copy.deepcopy(value)
        self.files += 1
        target = self.programme.work / f"form-{self.files}.yaml"
        target.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        return str(target)

    def record(self, form: str, **fields: Any) -> str:
        uncomment = fields.pop("uncomment", ())
        said = self.run(
            "record", self.case_id, form, "--from", self.fill(form, uncomment=uncomment, **fields)
        )
        return said.strip().rsplit(" ", 1)[1]

    def move(self, target: str, *extra: str, as_: str = "cw-north-1") -> None:
        said = self.run("move", self.case_id, target, *extra, as_=as_)
        assert f" -> {target} (" in said


def uncommented(text: str, field: str) -> str:
    """The template with one optional field's block uncommented: its key line and the
    lines under it lose one "# " (its own optional parts stay commented)."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if re.fullmatch(rf" *# {field}:.*", line))
    indent = lines[at].index("#")
    out = lines[:at]
    out.append(lines[at][:indent] + lines[at][indent + 2 :])
    rest = at + 1
    while rest < len(lines) and lines[rest].startswith(" " * indent + "#   "):
        out.append(lines[rest][:indent] + lines[rest][indent + 2 :])
        rest += 1
    return "\n".join(out + lines[rest:]) + "\n"


def test_a_case_from_identification_to_archive_with_only_form_templates(
    programme: Programme,
) -> None:
    desk = Desk(programme)
    me, supervisor = "cw-north-1", "sv-north"
    day = lambda: desk.day.isoformat()  # noqa: E731
    criteria = programme.repo().settings["vulnerability_criteria"]

    desk.case_id = desk.run(
        "new",
        "--from",
        desk.fill(
            "identification",
            identified_on=day(),
            identified_by=me,
            initial_concern_summary=f"{CANARY}-CONCERN",
        ),
    ).strip()
    desk.wait(1)
    consents = [
        desk.record(
            "consent",
            given_by_role=role,
            decision="granted",
            scopes=["registration_and_services", "information_sharing_referral"],
            decision_on=day(),
            recorded_by=me,
        )
        for role in ("child", "caregiver")
    ]
    registration = desk.fill(
        "registration",
        registered_on=day(),
        registered_by=me,
        child__full_name=f"{CANARY}-NAME",
        child__date_of_birth="2014-05-01",
        child__age_band="5_11",
        separation_status="with_primary_caregiver",
        vulnerability_criteria_met=criteria[:1],
        consent_refs=consents,
    )
    desk.run("move", desk.case_id, "registered", "--from", registration)

    desk.wait(2)
    desk.move("assessment")
    desk.record("risk_assessment", assessed_on=day(), assessed_by=me, risk_level="medium")
    desk.wait(5)
    assessment = desk.record(
        "assessment",
        uncomment=("completed_on", "needs"),
        started_on=(desk.day - dt.timedelta(days=5)).isoformat(),
        completed_on=day(),
        assessed_by=me,
        outcome="open_case",
    )
    needs = yaml.safe_load(programme.cli("show", desk.case_id).stdout)["assessment"][0]["needs"]
    need_id = needs[0]["need_id"]

    desk.wait(3)
    desk.move("case_planning")
    desk.wait(4)
    plan_fields: dict[str, Any] = dict(
        uncomment=(
            "need_ids",
            "indicator",
            "target_date",
            "direct_or_referral",
            "responsible_party",
            "location",
            "timeframe_horizon",
            "signed_by_caseworker",
            "caregiver_participated",
        ),
        based_on_assessment_id=assessment,
        objectives__0__objective_id="O1",
        objectives__0__need_ids=[need_id],
        objectives__0__target_date=(desk.day + dt.timedelta(days=90)).isoformat(),
        actions__0__responsible_party=me,
        monitoring__follow_up_interval_days=14,
        monitoring__next_review_date=(desk.day + dt.timedelta(days=60)).isoformat(),
        participation__child_participated=True,
        participation__caregiver_participated=True,
        signed_by_caseworker__staff_id=me,
        signed_by_caseworker__date=day(),
    )
    desk.record("case_plan", **plan_fields)
    desk.wait(2)
    desk.move("implementation", as_=supervisor)

    for _ in range(2):
        desk.wait(12)
        desk.record(
            "follow_up",
            date=day(),
            conducted_by=me,
            contact_successful=True,
            child_seen=True,
            next_follow_up_on=(desk.day + dt.timedelta(days=14)).isoformat(),
        )
    desk.wait(10)
    # Progress is the review's objective_status: the approved plan stays as approved.
    desk.record(
        "review",
        date=day(),
        reviewed_by=me,
        objective_status__0__objective_id="O1",
        objective_status__0__status="achieved",
        outcome="propose_closure",
    )
    desk.move("follow_up_review")

    desk.wait(2)
    discussed = day()
    closure_fields: dict[str, Any] = dict(
        uncomment=("discussion_with_child_family_on",),
        proposed_on=day(),
        proposed_by=me,
        discussion_with_child_family_on=discussed,
    )
    # the move's --template names the forms its guards read, its own first
    template = desk.run(
        "move", desk.case_id, "closure_pending", "--reason", "objectives_met", "--template"
    )
    assert template.startswith(
        "# The move follow_up_review -> closure_pending (T19) reads these forms: closure, review,"
    )
    assert "\nclosure:\n" in template
    proposal = desk.fill("closure", **closure_fields)
    desk.move("closure_pending", "--reason", "objectives_met", "--from", proposal)

    desk.wait(31)
    conference = desk.record(
        "case_conference", date=day(), chaired_by=supervisor, decision_codes=["close"]
    )
    closure_fields["uncomment"] += (
        "case_conference_id",
        "child_agreement",
        "family_agreement",
        "community_support_available",
        "statutory_support_access",
        "reacceptance_conditions_explained",
    )
    closure_fields.update(case_conference_id=conference, reacceptance_conditions_explained=True)
    desk.record("closure", **closure_fields)
    started = desk.day
    monitoring: dict[str, Any] = dict(
        started_on=started.isoformat(),
        min_end_date=(started + dt.timedelta(days=92)).isoformat(),
        interval_days=30,
        follow_up_ids=[],
    )
    desk.move(
        "post_closure_monitoring", "--from", desk.fill("post_closure_monitoring", **monitoring),
        as_=supervisor,
    )  # fmt: skip

    visits = []
    for _ in range(3):
        desk.wait(28)
        visits.append(
            desk.record(
                "follow_up",
                date=day(),
                conducted_by=me,
                phase="post_closure",
                contact_successful=True,
                next_follow_up_on=(desk.day + dt.timedelta(days=28)).isoformat(),
            )
        )
    desk.wait(10)
    ended = desk.fill(
        "post_closure_monitoring",
        uncomment=("monitoring_outcome",),
        **{**monitoring, "follow_up_ids": visits, "monitoring_outcome": "no_concerns"},
    )
    desk.move("closed", "--from", ended, as_=supervisor)

    shown = yaml.safe_load(programme.cli("show", desk.case_id, as_=supervisor).stdout)
    assert shown["state"] == "closed"
    assert shown["closure"]["authorised_by"] == supervisor
    assert shown["post_closure_monitoring"]["ended_on"] == day()
    audit = programme.cli("audit", "--json", as_=None)
    assert audit.exit_code == 0, audit.output
    report = json.loads(audit.stdout)
    assert report["ok"] is True and report["violations"] == []
