"""Hooks: the client refuses commits cmgit did not make; the central server refuses
rewrites, deletions, unsigned commits and whatever audit flags."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from cmgit import ids

from .conftest import CANARY, Programme
from .test_signing import require_signatures, ssh_key


def run_git(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(
        ["git", "-C", str(cwd), "-c", "user.name=x", "-c", "user.email=x@x", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
    )


def test_client_hooks(programme: Programme) -> None:
    case_id = programme.new_case()
    result = programme.cli("hooks", "install", as_=None)
    assert result.exit_code == 0, result.output
    path = programme.root / ids.record_path(case_id)
    path.write_text(path.read_text() + "\n")
    run_git(programme.root, "add", "-A")
    refused = run_git(programme.root, "commit", "-m", "hand edit")
    assert refused.returncode != 0 and "only through cmgit" in refused.stderr
    run_git(programme.root, "reset", "-q", "--hard")
    programme.cli("record", case_id, "consent", "--from", programme.form_file("consent"))
    mine = {"CMGIT_IDENTITY": str(programme.key("cw-north-1"))}
    shown = run_git(programme.root, "log", "-p", "-1", env=mine)
    assert CANARY in shown.stdout and "consent:" in shown.stdout
    sealed = run_git(
        programme.root, "log", "-p", "-1", env={"CMGIT_IDENTITY": str(programme.key("cw-south-1"))}
    )
    assert CANARY not in sealed.stdout and "BEGIN AGE ENCRYPTED FILE" in sealed.stdout
    assert run_git(programme.root, "status", "--porcelain").stdout == ""


def test_server_refuses_what_audit_would(programme: Programme, tmp_path: Path) -> None:
    _, cw_key = require_signatures(programme, tmp_path)
    server = tmp_path / "central.git"
    cloned = run_git(tmp_path, "clone", "-q", "--bare", str(programme.root), str(server))
    assert cloned.returncode == 0
    installed = programme.cli("-C", str(server), "hooks", "install", "--server", as_=None)
    assert installed.exit_code == 0, installed.output
    run_git(programme.root, "remote", "add", "origin", str(server))

    signed = {"CMGIT_SIGNING_KEY": str(cw_key)}
    assert (
        programme.cli("new", "--from", programme.form_file("identification"), env=signed).exit_code
        == 0
    )
    pushed = run_git(programme.root, "push", "-q", "origin", "main")
    assert pushed.returncode == 0, pushed.stderr

    # an unsigned hand-made commit
    (programme.root / "notes.txt").write_text("x")
    run_git(programme.root, "add", "notes.txt")
    run_git(programme.root, "commit", "-q", "--no-verify", "-m", "note")
    refused = run_git(programme.root, "push", "-q", "origin", "main")
    assert refused.returncode != 0 and "signature" in refused.stderr
    assert "message" in refused.stderr
    run_git(programme.root, "reset", "-q", "--hard", "HEAD~1")

    # a force push that drops a published commit, and a branch deletion
    run_git(programme.root, "reset", "-q", "--hard", "HEAD~1")
    forced = run_git(programme.root, "push", "-q", "-f", "origin", "main")
    assert forced.returncode != 0
    deleted = run_git(programme.root, "push", "-q", "origin", ":main")
    assert deleted.returncode != 0
    head = run_git(server, "rev-parse", "main").stdout.strip()
    assert head == run_git(programme.root, "rev-parse", "origin/main").stdout.strip()


def test_server_refuses_each_forgery(programme: Programme, tmp_path: Path) -> None:
    """Every forgery cmgit audit reports is also refused by the central repository."""
    from .test_audit import forge

    pm_key, cw_key = require_signatures(programme, tmp_path)
    stranger, _ = ssh_key(tmp_path, "stranger")
    made = programme.cli(
        "new",
        "--from",
        programme.form_file("identification"),
        env={"CMGIT_SIGNING_KEY": str(cw_key)},
    )
    case_id = made.stdout.strip()
    server = tmp_path / "central.git"
    run_git(tmp_path, "clone", "-q", "--bare", str(programme.root), str(server))
    assert programme.cli("-C", str(server), "hooks", "install", "--server", as_=None).exit_code == 0
    run_git(programme.root, "remote", "add", "origin", str(server))
    path = ids.record_path(case_id)
    record = (programme.root / path).read_bytes()
    staff = (
        (programme.root / "staff.yaml").read_bytes().replace(b"role: auditor", b"role: supervisor")
    )

    def trailers(action: str, actor: str, role: str, **extra: str) -> list[tuple[str, str]]:
        return [
            *extra.items(),
            ("Cmgit-Action", action),
            ("Cmgit-Actor", actor),
            ("Cmgit-Role", role),
        ]

    cases = {
        "signed by a key that is not staff": (
            {path: record + b""},
            f"{case_id}: edit",
            [("Cmgit-Case", case_id), *trailers("edit", "cw-north-1", "caseworker")],
            "cw-north-1",
            stranger,
            "signature",
        ),
        "signed by staff A naming actor B": (
            {path: record},
            f"{case_id}: edit",
            [("Cmgit-Case", case_id), *trailers("edit", "cw-north-1", "caseworker")],
            "cw-north-1",
            pm_key,
            "signature",
        ),
        "a staff registry change by a caseworker": (
            {"staff.yaml": staff},
            "staff: update aud-001",
            [("Cmgit-Staff", "aud-001"), *trailers("staff-update", "cw-north-1", "caseworker")],
            "cw-north-1",
            cw_key,
            "config",
        ),
        "a plaintext file under records": (
            {path: b"name: CANARY-NAME\n"},
            f"{case_id}: edit",
            [("Cmgit-Case", case_id), *trailers("edit", "cw-north-1", "caseworker")],
            "cw-north-1",
            cw_key,
            "record",
        ),
    }
    # a caseworker authorising the closure of their own case
    data = record.decode()
    closed = (
        data.replace("state: identified", "state: closed")
        .replace("version: 1\n", "version: 2\n")
        .encode()
    )
    cases["a caseworker closing their own case"] = (
        {path: closed},
        f"{case_id}: identified -> closed",
        [
            ("Cmgit-Case", case_id),
            ("Cmgit-Transition", "T02"),
            ("Cmgit-From", "identified"),
            ("Cmgit-To", "closed"),
            ("Cmgit-Reason", "duplicate"),
            *trailers("move", "cw-north-1", "caseworker"),
        ],
        "cw-north-1",
        cw_key,
        "four-eyes",
    )
    for name, (files, subject, trail, author, key, rule) in cases.items():
        forge(programme, files, subject, trail, author, sign_with=key)
        pushed = run_git(programme.root, "push", "-q", "origin", "main")
        assert pushed.returncode != 0, name
        assert rule in pushed.stderr, (name, pushed.stderr)
        assert CANARY not in pushed.stderr
        run_git(programme.root, "reset", "-q", "--hard", "HEAD~1")
