"""Audit state cannot be forged cheaply (issue #14): the incremental audit says where it
starts and when that point was verified, and starts there only if cmgit's own audit
wrote it and it is still in the history; anything else forces a full run, which says why.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
from pathlib import Path

from ..conftest import Programme, git
from ..test_audit import forge

FORGED = "audit: audit state not written by cmgit: full run"


def state_dir(root: Path) -> Path:
    return root / ".git" / "cmgit"


def hand_made_commit(programme: Programme) -> str:
    """A commit cmgit did not make: what an incremental audit must not skip."""
    return forge(
        programme,
        {"records/.gitkeep": b"x"},
        "settings: set nothing",
        [("Cmgit-Action", "settings-set"), ("Cmgit-Actor", "cw-north-1")],
        "cw-north-1",
    )


def test_the_incremental_audit_says_where_it_starts_and_when_that_was_verified(
    programme: Programme,
) -> None:
    programme.new_case()
    first = programme.cli("audit", as_=None)
    assert first.exit_code == 0
    assert not re.search(r"^audit: from ", first.stderr, re.M)  # a first audit: everything
    verified = programme.git("rev-parse", "HEAD").strip()
    programme.new_case()
    again = programme.cli("audit", "--json", as_=None)
    report = json.loads(again.stdout)
    assert report["since"] == verified and report["checked"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", report["verified_at"])
    text = programme.cli("audit", as_=None)
    head = programme.git("rev-parse", "HEAD").strip()
    assert f"audit: from {head[:12]}, verified " in text.stderr
    # the state file: versioned, the commit, its time, a MAC; the secret is private
    lines = (state_dir(programme.root) / "audit-verified").read_text().splitlines()
    assert lines[0] == "cmgit-audit-state 1" and lines[1] == f"commit {head}"
    assert re.fullmatch(r"mac [0-9a-f]{64}", lines[-1])
    secret = state_dir(programme.root) / "audit-key"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_a_commit_id_written_into_the_state_forces_a_full_run(programme: Programme) -> None:
    """The attack of issue #14: `git rev-parse HEAD > .git/cmgit/audit-verified` after a
    hand-made commit, so that audit would check nothing."""
    programme.new_case()
    assert programme.cli("audit", as_=None).exit_code == 0
    bad = hand_made_commit(programme)
    state = state_dir(programme.root) / "audit-verified"
    state.write_text(programme.git("rev-parse", "HEAD"))
    result = programme.cli("audit", as_=None)
    assert result.exit_code == 6
    lines = result.stderr.splitlines()
    assert FORGED in lines
    assert bad[:12] in result.stdout
    commits = int(programme.git("rev-list", "--count", "HEAD"))
    assert f"audit: {commits} commit(s) checked" in result.stderr
    as_json = json.loads(programme.cli("audit", "--json", as_=None).stdout)
    assert as_json["full_run_reason"] == "audit state not written by cmgit: full run"
    assert as_json["since"] is None and as_json["checked"] == commits


def test_an_altered_or_foreign_state_forces_a_full_run(
    programme: Programme, tmp_path: Path
) -> None:
    programme.new_case()
    assert programme.cli("audit", as_=None).exit_code == 0
    state = state_dir(programme.root) / "audit-verified"
    genuine = state.read_text()
    commits = int(programme.git("rev-list", "--count", "HEAD"))
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(programme.root), str(clone))
    assert programme.cli("-C", str(clone), "audit", as_=None).exit_code == 0
    foreign = (state_dir(clone) / "audit-verified").read_text()
    assert foreign != genuine  # verified at its own time, under its own secret
    altered = {
        "a field changed": genuine.replace("actors-proven no", "actors-proven yes"),
        "another clone's state": foreign,
        "the format before it was versioned": programme.git("rev-parse", "HEAD"),
        "a later format": genuine.replace("cmgit-audit-state 1", "cmgit-audit-state 2"),
        "not text": "\xff\xfe",
    }
    for what, text in altered.items():
        state.write_bytes(text.encode("latin-1"))
        result = programme.cli("audit", "--json", as_=None)
        report = json.loads(result.stdout)
        assert result.exit_code == 0, what
        assert report["full_run_reason"] == "audit state not written by cmgit: full run", what
        assert report["checked"] == commits, what
    # without the secret, no state is trusted, even a genuine one; a new secret is made
    state.write_text(genuine)
    (state_dir(programme.root) / "audit-key").unlink()
    result = programme.cli("audit", as_=None)
    assert result.exit_code == 0 and FORGED in result.stderr.splitlines()
    assert (state_dir(programme.root) / "audit-key").is_file()
    assert "from " in programme.cli("audit", as_=None).stderr


def test_a_genuine_state_no_longer_in_the_history_is_reported(programme: Programme) -> None:
    programme.new_case()
    assert programme.cli("audit", as_=None).exit_code == 0
    programme.git("reset", "-q", "--hard", "HEAD~1")
    result = programme.cli("audit", "--json", as_=None)
    assert result.exit_code == 6 and FORGED not in result.stderr
    report = json.loads(result.stdout)
    assert {v["rule"] for v in report["violations"]} == {"history-rewritten"}
    assert report["since"] is None  # and everything was checked again


def test_a_bare_repository_keeps_its_state_in_its_own_folder(
    programme: Programme, tmp_path: Path
) -> None:
    programme.new_case()
    central = tmp_path / "central.git"
    git(tmp_path, "clone", "-q", "--bare", str(programme.root), str(central))
    assert programme.cli("-C", str(central), "audit", as_=None).exit_code == 0
    assert (central / "cmgit" / "audit-verified").is_file()
    assert stat.S_IMODE((central / "cmgit" / "audit-key").stat().st_mode) == 0o600
    (central / "cmgit" / "audit-verified").write_text(git(central, "rev-parse", "HEAD"))
    result = programme.cli("-C", str(central), "audit", as_=None)
    assert result.exit_code == 0 and FORGED in result.stderr.splitlines()
    # where the state cannot be written, the audit still reports, and says so
    shutil.rmtree(central / "cmgit")
    (central / "cmgit").write_text("not a folder")
    result = programme.cli("-C", str(central), "audit", as_=None)
    assert result.exit_code == 0
    assert "audit: could not remember this audit (git folder not writable)" in result.stderr
