"""Migrations of records: small declarative files under ``schemas/migrations/`` that bring
every record from one record format to the next when the programme changes its forms.

A file ``NNNN-slug.yaml`` brings records to format NNNN (the first is 0002: format 1 is
a record no migration has touched). Its steps rename a field, set a default where a
field is absent, map enum values, move a field, or drop one with a recorded reason. A
field is a dotted path over the whole record: an open field at the top level, a form's
field as ``form.field``; where a form (or a part of one) is a list of items, the step
applies to each item. Each record carries its format in the open field
``record_format``; the repository's format is the highest a migration brings records to.

Pure: bytes and values in, values out. The store applies a migration with the programme
manager's key; audit applies it to the open fields alone, without any key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import yamlio
from .errors import SchemaError
from .ids import REASON_RE

MIGRATIONS_DIR = "schemas/migrations"
FORMAT_FIELD = "record_format"
FIRST_FORMAT = 1  # a record no migration has touched
MAX_MIGRATION_BYTES = 64 * 1024
MAX_STEPS = 200
_FILE_RE = re.compile(r"([0-9]{4})-([a-z0-9][a-z0-9-]{0,47})\.yaml")
_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_VERSION_RE = re.compile(r"(0|[1-9][0-9]{0,4})\.(0|[1-9][0-9]{0,4})\.(0|[1-9][0-9]{0,4})")
_KEYS = {"format", "reason", "steps", "requires_cmgit", "layout"}
_OPTIONAL = {"requires_cmgit", "layout"}
# `layout: 2`: from this migration on, records keep their forms as sealed entries under a
# key of their own (record format 2 of the design, docs/design/record-format-2.md).
SEALED_ENTRIES = 2
# Each kind of step and the keys it takes (all required).
STEPS: dict[str, frozenset[str]] = {
    "map_values": frozenset({"field", "values"}),
    "rename_field": frozenset({"field", "to"}),
    "set_default": frozenset({"field", "value"}),
    "move_field": frozenset({"field", "to"}),
    "drop_field": frozenset({"field", "reason"}),
}
Path = tuple[str, ...]


@dataclass(frozen=True)
class Step:
    kind: str
    field: Path
    to: Path = ()  # rename_field: the new name's path (same parent); move_field: the target
    values: tuple[tuple[Any, Any], ...] = ()  # map_values: (old, new) pairs
    value: Any = None  # set_default
    reason: str = ""  # drop_field


@dataclass(frozen=True)
class Migration:
    name: str  # the file name without .yaml, e.g. "0002-record-format"
    format: int
    reason: str
    steps: tuple[Step, ...]
    requires_cmgit: str | None = None
    layout: int | None = None  # SEALED_ENTRIES: records migrated by it change layout

    @property
    def path(self) -> str:
        return f"{MIGRATIONS_DIR}/{self.name}.yaml"

    def data(self) -> tuple[Any, ...]:
        """The migration as plain values (what marshal stores), `from_data` reads back."""
        return (
            self.name,
            self.format,
            self.reason,
            self.requires_cmgit,
            [(s.kind, s.field, s.to, s.values, s.value, s.reason) for s in self.steps],
            self.layout,
        )

    @classmethod
    def from_data(cls, data: Sequence[Any]) -> Migration:
        name, fmt, reason, requires, steps, layout = data
        return cls(
            name,
            fmt,
            reason,
            tuple(
                Step(kind, tuple(field), tuple(to), tuple(map(tuple, values)), value, why)
                for kind, field, to, values, value, why in steps
            ),
            requires,
            layout,
        )

    def renamed(self) -> list[str]:
        """The fields its rename and move steps give a new path, as "old -> new"."""
        return [
            f"{'.'.join(s.field)} -> {'.'.join(s.to)}"
            for s in self.steps
            if s.kind in ("rename_field", "move_field")
        ]


class MigrationConflict(SchemaError):
    """A migration cannot be applied to a record as it is (a field already taken)."""


# -- reading the files ------------------------------------------------------------------


def is_migration_path(path: str) -> bool:
    """Whether ``path`` lies under schemas/migrations/ (a file there must be a migration)."""
    return path.startswith(MIGRATIONS_DIR + "/")


def file_format(path: str) -> int | None:
    """The format a migration file's name says it brings records to; None if the name is
    not one of a migration."""
    match = _FILE_RE.fullmatch(path.rpartition("/")[2]) if is_migration_path(path) else None
    return int(match.group(1)) if match and path.count("/") == 2 else None


def _refuse(name: str, what: str) -> SchemaError:
    return SchemaError(
        f"{MIGRATIONS_DIR}/{name}: {what}",
        hint="correct the migration; see the Migrations part of the coordinators' guide",
    )


def parse(path: str, data: bytes) -> Migration:
    """A migration file read and checked: its name, keys, steps and paths; SchemaError
    (cmgit's own message, never the file's content) for anything else."""
    shown = path.rpartition("/")[2]
    number = file_format(path)
    if number is None:
        shown = shown if _FILE_RE.fullmatch(shown) else "a file"
        raise SchemaError(
            f"{MIGRATIONS_DIR}/ holds {shown} that is not a migration (NNNN-name.yaml, the "
            "name of lower-case letters, digits and -)",
            hint=f"rename or remove it; every file under {MIGRATIONS_DIR}/ is a migration",
        )
    name = shown[: -len(".yaml")]
    doc = yamlio.core(yamlio.load(data, what=f"migration {name}", max_bytes=MAX_MIGRATION_BYTES))
    if not isinstance(doc, dict):
        raise _refuse(name, "is not a mapping of format, reason and steps")
    unknown = sorted(str(k) for k in doc if k not in _KEYS)
    if unknown:
        raise _refuse(name, f"unknown key {_shown(unknown[0])}")
    missing = sorted(_KEYS - _OPTIONAL - set(doc))
    if missing:
        raise _refuse(name, f"{missing[0]} is missing")
    fmt = doc["format"]
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt != number:
        raise _refuse(name, f"format must be {number}, the number its file name starts with")
    if fmt <= FIRST_FORMAT:
        raise _refuse(name, f"the first migration brings records to format {FIRST_FORMAT + 1}")
    reason = _code(name, doc["reason"], "reason")
    requires = doc.get("requires_cmgit")
    if requires is not None and not (isinstance(requires, str) and _VERSION_RE.fullmatch(requires)):
        raise _refuse(name, 'requires_cmgit is a version such as "0.2.0"')
    layout = doc.get("layout")
    if layout is not None and layout != SEALED_ENTRIES:
        raise _refuse(name, f"layout, where given, is {SEALED_ENTRIES} (sealed entries)")
    steps = doc["steps"]
    if steps is None:
        steps = []
    if not isinstance(steps, list) or len(steps) > MAX_STEPS:
        raise _refuse(name, f"steps is a list of at most {MAX_STEPS} steps")
    return Migration(
        name,
        fmt,
        reason,
        tuple(_step(name, i, s) for i, s in enumerate(steps, 1)),
        requires,
        layout,
    )


def _shown(text: str) -> str:
    return f"'{text}'" if _NAME_RE.fullmatch(text) else "of odd name"


def _code(name: str, value: Any, what: str) -> str:
    if isinstance(value, str) and REASON_RE.fullmatch(value):
        return value
    raise _refuse(name, f"{what} is a code of lower-case letters, digits and _ (up to 48)")


def _path(name: str, where: str, value: Any) -> Path:
    parts = tuple(value.split(".")) if isinstance(value, str) else ()
    if not parts or not all(_NAME_RE.fullmatch(p) for p in parts):
        raise _refuse(name, f"{where}: a field is a dotted path of field names, e.g. form.field")
    return parts


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | bool)


def _step(name: str, number: int, raw: Any) -> Step:
    where = f"step {number}"
    if not isinstance(raw, dict) or len(raw) != 1:
        raise _refuse(name, f"{where} is not one kind of step ({', '.join(STEPS)})")
    ((kind, body),) = raw.items()
    if kind not in STEPS:
        raise _refuse(name, f"{where}: unknown kind of step {_shown(str(kind))}")
    where = f"{where} ({kind})"
    if not isinstance(body, dict):
        raise _refuse(name, f"{where} takes a mapping of {', '.join(sorted(STEPS[kind]))}")
    keys = set(map(str, body))
    if keys != STEPS[kind]:
        odd = sorted(keys - STEPS[kind]) or sorted(STEPS[kind] - keys)
        word = "unknown key" if keys - STEPS[kind] else "missing key"
        raise _refuse(name, f"{where}: {word} {_shown(odd[0])}")
    field = _path(name, where, body["field"])
    if kind == "map_values":
        values = body["values"]
        if (
            not isinstance(values, dict)
            or not values
            or not all(_scalar(k) and _scalar(v) for k, v in values.items())
        ):
            raise _refuse(name, f"{where}: values maps each old value to its new one")
        return Step(kind, field, values=tuple(values.items()))
    if kind == "rename_field":
        to = body["to"]
        if not (isinstance(to, str) and _NAME_RE.fullmatch(to)):
            raise _refuse(name, f"{where}: to is the new name of the field, without a path")
        return Step(kind, field, to=(*field[:-1], to))
    if kind == "move_field":
        target = _path(name, where, body["to"])
        if target == field:
            raise _refuse(name, f"{where}: the field moves nowhere")
        return Step(kind, field, to=target)
    if kind == "set_default":
        return Step(kind, field, value=body["value"])
    return Step(kind, field, reason=_code(name, body["reason"], f"{where}: reason"))


def read_all(files: Mapping[str, bytes]) -> tuple[Migration, ...]:
    """Every migration among ``files`` (path: bytes, the files under schemas/migrations/),
    in format order, checked as a sequence: formats 2, 3, ... with no gap or repeat."""
    found = sorted((parse(path, data) for path, data in files.items()), key=lambda m: m.format)
    for expected, migration in enumerate(found, FIRST_FORMAT + 1):
        if migration.format != expected:
            raise _refuse(
                migration.name,
                f"format {migration.format} where format {expected} was expected "
                "(one migration for each format, with no gap)",
            )
    return tuple(found)


def repository_format(migrations: Sequence[Migration]) -> int:
    """The format every record of the repository is at: the last migration's."""
    return max((m.format for m in migrations), default=FIRST_FORMAT)


def sealed_entries_from(migrations: Iterable[Migration]) -> int | None:
    """The format from which records keep sealed entries: the first migration that says
    so; None while none does."""
    return min((m.format for m in migrations if m.layout == SEALED_ENTRIES), default=None)


def oldest_writer(migrations: Iterable[Migration]) -> str | None:
    """The oldest cmgit version that may write: the highest any migration requires."""
    needed = [m.requires_cmgit for m in migrations if m.requires_cmgit]
    return max(needed, key=version_key) if needed else None


def version_key(version: str) -> tuple[int, ...]:
    """A version such as "0.2.0" as numbers to compare; a suffix (".dev1", "rc1") after
    the third number is left out, so a development build counts as its release."""
    parts = []
    for part in version.split(".")[:3]:
        digits = re.match(r"[0-9]*", part)
        parts.append(int(digits.group(0)) if digits and digits.group(0) else 0)
    return tuple(parts)


def check_against(migration: Migration, open_names: Iterable[str]) -> None:
    """Refuse a step that would move a value between the open fields and the sealed forms:
    sealed content made public, or a public value made unverifiable without a key."""
    names = set(open_names)
    for number, step in enumerate(migration.steps, 1):
        if step.kind == "move_field" and (step.field[0] in names) != (step.to[0] in names):
            raise _refuse(
                migration.name,
                f"step {number} (move_field) moves a field between the open fields and "
                "the sealed forms",
            )
        if step.field[0] in names and len(step.field) > 1:
            raise _refuse(
                migration.name,
                f"step {number} ({step.kind}): an open field has no fields inside it",
            )


# -- applying them ----------------------------------------------------------------------


def record_format(open_fields: Mapping[str, Any]) -> int:
    """The format a record is at: its record_format, absent (or null) for format 1."""
    value = open_fields.get(FORMAT_FIELD)
    return value if isinstance(value, int) and not isinstance(value, bool) else FIRST_FORMAT


def pending(migrations: Iterable[Migration], fmt: int) -> list[Migration]:
    """The migrations a record at format ``fmt`` has not had, in order."""
    return sorted((m for m in migrations if m.format > fmt), key=lambda m: m.format)


def apply(
    migrations: Sequence[Migration],
    open_fields: Mapping[str, Any],
    forms: Mapping[str, Any],
    open_names: Sequence[str],
    *,
    in_place: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A record's open fields and forms after ``migrations`` (in order), as new values,
    the given ones untouched unless ``in_place`` (a caller done with them saves copying
    every record); ``open_names`` are the open fields of the schema the record is
    migrated to. Sets record_format to the last format and changes nothing else but
    what the steps say (the version is the store's to bump); an open field the record
    has no value for is null, as in a new case. MigrationConflict where a step cannot
    apply (a field renamed onto one the record already has)."""
    whole: dict[str, Any] = (
        {**open_fields, **forms} if in_place else {**_copied(open_fields), **_copied(forms)}
    )
    for migration in migrations:
        for step in migration.steps:
            _apply_step(step, whole, migration.name)
        whole[FORMAT_FIELD] = migration.format
    new_open = {name: whole.pop(name, None) for name in open_names}
    return new_open, whole


def apply_open(
    migrations: Sequence[Migration], open_fields: Mapping[str, Any], open_names: Sequence[str]
) -> dict[str, Any]:
    """The open fields after ``migrations``, from the open fields alone: what audit
    recomputes without any key. Steps on forms find nothing to change, and no step moves
    a value between the open fields and the forms (`check_against`)."""
    return apply(migrations, open_fields, {}, open_names)[0]


def _apply_step(step: Step, record: dict[str, Any], name: str) -> None:
    if step.kind == "move_field":
        shared = 0
        while (
            shared < min(len(step.field), len(step.to)) - 1
            and step.field[shared] == step.to[shared]
        ):
            shared += 1
        for holder in _holders(record, step.field[:shared]):
            _move(holder, step.field[shared:], step.to[shared:], name)
        return
    for parent in _holders(record, step.field[:-1]):
        last = step.field[-1]
        if step.kind == "set_default":
            if last not in parent:
                parent[last] = _copied(step.value)
        elif last not in parent:
            continue
        elif step.kind == "drop_field":
            del parent[last]
        elif step.kind == "rename_field":
            if step.to[-1] in parent:
                raise _conflict(step, name)
            parent[step.to[-1]] = parent.pop(last)
        elif step.kind == "map_values":
            parent[last] = _mapped(parent[last], step.values)


def _copied(value: Any) -> Any:
    """A copy of a record's values (mappings, lists and scalars, as JSON has them): many
    times faster than `copy.deepcopy`, which a migration of every record would feel."""
    if isinstance(value, Mapping):
        return {key: _copied(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copied(item) for item in value]
    return value


def _holders(node: Any, path: Path) -> Iterator[dict[str, Any]]:
    """The mappings at ``path`` under ``node``: each item of a list on the way; none
    where a part is absent or not a mapping."""
    if isinstance(node, list):
        for item in node:
            yield from _holders(item, path)
    elif isinstance(node, dict):
        if not path:
            yield node
        elif path[0] in node:
            yield from _holders(node[path[0]], path[1:])


def _move(holder: dict[str, Any], source: Path, target: Path, name: str) -> None:
    """Move the value at ``source`` to ``target`` within one mapping: paths of mappings,
    a mapping made where the target's is absent."""
    parent: Any = holder
    for part in source[:-1]:
        parent = parent.get(part) if isinstance(parent, dict) else None
    if not isinstance(parent, dict) or source[-1] not in parent:
        return
    place: Any = holder
    for part in target[:-1]:
        if isinstance(place, dict) and part not in place:
            place[part] = {}
        place = place.get(part) if isinstance(place, dict) else None
    if not isinstance(place, dict) or target[-1] in place:
        raise MigrationConflict(
            f"migration {name}: move_field of {'.'.join(source)} cannot place it",
            problems=[f"at /{'/'.join(target)}: a field is there already, or a list is"],
        )
    place[target[-1]] = parent.pop(source[-1])


def _mapped(value: Any, values: tuple[tuple[Any, Any], ...]) -> Any:
    if isinstance(value, list):
        return [_mapped(item, values) for item in value]
    for old, new in values:
        # True == 1 in Python: an enum of booleans and one of numbers must not mix.
        if value == old and type(value) is type(old):
            return new
    return value


def _conflict(step: Step, name: str) -> MigrationConflict:
    return MigrationConflict(
        f"migration {name}: {step.kind} of {'.'.join(step.field)} onto a field the record has",
        problems=[f"at /{'/'.join(step.to)}: the field exists already"],
    )
