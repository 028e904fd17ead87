"""Assertions shared by the hostile tests: what a refusal must and must not do.

A refusal (hostile-tests.md, conventions): a documented exit code, a one-line message
without personal data, the repository, index and work tree unchanged, nothing written
outside `.git/cmgit/`, and no plaintext anywhere on disk.
"""

from __future__ import annotations

import os
import subprocess
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmgit import errors

from ..conftest import CANARY, Programme

DOCUMENTED_CODES = {
    errors.USAGE,
    errors.INVALID_RECORD,
    errors.REFUSED,
    errors.ACCESS,
    errors.REPOSITORY,
}
SHM = Path("/dev/shm")

# Every failing command's output seen by a test, so L8 can check them all in one place.
SEEN_OUTPUT: list[str] = []


def _files(root: Path, skip: Iterable[Path] = ()) -> Iterator[Path]:
    skipped = [s.resolve() for s in skip]
    for folder, dirs, names in os.walk(root):
        here = Path(folder).resolve()
        dirs[:] = [d for d in dirs if (here / d) not in skipped]
        for name in names:
            yield Path(folder) / name


@dataclass(frozen=True)
class Snapshot:
    """What a refusal must leave exactly as it was."""

    state: tuple[str, str, str]
    files: dict[str, tuple[int, int]]


def snapshot(programme: Programme) -> Snapshot:
    """HEAD, status and index, and every file of the work tree and of .git (outside
    .git/cmgit, and the index, whose stat cache git may refresh on any read)."""
    git_dir = programme.root / ".git"
    files = {}
    for path in _files(programme.root, skip=[git_dir / "cmgit"]):
        if path == git_dir / "index":
            continue
        info = path.lstat()
        files[str(path.relative_to(programme.root))] = (info.st_size, info.st_mtime_ns)
    return Snapshot(programme.state(), files)


def one_line_error(result: Any) -> str:
    """The error line of a failed command; checks the shape every refusal shares."""
    output = result.output
    SEEN_OUTPUT.append(output)
    assert "Traceback" not in output, output
    assert "internal error" not in output, output
    assert CANARY not in output, output
    lines = result.stderr.rstrip("\n").split("\n")
    assert lines[0].startswith("Error: "), result.stderr
    # A schema refusal lists its failing paths and validators, indented, one a line.
    assert all(line.startswith("  ") for line in lines[1:]), result.stderr
    assert lines[0].isprintable(), lines[0]
    return lines[0]


def assert_refused(
    programme: Programme,
    result: Any,
    code: int,
    before: Snapshot,
    *,
    says: str | None = None,
    one_line: bool = True,
) -> str:
    """The command failed with CODE, one clean line (containing SAYS), changed nothing."""
    assert code in DOCUMENTED_CODES
    assert result.exit_code == code, (result.exit_code, result.output)
    line = one_line_error(result)
    if one_line:
        assert result.stderr.count("\n") == 1, result.stderr
    if says is not None:
        assert says.lower() in result.stderr.lower(), result.stderr
    assert result.stdout == "", result.stdout
    after = snapshot(programme)
    assert after.state == before.state
    assert after.files == before.files, set(after.files.items()) ^ set(before.files.items())
    return line


def assert_reported(
    programme: Programme, result: Any, code: int, before: Snapshot, *, says: str
) -> None:
    """`validate` reports each invalid record on stdout ("ID  INVALID  why"), a count on
    stderr, and exits with the worst code; it changes nothing either."""
    SEEN_OUTPUT.append(result.output)
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output and "internal error" not in result.output
    assert CANARY not in result.output
    invalid = [line for line in result.stdout.splitlines() if "  INVALID  " in line]
    assert invalid and all(line.isprintable() for line in invalid), result.stdout
    assert any(says.lower() in line.lower() for line in invalid), result.stdout
    after = snapshot(programme)
    assert after.state == before.state and after.files == before.files


def git_objects(root: Path) -> Iterator[tuple[str, bytes]]:
    """Every object of the repository (loose and packed, reachable or not), inflated."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    out = subprocess.run(
        ["git", "-C", str(root), "cat-file", "--batch-all-objects", "--batch", "--unordered"],
        capture_output=True,
        check=True,
        env=env,
    ).stdout
    pos = 0
    while pos < len(out):
        end = out.index(b"\n", pos)
        _, kind, size = out[pos:end].split(b" ")
        start = end + 1
        yield kind.decode(), out[start : start + int(size)]
        pos = start + int(size) + 1


def canary_in(path: Path) -> bool:
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if CANARY.encode() in data or CANARY.encode("utf-16-le") in data:
        return True
    # Loose git objects are compressed: look inside them too.
    if "objects" in path.parts:
        try:
            return CANARY.encode() in zlib.decompress(data)
        except zlib.error:
            return False
    return False


def shm_entries() -> set[Path]:
    return set(SHM.iterdir()) if SHM.is_dir() else set()


def no_canary_on_disk(
    programme: Programme, *, shm_before: set[Path] | None = None, extra: Iterable[Path] = ()
) -> None:
    """No canary in the work tree, .git (every object inflated), TMPDIR, the private
    folder of `cmgit edit`, the package's __pycache__, or in /dev/shm entries made since
    SHM_BEFORE."""
    places = [
        programme.root,
        Path(os.environ["TMPDIR"]),
        Path(os.environ["XDG_RUNTIME_DIR"]),  # where `cmgit edit` keeps its file
        *extra,
        Path(errors.__file__).parent / "__pycache__",
    ]
    for place in places:
        for path in _files(place) if place.is_dir() else [place]:
            # The demo's invented people carry canaries in its source, so in its bytecode.
            if not path.name.startswith("demo."):
                assert not canary_in(path), path
    for kind, data in git_objects(programme.root):
        assert CANARY.encode() not in data, kind
    if shm_before is not None:
        for entry in shm_entries() - shm_before:
            for path in _files(entry) if entry.is_dir() else [entry]:
                assert not canary_in(path), path
