"""Record format 2 as values: the open file, and a case's sealed entries (design #17).

A case is an open file (the open fields, one a line, as the record file writes them, and
nothing else) and a folder of sealed entries, one per version that changed forms. An
entry's plaintext is compact JSON: the case ID and version it binds, and the delta of
forms that version made, padded with spaces to a size bucket. Every open file is smaller
than the auditor clone's blob filter and every entry larger, so an auditor's clone holds
the open files and no ciphertext.

Entries are folded in version order from no forms. The delta replaces single forms whole
and upserts or removes the items of a list form by their id, so a commit adds the bytes
of what changed, not of the case.

Pure: bytes and values in, bytes and values out; sealing is the store's and crypto's job.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import ids, records
from .errors import IntegrityError, ParseError, TooLarge

SEALED_DIR = "sealed"
ENTRY_SUFFIX = ".age"
# git's `--filter=blob:limit=N` leaves out every blob of N bytes or more: open files are
# kept below it and entries padded to at least it.
AUDITOR_BLOB_LIMIT = 1024
# The least age adds to a plaintext of up to 64 KiB sealed to one X25519 key, in binary:
# the header (version line, one stanza of 43 + 43 characters, the MAC line: 168 bytes),
# the payload's nonce (16) and its one chunk's tag (16).
SEAL_OVERHEAD = 200
ENTRY_FORMAT = 1
MAX_PLAINTEXT = records.MAX_PAYLOAD
_RESTORE = "restore the case's sealed folder with git or run cmgit audit"
# A version in an entry's name: as many digits as an open field's integer may have.
_VERSION_DIGITS = 18

# The keys of an entry's plaintext, in the order it writes them.
ENTRY_KEYS = (
    "cmgit_entry",
    "case_id",
    "version",
    "set",
    "items",
    "unset",
    "removed",
    "id_fields",
)


# -- the open file -----------------------------------------------------------------


def render_open_file(open_fields: Mapping[str, Any], order: Sequence[str]) -> bytes:
    """The open file of a case: the open-field lines a record file starts with, nothing
    after them. Refused from AUDITOR_BLOB_LIMIT bytes on, where an auditor's clone would
    leave it out."""
    data = ("\n".join(records.open_lines(open_fields, order)) + "\n").encode("ascii")
    if len(data) >= AUDITOR_BLOB_LIMIT:
        case_id = open_fields.get("case_id")
        raise TooLarge(
            f"open fields take {len(data)} bytes; an open file holds less than"
            f" {AUDITOR_BLOB_LIMIT}",
            case_id=case_id if isinstance(case_id, str) else None,
            hint="an auditor's clone keeps only smaller files; ask a programme manager to"
            " shorten the schema's open fields",
        )
    return data


def parse_open_file(data: bytes, order: Sequence[str]) -> dict[str, Any]:
    """The open fields of an open file, refusing anything cmgit would not have written:
    another field order, a value not written canonically, or anything after the fields
    (a format 1 sealed block included)."""
    if len(data) >= AUDITOR_BLOB_LIMIT:
        raise TooLarge("open file is larger than cmgit writes one")
    lines = records.ascii_lines(data, "open file")
    values, canonical = records.open_values(lines[: len(order)], order)
    rest = lines[len(order) :]
    if not rest:
        raise ParseError("open file: truncated (no newline after the last field)")
    if rest != [""]:
        raise ParseError(
            f"open file: unexpected content at line {len(order) + 1}, column 1"
            " (an open file holds the open fields only)"
        )
    if not canonical:
        raise IntegrityError("open file is not in canonical form (was it edited by hand?)")
    return dict(zip(order, values, strict=True))


# -- where entries live ------------------------------------------------------------


def entries_dir(case_id: str) -> str:
    """The folder of a case's sealed entries, fanned out by its record file's bucket. A folder
    per case keeps every tree a commit writes small however long cases live, so history
    grows with what is written, not with the entries already there."""
    ids.check_case_id(case_id)
    return f"{SEALED_DIR}/{_fan_out(ids.bucket(case_id))}/{case_id}"


def _fan_out(bucket: str) -> str:
    """A bucket's folder under sealed/, one character a level: every commit writes the
    folders above its case's, and a folder of 32 is far cheaper to keep in history than
    one of 1,024 (git stores a whole copy of a changed tree every so many versions)."""
    return "/".join(bucket)


def entry_path(case_id: str, version: int) -> str:
    """The path of the entry a case version wrote: ``sealed/X/X/CP-ID/CP-ID.VERSION.age``.
    The file name repeats the case ID, for it is all git gives a diff driver."""
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError("an entry's version is an integer")
    if not 1 <= version < 10**_VERSION_DIGITS:
        raise ValueError(f"an entry's version is positive, of at most {_VERSION_DIGITS} digits")
    return f"{entries_dir(case_id)}/{case_id}.{version}{ENTRY_SUFFIX}"


def parse_entry_name(name: str) -> tuple[str, int] | None:
    """The case ID and version an entry's file name names, or None for any other name."""
    if not name.endswith(ENTRY_SUFFIX):
        return None
    case_id, dot, number = name[: -len(ENTRY_SUFFIX)].rpartition(".")
    if not dot or not ids.CASE_ID_RE.fullmatch(case_id):
        return None
    if not (number.isascii() and number.isdigit()) or number[0] == "0":
        return None
    if len(number) > _VERSION_DIGITS:
        return None
    return case_id, int(number)


def parse_entry_path(path: str) -> tuple[str, int] | None:
    """The case ID and version an entry's path names, or None for any other path: the
    grammar is entry_path's exactly, so no other file name passes for an entry."""
    folder, _, name = path.rpartition("/")
    named = parse_entry_name(name)
    if named is None or folder != f"{SEALED_DIR}/{_fan_out(ids.bucket(named[0]))}/{named[0]}":
        return None
    return named


# -- padding -----------------------------------------------------------------------


def bucket(length: int) -> int:
    """The padded size of an entry's plaintext: what makes the sealed file the smallest
    of 1, 1.5, 2, 3, 4, 6, 8 KiB ... (powers of two from 1 KiB and 1.5 times them) that
    holds ``length``. Steps of at most 1.5 keep padding cheap while a length tells little
    about what was written. Sizing the sealed file, not the plaintext, makes the
    smallest entry as large as an auditor's clone leaves out, and hardly larger (age adds
    a random "grease" stanza of a few dozen bytes on top)."""
    size = AUDITOR_BLOB_LIMIT
    while True:
        for sealed in (size, size + size // 2):
            if length + SEAL_OVERHEAD <= sealed:
                return sealed - SEAL_OVERHEAD
        size *= 2


# -- the delta of forms ------------------------------------------------------------


@dataclass(frozen=True)
class Delta:
    """What one version changed in a case's forms.

    ``set`` replaces forms whole; ``unset`` drops forms; ``items`` upserts the items of a
    list form by id (an id already there is replaced in place, a new one appended, in
    order); ``removed`` drops items by id. ``id_fields`` names, for every form in
    ``items`` or ``removed``, the field that holds its items' ids: the entry carries it,
    so history folds the same whatever the schemas say later.
    """

    set: dict[str, Any]
    items: dict[str, list[dict[str, Any]]]
    unset: tuple[str, ...]
    removed: dict[str, tuple[str, ...]]
    id_fields: dict[str, str] = field(default_factory=dict)


def delta(
    old: Mapping[str, Any], new: Mapping[str, Any], id_fields: Mapping[str, str]
) -> Delta | None:
    """The delta that turns forms ``old`` into ``new``, or None when they are the same.

    ``id_fields`` maps a list form to its items' id field. Such a form changes by items
    when ``new`` keeps the order of the items of ``old`` it keeps (replaced in place or
    not) and adds new ones after them; any other change replaces it whole.
    """
    whole: dict[str, Any] = {}
    items: dict[str, list[dict[str, Any]]] = {}
    removed: dict[str, tuple[str, ...]] = {}
    for name, value in new.items():
        if name in old and _same(old[name], value):
            continue
        key = id_fields.get(name)
        change = _item_change(old[name], value, key) if key and name in old else None
        if change is None:
            whole[name] = value
            continue
        upserts, dropped = change
        if upserts:
            items[name] = upserts
        if dropped:
            removed[name] = dropped
    unset = tuple(name for name in old if name not in new)
    if not (whole or items or unset or removed):
        return None
    keys = {name: id_fields[name] for name in (*items, *removed)}
    return Delta(whole, items, unset, removed, keys)


def _item_change(
    old: Any, new: Any, key: str
) -> tuple[list[dict[str, Any]], tuple[str, ...]] | None:
    """A list form's change as (items upserted, ids removed), or None when it is not
    one: either side not a list of items with distinct ids, or the kept items moved."""
    old_ids, new_ids = _item_ids(old, key), _item_ids(new, key)
    if old_ids is None or new_ids is None:
        return None
    now = set(new_ids)
    kept = [item_id for item_id in old_ids if item_id in now]
    if new_ids[: len(kept)] != kept:
        return None
    before = dict(zip(old_ids, old, strict=True))
    upserts = [
        item
        for item_id, item in zip(new_ids, new, strict=True)
        if item_id not in before or not _same(before[item_id], item)
    ]
    return upserts, tuple(item_id for item_id in old_ids if item_id not in now)


def _item_ids(value: Any, key: str) -> list[str] | None:
    """The ids of a list of items in order, or None if it is not a list of mappings each
    with a distinct string id."""
    if not isinstance(value, list):
        return None
    found = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get(key), str):
            return None
        found.append(item[key])
    return found if len(set(found)) == len(found) else None


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values: 1, 1.0 and true are three different values here, though
    Python finds them equal, and a change between them is a change to seal."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    return bool(a == b)


def apply(forms: Mapping[str, Any], change: Delta) -> dict[str, Any]:
    """The forms after ``change``: a new mapping, ``forms`` and ``change`` left as they
    were (values are shared, never changed). A change that does not fit the forms (a form
    or item that is not there) is an integrity failure: entries were written in order."""
    result = dict(forms)
    for name in change.unset:
        if result.pop(name, _ABSENT) is _ABSENT:
            raise _unfit("drops a form that is not there")
    result.update(change.set)
    for name in {**change.removed, **change.items}:
        key = change.id_fields.get(name)
        current = _item_ids(result.get(name), key) if key else None
        if key is None or current is None:
            raise _unfit("changes items of a form that is not a list of items")
        gone = set(change.removed.get(name, ()))
        if not gone <= set(current):
            raise _unfit("removes an item that is not there")
        kept = [
            item for item_id, item in zip(current, result[name], strict=True) if item_id not in gone
        ]
        where = {item[key]: at for at, item in enumerate(kept)}
        for item in change.items.get(name, ()):
            at = where.get(item[key])
            if at is None:
                where[item[key]] = len(kept)
                kept.append(item)
            else:
                kept[at] = item
        result[name] = kept
    return result


_ABSENT = object()


def _unfit(what: str) -> IntegrityError:
    return IntegrityError(
        f"a sealed entry {what}",
        hint="the case's entries do not follow one another; run cmgit audit",
    )


def fold(deltas: Iterable[Delta]) -> dict[str, Any]:
    """A case's forms: its entries' deltas applied in version order, from no forms."""
    forms: dict[str, Any] = {}
    for change in deltas:
        forms = apply(forms, change)
    return forms


# -- sealed entries ----------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """A sealed entry, read: the case and version its seal binds, and its delta."""

    case_id: str
    version: int
    delta: Delta


def entry_plaintext(case_id: str, version: int, change: Delta) -> bytes:
    """The plaintext of the entry a case version writes, padded to its bucket: spaces,
    which JSON allows after a value, so the padding needs no framing of its own."""
    ids.check_case_id(case_id)
    entry_path(case_id, version)  # a version an entry may be named by
    doc = {
        "cmgit_entry": ENTRY_FORMAT,
        "case_id": case_id,
        "version": version,
        "set": change.set,
        "items": change.items,
        "unset": list(change.unset),
        "removed": {name: list(gone) for name, gone in change.removed.items()},
        "id_fields": change.id_fields,
    }
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(body) > MAX_PLAINTEXT:
        raise TooLarge(
            "case entry is larger than cmgit accepts",
            case_id=case_id,
            hint="split the change over several commits, or shorten the forms",
        )
    return body + b" " * (bucket(len(body)) - len(body))


def parse_entry(data: bytes) -> Entry:
    """Read an entry's plaintext. Any surprise (not JSON, another shape, a delta that
    contradicts itself, or bytes other than cmgit writes for it) is an integrity failure,
    never a crash."""
    if len(data) > bucket(MAX_PLAINTEXT):
        raise TooLarge("sealed entry is larger than cmgit accepts")
    try:
        entry = _entry(json.loads(data.decode("utf-8")))
        written = entry is not None and (
            entry_plaintext(entry.case_id, entry.version, entry.delta) == data
        )
    except (ValueError, RecursionError, TooLarge):
        entry, written = None, False
    if entry is None or not written:
        raise IntegrityError(
            "sealed entry does not hold a cmgit entry",
            hint=_RESTORE,
        )
    return entry


def _entry(doc: Any) -> Entry | None:
    """The entry a decoded document holds, or None if it is not exactly one."""
    if not isinstance(doc, dict) or tuple(doc) != ENTRY_KEYS:
        return None
    case_id, version = doc["case_id"], doc["version"]
    if (
        not _is_int(doc["cmgit_entry"])
        or doc["cmgit_entry"] != ENTRY_FORMAT
        or not isinstance(case_id, str)
        or not ids.CASE_ID_RE.fullmatch(case_id)
        or not _is_int(version)
        or version < 1
    ):
        return None
    change = _delta(doc["set"], doc["items"], doc["unset"], doc["removed"], doc["id_fields"])
    return None if change is None else Entry(case_id, version, change)


def _delta(whole: Any, items: Any, unset: Any, removed: Any, keys: Any) -> Delta | None:
    """A delta from its decoded parts, or None if they do not make one apply can follow:
    wrong types, a form named twice, an id repeated, or an item without its id."""
    if not (
        _is_map(whole, object)
        and _is_map(items, list)
        and _is_strings(unset)
        and _is_map(removed, list)
        and _is_map(keys, str)
    ):
        return None
    named = [*whole, *unset, *(set(items) | set(removed))]
    if len(set(named)) != len(named) or set(keys) != set(items) | set(removed):
        return None
    for name, key in keys.items():
        upserted = _item_ids(items.get(name, []), key)
        gone = removed.get(name, [])
        if upserted is None or not _is_strings(gone) or set(upserted) & set(gone):
            return None
    return Delta(
        whole,
        items,
        tuple(unset),
        {name: tuple(gone) for name, gone in removed.items()},
        keys,
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_map(value: Any, kind: type) -> bool:
    """A JSON object whose every value is of ``kind``."""
    return isinstance(value, dict) and all(isinstance(v, kind) for v in value.values())


def _is_strings(value: Any) -> bool:
    """A JSON array of distinct strings."""
    return (
        isinstance(value, list)
        and all(isinstance(v, str) for v in value)
        and len(set(value)) == len(value)
    )


def check_entry(entry: Entry, path_case_id: str, path_version: int, open_version: int) -> None:
    """An entry must be the one its path names, of a version the open file has reached:
    so a copied, swapped, renamed or rolled-back entry is refused."""
    if entry.case_id != path_case_id:
        raise IntegrityError(
            "entry belongs to another case (copied or swapped)",
            case_id=path_case_id,
            hint=_RESTORE,
        )
    if entry.version != path_version:
        raise IntegrityError(
            "entry was renamed or rolled back",
            case_id=path_case_id,
            hint=_RESTORE,
        )
    if entry.version > open_version:
        raise IntegrityError(
            "entry is newer than the record",
            case_id=path_case_id,
            hint="the open file was rolled back or the entry added outside cmgit;"
            " restore the case with git or run cmgit audit",
        )
