"""The sealed files of record format 2 as an intruder reaches them: a case's sealed
entries on the main branch, and its wrapped key files in the keyring.

Entries are read from git's objects, not the work tree, so a damaged entry has to be
committed (with plain git, as an intruder would) to reach the opening code at all. A
keyring file is replaced with a parentless, unsigned shard commit, as an intruder with
write access to the repository could make one.
"""

from __future__ import annotations

from cmgit import entries
from cmgit.history import Author
from cmgit.keyring import ref

from ..conftest import Programme

STAFF_FILE = "staff.age"
INTRUDER = Author("x", "x@x")


def header_end(binary: bytes) -> int:
    """Where the header of a binary age file ends (after its MAC line)."""
    mac = binary.index(b"\n--- ")
    return binary.index(b"\n", mac + 1) + 1


def entry_versions(programme: Programme, case_id: str, at: str = "HEAD") -> list[int]:
    """The versions of a case's sealed entries at ``at``, in order."""
    listed = programme.git("ls-tree", "--name-only", at, f"{entries.entries_dir(case_id)}/")
    found = [entries.parse_entry_path(line) for line in listed.splitlines()]
    return sorted(named[1] for named in found if named and named[0] == case_id)


def latest_entry(programme: Programme, case_id: str) -> tuple[str, bytes]:
    """The path and bytes of a case's newest sealed entry at HEAD."""
    path = entries.entry_path(case_id, entry_versions(programme, case_id)[-1])
    return path, (programme.root / path).read_bytes()


def plant_file(programme: Programme, path: str, data: bytes, message: str = "plant") -> None:
    """Commit DATA at PATH with plain git, as an intruder would."""
    target = programme.root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    programme.git("add", "--", path)
    programme.git("-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qm", message)


def keyring_files(programme: Programme, case_id: str) -> dict[str, bytes]:
    """A case's wrapped key files in the keyring, by name."""
    return ref.read_case(programme.repo().git, case_id)


def plant_keyring(
    programme: Programme, case_id: str, files: dict[str, bytes], author: Author = INTRUDER
) -> None:
    """Replace a case's keyring files with FILES, in an unsigned shard commit."""
    ref.update(programme.repo().git, {case_id: files}, author)


def plant_staff_file(programme: Programme, case_id: str, data: bytes) -> None:
    """Replace a case's staff.age, keeping its recovery files."""
    plant_keyring(programme, case_id, {**keyring_files(programme, case_id), STAFF_FILE: data})


def migrated(programme: Programme) -> None:
    """Bring a programme of record format 1 to format 2 with `cmgit migrate`."""
    result = programme.cli("migrate", as_="pm-001")
    assert result.exit_code == 0, result.output
