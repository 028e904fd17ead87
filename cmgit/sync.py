"""`cmgit sync`: exchange work with the central repository, keeping history linear.

Fetch; if both sides moved, replay this clone's commits on top of the central ones,
re-signed, merging two offices' changes to one case field by field (the merged version
is the central one plus one); refuse a true conflict with nothing lost; refuse a central
history that was rewritten; push. The central server's own hook re-checks everything.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import crypto, ids
from .errors import CmgitError, RepositoryError
from .faults import crash_point
from .history import Author, Commit, format_message, repository_lock
from .registry import Staff
from .store import Repository, make_signer, staff_author

SYNC_STATE = "sync-remote"
ATTEMPTS = 3


@dataclass
class SyncResult:
    fetched: int = 0
    replayed: int = 0
    merged: int = 0
    pushed: bool = False


def sync(
    repo: Repository, identities: Sequence[crypto.Identity], *, remote: str, today: dt.date
) -> SyncResult:
    git = repo.git
    ref = git.branch_ref()
    if ref is None:
        raise RepositoryError("HEAD is detached", hint="check out the main branch first")
    branch = ref.removeprefix("refs/heads/")
    tracking = f"refs/remotes/{remote}/{branch}"
    state = git.git_dir / "cmgit" / SYNC_STATE
    result = SyncResult()
    with repository_lock(git.git_dir):
        git.finish_pending()
        repo.ensure_clean(["records", "staff.yaml", "settings.yaml", "schemas"])
        for _ in range(ATTEMPTS):
            git.run("fetch", "-q", "--no-tags", remote, f"+{ref}:{tracking}", ok=(0,))
            theirs = git.text("rev-parse", "-q", "--verify", tracking, ok=(0, 1)) or None
            ours = git.head()
            assert ours is not None
            if theirs is not None:
                _check_not_rewritten(repo, state, theirs)
                base = git.text("merge-base", ours, theirs, ok=(0, 1)) or None
                if base is None:
                    raise RepositoryError(
                        "this clone and the central repository share no history",
                        hint="clone the central repository anew",
                    )
                result.fetched = int(git.text("rev-list", "--count", f"{ours}..{theirs}"))
                if base == ours and ours != theirs:
                    git.run("reset", "-q", "--keep", theirs)
                    ours = theirs
                elif base != theirs:
                    ours = _replay(repo, identities, base, ours, theirs, today, result)
                    git.run("reset", "-q", "--keep", ours)
            if theirs == ours:
                state.parent.mkdir(exist_ok=True)
                state.write_text(ours + "\n")
                return result
            crash_point("sync-before-push")
            try:
                git.run("push", "-q", remote, f"{ours}:{ref}")
            except CmgitError:
                continue  # someone pushed meanwhile: fetch and replay again
            crash_point("sync-pushed")
            result.pushed = True
            state.parent.mkdir(exist_ok=True)
            state.write_text(ours + "\n")
            return result
    raise RepositoryError(
        "the central repository kept moving; nothing was lost", hint="run cmgit sync again"
    )


def _check_not_rewritten(repo: Repository, path: Path, theirs: str) -> None:
    if not path.exists():
        return
    seen = path.read_text().strip()
    if not repo.git.is_ancestor(seen, theirs):
        raise RepositoryError(
            "the central history was rewritten: a commit this clone saw there is gone",
            hint="stop and ask the technical coordinator; run cmgit audit on the server",
        )


def _replay(
    repo: Repository,
    identities: Sequence[crypto.Identity],
    base: str,
    ours: str,
    theirs: str,
    today: dt.date,
    result: SyncResult,
) -> str:
    """This clone's commits since ``base``, made again on top of ``theirs``."""
    git = repo.git
    tip = theirs
    for oid in git.text("rev-list", "--reverse", f"{base}..{ours}").split():
        commit = next(c for c in git.log(rev=f"{oid}^!"))
        parent = git.text("rev-parse", f"{oid}^")
        files: dict[str, bytes | None] = {}
        version: str | None = None
        for path, new in git.changed(parent, oid):
            at_parent = git.blob_id(parent, path)
            at_tip = git.blob_id(tip, path)
            if at_tip == at_parent:
                files[path] = git.read_blob(new) if new else None
                continue
            case_id = ids.case_id_from_path(path)
            if case_id is None or new is None or at_tip is None:
                raise RepositoryError(
                    f"both offices changed {path}",
                    hint="nothing was changed; agree which "
                    "change stands, then undo the other and sync again",
                )
            merged = repo.merge_record(
                case_id,
                git.read_blob(at_parent) if at_parent else None,
                git.read_blob(new),
                git.read_blob(at_tip),
                at_tip,
                identities,
                today,
            )
            files[path] = merged
            version = merged.split(b"version: ", 1)[1].split(b"\n", 1)[0].decode()
            result.merged += 1
        message = _with_version(commit, version)
        actor = repo.registry.staff.get(commit.trailer("Cmgit-Actor") or "")
        author = (
            staff_author(actor)
            if actor
            else Author(commit.author, f"{commit.author}@cmgit.invalid")
        )
        signer = _resigner(repo, actor) if actor is not None else None
        tip, _ = git.make_commit(files, message, author, tip, sign=signer)
        result.replayed += 1
    return tip


def _resigner(repo: Repository, actor: Staff) -> Callable[[bytes], str] | None:
    required = bool(repo.settings.get("require_signed_commits"))
    try:
        return make_signer(repo.signing_key_path, actor, required)
    except CmgitError:
        if required:
            raise RepositoryError(
                f"a local commit by {actor.id} must be re-signed by {actor.id}",
                hint=f"{actor.id} runs cmgit sync with their own CMGIT_SIGNING_KEY",
            ) from None
        return None


def _with_version(commit: Commit, version: str | None) -> str:
    """The commit's own message, its version trailer updated when a merge moved it on."""
    lines = commit.message.rstrip("\n").split("\n")
    trailers = [tuple(line.split(": ", 1)) for line in lines[2:] if ": " in line]
    if version is not None:
        trailers = [(k, version if k == "Cmgit-Version" else v) for k, v in trailers]
    return format_message(lines[0], [(k, v) for k, v in trailers])
