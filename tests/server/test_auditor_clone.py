"""An auditor's clone of a central repository served over SSH and smart HTTP: `cmgit clone
--auditor` holds every commit and open file and no sealed entry, never the keyring, and
`cmgit audit` passes in it, fetching nothing and counting the entries it could not check
(record format 2, #17)."""

from __future__ import annotations

import json
from pathlib import Path

from cmgit import entries
from cmgit.history import Git

from ..conftest import Programme, git
from ..test_hooks import run_git
from ..test_sealed_entries_e2e import record_note
from .conftest import Central


def missing(clone: Path) -> set[str]:
    """The objects the clone lacks, listed without fetching any."""
    out = git(clone, "rev-list", "--objects", "--no-object-names", "--missing=print", "HEAD")
    return {line[1:] for line in out.split() if line.startswith("?")}


def test_an_auditors_clone_holds_no_sealed_entry_and_audits_clean(
    central: Central, format_1_programme: Programme, tmp_path: Path
) -> None:
    programme = format_1_programme
    programme.new_case()  # a record of format 1 first, brought to an entry by the migration
    migrated = programme.cli("migrate", as_="pm-001")
    assert migrated.exit_code == 0, migrated.output
    case_id = programme.new_case()
    record_note(programme, case_id, "a visit")
    repository = central.new_repository()
    made = run_git(tmp_path, "clone", "-q", "--bare", str(programme.root), str(repository))
    assert made.returncode == 0, made.stderr
    # The keyring sits beside the branch on the central repository, as sync leaves it.
    keyring = "refs/cmgit/keyring/*"
    assert (
        run_git(repository, "fetch", "-q", str(programme.root), f"+{keyring}:{keyring}").returncode
        == 0
    )
    installed = programme.cli("-C", str(repository), "hooks", "install", "--server", as_=None)
    assert installed.exit_code == 0, installed.output
    assert git(repository, "config", "uploadpack.allowFilter").strip() == "true"
    for setting in central.client_config:
        name, _, value = setting.partition("=")
        assert run_git(tmp_path, "config", "--global", "--add", name, value).returncode == 0

    into = tmp_path / "audit-copy"
    cloned = programme.cli("clone", "--auditor", central.url(repository), str(into), as_=None)
    assert cloned.exit_code == 0, (cloned.output, central.log.read_text(errors="replace"))

    listing = git(repository, "ls-tree", "-r", "main", "--", entries.SEALED_DIR).splitlines()
    entry_blobs = {line.split()[2] for line in listing}
    assert len(entry_blobs) >= 3  # the migrated case's entries, and the new case's two
    for oid in entry_blobs:
        held = run_git(into, "-c", "protocol.allow=never", "cat-file", "-e", oid)
        assert held.returncode != 0, oid
    assert missing(into) == entry_blobs
    assert "refs/cmgit/keyring" not in git(into, "for-each-ref")
    assert not (into / entries.SEALED_DIR).exists()
    assert (into / "records").is_dir()

    audited = programme.cli("-C", str(into), "audit", "--json", as_=None)
    assert audited.exit_code == 0, audited.output
    report = json.loads(audited.stdout)
    assert report["ok"] and report["sealed_entries_unchecked"] == len(entry_blobs)
    assert missing(into) == entry_blobs  # nothing was fetched
    assert Git(into).fsck() == []  # what the central promises is no damage
    assert "refs/cmgit/keyring" not in git(into, "for-each-ref")
