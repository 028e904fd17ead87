"""Orchestration: one unit of work per command.

load -> open -> validate -> change -> seal -> commit, where nothing becomes visible until
the commit moves the branch, so a refused or failed command leaves the work tree, the
index and the history as they were. Configuration (schemas, settings, staff registry) is
read from the committed tree, never from the work tree, so an uncommitted edit of
``staff.yaml`` cannot grant anyone anything.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import operator
import os
import shutil
import stat
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from . import caches, crypto, ids, pool, records, signing, workflow, yamlio
from . import guards as checks
from .config import (
    SCHEMAS_DIR,
    SETTINGS_FILE,
    STAFF_FILE,
    Config,
    check_trusted,
    load_yaml,
    read_config,
)
from .errors import (
    AccessError,
    CaseNotFound,
    CmgitError,
    DirtyWorkTree,
    IntegrityError,
    InvalidRecord,
    NoIdentity,
    NotACaseRepository,
    NotARecipient,
    ParseError,
    Refused,
    RepositoryBusy,
    RepositoryError,
    SchemaError,
    TooLarge,
    UsageError,
)
from .faults import crash_point
from .guards import CASELOAD, KEY_WORKER, RECORD_SCHEMA
from .history import (
    BLOB_MODES,
    PENDING_FILE,
    Author,
    Git,
    format_message,
    object_id,
    remove_stale_index_lock,
    repository_lock,
)
from .merge import merge_cases
from .progress import SILENT, Progress
from .records import Record
from .registry import (
    CASEWORKER,
    PROGRAMME_MANAGER,
    ROLES,
    Registry,
    Staff,
    settings_defaults,
)
from .schema import CASE, SETTINGS, STAFF, SchemaSet
from .template import template_root
from .workflow import Failure, Transition, Workflow

MAX_FORM_BYTES = 1024 * 1024
DEFAULT_CRITERIA = [
    "unaccompanied_or_separated",
    "abuse_neglect_or_exploitation",
    "trafficked_or_at_risk",
    "child_labour",
    "associated_with_armed_groups",
    "child_marriage",
    "in_conflict_with_the_law",
    "other_protection_risk",
]
# What `cmgit init` copies from the template into a new case repository.
TEMPLATE_ITEMS = ("schemas", "site", "mkdocs.yml")


def staff_author(actor: Staff) -> Author:
    # Staff IDs only: no names in history (SPEC section 8).
    return Author(actor.id, f"{actor.id}@cmgit.invalid")


@dataclass
class Loaded:
    """A record as read from the work tree, with what was committed for its path."""

    record: Record
    path: str
    armored: str
    head_blob: str | None
    header: crypto.Header


@dataclass
class MoveResult:
    case_id: str
    transition: Transition | None
    source: str
    target: str
    warnings: list[Failure]


GITLINK_MODE = "160000"  # a submodule: `git ls-tree -r` lists it, it has no content
# What is committed for a record: (mode, blob id), or None; _LOOK_UP: read it from HEAD.
Committed = tuple[str, str] | None
_LOOK_UP: Committed = ("look", "up")


@dataclass
class CheckResult:
    case_id: str
    ok: bool
    opened: bool
    problem: str | None = None
    exit_code: int = 0


@dataclass
class Repository:
    git: Git
    cipher: crypto.Cipher = field(default_factory=crypto.AgeCipher)
    # CMGIT_SIGNING_KEY: the actor's SSH private key, for signed commits (SPEC section 3).
    signing_key_path: Path | None = None
    # Bars for long reads (the first keyless read after a clone); set by the command line.
    progress: Progress = SILENT
    _loaded_key: str = field(default="", init=False, repr=False)
    # Paths of a killed command's change that opening the repository finished.
    finished: list[str] = field(default_factory=list, init=False, repr=False)

    @classmethod
    def open(cls, where: Path | None = None, cipher: crypto.Cipher | None = None) -> Repository:
        git = Git.discover(where or Path.cwd())
        repo = cls(git, cipher or crypto.AgeCipher())
        if (git.git_dir / "cmgit" / PENDING_FILE).exists():
            # A change was killed half-way: finish it. If git's index.lock was left too,
            # or a writer holds the repository, leave it to recover or to that writer.
            with contextlib.suppress(RepositoryError), repository_lock(git.git_dir):
                repo.finished = git.finish_pending()
        if git.head() is None or git.blob_id("HEAD", "schemas/case.schema.json") is None:
            raise NotACaseRepository(
                "not a cmgit case repository", hint="run cmgit init DIR, or use -C DIR"
            )
        return repo

    @property
    def root(self) -> Path:
        return self.git.root

    # -- committed configuration ------------------------------------------------------

    def _config_key(self) -> str:
        """Object ids of the committed configuration: equal ids, equal configuration."""
        head = self.git.head()
        root = self.git.objects.tree(self.git.objects.commit_tree(head)) if head else {}
        return " ".join(
            f"{name}={root.get(name)}" for name in (SCHEMAS_DIR, STAFF_FILE, SETTINGS_FILE)
        )

    @cached_property
    def _config(self) -> Config:
        self._loaded_key = self._config_key()
        head = self.git.head()
        assert head is not None
        return read_config(self.git, head)

    def _check_config_trusted(self) -> None:
        head = self.git.head()
        if head is not None:
            check_trusted(self.git, head, self.schemas, self._config_key())

    @property
    def schemas(self) -> SchemaSet:
        return self._config.schemas

    @property
    def settings(self) -> dict[str, Any]:
        return self._config.settings

    @property
    def registry(self) -> Registry:
        return self._config.registry

    @property
    def workflow(self) -> Workflow:
        return self._config.workflow

    def _reload(self) -> None:
        """Forget the configuration if a commit since it was read has changed it."""
        if "_config" in self.__dict__ and self._config_key() != self._loaded_key:
            del self.__dict__["_config"]

    # -- who is acting ----------------------------------------------------------------

    def actor(self, identities: Sequence[crypto.Identity]) -> Staff:
        return self.registry.actor_for(i.recipient for i in identities)

    def _acting(self, identities: Sequence[crypto.Identity], *roles: str, action: str) -> Staff:
        actor = self.actor(identities)
        if roles:
            self.registry.check_role(actor, *roles, action=action)
        return actor

    # -- reading records --------------------------------------------------------------

    def case_ids(self) -> list[str]:
        """Every case committed at HEAD as a file (not a submodule), from the tree alone."""
        return [
            case_id
            for case_id, (mode, _) in self.committed_records().items()
            if mode != GITLINK_MODE
        ]

    def committed_records(self) -> dict[str, tuple[str, str]]:
        """(mode, blob id) of every record at HEAD, by case ID, from one tree listing."""
        return {
            case_id: (entry.mode, entry.oid)
            for entry in self.git.ls_tree("HEAD", ids.RECORDS_DIR)
            if (case_id := ids.case_id_from_path(entry.path))
        }

    def _read_work_file(self, path: str, case_id: str) -> bytes:
        full = self.root / path
        try:
            info = os.lstat(full)
        except FileNotFoundError:
            raise CaseNotFound(f"no record for case {case_id}", case_id=case_id) from None
        if not stat.S_ISREG(info.st_mode):
            raise IntegrityError(
                "record path is not a regular file",
                case_id=case_id,
                hint="remove the link and restore the file with git",
            )
        if info.st_size > records.MAX_RECORD_FILE:
            raise TooLarge("record file is larger than cmgit accepts", case_id=case_id)
        fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            # Ask for the size seen, not the limit: read(n) sets aside n bytes first.
            data = handle.read(info.st_size + 1)
        if len(data) > records.MAX_RECORD_FILE:
            raise TooLarge("record file is larger than cmgit accepts", case_id=case_id)
        return data

    def load_open(self, case_id: str, committed: Committed = _LOOK_UP) -> Loaded:
        """A record's open fields and sealed block, checked without any key.

        ``committed`` is the (mode, blob id) committed at HEAD for the record, when the
        caller has already read it from the tree (bulk reads); None if not committed.
        """
        ids.check_case_id(case_id)
        path = ids.record_path(case_id)
        entry = self.git.path_entry("HEAD", path) if committed is _LOOK_UP else committed
        if entry is not None and entry[0] not in BLOB_MODES:
            raise IntegrityError(
                "committed record is not a regular file",
                case_id=case_id,
                hint="run cmgit audit; a link or submodule was committed in its place",
            )
        data = self._read_work_file(path, case_id)
        try:
            open_fields, armored = records.parse_file(data, self.schemas.open_fields)
        except CmgitError as exc:
            exc.case_id = case_id
            raise
        if open_fields.get("case_id") != case_id:
            raise IntegrityError(
                "record belongs to another case (file copied or swapped)",
                case_id=case_id,
                hint="restore it with git",
            )
        self.schemas.validate_open(open_fields, case_id=case_id)
        if entry is not None and object_id("blob", data) != entry[1]:
            if (self.git.git_dir / "cmgit" / PENDING_FILE).exists():
                # A change between moving the branch and writing the file: wait for its
                # writer, or finish it if the writer was killed, and read again.
                with repository_lock(self.git.git_dir):
                    self.git.finish_pending()
                return self.load_open(case_id, committed)
            # Only cmgit writes records, and it commits what it writes: any difference
            # from the committed file was made by something else.
            older = False
            with contextlib.suppress(CmgitError):
                old = records.parse_open_fields(
                    self.git.read_blob(entry[1], limit=records.MAX_RECORD_FILE),
                    self.schemas.open_fields,
                )
                older = open_fields["version"] < old["version"]
            raise IntegrityError(
                "record is older than the committed one (an old copy restored?)"
                if older
                else "record was changed outside cmgit",
                case_id=case_id,
                hint=f"restore it with: git checkout -- {path}",
            )
        try:
            header = crypto.inspect(armored)
        except CmgitError as exc:
            exc.case_id = case_id
            raise
        return Loaded(Record(open_fields), path, armored, entry[1] if entry else None, header)

    def expected_recipients(self, open_fields: Mapping[str, Any]) -> list[str]:
        return self.registry.recipients_for(
            open_fields["team"], open_fields["caseworker"], self.settings
        )

    def load(
        self, case_id: str, identities: Sequence[crypto.Identity], committed: Committed = _LOOK_UP
    ) -> Loaded:
        """A record opened and checked: binding to path, version and open fields, schema."""
        return self.open_loaded(self.load_open(case_id, committed), identities)

    def open_loaded(self, loaded: Loaded, identities: Sequence[crypto.Identity]) -> Loaded:
        """Decrypt a record ``load_open`` has checked, and check its sealed content."""
        case_id = loaded.record.case_id
        expected = self._check_stanzas(loaded)
        try:
            plaintext = self.cipher.open(loaded.armored, identities)
        except NotARecipient:
            mine = {i.recipient for i in identities}
            if mine & set(expected):
                raise IntegrityError(
                    "sealed block does not open with a key it was sealed for "
                    "(tampered, or not re-encrypted after a staff change)",
                    case_id=case_id,
                    hint="run cmgit validate and cmgit audit",
                ) from None
            raise NotARecipient("you are not a recipient of this case", case_id=case_id) from None
        except CmgitError as exc:
            exc.case_id = case_id
            raise
        payload = records.parse_payload(plaintext)
        records.check_binding(case_id, loaded.record.open, payload)
        loaded.record.forms = payload.forms
        self.schemas.validate(
            loaded.record.document(self.schemas.field_order),
            CASE,
            what="case record",
            case_id=case_id,
        )
        return loaded

    # -- writing ----------------------------------------------------------------------

    def ensure_clean(self, paths: Sequence[str]) -> None:
        """Refuse (exit 6) if a git operation is under way or ``paths`` are not committed."""
        self.git.check_no_operation()
        dirty = self.git.status(*paths)
        if dirty:
            raise _uncommitted(dirty)

    def precheck_clean(self, path: str) -> None:
        """`ensure_clean` for one file, in process: refuse (exit 6) before any work if a git
        operation is under way or the file differs from HEAD. `change` runs the whole
        check again under the lock (staged changes included), so this one only spares
        the common case a `git status` of its own."""
        self.git.check_no_operation()
        entry = self.git.path_entry("HEAD", path)
        try:
            info = os.lstat(self.root / path)
        except FileNotFoundError:
            if entry is None:
                return
            info = None
        if (
            entry is not None
            and info is not None
            and stat.S_ISREG(info.st_mode)
            and (info.st_size <= records.MAX_RECORD_FILE)
            and (bool(info.st_mode & 0o100) == (entry[0] == "100755"))
        ):
            with open(self.root / path, "rb") as handle:
                if object_id("blob", handle.read(info.st_size + 1)) == entry[1]:
                    return
        raise _uncommitted([path])

    @contextlib.contextmanager
    def change(self, paths: Sequence[str]) -> Iterator[str | None]:
        """Hold the repository lock, refuse if ``paths`` have uncommitted changes or a git
        operation is under way, and yield the parent commit for the new one."""
        with repository_lock(self.git.git_dir):
            self.git.finish_pending()
            head = self.git.head()
            if len(paths) == 1 and head is not None:
                # One file (a case command): its bytes checked in process and the index by
                # git spare `git status` a scan of the work tree.
                self.precheck_clean(paths[0])
                staged = self.git.run(
                    "diff-index", "--cached", "--name-only", "-z", head, "--", paths[0]
                )
                if staged:
                    raise _uncommitted([paths[0]])
            else:
                self.ensure_clean(paths)
            self._reload()
            yield head

    def seal(self, record: Record, prev_blob: str | None, today: dt.date) -> bytes:
        """Summarise, validate and seal a record into the bytes of its file."""
        record.open = workflow.summarise(record.open, record.forms, self.settings, today)
        self.schemas.validate(
            record.document(self.schemas.field_order),
            CASE,
            what="case record",
            case_id=record.case_id,
        )
        check_item_ids(record, self.schemas)
        self._check_config_trusted()
        recipients = self.expected_recipients(record.open)
        armored = self.cipher.seal(records.seal_payload(record, prev_blob), recipients)
        data = records.render_file(record.open, self.schemas.open_fields, armored)
        crash_point("sealed")
        return data

    def _signer(self, actor: Staff) -> Callable[[bytes], str] | None:
        """Sign with the actor's registered key; required when the settings say so."""
        return make_signer(
            self.signing_key_path, actor, bool(self.settings.get("require_signed_commits"))
        )

    def _commit(
        self,
        files: Mapping[str, bytes | None],
        subject: str,
        trailers: Sequence[tuple[str, str]],
        actor: Staff,
        parent: str | None,
    ) -> str:
        message = format_message(
            subject, [*trailers, ("Cmgit-Actor", actor.id), ("Cmgit-Role", actor.role)]
        )
        commit = self.git.commit(
            files, message, staff_author(actor), parent, sign=self._signer(actor)
        )
        if any(not path.startswith(ids.RECORDS_DIR + "/") for path in files):
            self.__dict__.pop("_config", None)
        return commit

    # -- cases ------------------------------------------------------------------------

    def new_case(
        self,
        identities: Sequence[crypto.Identity],
        form_data: bytes,
        *,
        today: dt.date,
        caseworker: str | None = None,
        team: str | None = None,
    ) -> str:
        actor = self.actor(identities)
        forms = self.read_form_file(form_data, allowed=("identification", "registration"))
        if "identification" not in forms:
            raise UsageError("the form file needs an identification form")
        worker_id = caseworker or (actor.id if actor.role == CASEWORKER else None)
        if worker_id is None:
            raise UsageError("name the key caseworker with --caseworker ID")
        worker = self.registry.get(ids.check_staff_id(worker_id))
        if not worker.active or worker.role != CASEWORKER:
            raise Refused(f"{worker.id} is not an active caseworker (guard {KEY_WORKER})")
        case_team = ids.check_team_id(team) if team else worker.team
        if case_team != worker.team:
            raise UsageError(f"{worker.id} works in team {worker.team}, not {case_team}")
        while True:
            case_id = ids.new_case_id(self.settings["case_id_prefix"], os.urandom(5))
            if self.git.blob_id("HEAD", ids.record_path(case_id)) is None:
                break
        path = ids.record_path(case_id)
        denied = self.workflow.permission(
            self.workflow.events["identification"].by,
            actor.role,
            actor.id,
            actor.team,
            {"team": case_team, "caseworker": worker.id},
            "creating a case",
        )
        if denied:
            raise Refused(f"refused: {denied}")
        open_fields: dict[str, Any] = {name: None for name in self.schemas.open_fields}
        open_fields.update(
            case_id=case_id,
            version=1,
            episode=1,
            team=case_team,
            caseworker=worker.id,
            immediate_risk=False,
            comprehensive_assessment_required=False,
        )
        workflow.enter_state(open_fields, self.workflow.initial_state, today)
        forms["assignment"] = [
            {
                "assignment_id": "assignment-1",
                "staff_id": worker.id,
                "role_on_case": "key_caseworker",
                "from": today.isoformat(),
                "reason": "initial",
            }
        ]
        record = Record(open_fields, forms)
        with self.change([path]) as parent:
            data = self.seal(record, None, today)
            self._commit(
                {path: data},
                f"{case_id}: new -> {self.workflow.initial_state}",
                [
                    ("Cmgit-Case", case_id),
                    ("Cmgit-Action", "new"),
                    ("Cmgit-To", self.workflow.initial_state),
                    ("Cmgit-Version", "1"),
                    ("Cmgit-Date", today.isoformat()),
                ],
                actor,
                parent,
            )
        return case_id

    def show(self, identities: Sequence[crypto.Identity], case_id: str) -> dict[str, Any]:
        self.actor(identities)
        return self.load(case_id, identities).record.document(self.schemas.field_order)

    def record_form(
        self,
        identities: Sequence[crypto.Identity],
        case_id: str,
        form: str,
        form_data: bytes,
        *,
        today: dt.date,
    ) -> str:
        """Add or update one form (an event: no change of state); returns its item id."""
        actor = self.actor(identities)
        event = self.workflow.events.get(form)
        if event is None:
            known = form in self.schemas.sealed_fields
            raise UsageError(
                (
                    f"the {form} form is recorded with a move or an assignment, not on its own"
                    if known
                    else "unknown form"
                ),
                hint="see cmgit record --help for the forms",
            )
        item = self.read_form_file(form_data, allowed=(form,), exactly=True)[form]
        self.precheck_clean(ids.record_path(case_id))
        loaded = self.load(case_id, identities)
        outcome = workflow.record_event(
            _whole(loaded.record),
            event,
            item,
            actor,
            self.settings,
            today,
            flow=self.workflow,
            schema=self.schemas,
            staff=self.registry,
            check=self._check_gb,
        )
        if outcome.refused:
            raise outcome.refusal(f"recording {form}", case_id)
        loaded.record.forms = outcome.forms
        return self._save(loaded, actor, today, "record", outcome.item_id, [("Cmgit-Form", form)])

    def edit(
        self,
        identities: Sequence[crypto.Identity],
        case_id: str,
        editor: Callable[[str], str | None],
        retry: Callable[[CmgitError], bool],
        *,
        today: dt.date,
    ) -> bool:
        """Let a person change the sealed forms in an editor; False when nothing changed.

        ``editor`` gets the forms as YAML and returns the edited text, or None to abort.
        An invalid edit is refused; ``retry`` decides whether to re-open the editor on
        the person's text (the command line asks them) or to give up, changing nothing.
        """
        actor = self.actor(identities)
        self.precheck_clean(ids.record_path(case_id))
        loaded = self.load(case_id, identities)
        record = loaded.record
        workflow.refuse_if_closed(record.open["state"], case_id)
        editors = {role for event in self.workflow.events.values() for role in event.by}
        denied = self.workflow.permission(
            editors, actor.role, actor.id, actor.team, record.open, "editing forms"
        )
        if denied:
            raise Refused(f"refused: {denied}", case_id=case_id)
        editable = self.schemas.editable_fields
        system = {f: record.forms[f] for f in record.forms if f not in editable}
        order = [f for f in editable if f in record.forms]
        before = yamlio.dump({f: record.forms[f] for f in order}) if order else "{}\n"
        text = before
        while True:
            edited = editor(text)
            if edited is None or edited == before:
                return False
            try:
                forms = self.read_form_file(
                    edited.encode("utf-8"),
                    allowed=editable,
                    what="edited forms",
                )
                forms.update(system)
                dropped = [f for f in record.forms if f not in forms]
                if dropped:
                    raise SchemaError(
                        "an edit cannot remove whole forms: " + ", ".join(dropped),
                        hint="put them back, or abort by leaving the editor without saving",
                    )
                candidate = Record(dict(record.open), forms)
                self.schemas.validate(
                    candidate.document(self.schemas.field_order),
                    CASE,
                    what="case record",
                    case_id=case_id,
                )
                check_item_ids(candidate, self.schemas)
                break
            except InvalidRecord as exc:
                exc.case_id = case_id
                if not retry(exc):
                    raise
                text = edited
        if forms == record.forms:
            return False
        record.forms = forms
        self._save(loaded, actor, today, "edit", None, [])
        return True

    # -- the workflow -------------------------------------------------------------------

    def caseloads(self, exclude: str | None = None) -> dict[str, int]:
        """Open cases per caseworker, from the open fields at HEAD (no key needed)."""
        at = {name: n for n, name in enumerate(self.schemas.open_fields)}
        case_at, state_at, worker_at = at["case_id"], at["state"], at["caseworker"]
        open_states = self.workflow.caseload_states
        return dict(
            Counter(
                values[worker_at]
                for values in self._open_rows()
                if values[state_at] in open_states and values[case_at] != exclude
            )
        )

    def move(
        self,
        identities: Sequence[crypto.Identity],
        case_id: str,
        target: str,
        *,
        today: dt.date,
        reason: str | None = None,
        form_data: bytes | None = None,
        override: str | None = None,
    ) -> MoveResult:
        """One workflow transition, guarded; ``form_data`` merges one form in the same commit."""
        actor = self.actor(identities)
        if target not in workflow.STATES:
            raise UsageError("unknown state", hint="states: " + ", ".join(workflow.STATES))
        if reason is not None:
            ids.check_reason(reason)
        recordable = [*self.workflow.events, "reopen"]
        forms = self.read_form_file(form_data, allowed=recordable) if form_data is not None else {}
        self.precheck_clean(ids.record_path(case_id))
        loaded = self.load(case_id, identities)
        source = loaded.record.open["state"]
        transition = self.workflow.transition_for(source, target, reason, case_id=case_id)
        caseload = self.caseloads(exclude=case_id) if CASELOAD in transition.guards else None
        outcome = workflow.transition(
            _whole(loaded.record),
            transition,
            actor,
            self.settings,
            today,
            flow=self.workflow,
            schema=self.schemas,
            staff=self.registry,
            reason=reason,
            forms=forms,
            override=override,
            caseload=caseload,
            check=self._check_gb,
        )
        if outcome.refused:
            raise outcome.refusal(f"move {source} -> {target} ({transition.id})", case_id)
        loaded.record.open, loaded.record.forms = outcome.open, outcome.forms
        trailers = [
            ("Cmgit-Transition", transition.id),
            ("Cmgit-From", source),
            ("Cmgit-To", target),
        ]
        if reason:
            trailers.append(("Cmgit-Reason", reason))
        trailers += [("Cmgit-Form", name) for name in forms]
        if override and CASELOAD in transition.guards:
            trailers.append(("Cmgit-Override", CASELOAD))
        trailers += [("Cmgit-Warning", w.code) for w in outcome.warnings]
        self._save(
            loaded, actor, today, "move", None, trailers, subject=f"{case_id}: {source} -> {target}"
        )
        return MoveResult(case_id, transition, source, target, outcome.warnings)

    # -- keyless views -------------------------------------------------------------------

    def _profile(self, profile: str | None) -> str:
        name = profile or self.settings.get("display_profile", "iag6")
        if name not in self.workflow.profiles:
            raise UsageError(
                "unknown display profile", hint="profiles: " + ", ".join(self.workflow.profiles)
            )
        return str(name)

    def list_cases(
        self,
        *,
        today: dt.date,
        states: Sequence[str] = (),
        team: str | None = None,
        caseworker: str | None = None,
        overdue: bool = False,
        profile: str | None = None,
    ) -> CaseList:
        """Cases from their open fields, filtered, by case ID; each with its step in the
        display profile. A row is a tuple: a programme lists 100,000 cases, and a mapping
        each costs more than the rest of the listing."""
        for name in states:
            if name not in workflow.STATES:
                raise UsageError("unknown state", hint="states: " + ", ".join(workflow.STATES))
        shown = self._profile(profile)
        labels = {state: self.workflow.label(state, shown) for state in self.workflow.states}
        order = self.schemas.open_fields
        at = {name: n for n, name in enumerate(order)}
        state_at, team_at, worker_at = at["state"], at["team"], at["caseworker"]
        due_at = [at["next_follow_up_due"], at["next_review_due"]]
        rows = sorted(self._open_rows(), key=operator.itemgetter(at["case_id"]))
        if states or team or caseworker or overdue:
            rows = [
                values
                for values in rows
                if not (
                    (states and values[state_at] not in states)
                    or (team and values[team_at] != team)
                    or (caseworker and values[worker_at] != caseworker)
                    or (overdue and not _is_overdue([values[n] for n in due_at], today))
                )
            ]
        steps = [labels.get(values[state_at], values[state_at]) for values in rows]
        return CaseList(order, rows, steps)

    def _open_rows(self) -> list[tuple[Any, ...]]:
        head = self.git.head()
        if head is None:
            return []
        return caches.open_rows(self.git, head, self.schemas.open_fields, self.progress)

    def due(self, *, today: dt.date, within: int = 7) -> list[dict[str, Any]]:
        """Follow-ups and reviews due within ``within`` days or overdue, highest risk first."""
        horizon = today + dt.timedelta(days=within)
        rank = {"high": 0, "medium": 1, "low": 2}
        at = {name: n for n, name in enumerate(self.schemas.open_fields)}
        cases = self._open_rows()
        shown = [(name, at[name]) for name in ("risk_level", "state", "team", "caseworker")]
        found = []
        for kind, key in (("follow_up", "next_follow_up_due"), ("review", "next_review_due")):
            column = list(map(operator.itemgetter(at[key]), cases))
            try:
                distinct = set(column)
            except TypeError:  # a list, in a record cmgit did not write: not a date
                column = [value if isinstance(value, str) else None for value in column]
                distinct = set(column)
            # A programme's due dates are a few hundred different days: each is read once.
            days = {
                text: day
                for text in distinct
                if (day := checks.to_date(text)) is not None and day <= horizon
            }
            for values, text in zip(cases, column, strict=True):
                when = days.get(text)
                if when is not None:
                    found.append(
                        {
                            "case_id": values[at["case_id"]],
                            "kind": kind,
                            "due_on": when.isoformat(),
                            "days_overdue": (today - when).days,
                            **{name: values[i] for name, i in shown},
                        }
                    )
        found.sort(
            key=lambda r: (
                rank.get(r["risk_level"] or "", 3),
                -r["days_overdue"],
                r["case_id"],
                r["kind"],
            )
        )
        return found

    def case_log(self, case_id: str, *, profile: str | None = None) -> list[dict[str, Any]]:
        """The case's history from commit messages alone: the path it took, and who acted."""
        path = ids.record_path(ids.check_case_id(case_id))
        commits = self.git.log(path)
        if not commits:
            raise CaseNotFound(f"no history for case {case_id}", case_id=case_id)
        shown = self._profile(profile)
        rows = []
        for commit in commits:
            t = commit.trailer
            action = t("Cmgit-Action") or "unknown"
            if action.startswith(("staff-", "settings-")):
                action = "re-encrypt"
            source, target = t("Cmgit-From"), t("Cmgit-To")
            rows.append(
                {
                    "commit": commit.oid,
                    # The day the action happened (CMGIT_TODAY for back-dated entry).
                    "date": t("Cmgit-Date") or commit.when[:10],
                    "actor": t("Cmgit-Actor") or commit.author,
                    "role": t("Cmgit-Role") or "",
                    "action": action,
                    "transition": t("Cmgit-Transition"),
                    "from": source,
                    "to": target,
                    "from_step": self.workflow.label(source, shown) if source else None,
                    "to_step": self.workflow.label(target, shown) if target else None,
                    "reason": t("Cmgit-Reason"),
                    "detail": t("Cmgit-Form") or t("Cmgit-Staff") or t("Cmgit-Setting"),
                    "version": int(v) if (v := t("Cmgit-Version")) and v.isdigit() else None,
                    "warnings": commit.trailers.get("Cmgit-Warning", []),
                    "signature": self._signature_status(commit.oid, t("Cmgit-Actor")),
                }
            )
        return rows

    def open_blob(self, data: bytes, identities: Sequence[crypto.Identity], case_id: str) -> Record:
        """A record from bytes (any version in history), opened and checked."""
        open_fields, armored = records.parse_file(data, self.schemas.open_fields)
        payload = records.parse_payload(self.cipher.open(armored, identities))
        records.check_binding(case_id, open_fields, payload)
        return Record(open_fields, payload.forms)

    def merge_record(
        self,
        case_id: str,
        base: bytes | None,
        ours: bytes,
        theirs: bytes,
        theirs_blob: str,
        identities: Sequence[crypto.Identity],
        today: dt.date,
    ) -> bytes:
        """Two offices' versions of one case merged field by field, re-sealed; its
        version is theirs plus one (SPEC section 6). A true conflict is refused."""
        order = self.schemas.field_order
        mine = self.open_blob(ours, identities, case_id).document(order)
        other = self.open_blob(theirs, identities, case_id).document(order)
        old = self.open_blob(base, identities, case_id).document(order) if base else {}
        merged = merge_cases(old, mine, other, case_id=case_id)
        record = Record(
            {k: merged[k] for k in self.schemas.open_fields},
            {k: merged[k] for k in self.schemas.sealed_fields if k in merged},
        )
        record.open["version"] = int(other["version"]) + 1
        return self.seal(record, theirs_blob, today)

    def recover(self) -> list[str]:
        """Finish what an interrupted command left: temporary files, and records whose
        commit was made but whose index and work-tree copy were not yet brought up to
        date. A file someone changed by hand is never touched (it stays for git)."""
        done = []
        git_dir = self.git.git_dir
        with repository_lock(git_dir, wait_for_index=False):
            if remove_stale_index_lock(git_dir):
                done.append("removed git's index.lock left by a git command that stopped")
            self.finished += self.git.finish_pending()
            done += [f"finished the interrupted change of {path}" for path in self.finished]
            self.finished = []
            if (git_dir / "index.lock").exists():
                raise RepositoryBusy(
                    "repository is busy: a git command holds index.lock",
                    hint="wait for it to finish and run cmgit recover again",
                )
            for folder in (self.root / ids.RECORDS_DIR, self.git.objects.folder):
                for stray in folder.rglob(".cmgit-tmp-*"):
                    stray.unlink()
                    done.append(f"removed an unfinished temporary file in {folder.name}/")
                for stray in folder.rglob("tmp_obj_*"):
                    stray.unlink()
                    done.append("removed an unfinished object file")
            # staff.yaml and settings.yaml are written in the top folder; the journal
            # of a change in .git/cmgit
            for folder in (self.root, git_dir / "cmgit"):
                for stray in folder.glob(".cmgit-tmp-*"):
                    stray.unlink()
                    done.append("removed an unfinished temporary file")
            staged = self.git.run(
                "diff-index", "--cached", "-z", "--no-renames", "HEAD", "--", ids.RECORDS_DIR
            )
            parts = staged.split(b"\0")
            for meta, raw in zip(parts[::2], parts[1::2], strict=False):
                path = raw.decode("utf-8", "surrogateescape")
                index_oid = meta.decode("ascii").split()[3]
                current = self.root / path
                try:
                    on_disk = (
                        read_limited(current, records.MAX_RECORD_FILE, "record file")
                        if current.is_file()
                        else None
                    )
                except TooLarge:
                    continue  # no record cmgit wrote: changed by hand, left alone
                head_oid = self.git.blob_id("HEAD", path)
                if on_disk is not None and object_id("blob", on_disk) not in (index_oid, head_oid):
                    continue  # changed by hand since: leave it for the person to decide
                data = (
                    self.git.read_blob(head_oid, limit=records.MAX_RECORD_FILE)
                    if head_oid
                    else None
                )
                self.git._sync_worktree({path: head_oid}, {path: data})
                done.append(f"brought {path} up to its committed version")
        return done

    def textconv(self, data: bytes, identities: Sequence[crypto.Identity] | None) -> str:
        """A record file as a recipient should see it in `git diff`: open fields and
        decrypted forms; anyone else, and anything unreadable, sees the file as it is."""
        try:
            open_fields, armored = records.parse_file(data, self.schemas.open_fields)
            if not identities:
                raise NotARecipient("no identity")
            payload = records.parse_payload(self.cipher.open(armored, identities))
        except CmgitError:
            return data.decode("utf-8", "replace")
        return yamlio.dump(Record(open_fields, payload.forms).document(self.schemas.field_order))

    def _signature_status(self, commit: str, actor_id: str | None) -> str:
        """good: valid and by the actor's registered key; bad: anything else signed; none."""
        payload, armored = self.git.objects.signed_commit(commit)
        if armored is None:
            return "none"
        try:
            key = signing.verify(payload, armored)
        except signing.BadSignature:
            return "bad"
        member = self.registry.staff.get(actor_id or "")
        return "good" if member is not None and member.signing_key == key else "bad"

    def _check_gb(self, doc: dict[str, Any]) -> None:
        """GB: the whole record after a change validates against the case schema."""
        try:
            self.schemas.validate(doc, CASE, what="case record", case_id=str(doc["case_id"]))
        except SchemaError as exc:
            exc.message = f"{RECORD_SCHEMA}: {exc.message}"
            raise

    def assign(
        self,
        identities: Sequence[crypto.Identity],
        case_id: str,
        staff_id: str,
        *,
        today: dt.date,
        reason: str | None = None,
        override: str | None = None,
    ) -> MoveResult:
        """Reassign the key caseworker (supervisor or programme manager) and re-encrypt."""
        actor = self.actor(identities)
        reason = self.workflow.check_assignment_reason(reason)
        worker = self.registry.get(ids.check_staff_id(staff_id))
        self.precheck_clean(ids.record_path(case_id))
        loaded = self.load(case_id, identities)
        outcome = workflow.reassign(
            _whole(loaded.record),
            worker,
            actor,
            self.settings,
            today,
            flow=self.workflow,
            schema=self.schemas,
            staff=self.registry,
            reason=reason,
            override=override,
            caseload=self.caseloads(exclude=case_id),
            check=self._check_gb,
        )
        if outcome.refused:
            raise outcome.refusal("reassignment", case_id)
        loaded.record.open, loaded.record.forms = outcome.open, outcome.forms
        trailers = [("Cmgit-Staff", worker.id), ("Cmgit-Reason", reason)]
        if override:
            trailers.append(("Cmgit-Override", CASELOAD))
        self._save(
            loaded, actor, today, "assign", None, trailers, subject=f"{case_id}: assign {worker.id}"
        )
        state = outcome.open["state"]
        return MoveResult(case_id, None, state, state, [])

    def _save(
        self,
        loaded: Loaded,
        actor: Staff,
        today: dt.date,
        action: str,
        item_id: str | None,
        trailers: list[tuple[str, str]],
        *,
        subject: str | None = None,
    ) -> str:
        record = loaded.record
        case_id = record.case_id
        with self.change([loaded.path]) as parent:
            if self.git.blob_id("HEAD", loaded.path) != loaded.head_blob:
                raise Refused("case changed while this command ran; run it again", case_id=case_id)
            record.open["version"] = record.version + 1
            data = self.seal(record, loaded.head_blob, today)
            if subject is None:
                subject = f"{case_id}: {action}" + (f" {trailers[0][1]}" if trailers else "")
            self._commit(
                {loaded.path: data},
                subject,
                [
                    ("Cmgit-Case", case_id),
                    ("Cmgit-Action", action),
                    *trailers,
                    ("Cmgit-Version", str(record.version)),
                    ("Cmgit-Date", today.isoformat()),
                ],
                actor,
                parent,
            )
        return item_id or action

    def find(
        self, identities: Sequence[crypto.Identity], text: str, progress: Progress = SILENT
    ) -> list[str]:
        """Cases whose sealed text contains ``text`` (case-insensitive), in memory only."""
        actor = self.actor(identities)
        needle = unicodedata.normalize("NFC", text).casefold()
        if not needle.strip():
            raise UsageError("give some text to look for")
        committed = self.committed_records()
        found = _in_pool(
            self,
            "matches",
            sorted(committed),
            committed,
            (identities, actor.recipient, needle),
            "Searching cases",
            progress,
        )
        return [case_id for case_id, hit in zip(sorted(committed), found, strict=True) if hit]

    def matches(
        self,
        case_id: str,
        committed: Committed,
        identities: Sequence[crypto.Identity],
        recipient: str,
        needle: str,
    ) -> bool:
        """Whether the sealed forms of a case ``recipient`` can open contain ``needle``."""
        try:
            loaded = self.load_open(case_id, committed)
            if recipient not in self.expected_recipients(loaded.record.open):
                return False
            plaintext = self.cipher.open(loaded.armored, identities)
        except (InvalidRecord, NotARecipient, CaseNotFound):
            return False
        payload = records.parse_payload(plaintext)
        return needle in json.dumps(payload.forms, ensure_ascii=False).casefold()

    def validate(
        self,
        identities: Sequence[crypto.Identity] | None,
        case_ids: Sequence[str],
        progress: Progress = SILENT,
    ) -> list[CheckResult]:
        """Check every record (or those named): a record of the registry's recipients, and,
        where ``identities`` open it, its sealed forms against the schema."""
        committed = self.committed_records()
        wanted = list(case_ids) or sorted(committed)
        return _in_pool(
            self, "check_record", wanted, committed, (identities,), "Validating cases", progress
        )

    def _check_stanzas(self, loaded: Loaded) -> list[str]:
        """The recipients the registry calls for; IntegrityError if the sealed block has
        another number of them. Checked before any key is used: a key slipped in (or left
        out) is a change made outside cmgit, and the block must not be re-sealed as if it
        were fine."""
        expected = self.expected_recipients(loaded.record.open)
        if loaded.header.stanza_count != len(expected):
            raise IntegrityError(
                f"sealed for {loaded.header.stanza_count} recipients, the registry calls "
                f"for {len(expected)}",
                case_id=loaded.record.case_id,
                hint="run cmgit validate and cmgit audit; a programme manager can re-encrypt it",
            )
        return expected

    def check_record(
        self, case_id: str, committed: Committed, identities: Sequence[crypto.Identity] | None
    ) -> CheckResult:
        mine = {i.recipient for i in identities or ()}
        try:
            loaded = self.load_open(case_id, committed)
            expected = self._check_stanzas(loaded)
            opened = bool(identities) and bool(mine & set(expected))
            if opened:
                assert identities is not None
                self.open_loaded(loaded, identities)
            return CheckResult(case_id, True, opened)
        except CmgitError as exc:
            if exc.case_id is None:
                exc.case_id = case_id
            return CheckResult(case_id, False, False, str(exc), exc.exit_code)

    # -- forms ------------------------------------------------------------------------

    def read_form_file(
        self,
        data: bytes,
        *,
        allowed: Sequence[str],
        exactly: bool = False,
        what: str = "form file",
    ) -> dict[str, Any]:
        """A form file (SPEC section 4): one top-level key per form, typed by its schema."""
        doc = yamlio.load(data, what=what, max_bytes=MAX_FORM_BYTES)
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise ParseError(f"{what}: expected form names at the top level, line 1, column 1")
        unknown = [k for k in doc if k not in allowed]
        if unknown:
            named = [k for k in unknown if ids.REASON_RE.fullmatch(k)]
            raise SchemaError(
                f"{what} holds forms that do not belong here"
                + (f": {', '.join(named)}" if named else ""),
                hint="allowed: " + ", ".join(allowed),
            )
        if exactly and len(doc) != 1:
            raise UsageError(f"{what} must hold exactly the form {allowed[0]}")
        props = self.schemas.case_properties
        typed = {}
        for name, value in doc.items():
            schema = props[name]
            # A form file holds one item of a repeated form; `edit` holds whole lists.
            if "items" in schema and not isinstance(value, list):
                schema = schema["items"]
            typed[name] = self.schemas.coerce(value, schema, what=what)
        return typed

    # -- staff and settings -----------------------------------------------------------

    def staff_add(self, identities: Sequence[crypto.Identity], member: Staff) -> int:
        actor = self._acting(identities, PROGRAMME_MANAGER, action="adding staff")
        if member.signing_key:
            member = replace(member, signing_key=signing.check_public_key(member.signing_key))
        if member.id in self.registry.staff:
            raise UsageError(f"staff member {member.id} exists", hint="use cmgit staff update")
        clash = [m.id for m in self.registry.staff.values() if m.recipient == member.recipient]
        if clash:
            raise UsageError(f"that recipient already belongs to {clash[0]}")
        return self._change_registry(
            identities, actor, self.registry.with_member(member), "add", member.id
        )

    def staff_update(
        self, identities: Sequence[crypto.Identity], staff_id: str, **changes: Any
    ) -> int:
        actor = self._acting(identities, PROGRAMME_MANAGER, action="changing staff")
        current = self.registry.get(staff_id)
        changes = {k: v for k, v in changes.items() if v is not None}
        if changes.get("signing_key"):
            changes["signing_key"] = signing.check_public_key(changes["signing_key"])
        if not changes:
            raise UsageError(
                "nothing to change", hint="give --team, --role, --recipient or --signing-key"
            )
        if "recipient" in changes:
            clash = [
                m.id
                for m in self.registry.staff.values()
                if m.recipient == changes["recipient"] and m.id != staff_id
            ]
            if clash:
                raise UsageError(f"that recipient already belongs to {clash[0]}")
        if ("team" in changes or "role" in changes) and current.role == CASEWORKER:
            held = self._held_cases(staff_id)
            if held:
                raise Refused(
                    f"{staff_id} still holds {len(held)} case(s)",
                    hint="reassign them first (cmgit assign)",
                )
        return self._change_registry(
            identities, actor, self.registry.updated(staff_id, **changes), "update", staff_id
        )

    def staff_deactivate(self, identities: Sequence[crypto.Identity], staff_id: str) -> int:
        actor = self._acting(identities, PROGRAMME_MANAGER, action="deactivating staff")
        member = self.registry.get(staff_id)
        if not member.active:
            raise UsageError(f"{staff_id} is already deactivated")
        if member.id == actor.id:
            raise Refused("you cannot deactivate yourself", hint="ask another programme manager")
        held = self._held_cases(staff_id)
        if held:
            raise Refused(
                f"{staff_id} still holds {len(held)} open case(s)",
                hint="reassign them first (cmgit assign)",
            )
        registry = self.registry.updated(staff_id, active=False)
        if not registry.active(PROGRAMME_MANAGER):
            raise Refused("the last programme manager cannot be deactivated")
        return self._change_registry(identities, actor, registry, "deactivate", staff_id)

    def _held_cases(self, staff_id: str) -> list[str]:
        held = []
        for case_id in self.case_ids():
            open_fields = self.load_open(case_id).record.open
            if open_fields["caseworker"] == staff_id and open_fields["state"] in (
                self.workflow.held_states
            ):
                held.append(case_id)
        return held

    def _change_registry(
        self,
        identities: Sequence[crypto.Identity],
        actor: Staff,
        registry: Registry,
        verb: str,
        staff_id: str,
    ) -> int:
        doc = registry.to_doc()
        self.schemas.validate(doc, STAFF, what="staff registry")
        data = yamlio.dump(doc).encode("utf-8")
        return self._reconfigure(
            identities,
            actor,
            {STAFF_FILE: data},
            registry,
            self.settings,
            f"staff: {verb} {staff_id}",
            [("Cmgit-Action", f"staff-{verb}"), ("Cmgit-Staff", staff_id)],
        )

    def settings_set(self, identities: Sequence[crypto.Identity], key: str, value: str) -> int:
        actor = self._acting(identities, PROGRAMME_MANAGER, action="changing settings")
        props = self.schemas.schemas[SETTINGS]["properties"]
        if key not in props:
            named = f" '{key}'" if ids.REASON_RE.fullmatch(key) else ""
            raise UsageError(f"unknown setting{named}", hint="see cmgit settings show")
        typed = load_yaml(
            value.encode("utf-8"), self.schemas, props[key], what="setting value", limit=64 * 1024
        )
        settings = {**self.settings, key: typed}
        self.schemas.validate(settings, SETTINGS, what="settings")
        if settings == self.settings:
            raise UsageError(f"{key} already has that value")
        return self._reconfigure(
            identities,
            actor,
            {SETTINGS_FILE: yamlio.dump(settings).encode("utf-8")},
            self.registry,
            settings,
            f"settings: set {key}",
            [("Cmgit-Action", "settings-set"), ("Cmgit-Setting", key)],
        )

    def _reconfigure(
        self,
        identities: Sequence[crypto.Identity],
        actor: Staff,
        files: dict[str, bytes | None],
        registry: Registry,
        settings: Mapping[str, Any],
        subject: str,
        trailers: list[tuple[str, str]],
    ) -> int:
        """Commit a registry or settings change together with every record whose
        recipients it changes, re-encrypted; their open fields stay as they were."""
        self._check_config_trusted()
        todo = []
        for case_id in self.case_ids():
            loaded = self.load_open(case_id)
            open_fields = loaded.record.open
            before = self.expected_recipients(open_fields)
            after = registry.recipients_for(
                open_fields["team"], open_fields["caseworker"], settings
            )
            if before != after:
                todo.append((loaded, after))
        with self.change([*files, *(loaded.path for loaded, _ in todo)]) as parent:
            for loaded, after in todo:
                try:
                    plaintext = self.cipher.open(loaded.armored, identities)
                except NotARecipient:
                    raise Refused(
                        "this change re-encrypts cases you cannot open",
                        case_id=loaded.record.case_id,
                        hint="a programme manager who can open every case must run it",
                    ) from None
                files[loaded.path] = records.render_file(
                    loaded.record.open,
                    self.schemas.open_fields,
                    self.cipher.seal(plaintext, after),
                )
            self._commit(files, subject, trailers, actor, parent)
        return len(todo)


# -- helpers shared by commands --------------------------------------------------------


def _whole(record: Record) -> dict[str, Any]:
    """A record's open fields and sealed forms in one mapping, as the workflow takes it."""
    return {**record.open, **record.forms}


def _uncommitted(paths: Sequence[str]) -> DirtyWorkTree:
    shown = ", ".join(paths[:5]) + (" ..." if len(paths) > 5 else "")
    return DirtyWorkTree(
        f"uncommitted changes in {shown}",
        hint="commit or discard them with git, then run the command again",
    )


def _is_overdue(due_dates: Sequence[Any], today: dt.date) -> bool:
    return any((day := checks.to_date(value)) is not None and day < today for value in due_dates)


@dataclass(frozen=True)
class CaseList:
    """Listed cases: one tuple of open values per case, in the order of ``fields``, and
    each case's step in the display profile."""

    fields: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    steps: list[str]

    def column(self, name: str) -> list[Any]:
        if name == "step":
            return self.steps
        n = self.fields.index(name)
        return [row[n] for row in self.rows]

    def as_dicts(self) -> list[dict[str, Any]]:
        fields = (*self.fields, "step")
        return [
            dict(zip(fields, (*row, step), strict=True))
            for row, step in zip(self.rows, self.steps, strict=True)
        ]


def check_item_ids(record: Record, schemas: SchemaSet) -> None:
    for form in schemas.sealed_fields:
        id_field = schemas.form_id_field(form)
        items = record.forms.get(form)
        if not id_field or not isinstance(items, list):
            continue
        seen: set[Any] = set()
        for index, item in enumerate(items):
            value = item.get(id_field)
            if value in seen:
                raise SchemaError(
                    "case record has a repeated form id",
                    case_id=record.case_id,
                    problems=[f"at /{form}/{index}/{id_field}: fails 'unique'"],
                )
            seen.add(value)


def init_repository(
    target: Path,
    *,
    admin: str,
    recipient: str,
    team: str,
    signing_key: str | None,
    prefix: str,
    programme: str,
    signing_key_path: Path | None = None,
) -> Path:
    """Create a case repository from the template; the first programme manager is
    registered in its first commit, the trust root audit starts from."""
    ids.check_staff_id(admin)
    ids.check_team_id(team)
    ids.check_prefix(prefix)
    recipient = crypto.check_recipient(recipient)
    if signing_key:
        signing_key = signing.check_public_key(signing_key)
    if target.exists() and any(target.iterdir()):
        raise UsageError("target folder is not empty", hint="choose a new or empty folder")
    source = template_root()
    created = not target.exists()
    try:
        git = Git(target)
        git.init()
        for item in TEMPLATE_ITEMS:
            src = source / item
            if src.is_dir():
                shutil.copytree(src, target / item)
            elif src.is_file():
                shutil.copy2(src, target / item)
        (target / ids.RECORDS_DIR).mkdir(exist_ok=True)
        schemas = SchemaSet.load(target / SCHEMAS_DIR)
        settings = settings_defaults(schemas.schemas[SETTINGS])
        settings.update(
            programme_name=programme,
            case_id_prefix=prefix,
            vulnerability_criteria=list(DEFAULT_CRITERIA),
        )
        schemas.validate(settings, SETTINGS, what="settings")
        admin_member = Staff(admin, PROGRAMME_MANAGER, team, recipient, signing_key, True)
        registry = Registry([admin_member])
        schemas.validate(registry.to_doc(), STAFF, what="staff registry")
        files: dict[str, bytes | None] = {
            SETTINGS_FILE: yamlio.dump(settings).encode("utf-8"),
            STAFF_FILE: yamlio.dump(registry.to_doc()).encode("utf-8"),
            f"{ids.RECORDS_DIR}/.gitkeep": b"",
        }
        for path in sorted(p for p in target.rglob("*") if p.is_file() and ".git" not in p.parts):
            rel = path.relative_to(target).as_posix()
            files.setdefault(rel, path.read_bytes())
        message = format_message(
            "init: case repository", [("Cmgit-Action", "init"), ("Cmgit-Actor", admin)]
        )
        git.commit(
            files,
            message,
            staff_author(admin_member),
            None,
            sign=make_signer(signing_key_path, admin_member, False),
        )
    except BaseException:
        if created:
            shutil.rmtree(target, ignore_errors=True)
        raise
    return target


def make_signer(path: Path | None, actor: Staff, required: bool) -> Callable[[bytes], str] | None:
    if path is None:
        if required:
            raise NoIdentity(
                "this repository requires signed commits",
                hint="set CMGIT_SIGNING_KEY to your SSH signing key (ssh-keygen -t ed25519)",
            )
        return None
    key = signing.load_private_key(path)
    if signing.public_key_text(key.public_key()) != actor.signing_key:
        raise AccessError(
            f"your signing key is not the one registered for {actor.id}",
            hint="a programme manager registers it: cmgit staff update ID --signing-key ...",
        )
    return lambda data: signing.sign(data, key)


def read_limited(path: str | os.PathLike[str], limit: int, what: str) -> bytes:
    """The bytes of a file, refused (TooLarge) by its size before they are read."""
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size > limit:
            raise TooLarge(f"{what} is larger than cmgit accepts")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"{what} is larger than cmgit accepts")
    return data


def keygen(path: Path) -> str:
    secret, recipient = crypto.generate_identity()
    crypto.write_identity_file(path, secret, recipient)
    return recipient


def load_identities(path: str | os.PathLike[str] | None) -> tuple[crypto.Identity, ...]:
    if not path:
        raise NoIdentity(
            "no identity given", hint="set CMGIT_IDENTITY to your identity file, or use --identity"
        )
    return crypto.load_identities(Path(path))


__all__ = ["ROLES", "CheckResult", "Loaded", "Repository", "init_repository", "keygen"]


# -- bulk reads on every core -------------------------------------------------------------

# Set in the parent just before the pool forks: the workers inherit the repository, its
# configuration and the identities instead of having them pickled (keys never are).
_BULK: tuple[Repository, str, tuple[Any, ...], dict[str, tuple[str, str]]] | None = None
# Below this many records a pool costs more than it saves.
POOL_FROM = 200


def _in_pool(
    repo: Repository,
    method: str,
    case_ids: list[str],
    committed: dict[str, tuple[str, str]],
    extra: tuple[Any, ...],
    what: str,
    progress: Progress,
) -> list[Any]:
    """``repo.<method>(case_id, committed, *extra)`` for every case, in order; on every core
    when there are many."""
    global _BULK
    _BULK = (repo, method, extra, committed)
    try:
        with progress.task(what, len(case_ids)) as advance:
            if len(case_ids) < POOL_FROM or pool.workers() < 2:
                size = 1
                parts: Iterator[list[Any]] = map(_run_chunk, ([c] for c in case_ids))
            else:
                size = max(50, min(1000, len(case_ids) // (pool.workers() * 8) or 1))
                chunks = (case_ids[i : i + size] for i in range(0, len(case_ids), size))
                parts = pool.fork_map(_run_chunk, chunks, _own_reader)
            results = []
            for part in parts:
                results.extend(part)
                advance(len(part))
            return results
    finally:
        _BULK = None


def _own_reader() -> None:
    assert _BULK is not None
    _BULK[0].git.forget_reader()


def _run_chunk(case_ids: list[str]) -> list[Any]:
    assert _BULK is not None
    repo, method, extra, committed = _BULK
    work = getattr(repo, method)
    return [work(case_id, committed.get(case_id), *extra) for case_id in case_ids]
