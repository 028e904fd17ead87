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
import re
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from . import ids, pool, records
from .errors import CmgitError, GitFailed
from .history import TREE_MODE, Git, object_digest, object_id, write_atomic
from .progress import SILENT, Progress

FORMAT = 3
OPEN_FIELDS_FILE = "open-fields"
CHANGES_FILE = "changes"
# Below this many records to read, a second process costs more than it saves.
PARALLEL_FROM = 2000
# From this many changed folders (a first run), all are listed and read at once.
LIST_ALL_FROM = 64

# A record's open fields as stored: a tuple in the schema's field order, or None for a
# file that is not a readable record.
Values = tuple[Any, ...] | None
# A bucket folder: its tree id, the blob ids of its record files (20 bytes each, in one
# string: a first run stores 100,000 of them) and their open fields, in the same order.
Bucket = tuple[str, bytes, tuple[Values, ...]]
# A folder as checked out: the case IDs of its record files in git's order, their blob ids
# as in a bucket, and their open fields, each bound to its file's name.
Scanned = tuple[tuple[str, ...], bytes, tuple[Values, ...]]


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


def open_rows(
    git: Git, commit: str, order: Sequence[str], progress: Progress = SILENT
) -> list[tuple[Any, ...]]:
    """Open fields of every record committed in ``commit``, each a tuple in ``order`` (its
    case ID among them), in path order: a mapping per case would cost a read of every case
    more than the rest.

    Records that cannot be read, or whose file holds another case, are left out: `cmgit
    validate` and `cmgit audit` report them.
    """
    order = tuple(order)
    cached: dict[str, Bucket] = remembered(git, OPEN_FIELDS_FILE, (order,)) or {}
    root = git.objects.tree(git.objects.commit_tree(commit))
    entry = root.get(ids.RECORDS_DIR)
    buckets: dict[str, Bucket] = {}
    if entry is not None and entry[0] == TREE_MODE:
        buckets = _buckets(git, commit, entry[1], cached, order, progress)
    if buckets != cached:  # unchanged buckets are the cached objects: compared by identity
        remember(git, OPEN_FIELDS_FILE, (order,), buckets)
    return [row for _, _, rows in buckets.values() for row in rows if row is not None]


def _buckets(
    git: Git,
    commit: str,
    records_tree: str,
    cached: dict[str, Bucket],
    order: tuple[str, ...],
    progress: Progress,
) -> dict[str, Bucket]:
    """The buckets of ``records_tree`` (that of ``commit``), reusing every cached bucket
    and blob still there."""
    folders = {
        bucket: tree_id
        for bucket, (mode, tree_id) in git.objects.tree(records_tree).items()
        if mode == TREE_MODE
    }
    changed = [b for b, tree_id in folders.items() if b not in cached or cached[b][0] != tree_id]
    checked_out: dict[str, Scanned] = {}
    if len(changed) >= LIST_ALL_FROM:
        # Many folders to read (a first run): every core reads their checked-out files
        # while git lists what is committed in them.
        listed, checked_out = _read_folders(git, commit, changed, order, progress)
    else:
        listed = {
            bucket: _record_blobs(bucket, git.objects.tree(folders[bucket]).items())
            for bucket in changed
        }
    at = order.index("case_id")
    blobs: dict[str, bytes] = {}
    rows: dict[str, Sequence[Values]] = {}
    missing: dict[str, list[tuple[str, int, str]]] = {}  # blob id -> [(bucket, row, case ID)]
    for bucket in changed:
        entries = listed.get(bucket, {})
        blobs[bucket] = b"".join(map(bytes.fromhex, entries.values()))
        scanned = checked_out.get(bucket)
        if scanned is not None and scanned[:2] == (tuple(entries), blobs[bucket]):
            # Checked out as committed (after a clone, every folder): the files' bytes are
            # the blobs, read and bound to their names by the workers.
            rows[bucket] = scanned[2]
            continue
        old = cached.get(bucket)
        known = dict(zip(_blob_ids(old[1]), old[2], strict=True)) if old else {}
        seen: dict[str, tuple[str, Values]] = {}
        if scanned is not None:
            seen = {
                case_id: (oid, values)
                for case_id, oid, values in zip(
                    scanned[0], _blob_ids(scanned[1]), scanned[2], strict=True
                )
            }
        found: list[Values] = []
        for case_id, oid in entries.items():
            values = known.get(oid)
            if values is None:
                checked = seen.get(case_id)
                if checked is not None and checked[0] == oid:
                    values = checked[1]
                else:
                    missing.setdefault(oid, []).append((bucket, len(found), case_id))
            found.append(_bound(values, case_id, at))
        rows[bucket] = found
    if missing:
        wanted = [(oid, ids.record_path(places[0][2])) for oid, places in missing.items()]
        for oid, values in _read_values(git, wanted, order, progress):
            for bucket, row, case_id in missing[oid]:
                # (a list: only folders not read whole from their files miss any)
                rows[bucket][row] = _bound(values, case_id, at)  # type: ignore[index]
    return {
        bucket: (tree_id, blobs[bucket], tuple(rows[bucket])) if bucket in rows else cached[bucket]
        for bucket, tree_id in folders.items()
    }


def _blob_ids(packed: bytes) -> list[str]:
    return [packed[n : n + 20].hex() for n in range(0, len(packed), 20)]


def _bound(values: Values, case_id: str, at: int) -> Values:
    """``values`` if they are the record of ``case_id``; a file holding another case's
    record is not that case, and is left out."""
    return values if values is not None and values[at] == case_id else None


def _read_folders(
    git: Git, commit: str, folders: list[str], order: tuple[str, ...], progress: Progress
) -> tuple[dict[str, dict[str, str]], dict[str, Scanned]]:
    """The record files committed in ``folders`` of ``commit``, and those checked out in
    them, read and hashed, both at once; by folder."""
    listed = pool.Background(lambda: _list_buckets(git, commit))
    checked_out: dict[str, Scanned] = {}
    with progress.task("Reading open fields", len(folders)) as advance:
        size = -(-len(folders) // (pool.workers() * 4))
        jobs = [(str(git.root), folders[i : i + size], order) for i in range(0, len(folders), size)]
        parts = (
            pool.fork_map(_scan_folders, jobs) if pool.workers() > 1 else map(_scan_folders, jobs)
        )
        for job, part in zip(jobs, parts, strict=True):
            for bucket, case_ids, oids, rows in part:
                checked_out[bucket] = (case_ids, oids, rows)
            advance(len(job[1]))
    return listed.result(), checked_out


def _scan_folders(
    job: tuple[str, list[str], tuple[str, ...]],
) -> list[tuple[str, tuple[str, ...], bytes, tuple[Values, ...]]]:
    """Each folder of ``job`` (root, folder names, field order) as checked out."""
    root, folders, order = job
    at = order.index("case_id")
    suffix = len(ids.RECORD_SUFFIX)
    found = []
    for bucket in folders:
        folder = os.path.join(root, ids.RECORDS_DIR, bucket)
        try:
            names = sorted(os.listdir(folder))  # git's order, for names of one length
        except OSError:
            continue
        case_ids, oids, rows = [], [], []
        for name in names:
            if name.endswith(ids.RECORD_SUFFIX):
                data = _read_small(os.path.join(folder, name))
                if data is not None:
                    case_id = name[:-suffix]
                    case_ids.append(case_id)
                    oids.append(object_digest("blob", data))
                    rows.append(_bound(_values(data, order), case_id, at))
        found.append((bucket, tuple(case_ids), b"".join(oids), tuple(rows)))
    return found


# A record file in `git ls-tree -r -z` output (mode, "blob", id) and in `git ls-files -s -z`
# output (mode, id, stage 0): blob id, folder, case ID. Anchored at an entry's start (after
# NUL), so no file name can pass for an entry of its own.
_RECORD_PATH = rf"\t{ids.RECORD_PATH_PATTERN}\0"
_TREE_RECORD_RE = re.compile(r"(?:^|(?<=\0))(?:100644|100755) blob ([0-9a-f]{40})" + _RECORD_PATH)
_INDEX_RECORD_RE = re.compile(r"(?:^|(?<=\0))(?:100644|100755) ([0-9a-f]{40}) 0" + _RECORD_PATH)
_UNMERGED_RE = re.compile(r"(?:^|(?<=\0))[0-7]{6} [0-9a-f]{40} [123]\t")


def _list_buckets(git: Git, commit: str) -> dict[str, dict[str, str]]:
    """The record files of every bucket folder committed in ``commit``, read with one
    regular expression: a first run lists 100,000 of them. From the index, which after a
    checkout holds the committed files, with `git diff-index` naming where it does not;
    `git ls-tree` would read every folder's tree instead, at several times the cost."""
    try:
        listing = git.run("ls-files", "-s", "-z", "--", ids.RECORDS_DIR + "/").decode(
            "utf-8", "surrogateescape"
        )
        changed = git.run(
            "diff-index",
            "--cached",
            "--raw",
            "-z",
            "--no-renames",
            commit,
            "--",
            ids.RECORDS_DIR + "/",
        ).decode("utf-8", "surrogateescape")
    except GitFailed:  # no index (a bare repository)
        listing, changed = "", None
    # Substrings first: the expression alone would cost more than the whole listing.
    if changed is None or (
        any(f" {stage}\t" in listing for stage in "123") and _UNMERGED_RE.search(listing)
    ):
        tree = git.run("ls-tree", "-r", "-z", commit, "--", ids.RECORDS_DIR + "/")
        return _by_bucket(_TREE_RECORD_RE.findall(tree.decode("utf-8", "surrogateescape")))
    found = _by_bucket(_INDEX_RECORD_RE.findall(listing))
    fields = changed.split("\0")
    for meta, path in zip(fields[0:-1:2], fields[1::2], strict=True):
        case_id = ids.case_id_from_path(path)
        if case_id is None:
            continue
        bucket = ids.bucket(case_id)
        old_mode, _, old_oid, _, status = meta.lstrip(":").split(" ")
        names = found.setdefault(bucket, {})
        names.pop(case_id, None)
        if status != "A" and old_mode in ("100644", "100755"):  # in the commit
            names[case_id] = old_oid
        elif not names:
            del found[bucket]
    return found


def _by_bucket(entries: list[tuple[str, str, str]]) -> dict[str, dict[str, str]]:
    """(blob id, folder, case ID) found by a listing, as blob ids by folder and case ID."""
    found: dict[str, dict[str, str]] = {}
    for oid, folder, case_id in entries:
        found.setdefault(folder, {})[case_id] = oid
    return found


def _record_blobs(
    bucket: str,
    entries: Iterable[tuple[str, tuple[str, str]]],
) -> dict[str, str]:
    """Case ID -> blob id of the record files among a bucket folder's entries."""
    suffix = len(ids.RECORD_SUFFIX)
    return {
        name[:-suffix]: oid
        for name, (mode, oid) in entries
        if mode in ("100644", "100755")
        and ids.case_id_from_path(f"{ids.RECORDS_DIR}/{bucket}/{name}") is not None
    }


def _read_values(
    git: Git, oids: list[tuple[str, str]], order: tuple[str, ...], progress: Progress
) -> list[tuple[str, Values]]:
    """Parse the open fields of many blobs, given with a path where each may be checked
    out, on every core when there are many."""
    with progress.task("Reading open fields", len(oids)) as advance:
        if len(oids) < PARALLEL_FROM or pool.workers() < 2:
            found = _parse_blobs((git.root, oids, order))
            advance(len(oids))
            return found
        size = -(-len(oids) // (pool.workers() * 4))
        jobs = ((git.root, oids[i : i + size], order) for i in range(0, len(oids), size))
        found = []
        for part in pool.fork_map(_parse_blobs, jobs):
            found.extend(part)
            advance(len(part))
        return found


def _parse_blobs(
    job: tuple[Path, list[tuple[str, str]], tuple[str, ...]],
) -> list[tuple[str, Values]]:
    """The open fields of each blob of ``job``: root, (blob id, path) pairs, field order.
    A checked-out file whose bytes hash to the blob's id is the blob: read from the work
    tree, it costs a fraction of inflating it from git."""
    root, wanted, order = job
    out: list[tuple[str, Values]] = []
    from_git = []
    for oid, path in wanted:
        data = _checked_out(os.path.join(root, path), oid)
        if data is None:
            from_git.append(oid)
        else:
            out.append((oid, _values(data, order)))
    for oid, blob in Git(root).stream_blobs(from_git, records.MAX_RECORD_FILE):
        out.append((oid, None if blob is None else _values(blob, order)))
    return out


def _checked_out(path: str, oid: str) -> bytes | None:
    data = _read_small(path)
    return data if data is not None and object_id("blob", data) == oid else None


def _read_small(path: str) -> bytes | None:
    """A regular file's bytes, or None if it is missing, not a regular file (a link, or a
    FIFO, which would block a read) or larger than a record. os.read, not open(): a file
    object costs more than reading a small record."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        size = info.st_size
        if not stat.S_ISREG(info.st_mode) or size > records.MAX_RECORD_FILE:
            return None
        return os.read(fd, size + 1)  # read(n) sets aside n bytes: ask for what is there
    except OSError:
        return None
    finally:
        os.close(fd)


def _values(data: bytes, order: tuple[str, ...]) -> Values:
    try:
        return records.parse_open_values(data, order)
    except CmgitError:
        return None


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
    pieces = git.stream(
        "log",
        "--format=%x1e%aI%x1f%(trailers:key=Cmgit-Case,"
        "key=Cmgit-Action,key=Cmgit-From,key=Cmgit-To,key=Cmgit-Date,"
        "separator=%x1f)",
        rev,
        separator=b"\x1e",
    )
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
