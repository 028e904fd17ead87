"""Cases end to end through the command line, on real repositories with real age keys."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from cmgit import editing, entries, ids
from cmgit.keyring import ref, wrap

from .conftest import CANARY, Programme, form


def record_file(programme: Programme, case_id: str) -> Path:
    return programme.root / ids.record_path(case_id)


def dump_form(fields: dict[str, object], name: str = "identification") -> bytes:
    return yaml.safe_dump({name: fields}).encode()


def assert_unchanged(programme: Programme, before: tuple[str, str, str]) -> None:
    assert programme.state() == before


def test_new_show_record_and_history(programme: Programme) -> None:
    case_id = programme.new_case()
    assert ids.check_case_id(case_id) == case_id
    text = record_file(programme, case_id).read_text()
    assert "state: identified" in text and "caseworker: cw-north-1" in text
    assert CANARY not in text

    shown = programme.cli("show", case_id, "--json")
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.stdout)
    assert doc["case_id"] == case_id and doc["version"] == 1
    assert CANARY in doc["identification"]["initial_concern_summary"]
    assert doc["assignment"][0]["staff_id"] == "cw-north-1"

    yaml_out = programme.cli("show", case_id).stdout
    assert yaml.safe_load(yaml_out)["identification"]["identified_by"] == "cw-001"

    result = programme.cli("record", case_id, "consent", "--from", programme.form_file("consent"))
    assert result.exit_code == 0, result.output
    first = re.fullmatch(
        rf"{case_id}: recorded (consent-[0-9A-HJKMNP-TV-Z]{{8}})", result.stdout.strip()
    )
    assert first, result.stdout
    again = programme.cli("record", case_id, "consent", "--from", programme.form_file("consent"))
    second = re.fullmatch(
        rf"{case_id}: recorded (consent-[0-9A-HJKMNP-TV-Z]{{8}})", again.stdout.strip()
    )
    assert second and second[1] != first[1], again.stdout

    log = programme.git("log", "--format=%an|%s|%b", "-3", "--", ids.record_path(case_id))
    entries = log.strip().split("\n\n")
    assert entries[0].startswith(f"cw-north-1|{case_id}: record consent|")
    assert "Cmgit-Action: record" in log and "Cmgit-Form: consent" in log
    assert f"Cmgit-Case: {case_id}" in log and "Cmgit-Version: 3" in log
    assert programme.git("status", "--porcelain") == ""
    doc = json.loads(programme.cli("show", case_id, "--json").stdout)
    assert doc["version"] == 3 and [c["consent_id"] for c in doc["consent"]] == [
        first[1],
        second[1],
    ]


def test_one_command_one_commit_one_open_file_and_one_entry(programme: Programme) -> None:
    before = programme.git("rev-parse", "HEAD").strip()
    case_id = programme.new_case()
    assert programme.git("rev-list", "--count", f"{before}..HEAD").strip() == "1"
    changed = programme.git("show", "--name-only", "--format=", "HEAD").split()
    assert changed == [ids.record_path(case_id), entries.entry_path(case_id, 1)]


def test_upsert_update_append_only_and_supersede(programme: Programme) -> None:
    case_id = programme.walk("case_planning")
    consent = form("consent")
    added = programme.cli("record", case_id, "consent", "--from", programme.form_file("c", consent))
    consent["consent"]["consent_id"] = added.stdout.split()[-1]
    consent["consent"]["decision"] = "withdrawn"
    consent["consent"]["withdrawn_on"] = "2026-03-20"
    result = programme.cli(
        "record", case_id, "consent", "--from", programme.form_file("c", consent)
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(programme.cli("show", case_id, "--json").stdout)
    assert [c["decision"] for c in doc["consent"]][-1] == "withdrawn"

    added = programme.cli(
        "record", case_id, "follow_up", "--from", programme.form_file("follow_up")
    )
    follow = form("follow_up")
    follow["follow_up"]["follow_up_id"] = added.stdout.split()[-1]
    before = programme.state()
    refused = programme.cli(
        "record", case_id, "follow_up", "--from", programme.form_file("f", follow)
    )
    assert refused.exit_code == 4 and "append-only" in refused.stderr
    assert_unchanged(programme, before)

    plans = [
        p["plan_id"]
        for p in json.loads(programme.cli("show", case_id, "--json").stdout)["case_plan"]
    ]
    for _ in range(2):
        added = programme.cli(
            "record", case_id, "case_plan", "--from", programme.form_file("case_plan")
        )
        assert added.exit_code == 0
        plans.append(added.stdout.split()[-1])
    doc = json.loads(programme.cli("show", case_id, "--json").stdout)
    statuses = [(p["plan_id"], p["status"]) for p in doc["case_plan"]]
    assert statuses == [(plans[0], "superseded"), (plans[1], "superseded"), (plans[2], "draft")]


def test_refusals_change_nothing_and_leak_nothing(programme: Programme) -> None:
    case_id = programme.new_case()
    before = programme.state()
    ident = form("identification")["identification"]
    bad_inputs = {
        "unclosed": b"identification: [\n  identified_on: x\n",
        "tabs": b"identification:\n\tidentified_on: '2026-01-01'\n",
        "duplicate": b"identification:\n  urgent_needs: true\n  urgent_needs: false\n",
        "alias": b"identification: &a\n  x: *a\n",
        "extra": dump_form({**ident, "religion": "CANARY-RELIGION"}),
        "enum": dump_form({**ident, "identification_source": "CANARY-ENUM"}),
        "date": dump_form({**ident, "identified_on": "2026-02-30"}),
        "utf16": "identification: {}\n".encode("utf-16"),
        "bidi": "identification:\n  identified_by: cw\u202e-001\n".encode(),
    }
    for name, data in bad_inputs.items():
        path = programme.work / f"{name}.yaml"
        path.write_bytes(data)
        for args in (
            ["new", "--from", str(path)],
            ["record", case_id, "identification", "--from", str(path)],
        ):
            result = programme.cli(*args)
            assert result.exit_code == 3, (name, result.output)
            assert result.stderr.startswith("Error: "), name
            assert len(result.stderr.strip().splitlines()) <= 4, name
            assert CANARY not in result.output, name
            assert "Traceback" not in result.output
            assert_unchanged(programme, before)
    # line and column for parse errors; JSON path and what is expected for schema errors
    unclosed = programme.cli("new", "--from", str(programme.work / "unclosed.yaml"))
    assert "line" in unclosed.stderr and "column" in unclosed.stderr
    enum = programme.cli("new", "--from", str(programme.work / "enum.yaml"))
    assert "at /identification/identification_source: expected one of: " in enum.stderr
    extra = programme.cli("new", "--from", str(programme.work / "extra.yaml"))
    assert "at /identification: unknown field religion: no such field here" in extra.stderr


def test_yaml_11_traps_stay_strings(programme: Programme) -> None:
    doc = form("identification")
    path = programme.work / "traps.yaml"
    doc["identification"]["referring_organisation"] = "PLACEHOLDER"
    text = yaml.safe_dump(doc, sort_keys=False).replace(
        "referring_organisation: PLACEHOLDER", "referring_organisation: NO"
    )
    text = text.replace(
        f"previous_case_reference: {doc['identification']['previous_case_reference']}",
        "previous_case_reference: 0123",
    )
    path.write_text(text)
    result = programme.cli("new", "--from", str(path))
    assert result.exit_code == 0, result.output
    shown = json.loads(programme.cli("show", result.stdout.strip(), "--json").stdout)
    assert shown["identification"]["referring_organisation"] == "NO"
    assert shown["identification"]["previous_case_reference"] == "0123"


@pytest.mark.parametrize(
    "bad_id",
    [
        "../../.git/hooks/post-commit",
        "/etc/x",
        "CP-1/../x",
        "con",
        "CP-7K2M9QX4.",
        "--upload-pack=x",
        "C" * 300,
    ],
)
def test_malformed_case_ids_are_exit_2_before_any_file_is_touched(
    programme: Programme, bad_id: str
) -> None:
    before = programme.state()
    for args in (
        ["show", bad_id],
        ["validate", bad_id],
        ["edit", bad_id],
        ["record", bad_id, "note", "--from", "/dev/null"],
    ):
        result = programme.cli(*args)
        assert result.exit_code == 2, (args, result.output)
        # option-shaped IDs never reach git: click stops them as unknown options
        assert "malformed case ID" in result.stderr or "No such option" in result.stderr
    assert_unchanged(programme, before)


def test_non_recipient_gets_exit_5_and_no_output(programme: Programme) -> None:
    case_id = programme.new_case()
    for outsider in ("cw-south-1", "sv-south", "aud-001", "cw-north-2"):
        result = programme.cli("show", case_id, as_=outsider)
        assert result.exit_code == 5, (outsider, result.output)
        assert result.stdout == ""
        assert CANARY not in result.output
    for reader in ("sv-north", "pm-001", "co-north"):
        assert programme.cli("show", case_id, as_=reader).exit_code == 0, reader


def test_unknown_identity_and_missing_identity_are_exit_5(
    programme: Programme, tmp_path: Path
) -> None:
    case_id = programme.new_case()
    result = programme.cli("show", case_id, as_=None)
    assert result.exit_code == 5 and "no identity" in result.stderr
    stranger = tmp_path / "stranger.txt"
    from cmgit import crypto

    crypto.write_identity_file(stranger, *crypto.generate_identity())
    result = programme.cli("show", case_id, as_=None, env={"CMGIT_IDENTITY": str(stranger)})
    assert result.exit_code == 5 and "no staff member" in result.stderr
    os.chmod(programme.key("cw-north-1"), 0o644)
    result = programme.cli("show", case_id)
    assert result.exit_code == 5 and "readable by others" in result.stderr


def test_copied_record_restored_older_and_hand_edit_are_exit_3(programme: Programme) -> None:
    first = programme.new_case()
    second = programme.new_case()
    # a record copied over another case's file
    shutil.copy(record_file(programme, first), record_file(programme, second))
    result = programme.cli("show", second)
    assert result.exit_code == 3 and "another case" in result.stderr
    assert programme.cli("validate", second).exit_code == 3
    programme.git("checkout", "--", ".")

    # an older ciphertext of the same case restored over the newer one
    old = record_file(programme, first).read_bytes()
    programme.cli("record", first, "note", "--from", programme.form_file("note"))
    record_file(programme, first).write_bytes(old)
    result = programme.cli("show", first)
    assert result.exit_code == 3 and "older" in result.stderr
    assert programme.cli("validate", first).exit_code == 3
    programme.git("checkout", "--", ".")

    # a hand-edited open field (valid YAML, valid value, wrong digest)
    path = record_file(programme, first)
    path.write_text(path.read_text().replace("risk_level: null", "risk_level: low"))
    result = programme.cli("show", first, as_="sv-north")
    assert result.exit_code == 3 and "changed outside cmgit" in result.stderr
    assert programme.cli("validate", first).exit_code == 3
    assert CANARY not in result.output


def test_hand_edit_committed_with_plain_git_is_still_refused(programme: Programme) -> None:
    """In record format 2 the seal binds each entry to its case and version: an open
    file taken back below its entries is refused on reading. The other open fields are
    bound by the commit that wrote them: audit names a plain-git commit of them."""
    case_id = programme.new_case()
    added = programme.cli("record", case_id, "note", "--from", programme.form_file("note"))
    assert added.exit_code == 0, added.output
    path = record_file(programme, case_id)
    path.write_text(path.read_text().replace("version: 2", "version: 1"))
    programme.git("-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", "x")
    result = programme.cli("show", case_id)
    assert result.exit_code == 3 and "newer than the record" in result.stderr
    programme.git("reset", "-q", "--hard", "HEAD~1")
    path.write_text(path.read_text().replace("state: identified", "state: closed"))
    programme.git("-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", "x")
    edit = programme.git("rev-parse", "HEAD").strip()
    result = programme.cli("audit", "--json", as_=None)
    assert result.exit_code == 6
    assert edit in {v["commit"] for v in json.loads(result.stdout)["violations"]}


def test_dirty_record_blocks_the_command_that_touches_it(programme: Programme) -> None:
    case_id = programme.new_case()
    other = programme.new_case()
    path = record_file(programme, case_id)
    path.write_text(path.read_text() + "\n")
    before = programme.state()
    result = programme.cli("record", case_id, "note", "--from", programme.form_file("note"))
    assert result.exit_code == 6 and "uncommitted" in result.stderr
    assert_unchanged(programme, before)
    # a change to another case is not blocked by it
    fine = programme.cli("record", other, "note", "--from", programme.form_file("note"))
    assert fine.exit_code == 0, fine.output


def test_merge_in_progress_and_detached_head_are_exit_6(programme: Programme) -> None:
    case_id = programme.new_case()
    (programme.root / ".git" / "MERGE_HEAD").write_text(programme.git("rev-parse", "HEAD"))
    result = programme.cli("record", case_id, "note", "--from", programme.form_file("note"))
    assert result.exit_code == 6 and "merge" in result.stderr
    (programme.root / ".git" / "MERGE_HEAD").unlink()
    programme.git("checkout", "-q", "--detach")
    result = programme.cli("record", case_id, "note", "--from", programme.form_file("note"))
    assert result.exit_code == 6 and "detached" in result.stderr


def test_validate_all_keyless_and_with_key(programme: Programme) -> None:
    first = programme.new_case()
    second = programme.new_case(as_="cw-north-2")
    keyless = programme.cli("validate", as_=None)
    assert keyless.exit_code == 0
    assert f"{first}  ok (open fields only)" in keyless.stdout
    mine = programme.cli("validate", "--json")
    results = {r["case_id"]: r for r in json.loads(mine.stdout)}
    assert results[first]["opened"] is True and results[second]["opened"] is False


def test_find_searches_only_what_the_identity_opens(programme: Programme) -> None:
    mine = programme.new_case()
    programme.new_case(as_="cw-north-2")
    found = programme.cli("find", "canary-concern-8b2f")
    assert found.exit_code == 0
    assert found.stdout.split() == [mine]
    both = programme.cli("find", "CANARY-CONCERN-8b2f", as_="sv-north")
    assert len(both.stdout.split()) == 2


def test_edit_with_a_scripted_editor(programme: Programme, tmp_path: Path) -> None:
    case_id = programme.new_case()
    editor = tmp_path / "editor.py"
    seen = tmp_path / "seen.txt"
    editor.write_text(
        "import sys, os, stat\n"
        "p = sys.argv[1]\n"
        f"open({str(seen)!r}, 'w').write(p + ' ' + oct(os.stat(p).st_mode & 0o777))\n"
        "t = open(p).read().replace('urgent_needs: true', 'urgent_needs: false')\n"
        "open(p, 'w').write(t)\n"
    )
    env = {"EDITOR": f"python3 {editor}"}
    result = programme.cli("edit", case_id, env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{case_id}: saved"
    path, mode = seen.read_text().split()
    assert mode == "0o600"
    assert not Path(path).exists()
    assert Path(path).parent == editing.private_folder()
    doc = json.loads(programme.cli("show", case_id, "--json").stdout)
    assert doc["identification"]["urgent_needs"] is False and doc["version"] == 2
    assert "Cmgit-Action: edit" in programme.git("log", "-1", "--format=%b")


def test_edit_invalid_input_aborts_and_leaves_nothing(programme: Programme, tmp_path: Path) -> None:
    case_id = programme.new_case()
    editor = tmp_path / "editor.py"
    seen = tmp_path / "seen.txt"
    editor.write_text(
        "import sys\n"
        f"open({str(seen)!r}, 'w').write(sys.argv[1])\n"
        "p = sys.argv[1]\n"
        "t = open(p).read().replace('urgent_needs: true', 'urgent_needs: maybe')\n"
        "open(p, 'w').write(t)\n"
    )
    before = programme.state()
    result = programme.cli("edit", case_id, env={"EDITOR": f"python3 {editor}"})
    assert result.exit_code == 3, result.output
    assert "/identification/urgent_needs" in result.stderr
    assert not Path(seen.read_text()).exists()
    assert_unchanged(programme, before)
    unchanged = programme.cli("edit", case_id, env={"EDITOR": "true"})
    assert unchanged.exit_code == 0 and "no change" in unchanged.stdout
    assert_unchanged(programme, before)
    failed = programme.cli("edit", case_id, env={"EDITOR": "false"})
    assert failed.exit_code == 0 and "no change" in failed.stdout
    assert_unchanged(programme, before)
    emptied = programme.cli("edit", case_id, env={"EDITOR": "truncate -s 0"})
    assert emptied.exit_code == 3 and "identification" in emptied.stderr
    assert_unchanged(programme, before)


def test_staff_deactivate_reencrypts_and_removes_access(programme: Programme) -> None:
    case_id = programme.new_case(as_="cw-north-2")
    refused = programme.cli("staff", "deactivate", "cw-north-2", as_="pm-001")
    assert refused.exit_code == 4 and "holds" in refused.stderr
    # the supervisor leaves: every north case key is wrapped again without their key
    before_key = ref.read_case(programme.repo().git, case_id)[wrap.STAFF_FILE]
    assert programme.cli("show", case_id, as_="sv-north").exit_code == 0
    result = programme.cli("staff", "deactivate", "sv-north", as_="pm-001")
    assert result.exit_code == 0, result.output
    assert "re-encrypted 1 case" in result.stdout
    assert ref.read_case(programme.repo().git, case_id)[wrap.STAFF_FILE] != before_key
    assert programme.git("status", "--porcelain") == ""
    # their identity opens no wrapped key and no entry at HEAD, whatever tool is used
    from cmgit import crypto
    from cmgit.errors import NotARecipient

    keys = programme.identities("sv-north")
    git = programme.repo().git
    sealed = [
        (programme.root / name).read_bytes()
        for name in programme.git("ls-tree", "-r", "--name-only", "HEAD", "sealed").split()
    ]
    wrapped = [data for other in ref.case_ids(git) for data in ref.read_case(git, other).values()]
    assert sealed and wrapped
    for data in [*wrapped, *sealed]:
        with pytest.raises(NotARecipient):
            crypto.open_binary(data, keys)
    assert programme.cli("show", case_id, as_="sv-north").exit_code == 5
    assert programme.cli("validate", case_id).exit_code == 0
    changed = programme.git("show", "--name-only", "--format=%s", "HEAD").split("\n")
    assert changed[0] == "staff: deactivate sv-north"
    # open fields of re-encrypted records stay as they were (one commit, no version bump)
    diff = programme.git("show", "HEAD", "--", ids.record_path(case_id))
    assert "-version" not in diff and "-state" not in diff


def test_staff_and_settings_need_a_programme_manager(programme: Programme) -> None:
    before = programme.state()
    from cmgit import crypto

    _, recipient = crypto.generate_identity()
    for args in (
        [
            "staff",
            "add",
            "cw-x",
            "--role",
            "caseworker",
            "--team",
            "north",
            "--recipient",
            recipient,
        ],
        ["settings", "set", "caseload_limit", "20"],
        ["staff", "deactivate", "cw-south-1"],
    ):
        result = programme.cli(*args, as_="sv-north")
        assert result.exit_code == 4, result.output
        assert "programme_manager" in result.stderr
    assert_unchanged(programme, before)
    ok = programme.cli("settings", "set", "caseload_limit", "20", as_="pm-001")
    assert ok.exit_code == 0, ok.output
    shown = json.loads(programme.cli("settings", "show", "--json", as_=None).stdout)
    assert shown["caseload_limit"] == 20
    bad = programme.cli("settings", "set", "caseload_limit", "many", as_="pm-001")
    assert bad.exit_code == 3 and "/caseload_limit" in bad.stderr


def test_settings_reader_roles_reencrypt(programme: Programme) -> None:
    case_id = programme.new_case()
    assert programme.cli("show", case_id, as_="co-north").exit_code == 0
    result = programme.cli("settings", "set", "reader_roles", "[]", as_="pm-001")
    assert result.exit_code == 0, result.output
    assert "re-encrypted 1 case" in result.stdout
    assert programme.cli("show", case_id, as_="co-north").exit_code == 5


def test_whoami_and_staff_list(programme: Programme) -> None:
    result = programme.cli("whoami")
    assert result.stdout.strip() == "cw-north-1 (caseworker, team north)"
    listing = json.loads(programme.cli("staff", "list", "--json", as_=None).stdout)
    assert [m["id"] for m in listing][:3] == ["pm-001", "sv-north", "cw-north-1"]
    assert programme.cli("whoami", "--json").stdout.count('"role"') == 1


def test_interop_with_the_age_command(programme: Programme) -> None:
    age = shutil.which("age")
    if age is None:
        if os.environ.get("CMGIT_REQUIRE_AGE") == "1":
            pytest.fail("the age command is required here but not installed")
        pytest.skip("the age command is not installed")
    # stock age opens a case in two steps: the wrapped key, then the entry
    case_id = programme.new_case()
    repo = programme.repo()
    key_file = programme.work / "case-key.txt"
    key_file.write_bytes(
        subprocess.run(
            [age, "-d", "-i", str(programme.key("cw-north-1"))],
            input=ref.read_case(repo.git, case_id)[wrap.STAFF_FILE],
            capture_output=True,
            check=True,
        ).stdout
    )
    key_file.chmod(0o600)
    path = programme.root / entries.entry_path(case_id, 1)
    plain = subprocess.run(
        [age, "-d", "-i", str(key_file)], input=path.read_bytes(), capture_output=True, check=True
    ).stdout
    payload = json.loads(plain)
    assert payload["case_id"] == case_id and payload["version"] == 1

    # an entry made by the age command to the case key is accepted
    recipient = subprocess.run(
        [age + "-keygen", "-y", str(key_file)], capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    remade = subprocess.run([age, "-r", recipient], input=plain, capture_output=True, check=True)
    path.write_bytes(remade.stdout)
    programme.git("-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", "age")
    result = programme.cli("validate", case_id, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["opened"] is True
    assert programme.cli("show", case_id).exit_code == 0


def test_leaks_nowhere_after_a_scenario(programme: Programme, tmp_path: Path) -> None:
    cases = [programme.walk("implementation"), programme.new_case(as_="cw-north-2")]
    for name in ("consent", "follow_up", "assessment", "note"):
        assert (
            programme.cli("record", cases[0], name, "--from", programme.form_file(name)).exit_code
            == 0
        ), name
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/urgent_needs: true/urgent_needs: false/' \"$1\"\n")
    editor.chmod(0o755)
    assert programme.cli("edit", cases[0], env={"EDITOR": str(editor)}).exit_code == 0
    outputs = [
        programme.cli("validate", as_=None).output,
        programme.cli("validate").output,
        programme.cli("staff", "list", as_=None).output,
        programme.cli("settings", "show", as_=None).output,
        programme.cli("show", cases[1], as_="cw-south-1").output,
    ]
    for out in outputs:
        assert CANARY not in out
    history = subprocess.run(
        ["git", "-C", str(programme.root), "log", "-p", "--all", "--format=%an%ae%cn%ce%s%b"],
        capture_output=True,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    ).stdout
    assert CANARY.encode() not in history
    names = programme.git("ls-tree", "-r", "--name-only", "HEAD")
    assert CANARY not in names
    temp = Path(os.environ["TMPDIR"])
    private = editing.private_folder()
    places = [programme.root, temp, *private.glob("cmgit-*")]
    for place in places:
        files = [place] if place.is_file() else [p for p in place.rglob("*") if p.is_file()]
        for path in files:
            assert CANARY.encode() not in path.read_bytes(), path


def test_recovery_recipients_can_open_every_case(programme: Programme, tmp_path: Path) -> None:
    from cmgit import crypto

    case_id = programme.new_case()
    recovery = tmp_path / "recovery.txt"
    secret, recipient = crypto.generate_identity()
    crypto.write_identity_file(recovery, secret, recipient)
    result = programme.cli("settings", "set", "recovery_recipients", f"[{recipient}]", as_="pm-001")
    assert result.exit_code == 0, result.output
    repo = programme.repo()
    custodians, k = wrap.custodians(repo.settings)
    files = ref.read_case(repo.git, case_id)
    key = wrap.recover(files, case_id, custodians, k, crypto.load_identities(recovery))
    entry = (programme.root / entries.entry_path(case_id, 1)).read_bytes()
    payload = json.loads(crypto.open_binary(entry, key.identities()))
    assert payload["case_id"] == case_id


def test_a_passphrase_stanza_is_refused_before_decrypting(programme: Programme) -> None:
    import base64

    case_id = programme.new_case()
    path = programme.root / entries.entry_path(case_id, 1)
    # A real entry whose first stanza is relabelled as a passphrase (scrypt) stanza:
    # it must be refused from the header alone, before any key is tried.
    binary = path.read_bytes()
    head, sep, rest = binary.partition(b"\n-> X25519 ")
    _, _, body = rest.partition(b"\n")
    assert sep, "the sealed entry has an X25519 stanza to relabel"
    binary = head + b"\n-> scrypt " + base64.b64encode(b"s" * 16).rstrip(b"=") + b" 18\n" + body
    path.write_bytes(binary)
    programme.git("-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", "forged")
    result = programme.cli("show", case_id)
    assert result.exit_code == 3 and "scrypt" in result.stderr
    assert programme.cli("validate", case_id, as_=None).exit_code == 3


def test_ctrl_c_in_the_editor_removes_the_private_file(
    programme: Programme, tmp_path: Path
) -> None:
    import sys

    case_id = programme.new_case()
    seen = tmp_path / "seen.txt"
    editor = tmp_path / "editor.py"
    editor.write_text(
        "import os, signal, sys, time\n"
        f"open({str(seen)!r}, 'w').write(sys.argv[1])\n"
        "os.kill(os.getppid(), signal.SIGINT)  # what Ctrl-C sends\n"
        "time.sleep(5)\n"
    )
    cmgit = Path(sys.executable).parent / "cmgit"
    env = {
        **os.environ,
        "CMGIT_IDENTITY": str(programme.key("cw-north-1")),
        "EDITOR": f"{sys.executable} {editor}",
    }
    before = programme.state()
    # As at a terminal: a suite started in the background inherits SIGINT ignored.
    proc = subprocess.run(
        [str(cmgit), "-C", str(programme.root), "edit", case_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.returncode == 130, proc.stderr
    assert "interrupted" in proc.stderr and "Traceback" not in proc.stderr
    assert not Path(seen.read_text()).exists()
    assert programme.state() == before


def test_recover_finishes_a_half_made_change(programme: Programme) -> None:
    """A kill between moving the branch and updating the index and work tree leaves the
    old file checked out; recover brings it to the committed version, nothing else."""
    case_id = programme.new_case()
    path = ids.record_path(case_id)
    old = record_file(programme, case_id).read_bytes()
    assert (
        programme.cli("record", case_id, "note", "--from", programme.form_file("note")).exit_code
        == 0
    )
    new = record_file(programme, case_id).read_bytes()
    # simulate the interruption: index and work tree still at the old version
    record_file(programme, case_id).write_bytes(old)
    programme.git(
        "update-index",
        "--cacheinfo",
        f"100644,{programme.git('rev-parse', 'HEAD~1:' + path).strip()},{path}",
    )
    (programme.root / "records" / ".cmgit-tmp-x").write_bytes(b"partial")
    assert programme.git("status", "--porcelain") != ""
    result = programme.cli("recover", as_=None)
    assert result.exit_code == 0, result.output
    assert record_file(programme, case_id).read_bytes() == new
    assert programme.git("status", "--porcelain") == ""
    # a file changed by hand is left alone
    record_file(programme, case_id).write_bytes(new + b"\n")
    programme.cli("recover", as_=None)
    assert record_file(programme, case_id).read_bytes() == new + b"\n"
