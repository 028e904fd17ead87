"""Records come along: a renamed enum value of an open field, shipped with a migration,
brings 300 cases along in one signed `config` commit that audit and the central
repository's hook accept; without the migration, or made any other way, it is refused.
Real repositories (the benchmark generator's: real histories, age keys, SSH signatures)."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from cmgit import entries, ids
from cmgit.history import Git
from cmgit.store import forward, setup
from cmgit.template import template_root

from .conftest import CANARY, Programme, build_programme
from .test_audit import audit, forge, rules
from .test_config_commit import central
from .test_hooks import run_git
from .test_sync import in_office, offices

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import generate

COMMON = "schemas/common.schema.json"
OLD, NEW = "with_primary_caregiver", "with_caregiver"
MIGRATION = "schemas/migrations/0004-with-caregiver.yaml"
STEPS = f"""format: 4
reason: caregiver_status_renamed
steps:
  - map_values: {{field: separation_status, values: {{{OLD}: {NEW}}}}}
  - map_values: {{field: registration.separation_status, values: {{{OLD}: {NEW}}}}}
"""
CASES = 300


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    cache = tmp_path_factory.mktemp("generated")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(cache))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        yield generate.programme(CASES, layout=2, cache=cache, quiet=True)


@pytest.fixture
def big(generated: Path, tmp_path: Path) -> Programme:
    """A copy of a programme of 300 cases in sealed entries with signed histories, for one
    test."""
    base = tmp_path / "big"
    shutil.copytree(generated, base, symlinks=True)
    work = base / "work"
    work.mkdir()
    return Programme(base / "cases", base / "keys", work)


def signed(programme: Programme, staff_id: str = "pm-001") -> dict[str, str]:
    return {"CMGIT_SIGNING_KEY": str(programme.keys / f"{staff_id}.ssh")}


def open_values(programme: Programme, field: str) -> Counter[str]:
    """How often each value of an open field occurs in the records at HEAD."""
    found: Counter[str] = Counter()
    for path in (programme.root / "records").rglob("*.yaml"):
        for line in path.read_text().splitlines():
            if line.startswith(f"{field}: "):
                found[line.partition(": ")[2]] += 1
    return found


def rename_the_value(programme: Programme) -> None:
    target = programme.root / COMMON
    text = target.read_text()
    assert f'"{OLD}"' in text
    target.write_text(text.replace(f'"{OLD}"', f'"{NEW}"'))


def test_a_renamed_enum_value_with_a_migration_brings_300_cases_along(
    big: Programme, tmp_path: Path
) -> None:
    server = central(big, tmp_path)
    holding = open_values(big, "separation_status")[OLD]
    assert holding > 0 and open_values(big, "record_format") == {"3": CASES}
    rename_the_value(big)

    # Without the migration: refused, with the count and the cases, and nothing changed.
    before = big.state()
    refused = big.cli("config", "commit", "-m", "caregiver_status_renamed", as_="pm-001")
    assert refused.exit_code == 4
    assert refused.stderr.startswith(
        f"Error: the change would leave {holding} of {CASES} record(s) invalid (bring the "
        "records along with a migration in schemas/migrations/"
    )
    assert big.state() == before

    (big.root / MIGRATION).write_text(STEPS)
    before = big.state()
    dry = big.cli("config", "commit", "--dry-run", "--json", as_="pm-001")
    assert dry.exit_code == 0, dry.output
    shown = json.loads(dry.stdout)
    assert shown["migrations"] == ["0004-with-caregiver"]
    assert shown["records"] == {
        "checked": CASES,
        "invalid": 0,
        "invalid_cases": [],
        "migrated": CASES,
    }
    assert shown["files"] == {COMMON: "modified", MIGRATION: "added"}
    assert CANARY not in dry.output and big.state() == before

    made = big.cli(
        "config", "commit", "-m", "caregiver_status_renamed", as_="pm-001", env=signed(big)
    )
    assert made.exit_code == 0, made.output
    assert big.git("status", "--porcelain") == ""
    message = big.git("log", "-1", "--format=%B")
    assert message == (
        "config: caregiver_status_renamed\n\nCmgit-Action: config\n"
        "Cmgit-Reason: caregiver_status_renamed\nCmgit-Migration: 0004-with-caregiver\n"
        "Cmgit-Actor: pm-001\nCmgit-Role: programme_manager\nCmgit-Format: 2\n\n"
    )
    changed = big.git("show", "--name-only", "--format=", "HEAD").split()
    # One commit: every record, an entry for each case whose sealed forms held the value
    # (named by the version the migration gives it), the schema and the migration.
    assert Counter(path.partition("/")[0] for path in changed) == {
        "records": CASES,
        "sealed": holding,
        "schemas": 2,
    }
    for case_id, version in filter(None, map(entries.parse_entry_path, changed)):
        assert f"\nversion: {version}\n" in (big.root / ids.record_path(case_id)).read_text()
    assert open_values(big, "record_format") == {"4": CASES}
    values = open_values(big, "separation_status")
    assert values[NEW] == holding and OLD not in values

    code, report = audit(big)
    assert code == 0 and report["ok"], report
    pushed = run_git(big.root, "push", "-q", "origin", "main")
    assert pushed.returncode == 0, pushed.stderr
    assert run_git(server, "rev-parse", "main").stdout == big.git("rev-parse", "HEAD")

    # The sealed forms came along too: every record opens and validates under the new
    # schemas, and the next change of a case writes it at the repository's format.
    valid = big.cli("validate", as_="pm-001")
    assert valid.exit_code == 0, valid.output
    shown_case = big.cli("show", "--json", _holder(big), as_="pm-001")
    assert json.loads(shown_case.stdout)["registration"]["separation_status"] == NEW


def _holder(programme: Programme) -> str:
    for path in (programme.root / "records").rglob("*.yaml"):
        if f"separation_status: {NEW}" in path.read_text():
            return path.stem
    raise AssertionError("no record holds the new value")


def migrate_on_a_central(big: Programme, tmp_path: Path) -> None:
    """The value renamed with its migration, committed by the programme manager, in a
    clone of a central repository with the server hook."""
    central(big, tmp_path)
    rename_the_value(big)
    (big.root / MIGRATION).write_text(STEPS)
    made = big.cli(
        "config", "commit", "-m", "caregiver_status_renamed", as_="pm-001", env=signed(big)
    )
    assert made.exit_code == 0, made.output


def test_a_migration_made_any_other_way_fails_audit_and_the_server(
    big: Programme, tmp_path: Path
) -> None:
    migrate_on_a_central(big, tmp_path)
    migration = big.git("rev-parse", "HEAD").strip()

    # The same tree committed with plain git: not cmgit's message, not signed.
    run_git(big.root, "reset", "-q", "--soft", "HEAD~1")
    run_git(big.root, "commit", "-q", "--no-verify", "-m", "migrate records")
    code, report = audit(big, "--full")
    assert code == 6 and {"message", "signature"} <= rules(report), report
    refused = run_git(big.root, "push", "-q", "origin", "main")
    assert refused.returncode != 0 and "message" in refused.stderr

    # In cmgit's form and signed by the programme manager, but one record's open fields
    # are not what the migration makes of them.
    run_git(big.root, "reset", "-q", "--hard", f"{migration}~1")
    made = big.git("show", "--name-only", "--format=", migration).split()
    files = {p: d for p, d in Git(big.root).read_paths(migration, made).items() if d}
    holder = next(p for p, data in files.items() if f"separation_status: {NEW}".encode() in data)
    files[holder] = files[holder].replace(
        f"separation_status: {NEW}".encode(), b"separation_status: separated"
    )
    trailers = [
        ("Cmgit-Action", "config"),
        ("Cmgit-Reason", "caregiver_status_renamed"),
        ("Cmgit-Migration", "0004-with-caregiver"),
        ("Cmgit-Actor", "pm-001"),
        ("Cmgit-Role", "programme_manager"),
    ]
    forge(
        big,
        dict(files),
        "config: caregiver_status_renamed",
        trailers,
        "pm-001",
        big.keys / "pm-001.ssh",
    )
    code, report = audit(big, "--full")
    assert code == 6 and "migration" in rules(report), report
    assert any(
        "1 record(s) are not their old open fields" in v["detail"] for v in report["violations"]
    )
    refused = run_git(big.root, "push", "-q", "origin", "main")
    assert refused.returncode != 0 and "migration" in refused.stderr

    # Records (and their entries) left out of the migration: flagged too.
    run_git(big.root, "reset", "-q", "--hard", f"{migration}~1")
    cases = (ids.RECORDS_DIR + "/", entries.SEALED_DIR + "/")
    kept = {p: d for p, d in files.items() if not p.startswith(cases)}
    forge(
        big,
        dict(kept),
        "config: caregiver_status_renamed",
        trailers,
        "pm-001",
        big.keys / "pm-001.ssh",
    )
    code, report = audit(big, "--full")
    assert code == 6 and "config" in rules(report), report


def test_the_server_refuses_a_record_older_than_the_format_at_its_head(
    big: Programme, tmp_path: Path
) -> None:
    migrate_on_a_central(big, tmp_path)
    assert run_git(big.root, "push", "-q", "origin", "main").returncode == 0
    # A caseworker's cmgit from before the migration writes a record of format 3: here,
    # the case's record as it was, one version on, in a commit of cmgit's form.
    path = next(p for p in big.git("ls-files", "records").split() if p.endswith(".yaml"))
    case_id = Path(path).stem
    old = big.git("show", f"HEAD~1:{path}")
    assert "record_format: 3\n" in old
    worker = next(
        line.partition(": ")[2] for line in old.splitlines() if line.startswith("caseworker: ")
    )
    forge(
        big,
        {path: old.encode()},
        f"{case_id}: edit",
        [
            ("Cmgit-Case", case_id),
            ("Cmgit-Action", "edit"),
            ("Cmgit-Version", "9"),
            ("Cmgit-Date", "2026-10-01"),
            ("Cmgit-Actor", worker),
            ("Cmgit-Role", "caseworker"),
        ],
        worker,
        big.keys / f"{worker}.ssh",
    )
    refused = run_git(big.root, "push", "-q", "origin", "main")
    assert refused.returncode != 0
    assert f"format: {case_id}: record format 3 where the repository's is 4" in refused.stderr
    code, report = audit(big)
    assert code == 6 and "format" in rules(report)


def test_a_committed_migration_is_never_changed_and_formats_have_no_gap(
    big: Programme,
) -> None:
    rename_the_value(big)
    (big.root / MIGRATION).write_text(STEPS)
    made = big.cli(
        "config", "commit", "-m", "caregiver_status_renamed", as_="pm-001", env=signed(big)
    )
    assert made.exit_code == 0, made.output

    (big.root / MIGRATION).write_text(STEPS.replace("reason: caregiver", "reason: carer"))
    before = big.state()
    refused = big.cli("config", "commit", "-m", "reword", as_="pm-001")
    assert refused.exit_code == 4
    assert refused.stderr.startswith(
        f"Error: {MIGRATION} was committed, and records were migrated by it: it is never "
        "changed or removed"
    )
    assert big.state() == before
    (big.root / MIGRATION).unlink()
    before = big.state()
    assert big.cli("config", "commit", "-m", "reword", as_="pm-001").exit_code == 4
    assert big.state() == before
    big.git("checkout", "--", MIGRATION)

    (big.root / "schemas/migrations/0006-later.yaml").write_text(
        "format: 6\nreason: later\nsteps: []\n"
    )
    before = big.state()
    refused = big.cli("config", "commit", "-m", "later", as_="pm-001")
    assert refused.exit_code == 4
    assert "a migration added brings records to format 6, where the next is 5" in refused.stderr
    assert big.state() == before

    # Changed with plain git all the same: audit flags it.
    (big.root / "schemas/migrations/0006-later.yaml").unlink()
    (big.root / MIGRATION).write_text(STEPS.replace("reason: caregiver", "reason: carer"))
    forge(
        big,
        {MIGRATION: (big.root / MIGRATION).read_bytes()},
        "config: reword",
        [
            ("Cmgit-Action", "config"),
            ("Cmgit-Reason", "reword"),
            ("Cmgit-Actor", "pm-001"),
            ("Cmgit-Role", "programme_manager"),
        ],
        "pm-001",
        big.keys / "pm-001.ssh",
    )
    code, report = audit(big)
    assert code == 6 and "migration" in rules(report), report


def test_a_renamed_form_field_is_brought_along_in_the_sealed_forms(programme: Programme) -> None:
    with_consent = programme.new_case()
    recorded = programme.cli(
        "record", with_consent, "consent", "--from", programme.form_file("consent")
    )
    assert recorded.exit_code == 0, recorded.output
    without = programme.new_case()
    rename_consent_language(programme.root)
    (programme.root / "schemas/migrations/0004-consent-language.yaml").unlink()
    refused = programme.cli("config", "commit", "-m", "consent_language", as_="pm-001")
    assert refused.exit_code == 4 and "leave 1 of 2 record(s) invalid" in refused.stderr
    assert with_consent in refused.stderr and without not in refused.stderr

    rename_consent_language(programme.root)
    dry = programme.cli("config", "commit", "--dry-run", "--json", as_="pm-001")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["fields"] == {
        "urn:cmgit:form:consent": {
            "added": ["language_of_consent"],
            "removed": ["language_used"],
            "renamed": ["consent.language_used -> consent.language_of_consent"],
        }
    }
    made = programme.cli("config", "commit", "-m", "consent_language", as_="pm-001")
    assert made.exit_code == 0, made.output
    assert "Migrated 2 record(s) to format 4 (0004-consent-language)" in made.stdout
    assert audit(programme)[0] == 0
    shown = json.loads(programme.cli("show", "--json", with_consent).stdout)
    assert shown["version"] == 3 and shown["record_format"] == 4
    assert shown["consent"][0]["language_of_consent"].endswith("CANARY-LANG-2d4e")
    assert "language_used" not in shown["consent"][0]
    # the next case written carries the repository's format
    assert (
        json.loads(programme.cli("show", "--json", programme.new_case()).stdout)["record_format"]
        == 4
    )


def test_a_cmgit_older_than_the_repository_names_refuses_to_write(programme: Programme) -> None:
    case_id = programme.new_case()
    (programme.root / "schemas/migrations/0004-newer-writer.yaml").write_text(
        'format: 4\nreason: newer_writer\nrequires_cmgit: "99.0.0"\nsteps: []\n'
    )
    made = programme.cli("config", "commit", "-m", "newer_writer", as_="pm-001")
    assert made.exit_code == 0, made.output
    before = programme.state()
    running = importlib.metadata.version("cmgit")
    for args, who in (
        (("new", "--from", programme.form_file("identification")), "cw-north-1"),
        (("record", case_id, "consent", "--from", programme.form_file("consent")), "cw-north-1"),
        (("settings", "set", "caseload_limit", "20"), "pm-001"),
        (("config", "commit", "-m", "sop_fix"), "pm-001"),
        (("sync",), "cw-north-1"),
    ):
        refused = programme.cli(*args, as_=who)
        assert refused.exit_code == 2, (args, refused.output)
        assert refused.stderr.startswith(
            f"Error: this repository is written by cmgit 99.0.0 or later; this is cmgit "
            f"{running}, which may only read it (upgrade cmgit to 99.0.0 or later, then run "
            "the command again)"
        ), args
        assert programme.state() == before
    # reading goes on
    assert programme.cli("list", as_=None).exit_code == 0
    assert programme.cli("show", case_id).exit_code == 0
    assert audit(programme)[0] == 0


def template_copy(folder: Path) -> Path:
    """The case-repository template as this cmgit ships it, copied to ``folder``."""
    folder.mkdir(parents=True)
    return setup.copy_template(template_root(), folder)


@pytest.fixture
def earlier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Programme:
    """A programme made by a cmgit from before records carried their format: its
    template had no migrations and no record_format."""
    old = template_copy(tmp_path / "old-template")
    shutil.rmtree(old / "schemas" / "migrations")
    case = json.loads((old / "schemas/case.schema.json").read_text())
    del case["properties"]["record_format"]
    case["required"].remove("record_format")
    (old / "schemas/case.schema.json").write_text(json.dumps(case, indent=2) + "\n")
    monkeypatch.setattr(setup, "template_root", lambda: old)
    return build_programme(tmp_path / "earlier")


def test_cmgit_migrate_brings_the_record_format_to_a_repository_made_before_it(
    earlier: Programme,
) -> None:
    plain = earlier.new_case()
    consented = earlier.new_case()
    recorded = earlier.cli("record", consented, "consent", "--from", earlier.form_file("consent"))
    assert recorded.exit_code == 0, recorded.output
    assert "record_format" not in (earlier.root / ids.record_path(plain)).read_text()

    before = earlier.state()
    dry = earlier.cli("migrate", "--dry-run", "--json", as_="pm-001")
    assert dry.exit_code == 0, dry.output
    shown = json.loads(dry.stdout)
    assert shown["files"] == {
        "schemas/case.schema.json": "modified",
        "schemas/migrations/0002-record-format.yaml": "added",
        "schemas/migrations/0003-sealed-entries.yaml": "added",
    }
    assert shown["migrations"] == ["0002-record-format", "0003-sealed-entries"]
    assert shown["record_format"] == 3
    assert shown["fields"] == {"urn:cmgit:schema:case": {"added": ["record_format"], "removed": []}}
    assert shown["records"]["migrated"] == 2 and shown["records"]["invalid"] == 0
    assert earlier.state() == before
    refused = earlier.cli("migrate", as_="cw-north-1")
    assert refused.exit_code == 4 and earlier.state() == before

    made = earlier.cli("migrate", as_="pm-001")
    assert made.exit_code == 0, made.output
    assert (
        "Migrated 2 record(s) to format 3 (0002-record-format, 0003-sealed-entries)" in made.stdout
    )
    assert earlier.git("status", "--porcelain") == ""
    message = earlier.git("log", "-1", "--format=%B")
    assert "Cmgit-Migration: 0002-record-format\nCmgit-Migration: 0003-sealed-entries" in message
    for case_id in (plain, consented):
        assert "\nrecord_format: 3\n" in (earlier.root / ids.record_path(case_id)).read_text()
    code, report = audit(earlier)
    assert code == 0 and report["ok"], report
    shown_case = json.loads(earlier.cli("show", "--json", consented).stdout)
    assert shown_case["consent"][0]["given_by_name"].endswith("CANARY-NAME-7f3a")
    newer = earlier.new_case()
    assert "\nrecord_format: 3\n" in (earlier.root / ids.record_path(newer)).read_text()
    again = earlier.cli("migrate", as_="pm-001")
    assert again.exit_code == 0
    assert again.stdout.startswith("The records are at the format this cmgit ships, and the")


def rename_consent_language(office: Path) -> None:
    target = office / "schemas/forms/consent.schema.json"
    schema = json.loads(target.read_text())
    schema["properties"] = {
        ("language_of_consent" if k == "language_used" else k): v
        for k, v in schema["properties"].items()
    }
    schema["required"] = [
        "language_of_consent" if k == "language_used" else k for k in schema["required"]
    ]
    target.write_text(json.dumps(schema, indent=2) + "\n")
    (office / "schemas/migrations/0004-consent-language.yaml").write_text(
        "format: 4\nreason: consent_language\nsteps:\n"
        "  - rename_field: {field: consent.language_used, to: language_of_consent}\n"
    )


def test_an_office_with_an_unsynced_note_syncs_cleanly_over_a_migration(
    programme: Programme, tmp_path: Path
) -> None:
    case_id = programme.new_case()
    recorded = programme.cli("record", case_id, "consent", "--from", programme.form_file("consent"))
    assert recorded.exit_code == 0, recorded.output
    central, a, b = offices(programme, tmp_path)
    # The keyring goes to the central with a first sync, and comes to office B (a plain
    # clone) with its own.
    for office in (a, b):
        synced = in_office(programme, office, "sync")
        assert synced.exit_code == 0, synced.output
    # office B works offline: a note on the case, and a new case
    note = in_office(programme, b, "record", case_id, "note", "--from", programme.form_file("note"))
    assert note.exit_code == 0, note.output
    made = in_office(programme, b, "new", "--from", programme.form_file("identification"))
    assert made.exit_code == 0, made.output
    new_case = made.stdout.strip()
    # office A migrates every record and pushes
    rename_consent_language(a)
    migrated = in_office(programme, a, "config", "commit", "-m", "consent_language", as_="pm-001")
    assert migrated.exit_code == 0, migrated.output
    assert in_office(programme, a, "sync", as_="pm-001").exit_code == 0

    synced = in_office(programme, b, "sync")
    assert synced.exit_code == 0, synced.output
    assert run_git(b, "rev-parse", "HEAD").stdout == run_git(central, "rev-parse", "main").stdout
    assert run_git(b, "status", "--porcelain").stdout == ""
    for each in (case_id, new_case):
        assert "\nrecord_format: 4\n" in (b / ids.record_path(each)).read_text()
    doc = json.loads(in_office(programme, b, "show", case_id, "--json").stdout)
    assert doc["note"] and doc["consent"][0]["language_of_consent"].endswith("CANARY-LANG-2d4e")
    assert "language_used" not in doc["consent"][0]
    assert in_office(programme, b, "audit", as_=None).exit_code == 0
    assert in_office(programme, a, "sync", as_="pm-001").exit_code == 0
    assert in_office(programme, a, "audit", as_=None).exit_code == 0


def test_a_malformed_migration_is_refused_with_cmgits_message_and_changes_nothing(
    programme: Programme,
) -> None:
    programme.new_case()
    target = programme.root / "schemas/migrations/0004-bad.yaml"
    for text, message in (
        ("format: 5\nreason: r\nsteps: []\n", "format must be 4, the number its file name"),
        (
            "format: 4\nreason: r\nsteps:\n  - rename: {field: a.b}\n",
            "step 1: unknown kind of step",
        ),
        (
            "format: 4\nreason: r\nsteps:\n  - move_field: {field: registration.x, to: team}\n",
            "step 1 (move_field) moves a field between the open fields and the sealed forms",
        ),
    ):
        target.write_text(text)
        before = programme.state()
        refused = programme.cli("config", "commit", "-m", "bad", as_="pm-001")
        assert refused.exit_code == 3, refused.output
        assert refused.stderr.startswith(f"Error: schemas/migrations/0004-bad: {message}")
        assert programme.state() == before


def test_cmgit_migrate_brings_the_template_files_the_programme_kept_as_they_were(
    programme: Programme, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A newer cmgit corrects a guard's refusal and an SOP page, and adds a page: the
    repository gets what it kept as `init` made it, and keeps what it changed itself."""
    newer = template_copy(tmp_path / "newer-template")
    flow = newer / "schemas/workflow.yaml"
    flow.write_text(flow.read_text().replace("No risk level is recorded", "No risk level is set"))
    kept, changed = "site/sop/step-2-assessment.md", "site/sop/step-3-case-planning.md"
    for page in (kept, changed):
        (newer / page).write_text((newer / page).read_text() + "\nA corrected line.\n")
    (newer / "site/sop/new-page.md").write_text("# A new page\n")
    own = programme.root / changed
    own.write_text(own.read_text() + "\nThe programme's own line.\n")
    committed = programme.cli("config", "commit", "-m", "own_sop_line", as_="co-north")
    assert committed.exit_code == 0, committed.output
    monkeypatch.setattr(forward, "template_root", lambda: newer)

    dry = programme.cli("migrate", "--dry-run", "--json", as_="pm-001")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["files"] == {
        "schemas/workflow.yaml": "modified",
        kept: "modified",
        "site/sop/new-page.md": "added",
    }
    made = programme.cli("migrate", as_="pm-001")
    assert made.exit_code == 0, made.output
    assert "No risk level is set" in (programme.root / "schemas/workflow.yaml").read_text()
    assert (programme.root / kept).read_text().endswith("A corrected line.\n")
    assert "A corrected line." not in (programme.root / changed).read_text()
    assert programme.git("status", "--porcelain") == ""
    code, report = audit(programme)
    assert code == 0 and report["ok"], report
    again = programme.cli("migrate", "--json", as_="pm-001")
    assert again.exit_code == 0 and json.loads(again.stdout)["files"] == {}
