"""The keyring: the wrapped case keys, kept in git so that git does not keep them.

The keyring is 1,024 shard refs, ``refs/cmgit/keyring/<XX>``, one per fan-out folder of
the records (`cmgit.ids.record_path`). Each points at a parentless commit whose tree holds
one folder per case of that shard, ``<CASE-ID>/``, with the case's wrapped key files. An
update makes a new parentless commit for each shard it changes (from the old tree, only
the changed cases' folders rewritten), moves all those refs in one compare-and-swap
transaction, and at once deletes the objects each new commit no longer holds: an old
wrapping must not outlive its replacement, or a reader removed from a case (or a purged
case) could still be opened with an old key. A shard once made stays: emptied, it points
at a commit with the empty tree, so an ordinary push carries the emptying to the central.

Why shards: the central prunes the keyring commits a clone holds, so git finds nothing in
common to negotiate for a changed ref and sends all it reaches. With one ref that was the
whole keyring on every sync (about 2 KB a case); with shards a fetch wants only the shards
that changed and receives only their objects.

Deleting is cheap because the keyring's objects never share a pack with the records:
local updates write loose objects, and a fetch of the keyring runs on its own, so its
objects arrive loose or in packs of their own, listed in ``cmgit/keyring-packs`` of the git
folder. A fetched pack is split at once into one pack per group of shards (the shards
sharing a first character), so a listed pack holds one group. A loose object is unlinked; a
listed pack holding one is written again without it, which costs a group (about 3,000
cases at 100,000), never the whole keyring. No other pack is ever touched, and the
repository is never repacked. For the same reason `cmgit sync` pushes the keyring in a
push of its own, before main and not atomic with it, so the central receives the
keyring's objects in a pack of their own as well.

A plain `git gc` (or git's automatic gc and maintenance) would pack the keyring with the
records, and the next prune would have to rewrite the records' pack. `update` and `fetch`
therefore set ``gc.auto 0`` and ``maintenance.auto false`` where the repository's config
does not say otherwise; cmgit expects the repository to be packed only by cmgit's own
commands, which keep the two apart (`cmgit gc` in the design), never by `git gc`.

The files are opaque bytes here (age files, sealed elsewhere); each is written once with a
new age file key, so no two paths of a keyring hold the same blob.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from ..errors import CmgitError, GitFailed, IntegrityError, RepositoryBusy
from ..faults import crash_point
from ..history import (
    BLOB_MODES,
    TREE_MODE,
    ZERO_OID,
    Author,
    Git,
    format_message,
    object_id,
    write_atomic,
)
from ..ids import CASE_ID_RE, CROCKFORD, bucket, check_case_id

KEYRING_PREFIX = "refs/cmgit/keyring/"
KEYRING_TRAILER = ("Cmgit-Keyring", "1")
SUBJECT = "keyring"
PACK_LIST = "keyring-packs"  # in the git folder's cmgit/, one pack name a line
# The shard commits being replaced ("<shard> <commit>" a line), while their objects wait
# to be pruned.
PRUNE_PENDING = "keyring-prune"
_IDX_FIXED, _IDX_PER_OBJECT = 8 + 256 * 4 + 2 * 20, 20 + 4 + 4  # git's pack index, version 2
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # every repository may hold it
FILE_LIMIT = 1 << 20  # bytes of one wrapped key file read at most
# A file of a case folder: staff.age, recovery.<custodian>.<custodian>.age.
FILE_NAME_RE = re.compile(r"[a-z][a-z0-9-]*(?:\.[a-z0-9][a-z0-9-]*)*\.age")
SHARD_RE = re.compile(f"[{CROCKFORD}]{{2}}")
# git's own gc and maintenance would pack the keyring with the records (see above).
NO_AUTO_GC = (("gc.auto", "0"), ("maintenance.auto", "false"))


def shard_of(case_id: str) -> str:
    """The shard of a case: the fan-out folder of its record."""
    return bucket(check_case_id(case_id))


def shard_ref(case_id: str) -> str:
    """The ref of the shard that holds a case's wrapped keys."""
    return KEYRING_PREFIX + shard_of(case_id)


def heads(git: Git) -> dict[str, str]:
    """Every shard's commit, by shard, from one `git for-each-ref`. IntegrityError when a
    shard ref points at something other than a commit (every reader expects one)."""
    found: dict[str, str] = {}
    for shard, (kind, oid) in _listing(git).items():
        if kind != "commit":
            raise IntegrityError(
                "a keyring shard is not a commit", hint="ask the coordinator to check it"
            )
        found[shard] = oid
    return found


def head(git: Git, case_id: str) -> str | None:
    """The commit of a case's shard, or None where the repository has no such shard."""
    return git.ref(shard_ref(case_id))


def read_case(git: Git, case_id: str, commit: str | None = None) -> dict[str, bytes]:
    """A case's files in the keyring (at shard commit ``commit``, default its shard's
    head), by name; {} when the case has none. A file larger than any wrapped key is
    refused unread (TooLarge)."""
    commit = commit or head(git, case_id)
    names = _case_files(git, commit, case_id)
    return {name: git.read_blob(oid, limit=FILE_LIMIT) for name, oid in names.items()}


def case_ids(git: Git, shards: Mapping[str, str] | None = None) -> list[str]:
    """The cases the keyring (or the shard commits ``shards``) holds files for, shard by
    shard: one ref listing and one root tree read per shard."""
    found: list[str] = []
    for shard, commit in sorted((heads(git) if shards is None else shards).items()):
        tree = git.objects.tree(git.objects.commit_tree(commit))
        found.extend(
            name
            for name, (mode, _) in tree.items()
            if mode == TREE_MODE and CASE_ID_RE.fullmatch(name) and bucket(name) == shard
        )
    return found


def update(
    git: Git,
    changes: Mapping[str, Mapping[str, bytes] | None],
    author: Author,
    sign: Callable[[bytes], str] | None = None,
    *,
    trailers: Sequence[tuple[str, str]] = (),
    ahead_of_branch: bool = False,
) -> dict[str, str]:
    """Replace the folders of the cases in ``changes`` with exactly the files given (None
    or no files: the folder goes), in one new parentless commit per changed shard; move
    all their refs in one transaction from the commits read here (RepositoryBusy, and no
    ref moved, if any moved meanwhile), then prune what each old shard commit alone held.
    Only the trees on the changed paths are written. ``trailers`` name the actor, as on
    every commit cmgit makes. Returns the new commit of each changed shard.

    ``ahead_of_branch``: a commit of the branch follows, which the keys are for. The refs
    moved are held until it is made (`Git.hold_refs`: put back if it never is), and the
    old commits are pruned only once it is (`finish_prune`)."""
    keep_out_of_gc(git)
    finish_prune(git)
    old = heads(git)
    by_shard: dict[str, dict[str, bytes | None]] = {}
    for case_id, wanted in changes.items():
        files = by_shard.setdefault(shard_of(case_id), {})
        wanted = wanted or {}
        for name in wanted:
            _check_file_name(name)
        current = _case_files(git, old.get(shard_of(case_id)), case_id)
        files.update({f"{case_id}/{name}": None for name in current if name not in wanted})
        files.update({f"{case_id}/{name}": data for name, data in wanted.items()})
    message = format_message(SUBJECT, [KEYRING_TRAILER, *trailers])
    new: dict[str, str] = {}
    replaced = {shard: old[shard] for shard in by_shard if shard in old}
    try:
        for shard, files in sorted(by_shard.items()):
            base = old.get(shard)
            new[shard], _ = git.make_commit(files, message, author, None, sign, base=base)
        _note_pending(git, replaced)
        moves = {KEYRING_PREFIX + shard: (old.get(shard), commit) for shard, commit in new.items()}
        if ahead_of_branch:
            git.hold_refs(moves)
        git.update_refs(moves, reflog=False)
    except (CmgitError, GitFailed):
        _clear_pending(git)
        fresh = {
            shard: {object_id("blob", data) for data in files.values() if data is not None}
            for shard, files in by_shard.items()
        }
        _abandon(git, new, fresh, old)
        raise
    crash_point("keyring-moved")
    if not ahead_of_branch:
        prune_all(git, {commit: new[shard] for shard, commit in replaced.items()})
        _clear_pending(git)
    return new


def _abandon(
    git: Git,
    made: Mapping[str, str],
    fresh: Mapping[str, set[str]],
    old: Mapping[str, str],
) -> None:
    """Delete the shard commits ``made`` and the ``fresh`` files (by shard) written by an
    update that failed before it published them, and say RepositoryBusy if it failed
    because another writer moved a shard (and pruned what the update was building on).
    What a shard holds now is kept, whoever wrote it."""
    now = heads(git)
    for shard, files in fresh.items():
        current, commit = now.get(shard), made.get(shard)
        doomed = files | (_objects(git, commit) if commit else set())
        kept = _objects(git, current) if current else set()
        _destroy(git, doomed - kept - {EMPTY_TREE}, last=[commit] if commit else [])
    if now != old:
        raise RepositoryBusy(
            "the keyring moved while this command was changing it",
            hint="run the command again",
        )


def prune(git: Git, old: str, new: str | None) -> int:
    """`prune_all` of one shard commit replaced by another (None: by no commit)."""
    return prune_all(git, {old: new})


def prune_all(git: Git, replaced: Mapping[str, str | None]) -> int:
    """Delete now, for each old shard commit in ``replaced``, the objects that the shard
    commit replacing it (None: no commit at all) no longer holds: the old commit, its
    root tree, and the old side of every file and folder that changed. Never the empty
    tree, nor anything on a new side. The trees are compared in this process (a few
    reads each) and the packs rewritten once for all the shards: an update of 25 shards
    costs no more git processes than one of a single shard. The old commits go last, so
    a prune stopped half way can be found and finished from them. Returns how many
    objects were destroyed (where loose or in a keyring pack)."""
    doomed: set[str] = set()
    kept = {EMPTY_TREE}
    for old, new in replaced.items():
        if old == new:
            continue
        old_tree = git.objects.commit_tree(old)
        new_tree = git.objects.commit_tree(new) if new is not None else None
        doomed.add(old)
        if new is not None:
            kept.add(new)
        _compare(git, old_tree, new_tree, doomed, kept)
    olds = [old for old, new in replaced.items() if old != new]
    return _destroy(git, doomed - kept, last=olds)


def _compare(git: Git, old: str, new: str | None, doomed: set[str], kept: set[str]) -> None:
    """Add to ``doomed`` tree ``old`` and what in it differs from tree ``new`` (None: no
    tree), recursively; to ``kept``, the new side of what differs."""
    if old == new:
        return
    doomed.add(old)
    if new is not None:
        kept.add(new)
    before = git.objects.tree(old)
    after = git.objects.tree(new) if new is not None else {}
    for name, (mode, oid) in before.items():
        other = after.get(name)
        if other is not None and other[1] == oid:
            continue
        if mode == TREE_MODE:
            _compare(git, oid, other[1] if other and other[0] == TREE_MODE else None, doomed, kept)
        else:
            doomed.add(oid)
    for name, (_, oid) in after.items():
        if before.get(name, ("", ""))[1] != oid:
            kept.add(oid)


def _destroy(git: Git, oids: Iterable[str], *, last: Iterable[str] = ()) -> int:
    """Delete ``oids`` where they are loose or in a keyring pack (those also in ``last``
    after all the others), and drop from older keyring packs what a newer one holds as
    well. Packs outside the list are never touched. Returns how many of ``oids`` were
    deleted."""
    doomed = set(oids)
    at_the_end = set(last) & doomed
    destroyed = {oid for oid in doomed - at_the_end if _unlink_loose(git, oid)}
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
    destroyed |= {oid for oid in sorted(at_the_end) if _unlink_loose(git, oid)}
    return len(destroyed)


def _objects(git: Git, commit: str) -> set[str]:
    """A shard commit and every tree and file it holds that is still there: what another
    writer pruned meanwhile is passed over, not an error."""
    found = {commit}
    folders = [git.objects.commit_tree(commit)]
    while folders:
        tree = folders.pop()
        found.add(tree)
        with contextlib.suppress(GitFailed):
            for mode, oid in git.objects.tree(tree).values():
                (folders.append if mode == TREE_MODE else found.add)(oid)
    return found


def _unlink_loose(git: Git, oid: str) -> bool:
    """Delete the loose copy of ``oid``; False when there is none."""
    try:
        (git.objects.folder / oid[:2] / oid[2:]).unlink()
    except FileNotFoundError:
        return False
    return True


def fetch(git: Git, remote: str, *, drop_missing: bool = False) -> dict[str, str | None]:
    """Fetch ``remote``'s keyring shards alone (a fetch of its own, so their objects never
    share a pack with the records), list any pack it brought, and prune what each replaced
    local shard alone held. Shards replace the local ones (not merged: the caller merges
    before calling `update`); a local shard the remote lacks is dropped only with
    ``drop_missing``. Only changed shards are wanted, so only their objects travel.
    Returns the shards that changed, each with its new commit (None: dropped).

    The caller holds the repository lock: a pack another fetch wrote meanwhile would be
    taken for the keyring's. A fetch killed before it listed its pack leaves that pack
    unlisted, so not pruned: `git fetch` names its pack only once it has written it."""
    keep_out_of_gc(git)
    finish_prune(git)
    old = heads(git)
    _note_pending(git, old)
    before = git.pack_names()
    tip = [f"--negotiation-tip={KEYRING_PREFIX}*"] if old else []
    git.run(
        "fetch",
        "--quiet",
        "--no-tags",
        "--prune" if drop_missing else "--no-prune",
        "--no-write-fetch-head",
        "--no-auto-gc",
        "--no-auto-maintenance",
        "--no-recurse-submodules",
        "--refmap=",
        *tip,
        "--",
        remote,
        f"+{KEYRING_PREFIX}*:{KEYRING_PREFIX}*",
    )
    new_packs = sorted(git.pack_names() - before)
    if new_packs:
        _write_pack_list(git, [*keyring_packs(git), *new_packs])
    listing = _listing(git)
    wrong = {shard: oid for shard, (kind, oid) in listing.items() if kind != "commit"}
    if wrong:  # put back what was there: every reader expects a commit
        back = {KEYRING_PREFIX + s: (oid, old.get(s, ZERO_OID)) for s, oid in wrong.items()}
        git.update_refs(back, reflog=False)
        raise IntegrityError(
            "the remote's keyring holds a shard that is not a commit",
            hint="ask the coordinator to check it",
        )
    new = {shard: oid for shard, (_, oid) in listing.items()}
    changed = {s: new.get(s) for s in sorted({*old, *new}) if old.get(s) != new.get(s)}
    if new_packs:
        _regroup(git, {shard[0] for shard, commit in changed.items() if commit}, new)
    prune_all(git, {old[shard]: commit for shard, commit in changed.items() if shard in old})
    _clear_pending(git)
    return changed


def _regroup(git: Git, groups: set[str], shards: Mapping[str, str]) -> None:
    """Write, for each group of shards in ``groups`` (the first character of a shard),
    one keyring pack of every object of its shards that a keyring pack holds, newest in
    the list, so that the older packs drop them (`_destroy`): the pack a fetch brought,
    and each group's previous pack, go without being written again. Keyring packs thus
    hold one group each (about 3,000 cases at 100,000), and pruning a replaced shard
    rewrites at most its group's pack, never the whole keyring a first fetch brought."""
    present = git.pack_names()
    listed = [name for name in keyring_packs(git) if name in present]
    packed = set().union(*(git.pack_ids(name) for name in listed))
    written = []
    for group in sorted(groups):
        held = [_objects(git, commit) for shard, commit in shards.items() if shard[0] == group]
        wanted = set().union(*held) & packed
        if wanted:
            written.append(git.write_pack(sorted(wanted)))
    _write_pack_list(git, [*listed, *written])  # a kill before this leaves them unlisted
    _destroy(git, ())


def adopt_packs(git: Git, commits: Sequence[str]) -> list[str]:
    """List as keyring packs the unlisted packs that hold objects of the shard commits
    ``commits`` and nothing else: what a push of the keyring alone brought to the central
    repository (git keeps a large push as the pack it came in), so that a prune there can
    reach into it. A pack holding anything else is never listed. Returns those listed."""
    if not commits:
        return []
    held = set().union(*(_objects(git, commit) for commit in commits))
    listed = keyring_packs(git)
    folder = git.objects.folder / "pack"
    adopted = []
    for name in sorted(git.pack_names() - set(listed)):
        # An index of version 2 takes 1,072 bytes and 28 a object: a pack of more objects
        # than the keyring commits hold (the records') is passed over unread.
        if ((folder / f"{name}.idx").stat().st_size - _IDX_FIXED) // _IDX_PER_OBJECT > len(held):
            continue
        inside = git.pack_ids(name)
        if inside & set(commits) and inside <= held:
            adopted.append(name)
    if adopted:
        _write_pack_list(git, [*listed, *adopted])
    return adopted


def push_refspecs(git: Git) -> list[str]:
    """The refspecs that push every shard of this keyring, replacing the remote's (the
    caller merged them first); git sends only the objects the remote lacks. The sync
    pushes them on their own, before main, so the central receives the keyring's objects
    in a pack of their own. Empty when the repository has no keyring yet."""
    return [f"+{commit}:{KEYRING_PREFIX}{shard}" for shard, commit in sorted(heads(git).items())]


def finish_prune(git: Git) -> int:
    """Prune what shards replaced by a command that stopped before it pruned (killed, or
    a power cut) still hold: everything of each old commit that its shard does not hold
    now. Returns how many objects were destroyed."""
    try:
        text = _pending_file(git).read_text(encoding="ascii")
    except FileNotFoundError:
        return 0
    now = heads(git)
    destroyed = 0
    for line in text.splitlines():
        shard, _, old = line.partition(" ")
        if SHARD_RE.fullmatch(shard) and now.get(shard) != old:  # nothing refers to old
            with contextlib.suppress(GitFailed):  # pruned already
                destroyed += prune(git, old, now.get(shard))
    _clear_pending(git)
    return destroyed


def keep_out_of_gc(git: Git) -> None:
    """Turn off git's automatic gc and maintenance where the repository's config does not
    set them: either would pack the keyring with the records, and every prune after that
    would have to rewrite the records' pack (or leave old wrappings in it)."""
    listed = git.run("config", "--local", "--list", ok=(0, 1)).decode("utf-8", "replace")
    present = {line.partition("=")[0] for line in listed.splitlines()}
    for key, value in NO_AUTO_GC:
        if key not in present:
            git.run("config", "--local", key, value)


def _listing(git: Git) -> dict[str, tuple[str, str]]:
    """(object type, id) of every shard ref, by shard, from one `git for-each-ref`; refs
    under the prefix whose names are not shards are none of cmgit's."""
    out = git.text(
        "for-each-ref", "--format=%(refname) %(objecttype) %(objectname)", KEYRING_PREFIX
    )
    found: dict[str, tuple[str, str]] = {}
    for line in out.splitlines():
        name, kind, oid = line.split(" ")
        shard = name.removeprefix(KEYRING_PREFIX)
        if SHARD_RE.fullmatch(shard):
            found[shard] = (kind, oid)
    return found


def _note_pending(git: Git, replaced: Mapping[str, str]) -> None:
    """Name the shard commits about to be replaced in a file, before any ref moves; a
    command stopped or failing before it pruned them leaves the file, and the next one
    finishes the pruning (`finish_prune`)."""
    if replaced:
        lines = "".join(f"{shard} {old}\n" for shard, old in sorted(replaced.items()))
        write_atomic(_pending_file(git), lines.encode("ascii"))


def _clear_pending(git: Git) -> None:
    with contextlib.suppress(FileNotFoundError):
        _pending_file(git).unlink()


def _case_files(git: Git, commit: str | None, case_id: str) -> dict[str, str]:
    """The files of a case's folder at shard commit ``commit``, name to blob id; {}
    without one."""
    entry = git.objects.lookup(commit, check_case_id(case_id)) if commit else None
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
        text = _cmgit_folder(git).joinpath(PACK_LIST).read_text(encoding="ascii")
    except FileNotFoundError:
        return []
    return [line for line in text.split() if re.fullmatch(r"pack-[0-9a-f]{40}", line)]


def _write_pack_list(git: Git, names: Sequence[str]) -> None:
    unique = list(dict.fromkeys(names))
    data = "".join(f"{name}\n" for name in unique).encode("ascii")
    write_atomic(_cmgit_folder(git) / PACK_LIST, data)


def _pending_file(git: Git) -> Path:
    return _cmgit_folder(git) / PRUNE_PENDING


def _cmgit_folder(git: Git) -> Path:
    """cmgit's folder in the git folder shared by all work trees of the repository."""
    return git.objects.folder.parent / "cmgit"
