"""Hostile tests 6.1, bad input (B1-B15), end to end through the real command line.

Each refusal is checked the same way (refusal.assert_refused): documented exit code, one
clean error line, no canary, repository, index and work tree unchanged. The parsers
behind these rows have unit tests of their own (tests/test_yamlio.py, test_ids.py,
test_records.py); here the whole command is under test.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import sys
import time
import tracemalloc
import unicodedata
from pathlib import Path

import pytest
import yaml

from cmgit import crypto, history, ids, records, site
from cmgit.audit import config_in_force
from cmgit.errors import ACCESS, INVALID_RECORD, USAGE
from cmgit.store import MAX_FORM_BYTES

from ..conftest import CANARY, Programme, form
from ..test_audit import audit, rules
from .refusal import (
    Snapshot,
    assert_refused,
    assert_reported,
    no_canary_on_disk,
    one_line_error,
    snapshot,
)

PACKAGE = Path(crypto.__file__).parent


def write(programme: Programme, name: str, data: bytes | str) -> str:
    path = programme.work / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def ident(**changes: object) -> dict[str, object]:
    doc = form("identification")
    doc["identification"].update(changes)
    return doc


def dump(doc: object) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def commit_by_hand(programme: Programme, message: str = "by hand") -> None:
    programme.git("-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", message)


def every_form_command(programme: Programme, case_id: str, path: str) -> list[list[str]]:
    """The commands that take a form file: create, record, and a step (move --from)."""
    return [
        ["new", "--from", path],
        ["record", case_id, "identification", "--from", path],
        ["move", case_id, "registered", "--from", path],
    ]


def show_and_validate_refuse(
    programme: Programme, case_id: str, before: Snapshot, says: str, code: int = INVALID_RECORD
) -> None:
    """`show` refuses (one line) and `validate` reports the record invalid, by key
    and without one."""
    assert_refused(programme, programme.cli("show", case_id), code, before, says=says)
    for who in ("cw-north-1", None):
        assert_reported(
            programme, programme.cli("validate", case_id, as_=who), code, before, says=says
        )


# -- B1 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "identification: [\n  identified_on: x\n",
        "identification:\n\tidentified_on: '2026-01-01'\n",
        "identification:\n  identified_on: '2026-01-01'\n  initial_concern_summary: 'CANARY",
        "identification: {identified_by: cw-001,\n",
    ],
    ids=["unclosed-bracket", "tab-indent", "truncated", "unclosed-flow"],
)
def test_B1_malformed_yaml_refused_with_line_and_column(programme: Programme, text: str) -> None:
    """B1: refuse with "invalid record" and line/column; no traceback."""
    case_id = programme.new_case()
    path = write(programme, "bad.yaml", text)
    before = snapshot(programme)
    for args in every_form_command(programme, case_id, path):
        result = programme.cli(*args)
        line = assert_refused(programme, result, INVALID_RECORD, before)
        assert "line" in line and "column" in line, line


# -- B2 -------------------------------------------------------------------------------


def test_B2_duplicate_keys_refused(programme: Programme) -> None:
    """B2: duplicate key (case_id twice, status twice): refuse."""
    case_id = programme.new_case()
    body = dump(ident())
    dup_form = body + "identification:\n  urgent_needs: false\n"
    dup_field = body.replace(
        "  urgent_needs: true\n", "  urgent_needs: true\n  urgent_needs: false\n"
    )
    before = snapshot(programme)
    for name, text in (("form", dup_form), ("field", dup_field)):
        path = write(programme, f"dup-{name}.yaml", text)
        for args in every_form_command(programme, case_id, path):
            line = assert_refused(programme, programme.cli(*args), INVALID_RECORD, before)
            assert "duplicate" in line.lower(), line
    # In a record file: the open field case_id (and state) twice.
    record = programme.root / ids.record_path(case_id)
    original = record.read_text()
    for key in ("case_id", "state"):
        line_of = next(x for x in original.splitlines() if x.startswith(f"{key}: "))
        record.write_text(original.replace(line_of, f"{line_of}\n{line_of}", 1))
        before = snapshot(programme)
        show_and_validate_refuse(programme, case_id, before, "")
    record.write_text(original)


# -- B3 -------------------------------------------------------------------------------


def test_B3_yaml11_traps_stay_strings_and_round_trip(programme: Programme) -> None:
    """B3: NO, yes, 0123, 1.10, unquoted dates loaded as strings; the schema decides;
    round-trip keeps 0123."""
    doc = ident(
        referring_organisation="P1",
        previous_case_reference="P2",
        referrer_contact="P3",
        initial_concern_summary="P4",
    )
    text = (
        dump(doc)
        .replace("referring_organisation: P1", "referring_organisation: NO")
        .replace("previous_case_reference: P2", "previous_case_reference: 0123")
        .replace("referrer_contact: P3", "referrer_contact: 1.10")
        .replace("initial_concern_summary: P4", "initial_concern_summary: 2026-03-01")
    )
    result = programme.cli("new", "--from", write(programme, "traps.yaml", text))
    assert result.exit_code == 0, result.output
    case_id = result.stdout.strip()
    shown = json.loads(programme.cli("show", case_id, "--json").stdout)["identification"]
    assert (
        shown["referring_organisation"],
        shown["previous_case_reference"],
        shown["referrer_contact"],
        shown["initial_concern_summary"],
    ) == ("NO", "0123", "1.10", "2026-03-01")
    # Round trip through the editor unchanged: nothing to commit.
    unchanged = programme.cli("edit", case_id, env={"EDITOR": "true"})
    assert unchanged.exit_code == 0 and "no change" in unchanged.stdout
    assert (
        "previous_case_reference: '0123'" in programme.cli("show", case_id).stdout
        or 'previous_case_reference: "0123"' in programme.cli("show", case_id).stdout
    )
    # The schema decides: `yes` is not a boolean here, so a boolean field refuses it.
    before = snapshot(programme)
    bad = dump(ident()).replace("urgent_needs: true", "urgent_needs: yes")
    line = assert_refused(
        programme,
        programme.cli("new", "--from", write(programme, "yes.yaml", bad)),
        INVALID_RECORD,
        before,
        one_line=False,
    )
    assert "schema" in line


# -- B4, B5, B6 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "path", "expected"),
    [
        ({"identified_on": None}, "/identification/identified_on", "a date such as 2026-03-01"),
        (
            {"identification_source": "CANARY-ENUM-1"},
            "/identification/identification_source",
            "one of: outreach_monitoring, community_member, ",
        ),
        ({"urgent_needs": "CANARY-TYPE-2"}, "/identification/urgent_needs", "true or false"),
        (
            {"identified_by": ["CANARY-LIST-3"]},
            "/identification/identified_by",
            "a staff ID (or the word external) such as cw-001",
        ),
    ],
    ids=["null-date", "enum", "bool-type", "list-type"],
)
def test_B4_schema_violation_names_path_and_what_is_expected_not_value(
    programme: Programme, change: dict[str, object], path: str, expected: str
) -> None:
    """B4: refuse; message lists the JSON path and what the schema expects there (allowed
    values, an example), never the value given."""
    before = snapshot(programme)
    result = programme.cli("new", "--from", write(programme, "f.yaml", dump(ident(**change))))
    assert_refused(programme, result, INVALID_RECORD, before, one_line=False)
    assert f"at {path}: expected {expected}" in result.stderr, result.stderr


def test_B4_missing_required_field(programme: Programme) -> None:
    """B4: a missing required field is refused by path and validator."""
    doc = ident()
    del doc["identification"]["identified_on"]  # type: ignore[attr-defined]
    before = snapshot(programme)
    result = programme.cli("new", "--from", write(programme, "f.yaml", dump(doc)))
    assert_refused(programme, result, INVALID_RECORD, before, one_line=False)
    assert "at /identification: missing: identified_on" in result.stderr


def test_B5_extra_field_refused(programme: Programme) -> None:
    """B5: extra field not in the schema (religion): refuse (additionalProperties: false)."""
    case_id = programme.new_case()
    path = write(programme, "f.yaml", dump(ident(religion="CANARY-RELIGION-5")))
    before = snapshot(programme)
    for args in every_form_command(programme, case_id, path):
        result = programme.cli(*args)
        assert_refused(programme, result, INVALID_RECORD, before, one_line=False)
        assert "unknown field religion: no such field here; fields: " in result.stderr
    # and a top-level field that is no form at all
    top = write(programme, "top.yaml", dump({**ident(), "religion": "CANARY-RELIGION-6"}))
    assert_refused(programme, programme.cli("new", "--from", top), INVALID_RECORD, before)


@pytest.mark.parametrize(
    "bad_date",
    ["2026-02-30", "2026-13-01", "26-03-01", "2026-3-1", "2026-03-01T10:00:00", "CANARY-DATE"],
)
def test_B6_format_date_is_checked(programme: Programme, bad_date: str) -> None:
    """B6: `format` fields with invalid content: refuse (FormatChecker enabled).
    The schemas have date formats only (no email field: SPEC's forms carry none)."""
    before = snapshot(programme)
    result = programme.cli(
        "new", "--from", write(programme, "f.yaml", dump(ident(identified_on=bad_date)))
    )
    assert_refused(programme, result, INVALID_RECORD, before, one_line=False)
    assert "/identification/identified_on" in result.stderr


# -- B7 -------------------------------------------------------------------------------


def test_B7_oversized_ciphertext_refused_before_decrypt(programme: Programme) -> None:
    """B7: oversized ciphertext (limit + 1 byte; 100 MB): refuse before decrypting, by
    stat; memory stays flat."""
    case_id = programme.new_case()
    record = programme.root / ids.record_path(case_id)
    original = record.read_bytes()
    for size in (records.MAX_RECORD_FILE + 1, 100 * 1024 * 1024):
        with record.open("r+b") as handle:  # sparse: the size is on disk only in stat
            handle.truncate(size)
        before = snapshot(programme)
        tracemalloc.start()
        try:
            assert_refused(
                programme,
                programme.cli("show", case_id),
                INVALID_RECORD,
                before,
                says="larger than",
            )
            assert_reported(
                programme,
                programme.cli("validate", case_id),
                INVALID_RECORD,
                before,
                says="larger than",
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 4 * 1024 * 1024, peak  # nothing near the file's size was read
        # a command that would change the case refuses the altered file first
        note = programme.form_file("note")
        before = snapshot(programme)
        assert_refused(
            programme,
            programme.cli("record", case_id, "note", "--from", note),
            6,
            before,
            says="uncommitted",
        )
    record.write_bytes(original)


def test_B7_oversized_committed_record_refused_before_reading(programme: Programme) -> None:
    """B7: an oversized record committed with plain git: audit flags it without reading
    it into memory (the object size is checked first)."""
    case_id = programme.new_case()

    def audit_peak() -> tuple[int, dict[str, object], int]:
        (programme.root / ".git" / "cmgit" / "audit-verified").unlink(missing_ok=True)
        tracemalloc.start()
        try:
            code, report = audit(programme)
            return code, report, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    baseline = audit_peak()[2]
    record = programme.root / ids.record_path(case_id)
    record.write_bytes(record.read_bytes()[:-1] + b"\n" * (records.MAX_RECORD_FILE + 1))
    commit_by_hand(programme, "big")
    code, report, peak = audit_peak()
    assert code == 6 and "record" in rules(report), report
    # Reading the record once would cost its 12 MiB; what else the audit holds varies with
    # what this process has already parsed and compiled (the schemas, once).
    assert peak < baseline + records.MAX_RECORD_FILE // 2, (baseline, peak)
    before = snapshot(programme)
    assert_refused(
        programme, programme.cli("show", case_id), INVALID_RECORD, before, says="larger than"
    )


def test_B7_git_drivers_and_recover_refuse_oversized_files(programme: Programme) -> None:
    """B7: the diff and merge drivers (fed by git, e.g. from a remote) and recover check a
    file's size before reading it."""
    case_id = programme.new_case()
    big = programme.work / "big.yaml"
    with big.open("wb") as handle:
        handle.truncate(100 * 1024 * 1024)
    before = snapshot(programme)
    assert_refused(
        programme,
        programme.cli("hooks", "textconv", str(big)),
        INVALID_RECORD,
        before,
        says="larger than",
    )
    small = programme.root / ids.record_path(case_id)
    merged = programme.cli(
        "hooks", "merge-driver", str(small), str(small), str(big), ids.record_path(case_id)
    )
    assert merged.exit_code == 1 and "larger than" in merged.stderr, merged.output
    assert snapshot(programme) == before
    # recover leaves an oversized file under records/ alone, without reading it
    small.write_bytes(small.read_bytes() + b"\n")
    programme.git("add", ids.record_path(case_id))
    with small.open("r+b") as handle:
        handle.truncate(100 * 1024 * 1024)
    tracemalloc.start()
    try:
        result = programme.cli("recover", as_=None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.output
    assert small.stat().st_size == 100 * 1024 * 1024 and peak < 20 * 1024 * 1024, peak


def test_B7_oversized_form_refused_by_size(programme: Programme) -> None:
    """B7: oversized plaintext (a form file over the limit, 100 MB, or on stdin):
    refused before parsing."""
    big = programme.work / "big.yaml"
    with big.open("wb") as handle:
        handle.truncate(100 * 1024 * 1024)
    limit = programme.work / "limit.yaml"
    limit.write_bytes(b"identification:\n  text: " + b"x" * MAX_FORM_BYTES)
    before = snapshot(programme)
    for path in (big, limit):
        line = assert_refused(
            programme, programme.cli("new", "--from", str(path)), INVALID_RECORD, before
        )
        assert "larger than" in line
    piped = programme.cli("new", "--from", "-", input=limit.read_bytes())
    assert_refused(programme, piped, INVALID_RECORD, before, says="larger than")


def test_B7_oversized_plaintext_from_the_editor_refused(
    programme: Programme, tmp_path: Path
) -> None:
    """B7: oversized plaintext: an edit that grows the forms past the limit is refused
    before it is parsed or sealed; nothing is committed and the private file is gone."""
    case_id = programme.new_case()
    seen = tmp_path / "seen.txt"
    editor = tmp_path / "editor.py"
    editor.write_text(
        "import sys\n"
        f"open({str(seen)!r}, 'w').write(sys.argv[1])\n"
        "with open(sys.argv[1], 'a') as f:\n"
        "    f.write('note:\\n')\n"
        "    for i in range(60):\n"
        "        f.write(f'- note_id: note-{i}\\n  text: CANARY {\"x\" * 19000}\\n')\n"
    )
    before = snapshot(programme)
    result = programme.cli("edit", case_id, env={"EDITOR": f"{sys.executable} {editor}"})
    assert_refused(programme, result, INVALID_RECORD, before, says="larger than")
    assert not Path(seen.read_text()).exists()


def test_B7_oversized_identity_file_refused(programme: Programme, tmp_path: Path) -> None:
    """B7: identity files are capped (cmgit: 64 KiB, stricter than age's 16 MiB)."""
    case_id = programme.new_case()
    big = tmp_path / "big.txt"
    fd = os.open(big, os.O_CREAT | os.O_WRONLY, 0o600)
    os.ftruncate(fd, crypto.MAX_IDENTITY_FILE_BYTES + 1)
    os.close(fd)
    before = snapshot(programme)
    result = programme.cli("show", case_id, as_=None, env={"CMGIT_IDENTITY": str(big)})
    assert_refused(programme, result, ACCESS, before, says="larger than")


# -- B8, B9 -------------------------------------------------------------------------------


def test_B8_alias_bomb_and_single_alias_refused(programme: Programme) -> None:
    """B8: alias/anchor bomb, and any single alias: refused at the first anchor or alias
    (the time it takes is measured in bench/parsing.py)."""
    lol = ['a: &a ["CANARY", "CANARY"]']
    lol += [
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    bomb = write(programme, "bomb.yaml", "identification:\n  " + "\n  ".join(lol) + "\n")
    single = write(
        programme,
        "one.yaml",
        dump(ident()).replace(
            "identified_by: cw-001", "identified_by: &x cw-001\n  referrer_contact: *x"
        ),
    )
    before = snapshot(programme)
    programme.cli("new", "--from", single)  # warm up imports
    for path in (bomb, single):
        result = programme.cli("new", "--from", path)
        line = assert_refused(programme, result, INVALID_RECORD, before)
        assert "alias" in line.lower() or "anchor" in line.lower(), line


@pytest.mark.parametrize("kind", ["deep-flow", "deep-block", "5000-digits", "million-chars"])
def test_B9_deep_nesting_huge_numbers_and_strings_refused_cleanly(
    programme: Programme, kind: str
) -> None:
    """B9: deep nesting (10^4), 5000-digit integer, 10^6-character string: refuse cleanly,
    no RecursionError/ValueError escaping."""
    if kind == "deep-flow":
        text = "identification: " + "[" * 10_000 + "]" * 10_000 + "\n"
    elif kind == "deep-block":
        text = "identification:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 2000))
    elif kind == "5000-digits":
        text = dump(ident()).replace("urgent_needs: true", "urgent_needs: " + "9" * 5000)
    else:
        text = dump(ident()).replace("identified_by: cw-001", "identified_by: " + "C" * 1_000_000)
    before = snapshot(programme)
    result = programme.cli("new", "--from", write(programme, "f.yaml", text))
    assert_refused(programme, result, INVALID_RECORD, before, one_line=False)
    assert "RecursionError" not in result.output and "ValueError" not in result.output


# -- B10 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"identification:\n  identified_by: cw-\xff\xfe001\n", "UTF-8"),
        ("identification: {}\n".encode("utf-16"), "UTF-16"),
        (b"\xef\xbb\xbfidentification: {}\n", ""),
        (b"identification:\n  identified_by: cw\x00001\n", ""),
        (b"identification:\n  identified_by: cw\x1b[31m001\n", ""),
        ("identification:\n  identified_by: cw\x85001\n".encode(), ""),
        ("identification:\n  identified_by: cw\u202e100-\n".encode(), ""),
        ("identification:\n  identified_by: cw\u2066001\n".encode(), ""),
    ],
    ids=[
        "non-utf8",
        "utf16-bom",
        "utf8-bom",
        "nul",
        "c0-escape",
        "c1-nel",
        "bidi-rlo",
        "bidi-isolate",
    ],
)
def test_B10_bad_text_refused(programme: Programme, data: bytes, says: str) -> None:
    """B10: non-UTF-8, UTF-16 with BOM, UTF-8 BOM, NUL, C0/C1 controls, bidi overrides:
    refuse."""
    before = snapshot(programme)
    result = programme.cli("new", "--from", write(programme, "f.yaml", data))
    assert_refused(programme, result, INVALID_RECORD, before, says=says or None)


def test_B10_names_are_nfc_normalised_and_bidi_ids_refused(programme: Programme) -> None:
    """B10: names NFC-normalised; bidi overrides in IDs refused."""
    decomposed = unicodedata.normalize("NFD", "Zoë Müller CANARY-NAME-7f3a")
    assert decomposed != unicodedata.normalize("NFC", decomposed)
    result = programme.cli(
        "new",
        "--from",
        write(programme, "nfd.yaml", dump(ident(referring_organisation=decomposed))),
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(programme.cli("show", result.stdout.strip(), "--json").stdout)
    assert shown["identification"]["referring_organisation"] == unicodedata.normalize(
        "NFC", decomposed
    )
    before = snapshot(programme)
    for bad in ("CP-\u202e7K2M9QX4", "CP-7K2M9QX4\u200f", "cw\u202enorth-1"):
        args = ["show", bad] if bad.startswith("CP") else ["staff", "deactivate", bad]
        assert_refused(
            programme, programme.cli(*args, as_="pm-001"), USAGE, before, says="malformed"
        )


# -- B11 ------------------------------------------------------------------------------


BAD_IDS = [
    "../../.git/hooks/post-commit",
    "/etc/x",
    "CP-1/../x",
    "CP-1\x00",
    "con",
    "CP-7K2M9QX4.",
    "CP-7K2M9QX4 ",
    " CP-7K2M9QX4",
    "cp-7k2m9qx4",
    "CP-7K2M9QXU",
    "CP-7K2M9QX4\n",
    "C" * 300,
    "CP-" + "7" * 297,
    "records/7K/CP-7K2M9QX4.yaml",
]


def test_B11_odd_case_ids_exit_2_before_any_file(programme: Programme) -> None:
    """B11: path traversal and odd IDs: refuse (exit 2) by the one case-ID regular
    expression before any filesystem call; nothing created."""
    note = programme.form_file("note")
    before = snapshot(programme)
    for bad_id in BAD_IDS:
        for args in (
            ["show", bad_id],
            ["validate", bad_id],
            ["edit", bad_id],
            ["log", bad_id],
            ["record", bad_id, "note", "--from", note],
            ["move", bad_id, "registered"],
            ["assign", bad_id, "cw-north-2", "--reason", "workload"],
        ):
            result = programme.cli(*args, as_="sv-north")
            assert_refused(programme, result, USAGE, before, says="malformed case ID")


# -- B12 ------------------------------------------------------------------------------


def test_B12_option_injection_is_data(programme: Programme) -> None:
    """B12: case ID or free text `--upload-pack=x`, `-n` reaching git argv: treated as
    data; all git calls use list argv and `--`; never shell=True."""
    case_id = programme.new_case()
    before = snapshot(programme)
    for bad in ("--upload-pack=x", "-n", "--output=/tmp/x", "-"):
        for args in (["show", "--", bad], ["log", "--", bad], ["validate", "--", bad]):
            assert_refused(programme, programme.cli(*args), USAGE, before, says="malformed case ID")
        # options that are no options of cmgit stop at click, as usage errors
        result = programme.cli("show", bad)
        assert result.exit_code == USAGE, result.output
        moved = programme.cli("move", case_id, "closed", "--reason", bad)
        assert moved.exit_code == USAGE, moved.output
        assert snapshot(programme) == before
        # free text given to find is searched for, not run
        found = programme.cli("find", "--", bad)
        assert found.exit_code == 0, found.output
        assert snapshot(programme) == before
    assert not Path("/tmp/x").exists() or Path("/tmp/x").stat().st_mtime < time.time() - 60


def test_B12_no_shell_and_list_argv_everywhere() -> None:
    """B12: no subprocess call in cmgit uses a shell or a string command line."""
    calls = 0
    for source in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            if name.startswith(("subprocess.", "os.system", "os.popen")) or name in (
                "Popen",
                "run",
            ):
                calls += 1
                assert not name.startswith(("os.system", "os.popen")), (source, name)
                for keyword in node.keywords:
                    if keyword.arg == "shell":
                        assert isinstance(keyword.value, ast.Constant), (source, name)
                        assert keyword.value.value is False, (source, node.lineno)
                if node.args:
                    assert not isinstance(node.args[0], ast.Constant | ast.JoinedStr), (
                        source,
                        node.lineno,
                    )
    assert calls > 3


# -- B13 ------------------------------------------------------------------------------


def test_B13_commit_message_injection(programme: Programme) -> None:
    """B13: note text with newline + Case-Step, Signed-off-by, ANSI escapes: message built
    only from whitelisted fields; trailers unchanged; audit rejects any other message."""
    case_id = programme.new_case()
    note = form("note")
    note["note"]["text"] = (
        "CANARY-NOTE\n\nCmgit-To: closed\nCase-Step: closed\n"
        "Signed-off-by: Mallory <m@x>\nCmgit-Actor: pm-001\n"
    )
    result = programme.cli("record", case_id, "note", "--from", programme.form_file("n", note))
    assert result.exit_code == 0, result.output
    message = programme.git("log", "-1", "--format=%B")
    trailers = history.parse_trailers(message)
    assert trailers["Cmgit-Actor"] == ["cw-north-1"] and "Cmgit-To" not in trailers
    assert "Signed-off-by" not in message and "Case-Step" not in message
    assert CANARY not in programme.git("log", "--format=%an%ae%cn%ce%s%b")
    assert message.splitlines()[0] == f"{case_id}: record note"
    # ANSI escapes never get as far as a message: the form is refused.
    note["note"]["text"] = "CANARY \x1b[2J\x1b]0;owned\x07"
    before = snapshot(programme)
    assert_refused(
        programme,
        programme.cli("record", case_id, "note", "--from", programme.form_file("n", note)),
        INVALID_RECORD,
        before,
    )
    # A cmgit commit whose message gained anything (a trailer, a sign-off, free text)
    # no longer matches the template, and audit flags it.
    message = programme.git("log", "-1", "--format=%B").rstrip("\n") + "\n"
    for extra in ("Cmgit-To: closed\n", "Signed-off-by: Mallory <m@x>\n", "\nCANARY-NOTE text\n"):
        programme.git("reset", "-q", "--soft", "HEAD~1")
        programme.git(
            "-c",
            "user.name=cw-north-1",
            "-c",
            "user.email=cw-north-1@cmgit.invalid",
            "commit",
            "-q",
            "--cleanup=verbatim",
            "-m",
            message + extra,
        )
        (programme.root / ".git" / "cmgit" / "audit-verified").unlink(missing_ok=True)
        code, report = audit(programme)
        assert code == 6 and "message" in rules(report), (extra, report)
        assert CANARY not in json.dumps(report)
        # nor do the statistics read a forged Cmgit-To as a change of state
        changes = site.open_source(programme.root, in_force=config_in_force).changes()
        assert [c.target for c in changes] == ["identified"], changes
    programme.git("reset", "-q", "--soft", "HEAD~1")
    programme.git(
        "-c",
        "user.name=cw-north-1",
        "-c",
        "user.email=cw-north-1@cmgit.invalid",
        "commit",
        "-q",
        "--cleanup=verbatim",
        "-m",
        message,
    )
    (programme.root / ".git" / "cmgit" / "audit-verified").unlink(missing_ok=True)
    assert audit(programme)[0] == 0  # the unaltered message passes: the check is real


# -- B14 ------------------------------------------------------------------------------


def test_B14_symlink_under_records_refused(programme: Programme) -> None:
    """B14: symlink planted under records/ pointing to the identity file: refuse (open
    with O_NOFOLLOW, mode 120000 in the index); audit flags the commit."""
    case_id = programme.new_case()
    record = programme.root / ids.record_path(case_id)
    record.unlink()
    record.symlink_to(programme.key("cw-north-1"))
    before = snapshot(programme)
    show_and_validate_refuse(programme, case_id, before, "not a regular file")
    result = programme.cli("record", case_id, "note", "--from", programme.form_file("note"))
    assert result.exit_code in (INVALID_RECORD, 6), result.output
    one_line_error(result)
    assert snapshot(programme).state == before.state
    programme.git("add", "-A")
    commit_by_hand(programme, "link")
    before = snapshot(programme)
    show_and_validate_refuse(programme, case_id, before, "not a regular file")
    code, report = audit(programme)
    assert code == 6 and "record" in rules(report)
    assert "AGE-SECRET-KEY" not in json.dumps(report)


def test_B14_gitlink_under_records_refused(programme: Programme) -> None:
    """B14: a gitlink (mode 160000) committed in place of a record: refuse; audit flags."""
    case_id = programme.new_case()
    path = ids.record_path(case_id)
    head = programme.git("rev-parse", "HEAD").strip()
    programme.git("update-index", "--cacheinfo", f"160000,{head},{path}")
    programme.git("-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qm", "gitlink")
    before = snapshot(programme)
    show_and_validate_refuse(programme, case_id, before, "not a regular file")
    code, report = audit(programme)
    assert code == 6 and "record" in rules(report)


# -- B15 ------------------------------------------------------------------------------


def test_B15_case_id_differs_from_path(programme: Programme) -> None:
    """B15: record whose embedded case_id differs from its path: refuse to load; audit
    flags."""
    first, second = programme.new_case(), programme.new_case()
    shutil.copy(programme.root / ids.record_path(first), programme.root / ids.record_path(second))
    before = snapshot(programme)
    show_and_validate_refuse(programme, second, before, "another case")
    commit_by_hand(programme, "swap")
    before = snapshot(programme)
    assert_refused(
        programme, programme.cli("show", second), INVALID_RECORD, before, says="another case"
    )
    code, report = audit(programme)
    assert code == 6 and any("another case" in v["detail"] for v in report["violations"])
    no_canary_on_disk(programme)
