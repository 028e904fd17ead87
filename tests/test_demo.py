"""`cmgit demo`: a synthetic programme built through the library, with a tour."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from click.testing import CliRunner

from cmgit.cli import cli
from cmgit.history import Git

from .conftest import CANARY, git


def test_demo_builds_a_programme_and_prints_where(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    result = CliRunner().invoke(
        cli,
        ["demo", str(target), "--cases", "6"],
        env={"CMGIT_TODAY": "2026-04-01"},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    repo = target / "cases"
    assert f"Case repository:  {repo}" in result.stdout
    keys = sorted((target / "identities").glob("*.txt"))
    assert len(keys) == 18
    assert all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in keys)
    # identities never inside the repository
    assert not [p for p in repo.rglob("*") if p.is_file() and b"AGE-SECRET-KEY" in p.read_bytes()]
    assert git(repo, "status", "--porcelain") == ""
    # bytes: the sealed entries and the keyring's wrapped keys are binary age files
    history = subprocess.run(
        ["git", "-C", str(repo), "log", "-p", "--all"], capture_output=True, check=True
    ).stdout
    assert CANARY.encode() not in history and b"AGE-SECRET-KEY" not in history
    assert CANARY not in result.output

    # every commit is signed, and the tour's last step, a keyless audit, is clean
    objects = Git(repo).objects
    commits = git(repo, "rev-list", "HEAD").split()
    assert all(objects.signed_commit(oid)[1] for oid in commits)
    audited = CliRunner().invoke(cli, ["-C", str(repo), "audit"], catch_exceptions=False)
    assert audited.exit_code == 0, audited.output
    # signatures required from the first commit: every actor is proven
    assert audited.stderr.splitlines()[-1].endswith(" commit(s) checked, ok")
    assert "claims" not in audited.stderr
    assert "cmgit audit" in result.stdout

    pm = str(target / "identities" / "pm-001.txt")
    runner = CliRunner()
    checked = runner.invoke(
        cli,
        ["-C", str(repo), "validate", "--json"],
        env={"CMGIT_IDENTITY": pm},
        catch_exceptions=False,
    )
    assert checked.exit_code == 0, checked.output
    results = json.loads(checked.stdout)
    assert len(results) == 6 and all(r["ok"] and r["opened"] for r in results)
    case_id = results[0]["case_id"]
    shown = runner.invoke(
        cli,
        ["-C", str(repo), "show", case_id, "--json"],
        env={"CMGIT_IDENTITY": pm},
        catch_exceptions=False,
    )
    assert CANARY in shown.stdout
    # the tour's commands work as printed
    tour_case = next(
        line.split()[2]
        for line in result.stdout.splitlines()
        if line.strip().startswith("cmgit show")
    )
    owner_key = next(
        line.split("=", 1)[1]
        for line in result.stdout.splitlines()
        if "export CMGIT_IDENTITY=" in line
    )
    assert os.path.exists(owner_key)
    tour = runner.invoke(
        cli,
        ["-C", str(repo), "show", tour_case],
        env={"CMGIT_IDENTITY": owner_key},
        catch_exceptions=False,
    )
    assert tour.exit_code == 0 and "registration:" in tour.stdout


def test_demo_refuses_a_folder_with_files(tmp_path: Path) -> None:
    target = tmp_path / "full"
    target.mkdir()
    (target / "x").write_text("x")
    result = CliRunner().invoke(cli, ["demo", str(target)])
    assert result.exit_code == 2 and "not empty" in result.stderr
    assert [p.name for p in target.iterdir()] == ["x"]
