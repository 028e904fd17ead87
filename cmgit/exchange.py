"""Cases in and out as CSV: the import map, a row made into forms, the export's cells, and
the comparison a round trip is judged by. Pure: values in, values out.

An import map (YAML, ``map: cmgit-import-map 1``) names, for each column of another
system's export, the form field(s) it fills and how its text becomes a value (a date, a
list split on a separator, a code through a value map). cmgit's own export needs no map:
its columns are named by the field paths themselves (``registration.child.sex``; a whole
form as ``consent``) and its cells hold text as it is, or JSON for anything else.

Nothing here puts a cell's value into a problem: a row's problems name the row, the
column or field, and what is wrong, so a dry run can be shown to anyone.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import hashlib
import io
import itertools
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import yamlio
from .errors import UsageError
from .ids import REASON_RE
from .workflow import age_band

MAP_FORMAT = "cmgit-import-map 1"
# Open fields an import sets from a row; the others cmgit computes from the forms when it
# seals the record (SPEC section 2), and case_id and version are new.
SETTABLE_OPEN = (
    "state",
    "state_since",
    "episode",
    "team",
    "caseworker",
    "comprehensive_assessment_required",
)
# Open fields a round trip does not carry: a new case gets a new id, version and history.
NOT_CARRIED = ("case_id", "version", "state_history", "record_format")
# Why a plaintext export may be made: the one exception to "no plaintext on disk" (SPEC
# section 9), each a code kept open in the export's commit.
PLAINTEXT_REASONS = ("system_migration", "statutory_report", "court_order")
KINDS = ("text", "date", "partial_date", "integer", "boolean", "list", "age")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PARTIAL = re.compile(r"[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?")
_PLACEHOLDERS = ("$caseworker", "$since", "$today")
MAX_ROWS = 100_000


@dataclass(frozen=True)
class Column:
    """One source column: the fields it fills and how its text becomes their value."""

    name: str
    fields: tuple[str, ...]
    kind: str = "text"
    values: Mapping[str, Any] | None = None  # source code -> cmgit value
    split: str | None = None  # for kind list
    fill: bool = False  # only where no earlier column set the field
    also: Mapping[str, Any] = field(default_factory=dict)  # set too, when the cell has text


@dataclass(frozen=True)
class ImportMap:
    title: str
    columns: tuple[Column, ...] = ()
    state_column: str | None = None
    state_values: Mapping[str, str] | None = None
    since_column: str | None = None
    caseworker_column: str | None = None
    caseworker_values: Mapping[str, str] | None = None
    # Fields a form gets when a column filled something in it ("identification",
    # "risk_assessment.0"): what the source does not hold but the form requires.
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    own: bool = False  # cmgit's own export: columns named by field paths


OWN_MAP = ImportMap("cmgit export", own=True)


@dataclass
class Row:
    """One source row made into a case: its forms, the open fields it sets, its problems
    (each "field: what is wrong", never a value)."""

    number: int
    forms: dict[str, Any] = field(default_factory=dict)
    open: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


# -- the map -------------------------------------------------------------------------------


def load_map(data: bytes) -> ImportMap:
    """Read and check an import map; UsageError naming the key that is wrong."""
    doc = yamlio.load(data, what="import map")
    if not isinstance(doc, dict) or doc.get("map") != MAP_FORMAT:
        raise UsageError(
            f"not an import map: its first key must be 'map: {MAP_FORMAT}'",
            hint="start from the map cmgit ships (cmgit/maps/primero.yaml)",
        )
    unknown = set(doc) - {"map", "title", "state", "caseworker", "columns", "defaults"}
    if unknown:
        raise UsageError(f"import map: unknown key {sorted(unknown)[0]}")
    state = _section(doc, "state")
    worker = _section(doc, "caseworker")
    columns = tuple(_column(name, spec) for name, spec in _section(doc, "columns").items())
    if not columns:
        raise UsageError("import map: no columns")
    defaults = {
        str(key): {str(k): _typed(v) for k, v in _section(doc["defaults"], key).items()}
        for key in _section(doc, "defaults")
    }
    return ImportMap(
        title=str(doc.get("title") or "import"),
        columns=columns,
        state_column=_optional_text(state, "column"),
        state_values=_code_map(state, "values"),
        since_column=_optional_text(state, "since"),
        caseworker_column=_optional_text(worker, "column"),
        caseworker_values=_code_map(worker, "values"),
        defaults=defaults,
    )


def _section(doc: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key) or {}
    if not isinstance(value, dict):
        raise UsageError(f"import map: {key} must be a mapping")
    return value


def _optional_text(doc: Mapping[str, Any], key: str) -> str | None:
    value = doc.get(key)
    return None if value is None else str(value)


def _code_map(doc: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    if key not in doc:
        return None
    return {str(k).casefold(): _typed(v) for k, v in _section(doc, key).items()}


def _column(name: str, spec: Any) -> Column:
    if not isinstance(spec, dict) or "field" not in spec:
        raise UsageError(f"import map: column {name} needs a field")
    unknown = set(spec) - {"field", "type", "values", "split", "fill", "also"}
    if unknown:
        raise UsageError(f"import map: column {name}: unknown key {sorted(unknown)[0]}")
    fields = spec["field"] if isinstance(spec["field"], list) else [spec["field"]]
    kind = str(spec.get("type", "text"))
    if kind not in KINDS:
        raise UsageError(f"import map: column {name}: type must be one of {', '.join(KINDS)}")
    return Column(
        name=str(name),
        fields=tuple(str(f) for f in fields),
        kind=kind,
        values=_code_map(spec, "values"),
        split=str(spec["split"]) if "split" in spec else None,
        fill=_typed(spec.get("fill")) is True,
        also={str(k): _typed(v) for k, v in _section(spec, "also").items()},
    )


def _typed(value: Any) -> Any:
    """A plain YAML scalar as the type it reads as (the loader keeps them text)."""
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _typed(v) for k, v in value.items()}
    if isinstance(value, yamlio.Plain):
        text = str(value)
        if text in ("true", "false"):
            return text == "true"
        if text in ("null", "~"):
            return None
        if re.fullmatch(r"-?[0-9]+", text):
            return int(text)
        return text
    return value


def check_reason(code: str) -> str:
    if not REASON_RE.fullmatch(code):  # a code, never words: it stays open
        raise UsageError(
            "a reason is a code: lower-case letters, digits and _ (e.g. child_request)",
            hint="notes in words belong in the case's forms",
        )
    return code


# -- CSV -----------------------------------------------------------------------------------


def read_csv(data: bytes) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows of a CSV file (UTF-8, a byte-order mark allowed)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError("the CSV file is not UTF-8 text", hint="save it as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise UsageError("the CSV file is empty") from None
    except csv.Error:
        raise UsageError("the CSV file cannot be read as CSV") from None
    if len(set(header)) != len(header):
        raise UsageError("the CSV file names a column twice")
    rows = []
    try:
        for cells in reader:
            if not any(cells):
                continue
            rows.append(dict(zip(header, cells, strict=False)))
            if len(rows) > MAX_ROWS:
                raise UsageError(f"the CSV file has more than {MAX_ROWS} rows: split it")
    except csv.Error:
        raise UsageError(f"the CSV file cannot be read as CSV after row {len(rows)}") from None
    return header, rows


def write_csv(header: Sequence[str], rows: Sequence[Sequence[str]]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def encode_cell(value: Any) -> str:
    """A value as one cell: text as it is where it cannot be read as anything else, all
    else as JSON. None is an empty cell."""
    if value is None:
        return ""
    if isinstance(value, str) and value and not _reads_as_json(value):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=False)


def decode_cell(text: str) -> Any:
    if text == "":
        return None
    return json.loads(text) if _reads_as_json(text) else text


def _reads_as_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def source_hash(data: bytes) -> str:
    """The SHA-256 of a source file, in hex: the import commit names its source by it."""
    return hashlib.sha256(data).hexdigest()


# -- a row made into a case ----------------------------------------------------------------


def check_header(header: Sequence[str], mapping: ImportMap, forms: Sequence[str]) -> list[str]:
    """Columns the map needs that the file lacks; for cmgit's own export, columns that name
    no field cmgit knows. Names of columns are the source's, never personal."""
    if mapping.own:
        known = {*SETTABLE_OPEN, *NOT_CARRIED, *forms}
        return [
            f"column {name}: not a field of a cmgit case"
            for name in header
            if name not in known and name.split(".", 1)[0] not in forms
        ]
    # Exports differ in the columns they hold: a missing one leaves its fields to the
    # defaults, or to the schema's refusal. The key caseworker cannot be guessed.
    wanted = [mapping.caseworker_column] if mapping.caseworker_column else []
    if not any(c.name in header for c in mapping.columns):
        wanted += [c.name for c in mapping.columns]
    return [f"column {name}: missing from the file" for name in wanted if name not in header]


def map_row(
    number: int,
    cells: Mapping[str, str],
    mapping: ImportMap,
    today: dt.date,
    new_id: Callable[[str], str],
    id_fields: Mapping[str, str],
) -> Row:
    """One row as forms and open fields; problems named by column or field."""
    row = Row(number)
    if mapping.own:
        _own_row(row, cells)
    else:
        _mapped_row(row, cells, mapping, today)
    _give_item_ids(row, new_id, id_fields)
    child = (row.forms.get("registration") or {}).get("child")
    if isinstance(child, dict) and "age_band" not in child and child.get("date_of_birth"):
        band = age_band(child["date_of_birth"], today)
        if band is not None:
            child["age_band"] = band
    return row


def _own_row(row: Row, cells: Mapping[str, str]) -> None:
    for name, text in cells.items():
        if name in NOT_CARRIED:
            continue
        value = decode_cell(text.strip() if name in SETTABLE_OPEN else text)
        if value is None:
            continue
        if name in SETTABLE_OPEN:
            row.open[name] = value
        else:
            _put(row, name, value)


def _mapped_row(row: Row, cells: Mapping[str, str], mapping: ImportMap, today: dt.date) -> None:
    filled: set[str] = set()
    for column in mapping.columns:
        text = (cells.get(column.name) or "").strip()
        if not text:
            continue
        try:
            value = _convert(text, column, today)
        except ValueError as exc:
            row.problems.append(f"{column.name}: {exc}")
            continue
        for path in column.fields:
            if column.fill and _get(row.forms, path) is not None:
                continue
            _put(row, path, value)
            filled.add(path)
            for other, extra in column.also.items():
                _put(row, other, extra)
    if mapping.state_column:
        code = (cells.get(mapping.state_column) or "").strip().casefold()
        if code:
            state = (mapping.state_values or {}).get(code, code)
            row.open["state"] = state
    if mapping.since_column:
        since = (cells.get(mapping.since_column) or "").strip()
        if since:
            if _DATE.fullmatch(since) and _is_date(since):
                row.open["state_since"] = since
            elif not any(p.startswith(f"{mapping.since_column}:") for p in row.problems):
                row.problems.append(f"{mapping.since_column}: not a date (YYYY-MM-DD)")
    if mapping.caseworker_column:
        user = (cells.get(mapping.caseworker_column) or "").strip()
        if user:
            row.open["caseworker"] = (mapping.caseworker_values or {}).get(user.casefold(), user)
    places = {
        "$caseworker": row.open.get("caseworker"),
        "$since": row.open.get("state_since", today.isoformat()),
        "$today": today.isoformat(),
    }
    for key, values in mapping.defaults.items():
        if not any(p == key or p.startswith(key + ".") for p in filled):
            continue
        for name, value in values.items():
            path = f"{key}.{name}"
            if _get(row.forms, path) is None:
                _put(row, path, places.get(value, value) if isinstance(value, str) else value)


def _convert(text: str, column: Column, today: dt.date) -> Any:
    """A cell's text as the column's value; ValueError saying what (never the text)."""
    if column.kind == "list":
        parts = [p.strip() for p in text.split(column.split or ";") if p.strip()]
        return list(dict.fromkeys(_code(p, column) for p in parts))
    value = _code(text, column)
    if not isinstance(value, str):
        return value
    if column.kind == "date" and not (_DATE.fullmatch(value) and _is_date(value)):
        raise ValueError("not a date (YYYY-MM-DD)")
    if column.kind == "partial_date" and not _PARTIAL.fullmatch(value):
        raise ValueError("not a date (YYYY, YYYY-MM or YYYY-MM-DD)")
    if column.kind in ("integer", "age"):
        if not re.fullmatch(r"[0-9]{1,3}", value):
            raise ValueError("not a whole number")
        if column.kind == "age":
            # An age alone gives the year of birth, as an estimate.
            return str(today.year - int(value))
        return int(value)
    if column.kind == "boolean":
        if value.casefold() not in ("true", "false", "yes", "no", "1", "0"):
            raise ValueError("not yes or no")
        return value.casefold() in ("true", "yes", "1")
    return value


def _code(text: str, column: Column) -> Any:
    if column.values is None:
        return text
    if text.casefold() not in column.values:
        raise ValueError("a code the map's values do not list")
    return column.values[text.casefold()]


def _is_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _give_item_ids(row: Row, new_id: Callable[[str], str], id_fields: Mapping[str, str]) -> None:
    for form, id_field in id_fields.items():
        items = row.forms.get(form)
        if isinstance(items, list):
            for item in items:
                if isinstance(item, dict) and not item.get(id_field):
                    item[id_field] = new_id(form)


@functools.lru_cache(maxsize=1024)
def _segments(path: str) -> tuple[str | int, ...]:
    return tuple(int(p) if p.isdigit() else p for p in path.split("."))


def _get(doc: Any, path: str) -> Any:
    for part in _segments(path):
        if isinstance(part, int):
            doc = doc[part] if isinstance(doc, list) and part < len(doc) else None
        else:
            doc = doc.get(part) if isinstance(doc, dict) else None
        if doc is None:
            return None
    return doc


def _put(row: Row, path: str, value: Any) -> None:
    """Set ``path`` (dots between names, a number for an item of a list) in the forms."""
    parts = _segments(path)
    doc: Any = row.forms
    for part, after in itertools.pairwise(parts):
        empty: Any = [] if isinstance(after, int) else {}
        if isinstance(part, int):
            if not isinstance(doc, list) or part > len(doc):
                row.problems.append(f"{path}: not a place in the form")
                return
            if part == len(doc):
                doc.append(empty)
            doc = doc[part]
        else:
            if not isinstance(doc, dict):
                row.problems.append(f"{path}: not a place in the form")
                return
            doc = doc.setdefault(part, empty)
    last = parts[-1]
    if isinstance(last, int) or not isinstance(doc, dict):
        row.problems.append(f"{path}: not a place in the form")
        return
    doc[last] = value


# -- the export and the round trip --------------------------------------------------------


def export_columns(fields: Sequence[str] | None, forms_present: Sequence[str]) -> list[str]:
    """The export's columns: the case ID, then the fields asked for (by default the open
    fields an import sets and every form the cases hold)."""
    chosen = list(fields) if fields else [*SETTABLE_OPEN, *forms_present]
    return ["case_id", *(c for c in dict.fromkeys(chosen) if c != "case_id")]


def export_row(document: Mapping[str, Any], columns: Sequence[str]) -> list[str]:
    return [encode_cell(_get(document, column)) for column in columns]


def differences(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """The fields in which two records differ, apart from what a round trip cannot carry
    (NOT_CARRIED) and the ids cmgit generates; named by path, never by value."""
    found: list[str] = []
    keys = (set(before) | set(after)) - set(NOT_CARRIED)
    for key in sorted(keys):
        _compare(before.get(key), after.get(key), key, found)
    return found


def _compare(a: Any, b: Any, path: str, found: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            _compare(a.get(key), b.get(key), f"{path}.{key}", found)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            _compare(x, y, f"{path}.{index}", found)
    elif a != b:
        found.append(path)


def iter_problems(rows: Sequence[Row]) -> Iterator[str]:
    for row in rows:
        for problem in row.problems:
            yield f"row {row.number}: {problem}"
