"""A configuration change that audit would flag is never acted on (issue 14), where the
command line meets it outside a single clone: in another office's work fetched by
`cmgit sync`, and in the site and statistics a programme publishes.

The change here is the one audit flags first: a plain-git commit, made outside cmgit, of
the workflow (T02 opened to caseworkers) or the settings, on a central repository whose
host runs no cmgit hook.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cmgit.errors import REPOSITORY

from ..conftest import CANARY, Programme
from ..test_hooks import run_git
from .refusal import one_line_error
from .test_config_trust import REFUSAL, T02_AS_SHIPPED, T02_OPENED, WORKFLOW


def by_hand(office: Path, path: str, old: str, new: str) -> str:
    """Commit PATH with OLD replaced by NEW, with plain git; the commit's short id."""
    text = (office / path).read_text()
    assert old in text
    (office / path).write_text(text.replace(old, new))
    done = run_git(office, "commit", "-q", "-m", f"update {path}", path)
    assert done.returncode == 0, done.stderr
    return run_git(office, "rev-parse", "--short=12", "HEAD").stdout.strip()


def hookless_offices(programme: Programme, tmp_path: Path) -> tuple[Path, Programme]:
    """A central repository on a host that runs no hook, office A (the programme's own
    clone, with it as origin) and office B, made by `cmgit clone` of it."""
    central = tmp_path / "central.git"
    cloned = run_git(tmp_path, "clone", "-q", "--bare", str(programme.root), str(central))
    assert cloned.returncode == 0, cloned.stderr
    run_git(programme.root, "remote", "add", "origin", str(central))
    # A's first sync brings the keyring to the central repository, B's clone takes it
    first = programme.cli("sync", as_="pm-001")
    assert first.exit_code == 0, first.output
    office_b = tmp_path / "office-b"
    cloned = programme.cli("clone", str(central), str(office_b), as_=None)
    assert cloned.exit_code == 0, cloned.output
    return central, dataclasses.replace(programme, root=office_b)


def test_sync_replays_no_work_onto_a_configuration_audit_flags(
    programme: Programme, tmp_path: Path
) -> None:
    """Office A pushes a workflow opened by hand; office B's sync would re-seal and push
    its work on top of it. Refused, naming the commit; B stays where it was, and syncs
    once a programme manager has reverted the change."""
    case_id = programme.new_case()
    central, office_b = hookless_offices(programme, tmp_path)
    short = by_hand(programme.root, WORKFLOW, T02_AS_SHIPPED, T02_OPENED)
    assert run_git(programme.root, "push", "-q", "origin", "main").returncode == 0
    central_head = run_git(central, "rev-parse", "main").stdout
    noted = office_b.cli("record", case_id, "note", "--from", programme.form_file("note"))
    assert noted.exit_code == 0, noted.output
    before = office_b.state()

    refused = office_b.cli("sync")
    assert refused.exit_code == REPOSITORY, refused.output
    line = one_line_error(refused)
    assert f"commit {short}, {REFUSAL}" in line, line
    assert "programme manager reverts it" in line and CANARY not in refused.output
    assert office_b.state() == before
    assert run_git(central, "rev-parse", "main").stdout == central_head
    assert not (office_b.root / ".git" / "cmgit" / "sync-start").exists()
    again = office_b.cli("sync")
    assert again.exit_code == REPOSITORY and short in again.stderr, again.output
    assert office_b.state() == before

    # the way back: a programme manager reverts it centrally, and B's work goes through
    reverted = run_git(programme.root, "-c", "user.name=pm-001", "revert", "--no-edit", short)
    assert reverted.returncode == 0, reverted.stderr
    assert run_git(programme.root, "push", "-q", "origin", "main").returncode == 0
    synced = office_b.cli("sync")
    assert synced.exit_code == 0, synced.output
    assert run_git(central, "rev-parse", "main").stdout == office_b.git("rev-parse", "HEAD")


def published_text(out: Path) -> str:
    return "\n".join(
        path.read_text(encoding="utf-8", errors="replace")
        for path in out.rglob("*")
        if path.suffix in (".html", ".json", ".xml", ".js")
    )


def test_the_site_and_statistics_publish_the_configuration_in_force(
    programme: Programme, tmp_path: Path
) -> None:
    """A state relabelled and the programme renamed with plain git: the build and
    `cmgit stats` still work (they are reads), publish neither change, and say which
    commits to undo; a build of a commit before them says nothing."""
    programme.new_case()
    trusted = programme.git("rev-parse", "HEAD").strip()
    relabelled = by_hand(
        programme.root, WORKFLOW, "case_planning: 3 Case plan", "case_planning: 3 Relabelled"
    )
    name = next(
        line
        for line in (programme.root / "settings.yaml").read_text().splitlines()
        if line.startswith("programme_name:")
    )
    renamed = by_hand(programme.root, "settings.yaml", name, "programme_name: Renamed by hand")
    says = f"the configuration was changed by commits {relabelled}, {renamed}, {REFUSAL}"

    out = tmp_path / "public"
    built = programme.cli("site", "build", "--out", str(out), as_=None)
    assert built.exit_code == 0, built.output
    head = programme.git("rev-parse", "HEAD").strip()
    assert f"from commit {head[:12]} in" in built.stdout
    assert f"warning: {says}" in built.stderr and "programme manager reverts it" in built.stderr
    site = published_text(out)
    assert "3 Case plan" in site and "Relabelled" not in site and "Renamed by hand" not in site

    shown = programme.cli("stats", as_=None)
    assert shown.exit_code == 0, shown.output
    assert f"Warning: {says}" in shown.stderr
    assert name.split(":", 1)[1].strip().strip("'\"") in shown.stdout
    assert "Renamed by hand" not in shown.stdout and "Relabelled" not in shown.stdout

    # at a commit: the configuration in force there, and only its own flags
    before_renaming = programme.cli(
        "site", "build", "--commit", "HEAD~1", "--out", str(tmp_path / "at"), as_=None
    )
    assert before_renaming.exit_code == 0, before_renaming.output
    assert f"changed by commit {relabelled}, {REFUSAL}" in before_renaming.stderr
    assert "Relabelled" not in published_text(tmp_path / "at")
    before_both = programme.cli(
        "site", "build", "--commit", trusted, "--out", str(tmp_path / "before"), as_=None
    )
    assert before_both.exit_code == 0 and before_both.stderr == "", before_both.output


def test_a_shallow_clone_builds_with_the_configuration_in_force_from_its_oldest_commit(
    programme: Programme, tmp_path: Path
) -> None:
    """A site built in CI from a clone of the last two commits: the older is the trust
    root, as for every command, and the change on top of it is judged."""
    programme.new_case()
    relabelled = by_hand(
        programme.root, WORKFLOW, "case_planning: 3 Case plan", "case_planning: 3 Relabelled"
    )
    shallow = tmp_path / "shallow"
    cloned = run_git(
        tmp_path, "clone", "-q", "--depth", "2", f"file://{programme.root}", str(shallow)
    )
    assert cloned.returncode == 0, cloned.stderr
    out = tmp_path / "public"
    in_ci = dataclasses.replace(programme, root=shallow)
    assert in_ci.git("rev-parse", "--is-shallow-repository").strip() == "true"
    built = in_ci.cli("site", "build", "--out", str(out), as_=None)
    assert built.exit_code == 0, built.output
    assert f"changed by commit {relabelled}, {REFUSAL}" in built.stderr
    assert "Relabelled" not in published_text(out)
