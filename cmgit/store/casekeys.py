"""The sealed part of a record in format 2: entries sealed to the case's own key, and the
keyring that wraps that key to the case's readers (docs/design/record-format-2.md).

A record at or above the format of the migration that says `layout: 2` keeps its open
fields alone in its record file and its forms as sealed entries under ``sealed/``, one
per version that changed them. Reading folds the entries in version order; writing
seals the delta from the forms as they were opened to the forms as they are now, so a
commit adds what changed and nothing else. Who can read a case is decided by the keyring, not by the
entries: a reassignment re-wraps one small key instead of re-sealing the record.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import caches, crypto, entries, events, ids, migrations
from ..config import Config
from ..errors import IntegrityError, NotARecipient, Refused, SealedWithoutYou
from ..history import BLOB_MODES, Git
from ..keyring import ref, wrap
from ..records import Record
from ..registry import Registry, Staff
from ..schema import SchemaSet
from .setup import make_signer, staff_author

# The recovery custodians and their threshold, as audit reads them too.
custodians = wrap.custodians

if TYPE_CHECKING:  # the core reads format-2 records through this module
    from .core import Core, Loaded

MAX_ENTRY_FILE = 8 * 1024 * 1024
LAYOUT_CACHE = "sealed-entries-since"  # the commit that brought sealed entries


def in_layout(config: Config, open_fields: Mapping[str, Any]) -> bool:
    """Whether a record is kept as sealed entries: decided by its own format against the
    migration that brought sealed entries (`layout: 2`), so a record changes layout only
    through that migration."""
    start = config.sealed_entries_from
    return start is not None and migrations.record_format(open_fields) >= start


def repository_in_layout(repo: Core) -> bool:
    """Whether records written now are kept as sealed entries."""
    start = repo.config.sealed_entries_from
    return start is not None and repo.config.record_format >= start


def format_1_until(repo: Core, until: str = "HEAD") -> str | None:
    """The last commit, up to ``until``, whose records may still be sealed blocks of
    format 1 to people's keys: the parent of the commit that brought sealed entries, or
    ``until`` itself while none did; None if the repository never held format 1. What a
    removed key still opens in the history ends there: from then on it opened only case
    keys, whose replaced wrappings the keyring destroyed."""
    start = repo.config.sealed_entries_from
    path = next((m.path for m in repo.config.migrations if m.format == start), None)
    if path is None:
        return until
    # Found once by a walk of the history, then remembered: a commit never changes.
    added = caches.remembered(repo.git, LAYOUT_CACHE, (path,))
    if not (isinstance(added, str) and repo.git.objects.lookup(added, path)):
        added = repo.git.text(
            "log", "-1", "--diff-filter=A", "--format=%H", until, "--", path
        ).strip()
        if not added:
            return until
        caches.remember(repo.git, LAYOUT_CACHE, (path,), added)
    parents = repo.git.objects.parents(added)
    return parents[0] if parents else None


# -- who holds a case key ----------------------------------------------------------


def readers(
    registry: Registry, settings: Mapping[str, Any], open_fields: Mapping[str, Any]
) -> list[str]:
    """The staff who unwrap a case's key: the registry's readers of the case, without
    the recovery recipients, who hold it only k together (see `custodians`)."""
    without_recovery = {**settings, "recovery_recipients": []}
    return registry.recipients_for(open_fields["team"], open_fields["caseworker"], without_recovery)


def staff_recipients(repo: Core, open_fields: Mapping[str, Any]) -> list[str]:
    """`readers` under the registry and settings in force."""
    return readers(repo.registry, repo.settings, open_fields)


def wrapped(repo: Core, key: wrap.CaseKey, open_fields: Mapping[str, Any]) -> dict[str, bytes]:
    """A case key's keyring files for the case as ``open_fields`` leave it."""
    people, threshold = custodians(repo.settings)
    return wrap.wrap(key, staff_recipients(repo, open_fields), people, threshold)


def write_keyring(
    repo: Core,
    changes: Mapping[str, Mapping[str, bytes] | None],
    actor: Staff,
    *,
    ahead_of_branch: bool = True,
) -> dict[str, str]:
    """Replace the keyring's shards with ``changes`` made, signed as every cmgit commit
    is; the new commit of each shard changed. As a rule a commit of the branch follows
    (`unit.commit`), and until it does the shards are held, to be put back if it never
    comes; ``ahead_of_branch`` False for a keyring change of its own (a sync's merge)."""
    signer = make_signer(
        repo.signing_key_path, actor, bool(repo.settings.get("require_signed_commits"))
    )
    return ref.update(
        repo.git,
        changes,
        staff_author(actor),
        sign=signer,
        trailers=[("Cmgit-Actor", actor.id), ("Cmgit-Role", actor.role)],
        ahead_of_branch=ahead_of_branch,
    )


def wrapping_changes(
    repo: Core, registry: Registry, settings: Mapping[str, Any]
) -> Callable[[Mapping[str, Any]], bool]:
    """Whether a registry or settings change calls for a case's key wrapped anew, as a
    test of the case's open fields. A case's readers follow from its team and caseworker
    alone, so each pair is worked out once: a change at 100,000 cases compares readers
    as many times as there are caseworkers, not cases."""
    if custodians(repo.settings) != custodians(settings):
        return lambda open_fields: True

    @functools.cache
    def readers_change(team: Any, caseworker: Any) -> bool:
        fields = {"team": team, "caseworker": caseworker}
        return readers(repo.registry, repo.settings, fields) != readers(registry, settings, fields)

    return lambda open_fields: readers_change(open_fields["team"], open_fields["caseworker"])


def rewrapped(
    repo: Core,
    open_fields: Mapping[str, Any],
    identities: Sequence[crypto.Identity],
    registry: Registry,
    settings: Mapping[str, Any],
    shards: Mapping[str, str] | None = None,
) -> dict[str, bytes]:
    """A case key wrapped for a new registry or settings, by someone who can unwrap it:
    a new generation where a reader goes, so nothing written from now on opens with a
    key they may have kept. Records are not touched."""
    case_id = str(open_fields["case_id"])
    try:
        key = open_key(repo, case_id, identities, shards)
    except NotARecipient:
        raise Refused(
            "this change re-wraps the keys of cases you cannot open",
            case_id=case_id,
            hint="a programme manager who can open every case must run it",
        ) from None
    before = set(readers(repo.registry, repo.settings, open_fields))
    after = readers(registry, settings, open_fields)
    if before - set(after):
        key = wrap.rotate(key)
    people, threshold = custodians(settings)
    return wrap.wrap(key, after, people, threshold)


# -- reading -------------------------------------------------------------------------


def read_entries(repo: Core, case_id: str, at: str | None = None) -> dict[int, bytes]:
    """The sealed entries of a case at HEAD (or the commit ``at``), by version. Entries
    are never changed once committed, so they are read from git's objects, not the work
    tree."""
    head = at or repo.git.head()
    folder = entries.entries_dir(case_id)
    found = repo.git.objects.lookup(head, folder) if head else None
    if found is None:
        return {}
    out: dict[int, bytes] = {}
    for name, (mode, oid) in repo.git.objects.tree(found[1]).items():
        parsed = entries.parse_entry_path(f"{folder}/{name}")
        if parsed is None or parsed[0] != case_id or mode not in BLOB_MODES:
            raise IntegrityError(
                "the case's sealed folder holds a file that is not one of its entries",
                case_id=case_id,
                hint="run cmgit audit; it names the commit that added it",
            )
        out[parsed[1]] = repo.git.objects.read(oid, limit=MAX_ENTRY_FILE)[1]
    return out


def check_keyring(repo: Core, open_fields: Mapping[str, Any]) -> list[str]:
    """The staff recipients the registry calls for; IntegrityError if the case's keyring
    files are not of the shape they call for. Keyless, before any key is used."""
    case_id = str(open_fields["case_id"])
    expected = staff_recipients(repo, open_fields)
    files = ref.read_case(repo.git, case_id)
    if not files:
        if erased(repo, case_id):
            raise NotARecipient(
                "the case was erased at the end of its retention: nothing sealed of it can "
                "be opened any more",
                case_id=case_id,
                hint="cmgit log shows when and by whom; its open fields remain",
            )
        raise IntegrityError(
            "the keyring holds no key for this case",
            case_id=case_id,
            hint="run cmgit sync to fetch the keyring, then cmgit validate",
        )
    people, threshold = custodians(repo.settings)
    problems = wrap.check_shape(files, len(expected), people, threshold)
    if problems:
        raise IntegrityError(
            f"the case's key is not wrapped as the registry calls for: {problems[0]}",
            case_id=case_id,
            hint="run cmgit validate and cmgit audit; a programme manager can re-wrap it",
        )
    return expected


def check_sealed(repo: Core, loaded: Loaded) -> list[str]:
    """`check_keyring`, and every entry of the case checked as `check_entry_files` does:
    keyless, before any key is used. The entries are read into ``loaded``."""
    expected = check_keyring(repo, loaded.record.open)
    if not loaded.entries:
        loaded.entries = read_entries(repo, loaded.record.case_id)
    check_entry_files(loaded.record.case_id, loaded.entries)
    return expected


def check_entry_files(case_id: str, sealed: Mapping[int, bytes]) -> None:
    """Each entry (by version) a binary age file sealed to one X25519 key, the case
    key's: another kind of stanza, or a key slipped in, is refused before any key
    touches it."""
    for number in sorted(sealed):
        stanzas = crypto.inspect_binary(sealed[number]).stanza_count
        if stanzas != 1:
            raise IntegrityError(
                f"entry {number} is sealed for {stanzas} recipients, not the case key alone",
                case_id=case_id,
                hint="run cmgit audit; it names the commit that wrote the entry",
            )


def erased(repo: Core, case_id: str) -> bool:
    """Whether the last commit of a case erased it (`cmgit purge`)."""
    return erased_at(repo.git, case_id, "HEAD")


def erased_cases(git: Git, at: str) -> set[str]:
    """Every case erased on the history of ``at``: one walk for the purge commits, then
    each case they name checked (`erased_at`)."""
    named = git.text(
        "log",
        "--format=%(trailers:key=Cmgit-Case,valueonly)",
        f"--grep=^Cmgit-Action: {events.PURGE.action}$",
        at,
    )
    return {
        case_id
        for case_id in set(named.split())
        if ids.CASE_ID_RE.fullmatch(case_id) and erased_at(git, case_id, at)
    }


def last_trailers(git: Git, case_id: str, at: str, *keys: str) -> list[str]:
    """The values of ``keys`` in the last commit of a case on the history of ``at`` (""
    where it has none), read without walking the rest of its history."""
    fields = "%x1f".join(f"%(trailers:key={key},valueonly)" for key in keys)
    out = git.text("log", "-1", f"--format={fields}", at, "--", ids.record_path(case_id))
    values = [value.strip() for value in out.strip("\n").split("\x1f")]
    return values if len(values) == len(keys) else [""] * len(keys)


def erased_at(git: Git, case_id: str, at: str) -> bool:
    """Whether the last commit of a case on the history of ``at`` erased it."""
    return last_trailers(git, case_id, at, "Cmgit-Action") == [events.PURGE.action]


def open_key(
    repo: Core,
    case_id: str,
    identities: Sequence[crypto.Identity],
    shards: Mapping[str, str] | None = None,
) -> wrap.CaseKey:
    """The case key, unwrapped from the keyring with the actor's identity; ``shards``:
    the keyring's shard commits, when the caller read them once for many cases."""
    commit = shards.get(ref.shard_of(case_id)) if shards is not None else None
    files = ref.read_case(repo.git, case_id, commit) if commit or shards is None else {}
    return wrap.unwrap(files, case_id, identities)


def open_forms(repo: Core, loaded: Loaded, identities: Sequence[crypto.Identity]) -> dict[str, Any]:
    """The forms of a format-2 record: its entries opened with the case key and folded
    in version order. Every entry must open with the keys the keyring gives, belong to
    this case and carry the version its name says: a swapped, renamed or rolled-back
    entry, or a keyring replaced by someone who never held the case key, is refused."""
    case_id = loaded.record.case_id
    expected = check_sealed(repo, loaded)
    try:
        key = open_key(repo, case_id, identities)
    except NotARecipient:
        if {i.recipient for i in identities} & set(expected):
            raise SealedWithoutYou(
                "the case key is sealed without your key although you are one of its "
                "readers (tampered, or not re-wrapped after a staff change)",
                case_id=case_id,
                hint="run cmgit validate and cmgit audit",
            ) from None
        raise NotARecipient("you are not a recipient of this case", case_id=case_id) from None
    forms = fold_entries(key, loaded.entries, loaded.record.version)
    loaded.key = key
    loaded.forms_opened = copy.deepcopy(forms)
    return forms


def fold_entries(key: wrap.CaseKey, sealed: Mapping[int, bytes], version: int) -> dict[str, Any]:
    """The forms the entries ``sealed`` (by version) make, each opened with the case key,
    bound to its case and version and no later than the record's ``version``."""
    keys = key.identities()
    deltas = []
    check_entry_files(key.case_id, sealed)
    for number in sorted(sealed):
        try:
            plaintext = crypto.open_binary(sealed[number], keys)
        except NotARecipient:
            raise IntegrityError(
                f"entry {number} does not open with the case's keys (the keyring was "
                "replaced, or the entry was)",
                case_id=key.case_id,
                hint="run cmgit audit; restore the keyring with cmgit sync",
            ) from None
        entry = entries.parse_entry(plaintext)
        entries.check_entry(entry, key.case_id, number, version)
        deltas.append(entry.delta)
    return entries.fold(deltas)


# -- writing -------------------------------------------------------------------------


def id_fields(schemas: SchemaSet) -> dict[str, str]:
    """The id field of each form kept as a list of items: their entries upsert items."""
    fields = {}
    for form in schemas.sealed_fields:
        field = schemas.form_id_field(form)
        if field:
            fields[form] = field
    return fields


def seal_files(
    schemas: SchemaSet, record: Record, before: Mapping[str, Any], key: wrap.CaseKey
) -> dict[str, bytes]:
    """The files a commit of ``record`` writes: its open file, and one entry sealed to
    the case key holding what changed since ``before`` (none if nothing did)."""
    case_id = record.case_id
    files = {ids.record_path(case_id): entries.render_open_file(record.open, schemas.open_fields)}
    change = entries.delta(dict(before), record.forms, id_fields(schemas))
    if change is not None:
        plaintext = entries.entry_plaintext(case_id, record.version, change)
        files[entries.entry_path(case_id, record.version)] = crypto.seal_binary(
            plaintext, [key.recipient]
        )
    return files


def key_for_change(
    repo: Core, loaded: Loaded, new_open: Mapping[str, Any]
) -> tuple[wrap.CaseKey, bool]:
    """The key to seal a changed record with, and whether the keyring must change.

    A reader removed (a reassignment, a team change) gets a new generation, so nothing
    written from now on opens with a key they may have kept; a reader added only needs
    the key wrapped to them as well."""
    assert loaded.key is not None, "a format-2 record is opened before it is changed"
    before = set(staff_recipients(repo, loaded.record_before))
    after = set(staff_recipients(repo, new_open))
    if before - after:
        return wrap.rotate(loaded.key), True
    return loaded.key, before != after
