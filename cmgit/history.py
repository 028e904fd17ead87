"""The git adapter: the only module that runs git.

git runs with a cleaned environment and list arguments, never through a shell, with
``--`` before paths. Commits are built from the changed blobs and trees with plumbing
(hash-object, mktree, commit-tree) and published by one compare-and-swap of the branch
ref: until that swap nothing is visible, so a failure or a kill leaves history as it was.
git's porcelain ``commit`` rewrites the whole index, which costs 250 ms at 50,000 files.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import itertools
import os
import re
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import IO, Any

from .errors import (
    GitFailed,
    NotACaseRepository,
    OperationInProgress,
    RepositoryBusy,
    RepositoryError,
    TooLarge,
)
from .faults import crash_point
from .trail import FORMAT_TRAILER, MESSAGE_FORM

ZERO_OID = "0" * 40
FSCK_SHOWN = 10
TREES_KEPT = 64  # decoded trees an object reader remembers
LOCK_TIMEOUT = float(os.environ.get("CMGIT_LOCK_TIMEOUT", "10"))
# The paths of a change whose branch may have moved before its index and work tree did.
PENDING_FILE = "pending-change"
# Refs a change moved ahead of its branch (the keyring), with the branch's commit then: a
# change killed before its branch followed has them put back (see `hold_refs`).
HELD_FILE = "held-refs"
SYNC_EACH_UP_TO = 64  # files a commit writes to the work tree flushed one by one


# Inside a server's pre-receive hook, pushed objects wait in a quarantine folder that git
# names through these; without them the hook could not read what it must check.
_RECEIVE_VARIABLES = frozenset(
    {"GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH"}
)


# git maps pack files in windows of up to 1 GiB and keeps up to 8 GiB mapped: reading a
# large history would show gigabytes resident. Below 256 MiB in all, git maps and unmaps
# windows over and over where it reads here and there (measured: `ls-tree` of 10,000
# records 4x slower); a read in pack order maps each window once, and does with half.
PACK_WINDOWS = ("32m", "256m")  # window size, most mapped at once
# git reads grafts from info/grafts whatever GIT_NO_REPLACE_OBJECTS says; pointed at a
# path that cannot exist (below a device, not a folder) it reads none, and says nothing.
NO_GRAFTS = os.path.join(os.devnull, "no-grafts")


def damage_report(oids: Sequence[str]) -> list[str]:
    """One line per damaged or missing object, at most ``FSCK_SHOWN`` of them named."""
    shown = [f"damaged or missing object {oid}" for oid in oids[:FSCK_SHOWN]]
    if len(oids) > FSCK_SHOWN:
        shown.append(f"and {len(oids) - FSCK_SHOWN} more damaged or missing objects")
    return shown


def _pass_over(stream: IO[bytes], size: int, digest: Any = None) -> None:
    """Read past ``size`` bytes of ``stream`` in pieces (memory stays flat), hashing them
    into ``digest`` if given."""
    while size and (piece := stream.read(min(1 << 20, size))):
        size -= len(piece)
        if digest is not None:
            digest.update(piece)


def _rev_parse(start: Path, *questions: str) -> list[str] | None:
    """git's one-line answers to ``questions``, then the objects folder and the object
    format; None where git refuses them."""
    facts = ("--git-path", "objects", "--show-object-format")
    proc = subprocess.run(
        ["git", "-C", str(start), "rev-parse", *questions, *facts],
        capture_output=True,
        env=clean_env(),
        check=False,
    )
    lines = proc.stdout.decode("utf-8", "surrogateescape").splitlines()
    return lines if proc.returncode == 0 and len(lines) == len(questions) + 2 else None


def clean_env(
    extra: Mapping[str, str] | None = None,
    *,
    windows: tuple[str, str] = PACK_WINDOWS,
    offline: bool = False,
) -> dict[str, str]:
    """The caller's environment without GIT_* variables that could redirect git, and with
    git's indirections off: a replace ref or a graft makes git show one commit in place of
    another, so what cmgit read (and audit passed) would not be what the history holds.

    ``offline`` forbids every transport: in a partial clone git fetches an object it
    lacks from the remote as soon as anything reads it, and git 2.39 has no switch for
    that but this one, which the fetch it starts inherits (the read then finds the
    object missing)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k in _RECEIVE_VARIABLES
    }
    env.update({"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"})
    env.update({"GIT_NO_REPLACE_OBJECTS": "1", "GIT_GRAFT_FILE": NO_GRAFTS})
    env.update(
        {
            "GIT_CONFIG_COUNT": "2",
            "GIT_CONFIG_KEY_0": "core.packedGitWindowSize",
            "GIT_CONFIG_VALUE_0": windows[0],
            "GIT_CONFIG_KEY_1": "core.packedGitLimit",
            "GIT_CONFIG_VALUE_1": windows[1],
        }
    )
    if offline:
        env.update(
            {
                "GIT_CONFIG_COUNT": "3",
                "GIT_CONFIG_KEY_2": "protocol.allow",
                "GIT_CONFIG_VALUE_2": "never",
            }
        )
    if extra:
        env.update(extra)
    return env


@dataclass(frozen=True)
class Author:
    name: str
    email: str


def actor_author(staff_id: str) -> Author:
    """Author and committer of a commit cmgit makes for ``staff_id``: the staff ID and an
    address made from it, nothing a person could be recognised by (SPEC section 8)."""
    return Author(staff_id, f"{staff_id}@cmgit.invalid")


@dataclass(frozen=True)
class Commit:
    oid: str
    when: str
    author: str
    message: str
    trailers: dict[str, list[str]]
    # "name <email>" of the author and of the committer, where the reader asked for them
    author_ident: str = ""
    committer_ident: str = ""

    def trailer(self, key: str) -> str | None:
        values = self.trailers.get(key)
        return values[-1] if values else None


def parse_trailers(message: str) -> dict[str, list[str]]:
    """The ``Cmgit-*`` trailers of a message (the last paragraph), by key."""
    found: dict[str, list[str]] = {}
    paragraphs = message.strip().split("\n\n")
    for line in paragraphs[-1].splitlines() if len(paragraphs) > 1 else ():
        key, sep, value = line.partition(": ")
        if sep and _TRAILER_KEY_RE.fullmatch(key):
            found.setdefault(key, []).append(value.strip())
    return found


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    kind: str
    oid: str
    path: str


# About one commit in this many refreshes the commit-graph, picked by its id so that no
# count needs keeping: between refreshes, git walks the newest commits unaided.
GRAPH_EVERY = 64


class Git:
    def __init__(self, root: Path, *, offline: bool = False):
        self.root = root
        # Never fetch a missing object (see `clean_env`): what audit reads of a partial
        # clone is what the clone holds.
        self.offline = offline

    # -- running -------------------------------------------------------------------

    def run(
        self,
        *args: str,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        ok: Sequence[int] = (0,),
    ) -> bytes:
        proc = subprocess.run(
            ["git", "-C", str(self.root), *args],
            input=input,
            capture_output=True,
            env=clean_env(env, offline=self.offline),
            check=False,
        )
        if proc.returncode not in ok:
            raise GitFailed(f"git {args[0]} failed (exit {proc.returncode})")
        return proc.stdout

    def fsck(self) -> list[str]:
        """The objects ``git fsck --strict`` finds damaged or missing, one line each (at
        most ``FSCK_SHOWN``); empty when it finds nothing wrong."""
        proc = subprocess.run(
            ["git", "-C", str(self.root), "fsck", "--strict", "--no-dangling", "--no-progress"],
            capture_output=True,
            env=clean_env(offline=self.offline),
            check=False,
        )
        output = (proc.stdout + proc.stderr).decode("utf-8", "replace")
        if proc.returncode == 0 and "error" not in output:
            return []
        named = list(dict.fromkeys(_NAMED_OID_RE.findall(output)))
        return damage_report(named) or ["git fsck found damage it could not tie to an object"]

    def text(self, *args: str, ok: Sequence[int] = (0,)) -> str:
        return self.run(*args, ok=ok).decode("utf-8", "replace").strip()

    @classmethod
    def discover(cls, start: Path, *, bare: bool = False) -> Git:
        """The repository around ``start``. A bare one (the central repository) only with
        ``bare``, for commands that read: every command that writes needs a work tree."""
        # One git process answers all a command will ask about the repository itself.
        lines = _rev_parse(start, "--show-toplevel", "--absolute-git-dir")
        if lines is None:
            found = _rev_parse(start, "--is-bare-repository", "--absolute-git-dir")
            if found is None or found[0] != "true":
                raise NotACaseRepository(
                    "not inside a git repository", hint="run cmgit init, or use -C DIR"
                )
            if not bare:
                raise NotACaseRepository(
                    "a bare repository has no work tree to change cases in",
                    hint="work in a clone of it; cmgit audit reads it as it is",
                )
            lines = [found[1], *found[1:]]  # its top level is the git folder itself
        git = cls(Path(lines[0]))
        git.__dict__["git_dir"] = Path(lines[1])
        git.__dict__["_repository_facts"] = (git.root / lines[2], lines[3])
        return git

    # -- reading ---------------------------------------------------------------------

    @cached_property
    def _repository_facts(self) -> tuple[Path, str]:
        """The objects folder and the object format."""
        folder = Path(self.root, self.text("rev-parse", "--git-path", "objects"))
        return folder, self.text("rev-parse", "--show-object-format")

    @cached_property
    def git_dir(self) -> Path:
        return Path(self.text("rev-parse", "--absolute-git-dir"))

    def incomplete_history(self) -> str | None:
        """ "shallow" or "partial" for a clone that lacks part of its history, else None."""
        if self.text("rev-parse", "--is-shallow-repository") == "true":
            return "shallow"
        return "partial" if self.is_partial() else None

    def is_partial(self) -> bool:
        """Whether objects may be missing here, promised by a remote (a partial clone)."""
        promisors = self.text("config", "--get-regexp", r"^remote\..*\.promisor$", ok=(0, 1))
        return bool(self.text("config", "--get", "extensions.partialclone", ok=(0, 1))) or any(
            line.split()[-1] == "true" for line in promisors.splitlines()
        )

    def blobs_written(self, rev: str) -> Iterator[tuple[str, str]]:
        """Every blob the history up to ``rev`` wrote, with its path, commit by commit
        (a blob written at several paths or times comes once for each)."""
        pieces = self.stream(
            "log", "--raw", "-z", "--no-renames", "--no-abbrev", "--format=", rev, separator=b"\0"
        )
        for piece in pieces:
            fields = piece.decode("ascii", "replace").lstrip("\n:").split()
            if len(fields) < 5:
                continue
            path = next(pieces, b"").decode("utf-8", "surrogateescape")
            if fields[1] in BLOB_MODES and fields[3] != "0" * 40:
                yield fields[3], path

    def missing_objects(self, *revs: str) -> frozenset[str]:
        """The objects ``revs`` reach that this clone lacks (a partial clone's promised
        ones): `rev-list --missing=print` lists them and never fetches one."""
        out = self.text("rev-list", "--objects", "--no-object-names", "--missing=print", *revs)
        return frozenset(line[1:] for line in out.splitlines() if line.startswith("?"))

    def head(self) -> str | None:
        """HEAD's commit. Read from the loose ref file when there is one, as git stores it
        (commands ask often, and a git process costs milliseconds); git itself answers
        everything else: packed refs, an unborn branch, a linked work tree."""
        ref = self.branch_ref()
        if ref is not None and not (self.git_dir / "commondir").exists():
            try:
                text = (self.git_dir / ref).read_text(encoding="ascii").strip()
            except (OSError, UnicodeDecodeError):
                text = ""
            if _OID_RE.fullmatch(text):
                return text
        out = self.text("rev-parse", "-q", "--verify", "HEAD^{commit}", ok=(0, 1))
        return out or None

    @cached_property
    def objects(self) -> Objects:
        return Objects(self)

    def close(self) -> None:
        """End the object reader, if one was started (the next read starts another): the
        reader and this object refer to each other, so without it the `git cat-file`
        process lives until a garbage collection."""
        objects = self.__dict__.get("objects")
        if objects is not None:
            objects.close()

    def forget_reader(self) -> None:
        """Start a new object reader on next use: a forked worker must not share its
        parent's `git cat-file` pipe."""
        self.__dict__.pop("objects", None)

    def blob_id(self, rev: str, path: str) -> str | None:
        """The blob at ``path`` in commit ``rev`` (HEAD or a commit id), or None."""
        commit = self.head() if rev == "HEAD" else rev
        if commit is None:
            return None
        entry = self.objects.lookup(commit, path)
        return entry[1] if entry and entry[0] in BLOB_MODES else None

    def path_entry(self, rev: str, path: str) -> tuple[str, str] | None:
        """(mode, object id) of ``path`` in commit ``rev``, or None."""
        commit = self.head() if rev == "HEAD" else rev
        return self.objects.lookup(commit, path) if commit else None

    def read_blob(self, oid: str, *, limit: int | None = None) -> bytes:
        """A blob's bytes; TooLarge, without reading it, if it is over ``limit``."""
        kind, data = self.objects.read(oid, limit=limit)
        if kind != "blob":
            raise GitFailed("expected a blob")
        return data

    def ls_tree(self, rev: str, *paths: str, recursive: bool = True) -> list[TreeEntry]:
        args = ["ls-tree", "-z", "--full-tree"]
        if recursive:
            args.append("-r")
        out = self.run(*args, rev, "--", *paths)
        entries = []
        for item in out.split(b"\0"):
            if item:
                meta, _, path = item.decode("utf-8", "surrogateescape").partition("\t")
                mode, kind, oid = meta.split(" ")
                entries.append(TreeEntry(mode, kind, oid, path))
        return entries

    def read_paths(self, commit: str, paths: Sequence[str]) -> dict[str, bytes | None]:
        """Contents of files in ``commit``, None where there is no file, read through the
        object reader: no git process of their own."""
        found: dict[str, bytes | None] = {}
        for path in paths:
            entry = self.objects.lookup(commit, path)
            found[path] = (
                self.read_blob(entry[1]) if entry is not None and entry[0] in BLOB_MODES else None
            )
        return found

    def files_under(self, commit: str, folder: str) -> list[str]:
        """Paths of the files in ``folder`` of ``commit`` and its subfolders, in git's
        order (as `git ls-tree -r`), read through the object reader."""
        found: list[str] = []

        def walk(prefix: str, tree: str) -> None:
            for name, (mode, oid) in self.objects.tree(tree).items():
                if mode == TREE_MODE:
                    walk(f"{prefix}/{name}", oid)
                elif mode in BLOB_MODES:
                    found.append(f"{prefix}/{name}")

        entry = self.objects.lookup(commit, folder)
        if entry is not None and entry[0] == TREE_MODE:
            walk(folder, entry[1])
        return found

    def stream_blobs(
        self, oids: Sequence[str], limit: int | None = None
    ) -> Iterator[tuple[str, bytes | None]]:
        """(oid, content) of many blobs, in order; None for what is not a blob or is over
        ``limit`` bytes."""
        for oid, kind, data in self.stream_objects(oids, limit):
            yield oid, data if kind == "blob" else None

    def stream_objects(
        self, oids: Sequence[str], limit: int | None = None
    ) -> Iterator[tuple[str, str, bytes]]:
        """(oid, type, content) of many objects, in order ("" and b"" for one that cannot be
        read or is over ``limit`` bytes, which is skipped unread), from a ``git cat-file
        --batch`` of their own, streamed: memory holds one object at a time."""
        if not oids:
            return
        with self._cat_file(oids) as stdout:
            for oid in oids:
                header = stdout.readline().split()
                if len(header) != 3:
                    yield oid, "", b""
                    continue
                size = int(header[2])
                if limit is not None and size > limit:
                    _pass_over(stdout, size + 1)
                    yield oid, "", b""
                    continue
                data = stdout.read(size + 1)[:-1]
                yield oid, header[1].decode("ascii", "replace"), data

    def read_checked(
        self, oids: Sequence[str], keep: Container[str], limit: int
    ) -> tuple[dict[str, bytes], list[str]]:
        """Many objects read in one stream, each hashed as it passes: what `git fsck`
        finds of them, for the cost of reading them. Returns the content of those
        ``keep`` names that are at most ``limit`` bytes, and the ids of those missing or
        whose content does not hash to their id."""
        kept: dict[str, bytes] = {}
        damaged: list[str] = []
        if not oids:
            return kept, damaged
        with self._cat_file(oids) as stdout:
            for oid in oids:
                header = stdout.readline().split()
                if len(header) != 3:
                    damaged.append(oid)
                    continue
                size = int(header[2])
                digest = hashlib.sha1(header[1] + b" " + header[2] + b"\0", usedforsecurity=False)
                if size <= limit and oid in keep:
                    data = stdout.read(size + 1)[:-1]
                    digest.update(data)
                    kept[oid] = data
                else:
                    _pass_over(stdout, size, digest)
                    stdout.read(1)
                if digest.hexdigest() != oid:
                    damaged.append(oid)
                    kept.pop(oid, None)
        return kept, damaged

    @contextlib.contextmanager
    def _cat_file(self, oids: Sequence[str]) -> Iterator[IO[bytes]]:
        """The output of a ``git cat-file --batch`` of ``oids``, fed from a thread so that
        neither side waits on a full pipe."""
        proc = subprocess.Popen(
            ["git", "-C", str(self.root), "cat-file", "--batch"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=clean_env(offline=self.offline),
        )
        assert proc.stdin is not None and proc.stdout is not None
        stdin, stdout = proc.stdin, proc.stdout

        def feed() -> None:
            with contextlib.suppress(BrokenPipeError):
                for start in range(0, len(oids), 4096):
                    stdin.write(
                        "".join(f"{oid}\n" for oid in oids[start : start + 4096]).encode("ascii")
                    )
                stdin.close()

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        try:
            yield stdout
        finally:
            stdout.close()
            proc.kill()
            proc.wait()
            writer.join()

    def stream(self, *args: str, separator: bytes) -> Iterator[bytes]:
        """The output of a git command cut at ``separator``, piece by piece as it comes:
        memory holds one piece, however long the output (a history of a million commits).
        Raises GitFailed at the end if git failed."""
        proc = subprocess.Popen(
            ["git", "-C", str(self.root), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=clean_env(offline=self.offline),
        )
        assert proc.stdout is not None
        rest = b""
        try:
            while chunk := proc.stdout.read(1 << 16):
                *pieces, rest = (rest + chunk).split(separator)
                yield from pieces
            if rest:
                yield rest
        finally:
            proc.stdout.close()
            if proc.wait() != 0 and proc.returncode > 0:
                raise GitFailed(f"git {args[0]} failed (exit {proc.returncode})")

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        """A git command running in the background, its output discarded."""
        return subprocess.Popen(
            ["git", "-C", str(self.root), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=clean_env(offline=self.offline),
        )

    def is_ancestor(self, older: str, newer: str) -> bool:
        # The common case, a commit some way back on a linear history, is found by walking
        # first parents through the object reader: `merge-base` in a clone without a
        # commit-graph paints the whole history (a third of a second at 30,000 commits).
        at = newer
        for _ in range(ANCESTOR_WALK if _OID_RE.fullmatch(older) else 0):
            if at == older:
                return True
            try:
                parents = self.objects.parents(at)  # refuses a name that is not an id
            except GitFailed:  # or not there (a shallow clone): git answers
                break
            if len(parents) != 1:
                break
            at = parents[0]
        try:
            self.run("merge-base", "--is-ancestor", older, newer)
        except GitFailed:
            return False
        return True

    def status(self, *paths: str) -> list[str]:
        """Paths with uncommitted changes (staged, unstaged or untracked) under ``paths``."""
        out = self.run("status", "--porcelain=v1", "-z", "--untracked-files=all", "--", *paths)
        found = []
        items = out.split(b"\0")
        skip = False
        for item in items:
            if skip:
                skip = False
                continue
            if item:
                found.append(item[3:].decode("utf-8", "replace"))
                skip = item[:1] in (b"R", b"C")  # renames carry a second path
        return found

    def log(self, *paths: str, rev: str = "HEAD") -> list[Commit]:
        """Commits touching ``paths``, oldest first, with their trailers parsed."""
        out = self.run("log", "--reverse", "--format=%H%x1f%aI%x1f%an%x1f%B%x1e", rev, "--", *paths)
        commits = []
        for chunk in out.decode("utf-8", "replace").split("\x1e"):
            chunk = chunk.strip("\n")
            if not chunk:
                continue
            oid, when, author, body = chunk.split("\x1f", 3)
            commits.append(Commit(oid, when, author, body, parse_trailers(body)))
        return commits

    def branch_ref(self) -> str | None:
        """The branch HEAD points at, read from HEAD itself; None when detached."""
        try:
            text = (self.git_dir / "HEAD").read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return text[5:] if text.startswith("ref: refs/heads/") else None

    def operation_in_progress(self) -> str | None:
        """A merge, rebase, cherry-pick or revert under way, or a detached HEAD."""
        git_dir = self.git_dir
        markers = {
            "MERGE_HEAD": "a merge",
            "rebase-merge": "a rebase",
            "rebase-apply": "a rebase or am",
            "CHERRY_PICK_HEAD": "a cherry-pick",
            "REVERT_HEAD": "a revert",
            "BISECT_LOG": "a bisect",
        }
        for name, what in markers.items():
            if (git_dir / name).exists():
                return what
        if self.branch_ref() is None:
            return "a detached HEAD"
        return None

    def check_no_operation(self) -> None:
        what = self.operation_in_progress()
        if what:
            raise OperationInProgress(
                f"repository has {what} in progress",
                hint="finish or abort it with git, then run the command again",
            )

    # -- writing ---------------------------------------------------------------------

    def hash_blob(self, data: bytes) -> str:
        return self.objects.write("blob", data)

    def _tree_entries(self, tree: str | None) -> dict[str, tuple[str, str]]:
        return {} if tree is None else self.objects.tree(tree)

    def _make_tree(self, entries: Mapping[str, tuple[str, str]]) -> str:
        return self.objects.write("tree", encode_tree(entries))

    def build_tree(self, base: str | None, changes: Mapping[str, str | None]) -> str | None:
        """A new tree: ``base`` with each path set to a blob id (or removed, for None).

        Only the trees on the changed paths are read and written, so the cost grows with
        the depth of the change, not with the number of records.
        """
        entries = self._tree_entries(base)
        nested: dict[str, dict[str, str | None]] = {}
        for path, oid in changes.items():
            head, sep, rest = path.partition("/")
            if sep:
                nested.setdefault(head, {})[rest] = oid
            elif oid is None:
                entries.pop(head, None)
            else:
                entries[head] = ("100644", oid)
        for name, sub_changes in nested.items():
            current = entries.get(name)
            sub_base = current[1] if current and current[0] == TREE_MODE else None
            sub_tree = self.build_tree(sub_base, sub_changes)
            if sub_tree is None:
                entries.pop(name, None)
            else:
                entries[name] = (TREE_MODE, sub_tree)
        if not entries:
            return None
        return self._make_tree(entries)

    def commit(
        self,
        files: Mapping[str, bytes | None],
        message: str,
        author: Author,
        parent: str | None,
        sign: Callable[[bytes], str] | None = None,
    ) -> str:
        """Create a commit of ``files`` on top of ``parent`` and move the branch to it.

        The branch moves only if it still points at ``parent`` (compare and swap), so a
        concurrent writer can never be overwritten. ``sign`` turns the commit's bytes into
        an armored signature, stored in a ``gpgsig`` header as git does. Returns the new
        commit id.
        """
        try:
            commit, blobs = self.make_commit(files, message, author, parent, sign)
            crash_point("objects-written")
            ref = self.branch_ref()
            if ref is None:
                raise OperationInProgress("HEAD is detached", hint="check out a branch first")
            # Written before the branch moves and removed once index and work tree follow:
            # a command killed in between leaves it, and the next one finishes the change.
            pending = self.git_dir / "cmgit" / PENDING_FILE
            pending.parent.mkdir(exist_ok=True)
            listing = "".join(f"{path}\0" for path in files).encode("utf-8")
            write_atomic(pending, listing, sync=False)
            try:
                self.run("update-ref", "-m", "cmgit", ref, commit, parent or ZERO_OID)
            except GitFailed:
                pending.unlink()  # the branch did not move: nothing to finish
                raise
        except BaseException:
            self.restore_held()  # refs moved ahead for this commit go back with it
            raise
        self._held_file().unlink(missing_ok=True)  # the branch followed: they stand
        crash_point("ref-updated")
        self._sync_worktree(blobs, files)
        crash_point("staged")
        pending.unlink()
        if int(commit[:8], 16) % GRAPH_EVERY == 0 and self.has_commit_graph():
            self.refresh_commit_graph()
        return commit

    def has_commit_graph(self) -> bool:
        info = self.git_dir / "objects" / "info"
        return (info / "commit-graph").exists() or (info / "commit-graphs").is_dir()

    def refresh_commit_graph(self) -> None:
        """Add the commits git's commit-graph lacks, with their changed-path filters: with
        them the history of one path (`cmgit log ID`, a page's last change) reads only the
        commits that may have touched it. A new layer holds just the new commits, so a
        refresh costs what they cost; the first, of a whole history, costs seconds at
        30,000 commits, and is made where a wait is expected (init, sync). It walks from
        the branches only: a keyring commit, deleted once replaced, must never be in the
        graph, or git would find the graph damaged."""
        with contextlib.suppress(GitFailed):  # a speed-up only: without it git walks unaided
            tips = self.run("rev-parse", "--branches", "--remotes")
            self.run(
                "commit-graph",
                "write",
                "--stdin-commits",
                "--changed-paths",
                "--split",
                "--no-progress",
                input=tips,
            )

    def hold_refs(self, moves: Mapping[str, tuple[str | None, str]]) -> None:
        """Note refs about to move (ref: (old, new)) ahead of a commit of the branch, with
        the branch's commit now. The next `commit` that moves the branch lets them stand;
        if the change is killed or fails before that, `restore_held` puts them back, so
        they never tell of a change the branch does not hold."""
        head = self.head() or ZERO_OID
        lines = [f"branch {head}"]
        lines += [f"{ref} {old or ZERO_OID} {new}" for ref, (old, new) in sorted(moves.items())]
        target = self._held_file()
        target.parent.mkdir(exist_ok=True)
        write_atomic(target, "".join(f"{line}\n" for line in lines).encode("ascii"))

    def restore_held(self) -> list[str]:
        """Put back the refs a change moved ahead of its branch, if the branch never moved
        after them (a ref moved again since is left alone); the caller holds the
        repository lock. Returns the refs put back."""
        target = self._held_file()
        try:
            lines = target.read_text(encoding="ascii").splitlines()
        except FileNotFoundError:
            return []
        back: dict[str, tuple[str | None, str]] = {}
        if lines and lines[0] == f"branch {self.head() or ZERO_OID}":
            for line in lines[1:]:
                ref, old, new = line.split(" ")
                if self.ref(ref) == new:
                    back[ref] = (new, old)
        if back:
            self.update_refs(back, reflog=False)
        target.unlink()
        return sorted(back)

    def _held_file(self) -> Path:
        return self.git_dir / "cmgit" / HELD_FILE

    def finish_pending(self) -> list[str]:
        """Bring index and work tree to HEAD for the paths of a change that was killed
        after (or just before) moving the branch, and put back the refs a change killed
        before it moved its branch had moved ahead of it; the caller holds the repository
        lock. A file changed by hand since is left alone for git. Returns the paths put
        right."""
        self.restore_held()
        pending = self.git_dir / "cmgit" / PENDING_FILE
        try:
            listing = pending.read_bytes()
        except FileNotFoundError:
            return []
        done = []
        head = self.head()
        for path in listing.decode("utf-8", "surrogateescape").split("\0"):
            if not path:
                continue
            target = self.root / path
            for stray in target.parent.glob(".cmgit-tmp-*"):
                stray.unlink()
            head_oid = self.blob_id(head, path) if head else None
            staged = self.text("ls-files", "-s", "-z", "--", path).split(" ")
            index_oid = staged[1] if len(staged) > 1 else None
            disk_oid = object_id("blob", target.read_bytes()) if target.is_file() else None
            if disk_oid not in (index_oid, head_oid):
                continue  # changed by hand since: leave it for the person to decide
            if disk_oid == index_oid == head_oid:
                continue
            data = self.read_blob(head_oid) if head_oid else None
            self._sync_worktree({path: head_oid}, {path: data})
            done.append(path)
        pending.unlink()
        return done

    def make_commit(
        self,
        files: Mapping[str, bytes | None],
        message: str,
        author: Author,
        parent: str | None,
        sign: Callable[[bytes], str] | None = None,
        *,
        base: str | None = None,
    ) -> tuple[str, dict[str, str | None]]:
        """The objects of a commit, not yet on any branch: its id and the blob ids. The
        tree is ``files`` applied to the tree of commit ``base`` (default: the parent), so
        a parentless commit can still change a few paths of an existing tree."""
        blobs = {
            path: None if data is None else self.hash_blob(data) for path, data in files.items()
        }
        tree_of = base or parent
        base_tree = self.objects.commit_tree(tree_of) if tree_of else None
        tree = self.build_tree(base_tree, blobs) or self._make_tree({})
        person = f"{author.name} <{author.email}> {int(time.time())} +0000"
        header = f"tree {tree}\n" + (f"parent {parent}\n" if parent else "")
        header += f"author {person}\ncommitter {person}\n"
        body = (header + "\n" + message).encode("utf-8")
        if sign is not None:
            signature = sign(body).replace("\n", "\n ")
            body = (header + f"gpgsig {signature}\n\n" + message).encode("utf-8")
        return self.objects.write("commit", body), blobs

    def changed(self, old: str, new: str) -> list[tuple[str, str | None]]:
        """(path, new blob id or None if removed) for every file that differs."""
        return [(path, after) for path, _, after in self._diff_tree(old, new)]

    def changed_objects(self, old: str, new: str) -> list[tuple[str, str | None, str | None]]:
        """(path, old id, new id) of every file and folder that differs between two
        commits' trees (`git diff-tree -r -t`), None on the side that has none: what a
        tree replaced by another no longer holds, found without listing either whole."""
        return self._diff_tree(old, new, "-t")

    def _diff_tree(
        self, old: str, new: str, *flags: str
    ) -> list[tuple[str, str | None, str | None]]:
        """(path, old id, new id) from `git diff-tree -r` and ``flags``, raw and -z."""
        out = self.run("diff-tree", "-r", *flags, "-z", "--no-renames", "--no-commit-id", old, new)
        parts = out.split(b"\0")
        found = []
        for meta, path in zip(parts[::2], parts[1::2], strict=False):
            fields = meta.decode("ascii").lstrip(":").split()
            before, after = (None if oid == ZERO_OID else oid for oid in fields[2:4])
            found.append((path.decode("utf-8", "surrogateescape"), before, after))
        return found

    # -- refs and packs --------------------------------------------------------------

    def ref(self, name: str) -> str | None:
        """The commit ``name`` points at, or None when there is no such ref."""
        return self.text("rev-parse", "-q", "--verify", f"{name}^{{commit}}", ok=(0, 1)) or None

    def update_refs(
        self, moves: Mapping[str, tuple[str | None, str]], *, reflog: bool = True
    ) -> None:
        """Move every ref of ``moves`` (ref: (old, new)) in one transaction, each only if it
        still points at its old commit (None: only if it does not exist yet): a compare and
        swap, all or none, so a concurrent writer is never overwritten. RepositoryBusy when
        any moved meanwhile. Without ``reflog`` no log of the refs is kept (git writes one
        only where configured to): a log would name commits that are meant to be gone."""
        lines = "".join(
            f"update {ref} {new} {old or ZERO_OID}\n" for ref, (old, new) in moves.items()
        )
        try:
            self.run("update-ref", "--stdin", input=lines.encode("ascii"))
        except GitFailed:
            if all(self.ref(ref) == old for ref, (old, _) in moves.items()):
                raise
            raise RepositoryBusy(
                "a ref moved while this command was changing it",
                hint="run the command again",
            ) from None
        if not reflog:
            for ref in moves:
                with contextlib.suppress(FileNotFoundError):
                    (self.objects.folder.parent / "logs" / ref).unlink()

    def pack_ids(self, name: str) -> set[str]:
        """The object ids in the pack ``name`` (pack-<checksum>) of the objects folder."""
        index = (self.objects.folder / "pack" / f"{name}.idx").read_bytes()
        out = self.run("show-index", input=index).decode("ascii")
        return {line.split()[1] for line in out.splitlines()}

    def write_pack(self, oids: Sequence[str]) -> str:
        """A new pack of exactly ``oids`` (each must be readable now) in the objects
        folder; returns its name, pack-<checksum>. No other pack is touched."""
        base = str(self.objects.folder / "pack" / "pack")
        listing = "".join(f"{oid}\n" for oid in oids).encode("ascii")
        out = self.run("pack-objects", "-q", base, input=listing)
        return "pack-" + out.decode("ascii").strip()

    def remove_pack(self, name: str) -> None:
        """Delete the pack ``name`` and its companion files, the index first so that git
        never finds a pack half gone; a multi-pack index naming it is written anew."""
        folder = self.objects.folder / "pack"
        for suffix in (".idx", ".pack", ".rev", ".bitmap", ".mtimes", ".promisor", ".keep"):
            with contextlib.suppress(FileNotFoundError):
                (folder / f"{name}{suffix}").unlink()
        if (folder / "multi-pack-index").exists():
            self.run("multi-pack-index", "write")

    def pack_names(self) -> set[str]:
        """The packs of the objects folder, by name (pack-<checksum>)."""
        return {path.stem for path in (self.objects.folder / "pack").glob("pack-*.idx")}

    def _sync_worktree(
        self, blobs: Mapping[str, str | None], files: Mapping[str, bytes | None]
    ) -> None:
        """Bring index and work tree to the new commit for the changed paths only."""
        # Many files (a migration, a re-encryption) are flushed to disk together, once:
        # one flush each would cost a journal commit each, most of such a command's time.
        each = len(files) <= SYNC_EACH_UP_TO
        for path, data in files.items():
            target = self.root / path
            if data is None:
                with contextlib.suppress(FileNotFoundError):
                    target.unlink()
            else:
                write_atomic(target, data, sync=each)
        if not each:
            os.sync()
        crash_point("file-written")
        # --add/--remove take each path from the work tree just written, with fresh stat
        # data, so `git status` has nothing to re-hash. -z: paths never need quoting.
        listing = "".join(f"{path}\0" for path in blobs).encode("utf-8")
        self.run("update-index", "--add", "--remove", "-z", "--stdin", input=listing)

    def init(self, branch: str = "main") -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.run("init", "-q", "-b", branch)


BLOB_MODES = ("100644", "100755")
TREE_MODE = "40000"


def encode_tree(entries: Mapping[str, tuple[str, str]]) -> bytes:
    """A git tree object's body. git orders entries by name, a tree's name as if it ended
    in "/", and mode and name are written as text, the object id as 20 raw bytes."""

    def order(name: str) -> bytes:
        raw = name.encode("utf-8", "surrogateescape")
        return raw + b"/" if entries[name][0] == TREE_MODE else raw

    return b"".join(
        f"{entries[name][0]} ".encode()
        + name.encode("utf-8", "surrogateescape")
        + b"\0"
        + bytes.fromhex(entries[name][1])
        for name in sorted(entries, key=order)
    )


def decode_tree(data: bytes) -> dict[str, tuple[str, str]]:
    entries = {}
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        nul = data.index(b"\0", space)
        mode = data[pos:space].decode("ascii")
        name = data[space + 1 : nul].decode("utf-8", "surrogateescape")
        entries[name] = (mode, data[nul + 1 : nul + 21].hex())
        pos = nul + 21
    return entries


class Objects:
    """git objects read through one long-lived ``git cat-file --batch`` and written as
    loose objects directly, as git itself writes them (zlib, SHA-1 name, write to a
    temporary file and rename). A process per object costs about 2 ms; this, microseconds.
    """

    def __init__(self, git: Git):
        self.git = git
        self.folder, object_format = git._repository_facts
        if object_format != "sha1":
            raise GitFailed("cmgit needs a repository with SHA-1 object names")
        self._reader: subprocess.Popen[bytes] | None = None
        self._trees: dict[str, dict[str, tuple[str, str]]] = {}

    def _batch(self) -> subprocess.Popen[bytes]:
        if self._reader is None or self._reader.poll() is not None:
            self._reader = subprocess.Popen(
                ["git", "-C", str(self.git.root), "cat-file", "--batch"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=clean_env(offline=self.git.offline),
            )
        return self._reader

    def read(self, oid: str, *, limit: int | None = None) -> tuple[str, bytes]:
        if not _OID_RE.fullmatch(oid):
            raise GitFailed("not an object id")
        proc = self._batch()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(oid.encode() + b"\n")
        proc.stdin.flush()
        header = proc.stdout.readline().split()
        if len(header) != 3:
            raise GitFailed("object not found")
        size = int(header[2])
        if limit is not None and size > limit:
            # Skip it in small pieces so the stream stays in step and memory flat.
            remaining = size + 1
            while remaining > 0:
                chunk = proc.stdout.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
            raise TooLarge(f"a committed file is larger than cmgit accepts ({size} bytes)")
        data = proc.stdout.read(size + 1)[:-1]
        return header[1].decode(), data

    def tree(self, oid: str) -> dict[str, tuple[str, str]]:
        """A tree's entries, a copy the caller may change. A command looks up paths
        through the same few trees many times (one holds 1,024 folders): decoded once."""
        entries = self._trees.get(oid)
        if entries is None:
            kind, data = self.read(oid)
            if kind != "tree":
                raise GitFailed("expected a tree")
            entries = decode_tree(data)
            if len(self._trees) >= TREES_KEPT:
                self._trees.clear()
            self._trees[oid] = entries
        return dict(entries)

    def signed_commit(self, commit: str) -> tuple[bytes, str | None]:
        """The bytes a commit's signature covers, and the armored signature (or None)."""
        kind, data = self.read(commit)
        if kind != "commit":
            raise GitFailed("expected a commit")
        return split_signature(data)

    def parents(self, commit: str) -> list[str]:
        kind, data = self.read(commit)
        if kind != "commit":
            raise GitFailed("expected a commit")
        headers = data.split(b"\n\n", 1)[0].split(b"\n")
        return [line[7:47].decode("ascii") for line in headers if line.startswith(b"parent ")]

    def commit_tree(self, commit: str) -> str:
        kind, data = self.read(commit)
        if kind != "commit" or not data.startswith(b"tree "):
            raise GitFailed("expected a commit")
        return data[5:45].decode("ascii")

    def lookup(self, commit: str, path: str) -> tuple[str, str] | None:
        """(mode, object id) at ``path`` in ``commit``, walking its trees."""
        mode, oid = TREE_MODE, self.commit_tree(commit)
        for part in path.split("/"):
            if mode != TREE_MODE:
                return None
            found = self.tree(oid).get(part)
            if found is None:
                return None
            mode, oid = found
        return mode, oid

    def write(self, kind: str, data: bytes) -> str:
        raw = f"{kind} {len(data)}".encode() + b"\0" + data
        oid = object_id(kind, data)
        target = self.folder / oid[:2] / oid[2:]
        if not target.exists():
            target.parent.mkdir(exist_ok=True)
            fd, tmp = new_temp_file(target.parent, "tmp_obj_")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(zlib.compress(raw, 1))
                os.chmod(tmp, 0o444)
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
        return oid

    def close(self) -> None:
        if self._reader is not None and self._reader.poll() is None:
            assert self._reader.stdin is not None
            self._reader.stdin.close()
            self._reader.wait()
        self._reader = None


_OID_RE = re.compile(r"[0-9a-f]{40}")
ANCESTOR_WALK = 1000  # commits walked in process before `is_ancestor` asks git


def split_signature(data: bytes) -> tuple[bytes, str | None]:
    """A commit object's bytes without its signature, and the armored signature (or None)."""
    head, sep, message = data.partition(b"\n\n")
    kept, signature, in_sig = [], [], False
    for line in head.split(b"\n"):
        if line.startswith(b"gpgsig "):
            in_sig = True
            signature.append(line[7:])
        elif in_sig and line.startswith(b" "):
            signature.append(line[1:])
        else:
            in_sig = False
            kept.append(line)
    payload = b"\n".join(kept) + sep + message
    text = b"\n".join(signature).decode("ascii", "replace") if signature else None
    return payload, text


def object_id(kind: str, data: bytes) -> str:
    """The id git gives ``data`` as an object of ``kind``, computed without writing it: a
    file changed by hand may hold plaintext, which must not become an object."""
    return object_digest(kind, data).hex()


def object_digest(kind: str, data: bytes) -> bytes:
    """`object_id` as its 20 bytes."""
    raw = f"{kind} {len(data)}".encode() + b"\0" + data
    return hashlib.sha1(raw, usedforsecurity=False).digest()


# An object id in git's messages; not a pack's own name (pack-<checksum>.pack).
_NAMED_OID_RE = re.compile(r"(?<![0-9a-f-])[0-9a-f]{40}(?![0-9a-f])")


def format_message(subject: str, trailers: Sequence[tuple[str, str]]) -> str:
    """A generated commit message (SPEC section 5): a subject and ``Cmgit-*`` trailers.

    Values are codes and IDs only (up to three, as a guard's code, result and override
    reason); anything else is a programming error, because free text in a commit message
    would be a plaintext leak (hostile B13).
    """
    if not _SUBJECT_RE.fullmatch(subject):
        raise ValueError("commit subject holds characters cmgit never writes")
    lines = [subject, ""]
    for key, value in trailers:
        if not _TRAILER_KEY_RE.fullmatch(key) or not _VALUE_RE.fullmatch(value):
            raise ValueError("commit trailer holds characters cmgit never writes")
        lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n"


def generated_message(subject: str, trailers: Sequence[tuple[str, str]]) -> str:
    """A message in the form cmgit writes now, which names itself last."""
    return format_message(subject, [*trailers, (FORMAT_TRAILER, MESSAGE_FORM)])


_WORD = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_VALUE_RE = re.compile(rf"{_WORD}(?: {_WORD}){{0,2}}")
_TRAILER_KEY_RE = re.compile(r"Cmgit-[A-Z][a-z]+")
_SUBJECT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.: >-]{0,119}")


_TEMP_NUMBERS = itertools.count()


def new_temp_file(folder: Path, prefix: str) -> tuple[int, str]:
    """A new file in ``folder`` (mode 0600, open for writing), named by this process and a
    count: what `tempfile.mkstemp` gives at a fifth of its cost, which a commit of ten
    thousand records (as many objects and work-tree files) feels. O_EXCL never opens a
    file or a symbolic link that is already there; a name left by a process that died is
    skipped."""
    while True:
        path = os.path.join(folder, f"{prefix}{os.getpid()}-{next(_TEMP_NUMBERS)}")
        try:
            flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue


def write_atomic(target: Path, data: bytes, mode: int = 0o644, *, sync: bool = True) -> None:
    """Write through a temporary file in the same folder and rename over the target."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = new_temp_file(target.parent, ".cmgit-tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def repository_lock(
    git_dir: Path, timeout: float = LOCK_TIMEOUT, *, wait_for_index: bool = True
) -> Iterator[None]:
    """Serialise cmgit writers on one clone. The kernel drops the lock if a process dies,
    so a killed command never leaves a stale cmgit lock behind. Then wait for git's own
    lock files (index, HEAD, branches) to go: one that no process holds is stale (a git
    command was killed)."""
    folder = git_dir / "cmgit"
    folder.mkdir(exist_ok=True)
    fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise RepositoryBusy(
                        "repository is busy: another cmgit command is running",
                        hint="wait for it to finish and try again",
                    ) from None
                time.sleep(0.05)
        if wait_for_index:
            _wait_for_git_locks(git_dir, deadline)
        yield
    finally:
        os.close(fd)


STALE_AFTER = 0.5


def lock_file_held(path: Path) -> bool | None:
    """Whether any process has ``path`` open (from /proc); None where that cannot be told."""
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return None
    wanted = os.path.realpath(path)
    for pid in proc.iterdir():
        if not pid.name.isdigit():
            continue
        try:
            fds = list((pid / "fd").iterdir())
        except OSError:
            continue  # gone, or another user's process
        for entry in fds:
            with contextlib.suppress(OSError):
                if os.readlink(entry) == wanted:
                    return True
    return False


def git_locks(git_dir: Path) -> list[Path]:
    """The lock files of git's that exist now, of those a cmgit change takes: the index,
    HEAD, and the branches (a git killed while it writes one leaves it behind)."""
    found = [git_dir / name for name in ("index.lock", "HEAD.lock", "packed-refs.lock")]
    found = [path for path in found if path.exists()]
    heads = git_dir / "refs" / "heads"
    return found + sorted(heads.rglob("*.lock")) if heads.is_dir() else found


def _wait_for_git_locks(git_dir: Path, deadline: float) -> None:
    """Wait for git's own lock files to go: one that no process holds is stale."""
    unheld_since: dict[Path, float] = {}
    while locks := git_locks(git_dir):
        now = time.monotonic()
        for lock in locks:
            name = lock.relative_to(git_dir).as_posix()
            if lock_file_held(lock) is False:
                # git holds a lock file open while it exists; allow a moment for the
                # instant between its open and its rename before calling it stale.
                if now - unheld_since.setdefault(lock, now) >= STALE_AFTER:
                    raise RepositoryError(
                        f"git's {name} was left by a git command that stopped",
                        hint="run cmgit recover to remove it",
                    )
            else:
                unheld_since.pop(lock, None)
            if now >= deadline:
                raise RepositoryBusy(
                    f"repository is busy: a git command holds {name}",
                    hint="wait for it to finish and try again",
                )
        time.sleep(0.05)


def remove_stale_git_locks(git_dir: Path) -> list[str]:
    """Remove git's lock files that no process holds, by name; the caller holds the cmgit
    lock, so no cmgit command is between taking one and renaming it."""
    removed = []
    for lock in git_locks(git_dir):
        if lock_file_held(lock) is False:
            lock.unlink()
            removed.append(lock.relative_to(git_dir).as_posix())
    return removed
