"""`cmgit audit`: replay the history and prove, without any key, that every change was
made by the person named, who had the role for it at the time, following the procedure.

Each commit is judged against the staff registry, settings and workflow in force at its
parent (SPEC section 6): each as of its last change that audit finds valid, so what was
done under a change it flags is judged by the configuration that change replaced. What
needs sealed content (most guards) cannot be checked here; what the open fields, the
commit and its signature show is, with every guard that reads nothing sealed
(guards.KEYLESS), the caseloads of the time counted along the walk (`OpenCases`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import itertools
import os
import re
import secrets
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple, cast

from . import (
    caches,
    crypto,
    entries,
    events,
    exchange,
    ids,
    migrations,
    packages,
    pool,
    records,
    retention,
    signing,
    trail,
)
from .config import (
    EDITABLE,
    PARTS,
    SCHEMAS_DIR,
    SETTINGS_FILE,
    STAFF_FILE,
    Config,
    editable_part,
    editors,
    part_ids,
    read_config,
    read_parts,
    shown_path,
)
from .errors import CmgitError, GitFailed, RepositoryError, SchemaError
from .guards import KEY_WORKER, Situation, keyless, named_check, to_date
from .history import (
    BLOB_MODES,
    Commit,
    Git,
    actor_author,
    damage_report,
    format_message,
    parse_trailers,
    split_signature,
    write_atomic,
)
from .keyring import wrap
from .progress import SILENT, Progress
from .registry import AUDITOR, CASEWORKER, PROGRAMME_MANAGER, Registry
from .trail import FORMAT_TRAILER, MESSAGE_FORM
from .workflow import PASS, STATE_HISTORY

CASE_ACTIONS = ("new", "record", "edit", "move", "assign")
RECORDS = ids.RECORDS_DIR + "/"
SEALED = entries.SEALED_DIR + "/"
BATCH = 1000  # commits read from git in one stream
KEPT_CONFIGS = 8
IDENTS = "%an <%ae>%x02%cn <%ce>"  # author and committer, compared by the signature check
CONFIG_PATHS = frozenset({SCHEMAS_DIR, STAFF_FILE, SETTINGS_FILE})
# Each action that changes the configuration, and the parts of it (config.EDITABLE) it
# may change: `config` changes each part by the roles that may (config.editors).
CONFIG_ACTIONS = {
    "staff-add": (STAFF_FILE,),
    "staff-update": (STAFF_FILE,),
    "staff-deactivate": (STAFF_FILE,),
    "settings-set": (SETTINGS_FILE,),
    "config": tuple(EDITABLE),
}
STATE_FILE = "audit-verified"
STATE_KEY = "audit-key"
STATE_FORMAT = "cmgit-audit-state 1"
FORGED_STATE = "audit state not written by cmgit: full run"
# The commit whose version of each part of the configuration (PARTS) is in force.
Sources = tuple[str, str, str]
IN_FORCE_CACHE = "config-in-force"
SHORT_WALK = 32  # commits walked back through the object reader before asking git
PREFETCH_FROM = 64  # files a configuration commit changes, read in one stream when judged

# The trailers cmgit writes for each action (besides Cmgit-Actor and Cmgit-Role, always
# there): a trailer another action carries, e.g. Cmgit-To on a `record`, would be read by
# `log` and the statistics as a change of state that never happened.
_CASE = ("Cmgit-Case", "Cmgit-Action", "Cmgit-Version", "Cmgit-Date")
TRAILERS: dict[str, frozenset[str]] = {
    "init": frozenset({"Cmgit-Action"}),
    # A case a transfer package created names the package's received tag (cmgit.packages).
    "new": frozenset({*_CASE, "Cmgit-To", packages.RECEIVED_TRAILER}),
    "record": frozenset({*_CASE, "Cmgit-Form"}),
    "edit": frozenset(_CASE),
    "move": frozenset(
        {
            *_CASE,
            "Cmgit-Transition",
            "Cmgit-From",
            "Cmgit-To",
            "Cmgit-Reason",
            "Cmgit-Form",
            "Cmgit-Override",
            "Cmgit-Warning",
        }
    ),
    "assign": frozenset({*_CASE, "Cmgit-Staff", "Cmgit-Reason", "Cmgit-Override"}),
    **{
        action: frozenset({"Cmgit-Action", "Cmgit-Staff"})
        for action in ("staff-add", "staff-update", "staff-deactivate")
    },
    "settings-set": frozenset({"Cmgit-Action", "Cmgit-Setting"}),
    "config": frozenset({"Cmgit-Action", "Cmgit-Reason", "Cmgit-Migration"}),
    "import": frozenset({"Cmgit-Action", "Cmgit-Source", "Cmgit-Count", "Cmgit-Date"}),
    # Event commits (export, disclose, a referral or transfer package): cmgit.events.
    **{action: kind.trailers() for action, kind in events.KINDS.items()},
}
# Actions cmgit first wrote under message form 2: a form-1 message of one is forged.
SINCE_FORM_2 = frozenset({"import", *events.KINDS})
# Trailers an action may carry more than once.
_REPEATED = frozenset({"Cmgit-Form", "Cmgit-Warning", "Cmgit-Migration", trail.GUARD})

# The forms of message cmgit has written, by version: a commit is judged by the form it
# was made under, named by its Cmgit-Format trailer, and form 1 (the first) carries none.
# A later form adds its version here with the trailers of each action it writes. Form 2
# records the decisions of each transition (cmgit.trail) and signs exactly where
# signatures are required.
MESSAGE_FORMS: dict[str, dict[str, frozenset[str]]] = {
    "1": {
        action: keys - {packages.RECEIVED_TRAILER}
        for action, keys in TRAILERS.items()
        if action not in SINCE_FORM_2
    },
    MESSAGE_FORM: {
        action: keys - trail.DROPPED | trail.ADDED.get(action, frozenset())
        for action, keys in TRAILERS.items()
    },
}
FIRST_FORM = "1"
# How far a commit's time may fall behind its parent's (clocks of offices drift; a
# back-dated history does not), and a Cmgit-Date run ahead of its commit's UTC day.
CLOCK_SKEW = dt.timedelta(days=1)
SKEW_SECONDS = CLOCK_SKEW.total_seconds()


@dataclass(frozen=True)
class Violation:
    commit: str
    rule: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"commit": self.commit, "rule": self.rule, "detail": self.detail}


@dataclass
class Report:
    checked: int = 0
    start: str | None = None
    head: str | None = None
    violations: list[Violation] = field(default_factory=list)
    # The decisions of each transition commit checked that records them (form 2), in
    # order: one compact row each, for `--json`.
    decisions: list[dict[str, Any]] = field(default_factory=list)
    # Commits checked whose actor no required, verified signature proves.
    unproven: int = 0
    # Every actor in the history audited is proven: each commit had to be signed, was
    # signed by its actor's registered key, and the programme still requires it.
    actors_proven: bool = False
    signatures_required: bool | None = None  # by the programme now; None: not read
    verified_at: str | None = None  # when the remembered starting point was verified
    full_run_reason: str | None = None  # why a remembered starting point was not used
    state_saved: bool = False
    # Sealed entries added in the commits checked that this clone does not hold (an
    # auditor's clone leaves them out): their form could not be checked.
    sealed_entries_unchecked: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass(frozen=True)
class Change:
    old_mode: str
    new_mode: str
    old: str | None
    new: str | None
    path: str


class Entry(NamedTuple):
    """A commit with its parents, the files it changed, and the trees it made (its own
    and each folder it changed): with the commit and its files, every object the commit
    brought into the history, each hashed when read (see `Auditor._prefetch`)."""

    commit: Commit
    parents: list[str]
    changes: list[Change]
    trees: list[str]


class Deferred(NamedTuple):
    """A keyless named check of a transition (guards.KEYLESS), judged where the walk's
    results come back in order and the caseloads at its parent are known (`OpenCases`)."""

    commit: str
    parent: str
    case_id: str
    detail: str  # the violation's, if the check fails
    check: str
    version: int
    params: Mapping[str, Any]
    situation: Situation  # all but the caseloads


class AddedEntry(NamedTuple):
    """A sealed entry a commit added: judged where the walk's results come back in order
    and every entry added before it is known (`EntryCopies`)."""

    commit: str
    oid: str
    case_id: str
    version: int


# What the walk learns of caseloads, commit by commit, in order: the key caseworker of a
# changed case (None: not in a caseload state), a commit whose configuration counts other
# states (read again), or a check to judge; and the sealed entries added.
CaseloadEvent = tuple[str, str | None] | str | Deferred | AddedEntry
# Of a batch: commits checked, those whose actor is not proven, what was found, the
# objects found damaged or missing, the decisions listed, the caseload events, and the
# sealed entries added that the clone does not hold.
Checked = tuple[
    int, int, list[Violation], list[str], list[dict[str, Any]], list[CaseloadEvent], int
]


class OpenCases:
    """The key caseworker of each case in a caseload state, as the walk goes: the
    caseloads the caseload guard (G03c) saw when each transition was made.

    The batches are judged in forked workers, each on its own, so the count is kept by
    the process their results come back to, in order: each batch reports the caseworker
    of every case it changed, from open fields it reads anyway, and its keyless checks
    wait here for the count at their parent. No tree is read per commit, nor per batch:
    a walk from the first commit starts from none (cmgit init writes no record); one
    from a verified commit, a commit near the head, reads the open fields there once
    through the keyless read cache, which reads only the folders changed since; and so
    does a change of which states count, where it is met. An audit state holding the
    counts would be cheaper still by that one read, but it would be one more thing to
    trust in a file anyone with the repository may edit.
    """

    def __init__(self, git: Git, config: Callable[[str], Config], empty: bool):
        self.git = git
        self.config = config
        self.holders: dict[str, str] | None = {} if empty else None  # None: to be read
        self.counts: Counter[str] = Counter()

    def judge(self, events: Sequence[CaseloadEvent]) -> Iterator[Violation]:
        for event in events:
            if isinstance(event, Deferred):
                if self.holders is None:
                    self._read(event.parent)
                event.situation.caseload = self._others(event.case_id)
                check = named_check(event.check, event.version)
                if check is not None and check(event.situation, event.params) is not None:
                    yield Violation(event.commit, "guard", event.detail)
            elif isinstance(event, str):
                self.holders = None  # the states that count changed
            elif isinstance(event, AddedEntry):
                continue  # judged by EntryCopies
            elif self.holders is not None:
                self._set(*event)

    def _read(self, commit: str) -> None:
        config = self.config(commit)
        order = config.schemas.open_fields
        case_at, state_at = order.index("case_id"), order.index("state")
        worker_at, states = order.index("caseworker"), config.workflow.caseload_states
        self.holders = {
            row[case_at]: row[worker_at]
            for row in caches.open_rows(self.git, commit, order)
            if row[state_at] in states
        }
        self.counts = Counter(self.holders.values())

    def _set(self, case_id: str, holder: str | None) -> None:
        assert self.holders is not None
        old = self.holders.pop(case_id, None)
        if old is not None:
            self.counts[old] -= 1
        if holder is not None:
            self.holders[case_id] = holder
            self.counts[holder] += 1

    def _others(self, case_id: str) -> dict[str, int]:
        """Open cases per caseworker, the case itself left out (as the command counts)."""
        assert self.holders is not None
        counts = dict(self.counts)
        held = self.holders.get(case_id)
        if held is not None:
            counts[held] -= 1
        return counts


class EntryCopies:
    """Every sealed entry is sealed anew, with a file key of its own: two entries never
    share a blob. One that does is a copy (of another case's entry, or of one a purge
    removed), which no keyless reader could otherwise tell from the real thing.

    The blobs of the entries added are kept as the walk's results come back in order; a
    walk that starts from a verified commit first lists the entries there (one
    `ls-tree` of blob ids, when it meets its first entry)."""

    def __init__(self, git: Git, start: str | None):
        self.git = git
        self.start = start
        self.seen: set[str] | None = set() if start is None else None  # None: to be read

    def judge(self, events: Sequence[CaseloadEvent]) -> Iterator[Violation]:
        for event in events:
            if not isinstance(event, AddedEntry):
                continue
            if self.seen is None:
                assert self.start is not None
                listed = self.git.text(
                    "ls-tree", "-r", "--object-only", self.start, "--", entries.SEALED_DIR
                )
                self.seen = set(listed.split())
            if event.oid in self.seen:
                yield Violation(
                    event.commit,
                    "sealed",
                    f"{event.case_id}: entry {event.version} is a copy of another entry",
                )
            self.seen.add(event.oid)


_OID = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
# How `git log --raw` writes a folder's mode, and the side of a change with no file.
RAW_TREE_MODE = "040000"
GITLINK_MODE = "160000"
NO_MODE = "000000"
NO_OBJECT = "0" * 40
_MAX_STATE = 4096


@dataclass(frozen=True)
class Verified:
    """Where the last audit that found nothing ended, when, and whether every actor up to
    there was proven."""

    commit: str
    at: str
    actors_proven: bool


class AuditState:
    """The last verified commit, kept in the git folder's cmgit/ (a bare repository's
    own folder), so that the next audit checks only what is new.

    Whoever can write that folder could otherwise declare any commit verified, and every
    later audit would skip what lies before it. So the file carries an HMAC under a
    random secret that the audit creates beside it (mode 0600): a commit id written by
    hand or by a script, or a state file copied from another clone, fails the check and
    forces a full run, which is always safe. It does not stop someone who runs code as
    the auditor's own account (they could as well replace cmgit); it makes a forgery cost
    more than `git rev-parse HEAD >`, with no key to manage.
    """

    def __init__(self, git_dir: Path):
        self.folder = git_dir / "cmgit"

    def load(self) -> tuple[Verified | None, str | None]:
        """The remembered point; or None and why it is not used (None if there is none)."""
        try:
            with open(self.folder / STATE_FILE, "rb") as handle:
                text = handle.read(_MAX_STATE).decode("ascii")
        except FileNotFoundError:
            return None, None
        except (OSError, UnicodeDecodeError):
            return None, FORGED_STATE
        lines = text.split("\n")
        key = self._key(create=False)
        if key is None or len(lines) != 6 or lines[5] or not lines[4].startswith("mac "):
            return None, FORGED_STATE
        body = "\n".join(lines[:4]) + "\n"
        if not hmac.compare_digest(lines[4][4:], _mac(key, body)) or lines[0] != STATE_FORMAT:
            return None, FORGED_STATE
        fields = dict(line.partition(" ")[::2] for line in lines[1:4])
        commit, proven = fields.get("commit", ""), fields.get("actors-proven")
        if not _OID.fullmatch(commit) or proven not in ("yes", "no"):
            return None, FORGED_STATE
        return Verified(commit, fields.get("verified", ""), proven == "yes"), None

    def save(self, commit: str, actors_proven: bool) -> bool:
        """Remember ``commit`` as verified now; False where the folder cannot be written
        (an auditor reading a central repository they may not change)."""
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = (
            f"{STATE_FORMAT}\ncommit {commit}\nverified {now}\n"
            f"actors-proven {'yes' if actors_proven else 'no'}\n"
        )
        try:
            key = self._key(create=True)
            if key is None:  # a secret someone altered: no state can be trusted under it
                return False
            write_atomic(self.folder / STATE_FILE, f"{body}mac {_mac(key, body)}\n".encode())
        except OSError:
            return False
        return True

    def _key(self, *, create: bool) -> bytes | None:
        path = self.folder / STATE_KEY
        try:
            with open(path, "rb") as handle:
                key = handle.read(65)
        except FileNotFoundError:
            if not create:
                return None
            self.folder.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".cmgit-tmp-", dir=self.folder)  # mode 0600
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(secrets.token_hex(32).encode("ascii"))
                # link, unlike rename, never replaces a secret another audit just made
                with contextlib.suppress(FileExistsError):
                    os.link(tmp, path)
            finally:
                os.unlink(tmp)
            return self._key(create=False)
        except OSError:  # not a file: nothing can be trusted under it
            return None
        return key if len(key) == 64 else None


def _mac(key: bytes, body: str) -> str:
    return hmac.new(key, body.encode("ascii"), hashlib.sha256).hexdigest()


class Auditor:
    def __init__(self, git: Git):
        self.git = git
        self._configs: dict[tuple[str, ...], Config] = {}
        # The configuration in force, by commit (see `in_force`): found once for each
        # commit that changes it, and the last point asked for, to go on from.
        self._in_force: dict[str, Sources] = {}
        self._judging: dict[str, Sources] = {}
        self._entries: dict[str, Entry] = {}  # commits to judge, read ahead
        # The first thing found wrong with each change of the configuration not in force.
        self._rejected: dict[str, tuple[str, str]] = {}
        self._last: tuple[str, Sources] | None = None
        self.require_signatures = False
        self.report_indirection = True
        # The configuration after the last commit checked: a commit that changes none of
        # the configuration files has its parent's, with nothing read from git.
        self._current: Config | None = None
        self._current_at: str | None = None
        # Open fields of the last two versions of each record seen, by path: (blob, order,
        # values). A change of that record reads its old version from here.
        self._seen: dict[str, tuple[tuple[str, tuple[str, ...], tuple[Any, ...]], ...]] = {}
        self._objects: dict[str, bytes] = {}
        # The last commit checked and its committer time: the next one's parent, mostly.
        self._last_time: tuple[str, int | None] | None = None
        # The last commit checked and the form of its message: forms never go back.
        self._last_form: tuple[str, str] | None = None
        # The commit the walk goes up to, whose registry knows every compromised key.
        self._until: str | None = None
        self._newest: tuple[str | None, Registry | None] | None = None
        # What the batch being checked learnt of caseloads, in order (`OpenCases`).
        self._pending: list[CaseloadEvent] = []
        # The objects of the history walked that a partial clone lacks: never read (a
        # read would fetch them), sealed entries counted as unchecked.
        self._missing: frozenset[str] = frozenset()

    # -- configuration as of a commit, cached by the objects that make it up ------------

    def config(self, commit: str) -> Config:
        """The configuration in force at ``commit``: each part of it as of the last commit
        that changed that part validly. A change that audit flags is never in force, so
        whatever was done after it is judged by the configuration it tried to replace."""
        sources = self.in_force(commit)
        key = part_ids(self.git, sources)
        config = self._configs.pop(key, None) or read_parts(self.git, sources)
        self._configs[key] = config  # the most recent last
        # A history of hundreds of staff changes has as many configurations, a few MB
        # each; the walk goes forward, so the last few are all it meets again.
        while len(self._configs) > KEPT_CONFIGS:
            del self._configs[next(iter(self._configs))]
        return config

    def trust_checkpoint(self, commit: str) -> None:
        """Take ``commit``, where an audit starts (verified before, or named by the auditor
        as trusted), as a trust root of the configuration too: what is committed there is
        in force, and no older history (perhaps not in a shallow clone) is judged again."""
        self._in_force[commit] = (commit, commit, commit)
        self._last = (commit, self._in_force[commit])

    def in_force(self, commit: str) -> Sources:
        """The commit whose version of each part of the configuration (PARTS) is in force
        at ``commit``. Only the commits that change the configuration are judged, each
        once: in order from the last point known, or from the trust root."""
        known = self._in_force.get(commit) or self._judging.get(commit)
        if known is not None:
            return known
        since, sources = self._last or (None, None)
        changes = self._config_commits(since, commit)
        if self._last is None:  # judged from the start: nothing known holds
            sources = None
        # Read together: a first command after a clone judges every staff change since.
        judged = [oid for oid, parent in changes if parent is not None]
        if judged:
            self._entries.update((entry.commit.oid, entry) for entry in self.entries(judged))
        for oid, parent in changes:
            if parent is None:  # the first commit, cmgit init, is the trust root
                sources = (oid, oid, oid)
            elif sources is not None:
                self._in_force[parent] = sources
                sources = self._judged(oid, parent, sources)
            if sources is not None:
                self._in_force[oid] = sources
        if sources is None:
            raise RepositoryError("the history holds no configuration to start from")
        self._in_force[commit] = sources
        self._last = (commit, sources)
        return sources

    def _config_commits(self, since: str | None, until: str) -> list[tuple[str, str | None]]:
        """The commits after ``since`` (from the root if None) up to ``until`` that change
        the configuration, oldest first, each with its parent (None for a root)."""
        if since == until:
            return []
        # The next command after a commit of one's own is a few commits on: walked through
        # the object reader, with no git process of its own.
        found: list[tuple[str, str | None]] = []
        at: str | None = until
        for _ in range(SHORT_WALK):
            if at is None or at == since:
                break
            parent = self._first_parent(at)
            if parent is None or part_ids(self.git, (at,) * 3) != part_ids(self.git, (parent,) * 3):
                found.append((at, parent))
            at = parent
        if at == since:  # back where it started (None: at the root, from the start)
            return found[::-1]
        if since is not None and not self.git.is_ancestor(since, until):
            since = None  # the history was rewritten under it: judge it all again
            self._last = None
        rev = f"{since}..{until}" if since else until
        out = self.git.text(
            "log", "--first-parent", "--reverse", "--format=%H %P", rev, "--", *PARTS
        )
        return [
            (ids[0], ids[1] if len(ids) > 1 else None) for ids in map(str.split, out.splitlines())
        ]

    def _first_parent(self, commit: str) -> str | None:
        """The first parent of ``commit``; None for a root, and for the oldest commits of a
        shallow clone, whose parents are not there (git takes them as roots too)."""
        if commit in self._shallow:
            return None
        parents = self.git.objects.parents(commit)
        return parents[0] if parents else None

    @cached_property
    def _shallow(self) -> frozenset[str]:
        try:
            return frozenset((self.git.git_dir / "shallow").read_text().split())
        except OSError:
            return frozenset()

    def _judged(self, oid: str, parent: str, sources: Sources) -> Sources:
        """What is in force after ``oid``, a commit that changes the configuration in force
        as ``sources`` at its parent: the parts it changed if audit finds nothing wrong with
        it, else what was in force before."""
        proposed = proposed_sources(self.git, parent, oid, sources)
        entry = self._entries.pop(oid, None) or self.entries([oid])[0]
        walk = self._current, self._current_at, self.require_signatures, self._objects
        # While it is judged, the commit's own configuration is the one it proposes. It is
        # judged by the programme's own rules, as the command line judges it: a server
        # that demands signatures of what is pushed does not disown the history it holds.
        self._judging[oid] = proposed
        self.require_signatures = False
        pending = len(self._pending)  # the walk judges the commit again in its turn
        try:
            if len(entry.changes) > PREFETCH_FROM:
                # A commit of many records (a migration, a re-encryption): read in one
                # stream rather than a record at a time (damage is the walk's to report).
                self._prefetch([entry])
            flagged = next(self.check(entry.commit, entry.parents, entry.changes), None)
        finally:
            del self._judging[oid]
            self._current, self._current_at, self.require_signatures, self._objects = walk
            del self._pending[pending:]
        if flagged is None:
            return proposed
        self._rejected[oid] = flagged
        return sources

    # -- the walk -----------------------------------------------------------------------

    def commits(
        self, since: str | None, until: str = "HEAD", progress: Progress = SILENT
    ) -> Iterator[list[Entry]]:
        """Commits after ``since`` (all, from the root, if None), oldest first, in batches,
        each with its parents and the files it changed.

        The ids come from one `git rev-list`; each batch from one `git log` of just those
        commits, so git never holds the whole history in memory (as `log --reverse` does).
        """
        rev = f"{since}..{until}" if since else until
        oids = self.git.text("rev-list", "--reverse", rev).split()
        with progress.task("Checking commits", len(oids)) as advance:
            for start in range(0, len(oids), BATCH):
                chunk = oids[start : start + BATCH]
                yield self.entries(chunk)
                advance(len(chunk))

    def entries(self, oids: Sequence[str]) -> list[Entry]:
        """The given commits, in that order, each with its parents and the files it
        changed: one `git log` for all of them."""
        out = self.git.run(
            "log",
            "--no-walk=unsorted",
            "--stdin",
            "--root",
            "--raw",
            "-t",  # the trees too, to be read and hashed
            "--no-renames",
            "--no-abbrev",
            "-z",
            f"--format=%x01%H %T %P%x02%aI%x02%an%x02{IDENTS}%x02%B%x03",
            input=b"\n".join(oid.encode("ascii") for oid in oids) + b"\n",
        )
        return [self._commit_entry(piece) for piece in out.split(b"\x01")[1:]]

    @staticmethod
    def _commit_entry(piece: bytes) -> Entry:
        head, _, raw = piece.partition(b"\x03")
        ids_line, when, author, author_ident, committer_ident, message = head.decode(
            "utf-8", "replace"
        ).split("\x02", 5)
        oid, tree, *parents = ids_line.split()
        commit = Commit(
            oid, when, author, message, parse_trailers(message), author_ident, committer_ident
        )
        changes, trees = _parse_raw(raw)
        return Entry(commit, parents, changes, [tree, *trees])

    def run(
        self,
        since: str | None = None,
        *,
        remembered: bool = True,
        until: str | None = None,
        require_signatures: bool = False,
        progress: Progress = SILENT,
        indirection: bool = True,
    ) -> Report:
        """Judge the history; ``indirection`` also reports replace refs and grafts the
        repository holds, which a server's check of one push leaves to `--server-checks`:
        they are no part of the push, and git ignores them for cmgit anyway."""
        self.require_signatures = require_signatures
        self.report_indirection = indirection
        try:
            return self._run(since, remembered, until, progress)
        except GitFailed:
            # A damaged object can stop the walk itself: name what git finds broken.
            damaged = self.git.fsck()
            if not damaged:
                raise
            report = Report(head=until)
            report.violations += [Violation(until or "HEAD", "fsck", d) for d in damaged]
            return report

    def _run(
        self, since: str | None, remembered: bool, until: str | None, progress: Progress
    ) -> Report:
        report = Report(head=until or self.git.head())
        if report.head is None:
            raise RepositoryError("the repository has no commits")
        state = AuditState(self.git.git_dir)
        start = since
        verified: Verified | None = None
        if start is None and remembered:
            verified, report.full_run_reason = state.load()
        if verified is not None:
            if self.git.is_ancestor(verified.commit, report.head):
                start, report.verified_at = verified.commit, verified.at
            else:
                report.violations.append(
                    Violation(
                        verified.commit,
                        "history-rewritten",
                        "the last verified commit is no longer in the history: it was rewritten",
                    )
                )
                verified = None
        incomplete = self.git.incomplete_history()
        if incomplete == "partial":
            self._missing = self._only_entries_missing(start, report.head)
        elif start is None and incomplete:
            # Its oldest commits are missing: a walk from the first commit would prove
            # nothing.
            raise RepositoryError(
                f"a {incomplete} clone cannot be audited from the first commit",
                hint="audit a full clone, or from a commit you trust: cmgit audit --since REV",
            )
        report.start = start
        if start is not None:
            self.trust_checkpoint(start)
        if self.report_indirection:
            report.violations += [
                Violation(report.head, "indirection", d) for d in self.indirections()
            ]
        # Compromises the registry at the end of the walk knows apply to all it checks; a
        # configuration commit judged on the way walks on its own, and must not move it.
        self._until = report.head
        damaged: list[str] = []
        open_cases = OpenCases(self.git, self.config, empty=start is None)
        copies = EntryCopies(self.git, start)
        for checked, unproven, found, broken, decided, caseloads, unchecked in self._check_all(
            self.commits(start, report.head, progress)
        ):
            report.checked += checked
            report.sealed_entries_unchecked += unchecked
            report.unproven += unproven
            report.violations += found
            report.violations += open_cases.judge(caseloads)
            report.violations += copies.judge(caseloads)
            report.decisions += decided
            damaged += broken
        # Each object the walk brought in was hashed as it was read: what `git fsck` would
        # find of the history, found on the way.
        report.violations += [
            Violation(report.head, "fsck", d) for d in damage_report(list(dict.fromkeys(damaged)))
        ]
        if verified is not None and report.checked == 0:
            report.signatures_required = verified.actors_proven or self._requires(report.head)
        else:
            report.signatures_required = self._requires(report.head)
        report.actors_proven = (
            report.unproven == 0
            and report.signatures_required
            and (verified is None or verified.actors_proven)
        )
        if report.ok and until is None:
            report.state_saved = state.save(report.head, report.actors_proven)
        return report

    def _only_entries_missing(self, start: str | None, head: str) -> frozenset[str]:
        """The objects of the history to walk that a partial clone lacks, each of them a
        sealed entry (an auditor's clone): audit checks what the clone holds and never
        fetches. A clone that lacks anything else (records, configuration) cannot be
        audited: a walk reading around the holes would prove nothing."""
        missing = self.git.missing_objects(head, *([f"^{start}"] if start else []))
        if not missing:
            return missing
        walked = f"{start}..{head}" if start else head
        others = missing - {
            oid for oid, path in self.git.blobs_written(walked) if path.startswith(SEALED)
        }
        if others:
            raise RepositoryError(
                f"this partial clone lacks {len(others)} file(s) of the history besides "
                "sealed entries, and the audit fetches nothing",
                hint="audit a full clone or an auditor's clone: cmgit clone --auditor URL DIR",
            )
        return missing

    def _requires(self, commit: str, parents: Sequence[str] = ()) -> bool:
        """Whether the configuration a commit with these parents is judged by (the
        commit's own for the first) requires signatures: only then does a signature prove
        the actor, for one nobody requires can be left off a forgery."""
        if self.require_signatures:
            return True
        try:
            if parents and self._current is not None and self._current_at == parents[0]:
                config = self._current
            else:
                config = self.config(parents[0] if parents else commit)
        except CmgitError:
            return False  # reported by the check of the commit
        return bool(config.settings.get("require_signed_commits"))

    def check_batch(self, batch: list[Entry]) -> Checked:
        """Every commit of ``batch``, in order: how many, how many of their actors no
        signature proves, and what was found."""
        damaged = self._prefetch(batch)
        found: list[Violation] = []
        decided: list[dict[str, Any]] = []
        unproven = 0
        self._pending = []
        for commit, parents, changes, _ in batch:
            required = self._requires(commit.oid, parents)
            problems = [
                Violation(commit.oid, r, d) for r, d in self.check(commit, parents, changes)
            ]
            self._pending += self._holders(commit.oid, changes)
            unproven += not required or any(v.rule == "signature" for v in problems)
            found += problems
            if trail.records_decisions(commit.trailers):
                decided.append(_decision_row(commit))
        unchecked = sum(
            c.old is None and c.new in self._missing and c.path.startswith(SEALED)
            for entry in batch
            for c in entry.changes
        )
        return len(batch), unproven, found, damaged, decided, self._pending, unchecked

    def _holders(self, oid: str, changes: list[Change]) -> list[CaseloadEvent]:
        """The key caseworker of each case ``oid`` changed, where the case is in a
        caseload state (`OpenCases`): from the open fields its check read. A commit that
        changes the schemas (which states count), or whose configuration could not be
        read, asks for the caseloads to be read again."""
        config = self._current if self._current_at == oid else None
        if config is None or any(c.path.split("/", 1)[0] == SCHEMAS_DIR for c in changes):
            return [oid]
        states = config.workflow.caseload_states
        found: list[CaseloadEvent] = []
        for change in changes:
            case_id = ids.case_id_from_path(change.path)
            if case_id is None:
                continue
            fields = self._open(change.new, config, change.path) or {}
            counted = fields.get("case_id") == case_id and fields.get("state") in states
            found.append((case_id, fields["caseworker"] if counted else None))
        return found

    def _check_all(self, batches: Iterator[list[Entry]]) -> Iterator[Checked]:
        """`check_batch` of each batch, in order; on every core for a long history.

        Each batch stands alone: its first commit's configuration is read from its parent,
        and the old versions of its records are read with it.
        """
        global _AUDITOR
        first = next(batches, None)
        if first is None:
            return
        yield self.check_batch(first)  # a short history: one batch, no pool
        second = next(batches, None)
        if second is None:
            return
        rest = itertools.chain([second], batches)
        if pool.workers() < 2:
            yield from map(self.check_batch, rest)
            return
        _AUDITOR = self
        try:
            yield from pool.fork_map(_check_batch, rest, _own_reader)
        finally:
            _AUDITOR = None

    def _prefetch(self, batch: list[Entry]) -> list[str]:
        """Read in one stream every object the commits of ``batch`` brought in, each hashed
        on the way, and the old versions of the records they changed that the walk has
        not parsed already. Keeps the commits and records for the checks; returns the ids
        of the objects found damaged or missing."""
        commits = [entry.commit.oid for entry in batch]
        changes = [c for entry in batch for c in entry.changes]
        made = [oid for entry in batch for oid in entry.trees]
        # A submodule's commit lives in another repository: not one of this history's.
        made += [c.new for c in changes if c.new is not None and c.new_mode != GITLINK_MODE]
        # A partial clone's missing objects are left alone: reading one would fetch it.
        made = [oid for oid in made if oid not in self._missing]
        record_changes = [c for c in changes if c.path.startswith((RECORDS, SEALED))]
        old = [
            c.old
            for c in record_changes
            if c.old and c.path.startswith(RECORDS) and not self._parsed(c.path, c.old)
        ]
        keep = {*commits, *old, *(c.new for c in record_changes if c.new)}
        self._objects, damaged = self.git.read_checked(
            [*commits, *made, *old], keep, records.MAX_RECORD_FILE
        )
        return damaged

    def _parsed(self, path: str, oid: str) -> bool:
        return any(seen[0] == oid for seen in self._seen.get(path, ()))

    def _raw(self, commit: str) -> bytes:
        """A commit object's bytes, as read with its batch."""
        data = self._objects.get(commit)
        if data is None:
            kind, data = self.git.objects.read(commit)
            if kind != "commit":
                raise GitFailed("expected a commit")
        return data

    def _newest_registry(self) -> Registry | None:
        """The staff registry at the end of the walk, None when it cannot be read."""
        if self._newest is None or self._newest[0] != self._until:
            registry = None
            if self._until is not None:
                with contextlib.suppress(CmgitError):
                    registry = read_config(self.git, self._until).registry
            self._newest = (self._until, registry)
        return self._newest[1]

    def _read(self, oid: str) -> bytes:
        data = self._objects.get(oid)
        return data if data is not None else self.git.read_blob(oid, limit=records.MAX_RECORD_FILE)

    # -- one commit -----------------------------------------------------------------------

    def check(
        self, commit: Commit, parents: list[str], changes: list[Change]
    ) -> Iterator[tuple[str, str]]:
        action = commit.trailer("Cmgit-Action")
        if len(parents) > 1:
            yield "linear", "a merge commit: the history must stay linear"
            return
        actor_id = commit.trailer("Cmgit-Actor") or ""
        raw = self._raw(commit.oid)
        header, message = _split_commit(raw)
        committed = _commit_time(header)
        yield from _check_headers(header, parents, actor_id)
        if not parents:
            if action != "init":
                yield "message", "the first commit is not a cmgit init"
            else:
                yield from self._check_message(commit, message)
            yield from self._check_signature(
                commit, read_config(self.git, commit.oid), actor_id, committed
            )
            self._last_time = (commit.oid, committed)
            self._last_form = (commit.oid, _form(commit))
            return
        parent = parents[0]
        try:
            before = self._current
            if before is None or self._current_at != parent:
                before = self.config(parent)
            touched = any(c.path.split("/", 1)[0] in CONFIG_PATHS for c in changes)
            after = self.config(commit.oid) if touched else before
        except CmgitError as exc:
            self._current_at = None
            yield "config", f"configuration cannot be read: {exc.message}"
            return
        self._current, self._current_at = after, commit.oid
        yield from self._check_message(commit, message)
        yield from self._check_form_order(commit, parent)
        yield from self._check_time(commit.oid, parent, committed)
        yield from self._check_signature(commit, before, actor_id, committed)
        # Whoever made the commit, what it put under records/ is judged too: a plaintext
        # or a link committed with plain git must be named as such, not only as "actor".
        yield from self._check_records(changes, before, after)
        yield from self._check_entries(commit, changes, after)
        actor = before.registry.staff.get(actor_id)
        if actor is None or not actor.active:
            yield "actor", f"{actor_id or 'nobody'} was not active staff at the time"
            return
        if commit.trailer("Cmgit-Role") != actor.role or commit.author != actor.id:
            yield "actor", f"role or author does not match {actor.id} in the registry"
        if commit.committer_ident != commit.author_ident:
            # cmgit's commits are committed by their author, who signs them: anyone else
            # committing (or signing) in the author's name is not what the history says.
            yield "actor", "committed by someone other than its author"
        if action in CONFIG_ACTIONS:
            yield from self._check_config_change(action, actor.role, changes, before, commit, after)
        elif action in CASE_ACTIONS:
            yield from self._check_case_change(
                action, commit, actor, changes, parent, before, committed
            )
        elif action == "import":
            yield from self._check_import(commit, actor.role, changes, before, committed)
        elif action in events.KINDS:
            yield from self._check_event(
                events.KINDS[action], commit, actor, changes, before, committed
            )
        else:
            yield "message", "unknown action"

    def _check_message(self, commit: Commit, raw_message: bytes) -> Iterator[tuple[str, str]]:
        # Rebuild the message from its own subject and trailers with cmgit's formatter:
        # anything else in it (free text, a forged trailer line) makes it differ. git
        # shows a message only up to a NUL byte: the bytes after it are compared too.
        trailers_of = MESSAGE_FORMS.get(_form(commit))
        if trailers_of is None or commit.trailers.get(FORMAT_TRAILER) == [FIRST_FORM]:
            # Form 1 never names itself: a message that does was not written by cmgit.
            yield "message", "the message names a form cmgit never wrote"
            return
        lines = commit.message.split("\n")
        trailers = [tuple(line.split(": ", 1)) for line in lines[2:] if ": " in line]
        try:
            expected = format_message(lines[0], [(k, v) for k, v in trailers])
        except ValueError:
            expected = ""
        if (
            commit.message != expected
            or raw_message != expected.encode("utf-8")
            or not commit.trailer("Cmgit-Actor")
        ):
            yield "message", "the message is not in cmgit's generated form"
            return
        action = commit.trailer("Cmgit-Action") or ""
        allowed = trailers_of.get(action)
        if allowed is None and action in TRAILERS:
            yield "message", f"{action}: an action of a later form of message than this one"
            return
        keys = [key for key, _ in trailers if key != FORMAT_TRAILER]
        if allowed is not None and (
            not set(keys) <= allowed | {"Cmgit-Actor", "Cmgit-Role"}
            or any(keys.count(key) > 1 for key in set(keys) - _REPEATED)
        ):
            yield "message", "the message carries trailers its action never has"

    def _check_signature(
        self, commit: Commit, config: Config, actor_id: str, committed: int | None
    ) -> Iterator[tuple[str, str]]:
        required = self.require_signatures or bool(config.settings.get("require_signed_commits"))
        payload, armored = split_signature(self._raw(commit.oid))
        if armored is None:
            if required:
                yield "signature", "unsigned commit where signatures are required"
            return
        if _form(commit) != FIRST_FORM and not config.settings.get("require_signed_commits"):
            # Form 2 signs exactly where signatures are required: a signature elsewhere
            # would make part of an unsigned history look proven.
            yield "signature", "signed where the programme requires no signatures (form 2)"
        try:
            key = signing.verify(payload, armored)
        except signing.BadSignature as exc:
            yield "signature", f"invalid signature ({exc})"
            return
        member = config.registry.staff.get(actor_id)
        if member is None or member.signing_key != key:
            yield "signature", f"signed by a key that is not {actor_id}'s registered key"
        # The registry of the commit audited up to knows of compromises marked since:
        # they apply to history signed before anyone knew.
        since = min(
            (
                found
                for registry in (config.registry, self._newest_registry())
                if registry is not None and (found := registry.compromised_keys.get(key))
            ),
            default=None,
        )
        if since is not None and (committed is None or _utc_day(committed).isoformat() >= since):
            yield "compromised-key", f"signed with a key marked compromised from {since}"

    def _check_form_order(self, commit: Commit, parent: str) -> Iterator[tuple[str, str]]:
        """A transition's message never goes back to an older form along the branch: one
        made without the decisions form 2 records would otherwise pass as of form 1."""
        form = _form(commit)
        if self._last_form is not None and self._last_form[0] == parent:
            before = self._last_form[1]
        else:  # the first commit of a batch: its parent was read with the one before
            message = _split_commit(self._raw(parent))[1].decode("utf-8", "replace")
            before = (parse_trailers(message).get(FORMAT_TRAILER) or [FIRST_FORM])[-1]
        self._last_form = (commit.oid, form)
        if (
            commit.trailer("Cmgit-Action") in trail.ADDED
            and form.isdigit()
            and before.isdigit()
            and int(form) < int(before)
        ):
            yield "message", f"a transition of message form {form} after form {before}"

    def indirections(self) -> list[str]:
        """Replace refs and grafts in the repository, one line each. git would show other
        commits in place of those the history holds; every git call cmgit makes ignores
        them, so the walk judged the history itself, but whoever made them meant to hide
        something from a reader using plain git."""
        refs = self.git.text("for-each-ref", "--format=%(refname)", "refs/replace/")
        found = [
            # A ref's name is shown only when it is an object id: it could say anything.
            f"{ref if _REPLACE_REF_RE.fullmatch(ref) else 'a ref under refs/replace/'} "
            "makes git show another object in its place; audit ignored it"
            for ref in refs.splitlines()
        ]
        # Not `--git-path info/grafts`: git answers that with GIT_GRAFT_FILE, set aside.
        common = self.git.text("rev-parse", "--git-common-dir")
        if (self.git.root / common / "info" / "grafts").exists():
            found.append("info/grafts gives commits other parents in git; audit ignored it")
        return found

    def _check_time(
        self, oid: str, parent: str, committed: int | None
    ) -> Iterator[tuple[str, str]]:
        """Committer times never go back along the branch, beyond a day of clock skew."""
        if self._last_time is not None and self._last_time[0] == parent:
            before = self._last_time[1]
        else:  # the first commit of a batch: its parent was read with the one before
            before = _commit_time(_split_commit(self._raw(parent))[0])
        self._last_time = (oid, committed)
        # A commit whose time cannot be read has header lines cmgit never writes: flagged.
        if committed is not None and before is not None and committed < before - SKEW_SECONDS:
            yield "time", "committed more than a day before its parent commit"

    def _check_records(
        self, changes: list[Change], before: Config, after: Config
    ) -> Iterator[tuple[str, str]]:
        for change in changes:
            if change.new is None or not change.path.startswith(ids.RECORDS_DIR + "/"):
                continue
            case_id = ids.case_id_from_path(change.path)
            if case_id is None:
                if change.path != f"{ids.RECORDS_DIR}/.gitkeep":
                    yield "record", f"{change.path} is not a record path"
                continue
            if change.new_mode not in BLOB_MODES:
                yield "record", f"{case_id}: not a regular file (link or submodule)"
                continue
            order = after.schemas.open_fields
            if change.new in self._missing:  # every open file is below the clone's filter
                yield "record", f"{case_id}: larger than an open file, and not in this clone"
                continue
            try:
                data = self._read(change.new)
            except CmgitError:  # larger than any record cmgit writes: never read whole
                yield "record", f"{case_id}: not a sealed cmgit record"
                continue
            parsed = self._record_file(case_id, data, after)
            if isinstance(parsed, str):
                yield "record", parsed
                continue
            fields, header = parsed
            latest = (change.new, tuple(order), tuple(fields.values()))
            self._seen[change.path] = (*self._seen.get(change.path, ())[-1:], latest)
            if fields.get("case_id") != case_id:
                yield "record", f"{case_id}: the record inside belongs to another case"
            # Every record written is at the repository's format (a migration's records at
            # the format it brings): one below was written by a cmgit from before the
            # migration, or by hand; a cheap compare, so it is made for every record.
            fmt = migrations.record_format(fields)
            if not before.record_format <= fmt <= after.record_format:
                yield (
                    "format",
                    f"{case_id}: record format {fmt} where the repository's is "
                    f"{after.record_format}",
                )
            if header is None:
                # Sealed entries are sealed to the case key alone, and who holds that key
                # is the keyring's to say: the keyring is replaced, not kept in history,
                # so there is no recipient to count here (cmgit validate counts them).
                continue
            wanted = after.registry.recipients_for(
                fields["team"], fields["caseworker"], after.settings
            )
            if header.stanza_count != len(wanted):
                yield (
                    "record",
                    (
                        f"{case_id}: sealed for {header.stanza_count} recipients, "
                        f"the registry called for {len(wanted)}"
                    ),
                )

    @staticmethod
    def _record_file(
        case_id: str, data: bytes, after: Config
    ) -> tuple[dict[str, Any], crypto.Header | None] | str:
        """A record file's open fields, and the header of its sealed block (None for an
        open file, format 2); or what is wrong with it. A record at a format from which
        the configuration after the commit keeps forms as sealed entries is an open file
        and nothing else, smaller than an auditor's clone leaves out; one below is a
        format 1 record with its sealed block."""
        order = after.schemas.open_fields
        try:
            fields: dict[str, Any] | None = records.parse_open_fields(data, order)
        except CmgitError:
            fields = None
        if fields is not None and _sealed_layout(fields, after):
            try:
                return entries.parse_open_file(data, order), None
            except CmgitError:
                return f"{case_id}: not an open file as cmgit writes one (format 2)"
        try:
            fields, armored = records.parse_file(data, order)
            return fields, crypto.inspect(armored)
        except CmgitError:
            return f"{case_id}: not a sealed cmgit record"

    def _check_entries(
        self, commit: Commit, changes: list[Change], after: Config
    ) -> Iterator[tuple[str, str]]:
        """The sealed entries a commit changed (format 2), judged without a key: each at
        an entry's path, added once and never changed; removed only by a purge of its
        case; added with the version the same commit gives its case's record, one per
        case; and, where the clone holds it, a binary age file of one stanza, larger than
        an auditor's clone keeps."""
        purging = commit.trailer("Cmgit-Action") == events.PURGE.action
        purged = commit.trailer("Cmgit-Case") if purging else None
        records_changed = {c.path: c for c in changes if c.path.startswith(RECORDS)}
        added: Counter[str] = Counter()
        for change in changes:
            if not change.path.startswith(SEALED):
                continue
            named = entries.parse_entry_path(change.path)
            if named is None:
                yield "sealed", f"{shown_path(change.path)} is not the path of a sealed entry"
                continue
            case_id, version = named
            if change.new is None:
                if case_id != purged:
                    yield "sealed", f"{case_id}: entry {version} removed, which only a purge does"
                continue
            if change.old is not None:
                yield "sealed", f"{case_id}: entry {version} changed; an entry is written once"
                continue
            added[case_id] += 1
            self._pending.append(AddedEntry(commit.oid, change.new, case_id, version))
            if added[case_id] == 2:
                yield "sealed", f"{case_id}: more than one entry added in one commit"
            if change.new_mode not in BLOB_MODES:
                yield "sealed", f"{case_id}: entry {version} is not a regular file"
                continue
            record = records_changed.get(ids.record_path(case_id))
            fields = None if record is None else self._open(record.new, after, record.path)
            if fields is None or fields.get("version") != version:
                yield (
                    "sealed",
                    f"{case_id}: entry {version} added without the record at that version",
                )
            elif not _sealed_layout(fields, after):
                yield "sealed", f"{case_id}: an entry added to a record of format 1"
            if change.new not in self._missing:
                yield from self._check_entry_blob(case_id, version, change.new)

    def _check_entry_blob(self, case_id: str, version: int, oid: str) -> Iterator[tuple[str, str]]:
        """An entry's bytes: binary age, one stanza (the case key), larger than the
        auditor's filter keeps, so that no auditor's clone holds it."""
        try:
            data = self._objects.get(oid)
            data = self._read(oid) if data is None else data
            stanzas = crypto.inspect_binary(data).stanza_count
        except CmgitError:
            yield "sealed", f"{case_id}: entry {version} is not a binary age file"
            return
        if len(data) < entries.AUDITOR_BLOB_LIMIT:
            yield (
                "sealed",
                f"{case_id}: entry {version} is smaller than {entries.AUDITOR_BLOB_LIMIT}"
                " bytes, so an auditor's clone would hold it",
            )
        if stanzas != 1:
            yield "sealed", f"{case_id}: entry {version} is sealed for {stanzas} keys, not one"

    def _open(self, oid: str | None, config: Config, path: str) -> dict[str, Any] | None:
        if oid is None:
            return None
        order = tuple(config.schemas.open_fields)
        for seen_oid, seen_order, values in self._seen.get(path, ()):
            if seen_oid == oid and seen_order == order:
                return dict(zip(order, values, strict=True))
        with contextlib.suppress(CmgitError):
            return records.parse_open_fields(self._read(oid), config.schemas.open_fields)
        return None

    def _check_config_change(
        self,
        action: str,
        role: str,
        changes: list[Change],
        prior: Config,
        commit: Commit,
        after: Config,
    ) -> Iterator[tuple[str, str]]:
        allowed = CONFIG_ACTIONS[action]
        # Who may change each part is as the settings in force at the parent say.
        parts = {editable_part(c.path) or c.path for c in changes} & set(allowed)
        for part in sorted(parts) or allowed[:1]:
            roles = editors(part, prior.settings) if action == "config" else (PROGRAMME_MANAGER,)
            if role in roles:
                continue
            if roles == (PROGRAMME_MANAGER,):
                yield "config", f"{action} by a {role}: only a programme manager changes it"
            else:
                yield (
                    "config",
                    f"{action} of {part}/ by a {role}: only {', '.join(roles)} change it",
                )
        rejected = self._rejected.get(commit.oid)
        if rejected is not None:
            # Judged by the configuration it makes, the change failed (say, settings that
            # do not validate): it is not in force, and the command line names it.
            yield "config", "the change is not in force: {}: {}".format(*rejected)
        migrated, entry_changes = [], []
        for change in changes:
            if (editable_part(change.path) or change.path) in allowed:
                continue
            if action == "config" and _entry_case(change.path) is not None:
                entry_changes.append(change)  # judged below with the records migrated
                continue
            if ids.case_id_from_path(change.path) is None:
                yield "paths", f"{action} also changed {shown_path(change.path)}"
                continue
            if action == "config":
                migrated.append(change)  # judged below, as a migration
                continue
            before = self._open(change.old, after, change.path)
            now = self._open(change.new, after, change.path)
            if before is None or now is None or before != now:
                yield "paths", f"{action} changed the open fields of a record"
        if action == "config":
            yield from _check_migration_files(changes)
            yield from self._check_migration(commit, migrated, entry_changes, prior, after)
        if action == "config" and SCHEMAS_DIR in parts:
            order = after.schemas.open_fields if migrated else prior.schemas.open_fields
            yield from self._check_records_stay_valid(commit.oid, order, after)

    def _check_migration(
        self,
        commit: Commit,
        migrated: list[Change],
        entry_changes: list[Change],
        prior: Config,
        after: Config,
    ) -> Iterator[tuple[str, str]]:
        """A `config` commit that writes records is a migration: it adds the migrations
        it names, and brings every record below their format to it, one version on, with
        open fields exactly those the migrations make of the old ones, recomputed here
        without any key. The sealed forms cannot be checked without a key: `cmgit config
        commit` checked them against the new schemas with the programme manager's, who
        signed the commit (the signature and role checks above). It may add an entry to
        each record it migrates (`_check_entries` judges them); the migration that brings
        records to sealed entries adds exactly one to each."""
        steps = migrations.pending(after.migrations, prior.record_format)
        names = [m.name for m in steps]
        if commit.trailers.get("Cmgit-Migration", []) != names:
            yield "migration", "the Cmgit-Migration trailers do not name the migrations added"
        if not steps:
            if migrated or entry_changes:
                count = len(migrated) + len(entry_changes)
                yield "paths", f"config changed {count} record(s) and adds no migration"
            return
        # The open fields of every record before and after, read (and remembered) a
        # bucket folder at a time, in parallel, rather than one record at a time.
        before = self._rows(self._parent(commit.oid), prior)
        now = self._rows(commit.oid, after)
        touched = {ids.case_id_from_path(change.path) for change in migrated}
        left = [
            case_id
            for case_id, row in before.items()
            if migrations.record_format(row) < after.record_format and case_id not in touched
        ]
        if left:
            yield "migration", f"{len(left)} record(s) were left below format {after.record_format}"
        with_entry = {_entry_case(c.path) for c in entry_changes if c.old is None}
        if {_entry_case(c.path) for c in entry_changes} - touched:
            yield "paths", "config changed sealed entries of records it does not migrate"
        since = after.sealed_entries_from
        if since is not None and prior.record_format < since <= after.record_format:
            bare = len(touched - with_entry)
            if bare:
                yield "migration", f"{bare} record(s) brought to sealed entries without an entry"
        order = after.schemas.open_fields
        wrong = 0
        for case_id in touched:
            old, new = before.get(case_id or ""), now.get(case_id or "")
            if old is None or new is None:
                wrong += 1
                continue
            expected = migrations.apply_open(
                migrations.pending(steps, migrations.record_format(old)), old, order
            )
            expected["version"] = old["version"] + 1
            if migrations.record_format(old) >= after.record_format or expected != new:
                wrong += 1
        if wrong:
            yield (
                "migration",
                f"{wrong} record(s) are not their old open fields brought through "
                f"{', '.join(names)}, one version on",
            )

    def _rows(self, commit: str, config: Config) -> dict[str, dict[str, Any]]:
        """The open fields of each record in ``commit``, by case ID."""
        order = config.schemas.open_fields
        rows = (
            dict(zip(order, row, strict=True)) for row in caches.open_rows(self.git, commit, order)
        )
        return {row["case_id"]: row for row in rows}

    def _parent(self, commit: str) -> str:
        parent = self._first_parent(commit)
        assert parent is not None  # a config commit is never the first
        return parent

    def _check_records_stay_valid(
        self, commit: str, order: Sequence[str], after: Config
    ) -> Iterator[tuple[str, str]]:
        """A change of the schemas must leave every record valid. Keyless, the open
        fields are checked (read in ``order``: the new schema's where a migration wrote
        every record anew); the sealed forms are checked by `cmgit config commit` itself,
        with a programme manager's key."""
        invalid = 0
        for row in caches.open_rows(self.git, commit, order):
            try:
                after.schemas.validate_open(dict(zip(order, row, strict=True)))
            except SchemaError:
                invalid += 1
        if invalid:
            yield "config", f"the change leaves the open fields of {invalid} record(s) invalid"

    def _check_case_change(
        self,
        action: str,
        commit: Commit,
        actor: Any,
        changes: list[Change],
        parent: str,
        before: Config,
        committed: int | None,
    ) -> Iterator[tuple[str, str]]:
        case_id = commit.trailer("Cmgit-Case") or ""
        try:
            expected_path = ids.record_path(case_id)
        except CmgitError:
            yield "message", "malformed case ID"
            return
        # Besides the record, the case's own new entry (judged by `_check_entries`).
        if _beside_entries(changes, case_id) != {expected_path}:
            yield "paths", f"a {action} must change exactly the record of {case_id}"
            return
        change = next(c for c in changes if c.path == expected_path)
        old = self._open(change.old, before, change.path)
        new = self._open(change.new, before, change.path)
        if new is None:
            return  # reported by the record check
        flow = before.workflow
        if action == "new":
            if old is not None or new["version"] != 1 or new["state"] != flow.initial_state:
                yield "version", f"{case_id}: a new case starts at version 1 in the first state"
            received = commit.trailer(packages.RECEIVED_TRAILER)
            if received is not None and not re.fullmatch(r"[0-9a-f]{64}", received):
                yield "message", f"{case_id}: a received tag that is no keyed hash"
            yield from _check_state_history(case_id, commit, {}, new)
            yield from _check_dates(case_id, commit, {}, new, committed)
            # `new` refuses a key caseworker who is not an active caseworker (G03).
            codes = [KEY_WORKER] if KEY_WORKER in flow.guards else []
            yield from self._check_guards(
                case_id, "new case", commit, before, codes, new, None, actor, parent
            )
            return
        if old is None:
            yield "paths", f"{case_id}: {action} of a case that did not exist"
            return
        yield from _check_state_history(case_id, commit, old, new)
        yield from _check_dates(case_id, commit, old, new, committed)
        if new["version"] != old["version"] + 1:
            yield "version", f"{case_id}: version {old['version']} -> {new['version']}"
        team = actor.team
        if action in ("record", "edit"):
            if (new["state"], new["team"], new["caseworker"]) != (
                old["state"],
                old["team"],
                old["caseworker"],
            ):
                yield "transition", f"{case_id}: a {action} changed state or assignment"
            form = commit.trailer("Cmgit-Form")
            event = flow.events.get(form or "") if action == "record" else None
            roles = event.by if event else tuple({r for e in flow.events.values() for r in e.by})
            if event is not None and old["state"] not in event.states:
                yield "transition", f"{case_id}: {form} is not recorded in {old['state']}"
            if flow.permission(roles, actor.role, actor.id, team, old, action):
                yield "scope", f"{case_id}: {actor.id} may not {action} this case"
            return
        if action == "assign":
            rules = flow.assignment
            if new["caseworker"] != commit.trailer("Cmgit-Staff"):
                yield "transition", f"{case_id}: the caseworker is not the one named"
            if flow.permission(rules.by, actor.role, actor.id, team, old, action):
                yield "scope", f"{case_id}: {actor.id} may not reassign this case"
            codes = trail.expected_guards(flow, None, None)
            yield from self._check_guards(
                case_id, "reassignment", commit, before, codes, new, old, actor, parent
            )
            if _form(commit) != FIRST_FORM:
                yield from self._check_decisions(
                    case_id, commit, actor, before, codes, old["caseworker"], True
                )
            return
        source, target = commit.trailer("Cmgit-From"), commit.trailer("Cmgit-To")
        if (old["state"], new["state"]) != (source, target):
            yield "transition", f"{case_id}: the states do not match the declared move"
            return
        transition = flow.transitions.get(commit.trailer("Cmgit-Transition") or "")
        if transition is None or source not in transition.sources or transition.target != target:
            yield "transition", f"{case_id}: {source} -> {target} is not in the workflow"
            return
        if flow.permission(transition.by, actor.role, actor.id, team, old, transition.id):
            yield "scope", f"{case_id}: {actor.id} may not make {transition.id}"
        if transition.four_eyes and actor.id == old["caseworker"]:
            yield "four-eyes", f"{case_id}: the case's caseworker authorised {transition.id}"
        reason = commit.trailer("Cmgit-Reason")
        if transition.reasons is not None and reason not in transition.reasons:
            yield "transition", f"{case_id}: {transition.id} without an allowed reason"
        # The guards of the move as in force at the parent, where the open fields show
        # them: a hard condition on open fields alone (the rest read sealed forms).
        codes = trail.expected_guards(flow, transition, reason)
        yield from self._check_guards(
            case_id, transition.id, commit, before, codes, new, old, actor, parent
        )
        if _form(commit) != FIRST_FORM:
            yield from self._check_decisions(
                case_id, commit, actor, before, codes, None, bool(transition.four_eyes)
            )

    def _check_guards(
        self,
        case_id: str,
        what: str,
        commit: Commit,
        before: Config,
        codes: Sequence[str],
        new: Mapping[str, Any],
        old: Mapping[str, Any] | None,
        actor: Any,
        parent: str,
    ) -> Iterator[tuple[str, str]]:
        """The guards recomputed without a key: a hard one failing, or any the commit
        lists as passed (form 2). A condition on open fields is judged here
        (`_fails_keyless`); a keyless named check (guards.KEYLESS) where the caseloads
        at the parent are known (`OpenCases`)."""
        listed = {
            code: rest.partition(" ")[0]
            for code, _, rest in (v.partition(" ") for v in commit.trailers.get(trail.GUARD, []))
        }
        situation: Situation | None = None
        for code in codes:
            guard = before.workflow.guards[code]
            if guard.severity != "hard" and listed.get(code) != PASS:
                continue
            detail = f"{case_id}: {what} without {code} ({guard.summary})"
            if guard.check is not None and keyless(guard.check, guard.version):
                situation = situation or _keyless_situation(commit, before, old, new, actor)
                if situation is not None:
                    self._pending.append(
                        Deferred(
                            commit.oid,
                            parent,
                            case_id,
                            detail,
                            guard.check,
                            guard.version,
                            guard.params,
                            situation,
                        )
                    )
            elif self._fails_keyless(code, before, new):
                yield "guard", detail

    def _check_decisions(
        self,
        case_id: str,
        commit: Commit,
        actor: Any,
        before: Config,
        codes: Sequence[str],
        previous: str | None,
        authorised: bool,
    ) -> Iterator[tuple[str, str]]:
        """The decisions a form-2 transition commit lists (cmgit.trail), judged by the
        workflow in force at its parent."""
        for rule, detail in trail.judge(
            commit.trailers,
            before.workflow,
            codes,
            actor_id=actor.id,
            actor_role=actor.role,
            authorised=authorised,
            previous=previous,
        ):
            yield rule, f"{case_id}: {detail}"

    @staticmethod
    def _fails_keyless(code: str, before: Config, new: Mapping[str, Any]) -> bool | None:
        """Whether a guard's condition fails on the new open fields, judged without a
        key: None where it reads more (sealed forms), or is a named check."""
        guard = before.workflow.guards[code]
        if guard.schema is None or not _on_open_fields(guard.schema, before.schemas.open_fields):
            return None
        return not before.schemas.holds(code, guard.schema, new)

    def _check_event(
        self,
        kind: events.Kind,
        commit: Commit,
        actor: Any,
        changes: list[Change],
        before: Config,
        committed: int | None,
    ) -> Iterator[tuple[str, str]]:
        """Every event commit, by the one shape of cmgit.events: a valid event ID and day,
        by someone who reads cases; a programme-wide event changes no file; an event about
        one case changes exactly its record, one version on, its state and assignment
        untouched, by someone who may act on the case."""
        if to_date(commit.trailer("Cmgit-Date")) is None:
            yield "time", "the commit names no valid Cmgit-Date"
        if actor.role == AUDITOR:
            yield "scope", f"{kind.action} by an auditor, who reads no case"
        case_id = commit.trailer("Cmgit-Case") or ""
        path = ids.record_path(case_id) if ids.CASE_ID_RE.fullmatch(case_id) else None
        old = new = None
        # The case's own entries (judged by `_check_entries`) are no part of the shape.
        paths = _beside_entries(changes, case_id) if kind.per_case else {c.path for c in changes}
        if kind.per_case and path is not None and paths == {path}:
            record = next(c for c in changes if c.path == path)
            old = self._open(record.old, before, path)
            new = self._open(record.new, before, path)
        trailer = {key: commit.trailer(key) for key in kind.trailers()}
        problems = list(events.shape_problems(kind, trailer, paths, path, old, new))
        yield from problems
        if kind.per_case and not kind.seals_details and _added_entries(changes):
            yield "paths", f"a {kind.action} adds no sealed entry"
        if kind == events.EXPORT:
            reason = commit.trailer("Cmgit-Reason")
            if reason is not None and reason not in exchange.PLAINTEXT_REASONS:
                yield "scope", f"export for a reason not allowed ({reason})"
            return
        if old is None or new is None or any(rule != "message" for rule, _ in problems):
            return
        yield from _check_dates(case_id, commit, old, new, committed)
        if kind in events.KEY_EVENTS:
            yield from self._check_key_event(kind, commit, actor, old, new, before)
            return
        flow = before.workflow
        if kind == events.PACKAGE:
            yield from _check_disclosure(case_id, actor, old, flow)
            return
        roles = tuple({r for e in flow.events.values() for r in e.by})
        if flow.permission(roles, actor.role, actor.id, actor.team, old, kind.action):
            yield "scope", f"{case_id}: {actor.id} may not disclose this case"

    def _check_key_event(
        self,
        kind: events.Kind,
        commit: Commit,
        actor: Any,
        old: Mapping[str, Any],
        new: Mapping[str, Any],
        before: Config,
    ) -> Iterator[tuple[str, str]]:
        """A proposal to erase a case, its erasure, or the recovery of its key: by a
        programme manager, the record one version on and nothing else of it changed. An
        erasure is authorised by a second programme manager, right after the first
        proposed it (the case's previous commit, the same event ID), once the case is past
        its retention period on the day it names, and removes every entry of the case.
        A recovery names the custodians who came together, as many as the settings ask."""
        case_id, action = str(old.get("case_id")), kind.action
        if actor.role != PROGRAMME_MANAGER:
            yield "scope", f"{case_id}: {action} by a {actor.role}: only a programme manager"
        if not _sealed_layout(old, before):
            yield "sealed", f"{case_id}: a {action} of a record not kept as sealed entries"
        if dict(new) != {**old, "version": new.get("version")}:
            yield "transition", f"{case_id}: a {action} changed open fields besides the version"
        if kind == events.KEY_RECOVERY:
            people, threshold = wrap.custodians(before.settings)
            named = (commit.trailer(events.CUSTODIANS_TRAILER) or "").split()
            if (
                len(set(named)) != len(named)
                or len(named) != threshold
                or not (set(named) <= {person.id for person in people})
            ):
                yield (
                    "message",
                    f"{case_id}: {events.CUSTODIANS_TRAILER} does not name {threshold} "
                    "recovery custodians of the settings",
                )
        if kind != events.PURGE:
            return
        proposer = commit.trailer(events.PROPOSER_TRAILER)
        if proposer is None or proposer == actor.id:
            yield "four-eyes", f"{case_id}: the purge was authorised by its own proposer"
        elif not self._proposed(commit, proposer):
            yield (
                "four-eyes",
                f"{case_id}: the purge follows no proposal of {proposer} with its event ID",
            )
        months = before.settings.get("retention_period_months")
        day = to_date(commit.trailer("Cmgit-Date"))
        if not (
            isinstance(months, int)
            and day is not None
            and retention.past_retention([(case_id, old.get("closed_on"))], months, day)
        ):
            yield "retention", f"{case_id}: purged before its retention period ended"
        if self.git.ls_tree(commit.oid, entries.entries_dir(case_id)):
            yield "sealed", f"{case_id}: the purge left entries of the case"

    def _proposed(self, commit: Commit, proposer: str) -> bool:
        """Whether the case's previous commit is a purge proposal by ``proposer`` of the
        same event ID as ``commit``, the purge."""
        path = ids.record_path(commit.trailer("Cmgit-Case") or "")
        previous = self.git.text(
            "log", "-1", "--first-parent", "--format=%H", self._parent(commit.oid), "--", path
        )
        if not previous:
            return False
        message = _split_commit(self._raw(previous))[1].decode("utf-8", "replace")
        trailers = parse_trailers(message)
        return (
            trailers.get("Cmgit-Action") == [events.PURGE_PROPOSED.action]
            and trailers.get("Cmgit-Actor") == [proposer]
            and trailers.get(events.EVENT_TRAILER) == [commit.trailer(events.EVENT_TRAILER)]
        )

    def _check_import(
        self,
        commit: Commit,
        role: str,
        changes: list[Change],
        before: Config,
        committed: int | None,
    ) -> Iterator[tuple[str, str]]:
        """An import adds new sealed records only, each at version 1 in one state since a
        day up to its Cmgit-Date, by a programme manager, naming its source file's hash."""
        day, flow = to_date(commit.trailer("Cmgit-Date")), before.workflow
        if day is None:
            yield "time", "the commit names no valid Cmgit-Date"
        if role != PROGRAMME_MANAGER:
            yield "scope", f"import by a {role}: only a programme manager imports"
        if not re.fullmatch(r"[0-9a-f]{64}", commit.trailer("Cmgit-Source") or ""):
            yield "message", "import without the source file's sha256"
        # The entries of the cases it adds come with them (judged by `_check_entries`).
        entry_changes = [c for c in changes if c.path.startswith(SEALED)]
        changes = [c for c in changes if not c.path.startswith(SEALED)]
        added = {ids.case_id_from_path(c.path) for c in changes if c.old is None}
        if any(_entry_case(c.path) not in added for c in entry_changes):
            yield "paths", "import changed sealed entries of cases it does not add"
        if commit.trailer("Cmgit-Count") != str(len(changes)):
            yield "message", "import: Cmgit-Count is not the number of records added"
        for change in changes:
            case_id = ids.case_id_from_path(change.path) or change.path
            new = self._open(change.new, before, change.path)
            if change.old is not None or ids.case_id_from_path(change.path) is None:
                yield "paths", f"import changed {shown_path(change.path)}: it only adds records"
            elif new is not None:
                since = to_date(new.get("state_since"))
                if new["version"] != 1 or new["state"] not in flow.states:
                    yield "version", f"{case_id}: an imported case starts at version 1 in a state"
                if STATE_HISTORY in new and new[STATE_HISTORY] != [f"{since} {new['state']}"]:
                    yield "history", f"{case_id}: the state history is not its one state"
                if since is None or (day is not None and since > day):
                    yield "time", f"{case_id}: state_since is after the import's Cmgit-Date"
                yield from _check_dates(case_id, commit, {}, new, committed)


def _keyless_situation(
    commit: Commit,
    before: Config,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any],
    actor: Any,
) -> Situation | None:
    """What a keyless check reads (guards.KEYLESS), from what anyone reads: the open
    fields of the case before and after, the commit's day, its actor and reason, and the
    configuration in force at its parent; the caseloads are filled in by `OpenCases`. The
    overridden result is what the check finds without the override (a listing of it is
    judged by trail.judge). None for a commit without a valid day (flagged for that)."""
    today = to_date(commit.trailer("Cmgit-Date"))
    if today is None:
        return None
    return Situation(
        record=dict(new),
        before=dict(old or {}),
        actor_id=actor.id,
        actor_role=actor.role,
        today=today,
        settings=before.settings,
        active_caseworkers=frozenset(m.id for m in before.registry.active(CASEWORKER)),
        caseload={},
        authorisers=before.workflow.authorisers,
        reason=commit.trailer("Cmgit-Reason"),
    )


def _entry_case(path: str) -> str | None:
    """The case whose sealed entry ``path`` is, None if it is no entry's path."""
    named = entries.parse_entry_path(path)
    return None if named is None else named[0]


def _beside_entries(changes: Sequence[Change], case_id: str) -> set[str]:
    """The paths a commit changed, but for the sealed entries of ``case_id``."""
    return {c.path for c in changes if _entry_case(c.path) != case_id}


def _added_entries(changes: Sequence[Change]) -> list[Change]:
    """The files a commit added under sealed/."""
    return [c for c in changes if c.path.startswith(SEALED) and c.old is None]


def _sealed_layout(fields: Mapping[str, Any], config: Config) -> bool:
    """Whether a record of these open fields keeps its forms as sealed entries under
    ``config``: it is at a format from which a migration said so (format 2)."""
    since = config.sealed_entries_from
    return since is not None and migrations.record_format(fields) >= since


def _form(commit: Commit) -> str:
    """The form of a commit's message: the one it names, else the first."""
    return commit.trailer(FORMAT_TRAILER) or FIRST_FORM


def _decision_row(commit: Commit) -> dict[str, Any]:
    """One transition commit's decisions, compact, for `audit --json`."""
    t = commit.trailer
    return {
        "commit": commit.oid,
        "case": t("Cmgit-Case"),
        "transition": t("Cmgit-Transition") or t("Cmgit-Action"),
        "actor": t("Cmgit-Actor"),
        "role": t("Cmgit-Role"),
        **({"caseworker": t("Cmgit-Staff")} if t("Cmgit-Staff") else {}),
        **trail.decision(commit.trailers),
    }


def _check_disclosure(
    case_id: str, actor: Any, old: Mapping[str, Any], flow: Any
) -> Iterator[tuple[str, str]]:
    """A package is made by someone who may record the referral or the transfer, in a
    state where one of them is recorded; which of them it was is sealed, so either."""
    events = [flow.events[kind] for kind in packages.KINDS if kind in flow.events]
    allowed = [
        event
        for event in events
        if not flow.permission(event.by, actor.role, actor.id, actor.team, old, "disclosure")
    ]
    if not allowed:
        yield "scope", f"{case_id}: {actor.id} may not pack a referral or transfer of this case"
    elif not any(old["state"] in event.states for event in allowed):
        yield "transition", f"{case_id}: no referral or transfer is packed in {old['state']}"


def _on_open_fields(condition: Mapping[str, Any], open_fields: Sequence[str]) -> bool:
    """Whether a guard's condition reads open fields only: ``properties`` and
    ``required`` naming open fields, and no other keyword."""
    named, required = condition.get("properties", {}), condition.get("required", [])
    if set(condition) - {"properties", "required"} or not isinstance(named, Mapping):
        return False
    return isinstance(required, list) and {*named, *map(str, required)} <= set(open_fields)


def _check_migration_files(changes: list[Change]) -> Iterator[tuple[str, str]]:
    """A migration, once committed, is never changed or removed: the records it brought
    forward were judged by it."""
    for change in changes:
        if migrations.is_migration_path(change.path) and change.old is not None:
            yield "migration", f"{shown_path(change.path)}: a committed migration was changed"


def _check_state_history(
    case_id: str, commit: Commit, old: Mapping[str, Any], new: Mapping[str, Any]
) -> Iterator[tuple[str, str]]:
    """The state history grows by the state a `new` or `move` enters, on the day the commit
    names, and by nothing else: statistics read it instead of the commits."""
    if STATE_HISTORY not in new:  # a schema that keeps none
        return
    kept = old.get(STATE_HISTORY) or []
    entered = commit.trailer("Cmgit-To")
    if commit.trailer("Cmgit-Action") in ("new", "move"):
        kept = [*kept, f"{commit.trailer('Cmgit-Date')} {entered}"]
    if new[STATE_HISTORY] != kept:
        yield "history", f"{case_id}: the state history does not match the commits"


def _check_dates(
    case_id: str,
    commit: Commit,
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    committed: int | None,
) -> Iterator[tuple[str, str]]:
    """The day a command names (Cmgit-Date) falls between the case's identification and
    the commit, and the day the case entered its state never goes back. Dates inside the
    forms are the days things happened, entered later or not: they are not judged here."""
    day = to_date(commit.trailer("Cmgit-Date"))
    identified = to_date(new.get("identified_on"))
    made = None if committed is None else _utc_day(committed)
    if day is None:
        yield "time", f"{case_id}: the commit names no valid Cmgit-Date"
    elif identified is not None and day < identified:
        yield "time", f"{case_id}: Cmgit-Date is before the case was identified"
    elif made is not None and day > made + CLOCK_SKEW:
        yield "time", f"{case_id}: Cmgit-Date is after the commit was made"
    since, now = to_date(old.get("state_since")), to_date(new.get("state_since"))
    if since is not None and now is not None and now < since:
        yield "time", f"{case_id}: state_since went back"


# A commit's header as cmgit writes it (SPEC section 9): the tree, the parent (none at
# the trust root), author and committer, then the signature where there is one. Any
# other line (an encoding, a merge tag, a name) could carry what no one may read, and a
# commit can never be changed.
_HEADER_RE = re.compile(
    rb"tree [0-9a-f]{40}\n(parent [0-9a-f]{40}\n)?author ([^\n]*)\ncommitter ([^\n]*)"
)
_SIGNATURE = b"\ngpgsig "
_REPLACE_REF_RE = re.compile(r"refs/replace/[0-9a-f]{40}")
_TIME_RE = re.compile(rb"[0-9]{1,12} \+0000")
# Author and committer of the staff in the history, as cmgit writes them, up to the time.
_IDENTS: dict[str, bytes] = {}


def _split_commit(raw: bytes) -> tuple[re.Match[bytes] | None, bytes]:
    """A commit's header lines matched against cmgit's (None if they differ), and its
    message. Found with bytes operations: this runs once for every commit of a history."""
    end = raw.find(b"\n\n")
    if end < 0:
        return None, b""
    head = raw[:end]
    signature = head.find(_SIGNATURE)
    if signature >= 0:
        # Every line after the signature's first continues it (starts with a space).
        rest = head[signature + 1 :]
        if rest.count(b"\n") != rest.count(b"\n "):
            return None, raw[end + 2 :]
        head = head[:signature]
    return _HEADER_RE.fullmatch(head), raw[end + 2 :]


def _check_headers(
    header: re.Match[bytes] | None, parents: list[str], actor_id: str
) -> Iterator[tuple[str, str]]:
    """Exactly the header lines cmgit writes, author and committer both the actor in
    cmgit's form, at one time in UTC."""
    if header is None or (header.group(1) is None) != (not parents):
        yield "headers", "the commit has header lines cmgit never writes"
        return
    # The walk takes parents from git, which may read them from its commit-graph, a local
    # cache: the commit's own bytes, hashed as they were read, must name the same one.
    if parents and header.group(1) != f"parent {parents[0]}\n".encode():
        yield (
            "headers",
            "the commit's own parent is not the one git reports (commit-graph damaged?)",
        )
        return
    author, committer = header.group(2), header.group(3)
    ident = _IDENTS.get(actor_id)
    if ident is None:
        person = actor_author(actor_id)
        ident = _IDENTS[actor_id] = f"{person.name} <{person.email}> ".encode()
    if author.startswith(ident) and _TIME_RE.fullmatch(author, len(ident)):
        if committer != author:
            yield "headers", "committer or commit time differs from the author's"
        return
    name = author.partition(b" <")[0]
    if name != actor_id.encode():
        yield "headers", "author name is not the actor's staff ID"
    elif not author.startswith(ident):
        yield "headers", "author e-mail is not cmgit's form"
    else:
        yield "headers", "author time is not in cmgit's form"


def _commit_time(header: re.Match[bytes] | None) -> int | None:
    """The committer's time (seconds since 1970), None when it cannot be read."""
    if header is None:
        return None
    stamp = header.group(3).rpartition(b"> ")[2].partition(b" ")[0]
    return int(stamp) if stamp.isdigit() else None


def _utc_day(stamp: int) -> dt.date:
    return dt.datetime.fromtimestamp(stamp, dt.UTC).date()


# Set in the parent just before the pool forks: the workers inherit the auditor.
_AUDITOR: Auditor | None = None


def _own_reader() -> None:
    assert _AUDITOR is not None
    _AUDITOR.git.forget_reader()


def _check_batch(batch: list[Entry]) -> Checked:
    assert _AUDITOR is not None
    return _AUDITOR.check_batch(batch)


def _parse_raw(raw: bytes) -> tuple[list[Change], list[str]]:
    """The files changed and the trees made, from `git log --raw -t -z` entries:
    ":old new oldoid newoid status\\0path\\0"."""
    parts = raw.strip(b"\n\0").split(b"\0")
    changes = []
    trees = []
    for meta, path in zip(parts[::2], parts[1::2], strict=False):
        fields = meta.decode("ascii", "replace").lstrip("\n:").split()
        if len(fields) < 5:
            continue
        old_mode, new_mode, old, new = fields[:4]
        if new_mode == RAW_TREE_MODE:
            trees.append(new)
            continue
        if old_mode == RAW_TREE_MODE:  # a folder gone, or become a file
            old_mode, old = NO_MODE, NO_OBJECT
            if new_mode == NO_MODE:
                continue
        changes.append(
            Change(
                old_mode,
                new_mode,
                None if old == NO_OBJECT else old,
                None if new == NO_OBJECT else new,
                path.decode("utf-8", "surrogateescape"),
            )
        )
    return changes, trees


def audit_repository(
    where: Path,
    since: str | None = None,
    *,
    remembered: bool = True,
    progress: Progress = SILENT,
) -> Report:
    """`cmgit audit` of the repository around ``where``: the commits after ``since`` (any
    revision git names), else after the last verified commit if ``remembered``, else all."""
    git = Git.discover(where, bare=True)  # a central repository is audited in place
    git.offline = True  # an auditor's clone lacks the sealed entries: never fetch them
    start = git.text("rev-parse", "--verify", f"{since}^{{commit}}") if since else None
    return Auditor(git).run(start, remembered=remembered, progress=progress)


def config_in_force(git: Git, head: str) -> tuple[Sources, dict[str, str]]:
    """The configuration in force at ``head`` (the commit of each part, as in
    `Auditor.in_force`), and each part committed at ``head`` that is not the one in force,
    because audit flags a change of it, with the last commit that changed it: none when
    the configuration committed is the one in force.

    What is in force is remembered by commit id, so a command judges only the commits
    that changed the configuration since the last command (usually none, and found
    without a git process); an audit never reads it and judges every commit itself.
    """
    auditor = Auditor(git)
    last = caches.remembered(git, IN_FORCE_CACHE, ())
    if _is_sources(last):
        auditor._last = last
    sources = auditor.in_force(head)
    if last != (head, sources):
        caches.remember(git, IN_FORCE_CACHE, (), (head, sources))
    committed = part_ids(git, (head,) * len(PARTS))
    return sources, {
        part: git.text("log", "-1", "--first-parent", "--format=%H", head, "--", part)
        for part, now, kept in zip(PARTS, committed, part_ids(git, sources), strict=True)
        if now != kept
    }


def proposed_sources(git: Git, parent: str, commit: str, sources: Sources) -> Sources:
    """What is in force after ``commit`` if it is valid: the parts it changes as of
    itself, the others as ``sources``, in force at its parent."""
    before, after = part_ids(git, (parent,) * 3), part_ids(git, (commit,) * 3)
    return cast(
        Sources,
        tuple(commit if b != a else s for b, a, s in zip(before, after, sources, strict=True)),
    )


def remember_own_config_commit(git: Git, parent: str, commit: str, sources: Sources) -> None:
    """``commit``, a configuration commit this cmgit made on ``parent`` (where ``sources``
    are in force) after checking it with the key that opens every record, is in force
    from now on: the next command reads that from the cache instead of judging it again
    without a key, which for a migration of every record costs seconds. `cmgit audit`
    judges it as it judges every commit."""
    caches.remember(
        git, IN_FORCE_CACHE, (), (commit, proposed_sources(git, parent, commit, sources))
    )


def _is_sources(value: Any) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], tuple)
        and len(value[1]) == len(PARTS)
        and all(isinstance(oid, str) for oid in value[1])
    )


@dataclass(frozen=True)
class Exposure:
    """A version of a record in the history that was sealed to a person's key."""

    case_id: str
    version: int
    commit: str

    def as_dict(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "version": self.version, "commit": self.commit}


def readable_history(root: Path, staff_id: str, until: str = "HEAD") -> list[Exposure]:
    """Every committed version of every record that STAFF_ID's key could open, without
    any key: each version was sealed to the recipients the registry and settings of its
    own commit called for, so that configuration says whether theirs was among them.

    Re-encryption closes the current version only; these stay readable with their key
    for as long as the history is kept (SPEC has no per-case key to destroy).
    """
    auditor = Auditor(Git(root))
    found: list[Exposure] = []
    entries = (entry for batch in auditor.commits(None, until) for entry in batch)
    for commit, _, changes, _ in entries:
        wanted_by: dict[str, list[str]] = {}
        for change in changes:
            case_id = ids.case_id_from_path(change.path)
            if case_id is None or change.new is None or change.new_mode not in BLOB_MODES:
                continue
            try:
                config = auditor.config(commit.oid)
            except CmgitError:
                break
            member = config.registry.staff.get(staff_id)
            if member is None or not member.active:
                break
            fields = auditor._open(change.new, config, change.path)
            if not fields or not isinstance(fields.get("version"), int):
                continue
            key = f"{fields.get('team')}/{fields.get('caseworker')}"
            if key not in wanted_by:
                wanted_by[key] = config.registry.recipients_for(
                    str(fields.get("team")), fields.get("caseworker"), config.settings
                )
            if member.recipient in wanted_by[key]:
                found.append(Exposure(case_id, fields["version"], commit.oid))
    return found


def summarise(report: Report) -> Mapping[str, Any]:
    return {
        "head": report.head,
        "since": report.start,
        "verified_at": report.verified_at,
        "full_run_reason": report.full_run_reason,
        "checked": report.checked,
        "ok": report.ok,
        "actors_proven": report.actors_proven,
        "signatures_required": report.signatures_required,
        "unproven_commits": report.unproven,
        "violations": [v.as_dict() for v in report.violations],
        "decisions": report.decisions,
        "sealed_entries_unchecked": report.sealed_entries_unchecked,
    }
