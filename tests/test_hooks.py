"""Hooks: the client refuses commits cmgit did not make; the central server refuses
rewrites, deletions, unsigned commits and whatever audit flags; on a host without hooks,
the CI templates run the same checks (the attacks on the boundary itself are in
tests/hostile/test_central_boundary.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

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
    # Someone else sees which entry changed, and nothing of it.
    assert CANARY not in sealed.stdout and f" of {case_id} (" in sealed.stdout
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


def test_server_set_up_by_an_earlier_cmgit_refuses_pushes_until_installed_again(
    programme: Programme, tmp_path: Path
) -> None:
    """A central repository made before the hook set receive.fsckObjects (or with it
    turned off since) lets malformed objects through to git: it takes no push until a
    coordinator installs the hook again."""
    _, cw_key = require_signatures(programme, tmp_path)
    server = tmp_path / "central.git"
    assert (
        run_git(tmp_path, "clone", "-q", "--bare", str(programme.root), str(server)).returncode == 0
    )
    installed = programme.cli("-C", str(server), "hooks", "install", "--server", as_=None)
    assert installed.exit_code == 0, installed.output
    run_git(server, "config", "receive.fsckObjects", "false")
    run_git(programme.root, "remote", "add", "origin", str(server))
    signed = {"CMGIT_SIGNING_KEY": str(cw_key)}
    made = programme.cli("new", "--from", programme.form_file("identification"), env=signed)
    assert made.exit_code == 0, made.output
    before = run_git(server, "rev-parse", "main").stdout
    refused = run_git(programme.root, "push", "-q", "origin", "main")
    assert refused.returncode != 0
    assert "receive.fsckObjects off" in refused.stderr
    assert "cmgit hooks install --server" in refused.stderr
    assert run_git(server, "rev-parse", "main").stdout == before
    again = programme.cli("-C", str(server), "hooks", "install", "--server", as_=None)
    assert again.exit_code == 0, again.output
    pushed = run_git(programme.root, "push", "-q", "origin", "main")
    assert pushed.returncode == 0, pushed.stderr


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


CI_TEMPLATES = Path(__file__).resolve().parent.parent / "ci-templates"
# Where each template's job finds the central repository's address.
CI_URLS = {"github-actions.yml": "CENTRAL_URL", "gitlab-ci.yml": "CI_REPOSITORY_URL"}


def ci_job(path: Path) -> tuple[dict[str, Any], list[str]]:
    """A CI template's variables and the shell lines its job runs, in order."""
    doc = yaml.safe_load(path.read_text())
    if "jobs" in doc:  # GitHub Actions: one job of steps
        (job,) = doc["jobs"].values()
        steps = [step for step in job["steps"] if "run" in step]
        variables = {k: v for step in steps for k, v in step.get("env", {}).items()}
        return variables, [line for step in steps for line in step["run"].splitlines()]
    (job,) = doc.values()  # GitLab CI: one job of script lines
    return job["variables"], list(job["script"])


@pytest.mark.parametrize("template", sorted(CI_URLS))
def test_ci_template_runs_the_server_checks(
    programme: Programme, tmp_path: Path, template: str
) -> None:
    """The command each CI template runs is one the CLI accepts, and it fails on a ref
    beside the branch: the template's own lines, run against a real central repository
    (the package install aside: this cmgit is the one under test)."""
    variables, lines = ci_job(CI_TEMPLATES / template)
    install = [line for line in lines if "pip install" in line]
    assert install == ['python -m pip install "$CMGIT_PACKAGE"']
    assert str(variables["CMGIT_PACKAGE"]).startswith("cmgit==")
    checks = [line for line in lines if line not in install]
    assert checks[-1] == "cmgit -C central.git audit --server-checks"
    central = tmp_path / "hosted.git"
    assert (
        run_git(tmp_path, "clone", "-q", "--bare", str(programme.root), str(central)).returncode
        == 0
    )
    bin_dir = str(Path(sys.executable).parent)
    assert (Path(bin_dir) / "cmgit").exists()

    def job(name: str) -> subprocess.CompletedProcess[str]:
        workspace = tmp_path / name
        workspace.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update({CI_URLS[template]: str(central), "PATH": f"{bin_dir}:{env['PATH']}"})
        return subprocess.run(
            ["sh", "-e", "-c", "\n".join(checks)],
            cwd=workspace,
            env=env,
            capture_output=True,
            text=True,
        )

    clean = job("clean")
    assert clean.returncode == 0, clean.stderr
    assert "audit --server-checks: ok" in clean.stderr
    assert run_git(central, "tag", "v1", "main").returncode == 0
    tagged = job("tagged")
    assert tagged.returncode == 6
    assert "refs/tags/v1: a tag beside refs/heads/main" in tagged.stdout
    assert "audit --server-checks: 1 problem(s)" in tagged.stderr
