"""What keyless reads remember between runs, in ``.git/cmgit/cache/``.

Every entry is named by the git object it was derived from: a bucket folder's tree id
names the open fields of the records in it, a commit id names the state changes up to
it. An entry can therefore be missing but never stale, and a run costs what changed
since the last one, not the size of the programme. Nothing here is personal: open fields
and commit trailers are what anyone with the repository reads without a key.

The files are written atomically (temporary file, then rename), so concurrent commands
can only lose each other's work, never corrupt it; a file that does not load is ignored.
"""

from __future__ import annotations

import contextlib
import marshal
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import ids, pool, records
from .errors import CmgitError
from .history import TREE_MODE, Git, object_id, write_atomic
from .progress import SILENT, Progress

FORMAT = 2
OPEN_FIELDS_FILE = "open-fields"
CHANGES_FILE = "changes"
# Below this many records to read, a second process costs more than it saves.
PARALLEL_FROM = 2000

# A record's open fields as stored: a tuple in the schema's field order, or None for a
# file that is not a readable record.
Values = tuple[Any, ...] | None
Bucket = tuple[str, dict[str, tuple[str, Values]]]  # tree id, name -> (blob id, values)


def _cache_file(git: Git, name: str) -> Path:
    return git.git_dir / "cmgit" / "cache" / name


def remembered(git: Git, name: str, key: tuple[Any, ...]) -> Any:
    """The value last remembered under ``name`` if it was for ``key``, else None."""
    try:
        # marshal: several times faster to load than JSON (and loads() of the whole file
        # many times faster than load() from a handle). The file is in .git, where whoever
        # can write it can also write hooks: it is trusted as far as .git is.
        stored = marshal.loads(_cache_file(git, name).read_bytes())  # noqa: S302
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if not isinstance(stored, tuple) or len(stored) != 2 or stored[0] != (FORMAT, *key):
        return None
    return stored[1]


def remember(git: Git, name: str, key: tuple[Any, ...], value: Any) -> None:
    """Remember ``value`` under ``name`` for ``key``. A cache that cannot be written is only
    slower, and a value marshal cannot store is not remembered."""
    path = _cache_file(git, name)
    with contextlib.suppress(OSError, ValueError):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, marshal.dumps(((FORMAT, *key), value)), mode=0o600)


# -- open fields of every record ----------------------------------------------------------

def open_fields(git: Git, commit: str, order: Sequence[str],
                progress: Progress = SILENT) -> dict[str, dict[str, Any]]:
    """Open fields of every record committed in ``commit``, by case ID.

    Records that cannot be read, or whose file holds another case, are left out: `cmgit
    validate` and `cmgit audit` report them.
    """
    order = tuple(order)
    return {case_id: dict(zip(order, values, strict=True))
            for case_id, values in open_rows(git, commit, order, progress).items()}


def open_rows(git: Git, commit: str, order: Sequence[str],
              progress: Progress = SILENT) -> dict[str, tuple[Any, ...]]:
    """As `open_fields`, each record's fields as a tuple in ``order``: for reads of every
    case, where building a mapping per case would cost more than the rest."""
    order = tuple(order)
    cached: dict[str, Bucket] = remembered(git, OPEN_FIELDS_FILE, (order,)) or {}
    root = git.objects.tree(git.objects.commit_tree(commit))
    entry = root.get(ids.RECORDS_DIR)
    buckets: dict[str, Bucket] = {}
    if entry is not None and entry[0] == TREE_MODE:
        buckets = _buckets(git, entry[1], cached, order, progress)
    if buckets != cached:
        remember(git, OPEN_FIELDS_FILE, (order,), buckets)
    suffix = len(ids.RECORD_SUFFIX)
    return {name[:-suffix]: values for _, names in buckets.values()
            for name, (_, values) in names.items() if values is not None}


def _buckets(git: Git, records_tree: str, cached: dict[str, Bucket], order: tuple[str, ...],
             progress: Progress) -> dict[str, Bucket]:
    """The buckets of ``records_tree``, reusing every cached bucket and blob still there."""
    buckets: dict[str, Bucket] = {}
    missing: dict[str, list[tuple[str, str]]] = {}  # blob id -> [(bucket, name)]
    listing = git.objects.tree(records_tree)
    changed = [b for b, (mode, tree_id) in listing.items()
               if mode == TREE_MODE and (b not in cached or cached[b][0] != tree_id)]
    # Many folders to read (the first run): one `git ls-tree` lists them all at once;
    # a few (a later run): one tree each from the object reader.
    trees = _list_buckets(git, records_tree) if len(changed) > 64 else {}
    for bucket, (mode, tree_id) in listing.items():
        if mode != TREE_MODE:
            continue
        old = cached.get(bucket)
        if old is not None and old[0] == tree_id:
            buckets[bucket] = old
            continue
        known = old[1] if old else {}
        names: dict[str, tuple[str, Values]] = {}
        entries = trees.get(bucket)
        if entries is None:
            entries = git.objects.tree(tree_id)
        for name, (entry_mode, oid) in entries.items():
            case_id = ids.case_id_from_path(f"{ids.RECORDS_DIR}/{bucket}/{name}")
            if case_id is None or entry_mode not in ("100644", "100755"):
                continue
            previous = known.get(name)
            if previous is not None and previous[0] == oid:
                names[name] = previous
            else:
                names[name] = (oid, None)
                missing.setdefault(oid, []).append((bucket, name))
        buckets[bucket] = (tree_id, names)
    if missing:
        wanted = [(oid, f"{ids.RECORDS_DIR}/{at[0][0]}/{at[0][1]}")
                  for oid, at in missing.items()]
        for oid, values in _read_values(git, wanted, order, progress):
            for bucket, name in missing[oid]:
                case_id = name[: -len(ids.RECORD_SUFFIX)]
                bound = values is not None and values[order.index("case_id")] == case_id
                buckets[bucket][1][name] = (oid, values if bound else None)
    return buckets


def _list_buckets(git: Git, records_tree: str) -> dict[str, dict[str, tuple[str, str]]]:
    """Entries of every bucket folder of ``records_tree``, from one `git ls-tree -r`."""
    found: dict[str, dict[str, tuple[str, str]]] = {}
    for entry in git.ls_tree(records_tree):
        bucket, sep, name = entry.path.partition("/")
        if sep and "/" not in name:
            found.setdefault(bucket, {})[name] = (entry.mode, entry.oid)
    return found


def _read_values(git: Git, oids: list[tuple[str, str]], order: tuple[str, ...],
                 progress: Progress) -> list[tuple[str, Values]]:
    """Parse the open fields of many blobs, given with a path where each may be checked
    out, on every core when there are many."""
    with progress.task("Reading open fields", len(oids)) as advance:
        if len(oids) < PARALLEL_FROM or pool.workers() < 2:
            found = _parse_blobs((git.root, oids, order))
            advance(len(oids))
            return found
        size = -(-len(oids) // (pool.workers() * 4))
        jobs = ((git.root, oids[i:i + size], order) for i in range(0, len(oids), size))
        found = []
        for part in pool.fork_map(_parse_blobs, jobs):
            found.extend(part)
            advance(len(part))
        return found


def _parse_blobs(job: tuple[Path, list[tuple[str, str]], tuple[str, ...]],
                 ) -> list[tuple[str, Values]]:
    """The open fields of each blob of ``job``: root, (blob id, path) pairs, field order.
    A checked-out file whose bytes hash to the blob's id is the blob: read from the work
    tree, it costs a fraction of inflating it from git."""
    root, wanted, order = job
    out: list[tuple[str, Values]] = []
    from_git = []
    for oid, path in wanted:
        data = _checked_out(root / path, oid)
        if data is None:
            from_git.append(oid)
        else:
            out.append((oid, _values(data, order)))
    for oid, blob in Git(root).stream_blobs(from_git, records.MAX_RECORD_FILE):
        out.append((oid, None if blob is None else _values(blob, order)))
    return out


def _checked_out(path: Path, oid: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > records.MAX_RECORD_FILE:
            return None
        data = handle.read(size + 1)  # read(n) sets aside n bytes: ask for what is there
    return data if object_id("blob", data) == oid else None


def _values(data: bytes, order: tuple[str, ...]) -> Values:
    try:
        fields = records.parse_open_fields(data, order)
    except CmgitError:
        return None
    return tuple(fields[name] for name in order)


# -- state changes in history ---------------------------------------------------------------

Change = tuple[str, str, str | None, str]  # case ID, day (ISO), from state, to state


def state_changes(git: Git, commit: str) -> list[Change]:
    """Every change of state recorded in the history up to ``commit``, oldest first, read
    from commit trailers; remembered, so a later run reads only the newer commits."""
    cached = remembered(git, CHANGES_FILE, ())
    since: str | None = None
    known: list[Change] = []
    if cached is not None:
        if cached[0] == commit:
            return list(cached[1])
        if git.is_ancestor(cached[0], commit):
            since, known = cached[0], list(cached[1])
    rev = f"{since}..{commit}" if since else commit
    # Every case commit names its case and new state in trailers, so no path limit is
    # needed (one would make git compare trees for every commit), and git itself picks
    # the four trailers out of each message.
    pieces = git.stream("log", "--format=%x1e%aI%x1f%(trailers:key=Cmgit-Case,"
                        "key=Cmgit-Action,key=Cmgit-From,key=Cmgit-To,key=Cmgit-Date,"
                        "separator=%x1f)", rev, separator=b"\x1e")
    newest_first = []
    for piece in pieces:
        when, *lines = piece.decode("utf-8", "replace").strip("\n").split("\x1f")
        trailers = dict(line.split(": ", 1) for line in lines if ": " in line)
        case, target = trailers.get("Cmgit-Case"), trailers.get("Cmgit-To")
        # Only `new` and `move` change state; a Cmgit-To on anything else is forged.
        if trailers.get("Cmgit-Action") not in ("new", "move"):
            continue
        if case and target and ids.CASE_ID_RE.fullmatch(case):
            day = trailers.get("Cmgit-Date") or when[:10]
            newest_first.append((case, day, trailers.get("Cmgit-From"), target))
    # Read newest first and turned here: `git log --reverse` holds the whole history.
    known.extend(reversed(newest_first))
    remember(git, CHANGES_FILE, (), (commit, known))
    return known

