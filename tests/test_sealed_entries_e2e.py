"""Record format 2 through the commands: a programme's migration brings its cases to sealed
entries under keys of their own, and every later change adds what changed and nothing
else. Real repositories, real age keys (docs/design/record-format-2.md)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cmgit import crypto, entries, ids
from cmgit.errors import CmgitError, NotARecipient
from cmgit.history import actor_author
from cmgit.keyring import ref, wrap

from .conftest import CANARY, STAFF, Programme, form, git
from .test_exchange import PRIMERO, write_sample


def to_sealed_entries(programme: Programme) -> None:
    """A programme made before record format 2 brought to it, as its programme manager
    does: `cmgit migrate` with this cmgit's template."""
    made = programme.cli("migrate", as_="pm-001")
    assert made.exit_code == 0, made.output
    assert "(0003-sealed-entries)" in made.stdout


def shown(programme: Programme, case_id: str, as_: str = "pm-001") -> dict[str, object]:
    result = programme.cli("show", case_id, "--json", as_=as_)
    assert result.exit_code == 0, result.output
    doc: dict[str, object] = json.loads(result.stdout)
    return doc


def entry_files(programme: Programme, case_id: str) -> list[str]:
    listing = programme.git("ls-tree", "--name-only", "HEAD", entries.entries_dir(case_id) + "/")
    return sorted(listing.split(), key=lambda p: entries.parse_entry_path(p) or (case_id, 0))


def record_note(programme: Programme, case_id: str, text: str, as_: str = "cw-north-1") -> None:
    doc = {"note": {**form("note")["note"], "text": text}}
    made = programme.cli(
        "record", case_id, "note", "--from", programme.form_file("note", doc), as_=as_
    )
    assert made.exit_code == 0, made.output


@pytest.fixture
def before_and_after(
    format_1_programme: Programme,
) -> tuple[Programme, str, dict[str, object]]:
    """A case made in format 1, and what `show` printed of it before the migration."""
    case_id = format_1_programme.new_case()
    before = shown(format_1_programme, case_id)
    to_sealed_entries(format_1_programme)
    return format_1_programme, case_id, before


def test_the_migration_brings_a_case_to_sealed_entries_with_the_same_content(
    before_and_after: tuple[Programme, str, dict[str, object]],
) -> None:
    programme, case_id, before = before_and_after
    after = shown(programme, case_id)
    assert {k: v for k, v in after.items() if k not in ("version", "record_format")} == {
        k: v for k, v in before.items() if k not in ("version", "record_format")
    }
    record_file = (programme.root / ids.record_path(case_id)).read_bytes()
    assert b"sealed:" not in record_file
    assert len(record_file) < entries.AUDITOR_BLOB_LIMIT
    (only,) = entry_files(programme, case_id)
    blob = programme.git("rev-parse", f"HEAD:{only}").strip()
    size = int(programme.git("cat-file", "-s", blob))
    assert size > entries.AUDITOR_BLOB_LIMIT
    repo = programme.repo()
    assert set(ref.read_case(repo.git, case_id)) == {"staff.age"}


def test_each_change_adds_one_entry_holding_only_what_changed(
    before_and_after: tuple[Programme, str, dict[str, object]],
) -> None:
    programme, case_id, _ = before_and_after
    assert len(entry_files(programme, case_id)) == 1
    record_note(programme, case_id, f"{CANARY} visit one")
    record_note(programme, case_id, f"{CANARY} visit two")
    assert len(entry_files(programme, case_id)) == 3
    newest = entry_files(programme, case_id)[-1]
    changed = programme.git("show", "--name-only", "--format=", "HEAD").split()
    assert sorted(changed) == sorted([ids.record_path(case_id), newest])
    repo = programme.repo()
    key = wrap.unwrap(ref.read_case(repo.git, case_id), case_id, programme.identities("pm-001"))
    entry = entries.parse_entry(
        crypto.open_binary((programme.root / newest).read_bytes(), key.identities())
    )
    assert not entry.delta.set and list(entry.delta.items) == ["note"]
    assert [n["text"] for n in entry.delta.items["note"]] == [f"{CANARY} visit two"]
    doc = shown(programme, case_id, as_="cw-north-1")
    notes = [item["text"] for item in doc["note"]]  # type: ignore[index,union-attr]
    assert notes == [f"{CANARY} visit one", f"{CANARY} visit two"]
    # Nothing sealed shows without a key.
    history = subprocess.run(
        ["git", "-C", str(programme.root), "log", "-p", "--all"], capture_output=True, check=True
    ).stdout
    assert CANARY.encode() not in history


def test_a_new_case_gets_its_own_key_and_a_reassignment_rotates_it(
    before_and_after: tuple[Programme, str, dict[str, object]],
) -> None:
    programme, _, _ = before_and_after
    case_id = programme.new_case()
    repo = programme.repo()
    first = wrap.unwrap(ref.read_case(repo.git, case_id), case_id, programme.identities("pm-001"))
    assert len(first.secrets) == 1
    moved = programme.cli(
        "assign", case_id, "cw-north-2", "--reason", "caseload_balancing", as_="sv-north"
    )
    assert moved.exit_code == 0, moved.output
    repo = programme.repo()
    files = ref.read_case(repo.git, case_id)
    second = wrap.unwrap(files, case_id, programme.identities("pm-001"))
    assert second.secrets[0] == first.secrets[0] and len(second.secrets) == 2
    with pytest.raises(NotARecipient):
        wrap.unwrap(files, case_id, programme.identities("cw-north-1"))
    assert programme.cli("show", case_id, as_="cw-north-1").exit_code == 5
    assert shown(programme, case_id, as_="cw-north-2")["caseworker"] == "cw-north-2"


def test_an_entry_copied_from_another_case_is_refused(
    before_and_after: tuple[Programme, str, dict[str, object]],
) -> None:
    programme, case_id, _ = before_and_after
    other = programme.new_case()
    mine = entry_files(programme, case_id)[0]
    theirs = entry_files(programme, other)[0]
    target = programme.root / mine
    target.write_bytes((programme.root / theirs).read_bytes())
    programme.git(
        "-c", "user.name=x", "-c", "user.email=x@x", "commit", "--no-verify", "-qam", "swap"
    )
    result = programme.cli("show", case_id, as_="pm-001")
    assert result.exit_code in (3, 5)
    assert case_id in result.output


def test_stock_age_opens_an_entry_in_two_steps(
    before_and_after: tuple[Programme, str, dict[str, object]], tmp_path: Path
) -> None:
    tool = shutil.which("age")
    if tool is None:
        if os.environ.get("CMGIT_REQUIRE_AGE") == "1":
            pytest.fail("the `age` command is not on PATH, and CMGIT_REQUIRE_AGE=1 requires it")
        pytest.skip("the `age` command is not on PATH")
    programme, case_id, _ = before_and_after
    record_note(programme, case_id, f"{CANARY} for age")
    wrapped = subprocess.run(
        [
            "git",
            "-C",
            str(programme.root),
            "show",
            f"{ref.shard_ref(case_id)}:{case_id}/staff.age",
        ],
        capture_output=True,
        check=True,
    ).stdout
    case_key = subprocess.run(
        [tool, "-d", "-i", str(programme.key("cw-north-1"))],
        input=wrapped,
        capture_output=True,
        check=True,
    ).stdout
    key_file = tmp_path / "case-key.txt"
    key_file.write_bytes(case_key)
    newest = entry_files(programme, case_id)[-1]
    sealed = (programme.root / newest).read_bytes()
    plain = subprocess.run(
        [tool, "-d", "-i", str(key_file)], input=sealed, capture_output=True, check=True
    ).stdout
    assert f"{CANARY} for age".encode() in plain


def every_age_plaintext(root: Path, identities: list[crypto.Identity]) -> list[bytes]:
    """Whatever any of ``identities`` opens, one or two layers deep, among every object
    of the repository, reachable or not."""
    listing = git(
        root, "cat-file", "--batch-all-objects", "--batch-check=%(objectname) %(objecttype)"
    )
    found = []
    for line in listing.splitlines():
        oid, kind = line.split()
        if kind != "blob":
            continue
        data = subprocess.run(
            ["git", "-C", str(root), "cat-file", "blob", oid],
            capture_output=True,
            check=True,
        ).stdout
        layer = [data]
        for _ in range(2):
            opened = []
            for sealed in layer:
                if not sealed.startswith(b"age-encryption.org/"):
                    continue
                for identity in identities:
                    try:
                        opened.append(crypto.open_binary(sealed, [identity]))
                    except CmgitError:
                        continue
            found += opened
            layer = opened
    return found


def second_manager(programme: Programme) -> None:
    secret, recipient = crypto.generate_identity()
    crypto.write_identity_file(programme.key("pm-002"), secret, recipient)
    made = programme.cli(
        "staff",
        "add",
        "pm-002",
        "--role",
        "programme_manager",
        "--team",
        "programme",
        "--recipient",
        recipient,
        as_="pm-001",
    )
    assert made.exit_code == 0, made.output


def closed_long_ago(programme: Programme) -> str:
    made = programme.cli("settings", "set", "retention_period_months", "12", as_="pm-001")
    assert made.exit_code == 0, made.output
    return programme.walk("closed_no_concern")


def test_a_purge_needs_two_programme_managers_and_leaves_nothing_that_opens(
    programme: Programme,
) -> None:
    custodians = [crypto.generate_identity() for _ in range(3)]
    recipients = ",".join(r for _, r in custodians)
    made = programme.cli("settings", "set", "recovery_recipients", f"[{recipients}]", as_="pm-001")
    assert made.exit_code == 0, made.output
    second_manager(programme)
    case_id = closed_long_ago(programme)
    record_before = programme.git("rev-parse", f"HEAD:{ids.record_path(case_id)}")
    assert (
        programme.cli("purge", case_id, "--reason", "retention_ended", as_="pm-001").exit_code == 4
    )
    later = "2028-06-01"
    proposed = programme.cli(
        "purge", case_id, "--reason", "retention_ended", as_="pm-001", today=later
    )
    assert proposed.exit_code == 0, proposed.output
    again = programme.cli(
        "purge", case_id, "--reason", "retention_ended", as_="pm-001", today=later
    )
    assert again.exit_code == 4 and "second programme manager" in again.output
    assert shown(programme, case_id)  # still readable while only proposed
    staff = [staff_id for staff_id, *_ in STAFF] + ["pm-002"]
    everyone = [i for staff_id in staff for i in programme.identities(staff_id)]
    everyone += [crypto.parse_identity(secret) for secret, _ in custodians]
    marker = f"# cmgit case key {case_id}".encode()
    # Before the erasure, staff and two custodians together open the case key.
    assert [p for p in every_age_plaintext(programme.root, everyone) if p.startswith(marker)]
    done = programme.cli("purge", case_id, "--reason", "retention_ended", as_="pm-002", today=later)
    assert done.exit_code == 0, done.output
    assert entry_files(programme, case_id) == []
    assert programme.git("rev-parse", f"HEAD:{ids.record_path(case_id)}") != record_before
    gone = programme.cli("show", case_id, as_="pm-001")
    assert gone.exit_code == 5 and "erased" in gone.output
    assert not [p for p in every_age_plaintext(programme.root, everyone) if p.startswith(marker)]


def test_two_of_three_custodians_recover_a_case_key_and_one_does_not(
    programme: Programme, tmp_path: Path
) -> None:
    custodians = [crypto.generate_identity() for _ in range(3)]
    files = []
    for n, (secret, recipient) in enumerate(custodians, start=1):
        path = tmp_path / f"custodian-{n}.txt"
        crypto.write_identity_file(path, secret, recipient)
        files.append(str(path))
    recipients = ",".join(r for _, r in custodians)
    made = programme.cli("settings", "set", "recovery_recipients", f"[{recipients}]", as_="pm-001")
    assert made.exit_code == 0, made.output
    case_id = programme.new_case()
    alone = programme.cli("recover-key", case_id, "--custodian", files[0], as_="pm-001")
    assert alone.exit_code == 5
    together = programme.cli(
        "recover-key", case_id, "--custodian", files[0], "--custodian", files[2], as_="pm-001"
    )
    assert together.exit_code == 0, together.output
    log = programme.git("log", "-1", "--format=%B")
    assert "Cmgit-Action: key-recovery" in log
    assert "Cmgit-Custodians: custodian-1 custodian-3" in log
    assert shown(programme, case_id, as_="cw-north-1")["case_id"] == case_id


def test_an_import_in_format_2_gives_each_case_a_key_and_one_entry(
    programme: Programme,
) -> None:
    source = programme.work / "primero.csv"
    write_sample(source, 12, 50)
    done = programme.cli("import", str(source), "--map", str(PRIMERO), "--json", as_="pm-001")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["imported"] == 12
    imported = programme.repo().case_ids()
    assert len(imported) == 12
    assert "Cmgit-Count: 12" in programme.git("log", "-1", "--format=%B")
    repo = programme.repo()
    for case_id in imported:
        assert entry_files(programme, case_id) == [entries.entry_path(case_id, 1)]
        assert set(ref.read_case(repo.git, case_id)) == {"staff.age"}
    doc = shown(programme, imported[0])
    assert CANARY in json.dumps(doc)
    assert programme.git("status", "--porcelain") == ""


def test_a_supervisor_leaving_rewraps_keys_and_reseals_no_record(
    before_and_after: tuple[Programme, str, dict[str, object]],
) -> None:
    programme, case_id, _ = before_and_after
    repo = programme.repo()
    before = wrap.unwrap(ref.read_case(repo.git, case_id), case_id, programme.identities("pm-001"))
    head = programme.git("rev-parse", "HEAD").strip()
    left = programme.cli("staff", "deactivate", "sv-north", "--json", as_="pm-001")
    assert left.exit_code == 0, left.output
    changed = programme.git("diff", "--name-only", head, "HEAD").split()
    assert changed == ["staff.yaml"]
    # What their key still opens in the history ends with format 1: the version of the
    # case made before the migration, nothing after it.
    exposed = json.loads(left.stdout)["history_readable"]
    assert [(e["case_id"], e["version"]) for e in exposed] == [(case_id, 1)]
    repo = programme.repo()
    files = ref.read_case(repo.git, case_id)
    after = wrap.unwrap(files, case_id, programme.identities("pm-001"))
    assert after.secrets[:1] == before.secrets and len(after.secrets) == 2
    with pytest.raises(NotARecipient):
        wrap.unwrap(files, case_id, programme.identities("sv-north"))
    record_note(programme, case_id, f"{CANARY} after the supervisor left")
    newest = (programme.root / entry_files(programme, case_id)[-1]).read_bytes()
    assert crypto.inspect_binary(newest).stanza_count == 1
    with pytest.raises(NotARecipient):
        crypto.open_binary(newest, before.identities())
    assert crypto.open_binary(newest, after.identities())


def test_two_offices_notes_on_one_case_merge_into_one_entry_on_the_central_version(
    before_and_after: tuple[Programme, str, dict[str, object]],
) -> None:
    programme, case_id, _ = before_and_after
    base = programme.git("rev-parse", "HEAD").strip()
    record_note(programme, case_id, f"{CANARY} office A")
    ours = programme.git("rev-parse", "HEAD").strip()
    programme.git("reset", "-q", "--hard", base)
    record_note(programme, case_id, f"{CANARY} office B")
    theirs = programme.git("rev-parse", "HEAD").strip()
    repo = programme.repo()
    files = repo.merge_sealed(
        case_id, base, ours, theirs, programme.identities("cw-north-1"), dt.date(2026, 4, 1)
    )
    version = int(shown(programme, case_id)["version"]) + 1  # type: ignore[call-overload]
    assert set(files) == {ids.record_path(case_id), entries.entry_path(case_id, version)}
    author = actor_author("cw-north-1")
    merged, _ = repo.git.make_commit(dict(files), "merged\n", author, theirs)
    programme.git("reset", "-q", "--hard", merged)
    texts = [n["text"] for n in shown(programme, case_id)["note"]]  # type: ignore[index,union-attr]
    assert sorted(texts) == [f"{CANARY} office A", f"{CANARY} office B"]
