"""Import, export and disclosure: the pure mapping, and end to end on real repositories
with real age keys."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml

from cmgit import crypto, exchange, ids
from cmgit.errors import UsageError

from .conftest import CANARY, TODAY, Programme, build_programme
from .test_audit import audit, forge

PRIMERO = Path(exchange.__file__).parent / "maps" / "primero.yaml"
MAP = exchange.load_map(PRIMERO.read_bytes())
DAY = dt.date.fromisoformat(TODAY)
HEADER = [
    "case_id_display",
    "name",
    "sex",
    "date_of_birth",
    "age",
    "registration_date",
    "workflow",
    "risk_level",
    "owned_by",
    "protection_concerns",
    "location_current",
    "unaccompanied_separated_status",
]
# Each broken row: its change, and the field (or column) its problem must name.
BROKEN = [
    ({"sex": f"zz-{CANARY}-SEX"}, "sex"),
    ({"registration_date": f"{CANARY}-DATE"}, "registration_date"),
    ({"owned_by": "nobody-here"}, "caseworker"),
    ({"workflow": "limbo"}, "state"),
    ({"date_of_birth": "", "age": ""}, "/registration/child"),
]


def sample_rows(
    count: int = 1000,
    broken_every: int = 50,
    workers: tuple[str, ...] = ("cw-north-1", "cw-north-2", "cw-south-1"),
) -> tuple[list[list[str]], set[int]]:
    """Rows as a Primero export holds them; every ``broken_every``-th row broken."""
    rows, broken = [], set()
    states = ["new", "registration", "assessment", "case_plan", "service_provision"]
    for n in range(1, count + 1):
        row = {
            "case_id_display": f"PRI-{n:05d}",
            "name": f"Child {n} {CANARY}-NAME-{n}",
            "sex": "female" if n % 2 else "M",
            "date_of_birth": f"20{10 + n % 8}-0{1 + n % 9}" if n % 3 else "",
            "age": "" if n % 3 else str(5 + n % 12),
            "registration_date": f"2025-{1 + n % 12:02d}-{1 + n % 28:02d}",
            "workflow": states[n % len(states)],
            "risk_level": ["high", "medium", "low", ""][n % 4],
            "owned_by": workers[n % len(workers)],
            "protection_concerns": "neglect; separated" if n % 2 else "child_labour",
            "location_current": f"Camp {n % 7} {CANARY}-PLACE-{n}",
            "unaccompanied_separated_status": ["no", "separated_child", "unaccompanied_minor"][
                n % 3
            ],
        }
        if n % broken_every == 0:
            change, _ = BROKEN[(n // broken_every) % len(BROKEN)]
            row.update(change)
            broken.add(n)
        rows.append([row[h] for h in HEADER])
    return rows, broken


def write_sample(
    path: Path, count: int = 1000, broken_every: int = 50, workers: tuple[str, ...] = ()
) -> set[int]:
    rows, broken = sample_rows(count, broken_every, *([workers] if workers else []))
    path.write_bytes(exchange.write_csv(HEADER, rows))
    return broken


# -- pure --------------------------------------------------------------------------------


def new_id(form: str) -> str:
    return f"{form}-AAAAAAAA"


ID_FIELDS = {"risk_assessment": "risk_assessment_id"}


def test_a_primero_row_becomes_forms_with_defaults_and_codes() -> None:
    rows, _ = sample_rows(4)
    cells = dict(zip(HEADER, rows[0], strict=True))
    row = exchange.map_row(1, cells, MAP, DAY, new_id, ID_FIELDS)
    assert row.problems == []
    assert row.open == {
        "state": "registered",
        "state_since": "2025-02-02",
        "caseworker": "cw-north-2",
    }
    child = row.forms["registration"]["child"]
    assert child["sex"] == "female" and child["date_of_birth"] == "2011-02"
    assert child["dob_estimated"] is False and child["age_band"] == "15_17"
    assert row.forms["registration"]["initial_protection_concerns"] == [
        "neglect",
        "separation_from_family",
    ]
    assert row.forms["registration"]["registered_by"] == "cw-north-2"
    risk = row.forms["risk_assessment"][0]
    assert (
        risk["risk_level"] == "medium" and risk["risk_assessment_id"] == "risk_assessment-AAAAAAAA"
    )
    assert row.forms["identification"]["identified_on"] == "2025-02-02"


def test_an_age_alone_gives_an_estimated_year_of_birth() -> None:
    rows, _ = sample_rows(3)
    row = exchange.map_row(3, dict(zip(HEADER, rows[2], strict=True)), MAP, DAY, new_id, {})
    child = row.forms["registration"]["child"]
    assert child["date_of_birth"] == str(DAY.year - 8) and child["dob_estimated"] is True


def test_problems_name_the_column_never_the_value() -> None:
    rows, _ = sample_rows(1)
    cells = dict(zip(HEADER, rows[0], strict=True))
    cells.update(sex=f"{CANARY}-X", registration_date=f"{CANARY}-Y", age="many")
    cells["date_of_birth"] = ""
    row = exchange.map_row(7, cells, MAP, DAY, new_id, {})
    problems = list(exchange.iter_problems([row]))
    assert problems == [
        "row 7: registration_date: not a date (YYYY-MM-DD)",
        "row 7: sex: a code the map's values do not list",
        "row 7: age: not a whole number",
    ]
    assert not any(CANARY in p for p in problems)


@pytest.mark.parametrize(
    "value", ["text", "2026-01-01", "123", "true", "", '"quoted"', [1, "a"], {"a": None}, 5, False]
)
def test_cells_read_back_as_written(value: object) -> None:
    cell = exchange.encode_cell(value)
    assert exchange.decode_cell(cell) == value


def test_a_map_with_an_unknown_key_is_refused_by_name() -> None:
    with pytest.raises(UsageError, match="column sex: unknown key colour"):
        exchange.load_map(b"map: cmgit-import-map 1\ncolumns:\n  sex: {field: a.b, colour: x}\n")
    with pytest.raises(UsageError, match="not an import map"):
        exchange.load_map(b"columns: {}\n")


def test_own_export_columns_must_name_fields_and_cells_must_read() -> None:
    forms = ("identification", "registration")
    header = ["case_id", "state", "registration.child.sex", "colour"]
    assert exchange.check_header(header, exchange.OWN_MAP, forms) == [
        "column colour: not a field of a cmgit case"
    ]
    cells = {"state": '["registered"', "registration": '{"child": 1}', "version": "7"}
    row = exchange.map_row(2, cells, exchange.OWN_MAP, DAY, new_id, {})
    assert row.problems == [] and row.open == {"state": '["registered"'}  # text, not JSON
    assert row.forms == {"registration": {"child": 1}} and "version" not in row.open


def test_differences_ignore_what_a_round_trip_cannot_carry() -> None:
    a = {"case_id": "CP-1", "version": 3, "state": "registered", "x": {"y": [1, 2]}}
    b = {"case_id": "CP-2", "version": 1, "state": "registered", "x": {"y": [1, 3]}}
    assert exchange.differences(a, b) == ["x.y.1"]


# -- end to end ----------------------------------------------------------------------------


def test_import_reports_broken_rows_and_imports_the_rest(programme: Programme) -> None:
    source = programme.work / "primero.csv"
    broken = write_sample(source, 1000, 50)
    before = programme.state()
    dry = programme.cli("import", str(source), "--map", str(PRIMERO), "--dry-run", as_="pm-001")
    assert dry.exit_code == 0, dry.output
    lines = dry.stdout.splitlines()
    assert sorted({int(line.split(":")[0][4:]) for line in lines}) == sorted(broken)
    assert len(broken) == 20
    for line in lines:
        n = int(line.split(":")[0][4:])
        _, named = BROKEN[(n // 50) % len(BROKEN)]
        assert named in line, line
    assert CANARY not in dry.output
    assert "would import 980 of 1000 rows; 20 row(s)" in dry.stderr
    assert programme.state() == before

    refused = programme.cli("import", str(source), "--map", str(PRIMERO), as_="sv-north")
    assert refused.exit_code == 4 and "needs the role programme_manager" in refused.stderr
    assert programme.state() == before

    done = programme.cli("import", str(source), "--map", str(PRIMERO), "--json", as_="pm-001")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert (report["imported"], report["failed_rows"]) == (980, 20)
    assert CANARY not in done.output
    message = programme.git("log", "-1", "--format=%B")
    assert "Cmgit-Action: import" in message and "Cmgit-Count: 980" in message
    assert f"Cmgit-Source: {exchange.source_hash(source.read_bytes())}" in message
    assert CANARY not in programme.git("log", "--format=%B")
    assert programme.git("status", "--porcelain") == ""
    assert len(programme.repo().case_ids()) == 980

    audit = programme.cli("audit", "--full", as_=None)
    assert audit.exit_code == 0, audit.output

    listed = json.loads(programme.cli("list", "--json", as_=None).stdout)
    assert {c["state"] for c in listed} >= {"identified", "registered", "case_planning"}
    log = programme.cli("log", listed[0]["case_id"], "--json", as_=None)
    assert log.exit_code == 0 and json.loads(log.stdout)[0]["action"] == "import"
    # Imported cases have no `new` or `move` commits; the statistics count them all the same.
    figures = programme.cli("stats", "--json", as_=None)
    assert figures.exit_code == 0, figures.output
    tables = {t["id"]: t for t in json.loads(figures.stdout)["tables"]}
    still_open = [c for c in listed if not c["state"].startswith("closed")]
    assert tables["open_by_step_and_risk"]["total"] == len(still_open)

    again = programme.cli("import", str(source), "--map", str(PRIMERO), as_="pm-001")
    assert again.exit_code == 4 and "imported already" in again.stderr


def test_round_trip_into_an_empty_repository(programme: Programme, tmp_path: Path) -> None:
    first = programme.walk("implementation")
    second = programme.new_case()
    other = build_programme(tmp_path / "other")  # another programme, the same staff ids
    receiver = other.repo().registry.get("pm-001").recipient
    sealed = tmp_path / "export.age"
    made = programme.cli("export", "--recipient", receiver, "-o", str(sealed), as_="pm-001")
    assert made.exit_code == 0, made.output
    assert CANARY.encode() not in sealed.read_bytes()
    assert "Cmgit-Action: export" in programme.git("log", "-1", "--format=%B")
    assert programme.cli("audit", "--full", as_=None).exit_code == 0

    result = other.cli("import", str(sealed), as_="pm-001")
    assert result.exit_code == 0, result.output
    assert other.cli("audit", "--full", as_=None).exit_code == 0
    old = {c: programme.cli("show", c, "--json", as_="pm-001") for c in (first, second)}
    new_ids = other.repo().case_ids()
    assert len(new_ids) == 2
    shown = [json.loads(other.cli("show", c, "--json", as_="pm-001").stdout) for c in new_ids]
    for before in (json.loads(r.stdout) for r in old.values()):
        match = [after for after in shown if after["identification"] == before["identification"]]
        assert match and exchange.differences(before, match[0]) == []


def test_plaintext_export_needs_a_reason_and_is_recorded(programme: Programme) -> None:
    programme.new_case()
    out = programme.work / "clear.csv"
    bare = programme.cli("export", "--plaintext", "-o", str(out), as_="pm-001")
    assert bare.exit_code == 2 and not out.exists()
    bad = programme.cli(
        "export", "--plaintext", "--reason", "because", "-o", str(out), as_="pm-001"
    )
    assert bad.exit_code == 2 and not out.exists()
    ok = programme.cli(
        "export",
        "--plaintext",
        "--reason",
        "system_migration",
        "--fields",
        "state,identification.identified_on",
        "-o",
        str(out),
        as_="pm-001",
    )
    assert ok.exit_code == 0, ok.output
    header, rows = exchange.read_csv(out.read_bytes())
    assert header == ["case_id", "state", "identification.identified_on"] and len(rows) == 1
    message = programme.git("log", "-1", "--format=%B")
    assert "Cmgit-Reason: system_migration" in message and "Cmgit-Count: 1" in message
    assert programme.cli("audit", "--full", as_=None).exit_code == 0


def test_an_export_in_message_form_1_is_forged(programme: Programme) -> None:
    """Exports came with message form 2: one that names no form was not made by cmgit."""
    programme.new_case()
    out = programme.work / "sealed.csv.age"
    assert programme.cli("export", "-o", str(out), as_="pm-001").exit_code == 0
    subject = programme.git("log", "-1", "--format=%s").strip()
    lines = programme.git("log", "-1", "--format=%B").strip().split("\n")[2:]
    form_1 = [(k, v) for k, _, v in (line.partition(": ") for line in lines) if k != "Cmgit-Format"]
    programme.git("reset", "-q", "--hard", "HEAD~1")
    forge(programme, {}, subject, form_1, "pm-001")
    code, report = audit(programme)
    assert code == 6
    assert [(v["rule"], v["detail"]) for v in report["violations"]] == [
        ("message", "export: an action of a later form of message than this one")
    ]


def test_export_holds_only_the_cases_the_caller_opens(programme: Programme) -> None:
    programme.new_case()
    south = programme.new_case(as_="cw-south-1")
    out = programme.work / "mine.age"
    made = programme.cli("export", "-o", str(out), as_="cw-south-1")
    assert made.exit_code == 0, made.output
    plain = crypto.decrypt_message(out.read_bytes(), programme.identities("cw-south-1"))
    _, rows = exchange.read_csv(plain)
    assert [r["case_id"] for r in rows] == [south]
    assert CANARY in plain.decode()
    auditor = programme.cli("export", "-o", str(programme.work / "x.age"), as_="aud-001")
    assert auditor.exit_code == 4


def test_disclose_seals_the_whole_case_to_the_recipient_and_records_it(
    programme: Programme, tmp_path: Path
) -> None:
    case_id = programme.new_case()
    secret, recipient = crypto.generate_identity()
    crypto.write_identity_file(tmp_path / "family.txt", secret, recipient)
    out = tmp_path / "record.age"
    done = programme.cli(
        "disclose", case_id, "--recipient", recipient, "-o", str(out), "--reason", "child_request"
    )
    assert done.exit_code == 0, done.output
    plain = crypto.decrypt_message(
        out.read_bytes(), crypto.load_identities(tmp_path / "family.txt")
    )
    doc = yaml.safe_load(plain)
    assert doc["case_id"] == case_id and CANARY in doc["identification"]["initial_concern_summary"]
    with pytest.raises(crypto.AgeFailure):
        crypto.decrypt_message(out.read_bytes(), programme.identities("cw-north-1"))
    message = programme.git("log", "-1", "--format=%B")
    assert f"Cmgit-Case: {case_id}" in message and "Cmgit-Action: disclose" in message
    assert recipient not in message and CANARY not in message
    assert programme.cli("audit", "--full", as_=None).exit_code == 0
    # The disclosure is in the case's log (keyless) and in its sealed disclosures.
    logged = programme.cli("log", case_id, "--json", as_=None)
    assert logged.exit_code == 0, logged.output
    last = json.loads(logged.stdout)[-1]
    assert last["action"] == "disclose" and last["detail"].startswith("disclosure-")
    assert last["reason"] == "child_request" and recipient not in logged.output
    shown = json.loads(programme.cli("show", case_id, "--json").stdout)
    [entry] = shown["disclosures"]
    assert entry["event_id"] == last["detail"] and entry["kind"] == "disclose"
    assert recipient not in json.dumps(entry)
    other = programme.cli(
        "disclose",
        case_id,
        "--recipient",
        recipient,
        "-o",
        str(tmp_path / "b.age"),
        as_="cw-south-1",
    )
    assert other.exit_code == 5 and not (tmp_path / "b.age").exists()


def test_audit_flags_an_import_by_a_supervisor_with_a_wrong_count(programme: Programme) -> None:
    from cmgit.store import unit

    case_id = programme.new_case()
    repo = programme.repo()
    actor = repo.registry.get("sv-north")
    path = ids.record_path(case_id)
    with unit.change(repo, [path]) as parent:
        unit.commit(
            repo,
            {path: (programme.root / path).read_bytes()},
            "import: 1 cases",
            [
                ("Cmgit-Action", "import"),
                ("Cmgit-Source", "0" * 64),
                ("Cmgit-Count", "2"),
                ("Cmgit-Date", TODAY),
            ],
            actor,
            parent,
        )
    audit = programme.cli("audit", "--full", "--json", as_=None)
    assert audit.exit_code == 6
    rules = {v["rule"] for v in json.loads(audit.stdout)["violations"]}
    assert {"scope", "message"} <= rules


def test_import_export_and_disclosure_in_a_signed_programme(tmp_path: Path) -> None:
    """Every commit signed by its actor's registered key: audit proves the actors."""
    from .test_signed_default import audit_json, identity, run

    pm_key, pm_recipient = identity(tmp_path, "pm.txt")
    cw_key, cw_recipient = identity(tmp_path, "cw.txt")
    root = tmp_path / "cases"
    made = run("init", str(root), "--admin", "pm-001", "--recipient", pm_recipient,
               env={"CMGIT_IDENTITY": str(pm_key)})  # fmt: skip
    assert made.exit_code == 0, made.output
    # init made the signing key beside the identity
    pm = {"CMGIT_IDENTITY": str(pm_key), "CMGIT_SIGNING_KEY": str(tmp_path / "pm-signing")}
    added = run("-C", str(root), "staff", "add", "cw-1", "--role", "caseworker", "--team",
                "north", "--recipient", cw_recipient, env=pm)  # fmt: skip
    assert added.exit_code == 0, added.output
    source = tmp_path / "rows.csv"
    write_sample(source, 12, 5, ("cw-1",))
    done = run("-C", str(root), "import", str(source), "--map", str(PRIMERO), env=pm)
    assert done.exit_code == 0, done.output
    assert "imported 10 of 12 rows" in done.stderr
    out = tmp_path / "all.age"
    assert run("-C", str(root), "export", "-o", str(out), env=pm).exit_code == 0
    case_id = first_case(root)
    disclosed = run("-C", str(root), "disclose", case_id, "--recipient", cw_recipient,
                    "-o", str(tmp_path / "one.age"), env=pm)  # fmt: skip
    assert disclosed.exit_code == 0, disclosed.output
    assert cw_key.exists()
    code, report = audit_json(root)
    assert code == 0 and report["ok"] and report["actors_proven"] is True


def first_case(root: Path) -> str:
    from cmgit.store import Repository

    return Repository.open(root).case_ids()[0]


def _forged_event(
    programme: Programme,
    named: str | None,
    action: str,
    event: str,
    actor: str,
    role: str,
    *,
    write: bool = True,
) -> set[tuple[str, str]]:
    """Audit's findings on an event commit forged by ``actor`` naming the case ``named``
    (None: a programme-wide event; "other": a malformed case ID). With ``write`` it
    writes a record one version on: the named case's, else a new case's."""
    target = programme.new_case() if named in (None, "other") else named
    path = ids.record_path(target)
    data = (programme.root / path).read_text()
    version = int(data.split("version: ", 1)[1].split("\n", 1)[0])
    forged = data.replace(f"version: {version}\n", f"version: {version + 1}\n")
    case = [("Cmgit-Case", named), ("Cmgit-Version", str(version + 1))] if named else []
    trailers = [*case[:1], ("Cmgit-Action", action), ("Cmgit-Event", event), *case[1:]]
    trailers += [("Cmgit-Date", TODAY), ("Cmgit-Actor", actor), ("Cmgit-Role", role)]
    trailers += [("Cmgit-Format", "2")]
    files: dict[str, bytes | None] = {path: forged.encode()} if write else {}
    forge(programme, files, f"{action} {event}", trailers, actor)
    code, report = audit(programme)
    assert code == 6
    return {(v["rule"], v["detail"]) for v in report["violations"]}


def test_audit_flags_an_export_that_changes_a_file(programme: Programme) -> None:
    found = _forged_event(
        programme, None, "export", "export-7K2M9QX4", "pm-001", "programme_manager"
    )
    assert ("paths", "an export event changed files") in found


def test_audit_flags_a_disclosure_with_a_bad_event_id(programme: Programme) -> None:
    case_id = programme.new_case()
    found = _forged_event(
        programme, case_id, "disclose", "export-7K2M9QX4", "cw-north-1", "caseworker"
    )
    assert ("message", "disclose without a valid Cmgit-Event") in found


def test_audit_flags_a_disclosure_by_an_auditor(programme: Programme) -> None:
    case_id = programme.new_case()
    found = _forged_event(
        programme, case_id, "disclose", "disclosure-7K2M9QX4", "aud-001", "auditor"
    )
    assert ("scope", "disclose by an auditor, who reads no case") in found


def test_audit_flags_a_disclosure_that_changes_another_case(programme: Programme) -> None:
    programme.new_case()
    found = _forged_event(
        programme, "other", "disclose", "disclosure-7K2M9QX4", "cw-north-1", "caseworker"
    )
    assert ("paths", "a disclose must change exactly the record of other") in found


def test_audit_flags_a_package_without_a_package_id(programme: Programme) -> None:
    case_id = programme.new_case()
    found = _forged_event(programme, case_id, "disclosure", "PKG-1", "cw-north-1", "caseworker")
    assert ("message", "disclosure without a valid Cmgit-Event") in found


def test_audit_flags_an_export_by_an_auditor(programme: Programme) -> None:
    found = _forged_event(
        programme, None, "export", "export-7K2M9QX4", "aud-001", "auditor", write=False
    )
    assert found == {("scope", "export by an auditor, who reads no case")}


def test_audit_flags_a_package_that_changes_another_record(programme: Programme) -> None:
    programme.new_case()
    found = _forged_event(
        programme, "other", "disclosure", "PKG-7K2M9QX4", "cw-north-1", "caseworker"
    )
    assert ("paths", "a disclosure must change exactly the record of other") in found
