"""The keyring ref: the wrapped case keys, kept in git so that git does not keep them.

`refs/cmgit/keyring` points at a parentless commit whose tree holds one folder per case,
``<fan-out>/<CASE-ID>/`` (the fan-out of the records), with the case's wrapped key files.
Each update makes a new parentless commit from the old tree with only the changed cases'
folders rewritten, moves the ref by compare and swap, and at once deletes the objects the
new commit no longer holds: an old wrapping must not outlive its replacement, or a reader
removed from a case (or a purged case) could still be opened with an old key.

Deleting is cheap because the keyring's objects never share a pack with the records:
local updates write loose objects, and a fetch of the keyring runs on its own, so its
objects arrive loose or in packs of their own, listed in ``cmgit/keyring-packs`` of the git
folder. A loose object is unlinked; a listed pack holding one is written again without it.
No other pack is ever touched, and the repository is never repacked.

The files are opaque bytes here (age files, sealed elsewhere); each is written once with a
new age file key, so no two paths of a keyring hold the same blob.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from ..errors import GitFailed, IntegrityError, RepositoryError
from ..faults import crash_point
from ..history import (
    BLOB_MODES,
    TREE_MODE,
    Author,
    Git,
    format_message,
    write_atomic,
)
from ..ids import CASE_ID_RE, bucket, check_case_id

KEYRING_REF = "refs/cmgit/keyring"
KEYRING_TRAILER = ("Cmgit-Keyring", "1")
SUBJECT = "keyring"
PACK_LIST = "keyring-packs"  # in the git folder's cmgit/, one pack name a line
# The keyring commit being replaced, while its objects wait to be pruned.
PRUNE_PENDING = "keyring-prune"
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # every repository may hold it
FILE_LIMIT = 1 << 20  # bytes of one wrapped key file read at most
# A file of a case folder: staff.age, recovery.<custodian>.<custodian>.age.
FILE_NAME_RE = re.compile(r"[a-z][a-z0-9-]*(?:\.[a-z0-9][a-z0-9-]*)*\.age")
_CASE_PATH_RE = re.compile(rf"(?P<folder>[^/]{{2}})/(?P<case>{CASE_ID_RE.pattern})/[^/]+")


def case_dir(case_id: str) -> str:
    """The folder of a case in the keyring's tree: fan-out and case ID."""
    return f"{bucket(check_case_id(case_id))}/{case_id}"


def head(git: Git) -> str | None:
    """The keyring's commit, or None where the repository has no keyring yet."""
    return git.ref(KEYRING_REF)


def read_case(git: Git, case_id: str, commit: str | None = None) -> dict[str, bytes]:
    """A case's files in the keyring (at ``commit``, default its head), by name; {} when
    the case has none. A file larger than any wrapped key is refused unread (TooLarge)."""
    commit = commit or head(git)
    names = _case_files(git, commit, case_id)
    return {name: git.read_blob(oid, limit=FILE_LIMIT) for name, oid in names.items()}


def case_ids(git: Git, commit: str | None = None) -> list[str]:
    """The cases the keyring holds files for, in git's order, from one tree listing."""
    commit = commit or head(git)
    if commit is None:
        return []
    found: dict[str, None] = {}
    for entry in git.ls_tree(commit):
        match = _CASE_PATH_RE.fullmatch(entry.path)
        if match and bucket(match["case"]) == match["folder"]:
            found[match["case"]] = None
    return list(found)


def update(
    git: Git,
    changes: Mapping[str, Mapping[str, bytes] | None],
    author: Author,
    sign: Callable[[bytes], str] | None = None,
    *,
    trailers: Sequence[tuple[str, str]] = (),
) -> str:
    """Replace the folders of the cases in ``changes`` with exactly the files given (None
    or no files: the folder goes), in a new parentless commit; move the ref from the
    commit read here (RepositoryBusy if it moved meanwhile), then prune what the old
    keyring alone held. Only the trees on the changed paths are written. ``trailers``
    name the actor, as on every commit cmgit makes. Returns the new keyring commit."""
    finish_prune(git)
    old = head(git)
    files: dict[str, bytes | None] = {}
    for case_id, wanted in changes.items():
        folder = case_dir(case_id)
        wanted = wanted or {}
        for name in wanted:
            _check_file_name(name)
        current = _case_files(git, old, case_id)
        files.update({f"{folder}/{name}": None for name in current if name not in wanted})
        files.update({f"{folder}/{name}": data for name, data in wanted.items()})
    message = format_message(SUBJECT, [KEYRING_TRAILER, *trailers])
    new, _ = git.make_commit(files, message, author, None, sign, base=old)
    with _replacing(git, old):
        git.update_ref(KEYRING_REF, new, old, reflog=False)
        crash_point("keyring-moved")
        if old is not None:
            prune(git, old, new)
    return new


def prune(git: Git, old: str, new: str) -> int:
    """Delete now the objects of keyring commit ``old`` that ``new`` no longer holds: the
    old commit, its root tree, and the old side of every file and folder that changed.
    Never the empty tree, nor anything on the new side. Returns how many objects were
    destroyed (where they were loose or in a keyring pack)."""
    if old == new:
        return 0
    doomed = {old, git.objects.commit_tree(old)}
    kept = {new, git.objects.commit_tree(new), EMPTY_TREE}
    for _, before, after in git.changed_objects(old, new):
        if before is not None:
            doomed.add(before)
        if after is not None:
            kept.add(after)
    return _destroy(git, doomed - kept)


def _destroy(git: Git, oids: Iterable[str]) -> int:
    """Delete ``oids`` where they are loose or in a keyring pack, and drop from older
    keyring packs what a newer one holds as well (a fetch brings a whole keyring). Packs
    outside the list are never touched. Returns how many of ``oids`` were deleted."""
    doomed = set(oids)
    destroyed: set[str] = set()
    for oid in doomed:
        with contextlib.suppress(FileNotFoundError):
            (git.objects.folder / oid[:2] / oid[2:]).unlink()
            destroyed.add(oid)
    present = git.pack_names()
    listed = [name for name in keyring_packs(git) if name in present]
    newer: set[str] = set()  # what a pack later in the list keeps
    kept: list[str] = []
    replaced: list[str] = []
    for name in reversed(listed):
        held = git.pack_ids(name)
        keep = held - doomed - newer
        if keep != held:
            destroyed |= held & doomed
            replaced.append(name)
            if keep:
                kept.append(git.write_pack(sorted(keep)))
        else:
            kept.append(name)
        newer |= keep
    kept.reverse()
    if replaced or len(listed) != len(keyring_packs(git)):
        # Listed while both exist, so a command killed here leaves no pack unlisted.
        _write_pack_list(git, [*replaced, *kept])
        for name in replaced:
            git.remove_pack(name)
        _write_pack_list(git, kept)
    return len(destroyed)


def fetch(git: Git, remote: str) -> str | None:
    """Fetch ``remote``'s keyring alone (a fetch of its own, so its objects never share a
    pack with the records), list any pack it brought, move the local ref to it (replaced,
    not merged: the caller merges before calling `update`) and prune what the local
    keyring alone held. Returns the new keyring commit; None when the remote has no
    keyring, and then the local one is left as it was. The caller holds the repository
    lock: a pack another fetch wrote meanwhile would be taken for the keyring's. A fetch
    killed before it listed its pack leaves that pack unlisted, so not pruned: `git
    fetch` names its pack only once it has written it."""
    finish_prune(git)
    old = head(git)
    with _replacing(git, old):
        return _fetch(git, remote, old)


def _fetch(git: Git, remote: str, old: str | None) -> str | None:
    before = git.pack_names()
    tip = [f"--negotiation-tip={KEYRING_REF}"] if old else []
    try:
        git.run(
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-prune",
            "--no-write-fetch-head",
            "--no-auto-gc",
            "--no-auto-maintenance",
            "--no-recurse-submodules",
            "--refmap=",
            *tip,
            "--",
            remote,
            f"+{KEYRING_REF}:{KEYRING_REF}",
        )
    except GitFailed:
        found = git.run("ls-remote", "--exit-code", "--", remote, KEYRING_REF, ok=(0, 2))
        if not found:
            return None
        raise
    new_packs = sorted(git.pack_names() - before)
    if new_packs:
        _write_pack_list(git, [*keyring_packs(git), *new_packs])
    new = head(git)
    if new is None:  # put back what was there: every reader expects a commit
        git.run("update-ref", *(("-d", KEYRING_REF) if old is None else (KEYRING_REF, old)))
        raise IntegrityError(
            "the remote's keyring is not a commit", hint="ask the coordinator to check it"
        )
    if old is not None:
        prune(git, old, new)
    return new


def push_refspec(git: Git) -> str:
    """The refspec that pushes this keyring in the sync's atomic push, replacing the
    remote's (the caller merged them first)."""
    commit = head(git)
    if commit is None:
        raise RepositoryError(
            "this repository has no keyring to push", hint="push main alone until it has one"
        )
    return f"+{commit}:{KEYRING_REF}"


def finish_prune(git: Git) -> int:
    """Prune what a keyring replaced by a command that stopped before it pruned (killed,
    or a power cut) still holds: everything of that old commit that the keyring does not
    hold now. Returns how many objects were destroyed."""
    marker = _cmgit_folder(git) / PRUNE_PENDING
    try:
        old = marker.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return 0
    now = head(git)
    destroyed = 0
    if now is not None and now != old:  # the ref moved: nothing refers to the old one
        with contextlib.suppress(GitFailed):  # pruned already
            destroyed = prune(git, old, now)
    marker.unlink()
    return destroyed


@contextlib.contextmanager
def _replacing(git: Git, old: str | None) -> Iterator[None]:
    """Name ``old`` in a file while the keyring moves away from it and its objects are
    pruned; a command stopped or failing in between leaves the file, and the next one
    finishes the pruning (`finish_prune`)."""
    marker = _cmgit_folder(git) / PRUNE_PENDING
    if old is None:
        yield
        return
    write_atomic(marker, f"{old}\n".encode("ascii"))
    yield
    marker.unlink()


def _case_files(git: Git, commit: str | None, case_id: str) -> dict[str, str]:
    """The files of a case's folder at ``commit``, name to blob id; {} without one."""
    entry = git.objects.lookup(commit, case_dir(case_id)) if commit else None
    if entry is None or entry[0] != TREE_MODE:
        return {}
    tree = git.objects.tree(entry[1])
    return {name: oid for name, (mode, oid) in sorted(tree.items()) if mode in BLOB_MODES}


def _check_file_name(name: str) -> None:
    if not FILE_NAME_RE.fullmatch(name):
        raise ValueError("a keyring file name holds characters cmgit never writes")


def keyring_packs(git: Git) -> list[str]:
    """The packs that hold keyring objects only, by name, oldest first."""
    try:
        text = _pack_list(git).read_text(encoding="ascii")
    except FileNotFoundError:
        return []
    return [line for line in text.split() if re.fullmatch(r"pack-[0-9a-f]{40}", line)]


def _write_pack_list(git: Git, names: Sequence[str]) -> None:
    unique = list(dict.fromkeys(names))
    write_atomic(_pack_list(git), "".join(f"{name}\n" for name in unique).encode("ascii"))


def _pack_list(git: Git) -> Path:
    return _cmgit_folder(git) / PACK_LIST


def _cmgit_folder(git: Git) -> Path:
    """cmgit's folder in the git folder shared by all work trees of the repository."""
    return git.objects.folder.parent / "cmgit"
