"""One unit of work per command: load -> open -> validate -> change -> seal -> commit.

Nothing becomes visible until the commit moves the branch, so a refused or failed command
leaves the work tree, the index and the history as they were. `change` holds the
repository lock and refuses uncommitted work; `seal` summarises, validates and encrypts a
record for the recipients the committed registry names; `commit` writes one commit;
`save` does all three for one loaded record.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from .. import ids, privacy, records, workflow
from ..errors import DirtyWorkTree, GitFailed, RepositoryBusy, SchemaError
from ..faults import crash_point
from ..history import generated_message, object_id, repository_lock
from ..keyring import ref
from ..keyring.wrap import new_case_key
from ..migrations import FIRST_FORMAT, FORMAT_FIELD
from ..records import Record
from ..registry import Staff
from ..schema import CASE, SchemaSet
from . import casekeys
from .core import Core, Loaded
from .setup import make_signer, staff_author


def ensure_clean(repo: Core, paths: Sequence[str]) -> None:
    """Refuse (exit 6) if a git operation is under way or ``paths`` are not committed."""
    repo.git.check_no_operation()
    dirty = repo.git.status(*paths)
    if dirty:
        raise _uncommitted(dirty)


def precheck_clean(repo: Core, path: str) -> None:
    """`ensure_clean` for one file, in process: refuse (exit 6) before any work if a git
    operation is under way or the file differs from HEAD. `change` runs the whole
    check again under the lock (staged changes included), so this one only spares
    the common case a `git status` of its own."""
    repo.git.check_no_operation()
    if not matches_head(repo, path):
        # Perhaps another command is between moving the branch and writing the file:
        # look again once no command is writing.
        with repository_lock(repo.git.git_dir):
            repo.git.finish_pending()
            if not matches_head(repo, path):
                raise _uncommitted([path])


def matches_head(repo: Core, path: str) -> bool:
    """Whether the work-tree file at ``path`` is as committed at HEAD (or both absent)."""
    entry = repo.git.path_entry("HEAD", path)
    try:
        info = os.lstat(repo.root / path)
    except FileNotFoundError:
        return entry is None
    if (
        entry is not None
        and stat.S_ISREG(info.st_mode)
        and (info.st_size <= records.MAX_RECORD_FILE)
        and (bool(info.st_mode & 0o100) == (entry[0] == "100755"))
    ):
        with open(repo.root / path, "rb") as handle:
            return object_id("blob", handle.read(info.st_size + 1)) == entry[1]
    return False


@contextlib.contextmanager
def change(repo: Core, paths: Sequence[str]) -> Iterator[str | None]:
    """Hold the repository lock, refuse if ``paths`` have uncommitted changes or a git
    operation is under way, and yield the parent commit for the new one."""
    with repository_lock(repo.git.git_dir), _keyring_put_back_on_failure(repo):
        repo.git.finish_pending()
        head = repo.git.head()
        if len(paths) == 1 and head is not None:
            # One file (a case command): its bytes checked in process and the index by
            # git spare `git status` a scan of the work tree.
            repo.git.check_no_operation()
            staged = repo.git.run(
                "diff-index", "--cached", "--name-only", "-z", head, "--", paths[0]
            )
            if staged or not matches_head(repo, paths[0]):
                raise _uncommitted([paths[0]])
        else:
            ensure_clean(repo, paths)
        repo.reload_config()
        repo.check_writer()
        yield head


@contextlib.contextmanager
def _keyring_put_back_on_failure(repo: Core) -> Iterator[None]:
    """A change refused or failing after it moved the keyring, before its commit, puts
    the keyring back at once (see `Git.hold_refs`)."""
    try:
        yield
    except BaseException:
        repo.git.restore_held()
        raise


def prepare(repo: Core, record: Record, today: dt.date) -> None:
    """Summarise the record's open fields (open dates kept as the settings ask) and
    validate it, as it will be sealed."""
    record.open = privacy.apply_precision(
        workflow.summarise(record.open, record.forms, repo.settings, today),
        repo.schemas.case_properties,
        repo.settings,
    )
    if FORMAT_FIELD in record.open:
        # Every record written is at the repository's format: one a migration brought
        # forward, and one written after it, alike.
        fmt = repo.config.record_format
        record.open[FORMAT_FIELD] = fmt if fmt > FIRST_FORMAT else None
    repo.schemas.validate(
        record.document(repo.schemas.field_order),
        CASE,
        what="case record",
        case_id=record.case_id,
    )
    check_item_ids(record, repo.schemas)


def seal(
    repo: Core, record: Record, prev_blob: str | None, today: dt.date, *, trusted: bool = False
) -> bytes:
    """Prepare and seal a record into the bytes of its file; ``trusted`` when the caller
    checked the configuration in force once for many records."""
    prepare(repo, record, today)
    if not trusted:
        repo.check_config_trusted()
    recipients = repo.expected_recipients(record.open)
    armored = repo.cipher.seal(records.seal_payload(record, prev_blob), recipients)
    data = records.render_file(record.open, repo.schemas.open_fields, armored)
    crash_point("sealed")
    return data


def seal_new(repo: Core, record: Record, actor: Staff, today: dt.date) -> dict[str, bytes]:
    """The files of a new case. In format 2 the case gets its own key, wrapped in the
    keyring before the case is committed: a case committed without its key could be
    read by no one, a key without its case is only a folder the next purge sweeps."""
    if not casekeys.repository_in_layout(repo):
        return {ids.record_path(record.case_id): seal(repo, record, None, today)}
    prepare(repo, record, today)
    repo.check_config_trusted()
    key = new_case_key(record.case_id)
    files = casekeys.seal_files(repo.schemas, record, {}, key)
    crash_point("sealed")
    casekeys.write_keyring(repo, {record.case_id: casekeys.wrapped(repo, key, record.open)}, actor)
    return files


def seal_change(
    repo: Core, loaded: Loaded, actor: Staff, today: dt.date, *, trusted: bool = False
) -> dict[str, bytes]:
    """The files of a change to a loaded record, one version on. In format 2 only what
    changed is sealed, as one entry, and the keyring is re-wrapped first where the
    change adds or removes a reader."""
    record = loaded.record
    if not loaded.sealed_entries:
        return {loaded.path: seal(repo, record, loaded.head_blob, today, trusted=trusted)}
    prepare(repo, record, today)
    if not trusted:
        repo.check_config_trusted()
    key, rewrap = casekeys.key_for_change(repo, loaded, record.open)
    files = casekeys.seal_files(repo.schemas, record, loaded.forms_opened, key)
    crash_point("sealed")
    if rewrap:
        casekeys.write_keyring(
            repo, {record.case_id: casekeys.wrapped(repo, key, record.open)}, actor
        )
    return files


def _signer(repo: Core, actor: Staff) -> Callable[[bytes], str] | None:
    """Sign with the actor's registered key; required when the settings say so."""
    return make_signer(
        repo.signing_key_path, actor, bool(repo.settings.get("require_signed_commits"))
    )


def commit(
    repo: Core,
    files: Mapping[str, bytes | None],
    subject: str,
    trailers: Sequence[tuple[str, str]],
    actor: Staff,
    parent: str | None,
) -> str:
    """One commit of ``files`` by ``actor``, signed when the repository asks for it."""
    repo.check_writer()
    message = generated_message(
        subject, [*trailers, ("Cmgit-Actor", actor.id), ("Cmgit-Role", actor.role)]
    )
    try:
        commit = repo.git.commit(
            files, message, staff_author(actor), parent, sign=_signer(repo, actor)
        )
    except GitFailed:
        # The branch moves only from ``parent`` (compare and swap): a git command that
        # does not take cmgit's lock moved it first.
        if repo.git.head() != parent:
            raise written_meanwhile(None) from None
        raise
    # The keyring it moved stands now: what its old shards alone held goes.
    ref.finish_prune(repo.git)
    if any(not path.startswith(ids.RECORDS_DIR + "/") for path in files):
        repo.forget_config()
    return commit


def save(
    repo: Core,
    loaded: Loaded,
    actor: Staff,
    today: dt.date,
    action: str,
    item_id: str | None,
    trailers: list[tuple[str, str]],
    *,
    subject: str | None = None,
) -> str:
    """Seal a loaded record as changed and commit it, one version on; refused if another
    command committed the case since it was loaded. Returns ``item_id`` or ``action``."""
    record = loaded.record
    case_id = record.case_id
    with change(repo, [loaded.path]) as parent:
        if repo.git.blob_id("HEAD", loaded.path) != loaded.head_blob:
            raise written_meanwhile(case_id)
        record.open["version"] = record.version + 1
        files = seal_change(repo, loaded, actor, today)
        if subject is None:
            subject = f"{case_id}: {action}" + (f" {trailers[0][1]}" if trailers else "")
        commit(
            repo,
            files,
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
                    problems=[f"at /{form}/{index}/{id_field}: expected an id no other {form} has"],
                )
            seen.add(value)


def written_meanwhile(case_id: str | None) -> RepositoryBusy:
    """Another command wrote what this one read, while it waited for the lock: the same
    exit as a held lock, and the command can simply run again on what is there now."""
    what = "this case" if case_id else "the repository"
    return RepositoryBusy(
        f"repository is busy: another command was writing {what} while this one ran",
        hint="run this command again",
        case_id=case_id,
    )


def _uncommitted(paths: Sequence[str]) -> DirtyWorkTree:
    shown = ", ".join(paths[:5]) + (" ..." if len(paths) > 5 else "")
    return DirtyWorkTree(
        f"uncommitted changes in {shown}",
        hint="commit or discard them with git, then run the command again",
    )
