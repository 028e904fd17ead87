"""Two offices share one case repository through a central bare repository."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import Result

from .conftest import CANARY, Programme
from .test_hooks import run_git


def offices(programme: Programme, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A central repository made from office A's (the programme's own repository), with
    the server hooks; A and B, an office made with `cmgit clone`: the central, A and B."""
    central = tmp_path / "central.git"
    assert (
        run_git(tmp_path, "clone", "-q", "--bare", str(programme.root), str(central)).returncode
        == 0
    )
    assert (
        programme.cli(
            "-C", str(central), "hooks", "install", "--server", "--allow-unsigned", as_=None
        ).exit_code
        == 0
    )
    run_git(programme.root, "remote", "add", "origin", str(central))
    # A's first sync brings the keyring to the central repository, B's clone takes it
    first = in_office(programme, programme.root, "sync", as_="pm-001")
    assert first.exit_code == 0, first.output
    other = tmp_path / "office-b"
    cloned = programme.cli("clone", str(central), str(other), as_=None)
    assert cloned.exit_code == 0, cloned.output
    return central, programme.root, other


def in_office(
    programme: Programme, office: Path, *args: str, as_: str | None = "cw-north-1"
) -> Result:
    return programme.cli("-C", str(office), *args, as_=as_)


def test_two_offices_edit_different_and_same_cases(programme: Programme, tmp_path: Path) -> None:
    first = programme.new_case()
    second = programme.new_case()
    central, a, b = offices(programme, tmp_path)
    assert (
        in_office(
            programme, a, "record", first, "consent", "--from", programme.form_file("consent")
        ).exit_code
        == 0
    )
    assert (
        in_office(
            programme, b, "record", second, "note", "--from", programme.form_file("note")
        ).exit_code
        == 0
    )
    # the same case, different forms, in both offices
    assert (
        in_office(
            programme, a, "record", second, "consent", "--from", programme.form_file("consent")
        ).exit_code
        == 0
    )
    synced = in_office(programme, a, "sync")
    assert synced.exit_code == 0, synced.output
    synced = in_office(programme, b, "sync")
    assert synced.exit_code == 0, synced.output
    assert "1 merged" in synced.stdout
    assert in_office(programme, a, "sync").exit_code == 0
    for office in (a, b):
        assert (
            run_git(office, "rev-parse", "HEAD").stdout
            == run_git(central, "rev-parse", "main").stdout
        )
        assert run_git(office, "status", "--porcelain").stdout == ""
    merges = run_git(central, "rev-list", "--merges", "main").stdout
    assert merges == ""
    doc = json.loads(in_office(programme, a, "show", second, "--json").stdout)
    assert doc["note"] and doc["consent"]
    log = json.loads(in_office(programme, a, "log", second, "--json", as_=None).stdout)
    versions = [r["version"] for r in log]
    assert versions == list(range(1, len(versions) + 1))
    assert in_office(programme, a, "audit", as_=None).exit_code == 0


def test_conflicting_moves_are_refused_and_nothing_is_lost(
    programme: Programme, tmp_path: Path
) -> None:
    case_id = programme.walk("registered")
    _, a, b = offices(programme, tmp_path)
    assert in_office(programme, a, "move", case_id, "assessment").exit_code == 0
    assert in_office(programme, a, "sync").exit_code == 0
    closed = in_office(programme, b, "move", case_id, "closed", "--reason", "death", as_="sv-north")
    assert closed.exit_code == 0, closed.output
    mine = run_git(b, "rev-parse", "HEAD").stdout
    refused = in_office(programme, b, "sync", as_="sv-north")
    assert refused.exit_code == 4, refused.output
    assert "different workflow decision" in refused.stderr and "/state" in refused.stderr
    assert run_git(b, "rev-parse", "HEAD").stdout == mine
    assert run_git(b, "status", "--porcelain").stdout == ""
    assert list((b / ".git").glob("*.orig")) == []


def test_a_rewritten_central_history_is_refused(programme: Programme, tmp_path: Path) -> None:
    programme.new_case()
    central, a, b = offices(programme, tmp_path)
    assert (
        in_office(
            programme,
            a,
            "record",
            programme.new_case(),
            "note",
            "--from",
            programme.form_file("note"),
        ).exit_code
        == 0
    )
    assert in_office(programme, a, "sync").exit_code == 0
    assert in_office(programme, b, "sync").exit_code == 0
    old = run_git(central, "rev-parse", "main~2").stdout.strip()
    run_git(central, "update-ref", "refs/heads/main", old)
    refused = in_office(programme, b, "sync")
    assert refused.exit_code == 6 and "rewritten" in refused.stderr


def test_git_merge_uses_the_record_merge_driver(programme: Programme, tmp_path: Path) -> None:
    case_id = programme.new_case()
    _, a, b = offices(programme, tmp_path)
    assert (
        in_office(
            programme, a, "record", case_id, "consent", "--from", programme.form_file("consent")
        ).exit_code
        == 0
    )
    assert in_office(programme, a, "sync").exit_code == 0
    assert (
        in_office(
            programme, b, "record", case_id, "note", "--from", programme.form_file("note")
        ).exit_code
        == 0
    )
    assert in_office(programme, b, "hooks", "install", as_=None).exit_code == 0
    env = {"CMGIT_IDENTITY": str(programme.key("cw-north-1")), "CMGIT_TODAY": "2026-04-01"}
    run_git(b, "fetch", "-q", "origin")
    merged = run_git(b, "merge", "-q", "--no-edit", "origin/main", env=env)
    assert merged.returncode == 0, merged.stderr
    doc = json.loads(in_office(programme, b, "show", case_id, "--json").stdout)
    assert doc["consent"] and doc["note"]
    text = next((b / "records").rglob(f"{case_id}.yaml")).read_text()
    assert CANARY not in text and "BEGIN AGE ENCRYPTED FILE" in text


def test_an_auditor_with_no_key_reviews_a_clone(programme: Programme, tmp_path: Path) -> None:
    case_id = programme.walk("implementation")
    _, _, clone = offices(programme, tmp_path)
    assert in_office(programme, clone, "audit", as_=None).exit_code == 0
    log = json.loads(in_office(programme, clone, "log", case_id, "--json", as_=None).stdout)
    approval = next(r for r in log if r["transition"] == "T09")
    assert (approval["actor"], approval["role"]) == ("sv-north", "supervisor")
    assert {r["signature"] for r in log} == {"none"}
    text = in_office(programme, clone, "log", case_id, as_=None).stdout
    assert "case_planning -> implementation" in text and CANARY not in text
    # the auditor's own key opens nothing
    assert in_office(programme, clone, "show", case_id, as_="aud-001").exit_code == 5


def test_a_move_in_one_office_and_a_form_in_the_other(programme: Programme, tmp_path: Path) -> None:
    """The merged case is in the moved-to state since the day of the move, and its state
    history ends with that move, as the commits tell."""
    case_id = programme.walk("registered")
    _, a, b = offices(programme, tmp_path)
    assert (
        in_office(
            programme, a, "record", case_id, "note", "--from", programme.form_file("note")
        ).exit_code
        == 0
    )
    moved = programme.cli("-C", str(b), "move", case_id, "assessment", today="2026-04-03")
    assert moved.exit_code == 0, moved.output
    assert in_office(programme, a, "sync").exit_code == 0
    synced = in_office(programme, b, "sync")
    assert synced.exit_code == 0 and "1 merged" in synced.stdout, synced.output
    row = next(
        r
        for r in json.loads(in_office(programme, b, "list", "--json").stdout)
        if r["case_id"] == case_id
    )
    assert (row["state"], row["state_since"]) == ("assessment", "2026-04-03")
    assert row["state_history"][-1] == "2026-04-03 assessment"
    assert in_office(programme, b, "audit", as_=None).exit_code == 0
