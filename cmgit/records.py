"""The record value and its file format (SPEC section 2).

A record file is canonical YAML: the open fields, one a line in schema order, then the
sealed block as a literal scalar. The sealed plaintext is compact JSON (valid YAML and
about forty times faster to parse than YAML) carrying the case ID, the version, a digest
of the open fields and the git blob id of the previous version, padded with spaces to a
size bucket so the ciphertext length does not tell how much was written about a child.

Pure: no files, clock or keys here; the store hands in bytes and takes bytes back.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import IntegrityError, ParseError, TooLarge
from .yamlio import IDENTIFIER, YAML11_WORDS, scalar

PAYLOAD_FORMAT = 1
BUCKET_MIN = 4096
MAX_PAYLOAD = 4 * 1024 * 1024
MAX_RECORD_FILE = 12 * 1024 * 1024
SEALED_KEY = "sealed"
_INT_RE = re.compile(r"-?(0|[1-9][0-9]{0,17})")


@dataclass
class Record:
    """A decrypted case: open fields (in clear on disk) and forms (sealed on disk)."""

    open: dict[str, Any]
    forms: dict[str, Any] = field(default_factory=dict)

    @property
    def case_id(self) -> str:
        return str(self.open["case_id"])

    @property
    def version(self) -> int:
        return int(self.open["version"])

    def document(self, order: Sequence[str]) -> dict[str, Any]:
        """The whole record as one mapping in schema order: what `show` prints."""
        whole = {**self.open, **self.forms}
        return {key: whole[key] for key in order if key in whole}


# -- open fields -------------------------------------------------------------------


def open_digest(open_fields: Mapping[str, Any]) -> str:
    """SHA-256 of the open fields in canonical JSON; binds them to the sealed block."""
    canonical = json.dumps(open_fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _scalar(value: Any) -> str:
    """An open field's value as the record file writes it: ASCII, read alike as YAML and
    as JSON (which is how `_parse_scalar` reads a quoted one back)."""
    return scalar(value, ascii_json=True)


def _parse_scalar(text: str, line: int) -> Any:
    if text == "null":
        return None
    if text in ("true", "false"):
        return text == "true"
    if _INT_RE.fullmatch(text):
        return int(text)
    if IDENTIFIER.fullmatch(text) and text not in YAML11_WORDS:
        return text
    if text.startswith(('"', "[")):
        try:
            value = json.loads(text)
        except ValueError:
            pass
        else:
            if isinstance(value, str) or (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            ):
                return value
    raise ParseError(f"record file: unreadable open field value at line {line}, column 1")


# -- the file ----------------------------------------------------------------------


def open_lines(open_fields: Mapping[str, Any], order: Sequence[str]) -> list[str]:
    """The open-field lines of a record file, one a line in schema order: shared by every
    file layout that carries them, so each writes them alike."""
    if set(open_fields) != set(order):
        raise ValueError("open fields do not match the schema's open set")
    return [f"{key}: {_scalar(open_fields[key])}" for key in order]


def render_file(open_fields: Mapping[str, Any], order: Sequence[str], armored: str) -> bytes:
    """Canonical bytes of a record file: a change to one open field is a one-line diff."""
    lines = open_lines(open_fields, order)
    lines.append(f"{SEALED_KEY}: |")
    lines.extend("  " + part for part in armored.rstrip("\n").split("\n"))
    return ("\n".join(lines) + "\n").encode("ascii")


_SCALARS: dict[str, Any] = {}
_SCALARS_KEPT = 50_000
_UNKNOWN = object()


def open_values(lines: Sequence[str], order: Sequence[str]) -> tuple[tuple[Any, ...], bool]:
    """The values of the open-field lines, and whether each is written as cmgit writes it."""
    values = []
    canonical = True
    for number, (key, line) in enumerate(zip(order, lines, strict=False), start=1):
        name, sep, text = line.partition(": ")
        if not sep or name != key:
            raise ParseError(f"record file: expected field '{key}' at line {number}, column 1")
        # Most values recur across records (states, dates, teams): a bulk read of every
        # record spends most of its time here, and a lookup is many times cheaper. Only
        # canonical texts are remembered, so a hit needs no check that it is one.
        value = _SCALARS.get(text, _UNKNOWN)
        if value is _UNKNOWN:
            value = _parse_scalar(text, number)
            if _scalar(value) != text:
                canonical = False
            elif not isinstance(value, list):  # lists are mutable: never shared
                if len(_SCALARS) >= _SCALARS_KEPT:
                    _SCALARS.clear()
                _SCALARS[text] = value
        values.append(value)
    if len(values) != len(order):
        raise ParseError("record file: truncated or not a cmgit record")
    return tuple(values), canonical


def parse_open_values(data: bytes, order: Sequence[str]) -> tuple[Any, ...]:
    """Only the open fields of a record file, as values in ``order``: what keyless commands
    read, quickly. The same strict line rules as `parse_file`, without the sealed block."""
    head = data[: 4096 + 256 * len(order)]
    if head.count(b"\n") < len(order):  # a long open field (a long state history)
        head = data[:MAX_RECORD_FILE]
    try:
        lines = head.decode("ascii").split("\n", len(order))
    except UnicodeDecodeError:
        raise ParseError("record file: non-ASCII byte in the open fields") from None
    return open_values(lines[: len(order)], order)[0]


def parse_open_fields(data: bytes, order: Sequence[str]) -> dict[str, Any]:
    """As `parse_open_values`, by field name."""
    return dict(zip(order, parse_open_values(data, order), strict=True))


def has_sealed_block(data: bytes) -> bool:
    """Whether a record file holds its sealed block (format 1), not only open fields
    (format 2, whose forms are sealed entries beside it)."""
    return f"\n{SEALED_KEY}: |\n".encode("ascii") in data


def ascii_lines(data: bytes, what: str) -> list[str]:
    """The lines of a file cmgit writes in ASCII (``what`` names it in the error): any
    other byte is a parse error, at its line."""
    try:
        return data.decode("ascii").split("\n")
    except UnicodeDecodeError as exc:
        where = data[: exc.start].count(b"\n") + 1
        raise ParseError(f"{what}: non-ASCII byte at line {where}") from None


def parse_file(data: bytes, order: Sequence[str]) -> tuple[dict[str, Any], str]:
    """Open fields and armored sealed block of a record file; refuses anything not canonical."""
    if len(data) > MAX_RECORD_FILE:
        raise TooLarge("record file is larger than cmgit accepts")
    lines = ascii_lines(data, "record file")
    if len(lines) < len(order) + 3 or lines[-1] != "":
        raise ParseError("record file: truncated or not a cmgit record")
    values, canonical = open_values(lines, order)
    header = len(order)
    if lines[header] != f"{SEALED_KEY}: |":
        raise ParseError(f"record file: expected the sealed block at line {header + 1}, column 1")
    body = "\n".join(lines[header + 1 : -1])
    # Every line of the block indented by two spaces: each newline is followed by them.
    if not body.startswith("  ") or body.count("\n") != body.count("\n  "):
        raise ParseError("record file: sealed block is not indented as cmgit writes it")
    armored = body[2:].replace("\n  ", "\n") + "\n"
    # What render_file would write: the open values as it writes them, and no blank line
    # at the end of the block (which it would leave out).
    if not canonical or armored.endswith("\n\n"):
        raise IntegrityError("record file is not in canonical form (was it edited by hand?)")
    return dict(zip(order, values, strict=True)), armored


# -- the sealed plaintext ----------------------------------------------------------


def bucket_size(length: int) -> int:
    """The padded size: the smallest power of two from 4 KiB that holds ``length``."""
    size = BUCKET_MIN
    while size < length:
        size *= 2
    return size


def seal_payload(record: Record, prev_blob: str | None) -> bytes:
    """The sealed plaintext of a record: integrity fields and forms, padded to its bucket."""
    doc = {
        "cmgit_record": PAYLOAD_FORMAT,
        "case_id": record.case_id,
        "version": record.version,
        "open_digest": open_digest(record.open),
        "prev_blob": prev_blob,
        "forms": record.forms,
    }
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(body) > MAX_PAYLOAD:
        raise TooLarge("case record is larger than cmgit accepts", case_id=record.case_id)
    # JSON allows trailing whitespace, so spaces pad without any framing of their own.
    return body + b" " * (bucket_size(len(body)) - len(body))


@dataclass(frozen=True)
class Payload:
    case_id: str
    version: int
    open_digest: str
    prev_blob: str | None
    forms: dict[str, Any]


def parse_payload(data: bytes) -> Payload:
    """Read a sealed plaintext; any surprise is an integrity failure, never a crash."""
    if len(data) > MAX_PAYLOAD * 2:
        raise TooLarge("sealed block is larger than cmgit accepts")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise IntegrityError("sealed block does not hold a cmgit record") from None
    keys = {"cmgit_record", "case_id", "version", "open_digest", "prev_blob", "forms"}
    if (
        not isinstance(doc, dict)
        or set(doc) != keys
        or doc["cmgit_record"] != PAYLOAD_FORMAT
        or not isinstance(doc["case_id"], str)
        or not isinstance(doc["version"], int)
        or isinstance(doc["version"], bool)
        or not isinstance(doc["open_digest"], str)
        or not (doc["prev_blob"] is None or isinstance(doc["prev_blob"], str))
        or not isinstance(doc["forms"], dict)
    ):
        raise IntegrityError("sealed block does not hold a cmgit record")
    return Payload(
        doc["case_id"], doc["version"], doc["open_digest"], doc["prev_blob"], doc["forms"]
    )


def check_binding(path_case_id: str, open_fields: Mapping[str, Any], payload: Payload) -> None:
    """The sealed block must belong to this path, this version and these open fields."""
    if open_fields.get("case_id") != path_case_id or payload.case_id != path_case_id:
        raise IntegrityError(
            "record belongs to another case (file copied or swapped)",
            case_id=path_case_id,
            hint="restore it with git or run cmgit audit",
        )
    if payload.version != open_fields.get("version"):
        raise IntegrityError(
            "sealed version does not match the open version",
            case_id=path_case_id,
            hint="the file was altered outside cmgit; restore it with git",
        )
    if payload.open_digest != open_digest(open_fields):
        raise IntegrityError(
            "open fields do not match the sealed digest (edited by hand?)",
            case_id=path_case_id,
            hint="open fields change only through cmgit commands; restore the file with git",
        )
