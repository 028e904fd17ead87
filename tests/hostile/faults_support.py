"""Shared helpers for the git-fault, crash, load and concurrency tests: real `cmgit`
processes, the consistency a repository must show after any fault, and canary scans."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from click.testing import Result

from cmgit import editing
from cmgit.history import PENDING_FILE

from ..conftest import CANARY, TODAY, Programme

CMGIT = [sys.executable, "-m", "cmgit.cli"]


def cmgit_env(
    programme: Programme, as_: str | None = "cw-north-1", env: dict[str, str] | None = None
) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    full.update({"CMGIT_TODAY": TODAY, "GIT_CONFIG_NOSYSTEM": "1"})
    if as_ is not None:
        full["CMGIT_IDENTITY"] = str(programme.key(as_))
    full.update(env or {})
    return full


def spawn(
    programme: Programme,
    *args: str,
    as_: str | None = "cw-north-1",
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[str]:
    """A real cmgit process in its own process group (so a test can kill it and its git
    children together, as a power cut would)."""
    return subprocess.Popen(
        [*CMGIT, "-C", str(cwd or programme.root), *args],
        env=cmgit_env(programme, as_, env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def run(
    programme: Programme,
    *args: str,
    as_: str | None = "cw-north-1",
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    proc = spawn(programme, *args, as_=as_, env=env, cwd=cwd)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def assert_refused(
    result: Result | subprocess.CompletedProcess[str],
    code: int,
    programme: Programme,
    before: tuple[str, str, str],
    *words: str,
) -> str:
    """A refusal as the test plan defines it; returns the one-line message."""
    exit_code = result.exit_code if isinstance(result, Result) else result.returncode
    stderr, stdout = result.stderr, result.stdout
    assert exit_code == code, (exit_code, stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert "Traceback" not in stderr and CANARY not in stderr + stdout
    for word in words:
        assert word in lines[0], lines[0]
    assert programme.state() == before
    return lines[0]


def git_ok(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, env=env, check=False
    )


def assert_consistent(programme: Programme, root: Path | None = None) -> None:
    """HEAD, index and work tree agree, no change is half-done and git finds no damage."""
    root = root or programme.root
    assert git_ok(root, "status", "--porcelain", "--untracked-files=all").stdout == ""
    assert git_ok(root, "diff-index", "--cached", "--quiet", "HEAD").returncode == 0
    assert not (root / ".git" / "cmgit" / PENDING_FILE).exists()
    assert not (root / ".git" / "index.lock").exists()
    fsck = git_ok(root, "fsck", "--strict", "--no-dangling", "--no-progress")
    assert fsck.returncode == 0 and "error" not in fsck.stderr, fsck.stderr


def files_with_canary(paths: Iterable[Path]) -> list[Path]:
    found = []
    for top in paths:
        candidates = [top] if top.is_file() else (p for p in top.rglob("*") if p.is_file())
        for path in candidates:
            if path.is_symlink():
                continue
            try:
                if CANARY.encode() in path.read_bytes():
                    found.append(path)
            except OSError:
                continue
    return found


def objects_with_canary(root: Path) -> list[str]:
    """Objects of the repository (loose or packed, reachable or not) holding a canary."""
    dump = subprocess.run(
        ["git", "-C", str(root), "cat-file", "--batch-all-objects", "--batch", "--unordered"],
        capture_output=True,
        check=True,
    ).stdout
    if CANARY.encode() not in dump:
        return []
    names = git_ok(
        root, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)", "--unordered"
    ).stdout.split()
    return [
        n
        for n in names
        if CANARY.encode()
        in subprocess.run(["git", "-C", str(root), "cat-file", "-p", n], capture_output=True).stdout
    ]


def edit_files_of(pid: int) -> list[Path]:
    """Private edit files a given cmgit process made (other tests may have their own)."""
    return list(editing.private_folder().glob(f"{editing.PREFIX}{pid}-*"))


def assert_no_plaintext(programme: Programme, *, pids: Iterable[int] = ()) -> None:
    """No canary in the work tree, any file under .git, any git object, the temporary
    folder, or the private edit files of the given processes."""
    places = [programme.root, Path(os.environ["TMPDIR"])]
    places += [p for pid in pids for p in edit_files_of(pid)]
    assert files_with_canary(places) == []
    assert objects_with_canary(programme.root) == []


def forge_commit(
    root: Path,
    files: dict[str, bytes | None],
    message: str,
    *,
    author: str,
    committer: str | None = None,
    when: int | None = None,
    sign_with: Path | None = None,
) -> str:
    """A commit made by hand, with any author, committer and date, optionally signed with
    an SSH key file; the branch moves to it. What an insider with git alone could push."""
    import time

    from cmgit import signing
    from cmgit.history import Git

    git = Git(root)
    parent = git.head()
    blobs = {path: None if data is None else git.hash_blob(data) for path, data in files.items()}
    tree = git.build_tree(git.objects.commit_tree(parent) if parent else None, blobs)
    stamp = f"{when if when is not None else int(time.time())} +0000"
    header = (
        f"tree {tree}\n"
        + (f"parent {parent}\n" if parent else "")
        + f"author {author} {stamp}\ncommitter {committer or author} {stamp}\n"
    )
    body = header + "\n" + message
    if sign_with is not None:
        armored = signing.sign(body.encode(), signing.load_private_key(sign_with))
        body = header + "gpgsig " + armored.replace("\n", "\n ") + "\n\n" + message
    oid = git.objects.write("commit", body.encode())
    git.run("update-ref", "HEAD", oid, parent or "")
    git.run("reset", "-q", "--hard", oid)
    return oid
