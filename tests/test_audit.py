"""`cmgit audit`: needs no key, finds each kind of forged or broken history."""

from __future__ import annotations

import json
import os
import subprocess
import zlib
from pathlib import Path

from cmgit import ids, signing
from cmgit.history import Author, Git, format_message

from .conftest import Programme
from .test_signing import require_signatures, ssh_key


def audit(programme: Programme, *args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = programme.cli("audit", "--json", *args, as_=None)
    return result.exit_code, json.loads(result.stdout)


def rules(report: dict) -> set[str]:  # type: ignore[type-arg]
    return {v["rule"] for v in report["violations"]}


def forge(
    programme: Programme,
    files: dict[str, bytes | None],
    subject: str,
    trailers: list[tuple[str, str]],
    author: str,
    sign_with: Path | None = None,
) -> str:
    """A commit made without cmgit's checks: what a malicious insider could push."""
    git = Git(programme.root)
    signer = None
    if sign_with is not None:
        key = signing.load_private_key(sign_with)

        def signer(data: bytes) -> str:
            return signing.sign(data, key)

    return git.commit(
        files,
        format_message(subject, trailers),
        Author(author, f"{author}@cmgit.invalid"),
        git.head(),
        sign=signer,
    )


def corrupt_newest_record(programme: Programme) -> str:
    """Flip a byte in the loose object of the record the last commit wrote; its id."""
    written = programme.git("show", "--name-only", "--format=", "HEAD").split()
    (record,) = (path for path in written if ids.case_id_from_path(path))
    head_blob = programme.git("rev-parse", f"HEAD:{record}").strip()
    obj = programme.root / ".git" / "objects" / head_blob[:2] / head_blob[2:]
    os.chmod(obj, 0o644)
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0xFF
    obj.write_bytes(bytes(data))
    return head_blob


def test_clean_history_passes_and_is_remembered(programme: Programme) -> None:
    programme.walk("implementation")
    code, report = audit(programme)
    assert code == 0 and report["ok"] and report["checked"] > 10
    code, again = audit(programme)
    assert code == 0 and again["checked"] == 0


def test_hand_made_commit_is_flagged(programme: Programme) -> None:
    case_id = programme.new_case()
    path = programme.root / ids.record_path(case_id)
    path.write_text(path.read_text().replace("state: identified", "state: closed"))
    programme.git("-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", "fix")
    code, report = audit(programme)
    assert code == 6 and "message" in rules(report)


def test_registry_change_by_a_caseworker(programme: Programme) -> None:
    staff = (
        (programme.root / "staff.yaml").read_bytes().replace(b"role: auditor", b"role: supervisor")
    )
    forge(
        programme,
        {"staff.yaml": staff},
        "staff: update aud-001",
        [
            ("Cmgit-Action", "staff-update"),
            ("Cmgit-Staff", "aud-001"),
            ("Cmgit-Actor", "cw-north-1"),
            ("Cmgit-Role", "caseworker"),
        ],
        "cw-north-1",
    )
    code, report = audit(programme)
    assert code == 6 and "config" in rules(report)


def test_caseworker_authorising_closure_of_own_case(programme: Programme) -> None:
    case_id = programme.walk("implementation")
    path = ids.record_path(case_id)
    data = (programme.root / path).read_text()
    version = int(data.split("version: ", 1)[1].split("\n", 1)[0])
    forged = data.replace("state: implementation", "state: closed").replace(
        f"version: {version}\n", f"version: {version + 1}\n"
    )
    forge(
        programme,
        {path: forged.encode()},
        f"{case_id}: implementation -> closed",
        [
            ("Cmgit-Case", case_id),
            ("Cmgit-Action", "move"),
            ("Cmgit-Transition", "T26"),
            ("Cmgit-From", "implementation"),
            ("Cmgit-To", "closed"),
            ("Cmgit-Reason", "death"),
            ("Cmgit-Version", str(version + 1)),
            ("Cmgit-Date", "2026-04-01"),
            ("Cmgit-Actor", "cw-north-1"),
            ("Cmgit-Role", "caseworker"),
        ],
        "cw-north-1",
    )
    code, report = audit(programme)
    assert code == 6
    assert {"scope", "four-eyes"} <= rules(report)


def test_a_state_history_the_commits_do_not_tell(programme: Programme) -> None:
    """Statistics count time in each step from the state history in the open fields: a
    commit that rewrites it, rather than adding the state a move entered, is flagged."""
    case_id = programme.walk("assessment")
    path = ids.record_path(case_id)
    data = (programme.root / path).read_text()
    version = int(data.split("version: ", 1)[1].split("\n", 1)[0])
    told = next(line for line in data.splitlines() if line.startswith("state_history: "))
    forged = data.replace(told, 'state_history: ["2026-01-01 assessment"]').replace(
        f"version: {version}\n", f"version: {version + 1}\n"
    )
    forge(
        programme,
        {path: forged.encode()},
        f"{case_id}: record note",
        [
            ("Cmgit-Case", case_id),
            ("Cmgit-Action", "record"),
            ("Cmgit-Form", "note"),
            ("Cmgit-Version", str(version + 1)),
            ("Cmgit-Date", "2026-04-01"),
            ("Cmgit-Actor", "cw-north-1"),
            ("Cmgit-Role", "caseworker"),
        ],
        "cw-north-1",
    )
    code, report = audit(programme)
    assert code == 6
    assert [v["rule"] for v in report["violations"]] == ["history"]


def test_plaintext_under_records(programme: Programme) -> None:
    case_id = programme.new_case()
    path = ids.record_path(case_id)
    forge(
        programme,
        {path: b"case_id: x\nname: CANARY-NAME\n"},
        f"{case_id}: edit",
        [
            ("Cmgit-Case", case_id),
            ("Cmgit-Action", "edit"),
            ("Cmgit-Version", "2"),
            ("Cmgit-Date", "2026-04-01"),
            ("Cmgit-Actor", "cw-north-1"),
            ("Cmgit-Role", "caseworker"),
        ],
        "cw-north-1",
    )
    result = programme.cli("audit", as_=None)
    assert result.exit_code == 6 and "record" in result.stdout
    assert "CANARY" not in result.output


def test_signatures(programme: Programme, tmp_path: Path) -> None:
    pm_key, cw_key = require_signatures(programme, tmp_path)
    stranger, _ = ssh_key(tmp_path, "stranger")
    ok = programme.cli(
        "new",
        "--from",
        programme.form_file("identification"),
        env={"CMGIT_SIGNING_KEY": str(cw_key)},
    )
    assert ok.exit_code == 0, ok.output
    assert audit(programme)[0] == 0
    case_id = ok.stdout.strip()
    # unsigned, signed by a stranger, signed by staff A in the name of staff B
    for key, actor in ((None, "cw-north-1"), (stranger, "cw-north-1"), (pm_key, "cw-north-1")):
        forge(
            programme,
            {"records/.gitkeep": os.urandom(4)},
            f"{case_id}: record note",
            [
                ("Cmgit-Case", case_id),
                ("Cmgit-Action", "record"),
                ("Cmgit-Form", "note"),
                ("Cmgit-Version", "2"),
                ("Cmgit-Date", "2026-04-01"),
                ("Cmgit-Actor", actor),
                ("Cmgit-Role", "caseworker"),
            ],
            actor,
            sign_with=key,
        )
        code, report = audit(programme)
        assert code == 6 and "signature" in rules(report), (key, report)
        programme.git("reset", "-q", "--hard", "HEAD~1")
        (programme.root / ".git" / "cmgit" / "audit-verified").unlink(missing_ok=True)


def test_corrupted_object_and_rewritten_history(programme: Programme) -> None:
    programme.new_case()
    assert audit(programme)[0] == 0
    # rewrite: drop the verified commit and make another
    programme.git("reset", "-q", "--hard", "HEAD~1")
    programme.new_case()
    code, report = audit(programme)
    assert code == 6 and "history-rewritten" in rules(report)
    os.remove(programme.root / ".git" / "cmgit" / "audit-verified")
    corrupt_newest_record(programme)
    result = subprocess.run(["git", "-C", str(programme.root), "fsck"], capture_output=True)
    assert result.returncode != 0
    code, report = audit(programme)
    assert code == 6 and "fsck" in rules(report)


def test_incremental_audit_checks_the_new_objects_and_full_checks_all(programme: Programme) -> None:
    programme.new_case()
    assert audit(programme)[0] == 0
    programme.new_case()  # a new commit after the verified one, with a new record blob
    head_blob = corrupt_newest_record(programme)
    code, report = audit(programme)
    assert code == 6 and report["checked"] == 1
    assert any(head_blob in v["detail"] for v in report["violations"])


def test_full_audit_rechecks_what_was_verified(programme: Programme) -> None:
    programme.new_case()
    assert audit(programme)[0] == 0
    assert audit(programme)[1]["checked"] == 0
    code, report = audit(programme, "--full")
    assert code == 0 and report["checked"] >= 2


def _site_page_by_hand(programme: Programme) -> Path:
    """A page committed with plain git: its blob is a loose object no case walk reads."""
    page = programme.root / "site" / "extra-page.md"
    page.parent.mkdir(exist_ok=True)
    page.write_text("# An extra page\n")
    programme.git("add", "site/extra-page.md")
    programme.git("-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qm", "page")
    blob = programme.git("rev-parse", "HEAD:site/extra-page.md").strip()
    return programme.root / ".git" / "objects" / blob[:2] / blob[2:]


def fsck_details(programme: Programme) -> list[str]:
    (programme.root / ".git" / "cmgit" / "audit-verified").unlink(missing_ok=True)
    code, report = audit(programme)
    assert code == 6
    return [v["detail"] for v in report["violations"] if v["rule"] == "fsck"]


def test_a_whole_history_audit_hashes_objects_no_walk_reads(programme: Programme) -> None:
    """Every object is hashed, not only those the walk reads: a damaged page is named."""
    programme.new_case()
    loose = _site_page_by_hand(programme)
    blob = loose.parent.name + loose.name
    loose.chmod(0o644)
    # A valid zlib stream of other content: git reads it, only its hash betrays it.
    loose.write_bytes(zlib.compress(b"blob 16\0# Another page!\n"))
    assert f"damaged or missing object {blob}" in fsck_details(programme)


def test_a_whole_history_audit_names_a_missing_object_of_the_head(programme: Programme) -> None:
    programme.new_case()
    loose = _site_page_by_hand(programme)
    blob = loose.parent.name + loose.name
    loose.unlink()
    assert f"damaged or missing object {blob}" in fsck_details(programme)
