"""The repository core: a case repository opened, its committed configuration, the person
acting, and its records read and checked.

Configuration (schemas, settings, staff registry) is read from the committed tree, never
from the work tree, so an uncommitted edit of ``staff.yaml`` cannot grant anyone
anything; and only as far as it is in force, so a committed change that audit flags
cannot either. Changing a record is `unit`'s (change -> seal -> commit); the commands are
functions over this core in the other modules of the package.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Self

from .. import __version__, caches, crypto, entries, ids, migrations, records
from ..audit import Sources, config_in_force, remember_own_config_commit
from ..config import PARTS, Config, not_in_force, read_parts
from ..errors import (
    CaseNotFound,
    CmgitError,
    CmgitTooOld,
    IntegrityError,
    NotACaseRepository,
    NotARecipient,
    RepositoryError,
    SealedWithoutYou,
    TooLarge,
)
from ..history import BLOB_MODES, HELD_FILE, PENDING_FILE, Git, object_id, repository_lock
from ..keyring.wrap import CaseKey
from ..progress import SILENT, Progress
from ..records import Record
from ..registry import Registry, Staff
from ..schema import CASE, SchemaSet
from ..workflow import Workflow
from . import casekeys

GITLINK_MODE = "160000"  # a submodule: `git ls-tree -r` lists it, it has no content
# What is committed for a record: (mode, blob id), or None; LOOK_UP: read it from HEAD.
Committed = tuple[str, str] | None
LOOK_UP: Committed = ("look", "up")


def running_version() -> str:
    """The version of the cmgit running."""
    return __version__


@dataclass
class Loaded:
    """A record as read from the work tree, with what was committed for its path.

    Format 1 keeps the forms in one sealed block (``armored``, ``header``); format 2 in
    sealed entries (``entries``), opened with the case key (``key``). ``record_before``
    and ``forms_opened`` are the record as read, for what a change writes."""

    record: Record
    path: str
    armored: str
    head_blob: str | None
    header: crypto.Header | None
    entries: dict[int, bytes] = field(default_factory=dict)
    key: CaseKey | None = None
    record_before: dict[str, Any] = field(default_factory=dict)
    forms_opened: dict[str, Any] = field(default_factory=dict)

    @property
    def sealed_entries(self) -> bool:
        """Whether the record is kept in format 2's sealed entries."""
        return self.header is None


@dataclass
class Core:
    """A case repository: its git, how it seals, and who signs; the configuration and the
    records as committed."""

    git: Git
    cipher: crypto.Cipher = field(default_factory=crypto.AgeCipher)
    # CMGIT_SIGNING_KEY: the actor's SSH private key, for signed commits (SPEC section 3).
    signing_key_path: Path | None = None
    # Bars for long reads (the first keyless read after a clone); set by the command line.
    progress: Progress = SILENT
    _loaded_key: str = field(default="", init=False, repr=False)
    # Paths of a killed command's change that opening the repository finished.
    finished: list[str] = field(default_factory=list, init=False, repr=False)
    # Refs of a change killed before its branch moved that opening the repository put back.
    put_back: list[str] = field(default_factory=list, init=False, repr=False)

    @classmethod
    def open(cls, where: Path | None = None, cipher: crypto.Cipher | None = None) -> Self:
        git = Git.discover(where or Path.cwd())
        repo = cls(git, cipher or crypto.AgeCipher())
        if any((git.git_dir / "cmgit" / name).exists() for name in (PENDING_FILE, HELD_FILE)):
            # A change was killed half-way: finish it. If git's index.lock was left too,
            # or a writer holds the repository, leave it to recover or to that writer.
            with contextlib.suppress(RepositoryError), repository_lock(git.git_dir):
                repo.put_back = git.restore_held()
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
        return " ".join(f"{name}={root.get(name)}" for name in PARTS)

    @cached_property
    def _trust(self) -> tuple[Sources, dict[str, str]]:
        """The commit of each part of the configuration in force, and each part committed
        that is not, because audit flags a change of it (made outside cmgit, or by someone
        not entitled to it), with the commit that changed it: nothing is changed under
        those, and each part is read as of its last valid change."""
        self._loaded_key = self._config_key()
        head = self.git.head()
        assert head is not None
        return config_in_force(self.git, head)

    @cached_property
    def _config(self) -> Config:
        return read_parts(self.git, self._trust[0])

    def untrusted_config(self, rewriting: Collection[str] = ()) -> RepositoryError | None:
        """Why the configuration committed is not the one in force, or None if it is, or
        if only parts ``rewriting`` are not: a programme manager's staff or settings
        command writes its file anew from the one in force, and so repairs it."""
        self.reload_config()
        return not_in_force(oid for part, oid in self._trust[1].items() if part not in rewriting)

    def check_config_trusted(self, rewriting: Collection[str] = ()) -> None:
        """Refuse to act on a configuration that is not in force (see `_trust`): a record
        sealed or a rule applied under it would be one audit flags."""
        problem = self.untrusted_config(rewriting)
        if problem is not None:
            raise problem

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

    @property
    def config(self) -> Config:
        """The configuration in force, whole."""
        return self._config

    def check_writer(self) -> None:
        """Refuse to write with a cmgit older than the oldest the repository names (the
        highest `requires_cmgit` of its migrations): an older one would write records
        in a format, or under rules, it does not know."""
        needed = migrations.oldest_writer(self.config.migrations)
        if needed is None:
            return
        running = running_version()
        if migrations.version_key(running) < migrations.version_key(needed):
            raise CmgitTooOld(
                f"this repository is written by cmgit {needed} or later; this is cmgit "
                f"{running}, which may only read it",
                hint=f"upgrade cmgit to {needed} or later, then run the command again",
            )

    @contextlib.contextmanager
    def acting_under(self, config: Config) -> Iterator[None]:
        """Seal and check records under ``config`` instead of the configuration in force
        at HEAD, for as long as HEAD does not move: `cmgit sync` makes this clone's
        commits again on top of the central ones, under the configuration in force there."""
        kept = self.__dict__.get("_config")
        self.__dict__["_config"] = config
        try:
            yield
        finally:
            if kept is None:
                self.__dict__.pop("_config", None)
            else:
                self.__dict__["_config"] = kept

    @property
    def sources_in_force(self) -> Sources:
        """The commit of each part of the configuration in force (see `_trust`)."""
        return self._trust[0]

    def own_config_commit(self, parent: str, commit: str, sources: Sources) -> None:
        """This command's configuration commit on ``parent``, where ``sources`` were in
        force, checked before it was made, is in force at once (see
        `remember_own_config_commit`)."""
        remember_own_config_commit(self.git, parent, commit, sources)
        self.forget_config()

    def reload_config(self) -> None:
        """Forget the configuration if a commit since it was read has changed it."""
        if "_trust" in self.__dict__ and self._config_key() != self._loaded_key:
            self.forget_config()

    def forget_config(self) -> None:
        """Read the configuration again when next asked (a commit has changed it)."""
        self.__dict__.pop("_trust", None)
        self.__dict__.pop("_config", None)

    # -- who is acting ----------------------------------------------------------------

    def actor(self, identities: Sequence[crypto.Identity]) -> Staff:
        return self.registry.actor_for(i.recipient for i in identities)

    def acting(self, identities: Sequence[crypto.Identity], *roles: str, action: str) -> Staff:
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

    def load_open(
        self, case_id: str, committed: Committed = LOOK_UP, *, settled: bool = False
    ) -> Loaded:
        """A record's open fields and sealed block, checked without any key.

        ``committed`` is the (mode, blob id) committed at HEAD for the record, when the
        caller has already read it from the tree (bulk reads); None if not committed.
        """
        ids.check_case_id(case_id)
        path = ids.record_path(case_id)
        entry = self.git.path_entry("HEAD", path) if committed is LOOK_UP else committed
        if entry is not None and entry[0] not in BLOB_MODES:
            raise IntegrityError(
                "committed record is not a regular file",
                case_id=case_id,
                hint="run cmgit audit; a link or submodule was committed in its place",
            )
        data = self._read_work_file(path, case_id)
        layout2 = not records.has_sealed_block(data)
        try:
            if layout2:
                open_fields, armored = entries.parse_open_file(data, self.schemas.open_fields), ""
            else:
                open_fields, armored = records.parse_file(data, self.schemas.open_fields)
        except CmgitError as exc:
            exc.case_id = case_id
            raise
        if layout2 != casekeys.in_layout(self.config, open_fields):
            raise IntegrityError(
                "record file is not laid out as its record_format says",
                case_id=case_id,
                hint=f"restore it with: git checkout -- {path}",
            )
        if open_fields.get("case_id") != case_id:
            raise IntegrityError(
                "record belongs to another case (file copied or swapped)",
                case_id=case_id,
                hint="restore it with git",
            )
        self.schemas.validate_open(open_fields, case_id=case_id)
        if entry is not None and object_id("blob", data) != entry[1]:
            if not settled:
                # Perhaps a change between moving the branch and writing the file: wait
                # for its writer, or finish it if the writer was killed, and read again
                # while no other command can write.
                with repository_lock(self.git.git_dir):
                    self.git.finish_pending()
                    return self.load_open(case_id, settled=True)
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
        head_blob = entry[1] if entry else None
        if layout2:
            return Loaded(
                Record(open_fields),
                path,
                "",
                head_blob,
                None,
                record_before=dict(open_fields),
            )
        try:
            header = crypto.inspect(armored)
        except CmgitError as exc:
            exc.case_id = case_id
            raise
        return Loaded(
            Record(open_fields), path, armored, head_blob, header, record_before=dict(open_fields)
        )

    def expected_recipients(self, open_fields: Mapping[str, Any]) -> list[str]:
        return self.registry.recipients_for(
            open_fields["team"], open_fields["caseworker"], self.settings
        )

    def load(
        self, case_id: str, identities: Sequence[crypto.Identity], committed: Committed = LOOK_UP
    ) -> Loaded:
        """A record opened and checked: binding to path, version and open fields, schema."""
        return self.open_loaded(self.load_open(case_id, committed), identities)

    def open_loaded(
        self, loaded: Loaded, identities: Sequence[crypto.Identity], *, validate: bool = True
    ) -> Loaded:
        """Decrypt a record ``load_open`` has checked, and check its sealed content: its
        binding always, its schema if ``validate`` (a migration checks the record it
        makes against the new schemas instead)."""
        case_id = loaded.record.case_id
        if loaded.sealed_entries:
            loaded.record.forms = casekeys.open_forms(self, loaded, identities)
            return self._validated(loaded) if validate else loaded
        expected = self.check_stanzas(loaded)
        try:
            plaintext = self.cipher.open(loaded.armored, identities)
        except NotARecipient:
            mine = {i.recipient for i in identities}
            if mine & set(expected):
                raise SealedWithoutYou(
                    "sealed without your key although you are one of its recipients "
                    "(tampered, or not re-encrypted after a staff change)",
                    case_id=case_id,
                    hint="run cmgit validate to see the commit that sealed it, and cmgit audit",
                ) from None
            raise NotARecipient("you are not a recipient of this case", case_id=case_id) from None
        except CmgitError as exc:
            exc.case_id = case_id
            raise
        payload = records.parse_payload(plaintext)
        records.check_binding(case_id, loaded.record.open, payload)
        loaded.record.forms = payload.forms
        return self._validated(loaded) if validate else loaded

    def _validated(self, loaded: Loaded) -> Loaded:
        self.schemas.validate(
            loaded.record.document(self.schemas.field_order),
            CASE,
            what="case record",
            case_id=loaded.record.case_id,
        )
        return loaded

    def open_forms(self, loaded: Loaded, identities: Sequence[crypto.Identity]) -> dict[str, Any]:
        """The sealed forms of a record ``load_open`` has checked, unvalidated: for reads
        that only look into them (find, the screening of free text)."""
        if loaded.sealed_entries:
            return casekeys.open_forms(self, loaded, identities)
        return records.parse_payload(self.cipher.open(loaded.armored, identities)).forms

    def check_stanzas(self, loaded: Loaded) -> list[str]:
        """The recipients the registry calls for; IntegrityError if the sealed block has
        another number of them. Checked before any key is used: a key slipped in (or left
        out) is a change made outside cmgit, and the block must not be re-sealed as if it
        were fine."""
        if loaded.header is None:
            return casekeys.check_sealed(self, loaded)
        expected = self.expected_recipients(loaded.record.open)
        if loaded.header.stanza_count != len(expected):
            raise IntegrityError(
                f"sealed for {loaded.header.stanza_count} recipients, the registry calls "
                f"for {len(expected)}",
                case_id=loaded.record.case_id,
                hint="run cmgit validate and cmgit audit; a programme manager can re-encrypt it",
            )
        return expected

    def open_rows(self) -> list[tuple[Any, ...]]:
        """The open fields of every record at HEAD, one tuple each in schema order."""
        head = self.git.head()
        if head is None:
            return []
        return caches.open_rows(self.git, head, self.schemas.open_fields, self.progress)
