"""The keyring's part of `cmgit sync`: fetch the central keyring on its own, merge it with
this clone's case by case, and push it on its own before main.

A case's wrapped key changed on one side only takes that side. Changed on both sides (a
reassignment here, a staff change there), neither wrapping is right alone: the syncing
actor unwraps both, keeps every generation of either (older entries are sealed to them),
adds a fresh one (a reader one side removed may hold the other side's newest), and wraps
the lot to the case's readers at the merged head. "Changed" is judged against the central
keyring as this clone last synced it, remembered as each case folder's tree id in
``cmgit/keyring-base`` of the git folder: the objects themselves are pruned as soon as they
are replaced, so only their ids can be kept.

A case this clone holds that the central keyring no longer does is dropped only if the
central branch erased it (`cmgit purge`): an erasure travels, a keyring that merely lacks
a case (pushed by a clone that never had it) does not destroy this clone's copy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .. import crypto, entries, ids
from ..errors import CmgitError, NotARecipient, RepositoryError
from ..history import TREE_MODE, write_atomic
from ..keyring import ref, wrap
from . import casekeys
from .core import Core

BASE_FILE = "keyring-base"  # in the git folder's cmgit/: the central keyring last synced


@dataclass
class KeyringSync:
    """What the keyring's exchange did: cases taken from either side, and the keys merged
    from both (re-wrapped to the merged head's readers once main is replayed)."""

    fetched: dict[str, str | None] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    merged: dict[str, wrap.CaseKey] = field(default_factory=dict)


def pull(
    repo: Core, identities: Sequence[crypto.Identity], remote: str, theirs: str | None
) -> KeyringSync:
    """Fetch the central keyring and merge it into this clone's (see the module's
    docstring); ``theirs`` is the central branch's head, just fetched, whose purges and
    open fields decide. Writes the merged keyring (signed by the actor) where it differs
    from the central one."""
    git = repo.git
    result = KeyringSync()
    local = ref.heads(git)
    central = _remote_heads(repo, remote)
    if not local and not central:
        return result  # a programme without case keys (record format 1)
    base = _read_base(repo)
    differing = {s: c for s, c in local.items() if s in central and central[s] != c}
    ours = {
        case_id: (tree, ref.read_case(git, case_id, commit))
        for shard, commit in differing.items()
        for case_id, tree in _folders(repo, commit, shard).items()
    }
    if all(local.get(shard) == commit for shard, commit in central.items()):
        return result  # nothing new centrally: what differs is this clone's to push
    result.fetched = ref.fetch(git, remote)
    now = ref.heads(git)
    changes: dict[str, Mapping[str, bytes] | None] = {}
    for shard in differing:
        here = {c: t for c, (t, _) in ours.items() if ref.shard_of(c) == shard}
        there = _folders(repo, now[shard], shard)
        for case_id in sorted({*here, *there}):
            mine, other, seen = here.get(case_id), there.get(case_id), base.get(case_id)
            if mine == other:
                continue
            if mine == seen and (other is not None or _erased(repo, case_id, theirs)):
                continue  # unchanged here: the central version stands
            if other == seen or (other is None and not _erased(repo, case_id, theirs)):
                changes[case_id] = ours[case_id][1] if mine is not None else None
            elif mine is None or other is None:
                changes[case_id] = None  # erased on one side: the erasure stands
            else:
                key = _union(repo, case_id, identities, ours[case_id][1])
                result.merged[case_id] = key
                changes[case_id] = _wrapped(repo, key, case_id, theirs)
    for shard in set(local) - set(central):  # never sent: what the central erased goes
        for case_id, tree in _folders(repo, local[shard], shard).items():
            if base.get(case_id) == tree and _erased(repo, case_id, theirs):
                changes[case_id] = None
    if changes:
        casekeys.write_keyring(repo, changes, repo.actor(identities), ahead_of_branch=False)
    result.written = sorted(changes)
    return result


def rewrap_merged(repo: Core, identities: Sequence[crypto.Identity], done: KeyringSync) -> None:
    """Wrap the keys merged from both sides again, to the readers at HEAD once this
    clone's commits are replayed: the merged registry and open fields decide, which
    neither side's alone may match (a supervisor added on one side, a reassignment on
    the other)."""
    if not done.merged:
        return
    repo.reload_config()  # HEAD moved: the merged registry decides
    head = repo.git.head()
    changes: dict[str, Mapping[str, bytes] | None] = {}
    for case_id, key in done.merged.items():
        fields = _open_fields(repo, case_id, head)
        if fields is not None:
            changes[case_id] = casekeys.wrapped(repo, key, fields)
    if changes:
        casekeys.write_keyring(repo, changes, repo.actor(identities), ahead_of_branch=False)


def push(repo: Core, remote: str) -> bool:
    """Push every shard that differs from the central one, replacing it, in a push of its
    own (so the central receives the keyring's objects in a pack of their own). Returns
    whether anything was pushed."""
    git = repo.git
    central = _remote_heads(repo, remote)
    specs = [
        f"+{commit}:{ref.KEYRING_PREFIX}{shard}"
        for shard, commit in sorted(ref.heads(git).items())
        if central.get(shard) != commit
    ]
    if not specs:
        return False
    git.run("push", "-q", "--no-verify", remote, *specs)
    return True


def remember(repo: Core) -> None:
    """Note the keyring as it now is on both sides (each case folder's tree id), the base
    of the next sync's merge. Only the shards that moved since the last note are read."""
    git = repo.git
    path = git.git_dir / "cmgit" / BASE_FILE
    shards: dict[str, str] = {}
    cases: dict[str, dict[str, str]] = {}
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except FileNotFoundError:
        lines = []
    for line in lines:
        name, _, oid = line.partition(" ")
        if ref.SHARD_RE.fullmatch(name):
            shards[name] = oid
        elif ids.CASE_ID_RE.fullmatch(name):
            cases.setdefault(ids.bucket(name), {})[name] = oid
    now = ref.heads(git)
    if not now and not lines:
        return  # a programme without case keys
    for shard, commit in now.items():
        if shards.get(shard) != commit:
            cases[shard] = _folders(repo, commit, shard)
    out = [f"{shard} {commit}\n" for shard, commit in sorted(now.items())]
    out += [
        f"{case_id} {tree}\n"
        for shard in sorted(now)
        for case_id, tree in sorted(cases.get(shard, {}).items())
    ]
    path.parent.mkdir(exist_ok=True)
    write_atomic(path, "".join(out).encode("ascii"))


def _read_base(repo: Core) -> dict[str, str]:
    """Each case's folder tree in the central keyring as this clone last synced it."""
    try:
        text = (repo.git.git_dir / "cmgit" / BASE_FILE).read_text(encoding="ascii")
    except FileNotFoundError:
        return {}
    pairs = (line.partition(" ") for line in text.splitlines())
    return {name: oid for name, _, oid in pairs if ids.CASE_ID_RE.fullmatch(name)}


def _remote_heads(repo: Core, remote: str) -> dict[str, str]:
    """The central keyring's shard commits, by shard, from one `git ls-remote`."""
    out = repo.git.text("ls-remote", "--refs", remote, f"{ref.KEYRING_PREFIX}*")
    found = {}
    for line in out.splitlines():
        oid, name = line.split()
        shard = name.removeprefix(ref.KEYRING_PREFIX)
        if ref.SHARD_RE.fullmatch(shard):
            found[shard] = oid
    return found


def _folders(repo: Core, commit: str, shard: str) -> dict[str, str]:
    """The case folders of one shard commit: case ID to tree id."""
    tree = repo.git.objects.tree(repo.git.objects.commit_tree(commit))
    return {
        name: oid
        for name, (mode, oid) in tree.items()
        if mode == TREE_MODE and ids.CASE_ID_RE.fullmatch(name) and ids.bucket(name) == shard
    }


def _erased(repo: Core, case_id: str, at: str | None) -> bool:
    return at is not None and casekeys.erased_at(repo.git, case_id, at)


def _union(
    repo: Core,
    case_id: str,
    identities: Sequence[crypto.Identity],
    ours: Mapping[str, bytes],
) -> wrap.CaseKey:
    """Every generation of this clone's key and the central one (now in the keyring), in
    order, and a fresh one newest."""
    try:
        mine = wrap.unwrap(ours, case_id, identities)
        theirs = casekeys.open_key(repo, case_id, identities)
    except NotARecipient:
        raise RepositoryError(
            f"this clone and the central repository both changed who holds the key of "
            f"{case_id}, and only one of its readers can merge the two",
            case_id=case_id,
            hint="a supervisor or programme manager who reads the case runs cmgit sync "
            "in this clone",
        ) from None
    secrets = list(dict.fromkeys([*theirs.secrets, *mine.secrets]))
    return wrap.rotate(wrap.CaseKey(case_id=case_id, secrets=tuple(secrets)))


def _wrapped(repo: Core, key: wrap.CaseKey, case_id: str, at: str | None) -> dict[str, bytes]:
    """``key`` wrapped to the readers of the case at ``at`` (else at HEAD)."""
    fields = _open_fields(repo, case_id, at) or _open_fields(repo, case_id, repo.git.head())
    if fields is None:
        raise RepositoryError(
            f"the keyring holds a key for {case_id}, which neither this clone nor the "
            "central branch has",
            case_id=case_id,
            hint="run cmgit sync again once the office that made it has synced",
        )
    return casekeys.wrapped(repo, key, fields)


def _open_fields(repo: Core, case_id: str, at: str | None) -> dict[str, object] | None:
    """A case's open fields in the commit ``at``; None where it has no record there (or
    not one of record format 2, which alone has a key)."""
    blob = repo.git.blob_id(at, ids.record_path(case_id)) if at else None
    if blob is None:
        return None
    try:
        return entries.parse_open_file(repo.git.read_blob(blob), repo.schemas.open_fields)
    except CmgitError:
        return None
