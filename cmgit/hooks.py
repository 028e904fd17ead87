"""git hooks and drivers: the client's pre-commit hook and diff driver, and the central
server's pre-receive hook.

cmgit makes its commits itself, without running `git commit`, so a pre-commit hook that
sees a change under records/ is looking at a commit cmgit did not make: it refuses it.
"""

from __future__ import annotations

import shlex
import stat
import sys
from pathlib import Path

from . import ids
from .audit import Auditor
from .errors import RepositoryError
from .history import ZERO_OID, Git

MARK = "# installed by cmgit"


def _command() -> str:
    """How hooks call this cmgit: the same interpreter, so a virtualenv keeps working."""
    return f"{shlex.quote(sys.executable)} -m cmgit.cli"


def _write_hook(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if path.exists() and MARK not in path.read_text(errors="replace"):
        raise RepositoryError(
            f"a {name} hook exists that cmgit did not install",
            hint=f"merge it by hand into {name}, or move it away",
        )
    path.write_text(f"#!/bin/sh\n{MARK}\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def install_client(git: Git) -> list[str]:
    """pre-commit hook, and a diff driver that shows recipients the decrypted record."""
    hooks = Path(git.text("rev-parse", "--git-path", "hooks"))
    hooks = hooks if hooks.is_absolute() else git.root / hooks
    done = [str(_write_hook(hooks, "pre-commit", f"exec {_command()} hooks pre-commit"))]
    git.run("config", "diff.cmgit.textconv", f"{_command()} hooks textconv")
    # Never keep decrypted text in git's textconv cache (notes on disk).
    git.run("config", "diff.cmgit.cachetextconv", "false")
    git.run("config", "merge.cmgit.name", "cmgit field-by-field record merge")
    git.run("config", "merge.cmgit.driver", f"{_command()} hooks merge-driver %O %A %B %P")
    info = git.git_dir / "info"
    info.mkdir(exist_ok=True)
    attributes = info / "attributes"
    line = f"{ids.RECORDS_DIR}/** diff=cmgit merge=cmgit"
    existing = attributes.read_text() if attributes.exists() else ""
    if line not in existing.splitlines():
        attributes.write_text(
            existing + ("" if existing.endswith("\n") or not existing else "\n") + line + "\n"
        )
    done.append("diff and merge drivers for records/ (local: .git/info/attributes)")
    return done


def install_server(bare: Path, *, require_signatures: bool = True) -> str:
    git = Git(bare)
    if git.text("rev-parse", "--is-bare-repository") != "true":
        raise RepositoryError(
            "--server installs into a bare central repository",
            hint="run it in the repository offices push to",
        )
    git.run("config", "receive.denyNonFastForwards", "true")
    git.run("config", "receive.denyDeletes", "true")
    flag = "" if require_signatures else " --allow-unsigned"
    return str(
        _write_hook(
            bare / "hooks",
            "pre-receive",
            f"exec {_command()} -C {shlex.quote(str(bare))} hooks pre-receive{flag}",
        )
    )


def pre_commit(git: Git) -> list[str]:
    """Paths under records/ staged for a commit that cmgit is not making."""
    out = git.run("diff", "--cached", "--name-only", "-z", "--", ids.RECORDS_DIR)
    return [p for p in out.decode("utf-8", "replace").split("\0") if p]


def pre_receive(git: Git, lines: list[str], *, require_signatures: bool = True) -> list[str]:
    """Problems with a push: deletions, rewrites, and whatever audit finds (signatures
    required), each a line for the pusher. Empty when the push may land."""
    problems = []
    for line in lines:
        parts = line.split()
        if len(parts) != 3:
            continue
        old, new, ref = parts
        if new == ZERO_OID:
            problems.append(f"{ref}: deleting a branch is not allowed")
            continue
        if old != ZERO_OID and not git.is_ancestor(old, new):
            problems.append(f"{ref}: history may not be rewritten (force push refused)")
            continue
        report = Auditor(git).run(
            None if old == ZERO_OID else old,
            remembered=False,
            until=new,
            require_signatures=require_signatures,
        )
        problems += [f"{v.commit[:12]} {v.rule}: {v.detail}" for v in report.violations]
    return problems
