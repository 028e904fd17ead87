"""`cmgit sync`: exchange work with the central repository, keeping history linear.

Fetch; if both sides moved, replay this clone's commits on top of the central ones,
re-signed, merging two offices' changes to one case field by field (the merged version
is the central one plus one); refuse a true conflict with nothing lost; refuse a central
history that was rewritten; push. The central server's own hook re-checks everything.

A sync never leaves a clone stuck: until it has finished, the commit this clone was at
before it began is kept (`SYNC_START`), so `cmgit sync --abort` goes back there, and a
true conflict names the case and the command that resolves it, `--drop CASE`, which sets
this clone's unpushed changes to that case aside and syncs the rest.

The keyring travels beside main, in a fetch and a push of its own
(`cmgit.store.keyring_sync`): fetched and merged before the replay, so that the central
entries open with the central keys, and pushed before main.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import crypto, entries, ids, records
from .audit import config_in_force
from .config import Config, not_in_force, read_parts
from .errors import CmgitError, RepositoryError
from .faults import crash_point
from .history import Commit, Git, actor_author, format_message, repository_lock, write_atomic
from .keyring import ref as keyring_ref
from .merge import MergeConflict, Renumbering
from .registry import Staff
from .store import Repository, keyring_sync, make_signer, staff_author

SYNC_STATE = "sync-remote"
# The commit this clone was at when a sync that has not finished began.
SYNC_START = "sync-start"
# Where `--drop CASE` keeps this clone's commits it set aside: a local ref, never pushed,
# named by the commit this clone was at, so a second drop loses nothing.
SET_ASIDE = "refs/cmgit/set-aside/"
ATTEMPTS = 3


@dataclass
class SyncResult:
    fetched: int = 0
    replayed: int = 0
    merged: int = 0
    renumbered: int = 0
    pushed: bool = False
    # The local commits set aside by --drop, by subject (case ID and action, no content),
    # and the local ref that keeps them.
    set_aside: list[str] = field(default_factory=list)
    kept_as: str | None = None


def sync(
    repo: Repository,
    identities: Sequence[crypto.Identity],
    *,
    remote: str,
    today: dt.date,
    drop: Sequence[str] = (),
) -> SyncResult:
    git = repo.git
    ref = _branch(repo)
    start = git.git_dir / "cmgit" / SYNC_START
    with repository_lock(git.git_dir):
        git.finish_pending()
        repo.check_writer()
        repo.ensure_clean(["records", "staff.yaml", "settings.yaml", "schemas"])
        head = git.head()
        assert head is not None
        if not start.exists():
            _mark(start, head)
        begun = _marked(start)[0]
        try:
            result = _exchange(repo, identities, ref, remote, today, drop, start)
        except CmgitError as exc:
            if git.head() == begun:
                start.unlink()  # nothing moved: nothing to abort
            raise _way_out(exc, drop, abortable=git.head() != begun) from None
        start.unlink(missing_ok=True)
        # The commits fetched join git's commit-graph in bulk, here rather than one by one.
        git.refresh_commit_graph()
        return result


def abort(repo: Repository, *, remote: str) -> str | None:
    """Put the branch, index and work tree back where they were before the sync that did
    not finish; returns that commit, or None when there is no such sync. Refused once this
    clone's replayed commits are on the central repository: going back would replay them
    twice."""
    git = repo.git
    ref = _branch(repo)
    start = git.git_dir / "cmgit" / SYNC_START
    with repository_lock(git.git_dir):
        if not start.exists():
            return None
        begun, *left = _marked(start)
        head = git.head()
        if head != begun:
            tracking = f"refs/remotes/{remote}/{ref.removeprefix('refs/heads/')}"
            # offline: judge by what was last seen of the central repository
            with contextlib.suppress(CmgitError):
                git.run("fetch", "-q", "--no-tags", remote, f"+{ref}:{tracking}")
            central = git.text("rev-parse", "-q", "--verify", tracking, ok=(0, 1))
            if head and central and git.is_ancestor(head, central):
                start.unlink()
                raise RepositoryError(
                    "the sync had already pushed this clone's work; there is nothing to abort",
                    hint="run cmgit sync to bring this clone up to date",
                )
            if head not in left:
                raise RepositoryError(
                    "this clone has commits made after the sync stopped; going back "
                    "would lose them",
                    hint="run cmgit sync to finish the sync instead",
                )
            _move_branch(git, begun)
        start.unlink()
        return begun


def _move_branch(git: Git, oid: str) -> None:
    """Move the branch, index and work tree to ``oid``, keeping local changes to files it
    leaves alone. The index's notes of file times are brought up to date first: a file
    touched, or a clone copied or restored, is otherwise taken for changed and the move
    refused."""
    git.run("update-index", "-q", "--refresh", ok=(0, 1))
    git.run("reset", "-q", "--keep", oid)


def _mark(path: Path, begun: str, left: str | None = None) -> None:
    """Note where this clone was before the sync, and where the sync is moving its branch
    (noted before the move, so a sync killed at any moment can be aborted)."""
    path.parent.mkdir(exist_ok=True)
    write_atomic(path, "".join(f"{oid}\n" for oid in (begun, left) if oid).encode())


def _marked(path: Path) -> list[str]:
    return path.read_text().split()


def _branch(repo: Repository) -> str:
    ref = repo.git.branch_ref()
    if ref is None:
        raise RepositoryError("HEAD is detached", hint="check out the main branch first")
    return ref


def _exchange(
    repo: Repository,
    identities: Sequence[crypto.Identity],
    ref: str,
    remote: str,
    today: dt.date,
    drop: Sequence[str],
    start: Path,
) -> SyncResult:
    git = repo.git
    tracking = f"refs/remotes/{remote}/{ref.removeprefix('refs/heads/')}"
    state = git.git_dir / "cmgit" / SYNC_STATE
    result = SyncResult()
    refused: tuple[str, CmgitError] | None = None
    dropping, before_drop = drop, ""
    for _ in range(ATTEMPTS):
        git.run("fetch", "-q", "--no-tags", remote, f"+{ref}:{tracking}", ok=(0,))
        theirs = git.text("rev-parse", "-q", "--verify", tracking, ok=(0, 1)) or None
        # The keyring before the replay: the central entries open with the central keys.
        keyring = keyring_sync.pull(repo, identities, remote, theirs)
        if refused is not None and refused[0] == theirs:
            raise RepositoryError(
                "the central repository refused this clone's commits",
                hint="nothing there changed; run cmgit audit to see which commit breaks which rule",
            ) from refused[1]
        ours = git.head()
        assert ours is not None
        if dropping:
            before_drop = ours
            ours = _set_aside(repo, dropping, theirs or ours, ours, result)
            dropping = ()
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
                ours = theirs
            elif base != theirs:
                _check_in_force(repo, theirs)
                ours = _replay_over(repo, identities, base, ours, theirs, today, result)
        if ours != git.head():
            if result.kept_as is not None:
                # only now are the commits set aside left behind by the branch
                git.run("update-ref", result.kept_as, before_drop)
            _mark(start, _marked(start)[0], ours)
            _move_branch(git, ours)
        keyring_sync.rewrap_merged(repo, identities, keyring)
        if theirs == ours:
            _push(repo, remote, ref, None)
            _remember(state, ours)
            return result
        crash_point("sync-before-push")
        try:
            _push(repo, remote, ref, ours)
        except CmgitError as exc:
            refused = (theirs or "", exc)
            continue  # someone pushed meanwhile: fetch and replay again
        crash_point("sync-pushed")
        result.pushed = True
        _remember(state, ours)
        return result
    raise RepositoryError(
        "the central repository kept moving; nothing was lost", hint="run cmgit sync again"
    )


def _push(repo: Repository, remote: str, ref: str, ours: str | None) -> None:
    """Push the keyring in a push of its own, then main (``ours``, where there is work to
    push), not atomic with it: the central receives the keyring's objects in a pack of
    their own. A keyring the central refuses before main (wrapped for readers that only
    this clone's unpushed staff changes bring, judged against the central registry) is
    pushed again once main is there."""
    try:
        keyring_sync.push(repo, remote)
    except CmgitError:
        if ours is None:
            raise
        repo.git.run("push", "-q", remote, f"{ours}:{ref}")
        keyring_sync.push(repo, remote)
    else:
        if ours is not None:
            repo.git.run("push", "-q", remote, f"{ours}:{ref}")
    keyring_sync.remember(repo)


def _remember(state: Path, seen: str) -> None:
    """The central head this clone last saw, to notice a rewritten central history."""
    state.parent.mkdir(exist_ok=True)
    state.write_text(seen + "\n")


def _way_out(exc: CmgitError, drop: Sequence[str], *, abortable: bool) -> CmgitError:
    """The error with what to do next: for a true conflict the command that resolves it
    (with the cases already being dropped); and, where the branch had moved, the command
    that goes back."""
    back = "; or cmgit sync --abort returns this clone to where it was before the sync"
    if isinstance(exc, MergeConflict) and exc.case_id and exc.case_id not in drop:
        command = "cmgit sync" + "".join(f" --drop {c}" for c in (*drop, exc.case_id))
        exc.hint = (
            f"nothing was pushed and nothing lost; to keep the central version of "
            f"{exc.case_id}, run {command}: this clone's unpushed changes to it are set "
            f"aside and the rest is synced, then redo with cmgit what still applies"
            + (back if abortable else "")
        )
    elif abortable:
        exc.hint = (exc.hint + back) if exc.hint else back.removeprefix("; or ")
    return exc


def _set_aside(
    repo: Repository, cases: Sequence[str], theirs: str, ours: str, result: SyncResult
) -> str:
    """This clone's commits with those of ``cases`` left out; returns the new local tip.
    The commits set aside are to be kept under the local ref ``result.kept_as`` (never
    pushed) once the branch leaves them, so nothing is lost."""
    git = repo.git
    base = git.text("merge-base", ours, theirs, ok=(0, 1)) or theirs
    local = git.log(rev=f"{base}..{ours}")
    dropped = [c for c in local if c.trailer("Cmgit-Case") in cases]
    for case_id in cases:
        if not any(c.trailer("Cmgit-Case") == case_id for c in dropped):
            raise RepositoryError(
                f"this clone has no unpushed change to {case_id}",
                case_id=case_id,
                hint="run cmgit sync without --drop " + case_id,
            )
    paths = {ids.record_path(case_id): case_id for case_id in cases}
    kept = []
    for commit in local:
        if commit in dropped:
            continue
        changes = dict(git.changed(git.text("rev-parse", f"{commit.oid}^"), commit.oid))
        for case_id in (paths[p] for p in changes if p in paths):
            raise RepositoryError(
                f"a later change of this clone (staff or settings) re-encrypted {case_id}",
                case_id=case_id,
                hint="its changes cannot be set aside alone; run cmgit sync --abort if a "
                "sync is under way, and ask the technical coordinator",
            )
        kept.append((commit, changes))
    result.kept_as = f"{SET_ASIDE}{ours[:12]}"
    result.set_aside = [c.message.split("\n", 1)[0] for c in dropped]
    tip = base
    for commit, changes in kept:
        files = {p: git.read_blob(new) if new else None for p, new in changes.items()}
        tip = _recommit(repo, commit, files, tip, None)
    return tip


def _check_not_rewritten(repo: Repository, path: Path, theirs: str) -> None:
    if not path.exists():
        return
    seen = path.read_text().strip()
    if not repo.git.is_ancestor(seen, theirs):
        raise RepositoryError(
            "the central history was rewritten: a commit this clone saw there is gone",
            hint="stop and ask the technical coordinator; run cmgit audit on the server",
        )


def _check_in_force(repo: Repository, theirs: str) -> None:
    """Refuse to replay this clone's work on a central configuration that audit flags:
    every commit would be made again, merged and re-signed under it, and pushed on top."""
    problem = not_in_force(config_in_force(repo.git, theirs)[1].values())
    if problem is not None:
        problem.hint = (
            f"{problem.hint}, and pushes that; nothing of this clone's was replayed or "
            "pushed, and cmgit sync goes through once that is done"
        )
        raise problem


def _replay_over(
    repo: Repository,
    identities: Sequence[crypto.Identity],
    base: str,
    ours: str,
    theirs: str,
    today: dt.date,
    result: SyncResult,
) -> str:
    """`_replay`, through the migrations of the records ``theirs`` brings: each of this
    clone's records is brought to the central format, then merged and sealed under the
    configuration in force there, so an office with work made before a migration is
    never stuck."""
    local = repo.config
    central = read_parts(repo.git, config_in_force(repo.git, theirs)[0])
    if central.record_format <= local.record_format:
        return _replay(repo, identities, base, ours, theirs, today, result)
    with repo.acting_under(central):
        repo.check_writer()
        return _replay(repo, identities, base, ours, theirs, today, result, local)


def _replay(
    repo: Repository,
    identities: Sequence[crypto.Identity],
    base: str,
    ours: str,
    theirs: str,
    today: dt.date,
    result: SyncResult,
    written_under: Config | None = None,
) -> str:
    """This clone's commits since ``base``, made again on top of ``theirs``; records
    ``written_under`` an older configuration are brought through the migrations since."""
    git = repo.git
    tip = theirs
    # Per case, the new ids of this clone's unpushed items that the other office had
    # given to different items (legacy sequential ids), so later commits follow them.
    renumbering: dict[str, Renumbering] = {}
    for oid in git.text("rev-list", "--reverse", f"{base}..{ours}").split():
        commit = next(c for c in git.log(rev=f"{oid}^!"))
        parent = git.text("rev-parse", f"{oid}^")
        files: dict[str, bytes | None] = {}
        version: str | None = None
        changes = git.changed(parent, oid)
        changed = _sealed_changed(git, changes)
        sealed = _sealed_both(git, changed, parent, tip)
        for both in sealed:  # a case kept as sealed entries, changed on both sides
            renumbered = renumbering.setdefault(both, Renumbering(repo.item_ids()))
            already = len(renumbered.renamed)
            made = repo.merge_sealed(
                both,
                parent,
                oid,
                tip,
                identities,
                today,
                renumbering=renumbered,
                written_under=written_under,
            )
            files.update(made)
            version = _version_of(made[ids.record_path(both)])
            result.merged += 1
            result.renumbered += len(renumbered.renamed) - already
        brought: list[str] = []
        if written_under is not None:  # cases this clone made: brought to the central format
            brought = [made_here for made_here in changed if made_here not in sealed]
            for made_here in brought:
                files.update(
                    repo.bring_forward_sealed(made_here, oid, tip, identities, today, written_under)
                )
        for path, new in changes:
            if _case_of(path) in (*sealed, *brought):
                continue  # merged or brought forward above
            at_parent = git.blob_id(parent, path)
            at_tip = git.blob_id(tip, path)
            case_id = ids.case_id_from_path(path)
            if at_tip == at_parent:
                data = git.read_blob(new) if new else None
                if written_under is not None and case_id is not None and data is not None:
                    # a case this clone made: brought to the central format as it is
                    data = repo.bring_forward(
                        case_id, data, at_tip, identities, today, written_under
                    )
                files[path] = data
                continue
            if case_id is None or new is None or at_tip is None:
                raise RepositoryError(
                    f"both offices changed {path}",
                    hint="nothing was changed; agree which "
                    "change stands, then undo the other and sync again",
                )
            renumbered = renumbering.setdefault(case_id, Renumbering(repo.item_ids()))
            already = len(renumbered.renamed)
            merged = repo.merge_record(
                case_id,
                git.read_blob(at_parent) if at_parent else None,
                git.read_blob(new),
                git.read_blob(at_tip),
                at_tip,
                identities,
                today,
                renumbering=renumbered,
                written_under=written_under,
            )
            files[path] = merged
            version = _version_of(merged)
            result.merged += 1
            result.renumbered += len(renumbered.renamed) - already
        tip = _recommit(repo, commit, files, tip, version)
        result.replayed += 1
    return tip


def _version_of(record_file: bytes) -> str:
    return record_file.split(b"version: ", 1)[1].split(b"\n", 1)[0].decode()


def _case_of(path: str) -> str | None:
    """The case a path of the repository belongs to: its record or one of its entries."""
    entry = entries.parse_entry_path(path)
    return entry[0] if entry else ids.case_id_from_path(path)


def _sealed_changed(git: Git, changes: Sequence[tuple[str, str | None]]) -> list[str]:
    """The cases kept as sealed entries that a commit of this clone changes."""
    found = set()
    for path, new in changes:
        entry = entries.parse_entry_path(path)
        if entry is not None:
            found.add(entry[0])
        elif (
            (case_id := ids.case_id_from_path(path))
            and new is not None
            and not records.has_sealed_block(git.read_blob(new))
        ):
            found.add(case_id)
    return sorted(found)


def _sealed_both(git: Git, changed: Sequence[str], parent: str, tip: str) -> list[str]:
    """Of the ``changed`` cases kept as sealed entries, those the central branch changed
    too since the commit's parent: merged whole, record and entry."""
    return [
        case_id
        for case_id in changed
        if git.blob_id(parent, ids.record_path(case_id))
        != git.blob_id(tip, ids.record_path(case_id))
    ]


def _recommit(
    repo: Repository,
    commit: Commit,
    files: dict[str, bytes | None],
    parent: str,
    version: str | None,
) -> str:
    """``commit``'s change made again on ``parent`` by its actor, re-signed."""
    message = _with_version(commit, version)
    actor = repo.registry.staff.get(commit.trailer("Cmgit-Actor") or "")
    author = staff_author(actor) if actor else actor_author(commit.author)
    signer = _resigner(repo, actor) if actor is not None else None
    tip, _ = repo.git.make_commit(files, message, author, parent, sign=signer)
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


def clone(url: str, target: Path) -> tuple[Repository, CmgitError | None]:
    """An office's clone of the central repository, ready for work: the programme's branch
    (``git clone`` of the branch the central's HEAD names, no tags), then the keyring
    fetched on its own (its objects in a pack of their own) and remembered as the base of
    the first sync, the client hooks installed, git's commit-graph written with changed
    paths, and the configuration's trust check made once, so that the first command
    after the clone does not pay for a walk of the history. Returns the repository and
    what makes its configuration untrusted, if anything does (as audit would say)."""
    from .history import Git
    from .hooks import install_client

    if target.exists() and any(target.iterdir()):
        raise RepositoryError(
            "the folder to clone into exists and is not empty", hint="name a new folder"
        )
    Git(target.parent).run("clone", "--quiet", "--single-branch", "--no-tags", url, str(target))
    git = Git(target)
    with repository_lock(git.git_dir):
        keyring_ref.fetch(git, "origin")
    install_client(git)
    git.refresh_commit_graph()
    repo = Repository.open(target)
    keyring_sync.remember(repo)
    return repo, repo.untrusted_config()
