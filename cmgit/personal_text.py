"""Personal strings of a case found in free text: a commit message, a new path, a page.

The form schemas mark the fields that name a person or a place or say how to reach
someone (``x-cmgit-personal``: name, place or contact). Their values become needles:
each word of a name, and each part of a place or contact between commas (the words of
an address, such as road, camp or centre, are too common to refuse text on). Text and
needles are compared as runs of letters and digits, case-insensitively, so "Jean-Pierre"
is found in "jean_pierre.md" and "Selam" is not found in "Selamawit". Needles shorter
than MIN_CHARS are left out: they would be found in ordinary words.

Everything stays in memory; a hit names where the text was and the case, never the
string that was found.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import Refused

MARK = "x-cmgit-personal"
KINDS = ("name", "place", "contact")
MIN_CHARS = 4
CODE = "GC"  # the guard of schemas/workflow.yaml that names this refusal
_WORD = re.compile(r"[^\W_]+")
_PARTS = re.compile(r"[,;\n]")


class FormSchema(Protocol):
    """What reading the marked fields needs of the case schema (`SchemaSet` is one)."""

    @property
    def sealed_fields(self) -> tuple[str, ...]: ...

    @property
    def case_properties(self) -> dict[str, dict[str, Any]]: ...

    def resolve(self, ref: str) -> Mapping[str, Any]: ...


@dataclass(frozen=True, order=True)
class Hit:
    """A personal string of ``case_id`` found in the text called ``where``."""

    where: str
    case_id: str


def normalise(text: str) -> str:
    """Runs of letters and digits, case-folded, one space apart and one at each end."""
    words = _WORD.findall(unicodedata.normalize("NFKC", text).casefold())
    return f" {' '.join(words)} " if words else ""


# Where the marked fields are, as the schema says: a kind at a marked field, else a
# mapping of property names (ITEMS for the items of a list) to the plans beneath.
Plan = str | dict[str, "Plan"]
ITEMS = "[]"


def plan(schema: FormSchema) -> dict[str, Plan]:
    """The plan of every sealed form that holds a marked field: read once, so that each
    case is walked only along the branches that lead to one."""

    def of(node: Mapping[str, Any]) -> Plan | None:
        if "$ref" in node:
            node = {
                **schema.resolve(node["$ref"]),
                **{k: v for k, v in node.items() if k != "$ref"},
            }
        if node.get(MARK) in KINDS:
            return str(node[MARK])
        below = {key: p for key, sub in node.get("properties", {}).items() if (p := of(sub))}
        if isinstance(node.get("items"), Mapping) and (p := of(node["items"])):
            below[ITEMS] = p
        return below or None

    return {form: p for form in schema.sealed_fields if (p := of(schema.case_properties[form]))}


def marked_values(forms: Mapping[str, Any], plans: Mapping[str, Plan]) -> Iterator[tuple[str, str]]:
    """(kind, text) of every string the sealed forms hold in a marked field."""

    def walk(value: Any, at: Plan) -> Iterator[tuple[str, str]]:
        if isinstance(at, str):
            if isinstance(value, str):
                yield at, value
            elif isinstance(value, list):
                for item in value:
                    yield from walk(item, at)
        elif isinstance(value, dict):
            for key, below in at.items():
                if key in value:
                    yield from walk(value[key], below)
        elif isinstance(value, list) and ITEMS in at:
            for item in value:
                yield from walk(item, at[ITEMS])

    for form, at in plans.items():
        if form in forms:
            yield from walk(forms[form], at)


def needles(values: Iterable[tuple[str, str]]) -> set[str]:
    """The normalised needles of marked values: a name's words, a place's or contact's
    parts between commas; each of at least MIN_CHARS letters and digits."""
    found = set()
    for kind, text in values:
        pieces = text.split() if kind == "name" else _PARTS.split(text)
        for piece in pieces:
            needle = normalise(piece)
            if len(needle.replace(" ", "")) >= MIN_CHARS:
                found.add(needle)
    return found


def find(texts: Mapping[str, str], by_case: Mapping[str, Iterable[str]]) -> list[Hit]:
    """Each (text, case) where the text holds one of the case's needles, in order."""
    hits: set[Hit] = set()
    prepared = {where: normalise(text) for where, text in texts.items()}
    words = {where: set(text.split()) for where, text in prepared.items()}
    for case_id, found in by_case.items():
        for needle in found:
            word = needle.strip()
            hits.update(
                Hit(where, case_id)
                for where, text in prepared.items()
                # One word is looked up; several are searched for as a phrase.
                if (word in words[where] if " " not in word else needle in text)
            )
    return sorted(hits)


def refusal(hits: Iterable[Hit]) -> Refused:
    """The refusal (exit 4) naming each text and case, never the string found."""
    return Refused(
        "refused: the text holds a name, place or contact of a case",
        hint="write the case ID instead, or leave the detail out; nothing was committed",
        problems=[
            f"{CODE}: {hit.where} holds a personal detail of case {hit.case_id}" for hit in hits
        ],
    )
