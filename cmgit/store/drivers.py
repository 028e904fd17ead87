"""Git's drivers and repair: the merge driver (two offices' versions of one case merged
and re-sealed), the diff text conversion (a record as its recipients read it), and
`cmgit recover`, which finishes what an interrupted command left.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from .. import crypto, entries, ids, migrations, records, yamlio
from ..config import Config
from ..errors import CmgitError, NotARecipient, RepositoryBusy, RepositoryError, TooLarge
from ..history import git_locks, object_id, remove_stale_git_locks, repository_lock
from ..keyring import ref
from ..keyring.wrap import CaseKey
from ..merge import Renumbering, merge_cases
from ..records import Record
from . import casekeys, unit
from .core import Core
from .setup import read_limited


def open_blob(
    repo: Core,
    data: bytes,
    identities: Sequence[crypto.Identity],
    case_id: str,
    written_under: Config | None = None,
) -> Record:
    """A record from bytes (any version in history), opened and checked; one
    ``written_under`` an older configuration is read with it and brought through the
    migrations of the configuration the repository acts under since."""
    older = written_under or repo.config
    open_fields, armored = records.parse_file(data, older.schemas.open_fields)
    payload = records.parse_payload(repo.cipher.open(armored, identities))
    records.check_binding(case_id, open_fields, payload)
    steps = migrations.pending(repo.config.migrations, migrations.record_format(open_fields))
    if not steps:
        return Record(open_fields, payload.forms)
    return Record(*migrations.apply(steps, open_fields, payload.forms, repo.schemas.open_fields))


def bring_forward(
    repo: Core,
    case_id: str,
    data: bytes,
    prev_blob: str | None,
    identities: Sequence[crypto.Identity],
    today: dt.date,
    written_under: Config,
) -> bytes:
    """A version of a record made under ``written_under`` (this clone's, not yet pushed),
    brought through the migrations made since and sealed again, the same version."""
    return unit.seal(
        repo, open_blob(repo, data, identities, case_id, written_under), prev_blob, today
    )


def merge_record(
    repo: Core,
    case_id: str,
    base: bytes | None,
    ours: bytes,
    theirs: bytes,
    theirs_blob: str,
    identities: Sequence[crypto.Identity],
    today: dt.date,
    renumbering: Renumbering | None = None,
    written_under: Config | None = None,
) -> bytes:
    """Two offices' versions of one case merged field by field, re-sealed; its
    version is theirs plus one (SPEC section 6). A true conflict is refused; with a
    ``renumbering`` (our items unpushed), our items whose ids collide take new ones.
    Ours and the base ``written_under`` an older configuration (theirs migrated the
    records since) are brought through the migrations first, as theirs was."""
    order = repo.schemas.field_order
    mine = open_blob(repo, ours, identities, case_id, written_under).document(order)
    other = open_blob(repo, theirs, identities, case_id).document(order)
    old = open_blob(repo, base, identities, case_id, written_under).document(order) if base else {}
    record = _merged(repo, case_id, old, mine, other, renumbering)
    return unit.seal(repo, record, theirs_blob, today)


def _merged(
    repo: Core,
    case_id: str,
    old: Mapping[str, Any],
    mine: Mapping[str, Any],
    other: Mapping[str, Any],
    renumbering: Renumbering | None,
) -> Record:
    """Two offices' documents of one case merged, one version after theirs."""
    # A new plan supersedes the last and a new assignment ends the last: each is a
    # decision for the case, which only one office may make.
    decisions = [
        *(f for f in repo.schemas.sealed_fields if repo.schemas.form_mode(f) == "supersede"),
        "assignment",
    ]
    merged = merge_cases(
        old, mine, other, case_id=case_id, decisions=decisions, renumbering=renumbering
    )
    record = Record(
        {k: merged[k] for k in repo.schemas.open_fields},
        {k: merged[k] for k in repo.schemas.sealed_fields if k in merged},
    )
    record.open["version"] = int(other["version"]) + 1
    return record


def merge_sealed(
    repo: Core,
    case_id: str,
    base: str,
    ours: str,
    theirs: str,
    identities: Sequence[crypto.Identity],
    today: dt.date,
    renumbering: Renumbering | None = None,
    written_under: Config | None = None,
) -> dict[str, bytes]:
    """`merge_record` for a case kept as sealed entries (record format 2), as it stands
    at the commits ``base``, ``ours`` and ``theirs``: merged field by field, its version
    theirs plus one; the files are the open file and one entry, named by that version,
    holding what the merge changes of theirs, sealed to the newest generation of the
    case key (the keyring holds every generation of both sides by now). This clone's own
    entry is left out: theirs holds one of that name already. Ours and the base
    ``written_under`` an older configuration are brought through the migrations first."""
    key = casekeys.open_key(repo, case_id, identities)
    order = repo.schemas.field_order
    mine = _sealed_record(repo, case_id, ours, key, written_under)
    other = _sealed_record(repo, case_id, theirs, key)
    if other is None:
        raise RepositoryError(
            "the central branch no longer has the record this clone changed",
            case_id=case_id,
            hint="run cmgit sync --drop " + case_id,
        )
    old = _sealed_record(repo, case_id, base, key, written_under)
    record = _merged(
        repo,
        case_id,
        old.document(order) if old else {},
        mine.document(order) if mine else {},
        other.document(order),
        renumbering,
    )
    unit.prepare(repo, record, today)
    repo.check_config_trusted()
    return casekeys.seal_files(repo.schemas, record, other.forms, key)


def bring_forward_sealed(
    repo: Core,
    case_id: str,
    ours: str,
    theirs: str,
    identities: Sequence[crypto.Identity],
    today: dt.date,
    written_under: Config,
) -> dict[str, bytes]:
    """`bring_forward` for a case kept as sealed entries that this clone changed in
    ``ours`` (not yet pushed) and the central branch did not (a case made here): brought
    through the migrations made since, the same version; its open file and one entry
    holding what changed from ``theirs`` replace what this clone wrote."""
    key = casekeys.open_key(repo, case_id, identities)
    record = _sealed_record(repo, case_id, ours, key, written_under)
    if record is None:
        raise RepositoryError(
            "a change of this clone holds an entry of a case it has no record of",
            case_id=case_id,
            hint="run cmgit sync --drop " + case_id,
        )
    before = _sealed_record(repo, case_id, theirs, key)
    unit.prepare(repo, record, today)
    repo.check_config_trusted()
    return casekeys.seal_files(repo.schemas, record, before.forms if before else {}, key)


def _sealed_record(
    repo: Core, case_id: str, commit: str, key: CaseKey, written_under: Config | None = None
) -> Record | None:
    """A format-2 case as it stands at ``commit``; None where it has no record there.
    One ``written_under`` an older configuration is read with it and brought through
    the migrations of the configuration the repository acts under since."""
    blob = repo.git.blob_id(commit, ids.record_path(case_id))
    if blob is None:
        return None
    older = written_under or repo.config
    fields = entries.parse_open_file(repo.git.read_blob(blob), older.schemas.open_fields)
    sealed = casekeys.read_entries(repo, case_id, commit)
    forms = casekeys.fold_entries(key, sealed, int(fields["version"]))
    steps = migrations.pending(repo.config.migrations, migrations.record_format(fields))
    if not steps:
        return Record(fields, forms)
    return Record(*migrations.apply(steps, fields, forms, repo.schemas.open_fields))


def recover(repo: Core) -> list[str]:
    """Finish what an interrupted command left: temporary files, and records whose
    commit was made but whose index and work-tree copy were not yet brought up to
    date. A file someone changed by hand is never touched (it stays for git)."""
    done = []
    git_dir = repo.git.git_dir
    with repository_lock(git_dir, wait_for_index=False):
        done += [
            f"removed git's {name} left by a git command that stopped"
            for name in remove_stale_git_locks(git_dir)
        ]
        if repo.put_back + repo.git.restore_held():
            done.append("put the keyring back as it was before a change that was interrupted")
        repo.put_back = []
        repo.finished += repo.git.finish_pending()
        done += [f"finished the interrupted change of {path}" for path in repo.finished]
        if ref.finish_prune(repo.git):
            done.append("destroyed the keyring's replaced keys a change left behind")
        repo.finished = []
        for lock in git_locks(git_dir):
            raise RepositoryBusy(
                f"repository is busy: a git command holds {lock.relative_to(git_dir)}",
                hint="wait for it to finish and run cmgit recover again",
            )
        for folder in (repo.root / ids.RECORDS_DIR, repo.git.objects.folder):
            for stray in folder.rglob(".cmgit-tmp-*"):
                stray.unlink()
                done.append(f"removed an unfinished temporary file in {folder.name}/")
            for stray in folder.rglob("tmp_obj_*"):
                stray.unlink()
                done.append("removed an unfinished object file")
        # staff.yaml and settings.yaml are written in the top folder; the journal
        # of a change in .git/cmgit
        for folder in (repo.root, git_dir / "cmgit"):
            for stray in folder.glob(".cmgit-tmp-*"):
                stray.unlink()
                done.append("removed an unfinished temporary file")
        staged = repo.git.run(
            "diff-index", "--cached", "-z", "--no-renames", "HEAD", "--", ids.RECORDS_DIR
        )
        parts = staged.split(b"\0")
        for meta, raw in zip(parts[::2], parts[1::2], strict=False):
            path = raw.decode("utf-8", "surrogateescape")
            index_oid = meta.decode("ascii").split()[3]
            current = repo.root / path
            try:
                on_disk = (
                    read_limited(current, records.MAX_RECORD_FILE, "record file")
                    if current.is_file()
                    else None
                )
            except TooLarge:
                continue  # no record cmgit wrote: changed by hand, left alone
            head_oid = repo.git.blob_id("HEAD", path)
            if on_disk is not None and object_id("blob", on_disk) not in (index_oid, head_oid):
                continue  # changed by hand since: leave it for the person to decide
            data = repo.git.read_blob(head_oid, limit=records.MAX_RECORD_FILE) if head_oid else None
            repo.git._sync_worktree({path: head_oid}, {path: data})
            done.append(f"brought {path} up to its committed version")
    return done


def textconv(
    repo: Core, data: bytes, identities: Sequence[crypto.Identity] | None, name: str = ""
) -> str:
    """A record file as a recipient should see it in `git diff`: open fields and
    decrypted forms; anyone else, and anything unreadable, sees the file as it is. A
    sealed entry (``name``, the file's name, says which) shows what its version changed."""
    entry = entries.parse_entry_name(_name_in_git_temp_file(name))
    if entry is not None:
        return _entry_text(repo, data, identities, *entry)
    try:
        open_fields, armored = records.parse_file(data, repo.schemas.open_fields)
        if not identities:
            raise NotARecipient("no identity")
        payload = records.parse_payload(repo.cipher.open(armored, identities))
    except CmgitError:
        return data.decode("utf-8", "replace")
    return yamlio.dump(Record(open_fields, payload.forms).document(repo.schemas.field_order))


def _name_in_git_temp_file(name: str) -> str:
    """The file name git diffs: a version that is not in the work tree reaches the diff
    driver as a temporary file named ``XXXXXX_NAME``, and a case ID holds no ``_``."""
    return name.rpartition("/")[2].rpartition("_")[2]


def _entry_text(
    repo: Core,
    data: bytes,
    identities: Sequence[crypto.Identity] | None,
    case_id: str,
    version: int,
) -> str:
    """A sealed entry as a reader of its case sees it: the forms its version set, the
    items it added or changed, and what it removed; anyone else sees one line."""
    try:
        if not identities:
            raise NotARecipient("no identity")
        key = casekeys.open_key(repo, case_id, identities)
        entry = entries.parse_entry(crypto.open_binary(data, key.identities()))
        entries.check_entry(entry, case_id, version, version)
    except CmgitError:
        return f"sealed entry {version} of {case_id} ({len(data)} bytes)\n"
    change = entry.delta
    shown = {
        "case_id": case_id,
        "version": version,
        "set": change.set,
        "items": change.items,
        "unset": list(change.unset),
        "removed": {form: list(ids_) for form, ids_ in change.removed.items()},
    }
    return yamlio.dump({key_: value for key_, value in shown.items() if value})
