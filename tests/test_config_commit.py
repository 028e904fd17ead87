"""`cmgit config commit`: the procedure (SOP pages, forms, workflow) changed in the work
tree and committed as one `config` commit by a role that may change it; audit and the
central repository's hook accept it, and refuse the same change made any other way.
Real repositories, real age keys, real SSH signatures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cmgit.config import DEFAULT_SOP_EDITORS, SOP_EDITORS
from cmgit.schema import SETTINGS, SchemaSet
from cmgit.site import markup

from .conftest import CANARY, Programme, form
from .test_audit import audit, forge, rules
from .test_hooks import run_git
from .test_signing import require_signatures, ssh_key

PAGE = "site/sop/step-2-assessment.md"
FORM = "schemas/forms/consent.schema.json"
TYPO = "The assesment starts"  # a typo put into the page and fixed, in the tests below
FIXED = "The assessment starts"


def edit(programme: Programme, path: str, old: str, new: str) -> None:
    target = programme.root / path
    text = target.read_text()
    assert old in text
    target.write_text(text.replace(old, new, 1))


def add_form_field(programme: Programme, name: str, *, required: bool = False) -> None:
    target = programme.root / FORM
    doc = json.loads(target.read_text())
    doc["properties"][name] = {
        "type": "string",
        "maxLength": 40,
        "description": "A field the programme adds.",
        "x-cmgit-class": "O",
    }
    if required:
        doc["required"].append(name)
    target.write_text(json.dumps(doc, indent=2) + "\n")


def consent(programme: Programme, case_id: str, env: dict[str, str] | None = None) -> None:
    recorded = programme.cli(
        "record", case_id, "consent", "--from", programme.form_file("consent"), env=env
    )
    assert recorded.exit_code == 0, recorded.output


def central(programme: Programme, tmp_path: Path) -> Path:
    server = tmp_path / "central.git"
    assert (
        run_git(tmp_path, "clone", "-q", "--bare", str(programme.root), str(server)).returncode == 0
    )
    installed = programme.cli("-C", str(server), "hooks", "install", "--server", as_=None)
    assert installed.exit_code == 0, installed.output
    run_git(programme.root, "remote", "add", "origin", str(server))
    return server


def signing_key(programme: Programme, tmp_path: Path, staff_id: str, pm_key: Path) -> Path:
    key, public = ssh_key(tmp_path, staff_id)
    updated = programme.cli(
        "staff",
        "update",
        staff_id,
        "--signing-key",
        public,
        as_="pm-001",
        env={"CMGIT_SIGNING_KEY": str(pm_key)},
    )
    assert updated.exit_code == 0, updated.output
    return key


def test_a_coordinators_sop_typo_fix_passes_audit_the_server_and_reaches_the_site(
    programme: Programme, tmp_path: Path
) -> None:
    pm_key, _ = require_signatures(programme, tmp_path)
    co_key = signing_key(programme, tmp_path, "co-north", pm_key)
    signed = {"CMGIT_SIGNING_KEY": str(co_key)}
    edit(programme, PAGE, "\n", f"\n\n{TYPO} with a first visit.\n")
    made = programme.cli("config", "commit", "-m", "sop_visit_note", as_="co-north", env=signed)
    assert made.exit_code == 0, made.output
    server = central(programme, tmp_path)

    edit(programme, PAGE, TYPO, FIXED)
    fixed = programme.cli("config", "commit", "-m", "sop_typo_fix", as_="co-north", env=signed)
    assert fixed.exit_code == 0, fixed.output
    assert f"{PAGE}: modified" in fixed.stdout and "Committed 1 file(s)" in fixed.stdout
    assert programme.git("status", "--porcelain") == ""
    assert programme.git("log", "-1", "--format=%B") == (
        "config: sop_typo_fix\n\nCmgit-Action: config\nCmgit-Reason: sop_typo_fix\n"
        "Cmgit-Actor: co-north\nCmgit-Role: coordinator\nCmgit-Format: 2\n\n"
    )
    code, report = audit(programme)
    assert code == 0 and report["ok"], report
    pushed = run_git(programme.root, "push", "-q", "origin", "main")
    assert pushed.returncode == 0, pushed.stderr
    assert run_git(server, "rev-parse", "main").stdout == programme.git("rev-parse", "HEAD")

    out = tmp_path / "built"
    built = programme.cli("site", "build", "--out", str(out), as_=None)
    assert built.exit_code == 0, built.output
    page = (out / "sop" / "step-2-assessment.html").read_text()
    assert FIXED in page and TYPO not in page


def test_a_programme_managers_new_optional_field_passes_audit_and_reaches_the_reference(
    programme: Programme, tmp_path: Path
) -> None:
    pm_key, cw_key = require_signatures(programme, tmp_path)
    pm, cw = {"CMGIT_SIGNING_KEY": str(pm_key)}, {"CMGIT_SIGNING_KEY": str(cw_key)}
    made = programme.cli("new", "--from", programme.form_file("identification"), env=cw)
    case_id = made.stdout.strip()
    consent(programme, case_id, cw)
    central(programme, tmp_path)
    add_form_field(programme, "preferred_language_code")
    before = programme.state()
    dry = programme.cli("config", "commit", "--dry-run", "--json", as_="pm-001")
    assert dry.exit_code == 0, dry.output
    shown = json.loads(dry.stdout)
    assert shown["files"] == {FORM: "modified"} and shown["commit"] is None
    assert shown["fields"] == {
        "urn:cmgit:form:consent": {"added": ["preferred_language_code"], "removed": []}
    }
    assert shown["records"] == {"checked": 1, "invalid": 0, "invalid_cases": []}
    assert programme.state() == before

    made = programme.cli("config", "commit", "-m", "new_language_field", as_="pm-001", env=pm)
    assert made.exit_code == 0, made.output
    assert programme.git("status", "--porcelain") == ""
    code, report = audit(programme)
    assert code == 0 and report["ok"], report
    pushed = run_git(programme.root, "push", "-q", "origin", "main")
    assert pushed.returncode == 0, pushed.stderr
    # the next consent recorded may carry it, and the reference pages name it
    doc = form("consent")
    doc["consent"]["preferred_language_code"] = "lang_01"
    recorded = programme.cli(
        "record", case_id, "consent", "--from", programme.form_file("c", doc), env=cw
    )
    assert recorded.exit_code == 0, recorded.output
    assert audit(programme)[0] == 0
    assert run_git(programme.root, "push", "-q", "origin", "main").returncode == 0
    out = tmp_path / "built"
    assert programme.cli("site", "build", "--out", str(out), as_=None).exit_code == 0
    assert markup.code("preferred_language_code") in (out / "reference" / "forms.html").read_text()


def test_the_same_sop_change_by_a_caseworker_is_refused_and_changes_nothing(
    programme: Programme,
) -> None:
    edit(programme, PAGE, "\n", "\n\nA caseworker's own procedure.\n")
    before = programme.state()
    refused = programme.cli("config", "commit", "-m", "sop_typo_fix", as_="cw-north-1")
    assert refused.exit_code == 4
    assert refused.stderr.startswith(
        f"Error: cw-north-1 (caseworker) may not change {PAGE}: the roles in the setting "
        "sop_editors (programme_manager, coordinator) change it"
    )
    assert programme.state() == before


def test_sop_editors_is_a_setting_in_force(programme: Programme) -> None:
    changed = programme.cli("settings", "set", SOP_EDITORS, "[programme_manager]", as_="pm-001")
    assert changed.exit_code == 0, changed.output
    edit(programme, PAGE, "\n", "\n\nA coordinator's note.\n")
    refused = programme.cli("config", "commit", "-m", "sop_note", as_="co-north")
    assert refused.exit_code == 4 and "sop_editors (programme_manager)" in refused.stderr
    assert programme.cli("config", "commit", "-m", "sop_note", as_="pm-001").exit_code == 0
    assert audit(programme)[0] == 0


def test_the_settings_schema_default_of_sop_editors_is_the_one_in_force() -> None:
    template = SchemaSet.load(Path(__file__).resolve().parent.parent / "schemas")
    default = template.schemas[SETTINGS]["properties"][SOP_EDITORS]["default"]
    assert tuple(default) == DEFAULT_SOP_EDITORS


def test_an_invalid_workflow_is_refused_and_changes_nothing(programme: Programme) -> None:
    edit(programme, "schemas/workflow.yaml", "guards: [G01, G02", "guards: [G99, G02")
    before = programme.state()
    refused = programme.cli("config", "commit", "-m", "new_guard", as_="pm-001")
    assert refused.exit_code == 3
    assert "Error: workflow data is inconsistent: undefined guards: G99" in refused.stderr
    assert programme.state() == before
    dry = programme.cli("config", "commit", "--dry-run", as_="pm-001")
    assert dry.exit_code == 3 and programme.state() == before


def test_a_schema_that_does_not_compile_is_refused(programme: Programme) -> None:
    target = programme.root / FORM
    doc = json.loads(target.read_text())
    doc["properties"]["consent_id"]["pattern"] = "(unclosed"
    target.write_text(json.dumps(doc))
    before = programme.state()
    refused = programme.cli("config", "commit", "-m", "id_pattern", as_="pm-001")
    assert refused.exit_code == 3
    assert "urn:cmgit:form:consent is not a valid JSON Schema" in refused.stderr
    assert programme.state() == before


def test_a_field_change_that_invalidates_records_is_refused_dry_run_counts_them(
    programme: Programme,
) -> None:
    case_id = programme.new_case()
    consent(programme, case_id)
    untouched = programme.new_case()  # no consent recorded: stays valid
    add_form_field(programme, "witness_code", required=True)
    before = programme.state()
    refused = programme.cli("config", "commit", "-m", "witness_required", as_="pm-001")
    assert refused.exit_code == 4
    assert refused.stderr.splitlines()[:2] == [
        "Error: the change would leave 1 of 2 record(s) invalid (bring the records along "
        "with a migration in schemas/migrations/ (see the coordinators' guide), or keep the "
        "change compatible: a new field optional, no field or value removed)",
        f"  {case_id}",
    ]
    assert programme.state() == before

    dry = programme.cli("config", "commit", "--dry-run", as_="pm-001")
    assert dry.exit_code == 0, dry.output
    assert "invalid: 1" in dry.stdout and case_id in dry.stdout and untouched not in dry.stdout
    assert "Dry run: nothing committed" in dry.stdout
    # counts, names and case IDs: never a value of a record
    assert CANARY not in dry.output
    assert programme.state() == before


def test_files_other_commands_change_are_refused_with_the_command(programme: Programme) -> None:
    settings = programme.root / "settings.yaml"
    settings.write_text(settings.read_text().replace("caseload_limit: 25", "caseload_limit: 20"))
    refused = programme.cli("config", "commit", "-m", "caseload", as_="pm-001")
    assert refused.exit_code == 4
    assert "settings.yaml is not changed by cmgit config commit" in refused.stderr
    assert "cmgit settings set KEY VALUE" in refused.stderr
    programme.git("checkout", "--", "settings.yaml")

    (programme.root / "README-local.md").write_text("notes\n")
    refused = programme.cli("config", "commit", "-m", "notes", as_="pm-001")
    assert refused.exit_code == 4
    assert "README-local.md is not part of the configuration" in refused.stderr
    (programme.root / "README-local.md").unlink()

    case_id = programme.new_case()
    record = programme.root / "records"
    path = next(p for p in record.rglob("*.yaml") if case_id in p.name)
    path.write_text(path.read_text() + "\n")
    before = programme.state()
    refused = programme.cli("config", "commit", "-m", "records", as_="pm-001")
    assert refused.exit_code == 6 and "a configuration commit never carries records" in (
        refused.stderr
    )
    assert programme.state() == before


def test_the_reason_is_a_code_never_free_text(programme: Programme) -> None:
    edit(programme, PAGE, "\n", "\n\nA note.\n")
    before = programme.state()
    for reason in ("fixed the page about Amina", "x" * 49, "sop fix\nCmgit-Action: init"):
        refused = programme.cli("config", "commit", "-m", reason, as_="co-north")
        assert refused.exit_code == 2, reason
        assert "the reason is a code of lower-case letters" in refused.stderr
        assert "Amina" not in refused.output
    missing = programme.cli("config", "commit", as_="co-north")
    assert missing.exit_code == 2 and "-m REASON" in missing.stderr
    assert programme.state() == before


def test_nothing_to_commit_says_so(programme: Programme) -> None:
    result = programme.cli("config", "commit", "-m", "sop_typo_fix", as_="co-north")
    assert result.exit_code == 0
    assert result.stdout == "No change of the configuration in the work tree; nothing committed\n"


def test_a_page_holding_an_age_message_or_a_record_line_is_refused(programme: Programme) -> None:
    case_id = programme.new_case()
    record = next((programme.root / "records").rglob("*.yaml")).read_text()
    for name, text in (
        ("copied.md", record),
        ("armored.md", "-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n"),
        ("named.md", f"See case {case_id}.\n"),
    ):
        page = programme.root / "site" / "sop" / name
        page.write_text(text)
        before = programme.state()
        refused = programme.cli("config", "commit", "-m", "sop_page", as_="co-north")
        assert refused.exit_code == 4, name
        assert f"site/sop/{name} holds what the site must never publish" in refused.stderr
        assert CANARY not in refused.output
        assert programme.state() == before
        page.unlink()


def test_a_plain_git_commit_of_an_sop_change_still_fails_audit(programme: Programme) -> None:
    edit(programme, PAGE, "\n", "\n\nA note.\n")
    run_git(programme.root, "commit", "-q", "--no-verify", "-am", "sop fix")
    code, report = audit(programme)
    assert code == 6 and "message" in rules(report)


def test_a_forged_config_commit_is_flagged_by_audit_and_refused_by_the_server(
    programme: Programme, tmp_path: Path
) -> None:
    """A commit in cmgit's own form and correctly signed, but by someone whose role may
    not change what it touches, or touching what no `config` commit may."""
    pm_key, cw_key = require_signatures(programme, tmp_path)
    made = programme.cli(
        "new",
        "--from",
        programme.form_file("identification"),
        env={"CMGIT_SIGNING_KEY": str(cw_key)},
    )
    assert made.exit_code == 0, made.output
    central(programme, tmp_path)
    page = (programme.root / PAGE).read_bytes() + b"\nA note.\n"
    form = (
        (programme.root / FORM).read_bytes().replace(b'"title": "Consent', b'"title": "Consents', 1)
    )
    settings = (
        (programme.root / "settings.yaml")
        .read_bytes()
        .replace(b"caseload_limit: 25", b"caseload_limit: 20")
    )
    invalid = (
        (programme.root / "schemas/workflow.yaml")
        .read_bytes()
        .replace(b"guards: [G01, G02", b"guards: [G99, G02")
    )

    case_schema = json.loads((programme.root / "schemas/case.schema.json").read_text())
    case_schema["properties"]["district_code"] = {
        "type": "string",
        "description": "A new open field no record has.",
        "x-cmgit": "open",
    }
    new_open_field = json.dumps(case_schema, indent=2).encode()

    def trailers(actor: str, role: str) -> list[tuple[str, str]]:
        return [
            ("Cmgit-Action", "config"),
            ("Cmgit-Reason", "sop_typo_fix"),
            ("Cmgit-Actor", actor),
            ("Cmgit-Role", role),
        ]

    cases = {
        "an SOP page by a caseworker": ({PAGE: page}, "cw-north-1", "caseworker", cw_key, "config"),
        "a form by a caseworker": ({FORM: form}, "cw-north-1", "caseworker", cw_key, "config"),
        "settings.yaml in a config commit": (
            {PAGE: page, "settings.yaml": settings},
            "pm-001",
            "programme_manager",
            pm_key,
            "paths",
        ),
        "an invalid workflow": (
            {"schemas/workflow.yaml": invalid},
            "pm-001",
            "programme_manager",
            pm_key,
            "config",
        ),
    }
    cases["a new open field no record has"] = (
        {"schemas/case.schema.json": new_open_field},
        "pm-001",
        "programme_manager",
        pm_key,
        "config",
    )
    for name, (files, actor, role, key, rule) in cases.items():
        forge(programme, files, "config: sop_typo_fix", trailers(actor, role), actor, key)
        code, report = audit(programme, "--full")
        assert code == 6 and rule in rules(report), (name, report)
        pushed = run_git(programme.root, "push", "-q", "origin", "main")
        assert pushed.returncode != 0 and rule in pushed.stderr, (name, pushed.stderr)
        run_git(programme.root, "reset", "-q", "--hard", "HEAD~1")
    # the same page change, by the programme manager: accepted
    forge(
        programme,
        {PAGE: page},
        "config: sop_typo_fix",
        trailers("pm-001", "programme_manager"),
        "pm-001",
        pm_key,
    )
    assert audit(programme, "--full")[0] == 0
    assert run_git(programme.root, "push", "-q", "origin", "main").returncode == 0


def test_mkdocs_yml_is_the_programme_managers_and_may_not_run_code(programme: Programme) -> None:
    mkdocs = programme.root / "mkdocs.yml"
    mkdocs.write_text(mkdocs.read_text() + "hooks:\n  - hooks.py\n")
    before = programme.state()
    refused = programme.cli("config", "commit", "-m", "site_hooks", as_="co-north")
    assert refused.exit_code == 4
    assert "may not change mkdocs.yml: programme managers change it" in refused.stderr
    refused = programme.cli("config", "commit", "-m", "site_hooks", as_="pm-001")
    assert refused.exit_code == 3
    assert "mkdocs.yml uses what the site build does not allow: hooks" in refused.stderr
    assert programme.state() == before


def test_a_new_guard_on_an_existing_transition_is_shown_committed_and_audited(
    programme: Programme, tmp_path: Path
) -> None:
    programme.new_case()
    edit(
        programme,
        "schemas/workflow.yaml",
        "to: assessment, by: case_workers, summary:",
        "to: assessment, by: case_workers, guards: [G90], summary:",
    )
    edit(
        programme,
        "schemas/workflow.yaml",
        "guards:\n",
        'guards:\n  G90: {severity: hard, summary: "Consent is on file before the assessment.",'
        " schema: {required: [consent]}}\n",
    )
    dry = programme.cli("config", "commit", "--dry-run", "--json", as_="pm-001")
    assert dry.exit_code == 0, dry.output
    shown = json.loads(dry.stdout)
    assert shown["workflow"] == {
        "transitions": {"added": [], "removed": [], "changed": ["T03"]},
        "guards": {"added": ["G90"], "removed": [], "changed": []},
    }
    assert shown["fields"] == {} and shown["records"]["invalid"] == 0
    made = programme.cli("config", "commit", "-m", "consent_before_assessment", as_="pm-001")
    assert made.exit_code == 0, made.output
    assert audit(programme)[0] == 0
    out = tmp_path / "built"
    assert programme.cli("site", "build", "--out", str(out), as_=None).exit_code == 0
    assert (
        "Consent is on file before the assessment."
        in (out / "reference" / "guards.html").read_text()
    )


def test_a_configuration_commit_of_cmgit_is_in_force_at_once_and_audit_judges_it(
    programme: Programme, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit a programme manager's `config commit` made, after checking it with the
    key that opens every record, is in force at once: neither that command nor the next
    judges it again without a key (for a migration of every record, seconds). Judged
    afresh, it is found in force as remembered, and `cmgit audit` judges it as ever."""
    from cmgit import caches
    from cmgit.audit import IN_FORCE_CACHE, Auditor, config_in_force
    from cmgit.history import Git

    pm_key, _ = require_signatures(programme, tmp_path)
    assert programme.cli("list", as_=None).exit_code == 0  # in force as of HEAD, remembered
    add_form_field(programme, "preferred_language_code")

    def judged(*args: object) -> None:
        raise AssertionError("a commit was judged again")

    with monkeypatch.context() as patched:
        patched.setattr(Auditor, "_judged", judged)
        made = programme.cli(
            "config", "commit", "-m", "new_language_field", as_="pm-001",
            env={"CMGIT_SIGNING_KEY": str(pm_key)},
        )  # fmt: skip
        assert made.exit_code == 0, made.output
        assert programme.cli("list", as_=None).exit_code == 0
    git = Git(programme.root)
    head = git.head()
    remembered = caches.remembered(git, IN_FORCE_CACHE, ())
    assert remembered is not None and remembered[0] == head
    assert remembered[1][0] == head  # schemas/ as of the commit just made
    shutil.rmtree(programme.root / ".git" / "cmgit" / "cache")
    assert config_in_force(git, head)[0] == remembered[1]
    code, report = audit(programme)
    assert code == 0 and report["ok"], report
