"""The central repository as offices reach it, over SSH (sshd and git-shell) and smart HTTP
(git http-backend behind nginx): its pre-receive hook lets a signed cmgit change land,
refuses a plaintext record, a force push and a branch deletion with its own words, and a
refused push leaves no ref and no object behind, so a fresh clone gets the good history
only."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from cmgit import ids
from cmgit.keyring import ref

from ..conftest import CANARY, Programme, git
from ..hostile.refusal import git_objects
from ..test_hooks import run_git
from ..test_signing import require_signatures
from .conftest import Central

REFUSED = "cmgit: refused: "


@dataclass(frozen=True)
class Office:
    """One office's clone of the central repository, reached over a transport."""

    programme: Programme
    root: Path
    signing: dict[str, str]

    def cli(self, *args: str) -> str:
        result = self.programme.cli("-C", str(self.root), *args, env=self.signing)
        assert result.exit_code == 0, result.output
        return result.stdout.strip()

    def git(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_git(self.root, *args)

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").stdout.strip()


def contents(repository: Path) -> tuple[str, list[str], list[str]]:
    """The refs, the objects and the files under objects/ (quarantine left-overs too)."""
    objects = git(
        repository, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)", "--unordered"
    ).split()
    files = [str(p.relative_to(repository)) for p in (repository / "objects").rglob("*")]
    return git(repository, "for-each-ref"), sorted(objects), sorted(files)


def clone(central: Central, repository: Path, into: Path) -> Path:
    settings = [arg for setting in central.client_config for arg in ("-c", setting)]
    cloned = run_git(into.parent, "clone", "-q", *settings, central.url(repository), str(into))
    assert cloned.returncode == 0, (cloned.stderr, central.log.read_text(errors="replace"))
    return into


def served(central: Central, programme: Programme, tmp_path: Path) -> tuple[Path, Office]:
    """The programme as a central repository with cmgit's server hook, signed commits
    required, served over CENTRAL's transport, and an office's clone of it."""
    _, cw_key = require_signatures(programme, tmp_path)
    repository = central.new_repository()
    made = run_git(tmp_path, "clone", "-q", "--bare", str(programme.root), str(repository))
    assert made.returncode == 0, made.stderr
    installed = programme.cli("-C", str(repository), "hooks", "install", "--server", as_=None)
    assert installed.exit_code == 0, installed.output
    office = clone(central, repository, tmp_path / "office")
    return repository, Office(programme, office, {"CMGIT_SIGNING_KEY": str(cw_key)})


def land_a_case(office: Office) -> str:
    """A new case, sent with `cmgit sync`; its id."""
    case_id = office.cli("new", "--from", office.programme.form_file("identification"))
    assert office.cli("sync").endswith(", pushed")
    return case_id


def test_a_signed_change_lands_through_cmgit_sync(
    central: Central, programme: Programme, tmp_path: Path
) -> None:
    repository, office = served(central, programme, tmp_path)
    other = Office(programme, clone(central, repository, tmp_path / "other"), office.signing)
    land_a_case(office)
    landed = office.head()
    assert git(repository, "rev-parse", "main").strip() == landed
    assert other.cli("sync").startswith("sync: 1 fetched, ")
    assert other.head() == landed


def test_a_plaintext_record_is_refused_and_nothing_of_it_stays(
    central: Central, programme: Programme, tmp_path: Path
) -> None:
    repository, office = served(central, programme, tmp_path)
    case_id = land_a_case(office)
    record = office.root / ids.record_path(case_id)
    landed = office.head()
    record.write_text(f"child:\n  name: {CANARY}-child-name\n")
    office.git("commit", "-q", "--no-verify", "-am", "plain git")
    bad = office.head()
    before = contents(repository)

    pushed = office.git("push", "origin", "main")

    assert pushed.returncode != 0
    assert f"{REFUSED}{bad[:12]} record: {case_id}: " in pushed.stderr, pushed.stderr
    assert CANARY not in pushed.stderr
    assert contents(repository) == before
    fresh = clone(central, repository, tmp_path / "fresh")
    assert run_git(fresh, "rev-list", "--all").stdout.split() == (
        office.git("rev-list", landed).stdout.split()
    )
    assert run_git(fresh, "cat-file", "-e", bad).returncode != 0
    assert not any(CANARY.encode() in data for _, data in git_objects(fresh))
    audited = programme.cli("-C", str(fresh), "audit", "--full", as_=None)
    assert audited.exit_code == 0, audited.output


def test_a_force_push_and_a_branch_deletion_are_refused(
    central: Central, programme: Programme, tmp_path: Path
) -> None:
    repository, office = served(central, programme, tmp_path)
    land_a_case(office)
    land_a_case(office)
    landed = office.head()
    before = contents(repository)

    office.git("reset", "-q", "--hard", "HEAD~1")
    forced = office.git("push", "--force", "origin", "main")
    deleted = office.git("push", "origin", ":main")

    assert forced.returncode != 0
    assert f"{REFUSED}refs/heads/main: history may not be rewritten" in forced.stderr
    assert deleted.returncode != 0
    assert f"{REFUSED}refs/heads/main: deleting the programme's branch" in deleted.stderr
    assert contents(repository) == before
    fresh = clone(central, repository, tmp_path / "fresh")
    assert run_git(fresh, "rev-parse", "main").stdout.strip() == landed


def test_the_keyring_travels_to_the_central_and_to_a_new_office(
    central: Central, programme: Programme, tmp_path: Path
) -> None:
    """Record format 2 over the transport: the first sync sends the keyring, judged by the
    hook, in a push of its own; a new office's first sync fetches it and opens a case."""
    _, cw_key = require_signatures(programme, tmp_path)
    writer = Office(programme, programme.root, {"CMGIT_SIGNING_KEY": str(cw_key)})
    case_id = writer.cli("new", "--from", programme.form_file("identification"))
    repository = central.new_repository()
    made_bare = run_git(tmp_path, "clone", "-q", "--bare", str(programme.root), str(repository))
    assert made_bare.returncode == 0, made_bare.stderr
    installed = programme.cli("-C", str(repository), "hooks", "install", "--server", as_=None)
    assert installed.exit_code == 0, installed.output
    for setting in central.client_config:
        run_git(programme.root, "config", *setting.split("=", 1))
    run_git(programme.root, "remote", "add", "origin", central.url(repository))
    writer.cli("sync")
    shard = ref.shard_ref(case_id)
    assert git(repository, "rev-parse", shard) == git(programme.root, "rev-parse", shard)
    office = Office(programme, clone(central, repository, tmp_path / "office"), writer.signing)
    office.cli("sync")
    assert case_id in office.cli("show", case_id)
