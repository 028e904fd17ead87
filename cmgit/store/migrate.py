"""Records brought along: the migrations a configuration change adds, applied to every
record below their format in the same commit, each record re-sealed by the programme
manager who reads all cases.

`pending` finds and checks the migrations a change adds; `bring_along` applies them to
one record and checks it against the new schemas, sealing it when asked. The commit
itself is `procedure`'s, so a migration is a `config` commit like any other change of the
schemas, with one `Cmgit-Migration` trailer for each migration it applies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .. import crypto, migrations, records
from ..config import read_migrations
from ..errors import CmgitError, Refused, SchemaError
from ..keyring.wrap import new_case_key
from ..migrations import MIGRATIONS_DIR, Migration
from ..records import Record
from ..schema import CASE, SchemaSet
from . import casekeys, unit
from .core import Committed, Core

TRAILER = "Cmgit-Migration"
# Outcomes of bringing one record to the proposed schemas.
VALID, INVALID, UNREADABLE = "valid", "invalid", "unreadable"


@dataclass(frozen=True)
class Outcome:
    """One record under the proposed schemas: valid or not, whether a migration changes
    it, and its new file when sealed."""

    case_id: str
    outcome: str
    migrated: bool = False
    files: dict[str, bytes] = field(default_factory=dict)
    # The case key's keyring files, for a record the migration brings to sealed entries.
    keyring: dict[str, bytes] | None = None


def pending(
    repo: Core, proposed: Mapping[str, bytes | None], schemas: SchemaSet
) -> list[Migration]:
    """The migrations the proposed schemas/ (path: bytes, None for a file removed) adds:
    those above the repository's format. A migration once committed is never changed or
    removed, for the records it brought forward were judged by it."""
    head = repo.git.head()
    assert head is not None
    committed = [p for p in repo.git.files_under(head, MIGRATIONS_DIR)]
    current = repo.git.read_paths(head, committed)
    for path in committed:
        if proposed.get(path) != current[path]:
            raise Refused(
                f"{path} was committed, and records were migrated by it: it is never "
                "changed or removed",
                hint=f"restore it (git checkout -- {path}); a further change is a new "
                "migration of the next format",
            )
    files = {p: d for p, d in proposed.items() if migrations.is_migration_path(p) and d}
    current_format = repo.config.record_format
    # (a file not named as a migration is refused with the others, by read_migrations)
    added = sorted(
        fmt for path in files if path not in current and (fmt := migrations.file_format(path))
    )
    for expected, fmt in enumerate(added, current_format + 1):
        if fmt != expected:
            raise Refused(
                f"a migration added brings records to format {fmt}, where the next is "
                f"{expected} (the repository's records are at format {current_format})",
                hint=f"number the migrations added {expected:04d}, {expected + 1:04d}, ... "
                "(NNNN-name.yaml): one for each format, with no gap",
            )
    found = read_migrations(files, schemas)
    for migration in found:
        migrations.check_against(migration, (*repo.schemas.open_fields, *schemas.open_fields))
    return migrations.pending(found, current_format)


def bring_along(
    repo: Core,
    case_id: str,
    entry: Committed,
    identities: Sequence[crypto.Identity],
    schemas: SchemaSet,
    steps: Sequence[Migration],
    *,
    seal: bool,
) -> Outcome:
    """One record opened, brought through ``steps`` if it is below their format, and
    checked against ``schemas`` (the proposed ones), all of it; sealed anew, one version
    on, if ``seal`` and a migration changed it."""
    try:
        loaded = repo.load_open(case_id, entry)
        todo = migrations.pending(steps, migrations.record_format(loaded.record.open))
        # A record to migrate is checked against the new schemas only, once migrated.
        repo.open_loaded(loaded, identities, validate=not todo)
    except CmgitError:
        return Outcome(case_id, UNREADABLE)
    record = loaded.record
    try:
        if todo:
            open_fields, forms = migrations.apply(
                todo, record.open, record.forms, schemas.open_fields, in_place=True
            )
            record = Record({**open_fields, "version": record.version + 1}, forms)
        # The whole record, not cut to the new schema's fields: a field it drops that a
        # record holds makes that record invalid.
        schemas.validate({**record.open, **record.forms}, CASE, what="case record")
        if set(record.open) != set(schemas.open_fields):
            # An open field the new schema adds or drops changes the record file's lines:
            # only a migration writes records anew.
            schemas.validate_open(record.open, case_id=case_id)
        unit.check_item_ids(record, schemas)
    except SchemaError:
        return Outcome(case_id, INVALID, bool(todo))
    if not (seal and todo):
        return Outcome(case_id, VALID, bool(todo))
    # Sealed as it is: the open fields are exactly the migration's (audit recomputes them
    # without a key), so nothing is summarised again from the forms here.
    keyring = None
    start = migrations.sealed_entries_from([*repo.config.migrations, *steps])
    if loaded.sealed_entries:
        assert loaded.key is not None
        files = casekeys.seal_files(schemas, record, loaded.forms_opened, loaded.key)
    elif start is not None and migrations.record_format(record.open) >= start:
        # Brought to sealed entries: a key of its own, and all its forms as one entry.
        key = new_case_key(case_id)
        files = casekeys.seal_files(schemas, record, {}, key)
        keyring = casekeys.wrapped(repo, key, record.open)
    else:
        recipients = repo.expected_recipients(record.open)
        armored = repo.cipher.seal(records.seal_payload(record, loaded.head_blob), recipients)
        files = {loaded.path: records.render_file(record.open, schemas.open_fields, armored)}
    # Their objects are written here, on the worker's core: the commit finds them written.
    for data in files.values():
        repo.git.hash_blob(data)
    return Outcome(case_id, VALID, True, files, keyring)


def trailers(steps: Sequence[Migration]) -> list[tuple[str, str]]:
    return [(TRAILER, migration.name) for migration in steps]


def renamed(steps: Sequence[Migration]) -> list[str]:
    return [change for migration in steps for change in migration.renamed()]
